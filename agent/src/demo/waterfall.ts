// The demo's terminal view of one trace: a waterfall (offset, duration, node, layer, a bar on the
// trace's time axis, the span's service and name, indented by depth) and where the trace's wall
// time went, by layer and by node. Each instant of the trace is given to the deepest span active
// then (for parallel siblings, the one that ends last: what its parent waits for), so the parts
// add up to the trace's duration: the split of one request's latency, not a sum of overlapping spans.
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';

/** what the demo needs of the cluster: which app each pod runs */
export interface PodApps {
  pods: readonly { namespace: string; name: string; app: string }[];
}

export interface DemoTrace {
  traceId: string;
  spans: ReadableSpan[];
  /** the app namespace whose frontend served this trace's request, if any */
  namespace?: string;
  /** strata's SERVER spans of the ingress, frontend, customer, driver and every route call are all there */
  complete: boolean;
  /** what is missing for complete */
  missing: string[];
  /** SERVER spans of the application's own SDK (no strata.layer) */
  sdkServers: number;
}

const SPAN_KIND_SERVER = 1;

const us = (t: readonly [number, number]) => t[0] * 1e6 + t[1] / 1e3;
const str = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? undefined : String(v));

export const nodeOf = (s: ReadableSpan): string => str(s.resource.attributes['k8s.node.name']) ?? '-';
/** strata.layer; the application's own (SDK) spans have none: `app(sdk)`, counted as `app` in the split */
export const layerOf = (s: ReadableSpan): string => str(s.attributes['strata.layer']) ?? SDK_LAYER;
const SDK_LAYER = 'app(sdk)';
const splitLayerOf = (s: ReadableSpan): string => (s.attributes['strata.layer'] === undefined ? 'app' : layerOf(s));
export const serviceOf = (s: ReadableSpan): string => str(s.resource.attributes['service.name']) ?? '?';
const isStrata = (s: ReadableSpan) => s.attributes['strata.layer'] !== undefined;
const isHop = (s: ReadableSpan) => isStrata(s) && serviceOf(s).startsWith('net:');

/**
 * Groups spans into traces and says which are complete dispatches: strata's SERVER spans for the
 * ingress, frontend, customer and driver, and `routes` route calls (per app namespace; default:
 * at least one).
 */
export function groupTraces(spans: readonly ReadableSpan[], cluster: PodApps, routes: ReadonlyMap<string, number> = new Map()): DemoTrace[] {
  const byId = new Map<string, ReadableSpan[]>();
  for (const s of spans) {
    const id = s.spanContext().traceId;
    let l = byId.get(id);
    if (!l) byId.set(id, (l = []));
    l.push(s);
  }
  const appOf = (s: ReadableSpan) => {
    const ns = str(s.resource.attributes['k8s.namespace.name']);
    const name = str(s.resource.attributes['k8s.pod.name']);
    return cluster.pods.find((p) => p.namespace === ns && p.name === name)?.app;
  };
  const out: DemoTrace[] = [];
  for (const [traceId, list] of byId) {
    const servers = list.filter((s) => isStrata(s) && s.kind === SPAN_KIND_SERVER);
    const count = (app: string) => servers.filter((s) => appOf(s) === app).length;
    const fe = servers.find((s) => appOf(s) === 'frontend');
    const namespace = fe ? str(fe.resource.attributes['k8s.namespace.name']) : undefined;
    const want = Math.max(1, (namespace && routes.get(namespace)) || 1);
    const missing: string[] = [];
    for (const app of ['ingress', 'frontend', 'customer', 'driver']) if (count(app) < 1) missing.push(`${app} SERVER`);
    if (count('route') < want) missing.push(`${want - count('route')} of ${want} route SERVER`);
    const sdkServers = list.filter((s) => !isStrata(s) && s.kind === SPAN_KIND_SERVER).length;
    out.push({ traceId, spans: list, ...(namespace ? { namespace } : {}), complete: missing.length === 0, missing, sdkServers });
  }
  return out.sort((a, b) => us(first(a.spans).startTime) - us(first(b.spans).startTime));
}

function first(spans: readonly ReadableSpan[]): ReadableSpan {
  return spans.reduce((a, b) => (us(b.startTime) < us(a.startTime) ? b : a));
}

interface Node {
  span: ReadableSpan;
  depth: number;
  children: Node[];
  start: number;
  end: number;
}

