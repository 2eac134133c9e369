// The agent's own Kubernetes API client (agent/src/k8s/api-client.ts, informer.ts) against a local
// node:http server that speaks the API server's list and watch: a watch stream cut anywhere (mid-
// line, mid-UTF-8), BOOKMARK, 410 Gone (an HTTP answer and an ERROR event) -> a re-list, another
// ERROR event and a line over the bound -> an error with a code, counted; the server closing the
// stream -> watched again from the resourceVersion held; timeouts and body bounds of GET.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { KubeApiError, KubeClient, type KubeList, type KubePod, LineBuffer } from '../../agent/src/k8s/api-client.ts';
import type { KubeConnection } from '../../agent/src/k8s/api-config.ts';
import { Informer } from '../../agent/src/k8s/informer.ts';
import { KubePodSource } from '../../agent/src/k8s/kube.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void;

/** a local API server whose answers each test sets; every request is recorded */
class FakeApi {
  server!: Server;
  handler: Handler = (_req, res) => res.writeHead(404).end();
  readonly requests: { url: URL; auth?: string }[] = [];
  /** the open watch responses, to write events to */
  readonly watches: ServerResponse[] = [];

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      this.requests.push({ url, auth: req.headers.authorization });
      if (url.searchParams.get('watch') === '1') this.watches.push(res);
      this.handler(req, res, url);
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  conn(token = 'tok-1'): KubeConnection {
    return { server: new URL(this.url), insecure: false, token: () => token, origin: 'test' };
  }

  /** forgets the requests and watches of earlier tests */
  reset(): void {
    this.requests.length = 0;
    this.watches.length = 0;
  }

  watchRequests(): URL[] {
    return this.requests.filter((r) => r.url.searchParams.get('watch') === '1').map((r) => r.url);
  }

