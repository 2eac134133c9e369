// Which layer each hop is, from the observation points around it (design.md): socket <-> the pod's
// own device (net_dev in the pod's netns) = pod; pod device <-> host-side veth (TC) = veth; veth <->
// veth = bridge; with no net_dev points, socket <-> veth = pod. Hop spans are named after the pods
// they join and filed under one service per layer and node, so Jaeger colours layers apart.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { Correlator, type NetDevEvent } from '../../agent/src/correlate/correlator.ts';
import { Hops, layerBetween } from '../../agent/src/correlate/hops.ts';
import type { HopRecord, ObservationPoint } from '../../agent/src/correlate/records.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { DIR, EVENT_TYPE, FLAGS } from '../../agent/src/events/layout.generated.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import type { IfaceInfo, PodInfo, Topology } from '../../agent/src/k8s/topology.ts';
import { correlatorOptions } from '../helpers/options.ts';
import { MemorySink } from '../helpers/replay.ts';
import { type Endpoint, pktRecord, sockRecord, v4Mapped } from '../helpers/synth.ts';

const B = (s: string) => Buffer.from(s, 'latin1');
const CLIENT: Endpoint = { ip: [10, 244, 1, 10], port: 40000 };
const SERVER: Endpoint = { ip: [10, 244, 1, 20], port: 8080 };
const C_NETNS = 4026532001;
const S_NETNS = 4026532002;
const INGRESS: PodInfo = { name: 'ingress-nginx-abc12', namespace: 'ingress-nginx', uid: 'u1', node: 'node-1', workload: 'ingress-nginx' };
const FRONTEND: PodInfo = { name: 'frontend-xyz', namespace: 'default', uid: 'u2', node: 'node-1', workload: 'frontend' };
const VI = 7; // host-side veth of the ingress pod
const VA = 8; // host-side veth of the frontend pod
const ETH0 = 2; // each pod's own eth0 (ifindex is per netns)
const NETDEV = { RX: 1, QUEUE: 2, XMIT: 3 };

const topo: Topology = {
  nodeName: 'node-1',
  podByNetns: (n) => (n === C_NETNS ? INGRESS : n === S_NETNS ? FRONTEND : undefined),
  iface(ifindex: number, netns?: number): IfaceInfo | undefined {
    if (netns === undefined) return ifindex === VI ? { name: 'vi-lab', pod: INGRESS, side: 'node' } : ifindex === VA ? { name: 'va-lab', pod: FRONTEND, side: 'node' } : undefined;
    if (ifindex !== ETH0) return undefined;
    return netns === C_NETNS ? { name: 'eth0', pod: INGRESS, side: 'pod' } : netns === S_NETNS ? { name: 'eth0', pod: FRONTEND, side: 'pod' } : undefined;
  },
};

function netdev(ts: number, netns: number, point: number, src: Endpoint, dst: Endpoint, seq: number, dataLen: number): NetDevEvent {
  const buf = Buffer.alloc(32);
  buf.set(src.ip, 0);
  buf.set(dst.ip, 16);
  return {
    buf, type: 99, flags: FLAGS.F_SEQ_VALID, tsNs: ts, skb: 0xabc, skbLen: dataLen + 66, ifindex: ETH0, netns, point, seq, ack: 0, dataLen, tcpFlags: 0x18, aggPkts: 1, aggBytes: dataLen,
    tuple: { family: 2, saddrOff: 0, daddrOff: 16, sport: src.port, dport: dst.port },
  };
}

/**
 * one exchange, proxy -> app, seen at every point: socket, pod eth0, host veth, other host veth,
 * other pod eth0, socket; `dualStack`: the app's socket is AF_INET6 (bound to ::), its addresses
 * IPv4-mapped, while the packets and the proxy's socket are IPv4
 */
