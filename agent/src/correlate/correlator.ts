// Stitches socket and packet events into spans (design.md sections 1 and 3).
//
// - Connections are keyed by the kernel socket; each carries HTTP/1.x exchanges (FIFO, so
//   pipelined responses match their requests in order).
// - A message (the bytes of one request or response) is keyed by (sender ip, sender port, TCP
//   seq of its first byte); the sender's write, every packet of it seen on a traced interface and
//   the receiver's read all compute the same key, across netns and through DNAT.
// - Links across processes (proxy CLIENT -> app SERVER) are resolved when a span is emitted, a
//   grace period after its exchange ends, so events of other CPUs that arrived late are in.
// - Every table is bounded; evictions, orphans and non-HTTP traffic are counted, never thrown.
import { type HrTime, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { LRUCache } from 'lru-cache';
import type { Attributes } from '@opentelemetry/api';
import { addrString, type PktEvent, type SockEvent, type StateEvent, type EventHandler } from '../events/decode.ts';
import { DIR, EVENT_TYPE, FLAGS } from '../events/layout.generated.ts';
import type { SpanRecord, SpanSink } from '../export/types.ts';
import { claimedTraceId, extractContext } from './context.ts';
import { type HttpHead, looksLikeRequest, splitTarget } from './http.ts';
import { type Framing, HttpStream } from './stream.ts';
import { deriveSpanId, deriveTraceId, nthSpanId } from './ids.ts';

export interface PodInfo {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  /** workload name: the service name spans are filed under */
  workload: string;
}

export interface Topology {
  nodeName: string;
  podByNetns(inode: number): PodInfo | undefined;
  /** hostNetwork pods: known by the cgroup of their containers */
  podByCgroup?(id: number): PodInfo | undefined;
  iface(ifindex: number): { name: string; pod?: PodInfo } | undefined;
}

export interface CorrelatorOptions {
  /** wait this long after an exchange ends before emitting (late events from other CPUs) */
  graceNs: number;
  /** an exchange with no activity for this long is closed as incomplete */
  idleNs: number;
  maxConns: number;
  maxMessages: number;
  /** finished exchanges waiting for their grace period, at most */
  maxReady: number;
  /** a response whose framing was lost ends after this long without bytes */
  lostQuietNs: number;
  /** emitted exchanges stay findable (for late children) this long */
  retainNs: number;
  /** processes whose server spans are labelled layer=proxy */
  proxyComms: string[];
  /** request headers copied to span attributes (lowercase); bodies are never exported */
  headerAllowList: string[];
  /** headers whose value is replaced by "[REDACTED]" even when allow-listed */
  redactHeaders: string[];
  sampling: SamplingOptions;
  /** local traces whose root has not finished yet, held for the sampling decision, at most */
  maxHeldTraces: number;
}

/**
 * Decided when the local root of a trace (the first exchange on this node) ends, for all the
 * spans this node made for it: keep it if it failed (5xx, reset, incomplete) or was slow;
 * else follow the caller's sampled flag when there is one; else keep a ratio (by trace id, so
 * every agent keeps the same traces).
 */
/** what callers pass: any subset, sampling too */
export type CorrelatorConfig = Partial<Omit<CorrelatorOptions, 'sampling'>> & { sampling?: Partial<SamplingOptions> };

export interface SamplingOptions {
  ratio: number;
  slowThresholdMs: number;
  keepErrors: boolean;
  respectParentSampled: boolean;
}

export const DEFAULT_CORRELATOR_OPTIONS: CorrelatorOptions = {
  graceNs: 100e6,
  idleNs: 30e9,
  maxConns: 65536,
  maxMessages: 65536,
  maxReady: 65536,
  lostQuietNs: 1e9,
  retainNs: 10e9,
  proxyComms: ['nginx', 'envoy', 'haproxy', 'traefik'],
  headerAllowList: ['x-request-id', 'user-agent', 'content-type'],
  redactHeaders: ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key'],
  sampling: { ratio: 1, slowThresholdMs: 500, keepErrors: true, respectParentSampled: true },
  maxHeldTraces: 4096,
};

export interface CorrelatorStats {
  conns: number;
  messages: number;
  connEvictions: number;
  /** connections closed by the agent after idleNs without events */
  idleCloses: number;
  messageEvictions: number;
  clientEvictions: number;
  exchanges: number;
  spansEmitted: number;
  hopSpansEmitted: number;
  nonHttp: number;
  orphanResponses: number;
  incomplete: number;
  malformedContext: number;
  truncatedHeads: number;
  /** observation points beyond MAX_POINTS for one message (retransmissions) */
  pointsDropped: number;
  /** spans and local traces not exported by the sampling decision */
  spansSampledOut: number;
  tracesSampledOut: number;
  tracesKept: number;
  /** local traces decided early because too many were held */
  heldEvictions: number;
  /** exchanges whose request was seen and whose response has not ended */
  pending: number;
  /** data packets on traced interfaces that no traced socket on this node sent or received */
  packetsWithoutConnection: number;
  /** span times moved inside their parent (clock offset drift between batches) */
  clockClamps: number;
}

/** observation points kept per message: socket write + a few interfaces + socket read */
const MAX_POINTS = 16;
const ROLE_UNKNOWN = 0;
const ROLE_SERVER = 1;
const ROLE_CLIENT = 2;

interface Point {
  ts: number;
  kind: 'write' | 'read' | 'pkt';
  /** packets: shared by the two readings of the packet; set when a socket claims either */
  claim?: { claimed: boolean };
  label: string;
  ifname?: string;
  dir?: number;
  pod?: PodInfo;
  netns?: number;
}

interface Msg {
  key: string;
  points: Point[];
  lastTs: number;
}

interface Conn {
  sk: number;
  pid: number;
  tid: number;
  netns: number;
  fd: number;
  comm: string;
  role: number;
  family: number;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  /** the client's endpoint "ip:port": what message keys are built on (survives DNAT) */
  clientEp: string;
  pod?: PodInfo;
  /** the span resource of this process, built once (the SDK sink keys providers by it) */
  resource?: SpanRecord['resource'];
  /** request direction and response direction parsers (created when the role is known) */
  req?: HttpStream;
  resp?: HttpStream;
  /** request whose bytes are flowing */
  reqOpen?: Exchange;
  /** exchanges waiting for (or receiving) their response, oldest first */
  awaiting: Exchange[];
  /** exchange whose response bytes are flowing */
  respOpen?: Exchange;
  /** the response now being parsed started at this time / seq */
  respStartTs: number;
  respStartSeq: number;
  lastReqTs: number;
  lastRespTs: number;
  lastTs: number;
  nonHttpCounted: boolean;
}

interface Exchange {
  conn: Conn;
  role: number;
  method: string;
  target: string;
  headers: Map<string, string>;
  reqKey: string;
  reqStart: number;
  reqEnd: number;
  reqBytes: number;
  reqTruncated: boolean;
  respKey?: string;
  respStart: number;
  respEnd: number;
  respBytes: number;
  status: number;
  done: boolean;
  incomplete: boolean;
  upgraded: boolean;
  /** for CLIENT exchanges: the SERVER exchange of the same process that caused it */
  cause?: Exchange;
  children: number;
  ids?: { traceId: string; spanId: string; parentSpanId?: string; remote: boolean; flags: number; traceState?: string; format?: string };
  /** set when emitted */
  emittedAt: number;
  /** sampling decision, on local roots */
  keep?: boolean;
}

export type WallClock = (monoNs: number) => HrTime;

/**
 * mono -> wall with an offset measured now (CLOCK_MONOTONIC is what bpf_ktime_get_ns reads).
 * `pair` reads both clocks back to back (the agent uses the native clockPair, per batch);
 * without it, the process start time plus the monotonic clock stand in.
 */
export function measureWallClock(pair?: { realtimeNs: bigint; monotonicNs: bigint }): WallClock {
  const mono = pair?.monotonicNs ?? process.hrtime.bigint();
  const wallNs = pair?.realtimeNs ?? BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
  const off = wallNs - mono;
  const offSec = Number(off / 1_000_000_000n);
  const offNs = Number(off % 1_000_000_000n);
  return (monoNs: number) => {
    const ns = (monoNs % 1e9) + offNs;
    const sec = Math.floor(monoNs / 1e9) + offSec + Math.floor(ns / 1e9);
    return [sec, ns % 1e9];
  };
}

export class Correlator implements EventHandler {
  readonly stats: CorrelatorStats = {
    conns: 0, messages: 0, connEvictions: 0, idleCloses: 0, messageEvictions: 0, clientEvictions: 0, exchanges: 0, spansEmitted: 0, hopSpansEmitted: 0,
    nonHttp: 0, orphanResponses: 0, incomplete: 0, malformedContext: 0, truncatedHeads: 0, pointsDropped: 0, spansSampledOut: 0, tracesSampledOut: 0, tracesKept: 0, heldEvictions: 0, pending: 0, packetsWithoutConnection: 0, clockClamps: 0,
  };
  private readonly opts: CorrelatorOptions;
  // LRU-bounded tables (lru-cache: O(1) eviction; a Map used as a FIFO degrades with deletions)
  private readonly conns: LRUCache<number, Conn>;
  private readonly msgs: LRUCache<string, Msg>;
  /** CLIENT exchanges by the key of their request message (for the server side to find its parent) */
  private readonly clientByReqKey: LRUCache<string, Exchange>;
  /** SERVER exchanges in progress, per process (in-process causality) */
  private readonly activeServers = new Map<number, Exchange[]>();
  private readonly ready: Exchange[] = [];
  /** span resources per process (bounded: one per traced process) */
  private readonly resources = new LRUCache<string, SpanRecord['resource']>({ max: 4096 });
  private netResource?: SpanRecord['resource'];
  /** spans of local traces whose root is still open, by root exchange */
  private readonly held: LRUCache<Exchange, SpanRecord[]>;
  /** connections whose response framing is lost: they end after a quiet period */
  private readonly lostConns = new Set<Conn>();
  private lastTs = 0;
  wall: WallClock;

  private readonly sink: SpanSink;
  private readonly topo: Topology;
  private readonly redact: Set<string>;

  constructor(sink: SpanSink, topo: Topology, opts: CorrelatorConfig = {}, wall: WallClock = measureWallClock()) {
    this.sink = sink;
    this.topo = topo;
    this.opts = { ...DEFAULT_CORRELATOR_OPTIONS, ...opts, sampling: { ...DEFAULT_CORRELATOR_OPTIONS.sampling, ...opts.sampling } };
    this.opts.headerAllowList = this.opts.headerAllowList.map((h) => h.toLowerCase());
    this.redact = new Set(this.opts.redactHeaders.map((h) => h.toLowerCase()));
    this.conns = new LRUCache<number, Conn>({
      max: this.opts.maxConns,
      disposeAfter: (c, _k, reason) => {
        if (reason !== 'evict') return;
        this.stats.connEvictions++;
        this.closeConn(c, c.lastTs);
      },
    });
    this.msgs = new LRUCache<string, Msg>({
      max: this.opts.maxMessages,
      disposeAfter: (m, k, reason) => {
        if (reason === 'evict') this.stats.messageEvictions++;
        // each packet is filed under a request and a response reading: count it once, from the
        // request reading, when no socket on this node claimed either
        if (k.charCodeAt(0) === 0x3e) for (const q of m.points) if (q.claim && !q.claim.claimed) this.stats.packetsWithoutConnection++;
      },
    });
    this.held = new LRUCache<Exchange, SpanRecord[]>({
      max: this.opts.maxHeldTraces,
      disposeAfter: (spans, root, reason) => {
        if (reason !== 'evict') return;
        // the root is taking too long: decide on what is known now
        this.stats.heldEvictions++;
        this.release(spans, this.decide(root, spans, false));
      },
    });
    this.clientByReqKey = new LRUCache<string, Exchange>({
      max: this.opts.maxMessages,
      disposeAfter: (_e, _k, reason) => {
        if (reason === 'evict') this.stats.clientEvictions++;
      },
    });
    this.wall = wall;
  }

  // ---------------------------------------------------------------- events

  onSock(e: SockEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    if (e.type === EVENT_TYPE.EV_SOCK_CLOSE) {
      const c = this.conns.get(e.sk);
      if (c) this.closeConn(c, e.tsNs);
      return;
    }
    const c = this.conn(e);
    if (e.type === EVENT_TYPE.EV_SOCK_ACCEPT) {
      this.setRole(c, ROLE_SERVER);
      return;
    }
    if (e.type === EVENT_TYPE.EV_SOCK_CONNECT) {
      this.setRole(c, ROLE_CLIENT);
      return;
    }
    // peeked bytes are read again later; no bytes moved: nothing to frame
    if (e.type !== EVENT_TYPE.EV_SOCK_DATA || e.flags & FLAGS.F_PEEK || e.ret <= 0) return;
    if (c.role === ROLE_UNKNOWN) {
      // a connection older than the agent: the first request tells which side we are
      if (!looksLikeRequest(e.buf, e.payloadOff, e.payloadLen)) {
        if (!c.nonHttpCounted) this.stats.nonHttp++;
        c.nonHttpCounted = true;
        return;
      }
      this.setRole(c, e.dir === DIR.DIR_IN ? ROLE_SERVER : ROLE_CLIENT);
    }
    const requestDir = c.role === ROLE_SERVER ? DIR.DIR_IN : DIR.DIR_OUT;
    this.ev = e;
    this.evConn = c;
    c.lastTs = e.tsNs;
    // bytes count from when they are handed to the kernel (write entry) or to the app (read exit)
    this.evTs = e.dir === DIR.DIR_OUT ? e.enterTsNs : e.tsNs;
    const stream = e.dir === requestDir ? c.req : c.resp;
    stream?.feed(e.buf, e.payloadOff, Math.min(e.payloadLen, e.ret), e.ret);
    if (c.resp?.lost && c.respOpen) this.lostConns.add(c);
    if (e.dir === requestDir) c.lastReqTs = this.evTs;
    else c.lastRespTs = this.evTs;
    this.ev = undefined;
  }

  onState(_e: StateEvent): void {
    // connection lifetime comes from close(); state changes are used by later issues (resets)
  }

  onPkt(e: PktEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    if (e.dataLen === 0 || !(e.flags & FLAGS.F_SEQ_VALID)) return;
    const iface = this.topo.iface(e.ifindex);
    const name = iface?.name ?? `if${e.ifindex}`;
    const pt: Point = { ts: e.tsNs, kind: 'pkt', label: name, ifname: name, dir: e.dir, pod: iface?.pod, claim: { claimed: false } };
    // which end is the client is unknown here: file the point under both readings; the
    // message nobody claims expires
    const src = `${addrString(e.buf, e.tuple.saddrOff, e.tuple.family)}:${e.tuple.sport}`;
    const dst = `${addrString(e.buf, e.tuple.daddrOff, e.tuple.family)}:${e.tuple.dport}`;
    this.point(reqMsgKey(src, e.seq), pt);
    this.point(respMsgKey(dst, e.seq), pt);
  }

  // ---------------------------------------------------------------- HTTP

  private ev?: SockEvent;
  private evConn?: Conn;
  private evTs = 0;

  private setRole(c: Conn, role: number): void {
    if (c.role === role && c.req) return;
    c.role = role;
    c.clientEp = role === ROLE_SERVER ? `${c.remoteIp}:${c.remotePort}` : `${c.localIp}:${c.localPort}`;
    c.req = new HttpStream(true, {
      onStart: (off) => this.requestStart(c, off),
      onHead: (head, truncated) => this.requestHead(c, head, truncated),
      onEnd: (off) => this.requestEnd(c, off),
      onNonHttp: () => this.nonHttp(c),
    });
    c.resp = new HttpStream(false, {
      onStart: (off) => this.responseStart(c, off),
      onHead: (head, truncated) => this.responseHead(c, head, truncated),
      onEnd: (off) => this.responseEnd(c, off),
      onNonHttp: () => this.nonHttp(c),
    });
  }

  private nonHttp(c: Conn): void {
    if (!c.nonHttpCounted) this.stats.nonHttp++;
    c.nonHttpCounted = true;
  }

  /** seq of the byte at `off` of the current event, or -1 */
  private seqAt(off: number): number {
    const e = this.ev;
    if (!e || !(e.flags & FLAGS.F_SEQ_VALID)) return -1;
    return (e.seq + off) >>> 0;
  }

  private pendingReq = new Map<Conn, { ts: number; seq: number }>();

  private requestStart(c: Conn, off: number): void {
    this.pendingReq.set(c, { ts: this.evTs, seq: this.seqAt(off) });
  }

  private requestHead(c: Conn, head: HttpHead | null, truncated: boolean): Framing {
    const start = this.pendingReq.get(c) ?? { ts: this.evTs, seq: -1 };
    this.pendingReq.delete(c);
    const reqKey = start.seq >= 0 ? reqMsgKey(c.clientEp, start.seq) : `${c.sk}/${start.ts}`;
    const ex: Exchange = {
      conn: c, role: c.role, method: head?.method || '_OTHER', target: head?.target ?? '', headers: head?.headers ?? new Map(),
      reqKey, reqStart: start.ts, reqEnd: this.evTs, reqBytes: 0, reqTruncated: truncated,
      respStart: 0, respEnd: 0, respBytes: 0, status: 0, done: false, incomplete: false, upgraded: false,
      children: 0, emittedAt: 0,
    };
    if (truncated) this.stats.truncatedHeads++;
    this.stats.exchanges++;
    this.stats.pending++;
    c.reqOpen = ex;
    c.awaiting.push(ex);
    const label = `${c.pod?.workload ?? c.comm} socket`;
    if (c.role === ROLE_SERVER) {
      this.point(reqKey, { ts: start.ts, kind: 'read', label, pod: c.pod, netns: c.netns });
      const list = this.activeServers.get(c.pid);
      if (list) list.push(ex);
      else this.activeServers.set(c.pid, [ex]);
    } else {
      this.point(reqKey, { ts: start.ts, kind: 'write', label, pod: c.pod, netns: c.netns });
      ex.cause = this.findCause(c, ex);
      if (ex.cause) ex.cause.children++;
      this.clientByReqKey.set(reqKey, ex);
    }
    if (!head || truncated) return { mode: 'none' };
    if (head.chunked) return { mode: 'chunked' };
    if (head.contentLength > 0) return { mode: 'length', length: head.contentLength };
    return { mode: 'none' };
  }

  private requestEnd(c: Conn, off: number): void {
    const ex = c.reqOpen;
    if (!ex) return;
    ex.reqEnd = off < 0 ? c.lastReqTs : this.evTs;
    ex.reqBytes = c.req?.messageBytes ?? 0;
    c.reqOpen = undefined;
  }

  private responseStart(c: Conn, off: number): void {
    c.respStartTs = this.evTs;
    c.respStartSeq = this.seqAt(off);
  }

  private responseHead(c: Conn, head: HttpHead | null, truncated: boolean): Framing {
    const ex = c.awaiting[0];
    if (!ex) {
      this.stats.orphanResponses++;
      c.respOpen = undefined;
      // keep framing so the next response is found
      if (!head || truncated) return { mode: 'none' };
      return head.chunked ? { mode: 'chunked' } : head.contentLength >= 0 ? { mode: 'length', length: head.contentLength } : { mode: 'close' };
    }
    if (head && head.status >= 100 && head.status < 200 && head.status !== 101) return { mode: 'none' }; // interim: 100 Continue
    if (c.reqOpen === ex) {
      // the response started before the request body was complete (early reply): the request ends here
      c.reqOpen = undefined;
      ex.reqBytes = c.req?.messageBytes ?? ex.reqBytes;
    }
    c.awaiting.shift();
    c.respOpen = ex;
    ex.status = head?.status ?? 0;
    ex.respStart = c.respStartTs;
    if (c.respStartSeq >= 0) {
      ex.respKey = respMsgKey(c.clientEp, c.respStartSeq);
      const label = `${c.pod?.workload ?? c.comm} socket`;
      this.point(ex.respKey, c.role === ROLE_SERVER
        ? { ts: c.respStartTs, kind: 'write', label, pod: c.pod, netns: c.netns }
        : { ts: c.respStartTs, kind: 'read', label, pod: c.pod, netns: c.netns });
    }
    if (!head || truncated) {
      if (truncated) this.stats.truncatedHeads++;
      return { mode: 'none' }; // framing unknown: the stream is lost until the next response
    }
    const s = head.status;
    if (s === 101 || (ex.method === 'CONNECT' && s >= 200 && s < 300)) {
      // protocol switch or tunnel: the span ends here, nothing further is parsed
      ex.upgraded = true;
      c.req?.switchProtocols();
      return { mode: 'opaque' };
    }
    if (ex.method === 'HEAD' || s === 204 || s === 304) return { mode: 'none' };
    if (head.chunked) return { mode: 'chunked' };
    if (head.contentLength >= 0) return { mode: 'length', length: head.contentLength };
    return { mode: 'close' };
  }

  private responseEnd(c: Conn, off: number): void {
    const ex = c.respOpen;
    if (!ex) return;
    ex.respEnd = off < 0 ? c.lastRespTs : this.evTs;
    ex.respBytes = c.resp?.messageBytes ?? 0;
    c.respOpen = undefined;
    this.finish(c, ex, false);
  }

  /** In-process causality: which SERVER exchange of this process made this outbound request. */
  private findCause(c: Conn, ex: Exchange): Exchange | undefined {
    const list = this.activeServers.get(c.pid);
    if (!list || list.length === 0) return undefined;
    const rid = ex.headers.get('x-request-id');
    // a proxy forwards the context (or an SDK continues it): same trace id, whatever the format
    const tid = claimedTraceId(ex.headers);
    if (tid) {
      const m = list.find((s) => claimedTraceId(s.headers) === tid);
      if (m) return m;
    }
    if (rid) {
      const m = list.find((s) => s.headers.get('x-request-id') === rid);
      if (m) return m;
    }
    // blocking servers: the thread that handles a request makes its calls
    const sameThread = list.filter((s) => s.conn.tid === c.tid && s.conn.tid !== s.conn.pid);
    if (sameThread.length === 1) return sameThread[0];
    const sameReq = list.filter((s) => s.method === ex.method && s.target === ex.target);
    const pick = (l: Exchange[]) => l.find((s) => s.children === 0) ?? l[0];
    if (sameReq.length) return pick(sameReq);
    return pick(list);
  }

  private finish(c: Conn, ex: Exchange, incomplete: boolean): void {
    const i = c.awaiting.indexOf(ex);
    if (i >= 0) c.awaiting.splice(i, 1);
    if (c.reqOpen === ex) c.reqOpen = undefined;
    if (c.respOpen === ex) c.respOpen = undefined;
    if (ex.done) return;
    ex.done = true;
    this.stats.pending--;
    ex.incomplete = incomplete;
    if (incomplete) this.stats.incomplete++;
    if (ex.role === ROLE_SERVER) {
      const list = this.activeServers.get(c.pid);
      if (list) {
        const j = list.indexOf(ex);
        if (j >= 0) list.splice(j, 1);
        if (list.length === 0) this.activeServers.delete(c.pid);
      }
    }
    this.ready.push(ex);
  }

  private closeConn(c: Conn, ts: number): void {
    // close-delimited (or lost-framing) responses end at their last byte
    c.resp?.close();
    if (c.respOpen) this.finish(c, c.respOpen, false);
    c.req?.close();
    for (const ex of [...c.awaiting]) {
      // a request never answered is incomplete (reset, timeout, truncated request)
      ex.reqEnd = Math.max(ex.reqEnd, Math.min(ts, Math.max(c.lastReqTs, ex.reqEnd)));
      this.finish(c, ex, true);
    }
    this.pendingReq.delete(c);
    this.conns.delete(c.sk);
  }

  // ---------------------------------------------------------------- tables

  private conn(e: SockEvent): Conn {
    let c = this.conns.get(e.sk); // get() refreshes the LRU position
    if (c) return c;
    const comm = e.buf.toString('latin1', e.commOff, e.commOff + 16).replace(/\0.*$/s, '');
    c = {
      sk: e.sk, pid: e.pid, tid: e.tid, netns: e.netns, fd: e.fd, comm, role: ROLE_UNKNOWN, family: e.tuple.family,
      localIp: addrString(e.buf, e.tuple.saddrOff, e.tuple.family), localPort: e.tuple.sport,
      remoteIp: addrString(e.buf, e.tuple.daddrOff, e.tuple.family), remotePort: e.tuple.dport,
      clientEp: '', pod: this.topo.podByNetns(e.netns) ?? this.topo.podByCgroup?.(e.cgroupId), awaiting: [], respStartTs: 0, respStartSeq: -1,
      lastReqTs: e.tsNs, lastRespTs: e.tsNs, lastTs: e.tsNs, nonHttpCounted: false,
    };
    this.conns.set(e.sk, c); // may evict (and close) the least recently used connection
    return c;
  }

  /** adds an observation point; a message seen more often than this (retransmissions, loops) keeps its first ones */
  private point(key: string, p: Point): void {
    const m = this.msg(key, p.ts);
    if (p.kind !== 'pkt') for (const q of m.points) if (q.claim) q.claim.claimed = true;
    if (m.points.length < MAX_POINTS) m.points.push(p);
    else this.stats.pointsDropped++;
  }

  private msg(key: string, ts: number): Msg {
    let m = this.msgs.get(key);
    if (!m) {
      m = { key, points: [], lastTs: ts };
      this.msgs.set(key, m);
    }
    m.lastTs = ts;
    return m;
  }

  // ---------------------------------------------------------------- emission

  /** Emits what is ready; closes idle exchanges. Call periodically with CLOCK_MONOTONIC ns. */
  tick(nowNs: number): void {
    const idle: Conn[] = [];
    for (const c of this.conns.rvalues()) {
      if (!c || c.lastTs > nowNs - this.opts.idleNs) break; // oldest first: the rest are newer
      idle.push(c);
    }
    for (const c of idle) {
      this.stats.idleCloses++;
      this.closeConn(c, c.lastTs);
    }
    for (const c of this.lostConns) {
      if (!c.resp?.lost || !c.respOpen || !this.conns.has(c.sk)) this.lostConns.delete(c);
      else if (c.lastRespTs < nowNs - this.opts.lostQuietNs) {
        c.resp.close(); // ends the message at its last byte seen
        this.lostConns.delete(c);
      }
    }
    let n = 0;
    for (; n < this.ready.length; n++) {
      const ex = this.ready[n] as Exchange;
      const end = Math.max(ex.respEnd, ex.reqEnd);
      // wait out the grace period, unless the queue is full or the end lies in the future
      // (a corrupt timestamp must not hold back everything behind it)
      const waiting = end > nowNs - this.opts.graceNs && end < nowNs + 1e9;
      if (waiting && this.ready.length - n <= this.opts.maxReady) break;
      this.emit(ex, nowNs);
    }
    if (n) this.ready.splice(0, n);
    // CLIENT exchanges stay findable for retainNs after their request (late server-side events)
    const old: string[] = [];
    for (const [k, ex] of this.clientByReqKey.rentries() as Generator<[string, Exchange]>) {
      if (ex.reqStart > nowNs - this.opts.retainNs) break;
      if (ex.emittedAt) old.push(k);
    }
    for (const k of old) this.clientByReqKey.delete(k);
    old.length = 0;
    for (const [k, m] of this.msgs.rentries() as Generator<[string, Msg]>) {
      if (m.lastTs > nowNs - this.opts.retainNs) break;
      old.push(k);
    }
    for (const k of old) this.msgs.delete(k);
    this.stats.conns = this.conns.size;
    this.stats.messages = this.msgs.size;
  }

  /** Emits everything regardless of grace (shutdown). */
  drain(): void {
    for (const c of [...this.conns.values()]) this.closeConn(c, c.lastTs);
    for (const ex of this.ready) this.emit(ex, this.lastTs);
    this.ready.length = 0;
    for (const [root, spans] of [...this.held.entries()]) this.release(spans, this.decide(root, spans, false));
    this.held.clear();
    this.msgs.clear();
    this.clientByReqKey.clear();
    this.lostConns.clear();
  }

  private resolveIds(ex: Exchange, depth = 0): NonNullable<Exchange['ids']> {
    if (ex.ids) return ex.ids;
    const role = ex.role === ROLE_SERVER ? 'server' : 'client';
    const spanId = deriveSpanId(role, ex.reqKey);
    let parent: Exchange | undefined;
    if (depth < 32) parent = ex.role === ROLE_SERVER ? this.clientByReqKey.get(ex.reqKey) : ex.cause;
    if (parent) {
      const p = this.resolveIds(parent, depth + 1);
      ex.ids = { traceId: p.traceId, spanId, parentSpanId: p.spanId, remote: false, flags: p.flags, traceState: p.traceState };
      return ex.ids;
    }
    const x = extractContext(ex.headers);
    if (x.malformed) this.stats.malformedContext++;
    if (x.ctx) {
      ex.ids = { traceId: x.ctx.traceId, spanId, parentSpanId: x.ctx.spanId, remote: true, flags: x.ctx.traceFlags, traceState: x.ctx.traceState?.serialize(), format: x.format };
    } else {
      ex.ids = { traceId: deriveTraceId(ex.reqKey), spanId, remote: false, flags: 1 };
    }
    return ex.ids;
  }

  private emit(ex: Exchange, nowNs: number): void {
    ex.emittedAt = nowNs;
    const ids = this.resolveIds(ex);
    const c = ex.conn;
    const localParent = ex.role === ROLE_SERVER ? this.clientByReqKey.get(ex.reqKey) : undefined;
    // the exchange owns the hops of its messages unless a traced client on this node does
    const ownsHops = ex.role === ROLE_CLIENT || !localParent;
    const reqMsg = ownsHops ? this.msgs.get(ex.reqKey) : undefined;
    const respMsg = ownsHops && ex.respKey ? this.msgs.get(ex.respKey) : undefined;
    let start = ex.reqStart;
    let end = ex.respEnd || ex.reqEnd;
    // a SERVER span that owns its inbound hops starts where they start, so they nest inside it
    for (const m of [reqMsg, respMsg]) {
      for (const p of m?.points ?? []) {
        if (p.ts < start) start = p.ts;
        if (p.ts > end) end = p.ts;
      }
    }
    const { path, query } = splitTarget(ex.target);
    const isProxy = this.opts.proxyComms.includes(c.comm);
    const attrs: Attributes = {
      'http.request.method': ex.method,
      'url.path': path,
      'network.protocol.name': 'http',
      'network.transport': 'tcp',
      'network.peer.address': c.remoteIp,
      'network.peer.port': c.remotePort,
      'strata.layer': isProxy ? 'proxy' : 'app',
      'strata.pid': c.pid,
      'strata.tid': c.tid,
      'strata.netns': c.netns,
      'strata.comm': c.comm,
      'strata.request.bytes': ex.reqBytes,
      'strata.response.bytes': ex.respBytes,
    };
    if (query) attrs['url.query'] = query;
    if (ex.status) attrs['http.response.status_code'] = ex.status;
    if (ex.incomplete) attrs['strata.incomplete'] = true;
    if (ex.reqTruncated) attrs['strata.request.head_truncated'] = true;
    if (ex.upgraded) attrs['strata.upgraded'] = true;
    if (ids.format) attrs['strata.context.format'] = ids.format;
    if (ex.role === ROLE_SERVER) {
      attrs['server.address'] = c.localIp;
      attrs['server.port'] = c.localPort;
      attrs['client.address'] = c.remoteIp;
      attrs['client.port'] = c.remotePort;
      attrs['url.scheme'] = 'http';
      attrs['strata.from'] = 'socket read';
      attrs['strata.to'] = 'socket write';
    } else {
      attrs['server.address'] = c.remoteIp;
      attrs['server.port'] = c.remotePort;
      attrs['strata.from'] = 'socket write';
      attrs['strata.to'] = 'socket read';
    }
    // only allow-listed headers leave the node, secrets redacted even then
    for (const h of this.opts.headerAllowList) {
      const v = ex.headers.get(h);
      if (v === undefined) continue;
      const value = this.redact.has(h) ? '[REDACTED]' : v;
      attrs[h === 'user-agent' ? 'user_agent.original' : `http.request.header.${h}`] = value;
    }
    const failed = ex.incomplete || ex.status >= (ex.role === ROLE_SERVER ? 500 : 400);
    const rec: SpanRecord = {
      traceId: ids.traceId,
      spanId: ids.spanId,
      parentSpanId: ids.parentSpanId,
      parentIsRemote: ids.remote,
      traceFlags: ids.flags,
      traceState: ids.traceState,
      name: ex.role === ROLE_SERVER ? `${ex.method} ${path}` : `${ex.method} ${path} -> ${c.remoteIp}:${c.remotePort}`,
      kind: ex.role === ROLE_SERVER ? SpanKind.SERVER : SpanKind.CLIENT,
      start: this.wall(start),
      end: this.wall(end),
      attributes: attrs,
      status: failed ? { code: SpanStatusCode.ERROR, message: ex.incomplete ? 'incomplete exchange' : `HTTP ${ex.status}` } : undefined,
      resource: this.resource(c),
    };
    const out: SpanRecord[] = [rec];
    this.stats.spansEmitted++;
    if (reqMsg) this.emitHops(reqMsg, ex, ids, 'request', out);
    if (respMsg) this.emitHops(respMsg, ex, ids, 'response', out);
    this.route(ex, out);
  }

  /** The exchange that started this trace on this node (no local parent). */
  private localRoot(ex: Exchange): Exchange {
    let cur = ex;
    for (let i = 0; i < 32; i++) {
      const p = cur.role === ROLE_SERVER ? this.clientByReqKey.peek(cur.reqKey) : cur.cause;
      if (!p) return cur;
      cur = p;
    }
    return cur;
  }

  /** Holds a local trace's spans until its root ends, then exports or drops them together. */
  private route(ex: Exchange, spans: SpanRecord[]): void {
    const root = this.localRoot(ex);
    if (root.keep !== undefined) return this.release(spans, root.keep);
    if (root !== ex) {
      const h = this.held.get(root);
      if (h) h.push(...spans);
      else this.held.set(root, spans);
      return;
    }
    const all = this.held.get(root);
    this.held.delete(root);
    if (all) all.push(...spans);
    const set = all ?? spans;
    root.keep = this.decide(root, set, true);
    this.release(set, root.keep);
  }

  /**
   * Spans of one local trace converted with clock offsets measured at different batches can be
   * off by the offset's drift (NTP slewing): keep every child inside its parent on this node.
   */
  private nest(spans: SpanRecord[]): void {
    if (spans.length < 2) return;
    const byId = new Map(spans.map((x) => [x.spanId, x]));
    for (const x of spans) {
      const p = x.parentSpanId ? byId.get(x.parentSpanId) : undefined;
      if (!p) continue;
      if (hrLess(x.start, p.start)) {
        x.start = p.start;
        this.stats.clockClamps++;
      }
      if (hrLess(p.end, x.end)) {
        x.end = p.end;
        this.stats.clockClamps++;
      }
      if (hrLess(x.end, x.start)) x.end = x.start;
    }
  }

  private decide(root: Exchange, spans: SpanRecord[], rootDone: boolean): boolean {
    const s = this.opts.sampling;
    if (s.keepErrors && spans.some((x) => x.status?.code === SpanStatusCode.ERROR)) return true;
    if (rootDone && (Math.max(root.respEnd, root.reqEnd) - root.reqStart) / 1e6 >= s.slowThresholdMs) return true;
    const ids = root.ids;
    if (s.respectParentSampled && ids?.remote) return (ids.flags & 1) === 1;
    if (s.ratio >= 1) return true;
    if (s.ratio <= 0 || !ids) return false;
    // by trace id, so agents on other nodes keep the same traces
    return Number.parseInt(ids.traceId.slice(-8), 16) / 0x100000000 < s.ratio;
  }

  private release(spans: SpanRecord[], keep: boolean): void {
    if (keep) {
      this.stats.tracesKept++;
      this.nest(spans);
      for (const x of spans) this.sink.emit(x);
    } else {
      this.stats.tracesSampledOut++;
      this.stats.spansSampledOut += spans.length;
    }
  }

  private emitHops(m: Msg, ex: Exchange, ids: NonNullable<Exchange['ids']>, direction: string, out: SpanRecord[]): void {
    const pts = [...m.points].sort((a, b) => a.ts - b.ts);
    const base = deriveSpanId('hops', m.key);
    for (let i = 0; i + 1 < pts.length; i++) {
      const a = pts[i] as Point;
      const b = pts[i + 1] as Point;
      const layer = a.kind === 'pkt' && b.kind === 'pkt' ? 'bridge' : a.kind !== 'pkt' && b.kind !== 'pkt' ? 'node' : 'pod';
      const attrs: Attributes = {
        'strata.layer': layer,
        'strata.from': a.label,
        'strata.to': b.label,
        'strata.direction': direction,
        'strata.message.key': m.key,
        'network.transport': 'tcp',
        'url.path': splitTarget(ex.target).path,
        'http.request.method': ex.method,
      };
      const ifname = b.ifname ?? a.ifname;
      if (ifname) attrs['network.interface.name'] = ifname;
      const pod = b.pod ?? a.pod;
      if (pod) {
        attrs['k8s.pod.name'] = pod.name;
        attrs['k8s.namespace.name'] = pod.namespace;
      }
      if (b.netns ?? a.netns) attrs['strata.netns'] = (b.netns ?? a.netns) as number;
      out.push({
        traceId: ids.traceId,
        spanId: nthSpanId(base, i),
        parentSpanId: ids.spanId,
        traceFlags: ids.flags,
        name: `net ${a.label} -> ${b.label}`,
        kind: SpanKind.INTERNAL,
        start: this.wall(a.ts),
        end: this.wall(b.ts),
        attributes: attrs,
        resource: (this.netResource ??= { serviceName: 'strata-net', attributes: { 'k8s.node.name': this.topo.nodeName } }),
      });
      this.stats.hopSpansEmitted++;
    }
  }

  private resource(c: Conn): SpanRecord['resource'] {
    if (c.resource) return c.resource;
    const key = `${c.pid}/${c.pod?.uid ?? ''}`;
    const cached = this.resources.get(key);
    if (cached) return (c.resource = cached);
    const attrs: Attributes = { 'k8s.node.name': this.topo.nodeName, 'process.pid': c.pid, 'process.executable.name': c.comm };
    if (c.pod) {
      attrs['k8s.pod.name'] = c.pod.name;
      attrs['k8s.namespace.name'] = c.pod.namespace;
      attrs['k8s.pod.uid'] = c.pod.uid;
      attrs['k8s.deployment.name'] = c.pod.workload;
    }
    const r = { serviceName: c.pod?.workload ?? c.comm, attributes: attrs };
    this.resources.set(key, r);
    c.resource = r;
    return r;
  }
}

const hrLess = (a: HrTime, b: HrTime) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** a request: sent by the client endpoint, its first byte at seq (client's sequence space) */
function reqMsgKey(clientEp: string, seq: number): string {
  return `>${clientEp}/${seq}`;
}

/** a response: sent to the client endpoint, its first byte at seq (server's sequence space) */
function respMsgKey(clientEp: string, seq: number): string {
  return `<${clientEp}/${seq}`;
}
