// Cross-node stitching without headers, the correlator's half: two agents see the same message
// (node A: the caller's write; node B: the callee's read). A publishes "key K: trace T, parent S,
// sampled"; B holds the callee's local trace until that arrives, or gives up after stitch.holdNs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { Correlator, type StitchLink, type StitchMapping } from '../../agent/src/correlate/correlator.ts';
import { type Exchange, ROLE_SERVER } from '../../agent/src/correlate/exchanges.ts';
import { PeerStitch } from '../../agent/src/correlate/stitch.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { CLIENT, conversation, type Turn } from '../helpers/conversation.ts';
import { type CorrelatorOverrides, correlatorOptions } from '../helpers/options.ts';
import { MemorySink } from '../helpers/replay.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const whole = (d: Buffer) => [d];
const turn = (path: string, headers = '', status = '200 OK'): Turn => ({
  request: B(`GET ${path} HTTP/1.1\r\nHost: app\r\n${headers}\r\n`),
  response: B(`HTTP/1.1 ${status}\r\nContent-Length: 2\r\n\r\nok`),
});
const CALLER_IP = CLIENT.ip.join('.');
const S = 1e9;
// the conversation's events lie within the first few ms; ticks from here on see them all ended
const T0 = 1 * S;

class FakeLink implements StitchLink {
  readonly published: { ip: string; m: StitchMapping }[] = [];
  private readonly peers: Set<string>;
  constructor(peers: Set<string>) {
    this.peers = peers;
  }
  isPeerAddress(ip: string): boolean {
    return this.peers.has(ip);
  }
  publish(ip: string, m: StitchMapping): void {
    this.published.push({ ip, m });
  }
}

function agent(link: FakeLink, over: CorrelatorOverrides = {}) {
  const topo = new StaticTopology('node-b', [
    { name: 'ingress-nginx-abc12', namespace: 'ingress-nginx', uid: 'u1', node: 'node-a', ip: CALLER_IP, netnsInode: 4026532001, hostVeth: 'vi', labels: {} },
    { name: 'frontend-xyz', namespace: 'default', uid: 'u2', node: 'node-b', ip: '10.244.1.20', netnsInode: 4026532002, hostVeth: 'va', labels: {} },
  ]);
  const sink = new MemorySink();
  const c = new Correlator(sink, topo, correlatorOptions(over), (ns) => [Math.floor(ns / 1e9), ns % 1e9], undefined, link);
  const feed = (recs: Buffer[]) => new Decoder(c).decode(Buffer.concat(recs));
  return { c, sink, feed, link };
}

/** node A traces the caller only and publishes what its CLIENT spans are; returns them and the mappings */
function caller(turns: Turn[], over: CorrelatorOverrides = {}) {
  const a = agent(new FakeLink(new Set()), over);
  a.feed(conversation(turns, whole, whole, { clientOnly: true }));
  a.c.tick(T0);
  return a;
}

const servers = (spans: SpanRecord[]) => spans.filter((s) => s.kind === SpanKind.SERVER);

