// Where a request's wall time went, by layer: the application's processes, the proxies, the
// network (hop spans: sockets to devices, veths, bridges, the node), and calls whose time no
// observed span covers ("other": the wire or a peer this node does not see, e.g. another node's
// share when only this node's spans are known, or an untraced service).
//
// The split follows the timeline of the root span: every instant of it goes to the spans that are
// innermost then (active, with no active child), shared equally when several run in parallel (a
// fan-out), so the four parts add up to the root's duration exactly. A SERVER or CLIENT span's
// own time counts for its process's layer, except a CLIENT span's time with nothing under it,
// which is "other". Used for the local root's strata.time.* attributes (correlate/sampling.ts),
// `strata report` (report.ts) and strata_layer_duration_seconds.

export type LayerClass = 'app' | 'proxy' | 'network' | 'other';
export const LAYER_CLASSES: readonly LayerClass[] = ['app', 'proxy', 'network', 'other'];

export interface TimedSpan {
  id: string;
  /** parent span id; a span whose parent is not in the set is a root */
  parent?: string;
  /** any consistent unit (ns, us) */
  start: number;
  end: number;
  /** the layer of its own time; for a CLIENT span the layer of its process ('app' | 'proxy') */
  layer: LayerClass;
  client?: boolean;
}

export type LayerSplit = Record<LayerClass, number>;

export const emptySplit = (): LayerSplit => ({ app: 0, proxy: 0, network: 0, other: 0 });

/**
 * The split of `rootId`'s interval among its subtree (spans outside the root's interval are
 * clipped to it). Spans not under the root are ignored. An unknown root: all zero.
 */
export function splitByLayer(spans: readonly TimedSpan[], rootId: string): LayerSplit {
  const out = emptySplit();
  // (loops rather than map/for-of: no pair array per span, no iterators; a repeated id: the last wins, as before)
  const byId = new Map<string, TimedSpan>();
  for (let i = 0; i < spans.length; i++) byId.set((spans[i] as TimedSpan).id, spans[i] as TimedSpan);
  const root = byId.get(rootId);
  if (!root || !(root.end > root.start)) return out;
  const children = new Map<string, TimedSpan[]>();
  for (let i = 0; i < spans.length; i++) {
    const s = spans[i] as TimedSpan;
    if (s.parent === undefined || s.id === rootId || !byId.has(s.parent)) continue;
    const list = children.get(s.parent);
    if (list) list.push(s);
    else children.set(s.parent, [s]);
  }
  // the root's subtree, each span clipped to its parent's (clipped) interval; a cycle stops at the first repeat
  const sub: { s: TimedSpan; start: number; end: number; kids: number[] }[] = [];
  const seen = new Set<string>();
  const visit = (s: TimedSpan, lo: number, hi: number): number => {
    const idx = sub.length;
    sub.push({ s, start: Math.max(lo, s.start), end: Math.min(hi, s.end), kids: [] });
    seen.add(s.id);
    const me = sub[idx];
    const cs = children.get(s.id);
    for (let i = 0; cs !== undefined && i < cs.length; i++) {
      const c = cs[i] as TimedSpan;
      if (seen.has(c.id)) continue;
      if (!(Math.min(me.end, c.end) > Math.max(me.start, c.start))) continue;
      me.kids.push(visit(c, me.start, me.end));
    }
    return idx;
  };
  visit(root, root.start, root.end);
  // the elementary intervals between consecutive distinct edges; per interval, the innermost
  // active spans share it. Plain loops over the subtree, no allocation per interval (this runs for
  // every kept local trace).
  const n = sub.length;
  const edges = new Float64Array(2 * n);
  for (let i = 0; i < n; i++) {
    const x = sub[i] as (typeof sub)[number];
    edges[2 * i] = x.start;
    edges[2 * i + 1] = x.end;
  }
  edges.sort();
  // per interval: which spans are active (cover it), then the leaves (active, no active child),
  // in subtree order, each adding its share in the same order as before (same sums)
  const active = new Uint8Array(n);
  const leaf = new Int32Array(n);
  for (let i = 0; i + 1 < edges.length; i++) {
    const a = edges[i] as number;
    const b = edges[i + 1] as number;
    if (b === a) continue; // a repeated edge: an empty interval
    for (let j = 0; j < n; j++) {
      const x = sub[j] as (typeof sub)[number];
      active[j] = x.start <= a && x.end >= b ? 1 : 0;
    }
    let leaves = 0;
    for (let j = 0; j < n; j++) {
      if (active[j] === 0) continue;
      const kids = (sub[j] as (typeof sub)[number]).kids;
      let inner = false;
      for (let k = 0; k < kids.length && !inner; k++) inner = active[kids[k] as number] === 1;
      if (!inner) leaf[leaves++] = j;
    }
    if (leaves === 0) continue;
    const share = (b - a) / leaves;
    for (let l = 0; l < leaves; l++) {
      const x = (sub[leaf[l] as number] as (typeof sub)[number]).s;
      out[x.client && x.layer !== 'network' ? 'other' : x.layer] += share;
    }
  }
  return out;
}
