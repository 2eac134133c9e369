// `strata report <traces-dir>`: over the traces in a directory the agent (or the demo) wrote
// (jaeger-traces.json: Jaeger UI's upload format), where the time went: per trace the split of the
// root's duration between application, proxy, network and other time (correlate/layer-time.ts),
// then p50/p99 over the traces per layer, per node for the network, and per hop (the hop spans'
// names: which device or path). Lets a user compare what the data plane costs against what the
// application costs, and find the hop that grew.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LayerClass, LAYER_CLASSES, splitByLayer, type TimedSpan } from './correlate/layer-time.ts';
import { EXIT_CONFIG, STRATA_ERR_REPORT_INPUT, StrataError } from './errors.ts';
import { JAEGER_FILE } from './export/file-exporter.ts';
import type { JaegerSpan, JaegerTraces } from './export/jaeger-json.ts';

export interface TraceBreakdown {
  traceId: string;
  rootName: string;
  /** the root span's duration, us */
  totalUs: number;
  layers: Record<LayerClass, number>;
  /** network time by the node whose agent saw the hop */
  networkByNode: Record<string, number>;
  spans: number;
}

export interface HopStat {
  name: string;
  count: number;
  p50Us: number;
  p99Us: number;
}

export interface Report {
  traces: TraceBreakdown[];
  /** traces skipped: no root span (only spans of other nodes' agents, or broken references) */
  skipped: number;
  layers: Record<LayerClass, { p50Us: number; p99Us: number; sumUs: number }>;
  total: { p50Us: number; p99Us: number };
  hops: HopStat[];
  networkByNode: Record<string, { p50Us: number; p99Us: number }>;
}

const tag = (s: JaegerSpan, k: string) => s.tags.find((x) => x.key === k)?.value;
/** exchange spans are layer proxy or app; every other strata.layer is a hop's (pod, veth, bridge, ovs, node, ...) */
const isHop = (s: JaegerSpan) => {
  const l = String(tag(s, 'strata.layer') ?? '');
  return l !== '' && l !== 'proxy' && l !== 'app';
};

/** percentile by nearest rank (p in 0..100) of a non-empty list; 0 for none */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** The root of a trace: the earliest span whose parent is not in it. */
function rootOf(spans: readonly JaegerSpan[]): JaegerSpan | undefined {
  const ids = new Set(spans.map((s) => s.spanID));
  const roots = spans.filter((s) => !s.references.some((r) => r.refType === 'CHILD_OF' && ids.has(r.spanID)));
  return roots.sort((a, b) => a.startTime - b.startTime || b.duration - a.duration)[0];
}

function classOf(s: JaegerSpan): { layer: LayerClass; client: boolean } | undefined {
  const layer = String(tag(s, 'strata.layer') ?? '');
  const kind = String(tag(s, 'span.kind') ?? '');
  if (isHop(s)) return { layer: 'network', client: false };
  if (layer === 'proxy' || layer === 'app') return { layer, client: kind === 'client' };
  // spans of an application's own SDK (no strata.layer): its time
  if (kind === 'client') return { layer: 'app', client: true };
  return { layer: 'app', client: false };
}

export function breakdown(t: JaegerTraces['data'][number]): TraceBreakdown | undefined {
  const root = rootOf(t.spans);
  if (!root) return undefined;
  const timed: TimedSpan[] = t.spans.map((s) => {
    const c = classOf(s) ?? { layer: 'app' as const, client: false };
    const parent = s.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
    return { id: s.spanID, parent, start: s.startTime, end: s.startTime + s.duration, layer: c.layer, client: c.client };
  });
  const layers = splitByLayer(timed, root.spanID);
  const networkByNode: Record<string, number> = {};
  for (const s of t.spans) {
    if (!isHop(s)) continue;
    const node = String(t.processes[s.processID]?.tags?.find((x) => x.key === 'k8s.node.name')?.value ?? tag(s, 'k8s.node.name') ?? '?');
    networkByNode[node] = (networkByNode[node] ?? 0) + s.duration;
  }
  return { traceId: t.traceID, rootName: root.operationName, totalUs: root.duration, layers, networkByNode, spans: t.spans.length };
}

