// strata's spans beside an instrumented app's (its SDK reads and sends traceparent): the id rules
// of correlate/ids.ts and stitch.ts. strata's spans follow the wire: a SERVER is the child of the
// CLIENT that wrote its bytes (same node: by message key; across nodes: the peer's mapping), even
// when the request's traceparent names another span (a proxy forwarded the caller's unchanged).
// A SERVER with no incoming context whose outbound calls carry one (the SDK started a trace there)
// adopts that trace as a root, its wire parent kept as attributes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { Correlator, type StitchLink, type StitchMapping } from '../../agent/src/correlate/correlator.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { EVENT_TYPE } from '../../agent/src/events/layout.generated.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { correlatorOptions } from '../helpers/options.ts';
import { MemorySink } from '../helpers/replay.ts';
import { type Endpoint, sockRecord } from '../helpers/synth.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const S = 1e9;
const T0 = 1 * S;
const CALLER: Endpoint = { ip: [10, 244, 1, 10], port: 40000 }; // the ingress proxy
const APP: Endpoint = { ip: [10, 244, 2, 20], port: 8080 }; // the instrumented app
const DOWN: Endpoint = { ip: [10, 244, 3, 30], port: 9000 }; // the app's downstream (not traced here)
const ip = (e: Endpoint) => e.ip.join('.');
const CALLER_NETNS = 4026532001;
const APP_NETNS = 4026532002;

// the client's own span (a browser, an upstream service): forwarded unchanged by the proxy
const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const tp = (trace: string, span: string) => `traceparent: 00-${trace}-${span}-01\r\n`;
// what the app's SDK sends on its outbound calls when it started the trace itself
const SDK_TRACE = '0af7651916cd43dd8448eb211c80319c';
const SDK_CALL = ['b7ad6b7169203331', 'c8be7c8270314442'];

interface Shape {
  /** headers of the request into the app (the proxy forwards the client's) */
  inHeader?: string;
  /** one outbound call of the app per entry, with these headers (the SDK's traceparent) */
  out?: string[];
  /** which ends this node traces: the proxy's socket, the app's sockets */
  caller: boolean;
  app: boolean;
}

/** the proxy's request to the app; the app's outbound calls while it handles it; the answer */
function events(o: Shape): Buffer[] {
  const recs: Buffer[] = [];
  let t = 1_000_000;
  const tick = () => (t += 1000);
  const proxy = { sk: 0x1000, pid: 100, netns: CALLER_NETNS, local: CALLER, remote: APP, comm: 'nginx' };
  const app = { sk: 0x2000, pid: 200, netns: APP_NETNS, local: APP, remote: CALLER, comm: 'node' };
  const req = B(`GET /dispatch HTTP/1.1\r\nHost: app\r\n${o.inHeader ?? ''}\r\n`);
  const resp = B('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  if (o.caller) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_CONNECT, ts: tick(), ...proxy }));
  if (o.app) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: tick(), ...app }));
  if (o.caller) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: tick(), ...proxy, dir: 2, seq: 1000, payload: req }));
  if (o.app) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: tick(), ...app, dir: 1, seq: 1000, payload: req }));
  if (o.app) {
    (o.out ?? []).forEach((h, i) => {
      const out = { sk: 0x3000 + i, pid: 200, netns: APP_NETNS, local: { ip: APP.ip, port: 50000 + i }, remote: DOWN, comm: 'node' };
      recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_CONNECT, ts: tick(), ...out }));
      recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: tick(), ...out, dir: 2, seq: 5000, payload: B(`GET /customer?i=${i} HTTP/1.1\r\nHost: down\r\n${h}\r\n`) }));
      recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: tick(), ...out, dir: 1, seq: 9000, payload: resp }));
    });
    recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: tick(), ...app, dir: 2, seq: 2000, payload: resp }));
  }
  if (o.caller) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: tick(), ...proxy, dir: 1, seq: 2000, payload: resp }));
  return recs;
}

class FakeLink implements StitchLink {
  readonly published: StitchMapping[] = [];
  private readonly peers: Set<string>;
  constructor(peers: string[]) {
    this.peers = new Set(peers);
  }
  isPeerAddress(a: string): boolean {
    return this.peers.has(a);
  }
  publish(_ip: string, m: StitchMapping): void {
    this.published.push(m);
  }
}

/** one node's agent: `peers` are the addresses whose node has an agent of its own */
function node(name: string, shape: Shape, peers: string[] = []) {
  const topo = new StaticTopology(name, [
    { name: 'ingress-nginx-abc12', namespace: 'ingress-nginx', uid: 'u1', node: shape.caller && !shape.app ? name : 'node-a', ip: ip(CALLER), netnsInode: CALLER_NETNS, hostVeth: 'vi', labels: {} },
    { name: 'frontend-xyz', namespace: 'default', uid: 'u2', node: shape.app ? name : 'node-b', ip: ip(APP), netnsInode: APP_NETNS, hostVeth: 'va', labels: {} },
  ]);
  const sink = new MemorySink();
  const link = new FakeLink(peers);
  const c = new Correlator(sink, topo, correlatorOptions(), (ns) => [Math.floor(ns / 1e9), ns % 1e9], undefined, link);
  new Decoder(c).decode(Buffer.concat(events(shape)));
  c.tick(T0);
  return { c, sink, link };
}