/** the trace as a forest: a span whose parent is not in the trace is a root */
function forest(spans: readonly ReadableSpan[]): Node[] {
  const nodes = new Map<string, Node>();
  for (const s of spans) nodes.set(s.spanContext().spanId, { span: s, depth: 0, children: [], start: us(s.startTime), end: us(s.endTime) });
  const roots: Node[] = [];
  for (const n of nodes.values()) {
    const p = n.span.parentSpanContext?.spanId;
    const parent = p && p !== n.span.spanContext().spanId ? nodes.get(p) : undefined;
    (parent ? parent.children : roots).push(n);
  }
  const order = (xs: Node[]) => xs.sort((a, b) => a.start - b.start || b.end - a.end);
  const walk = (xs: Node[], depth: number, seen: Set<Node>) => {
    for (const x of order(xs)) {
      if (seen.has(x)) continue; // a parent cycle in bad data: shown once
      seen.add(x);
      x.depth = depth;
      walk(x.children, depth + 1, seen);
    }
  };
  walk(roots, 0, new Set());
  return order(roots);
}

export interface TimeSplit {
  /** first start to last end, µs */
  totalUs: number;
  byLayer: Map<string, number>;
  byNode: Map<string, number>;
}

/**
 * Where the trace's wall time went: each elementary interval between span boundaries goes to the
 * deepest span active then (ties: the one ending last, then the one starting first); time no span
 * covers (between separate roots) is `-`. The application's own SDK spans count as `app`.
 */
export function timeSplit(spans: readonly ReadableSpan[]): TimeSplit {
  const all: Node[] = [];
  const collect = (xs: Node[]) => {
    for (const x of xs) {
      all.push(x);
      collect(x.children);
    }
  };
  const roots = forest(spans);
  collect(roots);
  placeOrphans(roots);
  const byLayer = new Map<string, number>();
  const byNode = new Map<string, number>();
  if (!all.length) return { totalUs: 0, byLayer, byNode };
  const edges = [...new Set(all.flatMap((n) => [n.start, n.end]))].sort((a, b) => a - b);
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  for (let i = 0; i + 1 < edges.length; i++) {
    const a = edges[i] as number;
    const b = edges[i + 1] as number;
    let best: Node | undefined;
    for (const n of all) {
      if (n.start > a || n.end < b) continue;
      if (!best || n.depth > best.depth || (n.depth === best.depth && (n.end > best.end || (n.end === best.end && n.start < best.start)))) best = n;
    }
    add(byLayer, best ? splitLayerOf(best.span) : '-', b - a);
    add(byNode, best ? nodeOf(best.span) : '-', b - a);
  }
  return { totalUs: (edges[edges.length - 1] as number) - (edges[0] as number), byLayer, byNode };
}

/**
 * A root other than the longest (its parent is outside the trace: the client's traceparent names
 * a span nobody exported; an SDK span beside strata's) counts, for the split only, as the child of
 * the deepest span active when it starts: else two roots at depth 0 would claim the same instants
 * and the outer one would win them. (Its end may lie past that span's: clocks of two runtimes.)
 */
function placeOrphans(roots: Node[]): void {
  const placed: Node[] = [];
  const subtree = (n: Node, out: Node[] = []) => {
    out.push(n);
    for (const c of n.children) subtree(c, out);
    return out;
  };
  const byExtent = [...roots].sort((a, b) => b.end - b.start - (a.end - a.start) || a.start - b.start);
  for (const r of byExtent) {
    let host: Node | undefined;
    for (const n of placed) if (n.start <= r.start && r.start < n.end && (!host || n.depth > host.depth)) host = n;
    const tree = subtree(r);
    if (host) {
      const shift = host.depth + 1 - r.depth;
      for (const n of tree) n.depth += shift;
    }
    placed.push(...tree);
  }
}

/** the one parent id, not a span of the trace, that every root of a forest of several names; else undefined */
function callerOf(roots: Node[]): string | undefined {
  if (roots.length < 2) return undefined;
  const p = roots[0]?.span.parentSpanContext?.spanId;
  return p && roots.every((r) => r.span.parentSpanContext?.spanId === p) ? p : undefined;
}

export interface WaterfallOptions {
  /** every hop span on its own line (default: one line per exchange's request or response hop chain) */
  allSpans?: boolean;
  /** bar width in characters */
  width?: number;
  title?: string;
}

