// Hop spans from a message's first to its last byte: tail events (where a message's data ends at
// a TC or net_dev point, and when) move each point's last byte; a hop lasts as long as the longer
// of its first byte's and its last byte's trip, so a rate-limited device holds the message and
// the devices after it do not; a point whose end was not reported is counted and its hops fall
// back to the first byte. Hop span ids are derived per observing node.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { Correlator } from '../../agent/src/correlate/correlator.ts';
import { Hops, heldNs } from '../../agent/src/correlate/hops.ts';
import { hopBaseId } from '../../agent/src/correlate/ids.ts';
import type { HopRecord, ObservationPoint } from '../../agent/src/correlate/records.ts';
import { Decoder, type TailEvent } from '../../agent/src/events/decode.ts';
import { DIR, EVENT_TYPE, NETDEV_EVENT, NETDEV_POINT, TAIL_EVENT, TAIL_SRC } from '../../agent/src/events/layout.generated.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import type { IfaceInfo, PodInfo, Topology } from '../../agent/src/k8s/topology.ts';
import { StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { correlatorOptions } from '../helpers/options.ts';
import { MemorySink } from '../helpers/replay.ts';
import { type Endpoint, pktRecord, sockRecord, tailRecord } from '../helpers/synth.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const CLIENT: Endpoint = { ip: [10, 244, 1, 10], port: 40000 };
const SERVER: Endpoint = { ip: [10, 244, 1, 20], port: 8080 };
const C_NETNS = 4026532001;
const S_NETNS = 4026532002;
const INGRESS: PodInfo = { name: 'ingress-nginx-abc12', namespace: 'ingress-nginx', uid: 'u1', node: 'node-1', workload: 'ingress-nginx' };
const FRONTEND: PodInfo = { name: 'frontend-xyz', namespace: 'default', uid: 'u2', node: 'node-1', workload: 'frontend' };
const VI = 7;
const VA = 8;
const ETH0 = 2;

const topoOf = (nodeName: string): Topology => ({
  nodeName,
  podByNetns: (n) => (n === C_NETNS ? INGRESS : n === S_NETNS ? FRONTEND : undefined),
  iface(ifindex: number, netns?: number): IfaceInfo | undefined {
    if (netns === undefined) return ifindex === VI ? { name: 'vi-lab', pod: INGRESS, side: 'node' } : ifindex === VA ? { name: 'va-lab', pod: FRONTEND, side: 'node' } : undefined;
    if (ifindex !== ETH0) return undefined;
    return netns === C_NETNS ? { name: 'eth0', pod: INGRESS, side: 'pod' } : netns === S_NETNS ? { name: 'eth0', pod: FRONTEND, side: 'pod' } : undefined;
  },
});

/** a net_dev first-packet record (the decoder's layout) */
function netdevRecord(ts: number, netns: number, point: number, src: Endpoint, dst: Endpoint, seq: number, dataLen: number): Buffer {
  const b = Buffer.alloc(NETDEV_EVENT.SIZE);
  b.writeUInt16LE(EVENT_TYPE.EV_NETDEV, 0);
  b[2] = 1;
  b[3] = 2; // F_SEQ_VALID
  b.writeUInt32LE(NETDEV_EVENT.SIZE, 4);
  b.writeUInt32LE(ts % 2 ** 32, 8);
  b.writeUInt32LE(Math.floor(ts / 2 ** 32), 12);
  b.writeUInt32LE(ETH0, NETDEV_EVENT.ifindex);
  b.writeUInt32LE(netns, NETDEV_EVENT.netns);
  b.writeUInt32LE(seq >>> 0, NETDEV_EVENT.seq);
  b.writeUInt16LE(Math.min(dataLen, 65535), NETDEV_EVENT.data_len);
  b[NETDEV_EVENT.point] = point;
  b.set(src.ip, NETDEV_EVENT.tuple);
  b.set(dst.ip, NETDEV_EVENT.tuple + 16);
  b.writeUInt16LE(src.port, NETDEV_EVENT.tuple + 32);
  b.writeUInt16LE(dst.port, NETDEV_EVENT.tuple + 34);
  b.writeUInt16LE(2, NETDEV_EVENT.tuple + 36);
  return b;
}

const MS = 1_000_000;
const REQ_SEQ = 5000;
const RESP_SEQ = 9000;
const BODY = 200 * 1024;
const MSS = 1448;

/**
 * proxy -> app GET, and a BODY-byte response the app writes at once, seen at its eth0 (net_dev
 * queue, xmit), both host veths (TC), the proxy's eth0 (rx) and read by the proxy in two reads.
 * `hold` ns: how long the app's eth0 qdisc holds the response's last byte (a tbf); `tails`: which
 * points reported where the response ends there.
 */
function run(hold: number, tails = { queue: true, xmit: true, va: true, vi: true, rx: true }, nodeName = 'node-1'): { spans: SpanRecord[]; c: Correlator } {
  const request = B('GET /big HTTP/1.1\r\nHost: app\r\n\r\n');
  const head = B(`HTTP/1.1 200 OK\r\nContent-Length: ${BODY}\r\n\r\n`);
  const total = head.length + BODY;
  const end = RESP_SEQ + total;
  const cSide = { sk: 0x1111000, pid: 100, netns: C_NETNS, local: CLIENT, remote: SERVER, comm: 'nginx' };
  const sSide = { sk: 0x2222000, pid: 200, netns: S_NETNS, local: SERVER, remote: CLIENT, comm: 'node' };
  const t = 1_000_000_000;
  const r = t + 2 * MS; // the response's first byte is written
  const resp = (dt: number) => r + dt;
  const recs = [
    sockRecord({ type: EVENT_TYPE.EV_SOCK_CONNECT, ts: t, ...cSide }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: t + 10, ...sSide }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 1010, enterTs: t + 1000, ...cSide, dir: DIR.DIR_OUT, seq: REQ_SEQ, payload: request }),
    pktRecord({ ts: t + 1200, ifindex: VI, src: CLIENT, dst: SERVER, seq: REQ_SEQ, dataLen: request.length, dir: DIR.DIR_IN }),
    pktRecord({ ts: t + 1300, ifindex: VA, src: CLIENT, dst: SERVER, seq: REQ_SEQ, dataLen: request.length, dir: DIR.DIR_OUT }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 1500, enterTs: t + 1450, ...sSide, dir: DIR.DIR_IN, seq: REQ_SEQ, payload: request }),
    // one write of the whole response: the socket takes it in 0.3 ms
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: resp(300_000), enterTs: resp(0), ...sSide, dir: DIR.DIR_OUT, seq: RESP_SEQ, ret: total, payload: head, cap: head.length }),
    netdevRecord(resp(10_000), S_NETNS, NETDEV_POINT.QUEUE, SERVER, CLIENT, RESP_SEQ, MSS),
    netdevRecord(resp(12_000), S_NETNS, NETDEV_POINT.XMIT, SERVER, CLIENT, RESP_SEQ, MSS),
    pktRecord({ ts: resp(20_000), ifindex: VA, src: SERVER, dst: CLIENT, seq: RESP_SEQ, dataLen: MSS, dir: DIR.DIR_IN }),
    pktRecord({ ts: resp(30_000), ifindex: VI, src: SERVER, dst: CLIENT, seq: RESP_SEQ, dataLen: MSS, dir: DIR.DIR_OUT }),
    netdevRecord(resp(40_000), C_NETNS, NETDEV_POINT.RX, SERVER, CLIENT, RESP_SEQ, MSS),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: resp(60_000), enterTs: resp(50_000), ...cSide, dir: DIR.DIR_IN, seq: RESP_SEQ, ret: MSS, payload: head, cap: head.length }),
  ];
  // the last byte: queued 0.35 ms after the first (all of it taken at once), then held `hold` by the qdisc
  const qLast = resp(350_000);
  const xLast = qLast + hold;
  const tail = { src: SERVER, dst: CLIENT, seq: RESP_SEQ, endSeq: end };
  if (tails.queue) recs.push(tailRecord({ ...tail, ts: qLast, ifindex: ETH0, netns: S_NETNS, netdev: true, point: NETDEV_POINT.QUEUE }));
  if (tails.xmit) recs.push(tailRecord({ ...tail, ts: xLast, ifindex: ETH0, netns: S_NETNS, netdev: true, point: NETDEV_POINT.XMIT, queueTs: qLast }));
  if (tails.va) recs.push(tailRecord({ ...tail, ts: xLast + 8_000, ifindex: VA, point: DIR.DIR_IN }));
  if (tails.vi) recs.push(tailRecord({ ...tail, ts: xLast + 18_000, ifindex: VI, point: DIR.DIR_OUT }));
  if (tails.rx) recs.push(tailRecord({ ...tail, ts: xLast + 28_000, ifindex: ETH0, netns: C_NETNS, netdev: true, point: NETDEV_POINT.RX, final: true }));
  // the proxy reads the rest as it arrives, the last bytes after they reach its eth0
  recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: xLast + 48_000, enterTs: xLast + 40_000, ...cSide, dir: DIR.DIR_IN, seq: RESP_SEQ + MSS, ret: total - MSS }));
  const sink = new MemorySink();
  const c = new Correlator(sink, topoOf(nodeName), correlatorOptions(), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  new Decoder(c).decode(Buffer.concat(recs));
  c.drain();
  return { spans: sink.spans, c };
}

