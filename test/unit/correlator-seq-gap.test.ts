// Events lost before the correlator (ring buffer full, a batch dropped at the JS queue) leave a
// hole in a connection's byte stream. The TCP seq of the next event says how many bytes are
// missing; the parser resynchronises on it instead of pairing every later response on a keep-alive
// connection with the wrong request.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Correlator } from '../../agent/src/correlate/correlator.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { DIR, EVENT_TYPE } from '../../agent/src/events/layout.generated.ts';
import type { PodInfo, Topology } from '../../agent/src/k8s/topology.ts';
import { correlatorOptions } from '../helpers/options.ts';
import { MemorySink } from '../helpers/replay.ts';
import { type Endpoint, sockRecord } from '../helpers/synth.ts';

const CLIENT: Endpoint = { ip: [10, 244, 1, 10], port: 41000 };
const SERVER: Endpoint = { ip: [10, 244, 1, 20], port: 8080 };
const NETNS = 4026532002;
const APP: PodInfo = { name: 'frontend-1', namespace: 'default', uid: 'u2', node: 'node-1', workload: 'frontend' };
const topo: Topology = { nodeName: 'node-1', podByNetns: (n) => (n === NETNS ? APP : undefined), iface: () => undefined };

const B = (s: string) => Buffer.from(s, 'latin1');
const request = (i: number) => B(`GET /item/${i} HTTP/1.1\r\nHost: app\r\n\r\n`);
// a distinct status per round, each with a body (204/205 would carry none)
const STATUS = [0, 201, 202, 203, 206, 207, 208];
const response = (i: number) => B(`HTTP/1.1 ${STATUS[i]} OK\r\nContent-Length: 5\r\n\r\nhello`);

/** a keep-alive connection to a server: rounds 1..n, the events of the rounds in `lost` never arrive */
function run(n: number, lost: { request?: number[]; response?: number[] }) {
  const side = { sk: 0x3333000, pid: 300, netns: NETNS, local: SERVER, remote: CLIENT, comm: 'node' };
  const recs: Buffer[] = [sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: 1000, ...side })];
  let reqSeq = 1000;
  let respSeq = 50_000;
  let t = 10_000;
  for (let i = 1; i <= n; i++) {
    const q = request(i);
    const r = response(i);
    if (!lost.request?.includes(i)) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 10, enterTs: t, ...side, dir: DIR.DIR_IN, seq: reqSeq, payload: q }));
    if (!lost.response?.includes(i)) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: t + 110, enterTs: t + 100, ...side, dir: DIR.DIR_OUT, seq: respSeq, payload: r }));
    reqSeq += q.length;
    respSeq += r.length;
    t += 1_000_000;
  }
  const sink = new MemorySink();
  const c = new Correlator(sink, topo, correlatorOptions(), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  new Decoder(c).decode(Buffer.concat(recs));
  c.drain();
  return { records: sink.records, stats: c.stats };
}

const byPath = (rs: ReturnType<typeof run>['records']) => new Map(rs.map((r) => [r.target, r]));

describe('lost events: the TCP seq resynchronises the parser', () => {
  test('a lost response: later requests on the keep-alive connection keep their own responses', () => {
    const { records, stats } = run(4, { response: [2] });
    const m = byPath(records);
    for (const i of [1, 3, 4]) assert.equal(m.get(`/item/${i}`)?.status, STATUS[i], `/item/${i} gets its own response`);
    assert.equal(m.get('/item/2')?.status, 0, 'the request whose response was lost has no status');
    assert.equal(stats.seqGaps, 1);
    assert.equal(stats.seqGapBytes, response(2).length);
  });

  test('a lost request and its response: the next exchange is whole, the lost one is counted, not invented', () => {
    const { records, stats } = run(3, { request: [2], response: [2] });
    const m = byPath(records);
    assert.equal(m.get('/item/1')?.status, STATUS[1]);
    assert.equal(m.get('/item/3')?.status, STATUS[3], '/item/3 pairs with its own response');
    assert.equal(m.has('/item/2'), false, 'nothing is made up for what was not seen');
    assert.equal(stats.seqGaps, 2, 'one gap per direction');
    assert.equal(stats.seqGapBytes, request(2).length + response(2).length);
  });

  test('nothing lost: no gap counted', () => {
    const { records, stats } = run(6, {});
    assert.equal(records.length, 6);
    assert.equal(stats.seqGaps, 0);
    for (const r of records) assert.equal(r.status, STATUS[Number(r.target.split('/')[2])], r.target);
    assert.equal(stats.nonHttp, 0);
  });
});
