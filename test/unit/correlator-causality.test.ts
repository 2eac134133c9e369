// Causality inside one process (correlate/causality.ts) on synthetic syscall sequences: which
// inbound request an outbound call serves, from the evidence the thread's events leave, never by
// guessing. One service process is traced: its inbound connections (SERVER) and its calls (CLIENT).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { EVENT_TYPE, FLAGS } from '../../agent/src/events/layout.generated.ts';
import { runRecords } from '../helpers/conversation.ts';
import { type Endpoint, sockRecord } from '../helpers/synth.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const NETNS = 4026532002;
const SELF = [10, 244, 1, 20];
const CALLER = [10, 244, 1, 10];
const BACKEND: Endpoint = { ip: [10, 244, 2, 30], port: 9090 };
const OK = B('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');

/** the syscalls of one process, in the order its threads made them */
class Script {
  readonly recs: Buffer[] = [];
  private t = 1_000_000;
  private readonly socks = new Map<number, { local: Endpoint; remote: Endpoint; in: number; out: number }>();
  readonly pid: number;
  private readonly comm: string;
  constructor(pid: number, comm = 'node') {
    this.pid = pid;
    this.comm = comm;
  }

  /** an inbound connection from the caller's port */
  inbound(sk: number, port: number): void {
    this.socks.set(sk, { local: { ip: SELF, port: 8080 }, remote: { ip: CALLER, port }, in: 0x1000 * sk, out: 0x2000 * sk });
  }

  /** an outbound connection from our port */
  outbound(sk: number, port: number): void {
    this.socks.set(sk, { local: { ip: SELF, port }, remote: BACKEND, in: 0x3000 * sk, out: 0x4000 * sk });
  }

  private ev(type: number, sk: number, tid: number, dir = 0, data?: Buffer, flags = 0): void {
    const s = this.socks.get(sk);
    assert.ok(s, `socket ${sk}`);
    const ts = (this.t += 1000);
    const seq = dir === 1 ? s.in : s.out;
    this.recs.push(sockRecord({ type, ts, enterTs: ts - 200, sk, pid: this.pid, tid, netns: NETNS, local: s.local, remote: s.remote, comm: this.comm, dir, seq: data ? seq : undefined, payload: data, flags }));
    if (data && dir === 1) s.in = (s.in + data.length) >>> 0;
    if (data && dir === 2) s.out = (s.out + data.length) >>> 0;
  }

  accept(sk: number, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_ACCEPT, sk, tid);
  }

  connect(sk: number, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_CONNECT, sk, tid);
  }

  read(sk: number, data: Buffer, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_DATA, sk, tid, 1, data);
  }

  write(sk: number, data: Buffer, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_DATA, sk, tid, 2, data);
  }

  /** bytes the kernel moved but did not report (a message shed by load shedding): the stream's seq advances */
  shed(sk: number, dir: 1 | 2, bytes: number): void {
    const s = this.socks.get(sk);
    assert.ok(s, `socket ${sk}`);
    if (dir === 1) s.in = (s.in + bytes) >>> 0;
    else s.out = (s.out + bytes) >>> 0;
  }

  /** the first kept write after shed ones (the kernel flags it) */
  writeAfterShed(sk: number, data: Buffer, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_DATA, sk, tid, 2, data, FLAGS.F_AFTER_SHED);
  }

  /** the first kept read after shed ones (the kernel flags it) */
  readAfterShed(sk: number, data: Buffer, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_DATA, sk, tid, 1, data, FLAGS.F_AFTER_SHED);
  }

  close(sk: number, tid = this.pid): void {
    this.ev(EVENT_TYPE.EV_SOCK_CLOSE, sk, tid);
  }
}

const get = (path: string, extra = '') => B(`GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}\r\n`);

function run(s: Script) {
  const r = runRecords(s.recs);
  const servers = r.spans.filter((x) => x.kind === SpanKind.SERVER);
  const clients = r.spans.filter((x) => x.kind === SpanKind.CLIENT);
  const target = (x: SpanRecord) => `${x.attributes['url.path']}?${x.attributes['url.query'] ?? ''}`;
  /** the SERVER span a CLIENT span hangs under, by the inbound request's target */
  const parentOf = (c: SpanRecord) => {
    const p = servers.find((x) => x.spanId === c.parentSpanId);
    return p ? target(p) : undefined;
  };
  const client = (t: string) => {
    const c = clients.find((x) => target(x) === t);
    assert.ok(c, `CLIENT ${t}`);
    return c;
  };
  return { ...r, servers, clients, parentOf, client };
}

