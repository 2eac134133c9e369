// Where a trace's time went, by layer (correlate/layer-time.ts): every instant of the root goes to
// the innermost spans active then, shared in a fan-out, so the parts add up to the root exactly; a
// CLIENT span's time with nothing under it is "other". The local root's strata.time.* attributes
// and `strata report` (report.ts) are built on it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { splitByLayer, type TimedSpan } from '../../agent/src/correlate/layer-time.ts';
import type { JaegerSpan, JaegerTraces } from '../../agent/src/export/jaeger-json.ts';
import { buildReport, formatReport, percentile, readTraces } from '../../agent/src/report.ts';

const sum = (s: Record<string, number>) => Object.values(s).reduce((a, b) => a + b, 0);

describe('splitByLayer', () => {
  test('a proxy in front of an app: proxy, network (hops), other (unobserved call time), app add up to the root', () => {
    const spans: TimedSpan[] = [
      { id: 'ps', start: 0, end: 100, layer: 'proxy' },
      { id: 'pc', parent: 'ps', start: 10, end: 90, layer: 'proxy', client: true },
      { id: 'h1', parent: 'pc', start: 10, end: 20, layer: 'network' },
      { id: 'as', parent: 'pc', start: 30, end: 80, layer: 'app' },
      { id: 'h2', parent: 'pc', start: 80, end: 85, layer: 'network' },
    ];
    const s = splitByLayer(spans, 'ps');
    assert.deepEqual(s, { proxy: 20, network: 15, other: 15, app: 50 });
    assert.equal(sum(s), 100);
  });

  test('a fan-out: parallel calls share the time they overlap; the parts still add up to the root', () => {
    const spans: TimedSpan[] = [
      { id: 'd', start: 0, end: 100, layer: 'app' },
      { id: 'c1', parent: 'd', start: 10, end: 60, layer: 'app', client: true },
      { id: 'c2', parent: 'd', start: 20, end: 70, layer: 'app', client: true },
      { id: 'r2', parent: 'c2', start: 30, end: 50, layer: 'app' },
    ];
    const s = splitByLayer(spans, 'd');
    // 0-10 app, 10-20 c1 other, 20-30 c1+c2 other, 30-50 c1 other / r2 app shared, 50-60 c1+c2 other, 60-70 c2 other, 70-100 app
    assert.deepEqual(s, { app: 10 + 10 + 30, proxy: 0, network: 0, other: 10 + 10 + 10 + 10 + 10 });
    assert.equal(sum(s), 100);
  });

  test('children outside their parent are clipped to it; spans of other trees, cycles and an unknown root do not count', () => {
    const spans: TimedSpan[] = [
      { id: 'r', start: 100, end: 200, layer: 'app' },
      { id: 'late', parent: 'r', start: 150, end: 400, layer: 'network' },
      { id: 'x', start: 0, end: 1000, layer: 'proxy' },
      { id: 'a', parent: 'b', start: 120, end: 130, layer: 'network' },
      { id: 'b', parent: 'a', start: 120, end: 130, layer: 'network' },
    ];
    assert.deepEqual(splitByLayer(spans, 'r'), { app: 50, proxy: 0, network: 50, other: 0 });
    assert.deepEqual(splitByLayer(spans, 'nope'), { app: 0, proxy: 0, network: 0, other: 0 });
  });
});

const tagsOf = (kv: Record<string, string>) => Object.entries(kv).map(([key, value]) => ({ key, type: 'string' as const, value }));
function span(traceID: string, spanID: string, parent: string | undefined, start: number, duration: number, pid: string, tags: Record<string, string>, name = spanID): JaegerSpan {
  return {
    traceID, spanID, operationName: name, startTime: start, duration, processID: pid, tags: tagsOf(tags), logs: [], warnings: null, flags: 1,
    references: parent ? [{ refType: 'CHILD_OF', traceID, spanID: parent }] : [],
  } as JaegerSpan;
}