function run(withNetDev: boolean, dualStack = false): SpanRecord[] {
  const request = B('GET /orders/12345 HTTP/1.1\r\nHost: app\r\n\r\n');
  const response = B('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
  const cSide = { sk: 0x1111000, pid: 100, netns: C_NETNS, local: CLIENT, remote: SERVER, comm: 'nginx' };
  const sSide = dualStack
    ? { sk: 0x2222000, pid: 200, netns: S_NETNS, local: v4Mapped(SERVER), remote: v4Mapped(CLIENT), comm: 'node' }
    : { sk: 0x2222000, pid: 200, netns: S_NETNS, local: SERVER, remote: CLIENT, comm: 'node' };
  const REQ_SEQ = 5000;
  const RESP_SEQ = 9000;
  const t = 1_000_000;
  const recs = [
    sockRecord({ type: EVENT_TYPE.EV_SOCK_CONNECT, ts: t, ...cSide }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: t + 10, ...sSide }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 1010, enterTs: t + 1000, ...cSide, dir: DIR.DIR_OUT, seq: REQ_SEQ, payload: request }),
    pktRecord({ ts: t + 1200, ifindex: VI, src: CLIENT, dst: SERVER, seq: REQ_SEQ, dataLen: request.length, dir: DIR.DIR_IN }),
    pktRecord({ ts: t + 1300, ifindex: VA, src: CLIENT, dst: SERVER, seq: REQ_SEQ, dataLen: request.length, dir: DIR.DIR_OUT }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 1500, enterTs: t + 1450, ...sSide, dir: DIR.DIR_IN, seq: REQ_SEQ, payload: request }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 2010, enterTs: t + 2000, ...sSide, dir: DIR.DIR_OUT, seq: RESP_SEQ, payload: response }),
    pktRecord({ ts: t + 2200, ifindex: VA, src: SERVER, dst: CLIENT, seq: RESP_SEQ, dataLen: response.length, dir: DIR.DIR_IN }),
    pktRecord({ ts: t + 2300, ifindex: VI, src: SERVER, dst: CLIENT, seq: RESP_SEQ, dataLen: response.length, dir: DIR.DIR_OUT }),
    sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 2500, enterTs: t + 2450, ...cSide, dir: DIR.DIR_IN, seq: RESP_SEQ, payload: response }),
  ];
  const sink = new MemorySink();
  const correlator = new Correlator(sink, topo, correlatorOptions(), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  new Decoder(correlator).decode(Buffer.concat(recs));
  if (withNetDev) {
    // net_dev events arrive in their own batches, out of time order with the rest
    correlator.onNetDev(netdev(t + 1100, C_NETNS, NETDEV.XMIT, CLIENT, SERVER, REQ_SEQ, request.length));
    correlator.onNetDev(netdev(t + 1400, S_NETNS, NETDEV.RX, CLIENT, SERVER, REQ_SEQ, request.length));
    correlator.onNetDev(netdev(t + 2100, S_NETNS, NETDEV.XMIT, SERVER, CLIENT, RESP_SEQ, response.length));
    correlator.onNetDev(netdev(t + 2400, C_NETNS, NETDEV.RX, SERVER, CLIENT, RESP_SEQ, response.length));
  }
  correlator.drain();
  return sink.spans;
}

const ns = (x: [number, number]) => x[0] * 1e9 + x[1];
const hopsOf = (spans: SpanRecord[], direction: string) =>
  spans.filter((s) => s.kind === SpanKind.INTERNAL && s.attributes['strata.direction'] === direction).sort((a, b) => ns(a.start) - ns(b.start));
const row = (s: SpanRecord) => [s.attributes['strata.layer'], s.name, s.resource.serviceName];