describe('causality: outbound calls linked to the inbound request by evidence', () => {
  test('event loop, interleaved requests: connect, then order, transitive through responses', () => {
    const s = new Script(300);
    // two requests read one after the other; each handler connects to the backend in its read callback
    s.inbound(1, 50001);
    s.inbound(2, 50002);
    s.outbound(11, 41001);
    s.outbound(12, 41002);
    s.outbound(21, 41003); // keep-alive connections older than the agent: no connect seen
    s.outbound(22, 41004);
    s.outbound(23, 41005);
    s.accept(1);
    s.accept(2);
    s.read(1, get('/dispatch?customer=1'));
    s.connect(11);
    s.read(2, get('/dispatch?customer=2'));
    s.connect(12);
    // the connections come up: each request is written in the connect callback, after the other read
    s.write(11, get('/customer?id=1'));
    s.write(12, get('/customer?id=2'));
    // customer 2 answers first: driver call from its response callback, on a kept-alive connection
    s.read(12, OK);
    s.write(21, get('/driver?customer=2'));
    s.read(11, OK);
    s.write(22, get('/driver?customer=1'));
    // driver 1 answers: a fan-out of two calls in that callback (one on a fresh connection)
    s.read(22, OK);
    s.write(23, get('/route?customer=1&i=0'));
    s.write(22, get('/route?customer=1&i=1'));
    s.read(21, OK);
    s.write(2, OK);
    s.read(23, OK);
    s.read(22, OK);
    s.write(1, OK);
    const r = run(s);
    assert.equal(r.servers.length, 2);
    assert.equal(r.clients.length, 6);
    const want: [string, string, string][] = [
      ['/customer?id=1', '/dispatch?customer=1', 'connect'],
      ['/customer?id=2', '/dispatch?customer=2', 'connect'],
      ['/driver?customer=2', '/dispatch?customer=2', 'event_loop'],
      ['/driver?customer=1', '/dispatch?customer=1', 'event_loop'],
      ['/route?customer=1&i=0', '/dispatch?customer=1', 'event_loop'],
    ];
    for (const [call, cause, rule] of want) {
      const c = r.client(call);
      assert.equal(r.parentOf(c), cause, call);
      assert.equal(c.attributes['strata.cause'], rule, call);
      assert.equal(c.traceId, r.servers.find((x) => x.spanId === c.parentSpanId)?.traceId);
    }
    // the second route call went out on the connection the first driver call used (its response was read)
    assert.equal(r.parentOf(r.client('/route?customer=1&i=1')), '/dispatch?customer=1');
    const st = r.correlator.stats;
    assert.equal(st.causesLinkedConnect, 2);
    assert.equal(st.causesLinkedEventLoop, 4);
    assert.equal(st.causesAmbiguous, 0);
  });

  test('load shedding: the first request the kernel reports on a connection is not its first when shed ones went before (the connect spoke of those)', () => {
    const s = new Script(310, 'nginx');
    s.inbound(1, 50011);
    s.inbound(2, 50012);
    s.inbound(3, 50013);
    s.outbound(11, 41011);
    s.outbound(12, 41012);
    s.accept(1);
    s.accept(2);
    s.accept(3);
    // a kept request on a fresh upstream connection, answered
    s.read(1, get('/a'));
    s.connect(11);
    s.write(11, get('/a'));
    s.read(11, OK);
    s.write(1, OK);
    // a shed request (none of its syscalls reported) needs another upstream connection: at its
    // connect the thread's last known read is /a's answer, so the connect contradicts every request
    s.shed(2, 1, get('/shed').length);
    s.connect(12);
    s.shed(12, 2, get('/shed').length);
    s.shed(12, 1, OK.length);
    s.shed(2, 2, OK.length);
    // the next kept request goes out on that connection, in its read's callback
    s.read(3, get('/k'));
    s.writeAfterShed(12, get('/k'));
    s.read(12, OK);
    s.write(3, OK);
    const r = run(s);
    assert.equal(r.parentOf(r.client('/a?')), '/a?');
    assert.equal(r.client('/a?').attributes['strata.cause'], 'connect');
    const k = r.client('/k?');
    assert.equal(r.parentOf(k), '/k?', 'linked by the event loop, not left ambiguous by a connect made for a shed request');
    assert.equal(k.attributes['strata.cause'], 'event_loop');
    assert.equal(r.correlator.stats.causesAmbiguous, 0);
  });

  test('a request whose answer was shed (in flight as a window closed): cut, with its whole local trace; the next exchanges keep their own answers', () => {
    const s = new Script(330);
    const ok = (body: string) => B(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    s.inbound(1, 50031);
    s.outbound(11, 41031);
    s.accept(1);
    s.connect(11);
    // /a: read, proxied and answered upstream; the programs detach before the proxy answers it
    s.read(1, get('/a'));
    s.write(11, get('/a'));
    s.read(11, ok('a'));
    s.shed(1, 2, ok('a').length);
    // unseen while the programs were detached: another request on both connections
    s.shed(1, 1, get('/u').length);
    s.shed(11, 2, get('/u').length);
    s.shed(11, 1, ok('u').length);
    s.shed(1, 2, ok('u').length);
    // the next window: the first messages each way after the pause are flagged
    s.readAfterShed(1, get('/b'));
    s.writeAfterShed(11, get('/b'));
    s.readAfterShed(11, ok('bb'));
    s.writeAfterShed(1, ok('bb'));
    s.read(1, get('/c'));
    s.write(11, get('/c'));
    s.read(11, ok('ccc'));
    s.write(1, ok('ccc'));
    const r = run(s);
    const served = (t: string) => r.servers.filter((x) => x.attributes['url.path'] === t);
    assert.deepEqual(served('/a'), [], '/a: its answer was not seen');
    assert.equal(r.clients.filter((x) => x.attributes['url.path'] === '/a').length, 0, 'nor its upstream call (its local trace)');
    // each later exchange with its own answer, not the one before's
    for (const [t, bytes] of [['/b', ok('bb').length], ['/c', ok('ccc').length]] as const) {
      assert.equal(served(t).length, 1, t);
      assert.equal(served(t)[0]?.attributes['strata.response.bytes'], bytes, `${t}: its own response`);
      assert.equal(r.parentOf(r.client(`${t}?`)), `${t}?`);
      assert.equal(r.client(`${t}?`).attributes['strata.response.bytes'], bytes);
    }
    assert.equal(r.correlator.stats.cutExchanges, 1, "the proxy's SERVER exchange of /a (its CLIENT one was whole, and goes with its root)");
    assert.equal(r.correlator.stats.incomplete, 0);
  });

  test('a kept-alive connection the agent joined mid-response: once a request shows it is HTTP, its responses count as reads of the call (transitive links resume)', () => {
    const s = new Script(320);
    s.inbound(1, 50021);
    s.outbound(11, 41021); // older than the agent: no connect seen
    // the tail of a response in flight when the agent attached: not a request, the role unknown yet
    s.read(11, B('{"tail":"of an earlier answer"}'));
    s.accept(1);
    s.read(1, get('/d'));
    s.write(11, get('/r1'));
    s.read(11, OK);
    // the second call from the first one's response callback
    s.write(11, get('/r2'));
    s.read(11, OK);
    s.write(1, OK);
    const r = run(s);
    assert.equal(r.parentOf(r.client('/r1?')), '/d?');
    const r2 = r.client('/r2?');
    assert.equal(r.parentOf(r2), '/d?', 'linked through the response of /r1');
    assert.equal(r2.attributes['strata.cause'], 'event_loop');
    assert.equal(r.correlator.stats.causesAmbiguous, 0);
  });

  test('a call after its request was answered (a timer), or after a read of nothing known: unlinked, counted, marked', () => {
    const s = new Script(301);
    s.inbound(1, 50001);
    s.inbound(2, 50002);
    s.inbound(3, 50003);
    s.outbound(11, 41001);
    s.outbound(12, 41002);
    s.outbound(13, 41003); // a non-HTTP connection (a cache)
    s.read(1, get('/a'));
    s.write(1, OK); // answered at once
    s.read(2, get('/b')); // in progress, read on... the same thread, then:
    s.read(13, B('+PONG\r\n')); // the last read is of nothing HTTP
    s.write(11, get('/after-cache'));
    s.read(3, get('/c'));
    s.write(3, OK);
    s.write(12, get('/timer')); // the last read is of /c, already answered
    s.read(11, OK);
    s.read(12, OK);
    s.write(2, OK);
    const r = run(s);
    for (const call of ['/after-cache?', '/timer?']) {
      const c = r.client(call);
      assert.equal(c.parentSpanId, undefined, `${call}: its own local root`);
      assert.equal(c.attributes['strata.cause'], 'ambiguous', call);
      assert.ok(!r.servers.some((x) => x.traceId === c.traceId), `${call}: in no request's trace`);
    }
    assert.equal(r.correlator.stats.causesAmbiguous, 2);
  });

  test('pipelined requests in one read: a proxy forwarding them is told apart by target; an app calling elsewhere is ambiguous', () => {
    const proxy = new Script(302, 'nginx');
    proxy.inbound(1, 50001);
    proxy.outbound(11, 41001);
    proxy.read(1, Buffer.concat([get('/p/1'), get('/p/2')]));
    proxy.write(11, get('/p/1'));
    proxy.read(11, OK);
    proxy.write(1, OK); // answers /p/1, then takes /p/2 from its buffer (no read)
    proxy.write(11, get('/p/2'));
    proxy.read(11, OK);
    proxy.write(1, OK);
    const p = run(proxy);
    assert.equal(p.parentOf(p.client('/p/1?')), '/p/1?');
    assert.equal(p.parentOf(p.client('/p/2?')), '/p/2?');
    assert.equal(p.correlator.stats.causesAmbiguous, 0);

    const app = new Script(303);
    app.inbound(1, 50001);
    app.outbound(11, 41001);
    app.outbound(12, 41002);
    app.read(1, Buffer.concat([get('/q/1'), get('/q/2')]));
    app.write(11, get('/backend'));
    app.write(12, get('/backend'));
    app.read(11, OK);
    app.read(12, OK);
    app.write(1, Buffer.concat([OK, OK]));
    const a = run(app);
    assert.equal(a.clients.length, 2);
    for (const c of a.clients) {
      assert.equal(c.parentSpanId, undefined);
      assert.equal(c.attributes['strata.cause'], 'ambiguous');
    }
    assert.equal(a.correlator.stats.causesAmbiguous, 2);
  });

  test('thread per request: each handler thread\'s calls go to the request it read, whatever the other threads do', () => {
    const s = new Script(400, 'python3');
    s.inbound(1, 50001);
    s.inbound(2, 50002);
    s.outbound(11, 41001);
    s.outbound(12, 41002);
    s.outbound(13, 41003);
    s.accept(1, 400);
    s.accept(2, 400);
    s.read(1, get('/dispatch?customer=1'), 401);
    s.read(2, get('/dispatch?customer=2'), 402);
    s.connect(12, 402);
    s.connect(11, 401);
    s.write(11, get('/customer?id=1'), 401);
    s.write(12, get('/customer?id=2'), 402);
    s.read(11, OK, 401);
    s.write(11, get('/driver?customer=1'), 401); // the same connection, its response read on this thread
    s.read(12, OK, 402);
    s.connect(13, 402);
    s.write(13, get('/driver?customer=2'), 402);
    s.read(11, OK, 401);
    s.write(1, OK, 401);
    s.read(13, OK, 402);
    s.write(2, OK, 402);
    const r = run(s);
    for (const [call, cause, rule] of [
      ['/customer?id=1', '/dispatch?customer=1', 'connect'], ['/customer?id=2', '/dispatch?customer=2', 'connect'],
      ['/driver?customer=1', '/dispatch?customer=1', 'thread'], ['/driver?customer=2', '/dispatch?customer=2', 'connect'],
    ]) {
      const c = r.client(call as string);
      assert.equal(r.parentOf(c), cause, call);
      assert.equal(c.attributes['strata.cause'], rule, call);
    }
    assert.equal(r.correlator.stats.causesLinkedThread, 1);
    assert.equal(r.correlator.stats.causesAmbiguous, 0);
  });

  test('forwarded X-Request-ID or trace context wins over the thread\'s order', () => {
    const s = new Script(304, 'nginx');
    s.inbound(1, 50001);
    s.inbound(2, 50002);
    s.outbound(11, 41001);
    s.outbound(12, 41002);
    s.read(1, get('/a', 'X-Request-ID: r-1\r\n'));
    s.read(2, get('/b', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n'));
    // both written after the second read: the order alone would say /b for both
    s.write(11, get('/a', 'X-Request-ID: r-1\r\n'));
    s.write(12, get('/b', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01\r\n'));
    s.read(11, OK);
    s.read(12, OK);
    s.write(1, OK);
    s.write(2, OK);
    const r = run(s);
    assert.equal(r.parentOf(r.client('/a?')), '/a?');
    assert.equal(r.client('/a?').attributes['strata.cause'], 'request_id');
    assert.equal(r.parentOf(r.client('/b?')), '/b?');
    assert.equal(r.client('/b?').attributes['strata.cause'], 'context');
  });

  test('a process serving nothing: its calls are roots, marked none, not counted as ambiguous', () => {
    const s = new Script(305, 'curl');
    s.outbound(11, 41001);
    s.connect(11);
    s.write(11, get('/x'));
    s.read(11, OK);
    const r = run(s);
    assert.equal(r.client('/x?').attributes['strata.cause'], 'none');
    assert.equal(r.correlator.stats.causesNone, 1);
    assert.equal(r.correlator.stats.causesAmbiguous, 0);
  });
});