const kind = (spans: SpanRecord[], k: SpanKind) => spans.filter((s) => s.kind === k);
const one = (spans: SpanRecord[], k: SpanKind, path: string) => {
  const xs = spans.filter((s) => s.kind === k && String(s.attributes['url.path']) === path);
  assert.equal(xs.length, 1, `one ${k === SpanKind.SERVER ? 'SERVER' : 'CLIENT'} ${path}: ${xs.length}`);
  return xs[0] as SpanRecord;
};

describe('instrumented, the client sends a traceparent: strata follows the wire', () => {
  test('same node: the SERVER is the child of the proxy CLIENT that wrote its bytes, not of the span the forwarded header names', () => {
    const { sink } = node('node-b', { inHeader: tp(CLIENT_TRACE, CLIENT_SPAN), caller: true, app: true });
    const client = one(sink.spans, SpanKind.CLIENT, '/dispatch');
    const server = one(sink.spans, SpanKind.SERVER, '/dispatch');
    // the proxy's CLIENT is the top of strata's tree here: the child of the client's own span
    assert.equal(client.traceId, CLIENT_TRACE);
    assert.equal(client.parentSpanId, CLIENT_SPAN);
    assert.equal(server.traceId, CLIENT_TRACE, 'the trace id is the one the client sent');
    assert.equal(server.parentSpanId, client.spanId, 'under strata\'s CLIENT (message key)');
    assert.equal(server.attributes['strata.context.span_id'], CLIENT_SPAN, 'the span the header names (the SDK\'s SERVER hangs there) is recorded');
    assert.equal(client.attributes['strata.context.span_id'], undefined, 'not where the header names the parent itself');
  });

  test('across nodes: held until the caller\'s node maps the key, then under its CLIENT span in the client\'s trace', () => {
    const a = node('node-a', { inHeader: tp(CLIENT_TRACE, CLIENT_SPAN), caller: true, app: false });
    const client = one(a.sink.spans, SpanKind.CLIENT, '/dispatch');
    assert.deepEqual(a.link.published.map((m) => [m.traceId, m.parentSpanId]), [[CLIENT_TRACE, client.spanId]]);

    const b = node('node-b', { inHeader: tp(CLIENT_TRACE, CLIENT_SPAN), caller: false, app: true }, [ip(CALLER)]);
    assert.equal(b.sink.spans.length, 0, 'a request with a traceparent from a peer\'s pod waits for the peer too');
    assert.equal(b.c.stats.stitchHeld, 1);
    b.c.onPeerMappings(a.link.published, T0 + 0.1 * S, { node: 'node-a', skewMs: 0 });
    const server = one(b.sink.spans, SpanKind.SERVER, '/dispatch');
    assert.equal(server.traceId, CLIENT_TRACE);
    assert.equal(server.parentSpanId, client.spanId, 'under node-a\'s strata CLIENT, not the client\'s span the header names');
    assert.equal(server.attributes['strata.stitch'], 'peer');
    assert.equal(server.attributes['strata.context.span_id'], CLIENT_SPAN);
    assert.equal(b.c.stats.stitched, 1);
  });

  test('across nodes, no mapping within the hold: the header\'s context, marked as a timeout', () => {
    const b = node('node-b', { inHeader: tp(CLIENT_TRACE, CLIENT_SPAN), caller: false, app: true }, [ip(CALLER)]);
    b.c.tick(T0 + 10 * S);
    const server = one(b.sink.spans, SpanKind.SERVER, '/dispatch');
    assert.equal(server.traceId, CLIENT_TRACE);
    assert.equal(server.parentSpanId, CLIENT_SPAN, 'falls back to the span the header names');
    assert.equal(server.attributes['strata.stitch'], 'timeout');
    assert.equal(b.c.stats.stitchTimeouts, 1);
  });

  test('the app\'s CLIENT spans continue the SERVER\'s trace; the SDK span its header names is recorded', () => {
    const sdkServerCall = 'aaaaaaaaaaaaaaaa';
    const { sink, c, link } = node('node-b', { inHeader: tp(CLIENT_TRACE, CLIENT_SPAN), out: [tp(CLIENT_TRACE, sdkServerCall)], caller: true, app: true });
    const server = one(sink.spans, SpanKind.SERVER, '/dispatch');
    const call = one(sink.spans, SpanKind.CLIENT, '/customer');
    assert.equal(call.traceId, CLIENT_TRACE);
    assert.equal(call.parentSpanId, server.spanId);
    assert.equal(call.attributes['strata.context.span_id'], sdkServerCall, 'the SDK\'s CLIENT span of the same call');
    assert.equal(c.stats.traceAdopted, 0, 'an incoming context: nothing to adopt');
    assert.ok(link.published.some((m) => m.traceId === CLIENT_TRACE && m.parentSpanId === call.spanId), 'the callee\'s node learns strata\'s CLIENT span');
  });
});