export function buildReport(data: JaegerTraces): Report {
  const traces: TraceBreakdown[] = [];
  let skipped = 0;
  const hopDur = new Map<string, number[]>();
  for (const t of data.data) {
    const b = breakdown(t);
    if (!b) {
      skipped++;
      continue;
    }
    traces.push(b);
    for (const s of t.spans) {
      if (!isHop(s)) continue;
      const svc = t.processes[s.processID]?.serviceName ?? '';
      const name = `${svc}: ${s.operationName}`;
      const list = hopDur.get(name);
      if (list) list.push(s.duration);
      else hopDur.set(name, [s.duration]);
    }
  }
  const layers = Object.fromEntries(LAYER_CLASSES.map((l) => {
    const xs = traces.map((t) => t.layers[l]);
    return [l, { p50Us: percentile(xs, 50), p99Us: percentile(xs, 99), sumUs: xs.reduce((a, b) => a + b, 0) }];
  })) as Report['layers'];
  const nodes = [...new Set(traces.flatMap((t) => Object.keys(t.networkByNode)))].sort();
  const networkByNode = Object.fromEntries(nodes.map((n) => {
    const xs = traces.map((t) => t.networkByNode[n] ?? 0);
    return [n, { p50Us: percentile(xs, 50), p99Us: percentile(xs, 99) }];
  }));
  const hops = [...hopDur].map(([name, xs]) => ({ name, count: xs.length, p50Us: percentile(xs, 50), p99Us: percentile(xs, 99) }))
    .sort((a, b) => b.p99Us - a.p99Us || a.name.localeCompare(b.name));
  const totals = traces.map((t) => t.totalUs);
  return { traces, skipped, layers, total: { p50Us: percentile(totals, 50), p99Us: percentile(totals, 99) }, hops, networkByNode };
}

export function readTraces(dir: string): JaegerTraces {
  const file = join(dir, JAEGER_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new StrataError(STRATA_ERR_REPORT_INPUT, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message} (a directory the agent wrote with export.files.dir, or the demo's ./traces)`, EXIT_CONFIG, { file });
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new StrataError(STRATA_ERR_REPORT_INPUT, `${file} is not JSON: ${(e as Error).message}`, EXIT_CONFIG, { file });
  }
  if (!data || typeof data !== 'object' || !Array.isArray((data as JaegerTraces).data)) {
    throw new StrataError(STRATA_ERR_REPORT_INPUT, `${file} is not Jaeger JSON (no "data" array of traces)`, EXIT_CONFIG, { file });
  }
  return data as JaegerTraces;
}

const us = (x: number) => (x >= 10_000 ? `${(x / 1000).toFixed(1)} ms` : `${Math.round(x)} us`);
const pct = (part: number, whole: number) => (whole > 0 ? `${((100 * part) / whole).toFixed(1)} %` : '-');

export function formatReport(r: Report, topHops = 12): string {
  const out: string[] = [];
  const n = r.traces.length;
  out.push(`${n} traces${r.skipped ? ` (${r.skipped} without a root span skipped)` : ''}; root duration p50 ${us(r.total.p50Us)}, p99 ${us(r.total.p99Us)}`);
  out.push('');
  out.push('where the time went, by layer (each trace\'s root split along its timeline; p50/p99 over the traces)');
  const sum = LAYER_CLASSES.reduce((a, l) => a + r.layers[l].sumUs, 0);
  out.push(`  ${'layer'.padEnd(10)} ${'p50'.padStart(10)} ${'p99'.padStart(10)} ${'share'.padStart(8)}`);
  for (const l of LAYER_CLASSES) {
    out.push(`  ${l.padEnd(10)} ${us(r.layers[l].p50Us).padStart(10)} ${us(r.layers[l].p99Us).padStart(10)} ${pct(r.layers[l].sumUs, sum).padStart(8)}`);
  }
  const nodes = Object.keys(r.networkByNode);
  if (nodes.length) {
    out.push('');
    out.push('network time by node (hop spans each node\'s agent saw; summed per trace)');
    for (const node of nodes) out.push(`  ${node.padEnd(24)} p50 ${us(r.networkByNode[node].p50Us).padStart(9)}  p99 ${us(r.networkByNode[node].p99Us).padStart(9)}`);
  }
  if (r.hops.length) {
    out.push('');
    out.push(`hops, slowest p99 first (${Math.min(topHops, r.hops.length)} of ${r.hops.length})`);
    for (const h of r.hops.slice(0, topHops)) out.push(`  p50 ${us(h.p50Us).padStart(9)}  p99 ${us(h.p99Us).padStart(9)}  x${String(h.count).padEnd(5)} ${h.name}`);
  }
  return `${out.join('\n')}\n`;
}
