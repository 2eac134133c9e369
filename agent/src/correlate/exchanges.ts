// Connections and the HTTP/1.x exchanges on them. Each connection is keyed by the kernel socket and
// carries a request-direction and a response-direction stream parser; exchanges are answered in
// FIFO order, so pipelined responses match their requests. The socket event being parsed is passed
// to the parser callbacks as an argument (never through "current event" fields).
import { LRUCache } from 'lru-cache';
import { addrString, type SockEvent } from '../events/decode.ts';
import { DIR, EVENT_TYPE, FLAGS } from '../events/layout.generated.ts';
import type { ExecutableOf, PodInfo, Topology } from '../k8s/topology.ts';
import { type HttpHead, looksLikeRequest, validRequestLine } from './http.ts';
import type { CauseMark } from './causality.ts';
import type { ExchangeIds, TraceContext } from './ids.ts';
import { reqMsgKey, respMsgKey } from './hops.ts';
import type { Endpoint, InvalidReason, ObservationPoint, ProcessInfo } from './records.ts';
import { type Framing, type HeadCut, HttpStream } from './stream.ts';
import { LRU_OPTS } from '../lru.ts';

export const ROLE_UNKNOWN = 0;
export const ROLE_SERVER = 1;
export const ROLE_CLIENT = 2;

export interface Conn {
  sk: number;
  pid: number;
  tid: number;
  netns: number;
  fd: number;
  comm: string;
  /** the program (not the thread name), comm when unknown */
  executable: string;
  role: number;
  family: number;
  localIp: string;
  localPort: number;
  remoteIp: string;
  remotePort: number;
  /** the client's endpoint "ip:port": what message keys are built on (survives DNAT) */
  clientEp: string;
  pod?: PodInfo;
  /** name of this socket's observation points: the workload, else the program */
  owner: string;
  /** the process and the two ends, as records carry them (one object per connection, shared by its records) */
  process: ProcessInfo;
  local: Endpoint;
  remote: Endpoint;
  /** request direction and response direction parsers (created when the role is known) */
  req?: HttpStream<SockEvent>;
  resp?: HttpStream<SockEvent>;
  /** request whose bytes are flowing */
  reqOpen?: Exchange;
  /** exchanges waiting for (or receiving) their response, oldest first */
  awaiting: Exchange[];
  /** exchange whose response bytes are flowing */
  respOpen?: Exchange;
  /** the message now being parsed in each direction started at this time / seq (-1: unknown) */
  reqStartTs: number;
  reqStartSeq: number;
  respStartTs: number;
  respStartSeq: number;
  lastReqTs: number;
  lastRespTs: number;
  lastTs: number;
  nonHttpCounted: boolean;
  /** most distinct observation places any emitted message of this connection had, per direction */
  maxReqPlaces: number;
  maxRespPlaces: number;
  /** when the previous response on this connection ended (pipelining: the next request started before) */
  prevRespEnd: number;
  /** TCP seq the next byte of each direction should carry (-1: unknown); a later one means bytes were lost */
  reqNextSeq: number;
  respNextSeq: number;
  /**
   * set when this process connected the socket, for the first request on it (causality.ts): the
   * inbound requests the connecting thread may have been handling, null when its order said none
   */
  connectCause?: Exchange[] | null;
  /** requests that followed messages the kernel shed (F_AFTER_SHED), so far: what Exchange.shedEpoch counts */
  shedEpoch: number;
}