const ns = (x: [number, number]) => x[0] * 1e9 + x[1];
const dur = (s: SpanRecord) => ns(s.end) - ns(s.start);
const responseHops = (spans: SpanRecord[]) =>
  new Map(spans.filter((s) => s.kind === SpanKind.INTERNAL && s.attributes['strata.direction'] === 'response').map((s) => [s.name, dur(s)]));

describe('hop spans from first to last byte', () => {
  test('a tail event decodes to the point, the message and its end; a short one is malformed', () => {
    const seen: TailEvent[] = [];
    const d = new Decoder({ onSock: () => assert.fail(), onState: () => assert.fail(), onPkt: () => assert.fail(), onNetDev: () => assert.fail(), onTail: (e) => seen.push({ ...e }) });
    const rec = tailRecord({ ts: 5e9 + 7, ifindex: 9, netns: 4026531840, src: SERVER, dst: CLIENT, seq: 0xfffffff0, endSeq: 0x100, pkts: 142, netdev: true, point: NETDEV_POINT.XMIT, queueTs: 5e9, final: true });
    d.decode(rec);
    assert.equal(seen.length, 1);
    const e = seen[0] as TailEvent;
    assert.deepEqual([e.type, e.tsNs, e.queueTsNs, e.ifindex, e.netns, e.seq, e.endSeq, e.pkts, e.src, e.point, e.final],
      [EVENT_TYPE.EV_TAIL, 5e9 + 7, 5e9, 9, 4026531840, 0xfffffff0, 0x100, 142, TAIL_SRC.TAIL_NETDEV, NETDEV_POINT.XMIT, true]);
    assert.deepEqual([e.tuple.sport, e.tuple.dport, e.tuple.family], [SERVER.port, CLIENT.port, 2]);
    const short = Buffer.from(rec.subarray(0, TAIL_EVENT.SIZE - 8));
    short.writeUInt32LE(short.length, 4); // a record as long as it says, shorter than a tail event
    d.decode(short);
    assert.equal(d.stats.malformed, 1);
    assert.equal(seen.length, 1);
  });

  test('a qdisc that holds the last byte 400 ms: its span grows by that, every other hop stays short', () => {
    const base = responseHops(run(0).spans);
    const slow = responseHops(run(400 * MS).spans);
    assert.deepEqual([...slow.keys()].sort(), [...base.keys()].sort());
    assert.ok(slow.has('response frontend eth0 qdisc'), [...slow.keys()].join(', '));
    for (const [name, d] of slow) {
      const b = base.get(name) as number;
      if (name === 'response frontend eth0 qdisc') {
        // from the first byte queued to the last sent, less what the queue took at once
        assert.equal(d, 400 * MS, name);
        assert.ok(b < MS, `${name} without the hold: ${b}`);
      } else {
        assert.ok(d < MS && b < MS, `${name}: ${b} -> ${d} ns`);
        assert.equal(d, b, `${name} does not grow`);
      }
    }
  });

  test('the exchange spans contain the hops that now end at the last byte', () => {
    const { spans } = run(400 * MS);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.ok(client);
    for (const h of spans.filter((s) => s.kind === SpanKind.INTERNAL)) {
      assert.ok(ns(h.start) >= ns(client.start) && ns(h.end) <= ns(client.end), `${h.name} inside the CLIENT span`);
    }
    assert.ok(dur(client) >= 400 * MS);
  });

  test('a point that never reported its end is counted, and its hops use the first byte only', () => {
    const { spans, c } = run(400 * MS, { queue: true, xmit: true, va: true, vi: false, rx: true });
    const hops = responseHops(spans);
    assert.equal(c.stats.hopEndsUnknown, 1);
    assert.equal(hops.get('response frontend eth0 qdisc'), 400 * MS, 'the qdisc still holds it');
    // the hops on either side of vi-lab: the first byte's trip (10 us each), no stretch moved onto them
    assert.equal(hops.get('response frontend veth -> ingress-nginx veth'), 10_000);
    assert.equal(hops.get('response ingress-nginx veth -> ingress-nginx eth0'), 10_000);
    assert.equal(run(400 * MS).c.stats.hopEndsUnknown, 0);
  });

  test('an xmit tail also moves its queue point; a tail with no message on file is counted', () => {
    const topo = topoOf('node-1');
    const hops = new Hops(16, topo);
    const d = new Decoder({ onSock: () => {}, onState: () => {}, onPkt: (e) => hops.onPkt(e), onNetDev: (e) => hops.onNetDev(e), onTail: (e) => hops.onTail(e) });
    d.decode(Buffer.concat([
      netdevRecord(1000, S_NETNS, NETDEV_POINT.QUEUE, SERVER, CLIENT, RESP_SEQ, MSS),
      netdevRecord(1010, S_NETNS, NETDEV_POINT.XMIT, SERVER, CLIENT, RESP_SEQ, MSS),
      tailRecord({ ts: 9000, ifindex: ETH0, netns: S_NETNS, netdev: true, point: NETDEV_POINT.XMIT, queueTs: 2000, src: SERVER, dst: CLIENT, seq: RESP_SEQ, endSeq: RESP_SEQ + 3 * MSS }),
      // an older report after a newer one does not move the end back
      tailRecord({ ts: 9500, ifindex: ETH0, netns: S_NETNS, netdev: true, point: NETDEV_POINT.XMIT, queueTs: 1500, src: SERVER, dst: CLIENT, seq: RESP_SEQ, endSeq: RESP_SEQ + 2 * MSS }),
      tailRecord({ ts: 9000, ifindex: VA, point: DIR.DIR_IN, src: SERVER, dst: CLIENT, seq: RESP_SEQ + 77, endSeq: RESP_SEQ + 3 * MSS }),
    ]));
    const pts = hops.points(`<${CLIENT.ip.join('.')}:${CLIENT.port}/${RESP_SEQ}`);
    assert.deepEqual(pts.map((p) => [p.dir, p.tsNs, p.lastTsNs, p.endSeq]), [
      [NETDEV_POINT.QUEUE, 1000, 2000, RESP_SEQ + 3 * MSS],
      [NETDEV_POINT.XMIT, 1010, 9000, RESP_SEQ + 3 * MSS],
    ]);
    assert.equal(hops.stats.tailsUnmatched, 1);
    const out: HopRecord[] = [];
    hops.build(pts, 'k', 'response', (x) => [0, x], out, RESP_SEQ + 3 * MSS);
    // the qdisc held the last byte from 2000 (queued) to 9000 (sent): the span is placed there, not at the first byte
    assert.deepEqual(out.map((h) => [h.qdisc, h.start[1], h.end[1]]), [[true, 2000, 2000 + 7000]]);
  });

  test('held time: the longer of the first and the last byte trip, the first alone when an end is unknown', () => {
    const p = (tsNs: number, lastTsNs: number | undefined, endSeq?: number): ObservationPoint => ({ kind: 'tc', tsNs, name: 'x', lastTsNs, endSeq });
    assert.equal(heldNs(p(0, 100, 10), p(5, 900, 10), 10), 800); // bandwidth: the last byte waited
    assert.equal(heldNs(p(0, 100, 10), p(50, 150, 10), 10), 50); // latency: both alike
    assert.equal(heldNs(p(0, 100, 10), p(50, 900, 4), 10), 50); // b saw 4 of 10 bytes: its last is not the end
    assert.equal(heldNs(p(0, undefined, 10), p(5, 900, 10), 10), 900); // one packet at a: its first is its last
    const sock = (tsNs: number, lastTsNs?: number): ObservationPoint => ({ kind: 'write', tsNs, name: 'app', lastTsNs });
    assert.equal(heldNs(sock(0), p(5, 900, 10), 10), 5, 'a socket whose exchange has not finished');
    assert.equal(heldNs(sock(0, 10), p(5, 900, 10), 10), 890);
  });
});

