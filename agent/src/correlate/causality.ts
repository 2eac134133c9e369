// Which exchange caused which. Inside a process (a proxy): the outbound request and the inbound
// request it serves are linked by the same trace context, the same X-Request-ID, the same thread,
// the same method and target, else the oldest in-progress request without an outbound call yet.
// Across processes on this node: a SERVER exchange's parent is the CLIENT exchange that wrote the
// same request message (same key).
import { LRUCache } from 'lru-cache';
import { claimedTraceId } from './context.ts';
import { type Exchange, ROLE_SERVER } from './exchanges.ts';

export class Causality {
  /** CLIENT exchanges evicted from the key table before their SERVER side looked them up */
  clientEvictions = 0;
  /** SERVER exchanges in progress, per process */
  private readonly activeServers = new Map<number, Exchange[]>();
  /** CLIENT exchanges by the key of their request message (for the server side to find its parent) */
  private readonly clientByReqKey: LRUCache<string, Exchange>;

  constructor(maxMessages: number) {
    this.clientByReqKey = new LRUCache<string, Exchange>({
      max: maxMessages,
      disposeAfter: (_e, _k, reason) => {
        if (reason === 'evict') this.clientEvictions++;
      },
    });
  }

  started(ex: Exchange): void {
    if (ex.role === ROLE_SERVER) {
      const list = this.activeServers.get(ex.conn.pid);
      if (list) list.push(ex);
      else this.activeServers.set(ex.conn.pid, [ex]);
      return;
    }
    ex.cause = this.findCause(ex);
    if (ex.cause) ex.cause.children++;
    this.clientByReqKey.set(ex.reqKey, ex);
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
    let p = this.clientByReqKey.get(ex.reqKey);
    if (!p && ex.reqSeq >= 0) p = this.clientByReqKey.get(finKey(ex.reqKey, ex.reqSeq));
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
  }

  clear(): void {
    this.clientByReqKey.clear();
  }

  private findCause(ex: Exchange): Exchange | undefined {
    const c = ex.conn;
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
}

/** the key of the same message read together with the peer's FIN (seq reported one too high) */
export function finKey(key: string, seq: number): string {
  return `${key.slice(0, key.lastIndexOf('/') + 1)}${(seq - 1) >>> 0}`;
}