export interface Exchange {
  conn: Conn;
  role: number;
  method: string;
  target: string;
  version: string;
  headers: Map<string, string>;
  /** request message: key, and seq of its first byte (-1 unknown) */
  reqKey: string;
  reqSeq: number;
  reqStart: number;
  reqEnd: number;
  reqBytes: number;
  reqTruncated: boolean;
  respKey?: string;
  respSeq: number;
  respStart: number;
  respEnd: number;
  respBytes: number;
  status: number;
  done: boolean;
  incomplete: boolean;
  upgraded: boolean;
  invalid?: InvalidReason;
  /** the request started before the previous response on its connection ended */
  pipelined: boolean;
  /** Conn.shedEpoch when its request came: a response after shed ones answers no request of an older epoch */
  shedEpoch: number;
  /**
   * its response was shed while its request was kept (the request was in flight across an
   * observation window's edge): neither it nor its local trace is exported
   */
  cut?: boolean;
  /** this socket's observation points of the request and response (their last byte is set when the exchange finishes) */
  reqPt?: ObservationPoint;
  respPt?: ObservationPoint;
  /** the thread that moved the request's head: read it (SERVER) or wrote it (CLIENT) */
  tid: number;
  /** for CLIENT exchanges: the SERVER exchange of the same process that caused it */
  cause?: Exchange;
  /** for SERVER exchanges read together with others in one read (pipelined): all of them, in order */
  group?: Exchange[];
  /** for CLIENT exchanges: the evidence that linked it, or why it is not linked (causality.ts) */
  causeRule?: CauseMark;
  /** the local parent once looked up (null: none), fixed from then on like the ids derived from it */
  parent?: Exchange | null;
  children: number;
  ids?: ExchangeIds;
  /** SERVER whose request carried no trace context: the context its first outbound call carried (ids.ts adopts it) */
  adopt?: TraceContext;
  /** set when emitted */
  emittedAt: number;
  /** sampling decision, on local roots */
  keep?: boolean;
  /** cross-node stitching of a local root (stitch.ts): waiting for a peer, stitched, timed out, or not concerned */
  stitch?: 'none' | 'wait' | 'peer' | 'timeout';
  /** the node whose agent gave this root its trace, and that node's clock offset from ours */
  stitchFrom?: { node: string; skewMs: number };
}

export interface ExchangeStats {
  connEvictions: number;
  exchanges: number;
  nonHttp: number;
  orphanResponses: number;
  incomplete: number;
  truncatedHeads: number;
  pending: number;
  /** requests that were not valid HTTP, by reason (counted, exported only when asked) */
  invalidRequests: Record<InvalidReason, number>;
  /** socket events whose TCP seq skipped bytes this table never saw (events lost on the way), and those bytes */
  seqGaps: number;
  seqGapBytes: number;
  /** seq gaps that are messages shed by load shedding (F_AFTER_SHED), not losses */
  shedGaps: number;
  /** exchanges cut: their request seen, their response shed (Exchange.cut) */
  cut: number;
}

/** What the exchange table tells the rest of the correlator. */
export interface ExchangeEvents {
  /** an observation point of a socket, filed under a message key */
  point(key: string, p: ObservationPoint): void;
  /** a request head was seen (the exchange exists now) */
  started(ex: Exchange): void;
  /** the exchange ended (response complete, or incomplete at close) */
  finished(ex: Exchange): void;
  /** a thread's socket read moved bytes of these exchanges (requests a server read, responses a client read); none: of nothing known */
  read?(pid: number, tid: number, exs: readonly Exchange[]): void;
  /** a thread of this process connected the socket */
  connected?(c: Conn, pid: number, tid: number): void;
}

export class Exchanges {
  readonly stats: ExchangeStats = {
    connEvictions: 0, exchanges: 0, nonHttp: 0, orphanResponses: 0, incomplete: 0, truncatedHeads: 0, pending: 0,
    invalidRequests: { bad_request_line: 0, head_incomplete: 0, head_too_long: 0 }, seqGaps: 0, seqGapBytes: 0, shedGaps: 0, cut: 0,
  };
  readonly conns: LRUCache<number, Conn>;
  /** connections whose response framing is lost: they end after a quiet period */
  private readonly lostConns = new Set<Conn>();
  private readonly topo: Topology;
  private readonly exe: ExecutableOf | undefined;
  private readonly out: ExchangeEvents;
  /** the exchanges whose bytes the event being parsed moved (for out.read) */
  private touched: Exchange[] = [];

  constructor(maxConns: number, topo: Topology, out: ExchangeEvents, exe?: ExecutableOf) {
    this.topo = topo;
    this.exe = exe;
    this.out = out;
    this.conns = new LRUCache<number, Conn>({
      max: maxConns,
      disposeAfter: (c, _k, reason) => {
        if (reason !== 'evict') return;
        this.stats.connEvictions++;
        this.closeConn(c, c.lastTs);
      },
    });
  }