describe('instrumented, no incoming header: strata adopts the trace the SDK started', () => {
  test('a SERVER with no context whose calls carry one: a root of that trace; its calls under it; the callee\'s node told', () => {
    const { sink, c, link } = node('node-b', { out: [tp(SDK_TRACE, SDK_CALL[0] as string), tp(SDK_TRACE, SDK_CALL[1] as string)], caller: false, app: true });
    const server = one(sink.spans, SpanKind.SERVER, '/dispatch');
    assert.equal(server.traceId, SDK_TRACE, 'the trace id the app\'s outbound calls carry');
    assert.equal(server.parentSpanId, undefined, 'a root: the SDK\'s own SERVER span is not on the wire');
    assert.equal(server.attributes['strata.context.adopted'], true);
    assert.equal(server.attributes['strata.wire.parent.span_id'], undefined, 'no traced caller');
    const calls = kind(sink.spans, SpanKind.CLIENT);
    assert.equal(calls.length, 2);
    for (const [i, call] of calls.entries()) {
      assert.equal(call.traceId, SDK_TRACE);
      assert.equal(call.parentSpanId, server.spanId);
      assert.equal(call.attributes['strata.context.span_id'], SDK_CALL[i]);
    }
    assert.deepEqual(link.published.map((m) => m.traceId), [SDK_TRACE, SDK_TRACE], 'the mappings carry the adopted trace');
    assert.equal(c.stats.traceAdopted, 1);
    assert.equal(c.stats.traceAdoptConflicts, 0);
    for (const h of kind(sink.spans, SpanKind.INTERNAL)) assert.equal(h.traceId, SDK_TRACE, 'hop spans too');
  });

  test('same node as its caller: the upstream spans keep their trace; the wire parent is recorded on the adopter', () => {
    const { sink } = node('node-b', { out: [tp(SDK_TRACE, SDK_CALL[0] as string)], caller: true, app: true });
    const proxy = one(sink.spans, SpanKind.CLIENT, '/dispatch');
    const server = one(sink.spans, SpanKind.SERVER, '/dispatch');
    assert.notEqual(proxy.traceId, SDK_TRACE, 'the proxy\'s span stays in the trace strata derived for it');
    assert.equal(server.traceId, SDK_TRACE);
    assert.equal(server.parentSpanId, undefined);
    assert.equal(server.attributes['strata.wire.parent.trace_id'], proxy.traceId);
    assert.equal(server.attributes['strata.wire.parent.span_id'], proxy.spanId);
    assert.equal(one(sink.spans, SpanKind.CLIENT, '/customer').parentSpanId, server.spanId);
  });

  test('across nodes: the peer\'s mapping becomes the wire parent, the trace id stays the adopted one', () => {
    const a = node('node-a', { caller: true, app: false });
    const proxy = one(a.sink.spans, SpanKind.CLIENT, '/dispatch');
    const b = node('node-b', { out: [tp(SDK_TRACE, SDK_CALL[0] as string)], caller: false, app: true }, [ip(CALLER)]);
    assert.equal(b.sink.spans.length, 0, 'held for the wire parent');
    b.c.onPeerMappings(a.link.published, T0 + 0.1 * S, { node: 'node-a', skewMs: 0 });
    const server = one(b.sink.spans, SpanKind.SERVER, '/dispatch');
    assert.equal(server.traceId, SDK_TRACE);
    assert.equal(server.parentSpanId, undefined);
    assert.equal(server.attributes['strata.stitch'], 'peer');
    assert.equal(server.attributes['strata.wire.parent.trace_id'], proxy.traceId);
    assert.equal(server.attributes['strata.wire.parent.span_id'], proxy.spanId);
    assert.deepEqual(b.link.published.map((m) => m.traceId), [SDK_TRACE]);
  });

  test('calls naming two different traces: the first is adopted, the other counted', () => {
    const other = 'ffffffffffffffffffffffffffffffff';
    const { sink, c } = node('node-b', { out: [tp(SDK_TRACE, SDK_CALL[0] as string), tp(other, SDK_CALL[1] as string)], caller: false, app: true });
    assert.equal(one(sink.spans, SpanKind.SERVER, '/dispatch').traceId, SDK_TRACE);
    assert.equal(c.stats.traceAdoptConflicts, 1);
    assert.ok(kind(sink.spans, SpanKind.CLIENT).every((s) => s.traceId === SDK_TRACE), 'strata\'s calls follow their parent');
  });

  test('no header anywhere: nothing adopted, ids derived from the message key as before', () => {
    const { sink, c } = node('node-b', { out: [''], caller: false, app: true });
    const server = one(sink.spans, SpanKind.SERVER, '/dispatch');
    assert.equal(server.attributes['strata.context.adopted'], undefined);
    assert.equal(one(sink.spans, SpanKind.CLIENT, '/customer').traceId, server.traceId);
    assert.equal(c.stats.traceAdopted, 0);
  });
});