  lists(): number {
    return this.requests.filter((r) => r.url.searchParams.get('watch') !== '1').length;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

const pod = (name: string, rv: string, extra: Record<string, string> = {}): KubePod => ({ metadata: { name, namespace: 'default', resourceVersion: rv, labels: extra } });
const ev = (type: string, object: unknown) => `${JSON.stringify({ type, object })}\n`;
const listOf = (rv: string, items: KubePod[]): KubeList<KubePod> => ({ metadata: { resourceVersion: rv }, items });

/** an informer on /api/v1/pods of a FakeApi, recording what its callers would see */
function informerOn(api: FakeApi, client: KubeClient) {
  const seen: string[] = [];
  const errors: unknown[] = [];
  let watching = 0;
  const inf = new Informer<KubePod>({
    client, path: '/api/v1/pods', fieldSelector: 'spec.nodeName=n1', watchTimeoutS: 25,
    list: (signal) => client.get<KubeList<KubePod>>('/api/v1/pods', { fieldSelector: 'spec.nodeName=n1' }, signal),
    onChange: (type, o) => seen.push(`${type} ${o.metadata?.name}`),
    onWatching: () => watching++,
    onError: (e) => errors.push(e),
    quickCloseDelayMs: { initialMs: 10, maxMs: 20 },
  });
  return { inf, seen, errors, watching: () => watching };
}

describe('LineBuffer', () => {
  test('lines cut at any byte, mid-UTF-8 included, come out whole; a line over the bound is refused before it is held', () => {
    const text = `${ev('ADDED', pod('ä-漢字-🚀', '1'))}${ev('BOOKMARK', { metadata: { resourceVersion: '2' } })}`;
    const bytes = Buffer.from(text, 'utf8');
    // every cut position, one byte at a time and in pairs of cuts
    for (let step = 1; step <= 13; step++) {
      const lb = new LineBuffer(1024);
      const got: string[] = [];
      for (let i = 0; i < bytes.length; i += step) {
        assert.equal(lb.push(bytes.subarray(i, i + step), (l) => got.push(l.toString('utf8')) > 0), true);
      }
      assert.deepEqual(got, text.trimEnd().split('\n'), `chunks of ${step} bytes`);
      assert.equal(lb.held, 0);
    }
    const small = new LineBuffer(10);
    assert.equal(small.push(Buffer.from('0123456789\nabc'), () => true), true, 'exactly the bound is a line');
    assert.equal(small.held, 3);
    assert.equal(small.push(Buffer.from('defghijk'), () => true), false, '3 + 8 bytes without a newline: over');
    assert.equal(new LineBuffer(10).push(Buffer.from('0123456789a\n'), () => true), false);
  });
});

describe('KubeClient and Informer against a local API server', () => {
  const api = new FakeApi();
  before(() => api.start());
  after(() => api.stop());

  test('GET: the bearer token, the query; an error answer with its Status message and code; a body over its bound; a timeout', async () => {
    let token = 'tok-1';
    const client = new KubeClient({ ...api.conn(), token: () => token }, { timeoutMs: 300, maxBodyBytes: 4096 });
    try {
      api.handler = (_req, res, url) => {
        if (url.pathname === '/api/v1/pods') res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(listOf('5', [pod('a', '5')])));
        else if (url.pathname === '/forbidden') res.writeHead(403).end(JSON.stringify({ kind: 'Status', code: 403, reason: 'Forbidden', message: 'pods is forbidden: no' }));
        else if (url.pathname === '/big') res.writeHead(200).end(JSON.stringify({ x: 'y'.repeat(10_000) }));
        else if (url.pathname === '/silent') res.writeHead(200).write('{');
        else res.writeHead(404).end('not json');
      };
      const l = await client.get<KubeList<KubePod>>('/api/v1/pods', { fieldSelector: 'spec.nodeName=n1', labelSelector: undefined });
      assert.deepEqual(l.items.map((p) => p.metadata?.name), ['a']);
      const last = api.requests.at(-1);
      assert.equal(last?.auth, 'Bearer tok-1');
      assert.equal(last?.url.search, '?fieldSelector=spec.nodeName%3Dn1');
      token = 'tok-2';
      await client.get('/api/v1/pods');
      assert.equal(api.requests.at(-1)?.auth, 'Bearer tok-2', 'the token is asked for at each request');

      const forbidden = await client.get('/forbidden').catch((e: unknown) => e) as KubeApiError;
      assert.ok(forbidden instanceof KubeApiError);
      assert.deepEqual([forbidden.code, forbidden.statusCode, forbidden.reason], ['STRATA_ERR_KUBE_API', 403, 'Forbidden']);
      assert.match(forbidden.message, /GET \/forbidden: HTTP 403 pods is forbidden: no/);
      await assert.rejects(client.get('/nope'), (e: KubeApiError) => e.statusCode === 404 && /HTTP 404 not json/.test(e.message));
      await assert.rejects(client.get('/big'), (e: KubeApiError) => e.code === 'STRATA_ERR_KUBE_API' && /larger than 4096 bytes/.test(e.message));
      const t0 = performance.now();
      await assert.rejects(client.get('/silent'), (e: KubeApiError) => e.code === 'STRATA_ERR_KUBE_API' && /no answer for 300 ms/.test(e.message));
      assert.ok(performance.now() - t0 < 5000);
      const ac = new AbortController();
      const aborted = client.get('/silent', {}, ac.signal);
      ac.abort();
      await assert.rejects(aborted, /aborted/);
    } finally {
      client.close();
    }
  });

  test('a connection refused is an error with its cause', async () => {
    const client = new KubeClient({ server: new URL('http://127.0.0.1:1'), insecure: false, token: () => undefined, origin: 't' });
    try {
      await assert.rejects(client.get('/api/v1/pods'), (e: KubeApiError) => e.code === 'STRATA_ERR_KUBE_API' && (e.cause as NodeJS.ErrnoException).code === 'ECONNREFUSED');
    } finally {
      client.close();
    }
  });

  test('informer: list, then a watch from its resourceVersion cut mid-line and mid-UTF-8; ADDED/MODIFIED/DELETED; BOOKMARK; the server closing -> watched again from there', async () => {
    api.reset();
    api.handler = (_req, res, url) => {
      if (url.searchParams.get('watch') !== '1') {
        res.writeHead(200).end(JSON.stringify(listOf('10', [pod('a', '9'), pod('b', '10')])));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
    };
    const client = new KubeClient(api.conn());
    const { inf, seen, errors, watching } = informerOn(api, client);
    try {
      await inf.start();
      assert.equal(watching(), 1);
      assert.deepEqual(seen, ['add a', 'add b']);
      const w1 = api.watchRequests()[0];
      assert.equal(w1?.searchParams.get('resourceVersion'), '10');
      assert.equal(w1?.searchParams.get('allowWatchBookmarks'), 'true');
      assert.equal(w1?.searchParams.get('timeoutSeconds'), '25');
      assert.equal(w1?.searchParams.get('fieldSelector'), 'spec.nodeName=n1');
      const res = api.watches[0] as ServerResponse;
      const stream = Buffer.from([
        ev('ADDED', pod('c', '11', { name: 'ünïcødé-漢字' })),
        ev('MODIFIED', pod('a', '12', { v: '2' })),
        ev('MODIFIED', pod('a', '12', { v: '2' })),
        ev('DELETED', pod('b', '13')),
        ev('BOOKMARK', { metadata: { resourceVersion: '20' } }),
      ].join(''), 'utf8');
      // 5-byte pieces, each written on its own turn: lines and UTF-8 sequences cut everywhere
      for (let i = 0; i < stream.length; i += 5) {
        res.write(stream.subarray(i, i + 5));
        await new Promise((r) => setImmediate(r));
      }
      await waitFor(() => inf.resourceVersion() === '20', 'the bookmark\'s resourceVersion');
      assert.deepEqual(seen, ['add a', 'add b', 'add c', 'update a', 'delete b'], 'the same resourceVersion twice is one update');
      assert.deepEqual(inf.list().map((p) => [p.metadata?.name, p.metadata?.labels]).sort(), [['a', { v: '2' }], ['c', { name: 'ünïcødé-漢字' }]]);
      // the server ends the watch (its timeoutSeconds): watched again from the bookmark, no list
      res.end();
      await waitFor(() => api.watchRequests().length === 2, 'a second watch');
      assert.equal(api.watchRequests()[1]?.searchParams.get('resourceVersion'), '20');
      assert.equal(api.lists(), 1);
      await waitFor(() => watching() === 2, 'watching again');
      assert.deepEqual(errors, []);
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('informer: 410 Gone, as an ERROR event and as the watch\'s HTTP answer, lists again (what the new list lacks is deleted)', async () => {
    api.reset();
    let lists = 0;
    let watches = 0;
    api.handler = (_req, res, url) => {
      if (url.searchParams.get('watch') !== '1') {
        lists++;
        const items = lists === 1 ? [pod('a', '1'), pod('b', '1')] : lists === 2 ? [pod('b', '30')] : [pod('b', '30'), pod('d', '40')];
        res.writeHead(200).end(JSON.stringify(listOf(String(lists * 100), items)));
        return;
      }
      watches++;
      if (watches === 1) {
        res.writeHead(200);
        res.write(ev('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 1 (25)' }));
      } else if (watches === 2) {
        res.writeHead(410).end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Gone', message: 'too old' }));
      } else {
        res.writeHead(200);
        res.flushHeaders();
      }
    };
    const client = new KubeClient(api.conn());
    const { inf, seen, errors } = informerOn(api, client);
    try {
      await inf.start();
      await waitFor(() => lists === 3 && watches === 3, 'two re-lists and a third watch');
      assert.deepEqual(seen, ['add a', 'add b', 'delete a', 'update b', 'add d']);
      assert.deepEqual(api.watchRequests().map((u) => u.searchParams.get('resourceVersion')), ['100', '200', '300']);
      assert.equal(inf.resourceVersion(), '300');
      assert.deepEqual(errors, []);
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('informer: an ERROR event (not 410), a line over the bound, a line not JSON: the informer stops with a coded error; start() resumes from its resourceVersion', async () => {
    api.reset();
    const bodies = [
      ev('ERROR', { kind: 'Status', code: 500, reason: 'InternalError', message: 'etcd is sad' }),
      `{"type":"ADDED","object":{"metadata":{"name":"x","annotations":{"a":"${'z'.repeat(3000)}`,
      'this is not json\n',
    ];
    let watches = 0;
    api.handler = (_req, res, url) => {
      if (url.searchParams.get('watch') !== '1') {
        res.writeHead(200).end(JSON.stringify(listOf('7', [pod('a', '7')])));
        return;
      }
      res.writeHead(200);
      const body = bodies[watches++];
      if (body) res.write(body);
      else res.flushHeaders();
    };
    const client = new KubeClient(api.conn(), { maxLineBytes: 2048 });
    const { inf, errors } = informerOn(api, client);
    try {
      await inf.start();
      await waitFor(() => errors.length === 1, 'the ERROR event surfaced');
      const e0 = errors[0] as KubeApiError;
      assert.deepEqual([e0.code, e0.statusCode, e0.reason], ['STRATA_ERR_KUBE_WATCH', 500, 'InternalError']);
      assert.match(e0.message, /ERROR event 500 InternalError: etcd is sad/);
      assert.equal(client.stats.badLines, 0, 'a well-formed ERROR event is no bad line');
      // resumed by the caller: from the resourceVersion held, no list
      void inf.start();
      await waitFor(() => errors.length === 2, 'the long line refused');
      assert.equal((errors[1] as KubeApiError).code, 'STRATA_ERR_KUBE_WATCH');
      assert.match((errors[1] as KubeApiError).message, /longer than 2048 bytes/);
      assert.equal(client.stats.badLines, 1);
      void inf.start();
      await waitFor(() => errors.length === 3, 'the line that is not JSON');
      assert.match((errors[2] as KubeApiError).message, /not JSON/);
      assert.equal(client.stats.badLines, 2);
      void inf.start();
      await waitFor(() => watches === 4, 'a fourth watch');
      assert.equal(api.lists(), 1, 'each restart resumed the watch');
      assert.deepEqual(api.watchRequests().map((u) => u.searchParams.get('resourceVersion')), ['7', '7', '7', '7']);
      assert.deepEqual(inf.list().map((p) => p.metadata?.name), ['a'], 'the cache kept');
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('a watch with no byte for the client\'s timeout is watched again; a watch the server closes at once waits before the next', async () => {
    api.reset();
    let mode: 'silent' | 'close' = 'silent';
    api.handler = (_req, res, url) => {
      if (url.searchParams.get('watch') !== '1') {
        res.writeHead(200).end(JSON.stringify(listOf('3', [])));
        return;
      }
      res.writeHead(200);
      if (mode === 'close') res.end();
      else res.flushHeaders();
    };
    const client = new KubeClient(api.conn(), { timeoutMs: 200 });
    const { inf, errors } = informerOn(api, client);
    try {
      await inf.start();
      await waitFor(() => api.watchRequests().length >= 3, 'watched again after each silent spell', 10_000);
      assert.deepEqual(errors, []);
      assert.equal(api.lists(), 1);
      mode = 'close';
      const n = api.watchRequests().length;
      const t0 = performance.now();
      await waitFor(() => api.watchRequests().length >= n + 3, 'closed at once, watched again', 10_000);
      // the quick-close delays (10, 20, 20 ms here) are waited: no busy loop
      assert.ok(performance.now() - t0 >= 25, `${(performance.now() - t0).toFixed(0)} ms`);
      assert.deepEqual(errors, []);
    } finally {
      inf.stop();
      client.close();
    }
  });

  test('KubePodSource: a bad watch line is counted (watch errors, bad lines) and the watch resumed; stop() ends it', async () => {
    api.reset();
    let watches = 0;
    api.handler = (_req, res, url) => {
      if (url.pathname.startsWith('/api/v1/nodes/')) {
        res.writeHead(200).end('{}');
        return;
      }
      if (url.searchParams.get('watch') !== '1') {
        res.writeHead(200).end(JSON.stringify(listOf('50', [{ ...pod('p1', '50'), spec: { nodeName: 'n1', containers: [{ name: 'c' }] } }])));
        return;
      }
      res.writeHead(200);
      if (watches++ === 0) res.write('garbage\n');
      else res.flushHeaders();
    };
    const dir = mkdtempSync(join(tmpdir(), 'k8s-api-unit-'));
    writeFileSync(`${dir}/kc`, `apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: "${api.url}"}}]\nusers: [{name: u, user: {token: t0k}}]\n`);
    const logs: string[] = [];
    const s = new KubePodSource({ nodeName: 'n1', kubeconfig: `${dir}/kc`, resyncS: 0, startTimeoutMs: 5000, backoff: { initialMs: 20, maxMs: 40 }, maxOwners: 10, log: (m) => logs.push(m) });
    try {
      await s.start(() => {});
      await waitFor(() => watches >= 2 && !s.stale(), 'watching again after the bad line');
      assert.deepEqual(s.pods().map((p) => p.name), ['p1']);
      const st = s.stats();
      assert.equal(st.watchBadLines, 1);
      assert.equal(st.watchErrors, 1);
      assert.equal(st.restarts, 1);
      assert.equal(st.lists, 1);
      assert.ok(logs.some((l) => /lost the API server \(watch \/api\/v1\/pods: a line is not JSON/.test(l)), logs.join('\n'));
      assert.equal(api.requests.find((r) => r.url.pathname === '/api/v1/pods')?.auth, 'Bearer t0k');
    } finally {
      await s.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    // stopped: its watch socket is closed, and nothing watches any more
    const n = api.watchRequests().length;
    await waitFor(() => api.watches.every((w) => w.closed || w.destroyed) || undefined, 'every watch connection closed by stop()');
    assert.equal(api.watchRequests().length, n);
  });
});