  onSock(e: SockEvent): void {
    if (e.type === EVENT_TYPE.EV_SOCK_CLOSE) {
      const c = this.conns.get(e.sk, LRU_OPTS);
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
      this.out.connected?.(c, e.pid, e.tid);
      return;
    }
    // peeked bytes are read again later; no bytes moved: nothing to frame
    if (e.type !== EVENT_TYPE.EV_SOCK_DATA || e.flags & FLAGS.F_PEEK || e.ret <= 0) return;
    if (c.role === ROLE_UNKNOWN) {
      // a connection older than the agent: the first request tells which side we are
      if (!looksLikeRequest(e.buf, e.payloadOff, e.payloadLen)) {
        this.nonHttp(c);
        if (e.dir === DIR.DIR_IN) this.out.read?.(e.pid, e.tid, []);
        return;
      }
      this.setRole(c, e.dir === DIR.DIR_IN ? ROLE_SERVER : ROLE_CLIENT);
      // what came before (the rest of a message in flight when the agent attached) was counted as
      // non-HTTP; from here the connection is HTTP, and its reads tell causality what they moved
      c.nonHttpCounted = false;
    }
    const isRequest = e.dir === (c.role === ROLE_SERVER ? DIR.DIR_IN : DIR.DIR_OUT);
    c.lastTs = e.tsNs;
    const stream = isRequest ? c.req : c.resp;
    if (stream && e.flags & FLAGS.F_SEQ_VALID) {
      // Events lost on the way (ring buffer full, a batch dropped at the JS queue) leave a hole in
      // the byte stream that nothing else shows: without it, a lost response would pair the next
      // one with the wrong request for the rest of a keep-alive connection. The seq says how many
      // bytes are missing: the parser counts them through a known-length body or loses the framing
      // until the next head, as for bytes moved but not captured. A read that also consumed the
      // peer's FIN reports a seq one too high (see Hops.points): a gap of 1 on a read is that.
      const next = isRequest ? c.reqNextSeq : c.respNextSeq;
      const gap = (e.seq - next) >>> 0;
      if (next >= 0 && gap !== 0 && gap < 0x40000000 && e.flags & FLAGS.F_AFTER_SHED && !stream.inMessage) {
        // whole messages the kernel shed on purpose (load shedding) between two it reported:
        // not a loss, and the parser is between messages already
        this.stats.shedGaps++;
      } else if (next >= 0 && gap !== 0 && gap < 0x40000000 && !(gap === 1 && e.dir === DIR.DIR_IN)) {
        this.stats.seqGaps++;
        this.stats.seqGapBytes += gap;
        // no event: the lost bytes' own seq and time are unknown, their message gets a key of its own
        stream.feed(e.buf, e.payloadOff, 0, gap, undefined);
      }
      if (isRequest) c.reqNextSeq = (e.seq + e.ret) >>> 0;
      else c.respNextSeq = (e.seq + e.ret) >>> 0;
    }
    // the kernel shed the messages sent before this one (load shedding): the connection's first
    // request was one of them, so what its connect() said is not about this request
    if (isRequest && c.role === ROLE_CLIENT && e.flags & FLAGS.F_AFTER_SHED) c.connectCause = undefined;
    if (e.flags & FLAGS.F_AFTER_SHED && stream && !stream.inMessage) {
      // A request after shed ones starts a new epoch. A response after shed ones answers a request
      // of the newest epoch: requests of older ones still waiting had their responses among those
      // shed (the programs were detached, or their socket's state started afresh, as a window
      // closed and the next opened). Paired with this response, each would take the next one's
      // answer for the rest of the connection.
      if (isRequest) c.shedEpoch++;
      else for (const ex of [...c.awaiting]) if (ex.shedEpoch < c.shedEpoch) this.cut(c, ex);
    }
    const open = isRequest ? c.reqOpen : c.respOpen;
    this.touched = open ? [open] : [];
    stream?.feed(e.buf, e.payloadOff, Math.min(e.payloadLen, e.ret), e.ret, e);
    // a read ends what the thread was doing: what it does next is (at most) this read's callback
    if (e.dir === DIR.DIR_IN) {
      const t = c.nonHttpCounted ? [] : this.touched;
      // several requests in one read (pipelined): which one a call serves is for causality.ts to tell
      if (c.role === ROLE_SERVER && t.length > 1) for (const x of t) x.group = t;
      this.out.read?.(e.pid, e.tid, t);
    }
    this.touched = [];
    if (c.resp?.lost && c.respOpen) this.lostConns.add(c);
    if (isRequest) c.lastReqTs = bytesTs(e);
    else c.lastRespTs = bytesTs(e);
  }

