// Cross-node stitching, the receiving half (design.md section 3, point 5). A local trace whose root
// is a SERVER exchange called from a pod of another node belongs to a trace only that node's agent
// knows: with no trace context in its request, its trace id; with one, the span that sent its bytes
// (the header names the caller's SDK span, or a span further up when a proxy forwarded it as is). Its exchanges are held here,
// before any id is resolved, until the peer says "key K: trace T, parent S, sampled or not" or a
// bounded wait passes (then they go out as a trace of their own, marked, and counted). Mappings
// that arrive before the spans are kept in a bounded LRU for mappingTtlNs.
// The sending half is the correlator's: every CLIENT exchange to another node publishes its key.
import { LRUCache } from 'lru-cache';
import { type Exchange, ROLE_SERVER } from './exchanges.ts';

/** what the correlator needs of the peer channel (agent/src/peers) */
export interface StitchLink {
  /** is this address a pod on another node whose agent may publish the trace? */
  isPeerAddress(ip: string): boolean;
  /** tells the node of `serverIp` which trace request message `key` belongs to */
  publish(serverIp: string, m: StitchMapping): void;
}

export interface StitchMapping {
  key: string;
  traceId: string;
  parentSpanId: string;
  flags: number;
}

/** where a batch of mappings came from: the sending node and its clock's offset from ours (ms, transfer included) */
export interface StitchSource {
  node: string;
  skewMs: number;
}

export interface StitchOptions {
  /** how long a local trace waits for its peer's mapping */
  holdNs: number;
  /** local traces waiting at once, at most (then the oldest gives up, counted as a timeout) */
  maxHeldTraces: number;
  /** mappings that arrived before their spans, at most, and for how long */
  maxMappings: number;
  mappingTtlNs: number;
  /** exchanges held at once, over all waiting traces, at most (then the oldest traces give up); default 16 x maxHeldTraces */
  maxHeldExchanges?: number;
}

export interface StitchStats {
  /** local traces that got their trace from a peer; that waited in vain (incl. evicted); evicted early */
  stitched: number;
  timeouts: number;
  heldEvictions: number;
  /** exchanges held right now, and held in all */
  heldNow: number;
  heldTotal: number;
  /** mappings received with no waiting trace (kept for later), and those that expired unused */
  early: number;
  mappingsExpired: number;
  /** sum of (mapping arrival - hold start) over stitched traces, ns: the latency stitching adds */
  waitNsTotal: number;
}

interface Waiting {
  root: Exchange;
  sinceNs: number;
  held: Exchange[];
}

/** what becomes of a local trace's exchanges: emitted as they are, under the peer's trace, or marked as a timeout */
export type Release = (root: Exchange, m: StitchMapping | undefined, held: Exchange[], from?: StitchSource) => void;

export class PeerStitch {
  readonly stats: StitchStats = { stitched: 0, timeouts: 0, heldEvictions: 0, heldNow: 0, heldTotal: 0, early: 0, mappingsExpired: 0, waitNsTotal: 0 };
  private readonly opts: StitchOptions;
  private readonly link: StitchLink;
  private readonly release: Release;
  /** waiting local traces by their root's request key, oldest first (Map keeps insertion order) */
  private readonly waiting = new Map<string, Waiting>();
  private readonly early: LRUCache<string, { m: StitchMapping; atNs: number; from?: StitchSource }>;

  constructor(opts: StitchOptions, link: StitchLink, release: Release) {
    this.opts = opts;
    this.link = link;
    this.release = release;
    this.early = new LRUCache({ max: opts.maxMappings });
  }

  /**
   * Should `ex` (of the local trace rooted at `root`) wait for a peer? Decided once per root, when
   * the first exchange of its trace is to be emitted; true = held here, released later.
   */
  hold(ex: Exchange, root: Exchange, nowNs: number): boolean {
    if (root.stitch === undefined) root.stitch = this.classify(root, nowNs);
    if (root.stitch !== 'wait') return false;
    const w = this.waiting.get(root.reqKey);
    if (!w || w.root !== root) return false;
    // the exchanges held are bounded too, not only the traces: a trace with a large fan-out
    // makes the oldest waiting traces give up (counted as evictions), itself last
    const cap = this.opts.maxHeldExchanges ?? 16 * this.opts.maxHeldTraces;
    while (this.stats.heldNow >= cap) {
      const oldest = this.waiting.values().next().value as Waiting;
      this.stats.heldEvictions++;
      this.giveUp(oldest);
      if (oldest === w) return false;
    }
    w.held.push(ex);
    this.stats.heldNow++;
    this.stats.heldTotal++;
    return true;
  }

  private classify(root: Exchange, nowNs: number): 'none' | 'peer' | 'wait' {
    // a root whose ids are already known (a late exchange of an emitted trace), a CLIENT root, a
    // caller on this node or outside the cluster: nothing to wait for. A request carrying a trace
    // context waits too: strata's SERVER goes under the peer's CLIENT span that wrote its bytes
    // (the header's span is the app's SDK span, or further up when a proxy forwarded it unchanged)
    if (root.ids || root.role !== ROLE_SERVER || !this.link.isPeerAddress(root.conn.remoteIp)) return 'none';
    const e = this.early.get(root.reqKey);
    if (e && nowNs - e.atNs <= this.opts.mappingTtlNs) {
      this.early.delete(root.reqKey);
      this.stats.stitched++;
      this.release(root, e.m, [], e.from);
      return 'peer';
    }
    if (this.waiting.has(root.reqKey)) return 'none'; // a key collision: the first holder keeps the slot
    if (this.waiting.size >= this.opts.maxHeldTraces) {
      const oldest = this.waiting.values().next().value as Waiting;
      this.stats.heldEvictions++;
      this.giveUp(oldest);
    }
    this.waiting.set(root.reqKey, { root, sinceNs: nowNs, held: [] });
    return 'wait';
  }

  /** mappings from a peer: release what waits for them, keep the others for later */
  onMappings(ms: readonly StitchMapping[], nowNs: number, from?: StitchSource): void {
    for (const m of ms) {
      const w = this.waiting.get(m.key);
      if (!w) {
        this.stats.early++;
        this.early.set(m.key, { m, atNs: nowNs, from });
        continue;
      }
      this.waiting.delete(m.key);
      this.stats.stitched++;
      this.stats.waitNsTotal += Math.max(0, nowNs - w.sinceNs);
      this.stats.heldNow -= w.held.length;
      w.root.stitch = 'peer';
      this.release(w.root, m, w.held, from);
    }
  }

  /** gives up on local traces that waited holdNs; forgets mappings older than their TTL */
  expire(nowNs: number): void {
    for (const w of this.waiting.values()) {
      if (nowNs - w.sinceNs < this.opts.holdNs) break; // oldest first
      this.giveUp(w);
    }
    const old: string[] = [];
    for (const k of this.early.rkeys()) {
      const e = this.early.peek(k);
      if (e && nowNs - e.atNs <= this.opts.mappingTtlNs) break; // least recently used first
      old.push(k);
    }
    for (const k of old) this.early.delete(k);
    this.stats.mappingsExpired += old.length;
  }

  /** releases everything as timeouts (shutdown) */
  drain(): void {
    for (const w of [...this.waiting.values()]) this.giveUp(w);
  }

  private giveUp(w: Waiting): void {
    this.waiting.delete(w.root.reqKey);
    this.stats.timeouts++;
    this.stats.heldNow -= w.held.length;
    w.root.stitch = 'timeout';
    this.release(w.root, undefined, w.held);
  }
}
