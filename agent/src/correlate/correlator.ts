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
import type { Attributes } from '@opentelemetry/api';
import { addrString, type PktEvent, type SockEvent, type StateEvent, type EventHandler } from '../events/decode.ts';
import { DIR, EVENT_TYPE, FLAGS } from '../events/layout.generated.ts';
import type { SpanRecord, SpanSink } from '../export/types.ts';
import { extractContext } from './context.ts';
import { looksLikeRequest, looksLikeResponse, parseHead, splitTarget } from './http.ts';
import { deriveSpanId, deriveTraceId } from './ids.ts';

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
  iface(ifindex: number): { name: string; pod?: PodInfo } | undefined;
}

export interface CorrelatorOptions {
  /** wait this long after an exchange ends before emitting (late events from other CPUs) */
  graceNs: number;
  /** an exchange with no activity for this long is closed as incomplete */
  idleNs: number;
  maxConns: number;
  maxMessages: number;
  /** emitted exchanges stay findable (for late children) this long */
  retainNs: number;
  /** processes whose server spans are labelled layer=proxy */
  proxyComms: string[];
  /** request headers copied to span attributes (lowercase); never Authorization/Cookie */
  headerAllowList: string[];
}

export const DEFAULT_CORRELATOR_OPTIONS: CorrelatorOptions = {
  graceNs: 100e6,
  idleNs: 30e9,
  maxConns: 65536,
  maxMessages: 65536,
  retainNs: 10e9,
  proxyComms: ['nginx', 'envoy', 'haproxy', 'traefik'],
  headerAllowList: ['x-request-id', 'user-agent', 'content-type'],
};

export interface CorrelatorStats {
  conns: number;
  messages: number;
  connEvictions: number;
  messageEvictions: number;
  exchanges: number;
  spansEmitted: number;
  hopSpansEmitted: number;
  nonHttp: number;
  orphanResponses: number;
  incomplete: number;
  malformedContext: number;
  pktWithoutMessage: number;
}

const ROLE_UNKNOWN = 0;
const ROLE_SERVER = 1;
const ROLE_CLIENT = 2;

interface Point {
  ts: number;
  kind: 'write' | 'read' | 'pkt';
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
  pod?: PodInfo;
  /** exchange whose request bytes are flowing */
  reqOpen?: Exchange;
  /** exchanges waiting for (or receiving) their response, oldest first */
  awaiting: Exchange[];
  lastTs: number;
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
  reqHeadLen: number;
  reqContentLength: number;
  respKey?: string;
  respStart: number;
  respEnd: number;
  respBytes: number;
  respHeadLen: number;
  respContentLength: number;
  respChunked: boolean;
  status: number;
  done: boolean;
  incomplete: boolean;
  /** for CLIENT exchanges: the SERVER exchange of the same process that caused it */
  cause?: Exchange;
  children: number;
  ids?: { traceId: string; spanId: string; parentSpanId?: string; remote: boolean; flags: number; traceState?: string };
  /** set when emitted */
  emittedAt: number;
}

export type WallClock = (monoNs: number) => HrTime;