  /** Closes connections idle since before `idleBefore`; ends lost-framing responses quiet since `quietBefore`. Returns idle closes. */
  expire(idleBefore: number, quietBefore: number): number {
    const idle: Conn[] = [];
    for (const c of this.conns.rvalues()) {
      if (!c || c.lastTs > idleBefore) break; // oldest first: the rest are newer
      idle.push(c);
    }
    for (const c of idle) this.closeConn(c, c.lastTs);
    for (const c of this.lostConns) {
      if (!c.resp?.lost || !c.respOpen || !this.conns.has(c.sk)) this.lostConns.delete(c);
      else if (c.lastRespTs < quietBefore) {
        c.resp.close(); // ends the message at its last byte seen
        this.lostConns.delete(c);
      }
    }
    return idle.length;
  }

  closeAll(): void {
    for (const c of [...this.conns.values()]) this.closeConn(c, c.lastTs);
    this.lostConns.clear();
  }

  // ---------------------------------------------------------------- parser callbacks

  private setRole(c: Conn, role: number): void {
    if (c.role === role && c.req) return;
    c.role = role;
    c.clientEp = role === ROLE_SERVER ? `${c.remoteIp}:${c.remotePort}` : `${c.localIp}:${c.localPort}`;
    c.req = new HttpStream<SockEvent>(true, {
      onStart: (e, off) => {
        c.reqStartTs = e ? bytesTs(e) : c.lastReqTs;
        c.reqStartSeq = seqAt(e, off);
      },
      onHead: (e, head, truncated, cut) => this.requestHead(c, e, head, truncated, cut),
      onEnd: (e, off) => this.requestEnd(c, e, off),
      onNonHttp: () => this.nonHttp(c),
    });
    c.resp = new HttpStream<SockEvent>(false, {
      onStart: (e, off) => {
        c.respStartTs = e ? bytesTs(e) : c.lastRespTs;
        c.respStartSeq = seqAt(e, off);
      },
      onHead: (e, head, truncated) => this.responseHead(c, e, head, truncated),
      onEnd: (e, off) => this.responseEnd(c, e, off),
      onNonHttp: () => this.nonHttp(c),
    });
  }

  private nonHttp(c: Conn): void {
    if (!c.nonHttpCounted) this.stats.nonHttp++;
    c.nonHttpCounted = true;
  }

  private requestHead(c: Conn, e: SockEvent | undefined, head: HttpHead | null, truncated: boolean, cut: HeadCut | undefined): Framing {
    const ts = e ? bytesTs(e) : c.lastReqTs;
    const seq = c.reqStartSeq;
    const reqKey = seq >= 0 ? reqMsgKey(c.clientEp, seq) : `${c.sk}/${c.reqStartTs}`;
    // junk after a method, or a head the connection never finished: counted by reason
    let invalid: InvalidReason | undefined;
    if (head && !validRequestLine(head)) invalid = 'bad_request_line';
    else if (cut === 'close') invalid = 'head_incomplete';
    else if (cut === 'too_long') invalid = 'head_too_long';
    if (invalid) this.stats.invalidRequests[invalid]++;
    const ex: Exchange = {
      conn: c, role: c.role, method: head?.method || '_OTHER', target: head?.target ?? '', version: head?.version ?? '',
      headers: head?.headers ?? new Map(), reqKey, reqSeq: seq, reqStart: c.reqStartTs, reqEnd: ts, reqBytes: 0,
      reqTruncated: truncated && !invalid, tid: e?.tid ?? c.tid, respSeq: -1, respStart: 0, respEnd: 0, respBytes: 0, status: 0, done: false,
      incomplete: false, upgraded: false, invalid, pipelined: c.awaiting.length > 0 || c.reqStartTs < c.prevRespEnd, shedEpoch: c.shedEpoch,
      children: 0, emittedAt: 0,
    };
    if (truncated && !invalid) this.stats.truncatedHeads++;
    this.stats.exchanges++;
    this.stats.pending++;
    c.reqOpen = ex;
    c.awaiting.push(ex);
    this.touched.push(ex);
    ex.reqPt = { kind: c.role === ROLE_SERVER ? 'read' : 'write', tsNs: c.reqStartTs, name: c.owner, pod: c.pod, netns: c.netns };
    this.out.point(reqKey, ex.reqPt);
    this.out.started(ex);
    if (!head || truncated || invalid) return { mode: 'none' };
    if (head.chunked) return { mode: 'chunked' };
    if (head.contentLength > 0) return { mode: 'length', length: head.contentLength };
    return { mode: 'none' };
  }

