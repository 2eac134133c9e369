// A synthetic HTTP/1.x conversation on one TCP connection, as both traced ends would report it:
// the client process (its writes = requests, reads = responses) and the server process.
// Each direction is cut into segments by the caller; the events come out in time order.
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { Correlator } from '../../agent/src/correlate/correlator.ts';
import type { ExchangeRecord } from '../../agent/src/correlate/records.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { EVENT_TYPE } from '../../agent/src/events/layout.generated.ts';
import { StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { type CorrelatorOverrides, correlatorOptions } from './options.ts';
import { MemorySink } from './replay.ts';
import { type Endpoint, sockRecord } from './synth.ts';

export const CLIENT: Endpoint = { ip: [10, 244, 1, 10], port: 40000 };
export const SERVER: Endpoint = { ip: [10, 244, 1, 20], port: 8080 };
const C_NETNS = 4026532001;
const S_NETNS = 4026532002;
const C_ISN = 0xfffff000; // wraps inside the conversation: seq arithmetic must be mod 2^32
const S_ISN = 0x1000;

export interface Turn {
  /** request bytes, then the response bytes that answer it */
  request: Buffer;
  response: Buffer;
}

export interface CutFn {
  (data: Buffer): Buffer[];
}

export interface ConversationOptions {
  /** all requests first, then all responses (pipelining) */
  pipelined?: boolean;
  /** the server closes the connection after the last response */
  serverCloses?: boolean;
  /** kernel capture cap for payloads (default: whole segment) */
  cap?: number;
  /** only the server side is traced */
  serverOnly?: boolean;
  /** only the client side is traced (the server is on another node) */
  clientOnly?: boolean;
}

export function conversation(turns: Turn[], cutReq: CutFn, cutResp: CutFn, o: ConversationOptions = {}): Buffer[] {
  const recs: Buffer[] = [];
  let t = 1_000_000;
  const tick = () => (t += 1000);
  const cSide = { sk: 0x1111000, pid: 100, netns: C_NETNS, local: CLIENT, remote: SERVER, comm: 'nginx' };
  const sSide = { sk: 0x2222000, pid: 200, netns: S_NETNS, local: SERVER, remote: CLIENT, comm: 'node' };
  if (!o.serverOnly) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_CONNECT, ts: tick(), ...cSide }));
  if (!o.clientOnly) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: tick(), ...sSide }));
  let cSeq = C_ISN;
  let sSeq = S_ISN;
  const send = (data: Buffer, isRequest: boolean) => {
    for (const seg of isRequest ? cutReq(data) : cutResp(data)) {
      const seq = isRequest ? cSeq : sSeq;
      const writer = isRequest ? cSide : sSide;
      const reader = isRequest ? sSide : cSide;
      const wEnter = tick();
      const wExit = tick();
      if (!(o.serverOnly && isRequest) && !(o.clientOnly && !isRequest)) {
        recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: wExit, enterTs: wEnter, ...writer, dir: 2, seq, payload: seg, cap: o.cap }));
      }
      const rExit = tick();
      if (!(o.serverOnly && !isRequest) && !(o.clientOnly && isRequest)) {
        recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: rExit, enterTs: rExit - 500, ...reader, dir: 1, seq, payload: seg, cap: o.cap }));
      }
      if (isRequest) cSeq = (cSeq + seg.length) >>> 0;
      else sSeq = (sSeq + seg.length) >>> 0;
    }
  };
  if (o.pipelined) {
    for (const turn of turns) send(turn.request, true);
    for (const turn of turns) send(turn.response, false);
  } else {
    for (const turn of turns) {
      send(turn.request, true);
      send(turn.response, false);
    }
  }
  if (o.serverCloses) {
    if (!o.clientOnly) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_CLOSE, ts: tick(), ...sSide }));
    if (!o.serverOnly) recs.push(sockRecord({ type: EVENT_TYPE.EV_SOCK_CLOSE, ts: tick(), ...cSide }));
  }
  return recs;
}

/** Feeds the records, then drains everything, or only ticks at `tickAt` (monotonic ns). */
export function runRecords(recs: Buffer[], batchSize = 16, tickAt?: number, opts: CorrelatorOverrides = {}): { spans: SpanRecord[]; records: ExchangeRecord[]; correlator: Correlator } {
  const topo = new StaticTopology('node-1', [
    { name: 'ingress-nginx-abc12', namespace: 'ingress-nginx', uid: 'u1', node: 'node-1', ip: '10.244.1.10', netnsInode: C_NETNS, hostVeth: 'vi', labels: { 'app.kubernetes.io/name': 'ingress-nginx' } },
    { name: 'frontend-xyz', namespace: 'default', uid: 'u2', node: 'node-1', ip: '10.244.1.20', netnsInode: S_NETNS, hostVeth: 'va', labels: { 'app.kubernetes.io/name': 'frontend' } },
  ]);
  const sink = new MemorySink();
  const correlator = new Correlator(sink, topo, correlatorOptions(opts), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  const d = new Decoder(correlator);
  for (let i = 0; i < recs.length; i += batchSize) d.decode(Buffer.concat(recs.slice(i, i + batchSize)));
  if (tickAt === undefined) correlator.drain();
  else correlator.tick(tickAt);
  return { spans: sink.spans, records: sink.records, correlator };
}

/** a span without its times (and strata.time.*, made of times): what must not depend on how the bytes were cut */
export function shape(s: SpanRecord): string {
  return JSON.stringify([s.traceId, s.spanId, s.parentSpanId ?? '', s.name, s.kind, s.resource.serviceName, s.status?.code ?? 0,
    Object.entries(s.attributes).filter(([k]) => !k.startsWith('strata.message') && !k.startsWith('strata.time.')).sort()]);
}
