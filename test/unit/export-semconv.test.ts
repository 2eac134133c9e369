// What reaches Jaeger: span names of bounded cardinality ({method} {route}), the full path kept in
// url.path; junk requests counted by reason and not exported unless asked; no exported name or
// attribute with control characters, invalid UTF-8 or unbounded length.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { basename } from 'node:path';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { MAX_NAME, MAX_VALUE, clean } from '../../agent/src/export/sanitize.ts';
import { Routes, idLike } from '../../agent/src/export/route.ts';
import { INVALID_REQUEST_NAME, SpanMapper } from '../../agent/src/export/semconv.ts';
import type { ExchangeRecord, HopRecord } from '../../agent/src/correlate/records.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { procExecutables } from '../../agent/src/k8s/proc.ts';
import { EVENT_TYPE } from '../../agent/src/events/layout.generated.ts';
import { pktRecord, sockRecord } from '../helpers/synth.ts';
import { conversation, runRecords, type Turn } from '../helpers/conversation.ts';
import { mapperOptions, sinkOptions } from '../helpers/options.ts';
import { spanTree } from '../helpers/otlp-fixture.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const whole = (d: Buffer) => [d];
const ok = B('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
const get = (target: string, headers = ''): Turn => ({ request: B(`GET ${target} HTTP/1.1\r\nHost: app\r\n${headers}\r\n`), response: ok });
const exchanges = (spans: SpanRecord[]) => spans.filter((s) => s.kind !== SpanKind.INTERNAL);

/** every exported string: no C0/C1 controls, no lone surrogates (valid UTF-8), bounded */
function assertClean(spans: SpanRecord[]): void {
  const bad = /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  for (const s of spans) {
    assert.ok(!bad.test(s.name), `name ${JSON.stringify(s.name)}`);
    assert.ok(s.name.length <= MAX_NAME, `name of ${s.name.length} characters`);
    for (const [k, v] of [...Object.entries(s.attributes), ...Object.entries(s.resource.attributes)]) {
      if (typeof v !== 'string') continue;
      assert.ok(!bad.test(v), `${k} = ${JSON.stringify(v)}`);
      assert.ok(v.length <= MAX_VALUE, `${k}: ${v.length} characters`);
      assert.equal(Buffer.from(v, 'utf8').toString('utf8'), v, `${k} is valid UTF-8`);
    }
  }
}

describe('span names', () => {
  test('102 requests with distinct ids make one operation name, the path stays in url.path', () => {
    const turns = Array.from({ length: 102 }, (_, i) => get(`/c/${i}`));
    const r = runRecords(conversation(turns, whole, whole));
    const ex = exchanges(r.spans);
    assert.equal(ex.length, 204);
    assert.deepEqual([...new Set(ex.map((s) => s.name))], ['GET /c/{id}']);
    assert.equal(new Set(ex.map((s) => s.attributes['url.path'])).size, 102);
    // the upstream address is an attribute, not part of the name
    assert.ok(ex.filter((s) => s.kind === SpanKind.CLIENT).every((s) => s.attributes['server.address'] === '10.244.1.20' && !s.name.includes('10.244')));
  });

  test('uuids, long hex, base64-ish tokens and numbers are ids; words are not', () => {
    const routes = new Routes([]);
    assert.equal(routes.route('/users/8d2f1c8e-3b7a-4f6e-9a1d-2c5e7b9f0a13/orders/42'), '/users/{id}/orders/{id}');
    assert.equal(routes.route('/blob/9f86d081884c7d659a2feaa0c55ad015'), '/blob/{id}');
    assert.equal(routes.route('/t/eyJhbGciOiJIUzI1NiJ9_abc-DEF'), '/t/{id}');
    assert.equal(routes.route('/api/v1/getUserProfile/settings'), '/api/v1/getUserProfile/settings');
    assert.equal(routes.route('/slow/40'), '/slow/{id}');
    // absolute-form (to a proxy): the path; no path at all (CONNECT host:port, OPTIONS *): no route
    assert.equal(routes.route('http://shop.example:8080/cart/77'), '/cart/{id}');
    assert.equal(routes.route('shop.example:443'), '');
    assert.equal(routes.route('*'), '');
    for (const s of ['12', '2024-01-02', 'a1b2c3d4', '0x1f2e3d4c5b6a']) assert.ok(idLike(s), s);
    for (const s of ['orders', 'v1', 'dispatch', 'h10', 'index.html']) assert.ok(!idLike(s), s);
    // deep paths are cut: bounded whatever comes in
    assert.ok(routes.route(`/${Array.from({ length: 50 }, (_, i) => `seg${String.fromCharCode(97 + (i % 26))}`).join('/')}`).endsWith('/…'));
  });

  test('configured routes win (correlator.routes), a last * matches the rest', () => {
    const { records } = runRecords(conversation([get('/api/v2/items/7/parts/9'), get('/static/css/site.css')], whole, whole));
    const mapper = new SpanMapper(mapperOptions({ routes: ['/api/{version}/items/*', '/static/*'] }));
    const spans: SpanRecord[] = [];
    for (const rec of records) mapper.map(rec, (s) => spans.push(s));
    assert.deepEqual([...new Set(exchanges(spans).map((s) => s.name))].sort(), ['GET /api/{version}/items/*', 'GET /static/*']);
    assert.ok(exchanges(spans).some((s) => s.attributes['url.path'] === '/api/v2/items/7/parts/9'));
  });
});

describe('invalid requests', () => {
  const junk: Turn = { request: Buffer.concat([B('GET '), Buffer.from([0x00, 0x01, 0xff, 0xfe, 0x1b, 0x5b, 0x32, 0x4a, 0x80, 0x0a]), B(' HTTP/1.1\r\nHost: x\r\n\r\n')]), response: B('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n') };

  test('"GET " followed by binary: counted by reason, not exported', () => {
    const r = runRecords(conversation([junk, get('/after')], whole, whole));
    assert.equal(r.correlator.stats.invalidBadRequestLine, 2, 'proxy side and app side');
    assert.deepEqual(exchanges(r.spans).map((s) => s.attributes['url.path']), ['/after', '/after'], 'the next request is traced');
    assertClean(r.spans);
  });

  test('with correlator.exportInvalid: an error span with a fixed name and nothing raw in it', () => {
    const r = runRecords(conversation([junk], whole, whole), 16, undefined, { exportInvalid: true });
    const ex = exchanges(r.spans);
    assert.equal(ex.length, 2);
    for (const s of ex) {
      assert.equal(s.name, INVALID_REQUEST_NAME);
      assert.equal(s.status?.code, SpanStatusCode.ERROR);
      assert.equal(s.attributes['strata.invalid.reason'], 'bad_request_line');
      assert.equal(s.attributes['url.path'], undefined);
    }
    assertClean(r.spans);
  });

  test('a head the connection never finished: counted as head_incomplete, not exported', () => {
    const half: Turn = { request: B('GET /half HTTP/1.1\r\nHost: x\r\nX-Half: '), response: Buffer.alloc(0) };
    const r = runRecords(conversation([half], whole, whole, { serverCloses: true }));
    assert.equal(r.correlator.stats.invalidHeadIncomplete, 2);
    assert.equal(r.correlator.stats.incomplete, 2, 'still an incomplete exchange');
    assert.equal(exchanges(r.spans).length, 0);
  });

  test('header values and paths with controls, raw bytes or too long are cleaned and cut', () => {
    const turns = [
      get('/p', 'User-Agent: caf\xc3\xa9 \x01\x7f\xff bot\r\nX-Request-ID: id\x1b[31m\r\n'),
      get(`/long/${'x'.repeat(5000)}`),
      get('/caf%C3%A9/\xc3\xa9t\xc3\xa9'),
    ];
    const r = runRecords(conversation(turns, whole, whole));
    const ex = exchanges(r.spans);
    assert.equal(ex.length, 6);
    assertClean(r.spans);
    const ua = ex.find((s) => s.attributes['user_agent.original'])?.attributes['user_agent.original'];
    assert.equal(ua, 'café \ufffd\ufffd\ufffd bot', 'UTF-8 decoded, controls and stray bytes replaced');
  });

  test('a process outside any pod with a hostile thread name: service, hop names and labels are clean', () => {
    const peer = { ip: [10, 0, 0, 9] as [number, number, number, number], port: 5555 };
    const me = { ip: [10, 0, 0, 1] as [number, number, number, number], port: 80 };
    const side = { sk: 77, pid: 4242, netns: 999, local: me, remote: peer, comm: 'ev\x1b[2Jil\xff' };
    const req = B('GET /x HTTP/1.1\r\nHost: a\r\n\r\n');
    const r = runRecords([
      sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: 1000, ...side }),
      pktRecord({ ts: 1500, ifindex: 3, src: peer, dst: me, seq: 100, dataLen: req.length, dir: 1 }),
      sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: 2000, ...side, dir: 1, seq: 100, payload: req }),
      sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: 3000, ...side, dir: 2, seq: 500, payload: ok }),
    ]);
    assert.ok(r.spans.some((s) => s.kind === SpanKind.INTERNAL), 'a hop span');
    assertClean(r.spans);
    for (const s of r.spans) assert.ok(!/[\u0000-\u001f]/.test(s.resource.serviceName), s.resource.serviceName);
  });

  test('clean() leaves clean short strings alone (no copy)', () => {
    const s = '/orders/{id}';
    assert.equal(clean(s, 100), s);
    assert.equal(clean('abcdef', 4), 'abc…');
  });
});

