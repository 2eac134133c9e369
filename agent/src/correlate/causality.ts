// Which exchange caused which. Inside a process, an outbound request (CLIENT) is linked to the
// inbound request (SERVER) it serves only on evidence, never by guessing:
// - context: it carries the trace id of an in-progress inbound request (a proxy or SDK forwarded it);
// - request_id: it carries the X-Request-ID of one;
// - connect: it is the first request on a connection whose connect() was issued by a thread whose
//   last socket read was (or, transitively, was caused by) an in-progress inbound request: an event
//   loop connects in the callback of that read and writes when the connection is up;
// - event_loop: the thread that writes it last read an in-progress inbound request, or the response
//   of an earlier call that request caused (a callback runs to completion before the next read; the
//   events of one thread arrive in order, one ring buffer);
// - thread: the same order on a thread other than the main one that read the request itself, or,
//   when that thread's last read is not known, the one in-progress request it read
//   (thread-per-request servers).
// Anything else in a process that has in-progress inbound requests is ambiguous: left unlinked (its
// own local root), counted, and said on the span. Across processes on this node: a SERVER
// exchange's parent is the CLIENT exchange that wrote the same request message (same key).
import { LRUCache } from 'lru-cache';
import { claimedTraceId } from './context.ts';
import { type Conn, type Exchange, ROLE_SERVER } from './exchanges.ts';
import { LRU_OPTS } from '../lru.ts';

/** the evidence a CLIENT exchange was linked by (strata.cause), or why it was not */
export type CauseRule = 'context' | 'request_id' | 'connect' | 'event_loop' | 'thread';
export type CauseMark = CauseRule | 'ambiguous' | 'none';

/** what one thread's order says about a write it issues now: the requests it may serve, or nothing */
type Evidence = Exchange[] | 'contradicts' | 'unknown';

export interface CausalityStats {
  /** CLIENT exchanges evicted from the key table before their SERVER side looked them up */
  clientEvictions: number;
  /** threads forgotten (least recently reading first) when the table was full */
  threadEvictions: number;
  /** CLIENT exchanges linked to their cause, by the evidence used */
  linked: Record<CauseRule, number>;
  /** CLIENT exchanges of a process serving requests that no evidence tied to one: left unlinked */
  ambiguous: number;
  /** CLIENT exchanges of a process with no request in progress: roots by nature */
  none: number;
}

export class Causality {
  readonly stats: CausalityStats = {
    clientEvictions: 0, threadEvictions: 0, ambiguous: 0, none: 0,
    linked: { context: 0, request_id: 0, connect: 0, event_loop: 0, thread: 0 },
  };
  /** SERVER exchanges in progress, per process */
  private readonly activeServers = new Map<number, Exchange[]>();
  /** CLIENT exchanges by the key of their request message (for the server side to find its parent) */
  private readonly clientByReqKey: LRUCache<string, Exchange>;
  /** per thread ("pid/tid"): the exchanges its last socket read moved bytes of (none: nothing known) */
  private readonly lastRead: LRUCache<number, readonly Exchange[]>;

  constructor(maxMessages: number, maxThreads: number = maxMessages) {
    this.clientByReqKey = new LRUCache<string, Exchange>({
      max: maxMessages,
      disposeAfter: (_e, _k, reason) => {
        if (reason === 'evict') this.stats.clientEvictions++;
      },
    });
    this.lastRead = new LRUCache<number, readonly Exchange[]>({
      max: Math.max(1, maxThreads),
      disposeAfter: (_e, _k, reason) => {
        if (reason === 'evict') this.stats.threadEvictions++;
      },
    });
  }

  get clientEvictions(): number {
    return this.stats.clientEvictions;
  }

  /** a socket read of `tid` moved bytes of `exs` (requests read by a server, responses read by a client), or of nothing known */
  read(pid: number, tid: number, exs: readonly Exchange[]): void {
    this.lastRead.set(threadKey(pid, tid), exs, LRU_OPTS);
  }

  /** `tid` connected `c`: what its order says now decides the cause of the first request on it */
  connected(c: Conn, pid: number, tid: number): void {
    const ev = this.threadEvidence(pid, tid);
    c.connectCause = typeof ev === 'object' ? ev : ev === 'contradicts' ? null : undefined;
  }

  started(ex: Exchange): void {
    if (ex.role === ROLE_SERVER) {
      const list = this.activeServers.get(ex.conn.pid);
      if (list) list.push(ex);
      else this.activeServers.set(ex.conn.pid, [ex]);
      return;
    }
    this.findCause(ex);
    if (ex.causeRule === 'ambiguous') this.stats.ambiguous++;
    else if (ex.causeRule === 'none') this.stats.none++;
    else if (ex.causeRule) this.stats.linked[ex.causeRule]++;
    if (ex.cause) ex.cause.children++;
    this.clientByReqKey.set(ex.reqKey, ex, LRU_OPTS);
  }

  finished(ex: Exchange): void {
    if (ex.role !== ROLE_SERVER) return;
    const list = this.activeServers.get(ex.conn.pid);
    if (!list) return;
    const j = list.indexOf(ex);
    if (j >= 0) list.splice(j, 1);
    if (list.length === 0) this.activeServers.delete(ex.conn.pid);
  }

  /**
   * The parent exchange on this node: for a SERVER, the traced CLIENT that wrote its request (its
   * key, or one seq lower when the read also consumed a FIN); for a CLIENT, its in-process cause.
   */
  parentOf(ex: Exchange): Exchange | undefined {
    if (ex.role !== ROLE_SERVER) return ex.cause;
    if (ex.parent !== undefined) return ex.parent ?? undefined;
    let p = this.clientByReqKey.get(ex.reqKey, LRU_OPTS);
    if (!p && ex.reqSeq >= 0) p = this.clientByReqKey.get(finKey(ex.reqKey, ex.reqSeq), LRU_OPTS);
    // looked up once, when the exchange is emitted (or a child resolves its ids): fixed from then on
    ex.parent = p ?? null;
    return p;
  }