describe('hop placement of holding stretches', () => {
  test('two stretches in a row that each held the last byte lie one after the other, not over each other', () => {
    const hops = new Hops(16, topoOf('node-1'));
    const END = 10;
    // the app's socket took the message at 0..10; TCP kept part back, so its last byte reached the
    // pod's eth0 at 1000; the qdisc there held it until 2000, when it reached the host veth
    const pts: ObservationPoint[] = [
      { kind: 'write', tsNs: 0, name: 'app', lastTsNs: 10 },
      { kind: 'tc', tsNs: 5, name: 'eth0', side: 'pod', netns: 7, lastTsNs: 1000, endSeq: END },
      { kind: 'tc', tsNs: 6, name: 'va', side: 'node', lastTsNs: 2000, endSeq: END },
    ];
    const out: HopRecord[] = [];
    hops.build(pts, 'k', 'response', (x) => [0, x], out, END);
    assert.deepEqual(out.map((h) => [h.start[1], h.end[1]]), [[10, 1000], [1000, 2000]], 'each from the last byte at its start to the last byte at its end');
    // a stretch that only delays (last byte's trip no longer than the first's) stays at the first byte
    const lat: HopRecord[] = [];
    hops.build([pts[0] as ObservationPoint, { kind: 'tc', tsNs: 50, name: 'eth0', side: 'pod', netns: 7, lastTsNs: 55, endSeq: END }], 'k2', 'response', (x) => [0, x], lat, END);
    assert.deepEqual(lat.map((h) => [h.start[1], h.end[1]]), [[0, 50]]);
  });
});

