// Tail sampling, decided when the local root of a trace (the first exchange of it on this node)
// ends, for all the exchanges this node saw of that trace at once (held until then, bounded):
// keep it if any failed (5xx, reset, incomplete) or the root was slow; else follow the caller's
// sampled flag when a context came in; else keep a ratio, by trace id, so that every agent keeps
// the same traces.
import { LRUCache } from 'lru-cache';
import { nest, wallLess } from './clock.ts';
import type { Exchange } from './exchanges.ts';
import type { SamplingOptions } from './options.ts';
import { type LayerSplit, splitByLayer, type TimedSpan } from './layer-time.ts';
import type { ExchangeRecord, ExchangeSink, HopRecord, WallTime } from './records.ts';
import { LRU_OPTS } from '../lru.ts';

export interface SamplingStats {
  /** spans (exchanges and their hops) and local traces not exported by the sampling decision */
  spansSampledOut: number;
  tracesSampledOut: number;
  tracesKept: number;
  /** local traces decided early because too many were held */
  heldEvictions: number;
  /** span times moved inside their parent (clock offset drift between batches) */
  clockClamps: number;
}

export class TailSampling {
  readonly stats: SamplingStats = { spansSampledOut: 0, tracesSampledOut: 0, tracesKept: 0, heldEvictions: 0, clockClamps: 0 };
  /** records of local traces whose root is still open, by root exchange */
  private readonly held: LRUCache<Exchange, ExchangeRecord[]>;
  private readonly opts: SamplingOptions;
  private readonly sink: ExchangeSink;
  /** a kept local trace's root, its layerTimeUs set: strata_layer_duration_seconds */
  private readonly onLayerTime?: (root: ExchangeRecord) => void;

  constructor(opts: SamplingOptions, maxHeld: number, sink: ExchangeSink, onLayerTime?: (root: ExchangeRecord) => void) {
    this.opts = opts;
    this.sink = sink;
    this.onLayerTime = onLayerTime;
    this.held = new LRUCache<Exchange, ExchangeRecord[]>({
      max: maxHeld,
      disposeAfter: (records, root, reason) => {
        if (reason !== 'evict') return;
        // the root is taking too long: decide on what is known now
        this.stats.heldEvictions++;
        this.release(records, this.decide(root, records, false));
      },
    });
  }

  /** Holds a local trace's records until its root ends, then exports or drops them together. */
  route(ex: Exchange, root: Exchange, rec: ExchangeRecord): void {
    if (root.keep !== undefined) return this.release([rec], root.keep);
    if (root !== ex) {
      const h = this.held.get(root, LRU_OPTS);
      if (h) h.push(rec);
      else this.held.set(root, [rec], LRU_OPTS);
      return;
    }
    const all = this.held.get(root, LRU_OPTS);
    this.held.delete(root);
    if (all) all.push(rec);
    const set = all ?? [rec];
    root.keep = this.decide(root, set, true);
    this.release(set, root.keep);
  }

  /** the root will not be exported (an invalid request): neither is what was held for it */
  discard(root: Exchange): void {
    const h = this.held.get(root);
    if (!h) return;
    this.held.delete(root);
    this.release(h, false);
  }

  /** decides every held trace now (shutdown) */
  drain(): void {
    for (const [root, records] of [...this.held.entries()]) this.release(records, this.decide(root, records, false));
    this.held.clear();
  }

  private decide(root: Exchange, records: ExchangeRecord[], rootDone: boolean): boolean {
    const s = this.opts;
    if (s.keepErrors && records.some((x) => x.error !== undefined)) return true;
    if (rootDone && (Math.max(root.respEnd, root.reqEnd) - root.reqStart) / 1e6 >= s.slowThresholdMs) return true;
    return this.byParentOrRatio(root);
  }

  /**
   * The decision as far as it is known before the root ends (the caller's flag, else the ratio):
   * what a CLIENT exchange to another node tells that node's agent, which follows it as a caller's
   * sampled flag. Errors and slowness seen later on either node can still keep a trace there.
   */
  provisional(root: Exchange): boolean {
    return root.keep ?? this.byParentOrRatio(root);
  }

  private byParentOrRatio(root: Exchange): boolean {
    const s = this.opts;
    const ids = root.ids;
    if (s.respectParentSampled && ids?.remote) return (ids.flags & 1) === 1;
    if (s.ratio >= 1) return true;
    if (s.ratio <= 0 || !ids) return false;
    // by trace id, so agents on other nodes keep the same traces
    return Number.parseInt(ids.traceId.slice(-8), 16) / 0x100000000 < s.ratio;
  }

  private release(records: ExchangeRecord[], keep: boolean): void {
    if (keep) {
      this.stats.tracesKept++;
      this.stats.clockClamps += nest(records);
      if (records.length > 1 || (records[0]?.hops.length ?? 0) > 0) {
        const root = localRoot(records);
        if (root) {
          root.layerTimeUs = recordsSplit(records, root);
          this.onLayerTime?.(root);
        }
      }
      for (const x of records) this.sink.emit(x);
    } else {
      this.stats.tracesSampledOut++;
      for (const x of records) this.stats.spansSampledOut += 1 + x.hops.length;
    }
  }
}

/** the record of a local trace whose parent is none of the others' (the earliest if several) */
export function localRoot(records: readonly ExchangeRecord[]): ExchangeRecord | undefined {
  const ids = new Set<string>();
  for (let i = 0; i < records.length; i++) ids.add((records[i] as ExchangeRecord).spanId);
  let root: ExchangeRecord | undefined;
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as ExchangeRecord;
    if (r.parentSpanId !== undefined && ids.has(r.parentSpanId)) continue;
    if (!root || wallLess(r.start, root.start)) root = r;
  }
  return root;
}

/** ns of t relative to the whole second of `base` (exact in a double for hours around it) */
function wallNs(t: WallTime, base: WallTime): number {
  return (t[0] - base[0]) * 1e9 + t[1];
}

/** The layer split of a local trace's records (exchanges and their hops) under `root`, in microseconds. */
export function recordsSplit(records: readonly ExchangeRecord[], root: ExchangeRecord): LayerSplit {
  const base = root.start;
  const spans: TimedSpan[] = [];
  for (let i = 0; i < records.length; i++) {
    const r = records[i] as ExchangeRecord;
    spans.push({ id: r.spanId, parent: r.parentSpanId, start: wallNs(r.start, base), end: wallNs(r.end, base), layer: r.layer, client: r.role === 'client' });
    for (let j = 0; j < r.hops.length; j++) {
      const h = r.hops[j] as HopRecord;
      spans.push({ id: h.spanId, parent: r.spanId, start: wallNs(h.start, base), end: wallNs(h.end, base), layer: 'network' });
    }
  }
  const ns = splitByLayer(spans, root.spanId);
  return { app: Math.round(ns.app / 1000), proxy: Math.round(ns.proxy / 1000), network: Math.round(ns.network / 1000), other: Math.round(ns.other / 1000) };
}