  /** The exchange that started this trace on this node (no local parent). */
  localRoot(ex: Exchange): Exchange {
    let cur = ex;
    for (let i = 0; i < 32; i++) {
      const p = this.parentOf(cur);
      if (!p) return cur;
      cur = p;
    }
    return cur;
  }

  /** CLIENT exchanges stay findable for `retainNs` after their request (late server-side events) */
  expire(before: number): void {
    const old: string[] = [];
    for (const [k, ex] of this.clientByReqKey.rentries() as Generator<[string, Exchange]>) {
      if (ex.reqStart > before) break;
      if (ex.emittedAt) old.push(k);
    }
    for (const k of old) this.clientByReqKey.delete(k);
    // a last read of exchanges long finished says what an unknown read says (contradicts): drop them
    const quiet: number[] = [];
    for (const [k, exs] of this.lastRead.entries() as Generator<[number, readonly Exchange[]]>) {
      if (exs.length && exs.every((ex) => ex.done && (ex.respEnd || ex.reqEnd) < before)) quiet.push(k);
    }
    for (const k of quiet) this.lastRead.set(k, [], { noDisposeOnSet: true });
  }

  clear(): void {
    this.clientByReqKey.clear();
    this.lastRead.clear();
  }

  /** sets ex.cause and ex.causeRule */
  private findCause(ex: Exchange): void {
    const c = ex.conn;
    const list = this.activeServers.get(c.pid);
    // the first request on a connection this process connected: the connect told the cause
    const atConnect = c.connectCause;
    c.connectCause = undefined;
    if (!list || list.length === 0) {
      ex.causeRule = 'none';
      return;
    }
    const link = (s: Exchange | undefined, rule: CauseRule): boolean => {
      if (!s) return false;
      ex.cause = s;
      ex.causeRule = rule;
      return true;
    };
    // a proxy forwards the context (or an SDK continues it): same trace id, whatever the format
    // (several in-progress requests claiming it: the rules below choose, or it stays ambiguous)
    const traceId = claimedTraceId(ex.headers);
    if (traceId && link(unique(list, (s) => claimedTraceId(s.headers) === traceId), 'context')) return;
    const rid = ex.headers.get('x-request-id');
    if (rid && link(unique(list, (s) => s.headers.get('x-request-id') === rid), 'request_id')) return;
    if (atConnect !== undefined) {
      // null: the connecting thread's order contradicted every in-progress request
      if (!link(atConnect ? pick(atConnect, list, ex) : undefined, 'connect')) ex.causeRule = 'ambiguous';
      return;
    }
    const ev = this.threadEvidence(c.pid, ex.tid);
    if (typeof ev === 'object') {
      const s = pick(ev, list, ex);
      // a thread other than the main one that read the request itself: a thread-per-request server
      if (!link(s, s && ex.tid !== c.pid && s.tid === ex.tid ? 'thread' : 'event_loop')) ex.causeRule = 'ambiguous';
      return;
    }
    if (ev === 'unknown' && ex.tid !== c.pid) {
      // thread-per-request: the only in-progress request this (non-main) thread read
      if (link(unique(list, (s) => s.tid === ex.tid && inProgress(s)), 'thread')) return;
    }
    ex.causeRule = 'ambiguous';
  }

  /**
   * What the order of `tid`'s events says about a write (or connect) it issues now: its last read
   * moved an in-progress inbound request, or the response to a call that one caused (transitive);
   * once that request is answered, a request read with it (pipelined) and not yet answered is next.
   * 'contradicts': the last read belongs to requests already answered, to a call of no known cause,
   * or to nothing known.
   */
  private threadEvidence(pid: number, tid: number): Evidence {
    const last = this.lastRead.get(threadKey(pid, tid), LRU_OPTS);
    if (last === undefined) return 'unknown';
    const out: Exchange[] = [];
    for (const x of last) {
      const s = x.role === ROLE_SERVER ? x : x.cause;
      if (!s) continue;
      for (const y of inProgress(s) ? [s] : s.group ?? []) if (inProgress(y) && !out.includes(y)) out.push(y);
    }
    return out.length ? out : 'contradicts';
  }
}

/**
 * The one of the evidence's requests that is still in progress in this process; among several
 * (requests read together, pipelined) the one whose method and target the call repeats (a proxy
 * forwarding it), else none.
 */
function pick(cands: readonly Exchange[], active: readonly Exchange[], ex: Exchange): Exchange | undefined {
  const live = cands.filter((s) => inProgress(s) && active.includes(s));
  if (live.length <= 1) return live[0];
  return unique(live, (s) => s.method === ex.method && s.target === ex.target);
}

/** one number per thread (pid and tid are below 2^22, PID_MAX_LIMIT): no string per read */
function threadKey(pid: number, tid: number): number {
  return pid * 0x400000 + tid;
}

/** an inbound request that has not begun its answer */
function inProgress(s: Exchange): boolean {
  return !s.done && s.respStart === 0;
}

/** the one element matching, undefined when none or several (several requests claiming one id) */
function unique(list: readonly Exchange[], f: (s: Exchange) => boolean): Exchange | undefined {
  let m: Exchange | undefined;
  for (const s of list) {
    if (!f(s)) continue;
    if (m) return undefined;
    m = s;
  }
  return m;
}

/** the key of the same message read together with the peer's FIN (seq reported one too high) */
export function finKey(key: string, seq: number): string {
  return `${key.slice(0, key.lastIndexOf('/') + 1)}${(seq - 1) >>> 0}`;
}