describe('hop span ids per observing node', () => {
  test('two nodes that see the same message key name its hops apart; one node alike every time', () => {
    const key = '>10.244.1.10:40000/5000';
    assert.notEqual(hopBaseId('node-1', key), hopBaseId('node-2', key));
    assert.equal(hopBaseId('node-1', key), hopBaseId('node-1', key));
    assert.notEqual(hopBaseId('node-1', key), hopBaseId('node-1', '>10.244.1.10:40000/5001'));
    const ids = (node: string) => run(0, undefined, node).spans.filter((s) => s.kind === SpanKind.INTERNAL).map((s) => s.spanId);
    const a = ids('node-1');
    const b = ids('node-2');
    assert.equal(a.length, 9, "3 request hops, 6 response hops (one of them the qdisc)");
    assert.equal(new Set([...a, ...b]).size, a.length + b.length, 'no hop span id shared between the nodes');
    assert.deepEqual(ids('node-1'), a, 'deterministic on one node');
  });
});

describe('a message\'s points in time order', () => {
  test('filed out of order (a socket write reported after its packets): time order, ties in filing order, again after more points', () => {
    const hops = new Hops(64, new StaticTopology('node-a'));
    const pt = (kind: ObservationPoint['kind'], tsNs: number, name: string): ObservationPoint => ({ kind, tsNs, name, side: 'node' });
    const key = '>10.0.0.1:40000/100';
    // the packets first, then the write that sent them (earlier time); two points at one time
    const filed = [pt('tc', 30, 'veth-a'), pt('netdev', 20, 'eth0'), pt('tc', 20, 'veth-b'), pt('write', 10, 'client')];
    for (const p of filed) hops.file(key, p);
    assert.deepEqual(hops.points(key).map((p) => p.name), ['client', 'eth0', 'veth-b', 'veth-a']);
    hops.file(key, pt('read', 25, 'server'));
    hops.file(key, pt('netdev', 5, 'early'));
    assert.deepEqual(hops.points(key).map((p) => [p.name, p.tsNs]), [['early', 5], ['client', 10], ['eth0', 20], ['veth-b', 20], ['server', 25], ['veth-a', 30]]);
    // the same as a stable sort of everything filed, in filing order
    const all = [...filed, pt('read', 25, 'server'), pt('netdev', 5, 'early')].sort((a, b) => a.tsNs - b.tsNs);
    assert.deepEqual(hops.points(key).map((p) => p.name), all.map((p) => p.name));
    assert.deepEqual(hops.points('>10.0.0.9:1/1'), []);
  });
});