interface Row {
  start: number;
  end: number;
  node: string;
  layer: string;
  depth: number;
  text: string;
}

const ms = (x: number) => (x / 1000).toFixed(2);

/** Prints the trace's waterfall, then its time by layer and by node. Returns the split. */
export function printWaterfall(t: Pick<DemoTrace, 'traceId' | 'spans'>, out: (line: string) => void, o: WaterfallOptions = {}): TimeSplit {
  const width = o.width ?? 40;
  const roots = forest(t.spans);
  const rows: Row[] = [];
  const label = (s: ReadableSpan) => {
    const status = s.attributes['http.response.status_code'];
    return `${serviceOf(s)}: ${s.name}${status !== undefined ? ` ${String(status)}` : ''}`;
  };
  // Several roots under one span that is not in the trace (the client's own: a traceparent from a
  // browser or an upstream service, strata's ingress SERVER and the SDK's frontend SERVER both hang
  // there): printed as one tree under a row for that span.
  const caller = callerOf(roots);
  const top = caller ? 1 : 0;
  if (caller) {
    rows.push({ start: Math.min(...roots.map((r) => r.start)), end: Math.max(...roots.map((r) => r.end)), node: '-', layer: 'client', depth: 0, text: `client: span ${caller} (the caller's, not in the trace)` });
  }
  const walk = (xs: Node[]) => {
    for (const x of xs) {
      rows.push({ start: x.start, end: x.end, node: nodeOf(x.span), layer: layerOf(x.span), depth: x.depth + top, text: label(x.span) });
      const hops = o.allSpans ? [] : x.children.filter((c) => isHop(c.span) && c.children.length === 0);
      // a hop chain (request or response) on one line: its extent, the nodes it crossed, its time per layer
      for (const dir of ['request', 'response']) {
        const chain = hops.filter((c) => c.span.name.startsWith(dir));
        if (!chain.length) continue;
        const start = Math.min(...chain.map((c) => c.start));
        const end = Math.max(...chain.map((c) => c.end));
        const nodes = [...new Set(chain.sort((a, b) => a.start - b.start).map((c) => nodeOf(c.span)))];
        const perLayer = new Map<string, number>();
        for (const c of chain) perLayer.set(layerOf(c.span), (perLayer.get(layerOf(c.span)) ?? 0) + (c.end - c.start));
        const parts = [...perLayer].map(([l, v]) => `${l} ${ms(v)}`).join(', ');
        rows.push({ start, end, node: nodes.join('>'), layer: 'net', depth: x.depth + top + 1, text: `${dir}: ${chain.length} hop spans (ms: ${parts})` });
      }
      walk(x.children.filter((c) => !hops.includes(c)));
    }
  };
  walk(roots);
  const split = timeSplit(t.spans);
  const t0 = Math.min(...rows.map((r) => r.start));
  const total = Math.max(1, split.totalUs);
  const nodeW = Math.max(4, ...rows.map((r) => r.node.length));
  const layerW = Math.max(5, ...rows.map((r) => r.layer.length));
  out(`trace ${t.traceId}${o.title ? `: ${o.title}` : ''}, ${t.spans.length} spans, ${ms(split.totalUs)} ms`);
  out(`${'start ms'.padStart(9)} ${'dur ms'.padStart(8)}  ${'node'.padEnd(nodeW)}  ${'layer'.padEnd(layerW)}  ${'|'.padEnd(width + 1)}|  span`);
  for (const r of rows) {
    const a = Math.min(width - 1, Math.floor(((r.start - t0) / total) * width));
    const b = Math.max(a + 1, Math.min(width, Math.ceil(((r.end - t0) / total) * width)));
    const bar = `${' '.repeat(a)}${'█'.repeat(b - a)}${' '.repeat(width - b)}`;
    out(`${ms(r.start - t0).padStart(9)} ${ms(r.end - r.start).padStart(8)}  ${r.node.padEnd(nodeW)}  ${r.layer.padEnd(layerW)}  |${bar}|  ${'  '.repeat(r.depth)}${r.text}`);
  }
  const line = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${ms(v)} ms (${Math.round((v / total) * 100)}%)`).join(' · ');
  out(`time by layer: ${line(split.byLayer)}`);
  out(`time by node:  ${line(split.byNode)}`);
  return split;
}