describe('stitch: the callee waits for the caller\'s node', () => {
  const turns = [turn('/dispatch?customer=1'), turn('/dispatch?customer=2')];

  test('held until the mapping, then the SERVER span joins the caller\'s trace under its CLIENT span', () => {
    const a = caller(turns);
    const clients = a.sink.spans.filter((s) => s.kind === SpanKind.CLIENT);
    assert.equal(clients.length, 2, 'node A exported its two CLIENT spans');
    assert.equal(a.link.published.length, 2, 'and published one mapping per request');
    assert.equal(a.c.stats.stitchPublished, 2);

    const b = agent(new FakeLink(new Set([CALLER_IP])));
    b.feed(conversation(turns, whole, whole, { serverOnly: true }));
    b.c.tick(T0);
    assert.equal(b.sink.spans.length, 0, 'nothing leaves node B before the mapping');
    assert.equal(b.c.stats.stitchHeld, 2);
    b.c.tick(T0 + 0.5 * S);
    assert.equal(b.sink.spans.length, 0, 'still within stitch.holdNs');

    b.c.onPeerMappings(a.link.published.map((p) => p.m), T0 + 0.6 * S, { node: 'node-a', skewMs: -3 });
    const got = servers(b.sink.spans);
    assert.equal(got.length, 2);
    for (const s of got) {
      const parent = clients.find((c) => c.spanId === s.parentSpanId);
      assert.ok(parent, `SERVER ${String(s.attributes['url.path'])} has node A's CLIENT span as parent`);
      assert.equal(s.traceId, parent.traceId);
      assert.equal(s.attributes['url.path'], parent.attributes['url.path']);
      assert.equal(s.attributes['strata.stitch'], 'peer');
      assert.equal(s.attributes['strata.stitch.peer'], 'node-a');
      assert.equal(s.attributes['strata.stitch.skew_ms'], -3, 'the skew is recorded on the span, not hidden');
      // B's inbound hop spans are in the same trace
      for (const h of b.sink.spans.filter((x) => x.kind === SpanKind.INTERNAL && x.parentSpanId === s.spanId)) assert.equal(h.traceId, s.traceId);
    }
    assert.equal(b.c.stats.stitched, 2);
    assert.equal(b.c.stats.stitchHeld, 0);
    assert.equal(b.c.stats.stitchTimeouts, 0);
  });

  test('no mapping within the hold: exported as its own trace, marked and counted', () => {
    const b = agent(new FakeLink(new Set([CALLER_IP])), { stitch: { holdNs: 0.3 * S, maxHeldTraces: 16, maxMappings: 16, mappingTtlNs: 5 * S } });
    b.feed(conversation(turns, whole, whole, { serverOnly: true }));
    b.c.tick(T0);
    b.c.tick(T0 + 0.29 * S);
    assert.equal(b.sink.spans.length, 0);
    b.c.tick(T0 + 0.31 * S);
    const got = servers(b.sink.spans);
    assert.equal(got.length, 2);
    for (const s of got) {
      assert.equal(s.attributes['strata.stitch'], 'timeout');
      assert.equal(s.parentSpanId, undefined, 'a root of its own');
    }
    assert.equal(b.c.stats.stitchTimeouts, 2);
    // a mapping after the timeout changes nothing already exported; it is kept, then forgotten
    b.c.onPeerMappings(caller(turns).link.published.map((p) => p.m), T0 + 0.4 * S);
    assert.equal(b.c.stats.stitchEarlyMappings, 2);
    b.c.tick(T0 + 6 * S);
    assert.equal(b.c.stats.stitchMappingsExpired, 2);
  });

  test('a mapping that arrives before the spans is used at once', () => {
    const a = caller(turns);
    const b = agent(new FakeLink(new Set([CALLER_IP])));
    b.c.onPeerMappings(a.link.published.map((p) => p.m), T0 - 0.5 * S);
    b.feed(conversation(turns, whole, whole, { serverOnly: true }));
    b.c.tick(T0);
    const got = servers(b.sink.spans);
    assert.equal(got.length, 2);
    const clientIds = new Set(a.sink.spans.filter((s) => s.kind === SpanKind.CLIENT).map((s) => `${s.traceId}/${s.spanId}`));
    for (const s of got) assert.ok(clientIds.has(`${s.traceId}/${s.parentSpanId}`));
    assert.equal(b.c.stats.stitched, 2);
    assert.equal(b.c.stats.stitchHeldTotal, 0);
  });

  test('callers on this node or outside the cluster are not held; a request with a trace header from a peer is', () => {
    const notPeer = agent(new FakeLink(new Set()));
    notPeer.feed(conversation(turns, whole, whole, { serverOnly: true }));
    notPeer.c.tick(T0);
    assert.equal(servers(notPeer.sink.spans).length, 2);
    assert.equal(notPeer.c.stats.stitchHeldTotal, 0);

    // the header names the caller's SDK span or one further up (a proxy forwards it unchanged):
    // strata's SERVER waits for the CLIENT span that wrote its bytes (correlator-instrumented.test.ts)
    const tp = 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n';
    const withHeader = agent(new FakeLink(new Set([CALLER_IP])));
    withHeader.feed(conversation([turn('/with-context', tp)], whole, whole, { serverOnly: true }));
    withHeader.c.tick(T0);
    assert.equal(withHeader.sink.spans.length, 0);
    assert.equal(withHeader.c.stats.stitchHeldTotal, 1);
    withHeader.c.drain();
    const [s] = servers(withHeader.sink.spans);
    assert.equal(s?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736', 'no mapping: the header\'s context');
  });

  test('the sampling decision travels with the mapping', () => {
    // node A keeps nothing (ratio 0, no errors): its mappings say "not sampled", and B drops alike
    const a = caller(turns, { sampling: { ratio: 0 } });
    assert.equal(a.sink.spans.length, 0);
    assert.deepEqual(a.link.published.map((p) => p.m.flags), [0, 0]);
    const b = agent(new FakeLink(new Set([CALLER_IP])), { sampling: { ratio: 1 } });
    b.feed(conversation(turns, whole, whole, { serverOnly: true }));
    b.c.tick(T0);
    b.c.onPeerMappings(a.link.published.map((p) => p.m), T0);
    assert.equal(b.sink.spans.length, 0);
    assert.equal(b.c.stats.tracesSampledOut, 2);

    // and the other way round: A keeps (ratio 1), B would keep none on its own (ratio 0)
    const a1 = caller(turns, { sampling: { ratio: 1 } });
    assert.deepEqual(a1.link.published.map((p) => p.m.flags), [1, 1]);
    const b1 = agent(new FakeLink(new Set([CALLER_IP])), { sampling: { ratio: 0 } });
    b1.feed(conversation(turns, whole, whole, { serverOnly: true }));
    b1.c.tick(T0);
    b1.c.onPeerMappings(a1.link.published.map((p) => p.m), T0);
    assert.equal(servers(b1.sink.spans).length, 2);
    // an error on B's side is kept there whatever the flag (keepErrors)
    const b2 = agent(new FakeLink(new Set([CALLER_IP])), { sampling: { ratio: 1 } });
    const failing = [turn('/dispatch?customer=1', '', '503 Unavailable'), turn('/dispatch?customer=2')];
    b2.feed(conversation(failing, whole, whole, { serverOnly: true }));
    b2.c.tick(T0);
    b2.c.onPeerMappings(a.link.published.map((p) => p.m), T0);
    assert.deepEqual(servers(b2.sink.spans).map((s) => s.attributes['url.path']), ['/dispatch']);
    assert.equal(servers(b2.sink.spans)[0]?.attributes['http.response.status_code'], 503);
  });

  test('bounded: beyond stitch.maxHeldTraces the oldest waiting trace gives up', () => {
    const many = Array.from({ length: 10 }, (_, i) => turn(`/r/${i}`));
    const b = agent(new FakeLink(new Set([CALLER_IP])), { stitch: { holdNs: 10 * S, maxHeldTraces: 3, maxMappings: 16, mappingTtlNs: 5 * S } });
    b.feed(conversation(many, whole, whole, { serverOnly: true }));
    b.c.tick(T0);
    assert.equal(b.c.stats.stitchHeld, 3);
    assert.equal(b.c.stats.stitchHeldEvictions, 7);
    assert.equal(servers(b.sink.spans).length, 7);
    b.c.drain();
    assert.equal(servers(b.sink.spans).length, 10, 'drain releases the rest');
    assert.equal(b.c.stats.stitchTimeouts, 10);
    assert.equal(b.c.stats.stitchHeld, 0);
  });
});