describe('hop layers from socket, net_dev and TC points', () => {
  test('socket -> pod eth0 -> host veth -> host veth -> pod eth0 -> socket: pod, veth, bridge, veth, pod', () => {
    const spans = run(true);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.ok(client);
    assert.deepEqual(hopsOf(spans, 'request').map(row), [
      ['pod', 'request ingress-nginx -> ingress-nginx eth0', 'net:pod node-1'],
      ['veth', 'request ingress-nginx eth0 -> ingress-nginx veth', 'net:veth node-1'],
      ['bridge', 'request ingress-nginx veth -> frontend veth', 'net:bridge node-1'],
      ['veth', 'request frontend veth -> frontend eth0', 'net:veth node-1'],
      ['pod', 'request frontend eth0 -> frontend', 'net:pod node-1'],
    ]);
    assert.deepEqual(hopsOf(spans, 'response').map(row), [
      ['pod', 'response frontend -> frontend eth0', 'net:pod node-1'],
      ['veth', 'response frontend eth0 -> frontend veth', 'net:veth node-1'],
      ['bridge', 'response frontend veth -> ingress-nginx veth', 'net:bridge node-1'],
      ['veth', 'response ingress-nginx veth -> ingress-nginx eth0', 'net:veth node-1'],
      ['pod', 'response ingress-nginx eth0 -> ingress-nginx', 'net:pod node-1'],
    ]);
    for (const h of [...hopsOf(spans, 'request'), ...hopsOf(spans, 'response')]) {
      assert.equal(h.parentSpanId, client.spanId, `${h.name} under the proxy's CLIENT span`);
      assert.equal(h.traceId, client.traceId);
      // consecutive: each hop starts where the previous ended
      assert.ok(ns(h.end) >= ns(h.start));
      assert.ok(!/vi-lab|va-lab/.test(h.name), 'no interface names of the lab in span names');
    }
    // the interface stays an attribute
    assert.equal(hopsOf(spans, 'request')[2]?.attributes['network.interface.name'], 'va-lab');
    assert.equal(hopsOf(spans, 'request')[0]?.attributes['network.interface.name'], 'eth0');
    assert.equal(client.attributes['strata.hops.incomplete'], undefined);
  });

  test('a dual-stack app socket (IPv4-mapped addresses) is stitched as an IPv4 one: its SERVER under the CLIENT, every hop to its socket', () => {
    const spans = run(true, true);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    assert.ok(client && server);
    assert.equal(server.parentSpanId, client.spanId, 'the app SERVER under the proxy CLIENT: the same message key on both ends');
    assert.equal(server.traceId, client.traceId);
    assert.equal(server.attributes['client.address'], '10.244.1.10', 'the peer as the wire carries it, not ::ffff:10.244.1.10');
    assert.equal(server.attributes['server.address'], '10.244.1.20');
    const v4 = run(true);
    for (const dir of ['request', 'response']) {
      assert.deepEqual(hopsOf(spans, dir).map(row), hopsOf(v4, dir).map(row), `${dir} hops as with an IPv4 socket`);
    }
  });

  test('net_dev on a node device: node; on a host-side veth (node netns, a pod behind it): like TC', () => {
    const p = (x: Partial<ObservationPoint>): ObservationPoint => ({ kind: 'netdev', tsNs: 0, name: 'x', ...x });
    const sock = p({ kind: 'write', name: 'frontend', pod: FRONTEND });
    const uplink = p({ name: 'eth0', side: 'node' });
    const hostVeth = p({ name: 'va-lab', side: 'node', pod: FRONTEND });
    const tc = p({ kind: 'tc', name: 'vi-lab', side: 'node', pod: INGRESS });
    assert.equal(layerBetween(tc, uplink), 'node');
    assert.equal(layerBetween(sock, uplink), 'node');
    assert.equal(layerBetween(hostVeth, tc), 'bridge');
    assert.equal(layerBetween(sock, hostVeth), 'pod');
    assert.equal(layerBetween(p({ name: 'eth0', side: 'pod', pod: FRONTEND }), hostVeth), 'veth');
  });

  test('points on one device are one place: queue..xmit is its qdisc span; arrival points (rx, TC ingress) get none', () => {
    const p = (tsNs: number, x: Partial<ObservationPoint>): ObservationPoint => ({ kind: 'netdev', tsNs, name: 'x', ...x });
    const pts = [
      p(100, { kind: 'write', name: 'ingress-nginx', pod: INGRESS }),
      p(110, { name: 'eth0', side: 'pod', pod: INGRESS, netns: C_NETNS, dir: NETDEV.QUEUE }),
      p(150, { name: 'eth0', side: 'pod', pod: INGRESS, netns: C_NETNS, dir: NETDEV.XMIT }),
      p(160, { kind: 'tc', name: 'vi-lab', side: 'node', pod: INGRESS, dir: DIR.DIR_IN }),
      p(161, { name: 'vi-lab', side: 'node', pod: INGRESS, dir: NETDEV.RX }),
      p(170, { kind: 'tc', name: 'eth1', side: 'node', dir: DIR.DIR_OUT }),
      p(171, { name: 'eth1', side: 'node', dir: NETDEV.QUEUE }),
      p(190, { name: 'eth1', side: 'node', dir: NETDEV.XMIT }),
    ];
    const out: HopRecord[] = [];
    new Hops(16, topo).build(pts, '>10.244.1.10:40000/5000', 'request', (x) => [0, x], out);
    assert.deepEqual(out.map((h) => [h.layer, h.from.name, h.to.name, h.start[1], h.end[1], h.qdisc ?? false]), [
      ['pod', 'ingress-nginx', 'eth0', 100, 110, false],
      ['pod', 'eth0', 'eth0', 110, 150, true], // the pod's qdisc
      ['veth', 'eth0', 'vi-lab', 150, 160, false],
      ['node', 'vi-lab', 'eth1', 160, 170, false], // from the first arrival point on vi-lab
      ['node', 'eth1', 'eth1', 170, 190, true], // the uplink's qdisc (TC egress, queue, xmit)
    ]);
    assert.equal(new Set(out.map((h) => h.spanId)).size, out.length, 'distinct span ids');
  });

  test('without net_dev points: socket <-> veth is pod, veth <-> veth is bridge (as before)', () => {
    const spans = run(false);
    assert.deepEqual(hopsOf(spans, 'request').map((s) => s.attributes['strata.layer']), ['pod', 'bridge', 'pod']);
    assert.deepEqual(hopsOf(spans, 'request').map((s) => s.name), [
      'request ingress-nginx -> ingress-nginx veth', 'request ingress-nginx veth -> frontend veth', 'request frontend veth -> frontend',
    ]);
  });

  test('exchange spans: {method} {route}, k8s on the resource, the program as process.executable.name', () => {
    const spans = run(false);
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.equal(server?.name, 'GET /orders/{id}');
    assert.equal(client?.name, 'GET /orders/{id}');
    assert.equal(server?.attributes['url.path'], '/orders/12345');
    assert.equal(server?.attributes['http.route'], '/orders/{id}');
    assert.equal(server?.attributes['network.protocol.version'], '1.1');
    assert.equal(client?.attributes['url.full'], 'http://10.244.1.20:8080/orders/12345');
    assert.equal(client?.attributes['server.address'], '10.244.1.20');
    assert.equal(server?.resource.serviceName, 'frontend');
    assert.equal(server?.resource.attributes['k8s.pod.uid'], 'u2');
    assert.equal(server?.resource.attributes['k8s.pod.name'], 'frontend-xyz');
    assert.equal(server?.attributes['k8s.pod.name'], undefined, 'k8s attributes live on the resource');
    // time to first byte and the end of the upload, as events
    const events = (server?.events ?? []).map((e) => e.name);
    assert.ok(events.includes('request last byte') && events.includes('response first byte'), events.join(', '));
  });
});

describe('the local root says where its time went', () => {
  test('strata.time.{app,proxy,network,other}_us on the local root only, adding up to its duration', () => {
    const spans = run(true);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    assert.ok(client && server);
    const t = (k: string) => client.attributes[`strata.time.${k}_us`] as number;
    const durUs = (ns(client.end) - ns(client.start)) / 1000;
    assert.ok(durUs > 0);
    assert.ok(Math.abs(t('app') + t('proxy') + t('network') + t('other') - durUs) <= 2, 'the parts add up to the root (rounded to us each)');
    assert.ok(t('network') > 0, 'the hop spans are network time');
    assert.ok(t('app') > 0, 'the app SERVER under the CLIENT is app time');
    assert.equal(server.attributes['strata.time.app_us'], undefined, 'not on spans under the root');
  });
});