  private requestEnd(c: Conn, e: SockEvent | undefined, off: number): void {
    const ex = c.reqOpen;
    if (!ex) return;
    ex.reqEnd = off < 0 || !e ? c.lastReqTs : bytesTs(e);
    ex.reqBytes = c.req?.messageBytes ?? 0;
    c.reqOpen = undefined;
  }

  private responseHead(c: Conn, _e: SockEvent | undefined, head: HttpHead | null, truncated: boolean): Framing {
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
    if (!this.touched.includes(ex)) this.touched.push(ex);
    ex.status = head?.status ?? 0;
    ex.respStart = c.respStartTs;
    if (c.respStartSeq >= 0) {
      ex.respSeq = c.respStartSeq;
      ex.respKey = respMsgKey(c.clientEp, c.respStartSeq);
      ex.respPt = { kind: c.role === ROLE_SERVER ? 'write' : 'read', tsNs: c.respStartTs, name: c.owner, pod: c.pod, netns: c.netns };
      this.out.point(ex.respKey, ex.respPt);
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

  private responseEnd(c: Conn, e: SockEvent | undefined, off: number): void {
    const ex = c.respOpen;
    if (!ex) return;
    ex.respEnd = off < 0 || !e ? c.lastRespTs : bytesTs(e);
    ex.respBytes = c.resp?.messageBytes ?? 0;
    c.respOpen = undefined;
    c.prevRespEnd = ex.respEnd;
    this.finish(c, ex, false);
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
    // the last byte this socket moved of each message: the end of its hops at this point
    if (ex.reqPt) ex.reqPt.lastTsNs = Math.max(ex.reqPt.tsNs, ex.reqEnd);
    if (ex.respPt && ex.respEnd) ex.respPt.lastTsNs = Math.max(ex.respPt.tsNs, ex.respEnd);
    this.out.finished(ex);
  }

  /** an exchange whose response the kernel shed: finished, not to be exported (Exchange.cut) */
  private cut(c: Conn, ex: Exchange): void {
    ex.cut = true;
    this.stats.cut++;
    this.finish(c, ex, false);
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
    this.lostConns.delete(c);
    this.conns.delete(c.sk);
  }

  private conn(e: SockEvent): Conn {
    let c = this.conns.get(e.sk, LRU_OPTS); // get() refreshes the LRU position
    if (c) return c;
    const comm = e.buf.toString('latin1', e.commOff, e.commOff + 16).replace(/\0.*$/s, '');
    const pod = this.topo.podByNetns(e.netns) ?? this.topo.podByCgroup?.(e.cgroupId);
    const executable = this.exe?.(e.pid) ?? comm;
    const localIp = addrString(e.buf, e.tuple.saddrOff, e.tuple.family);
    const remoteIp = addrString(e.buf, e.tuple.daddrOff, e.tuple.family);
    c = {
      sk: e.sk, pid: e.pid, tid: e.tid, netns: e.netns, fd: e.fd, comm, executable, role: ROLE_UNKNOWN, family: e.tuple.family,
      localIp, localPort: e.tuple.sport, remoteIp, remotePort: e.tuple.dport,
      clientEp: '', pod, owner: pod?.workload ?? executable, process: { pid: e.pid, tid: e.tid, comm, executable, netns: e.netns },
      local: { ip: localIp, port: e.tuple.sport }, remote: { ip: remoteIp, port: e.tuple.dport }, awaiting: [], reqStartTs: e.tsNs, reqStartSeq: -1, respStartTs: 0, respStartSeq: -1,
      lastReqTs: e.tsNs, lastRespTs: e.tsNs, lastTs: e.tsNs, nonHttpCounted: false, maxReqPlaces: 0, maxRespPlaces: 0, prevRespEnd: 0, reqNextSeq: -1, respNextSeq: -1, shedEpoch: 0,
    };
    this.conns.set(e.sk, c); // may evict (and close) the least recently used connection
    return c;
  }
}

/** bytes count from when they are handed to the kernel (write entry) or to the app (read exit) */
function bytesTs(e: SockEvent): number {
  return e.dir === DIR.DIR_OUT ? e.enterTsNs : e.tsNs;
}

/** seq of the byte at `off` of the event, or -1 */
function seqAt(e: SockEvent | undefined, off: number): number {
  if (!e || !(e.flags & FLAGS.F_SEQ_VALID)) return -1;
  return (e.seq + off) >>> 0;
}