describe('resources and spans handed to the SDK', () => {
  test('process.executable.name is the program from /proc, not the thread name', () => {
    assert.equal(procExecutables(4)(process.pid), basename(process.execPath));
    assert.equal(procExecutables(4)(0x7ffffff0), undefined);
  });

  test('span events reach the exporters with the ReadableSpan', async () => {
    const mem = new InMemorySpanExporter();
    const sink = new SdkSpanSink(sinkOptions({ exporters: [mem], batch: { scheduledDelayMillis: 60_000 } }));
    const r = spanTree()[0] as SpanRecord;
    sink.emit({ ...r, events: [{ name: 'response first byte', time: [r.start[0], r.start[1] + 5] }] });
    await sink.flush();
    const [s] = mem.getFinishedSpans();
    assert.deepEqual(s?.events.map((e) => [e.name, e.time]), [['response first byte', [r.start[0], r.start[1] + 5]]]);
    assert.deepEqual(s?.duration, [1, 864_197_532]);
    await sink.shutdown();
  });
});

describe('hop span names and labels (memoised per pod, device and node)', () => {
  const pod = { name: 'web-1', namespace: 'default', uid: 'u1', node: 'node-a', workload: 'web', rev: 0 };
  const sock = { kind: 'write' as const, tsNs: 1, name: 'client' };
  const veth = { kind: 'tc' as const, tsNs: 2, name: 'vethweb', side: 'node' as const, pod };
  const eth0 = { kind: 'netdev' as const, tsNs: 3, name: 'eth0', side: 'pod' as const, pod };
  const uplink = { kind: 'netdev' as const, tsNs: 4, name: 'ens3', side: 'node' as const };
  const hop = (direction: 'request' | 'response', from: object, to: object, qdisc?: true) =>
    ({ spanId: '00000000000000a1', direction, layer: 'veth', from, to, start: [1, 0], end: [1, 5], messageKey: '>1.2.3.4:5/6', ...(qdisc ? { qdisc } : {}) }) as HopRecord;
  const record = (node: string, hops: HopRecord[]) =>
    ({
      role: 'client', layer: 'app', traceId: '0af7651916cd43dd8448eb211c80319c', spanId: '00000000000000b1', parentIsRemote: false, traceFlags: 1,
      start: [1, 0], end: [1, 9], method: 'GET', target: '/', version: '1.1', status: 200, requestBytes: 1, responseBytes: 1, incomplete: false,
      headTruncated: false, upgraded: false, headers: [], process: { pid: 1, tid: 1, comm: 'client', executable: 'client', netns: 1 }, node,
      local: { ip: '1.2.3.4', port: 5 }, remote: { ip: '5.6.7.8', port: 80 }, requestFirst: [1, 0], requestLast: [1, 1], hops,
    }) as unknown as ExchangeRecord;
  const hopNames = (m: SpanMapper, r: ExchangeRecord) => {
    const out: SpanRecord[] = [];
    m.map(r, (s) => out.push(s));
    return out.filter((s) => s.kind === SpanKind.INTERNAL).map((s) => [s.name, s.attributes['strata.from'], s.attributes['strata.to']]);
  };

  test('names follow a pod whose workload discovery learnt later, the node the record names, and the direction', () => {
    const m = new SpanMapper(mapperOptions());
    const hops = [hop('request', sock, veth), hop('request', veth, eth0), hop('response', eth0, eth0, true), hop('response', eth0, uplink)];
    const before = hopNames(m, record('node-a', hops));
    assert.deepEqual(before, [
      ['request client -> web veth', 'client', 'web veth'],
      ['request web veth -> web eth0', 'web veth', 'web eth0'],
      ['response web eth0 qdisc', 'web eth0', 'web eth0'],
      ['response web eth0 -> node-a ens3', 'web eth0', 'node-a ens3'],
    ]);
    // the same again: the same names (from the memo)
    assert.deepEqual(hopNames(m, record('node-a', hops)), before);
    pod.workload = 'frontend';
    pod.rev = 1;
    assert.deepEqual(hopNames(m, record('node-b', hops)), [
      ['request client -> frontend veth', 'client', 'frontend veth'],
      ['request frontend veth -> frontend eth0', 'frontend veth', 'frontend eth0'],
      ['response frontend eth0 qdisc', 'frontend eth0', 'frontend eth0'],
      ['response frontend eth0 -> node-b ens3', 'frontend eth0', 'node-b ens3'],
    ]);
  });

  test('more distinct devices than a memo table holds: every name is still right', () => {
    const m = new SpanMapper(mapperOptions());
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 700; i++) {
        const dev = { kind: 'netdev' as const, tsNs: 4, name: `dev${i}`, side: 'node' as const };
        assert.deepEqual(hopNames(m, record('node-a', [hop('request', sock, dev)])), [[`request client -> node-a dev${i}`, 'client', `node-a dev${i}`]]);
      }
    }
  });
});