describe('stitch: the held exchanges are bounded, not only the traces', () => {
  // PeerStitch alone, with the few fields of an exchange it reads
  const root = (key: string) => ({ reqKey: key, role: ROLE_SERVER, conn: { remoteIp: CALLER_IP }, headers: new Map() }) as unknown as Exchange;
  const child = (i: number) => ({ reqKey: `child-${i}` }) as unknown as Exchange;

  test('at maxHeldExchanges the oldest waiting traces give up (counted as evictions), the trace itself last', () => {
    const released: { key: string; held: number; mapped: boolean }[] = [];
    const st = new PeerStitch({ holdNs: 10 * S, maxHeldTraces: 10, maxMappings: 16, mappingTtlNs: 5 * S, maxHeldExchanges: 5 },
      new FakeLink(new Set([CALLER_IP])), (r, m, held) => released.push({ key: r.reqKey, held: held.length, mapped: m !== undefined }));
    const a = root('a');
    const b = root('b');
    assert.equal(st.hold(a, a, T0), true);
    assert.equal(st.hold(child(1), a, T0), true);
    assert.equal(st.hold(b, b, T0), true);
    assert.equal(st.hold(child(2), b, T0), true);
    assert.equal(st.hold(child(3), b, T0), true);
    assert.equal(st.stats.heldNow, 5);
    // one more: trace a (the oldest, 2 held) gives up and goes out as it is
    assert.equal(st.hold(child(4), b, T0), true);
    assert.deepEqual(released, [{ key: 'a', held: 2, mapped: false }]);
    assert.equal(st.stats.heldNow, 4);
    assert.equal(st.hold(child(5), b, T0), true);
    // b alone at the bound: b itself gives up, the exchange is not held
    assert.equal(st.hold(child(6), b, T0), false);
    assert.deepEqual(released.at(-1), { key: 'b', held: 5, mapped: false });
    assert.equal(st.stats.heldNow, 0);
    assert.equal(st.stats.heldEvictions, 2);
    assert.equal(st.stats.timeouts, 2);
    // what comes later of a given-up trace is not held either
    assert.equal(st.hold(child(7), b, T0), false);
  });

  test('the default bound is 16 x maxHeldTraces', () => {
    const st = new PeerStitch({ holdNs: 10 * S, maxHeldTraces: 1, maxMappings: 16, mappingTtlNs: 5 * S }, new FakeLink(new Set([CALLER_IP])), () => {});
    const a = root('a');
    let held = 0;
    for (let i = 0; i < 40 && st.hold(i === 0 ? a : child(i), a, T0); i++) held++;
    assert.equal(held, 16);
    assert.equal(st.stats.heldEvictions, 1);
  });
});