/** n traces nginx -> app on node-1, the veth hop slowed by `slow` us in the last `slowN` of them */
function traces(n: number, slowN: number, slow: number): JaegerTraces {
  const data: JaegerTraces['data'] = [];
  for (let i = 0; i < n; i++) {
    const id = `t${i}`;
    const d = i >= n - slowN ? slow : 0;
    data.push({
      traceID: id, warnings: null,
      processes: {
        p1: { serviceName: 'ingress-nginx', tags: tagsOf({ 'k8s.node.name': 'node-1' }) },
        p2: { serviceName: 'frontend', tags: tagsOf({ 'k8s.node.name': 'node-1' }) },
        p3: { serviceName: 'net:veth node-1', tags: tagsOf({ 'k8s.node.name': 'node-1' }) },
      },
      spans: [
        span(id, 'ps', undefined, 1000, 1000 + d, 'p1', { 'strata.layer': 'proxy', 'span.kind': 'server' }),
        span(id, 'pc', 'ps', 1100, 800 + d, 'p1', { 'strata.layer': 'proxy', 'span.kind': 'client' }),
        span(id, 'hv', 'pc', 1100, 50 + d, 'p3', { 'strata.layer': 'veth', 'span.kind': 'internal' }, 'request a veth -> b veth'),
        span(id, 'as', 'pc', 1200 + d, 600, 'p2', { 'strata.layer': 'app', 'span.kind': 'server' }),
      ],
    });
  }
  return { data, total: 0, limit: 0, offset: 0, errors: null } as unknown as JaegerTraces;
}

describe('strata report', () => {
  test('per layer p50/p99, network per node, hops slowest first; a slowed hop is named as where the time went', () => {
    const r = buildReport(traces(20, 2, 5000));
    assert.equal(r.traces.length, 20);
    for (const t of r.traces) assert.equal(Math.round(t.layers.app + t.layers.proxy + t.layers.network + t.layers.other), t.totalUs);
    assert.equal(r.layers.app.p50Us, 600);
    assert.equal(r.layers.network.p50Us, 50);
    assert.equal(r.layers.network.p99Us, 5050, 'p99 over 20 traces: the slowed ones');
    assert.equal(r.hops[0]?.name, 'net:veth node-1: request a veth -> b veth');
    assert.equal(r.hops[0]?.p99Us, 5050);
    assert.deepEqual(Object.keys(r.networkByNode), ['node-1']);
    const text = formatReport(r);
    assert.match(text, /20 traces/);
    assert.match(text, /network\s+50 us\s+5050 us/);
    assert.match(text, /p99\s+5050 us\s+x20\s+net:veth node-1: request a veth -> b veth/);
  });

  test('percentile by nearest rank', () => {
    assert.equal(percentile([], 50), 0);
    assert.equal(percentile([3, 1, 2], 50), 2);
    assert.equal(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99), 99);
  });

  test('a missing, non-JSON or non-Jaeger input is a clear error with its code; the CLI prints the report', () => {
    const dir = mkdtempSync(join(tmpdir(), 'strata-report-'));
    try {
      assert.throws(() => readTraces(dir), (e: Error & { code?: string }) => e.code === 'STRATA_ERR_REPORT_INPUT' && /ENOENT/.test(e.message));
      writeFileSync(join(dir, 'jaeger-traces.json'), '{"data":');
      assert.throws(() => readTraces(dir), (e: Error & { code?: string }) => e.code === 'STRATA_ERR_REPORT_INPUT' && /not JSON/.test(e.message));
      writeFileSync(join(dir, 'jaeger-traces.json'), '{"traces":[]}');
      assert.throws(() => readTraces(dir), /not Jaeger JSON/);
      writeFileSync(join(dir, 'jaeger-traces.json'), JSON.stringify(traces(3, 0, 0)));
      const out = execFileSync(process.execPath, ['agent/src/cli.ts', 'report', dir], { encoding: 'utf8' });
      assert.match(out, /^3 traces; root duration p50 1000 us/);
      const json = JSON.parse(execFileSync(process.execPath, ['agent/src/cli.ts', 'report', dir, '--json', '--hops', '1'], { encoding: 'utf8' })) as { traces: unknown[]; hops: unknown[] };
      assert.equal(json.traces.length, 3);
      assert.equal(json.hops.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