/** mono -> wall with an offset measured now (CLOCK_MONOTONIC is what bpf_ktime_get_ns reads). */
export function measureWallClock(): WallClock {
  const mono = process.hrtime.bigint();
  const wallNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
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
    conns: 0, messages: 0, connEvictions: 0, messageEvictions: 0, exchanges: 0, spansEmitted: 0, hopSpansEmitted: 0,
    nonHttp: 0, orphanResponses: 0, incomplete: 0, malformedContext: 0, pktWithoutMessage: 0,
  };
  private readonly opts: CorrelatorOptions;
  private readonly conns = new Map<number, Conn>();
  private readonly msgs = new Map<string, Msg>();
  /** CLIENT exchanges by the key of their request message (for the server side to find its parent) */
  private readonly clientByReqKey = new Map<string, Exchange>();
  /** SERVER exchanges in progress, per process (in-process causality) */
  private readonly activeServers = new Map<number, Exchange[]>();
  private readonly ready: Exchange[] = [];
  private lastTs = 0;
  wall: WallClock;

  private readonly sink: SpanSink;
  private readonly topo: Topology;

  constructor(sink: SpanSink, topo: Topology, opts: Partial<CorrelatorOptions> = {}, wall: WallClock = measureWallClock()) {
    this.sink = sink;
    this.topo = topo;
    this.opts = { ...DEFAULT_CORRELATOR_OPTIONS, ...opts };
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
      c.role = ROLE_SERVER;
      return;
    }
    if (e.type === EVENT_TYPE.EV_SOCK_CONNECT) {
      c.role = ROLE_CLIENT;
      return;
    }
    if (e.type !== EVENT_TYPE.EV_SOCK_DATA || e.flags & FLAGS.F_PEEK) return;
    if (c.role === ROLE_UNKNOWN) {
      // a connection older than the agent: the first request tells which side we are
      if (!looksLikeRequest(e.buf, e.payloadOff, e.payloadLen)) {
        this.stats.nonHttp++;
        return;
      }
      c.role = e.dir === DIR.DIR_IN ? ROLE_SERVER : ROLE_CLIENT;
    }
    const requestDir = c.role === ROLE_SERVER ? DIR.DIR_IN : DIR.DIR_OUT;
    if (e.dir === requestDir) this.requestData(c, e);
    else this.responseData(c, e);
  }

  onState(_e: StateEvent): void {
    // connection lifetime comes from close(); state changes are used by later issues (resets)
  }

  onPkt(e: PktEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    if (e.dataLen === 0 || !(e.flags & FLAGS.F_SEQ_VALID)) return;
    const key = msgKey(addrString(e.buf, e.tuple.saddrOff, e.tuple.family), e.tuple.sport, e.seq);
    const iface = this.topo.iface(e.ifindex);
    const m = this.msg(key, e.tsNs);
    m.points.push({ ts: e.tsNs, kind: 'pkt', label: iface?.name ?? `if${e.ifindex}`, ifname: iface?.name ?? `if${e.ifindex}`, dir: e.dir, pod: iface?.pod });
  }

  // ---------------------------------------------------------------- HTTP

  private requestData(c: Conn, e: SockEvent): void {
    const open = c.reqOpen;
    const startsRequest = looksLikeRequest(e.buf, e.payloadOff, e.payloadLen);
    const bodyPending = open && open.reqContentLength >= 0 && open.reqHeadLen >= 0 &&
      open.reqBytes < open.reqHeadLen + open.reqContentLength;
    if (open && (!startsRequest || bodyPending)) {
      open.reqBytes += e.ret;
      open.reqEnd = e.tsNs;
      c.lastTs = e.tsNs;
      return;
    }
    if (!startsRequest) {
      this.stats.nonHttp++;
      return;
    }
    const head = parseHead(e.buf, e.payloadOff, e.payloadLen, true);
    if (!head) {
      this.stats.nonHttp++;
      return;
    }
    const seqValid = (e.flags & FLAGS.F_SEQ_VALID) !== 0;
    const sender = c.role === ROLE_SERVER ? [c.remoteIp, c.remotePort] as const : [c.localIp, c.localPort] as const;
    const reqKey = seqValid ? msgKey(sender[0], sender[1], e.seq) : `${c.sk}/${e.tsNs}`;
    const ex: Exchange = {
      conn: c, role: c.role, method: head.method, target: head.target, headers: head.headers, reqKey,
      reqStart: c.role === ROLE_SERVER ? e.tsNs : e.enterTsNs, reqEnd: e.tsNs, reqBytes: e.ret,
      reqHeadLen: head.headLen, reqContentLength: head.contentLength,
      respStart: 0, respEnd: 0, respBytes: 0, respHeadLen: -1, respContentLength: -1, respChunked: false,
      status: 0, done: false, incomplete: false, children: 0, emittedAt: 0,
    };
    this.stats.exchanges++;
    c.reqOpen = ex;
    c.awaiting.push(ex);
    c.lastTs = e.tsNs;
    const label = `${c.pod?.workload ?? c.comm} socket`;
    if (c.role === ROLE_SERVER) {
      this.msg(reqKey, e.tsNs).points.push({ ts: e.tsNs, kind: 'read', label, pod: c.pod, netns: c.netns });
      const list = this.activeServers.get(c.pid);
      if (list) list.push(ex);
      else this.activeServers.set(c.pid, [ex]);
    } else {
      this.msg(reqKey, e.tsNs).points.push({ ts: e.enterTsNs, kind: 'write', label, pod: c.pod, netns: c.netns });
      ex.cause = this.findCause(c, ex);
      if (ex.cause) ex.cause.children++;
      this.clientByReqKey.set(reqKey, ex);
    }
  }

  private responseData(c: Conn, e: SockEvent): void {
    let ex = c.awaiting[0];
    if (ex && ex.respBytes > 0 && looksLikeResponse(e.buf, e.payloadOff, e.payloadLen) && respComplete(ex) !== false) {
      // the previous response ended without us knowing its length: the next one starts here
      this.finish(c, ex, false);
      ex = c.awaiting[0];
    }
    if (!ex) {
      this.stats.orphanResponses++;
      return;
    }
    if (c.reqOpen === ex) c.reqOpen = undefined;
    c.lastTs = e.tsNs;
    if (ex.respBytes === 0) {
      const head = looksLikeResponse(e.buf, e.payloadOff, e.payloadLen) ? parseHead(e.buf, e.payloadOff, e.payloadLen, false) : null;
      if (!head) {
        this.stats.orphanResponses++;
        return;
      }
      if (head.status >= 100 && head.status < 200 && head.status !== 101) return; // interim (100 Continue)
      ex.status = head.status;
      ex.respHeadLen = head.headLen;
      ex.respContentLength = head.contentLength;
      ex.respChunked = head.chunked;
      if (ex.method === 'HEAD' || head.status === 204 || head.status === 304) ex.respContentLength = 0;
      ex.respStart = c.role === ROLE_SERVER ? e.enterTsNs : e.tsNs;
      if (e.flags & FLAGS.F_SEQ_VALID) {
        const sender = c.role === ROLE_SERVER ? [c.localIp, c.localPort] as const : [c.remoteIp, c.remotePort] as const;
        ex.respKey = msgKey(sender[0], sender[1], e.seq);
        const label = `${c.pod?.workload ?? c.comm} socket`;
        this.msg(ex.respKey, e.tsNs).points.push(c.role === ROLE_SERVER
          ? { ts: e.enterTsNs, kind: 'write', label, pod: c.pod, netns: c.netns }
          : { ts: e.tsNs, kind: 'read', label, pod: c.pod, netns: c.netns });
      }
    }
    ex.respBytes += e.ret;
    // bytes count from when they are handed to the kernel (write entry) or to the app (read
    // exit): a writer preempted before its syscall returns must not end after its reader
    ex.respEnd = c.role === ROLE_SERVER ? e.enterTsNs : e.tsNs;
    if (ex.respChunked && !(e.flags & FLAGS.F_TRUNCATED) && endsWithLastChunk(e.buf, e.payloadOff, e.payloadLen)) {
      this.finish(c, ex, false);
    } else if (respComplete(ex) === true || ex.status === 101) {
      this.finish(c, ex, false);
    }
  }

  /** In-process causality: which SERVER exchange of this process made this outbound request. */
  private findCause(c: Conn, ex: Exchange): Exchange | undefined {
    const list = this.activeServers.get(c.pid);
    if (!list || list.length === 0) return undefined;
    const tp = ex.headers.get('traceparent');
    const rid = ex.headers.get('x-request-id');
    if (tp) {
      const tid = tp.split('-')[1];
      const m = list.find((s) => s.headers.get('traceparent')?.split('-')[1] === tid);
      if (m) return m;
    }
    if (rid) {
      const m = list.find((s) => s.headers.get('x-request-id') === rid);
      if (m) return m;
    }
    const sameReq = list.filter((s) => s.method === ex.method && s.target === ex.target);
    const pick = (l: Exchange[]) => l.find((s) => s.children === 0 && s.conn.tid === c.tid) ?? l.find((s) => s.children === 0) ?? l[0];
    if (sameReq.length) return pick(sameReq);
    return pick(list);
  }

  private finish(c: Conn, ex: Exchange, incomplete: boolean): void {
    const i = c.awaiting.indexOf(ex);
    if (i >= 0) c.awaiting.splice(i, 1);
    if (c.reqOpen === ex) c.reqOpen = undefined;
    if (ex.done) return;
    ex.done = true;
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
    for (const ex of [...c.awaiting]) {
      // close-delimited bodies end here; a request never answered is incomplete
      if (ex.respBytes > 0) {
        ex.respEnd = Math.max(ex.respEnd, ts);
        this.finish(c, ex, false);
      } else {
        ex.reqEnd = Math.max(ex.reqEnd, ts);
        this.finish(c, ex, true);
      }
    }
    this.conns.delete(c.sk);
  }

  // ---------------------------------------------------------------- tables

  private conn(e: SockEvent): Conn {
    let c = this.conns.get(e.sk);
    if (c) {
      // refresh LRU position
      this.conns.delete(e.sk);
      this.conns.set(e.sk, c);
      return c;
    }
    const comm = e.buf.toString('latin1', e.commOff, e.commOff + 16).replace(/\0.*$/s, '');
    c = {
      sk: e.sk, pid: e.pid, tid: e.tid, netns: e.netns, fd: e.fd, comm, role: ROLE_UNKNOWN, family: e.tuple.family,
      localIp: addrString(e.buf, e.tuple.saddrOff, e.tuple.family), localPort: e.tuple.sport,
      remoteIp: addrString(e.buf, e.tuple.daddrOff, e.tuple.family), remotePort: e.tuple.dport,
      pod: this.topo.podByNetns(e.netns), awaiting: [], lastTs: e.tsNs,
    };
    this.conns.set(e.sk, c);
    if (this.conns.size > this.opts.maxConns) {
      const oldest = this.conns.values().next().value as Conn;
      this.stats.connEvictions++;
      this.closeConn(oldest, oldest.lastTs);
    }
    return c;
  }

  private msg(key: string, ts: number): Msg {
    let m = this.msgs.get(key);
    if (!m) {
      m = { key, points: [], lastTs: ts };
      this.msgs.set(key, m);
      if (this.msgs.size > this.opts.maxMessages) {
        const oldest = this.msgs.keys().next().value as string;
        this.msgs.delete(oldest);
        this.stats.messageEvictions++;
      }
    }
    if (m.points.length < 64) m.lastTs = ts;
    return m;
  }

  // ---------------------------------------------------------------- emission

  /** Emits what is ready; closes idle exchanges. Call periodically with CLOCK_MONOTONIC ns. */
  tick(nowNs: number): void {
    for (const c of this.conns.values()) {
      if (c.lastTs > nowNs - this.opts.idleNs) break; // LRU order: the rest are newer
      this.closeConn(c, c.lastTs);
      this.stats.connEvictions++;
    }
    let n = 0;
    for (; n < this.ready.length; n++) {
      const ex = this.ready[n] as Exchange;
      if (Math.max(ex.respEnd, ex.reqEnd) > nowNs - this.opts.graceNs) break;
      this.emit(ex, nowNs);
    }
    if (n) this.ready.splice(0, n);
    // emitted CLIENT exchanges stay findable for retainNs
    for (const [k, ex] of this.clientByReqKey) {
      if (!ex.emittedAt || ex.emittedAt > nowNs - this.opts.retainNs) break;
      this.clientByReqKey.delete(k);
    }
    for (const [k, m] of this.msgs) {
      if (m.lastTs > nowNs - this.opts.retainNs) break;
      this.msgs.delete(k);
    }
    this.stats.conns = this.conns.size;
    this.stats.messages = this.msgs.size;
  }

  /** Emits everything regardless of grace (shutdown). */
  drain(): void {
    for (const c of [...this.conns.values()]) this.closeConn(c, c.lastTs);
    this.tick(Number.MAX_SAFE_INTEGER / 2);
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
      ex.ids = { traceId: x.ctx.traceId, spanId, parentSpanId: x.ctx.spanId, remote: true, flags: x.ctx.traceFlags, traceState: x.ctx.traceState?.serialize() };
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
    for (const h of this.opts.headerAllowList) {
      const v = ex.headers.get(h);
      if (v !== undefined) attrs[h === 'user-agent' ? 'user_agent.original' : `http.request.header.${h}`] = v;
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
    this.sink.emit(rec);
    this.stats.spansEmitted++;
    if (reqMsg) this.emitHops(reqMsg, ex, ids, 'request');
    if (respMsg) this.emitHops(respMsg, ex, ids, 'response');
  }

  private emitHops(m: Msg, ex: Exchange, ids: NonNullable<Exchange['ids']>, direction: string): void {
    const pts = [...m.points].sort((a, b) => a.ts - b.ts);
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
      this.sink.emit({
        traceId: ids.traceId,
        spanId: deriveSpanId(`hop${i}`, m.key),
        parentSpanId: ids.spanId,
        traceFlags: ids.flags,
        name: `net ${a.label} -> ${b.label}`,
        kind: SpanKind.INTERNAL,
        start: this.wall(a.ts),
        end: this.wall(b.ts),
        attributes: attrs,
        resource: { serviceName: 'strata-net', attributes: { 'k8s.node.name': this.topo.nodeName } },
      });
      this.stats.hopSpansEmitted++;
    }
  }

  private resource(c: Conn): SpanRecord['resource'] {
    const attrs: Attributes = { 'k8s.node.name': this.topo.nodeName, 'process.pid': c.pid, 'process.executable.name': c.comm };
    if (c.pod) {
      attrs['k8s.pod.name'] = c.pod.name;
      attrs['k8s.namespace.name'] = c.pod.namespace;
      attrs['k8s.pod.uid'] = c.pod.uid;
      attrs['k8s.deployment.name'] = c.pod.workload;
    }
    return { serviceName: c.pod?.workload ?? c.comm, attributes: attrs };
  }
}

function msgKey(ip: string, port: number, seq: number): string {
  return `${ip}:${port}/${seq}`;
}

/** true: known complete; false: known incomplete; undefined: length unknown */
function respComplete(ex: Exchange): boolean | undefined {
  if (ex.respHeadLen < 0) return undefined;
  if (ex.respContentLength >= 0) return ex.respBytes >= ex.respHeadLen + ex.respContentLength;
  if (ex.respChunked) return false;
  return undefined;
}

const LAST_CHUNK = Buffer.from('0\r\n\r\n');
function endsWithLastChunk(b: Buffer, off: number, len: number): boolean {
  return len >= 5 && b.compare(LAST_CHUNK, 0, 5, off + len - 5, off + len) === 0;
}
