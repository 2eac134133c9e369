// The cluster demo's own parts, without a lab: its collector (OTLP/HTTP protobuf in, ReadableSpans
// out, as the agent's and the SDK's exporters encode them) and its waterfall's time split.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { DemoCollector, decodeTraces } from '../../agent/src/demo/collector.ts';
import { groupTraces, printWaterfall, timeSplit } from '../../agent/src/demo/waterfall.ts';
import { RecordSpan } from '../../agent/src/export/readable-span.ts';

const TRACE = '0af7651916cd43dd8448eb211c80319c';
let nextId = 1;
const sid = () => (nextId++).toString(16).padStart(16, '0');

interface Spec {
  id?: string;
  parent?: string;
  name?: string;
  kind?: SpanKind;
  /** ms from t0 */
  at: number;
  dur: number;
  layer?: string;
  node?: string;
  service?: string;
  ns?: string;
  pod?: string;
  trace?: string;
}

const T0 = 1_764_670_000;
function span(s: Spec): ReadableSpan {
  const ns = (ms: number): [number, number] => [T0 + Math.floor(ms / 1000), Math.round((ms % 1000) * 1e6)];
  const resource = resourceFromAttributes({
    'service.name': s.service ?? 'svc',
    ...(s.node ? { 'k8s.node.name': s.node } : {}),
    ...(s.ns ? { 'k8s.namespace.name': s.ns } : {}),
    ...(s.pod ? { 'k8s.pod.name': s.pod } : {}),
  });
  return new RecordSpan({
    traceId: s.trace ?? TRACE, spanId: s.id ?? sid(), ...(s.parent ? { parentSpanId: s.parent } : {}), traceFlags: 1, name: s.name ?? 'op',
    kind: s.kind ?? SpanKind.INTERNAL, start: ns(s.at), end: ns(s.at + s.dur), attributes: s.layer ? { 'strata.layer': s.layer } : {},
    resource: { serviceName: s.service ?? 'svc', attributes: {} },
  }, resource, { name: 'strata' });
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('demo waterfall: where a trace\'s wall time went', () => {
  it('gives each instant to the deepest span active: the parts add up to the trace\'s duration', () => {
    const root = span({ at: 0, dur: 100, layer: 'proxy', node: 'node-1' });
    const app = span({ parent: root.spanContext().spanId, at: 10, dur: 80, layer: 'app', node: 'node-2' });
    const hop = span({ parent: root.spanContext().spanId, at: 5, dur: 5, layer: 'veth', node: 'node-1', service: 'net:veth node-1' });
    const callee = span({ parent: app.spanContext().spanId, at: 20, dur: 30, layer: 'app', node: 'node-3' });
    const split = timeSplit([root, app, hop, callee]);
    assert.equal(split.totalUs, 100_000);
    assert.equal(sum(split.byLayer), split.totalUs);
    assert.deepEqual(Object.fromEntries(split.byLayer), { proxy: 15_000, veth: 5_000, app: 80_000 });
    assert.deepEqual(Object.fromEntries(split.byNode), { 'node-1': 20_000, 'node-2': 50_000, 'node-3': 30_000 });
  });

  it('parallel siblings: the call that ends last takes the shared instants (the parent waits for it), nothing counted twice', () => {
    const root = span({ at: 0, dur: 50, layer: 'app', node: 'node-4' });
    const a = span({ parent: root.spanContext().spanId, at: 10, dur: 20, layer: 'app', node: 'node-3' });
    const b = span({ parent: root.spanContext().spanId, at: 12, dur: 28, layer: 'pod', node: 'node-2' });
    const split = timeSplit([root, a, b]);
    assert.equal(sum(split.byNode), 50_000);
    // 10..12 a alone; 12..40 b (ends last); the rest the root
    assert.deepEqual(Object.fromEntries(split.byNode), { 'node-4': 20_000, 'node-3': 2_000, 'node-2': 28_000 });
  });

  it('a second root whose parent is outside the trace counts under the span it starts in; SDK spans count as app', () => {
    const proxy = span({ at: 0, dur: 100, layer: 'proxy', node: 'node-1' });
    const proxyClient = span({ parent: proxy.spanContext().spanId, at: 1, dur: 98, layer: 'proxy', node: 'node-1' });
    // strata's frontend SERVER took the client's traceparent: its parent is the client's span, not exported
    const fe = span({ parent: 'ffffffffffffffff', at: 2, dur: 96, layer: 'app', node: 'node-4' });
    // the app's SDK span, no strata.layer, a few ms after (its own clock) and ending past the proxy
    const sdk = span({ parent: 'ffffffffffffffff', at: 5, dur: 97, node: 'node-4', service: 'frontend' });
    const split = timeSplit([proxy, proxyClient, fe, sdk]);
    assert.equal(sum(split.byLayer), split.totalUs);
    // 0..1 proxy SERVER, 1..2 its CLIENT, 2..5 strata's frontend (under that CLIENT), 5..102 the SDK span (under the frontend)
    assert.deepEqual(Object.fromEntries(split.byLayer), { proxy: 2_000, app: 100_000 });
  });

  it('prints one row per span (hop chains folded per direction), the bar inside the trace, and the two total lines', () => {
    const root = span({ at: 0, dur: 40, layer: 'proxy', node: 'node-1', service: 'ingress-nginx', name: 'GET /dispatch' });
    const rid = root.spanContext().spanId;
    const hops = [
      span({ parent: rid, at: 0, dur: 1, layer: 'node', node: 'node-1', service: 'net:node node-1', name: 'request node-1 eth0 -> x veth' }),
      span({ parent: rid, at: 1, dur: 1, layer: 'veth', node: 'node-1', service: 'net:veth node-1', name: 'request x veth -> x eth0' }),
      span({ parent: rid, at: 39, dur: 1, layer: 'veth', node: 'node-1', service: 'net:veth node-1', name: 'response x eth0 -> x veth' }),
    ];
    const lines: string[] = [];
    printWaterfall({ traceId: TRACE, spans: [root, ...hops] }, (l) => lines.push(l), { width: 20 });
    assert.match(lines[0] as string, new RegExp(`^trace ${TRACE}, 4 spans, 40.00 ms$`));
    const rows = lines.slice(2, -2);
    assert.equal(rows.length, 3, lines.join('\n'));
    assert.match(rows[0] as string, /^\s+0\.00\s+40\.00\s+node-1\s+proxy\s+\|█{20}\|\s+ingress-nginx: GET \/dispatch$/);
    assert.match(rows[1] as string, /node-1\s+net\s+\|█ {19}\|\s+request: 2 hop spans \(ms: node 1\.00, veth 1\.00\)$/);
    assert.match(rows[2] as string, /\| {19}█\|\s+response: 1 hop spans \(ms: veth 1\.00\)$/);
    assert.match(lines.at(-2) as string, /^time by layer: proxy 37\.00 ms \(93%\) · veth 2\.00 ms \(5%\) · node 1\.00 ms \(3%\)$/);
    assert.match(lines.at(-1) as string, /^time by node: {2}node-1 40\.00 ms \(100%\)$/);
    const all: string[] = [];
    printWaterfall({ traceId: TRACE, spans: [root, ...hops] }, (l) => all.push(l), { allSpans: true });
    assert.equal(all.length - 4, 4, 'every span its own row');
  });

  it('roots that all hang under one span outside the trace (the client\'s traceparent) print as one tree under a row for it', () => {
    const caller = 'ffffffffffffffff';
    const proxy = span({ parent: caller, at: 0, dur: 100, layer: 'proxy', node: 'node-1', service: 'ingress-nginx', name: 'GET /dispatch' });
    const sdk = span({ parent: caller, at: 5, dur: 90, node: 'node-2', service: 'frontend', name: 'GET' });
    const lines: string[] = [];
    printWaterfall({ traceId: TRACE, spans: [proxy, sdk] }, (l) => lines.push(l), { width: 20 });
    const rows = lines.slice(2, -2);
    assert.equal(rows.length, 3, lines.join('\n'));
    assert.match(rows[0] as string, new RegExp(`^\\s+0\\.00\\s+100\\.00\\s+-\\s+client\\s+\\|█{20}\\|  client: span ${caller} \\(the caller's, not in the trace\\)$`));
    assert.match(rows[1] as string, /\|  {3}ingress-nginx: GET \/dispatch$/, 'one level under it');
    assert.match(rows[2] as string, /\|  {3}frontend: GET$/);
    assert.match(lines[0] as string, /, 2 spans, /, 'the row is not a span');
    // roots under different missing parents, or a single root: printed as they are
    const other = span({ parent: 'eeeeeeeeeeeeeeee', at: 5, dur: 90, node: 'node-2', service: 'frontend', name: 'GET' });
    const apart: string[] = [];
    printWaterfall({ traceId: TRACE, spans: [proxy, other] }, (l) => apart.push(l), { width: 20 });
    assert.ok(!apart.some((l) => l.includes('client: span')), apart.join('\n'));
  });

  it('a trace is complete with strata\'s SERVER spans of the ingress, frontend, customer, driver and every route call', () => {
    const pods = [['ingress-nginx', 'ctl', 'ingress'], ['hotrod', 'frontend', 'frontend'], ['hotrod', 'customer', 'customer'], ['hotrod', 'driver', 'driver'], ['hotrod', 'route', 'route']]
      .map(([namespace, name, app]) => ({ namespace: namespace as string, name: name as string, app: app as string }));
    const server = (pod: (typeof pods)[number], trace: string, at: number, layer = 'app') =>
      span({ trace, kind: SpanKind.SERVER, at, dur: 1, layer, ns: pod.namespace, pod: pod.name });
    const [ing, fe, cu, dr, ro] = pods as [typeof pods[0], typeof pods[0], typeof pods[0], typeof pods[0], typeof pods[0]];
    const A = 'a'.repeat(32);
    const B = 'b'.repeat(32);
    const spans = [server(ing, A, 0, 'proxy'), server(fe, A, 1), server(cu, A, 2), server(dr, A, 3), server(ro, A, 4), server(ro, A, 5),
      server(ing, B, 10, 'proxy'), server(fe, B, 11), server(dr, B, 13), server(ro, B, 14),
      // an SDK SERVER span (no strata.layer) does not make a trace complete
      span({ trace: B, kind: SpanKind.SERVER, at: 12, dur: 1, ns: 'hotrod', pod: 'customer' })];
    const ts = groupTraces(spans, { pods }, new Map([['hotrod', 2]]));
    assert.deepEqual(ts.map((t) => [t.traceId, t.namespace, t.complete, t.missing, t.sdkServers]), [
      [A, 'hotrod', true, [], 0],
      [B, 'hotrod', false, ['customer SERVER', '1 of 2 route SERVER'], 1],
    ]);
  });
});

describe('demo collector: OTLP/HTTP protobuf in, the same spans out', () => {
  const parent = span({ at: 0, dur: 10, layer: 'proxy', node: 'node-1', service: 'ingress-nginx', kind: SpanKind.SERVER, name: 'GET /dispatch' });
  const child = new RecordSpan({
    traceId: TRACE, spanId: sid(), parentSpanId: parent.spanContext().spanId, parentIsRemote: true, traceFlags: 1, traceState: 'k=v', name: 'GET /customer',
    kind: SpanKind.CLIENT, start: [T0, 1_000_000], end: [T0, 9_500_123], attributes: { 'strata.layer': 'app', 'http.response.status_code': 503, 'x.list': ['a', 'b'], 'x.ok': true, 'x.f': 1.5 },
    status: { code: SpanStatusCode.ERROR, message: 'boom' }, events: [{ name: 'response first byte', time: [T0, 5_000_000], attributes: { n: 1 } }],
    resource: { serviceName: 'frontend', attributes: {} },
  }, resourceFromAttributes({ 'service.name': 'frontend', 'k8s.node.name': 'node-2', 'k8s.pod.uid': 'u-1' }), { name: 'strata', version: '0.1.0' });

  it('decodes what the OTLP exporters encode: ids, parent, kind, times to the ns, attributes, status, events, resource, scope', () => {
    const body = ProtobufTraceSerializer.serializeRequest([parent, child]) as Uint8Array;
    const got = decodeTraces(body);
    assert.equal(got.length, 2);
    const c = got.find((s) => s.name === 'GET /customer') as ReadableSpan;
    assert.deepEqual(c.spanContext().traceId, TRACE);
    assert.equal(c.spanContext().spanId, child.spanContext().spanId);
    assert.equal(c.spanContext().traceFlags, 1);
    assert.equal(c.spanContext().traceState?.serialize(), 'k=v');
    assert.equal(c.parentSpanContext?.spanId, parent.spanContext().spanId);
    assert.equal(c.parentSpanContext?.isRemote, true);
    assert.equal(c.kind, SpanKind.CLIENT);
    assert.deepEqual([c.startTime, c.endTime], [[T0, 1_000_000], [T0, 9_500_123]]);
    assert.deepEqual(c.attributes, child.attributes);
    assert.deepEqual(c.status, { code: SpanStatusCode.ERROR, message: 'boom' });
    assert.deepEqual(c.events.map((e) => [e.name, e.time, e.attributes]), [['response first byte', [T0, 5_000_000], { n: 1 }]]);
    assert.deepEqual(c.resource.attributes, child.resource.attributes);
    assert.deepEqual(c.instrumentationScope, { name: 'strata', version: '0.1.0' });
    // Span.flags (read from the wire: the generated schema predates it): an unsampled span stays unsampled
    const unsampled = new RecordSpan({ traceId: TRACE, spanId: sid(), traceFlags: 0, name: 'u', kind: SpanKind.SERVER, start: [T0, 0], end: [T0, 1], attributes: {},
      resource: { serviceName: 'x', attributes: {} } }, resourceFromAttributes({}), { name: 'strata' });
    assert.deepEqual(decodeTraces(ProtobufTraceSerializer.serializeRequest([unsampled]) as Uint8Array).map((s) => s.spanContext().traceFlags), [0]);
    const p = got.find((s) => s.name === 'GET /dispatch') as ReadableSpan;
    assert.equal(p.parentSpanContext, undefined);
    assert.equal(p.kind, SpanKind.SERVER);
    // and back: the decoded spans encode to the same request
    assert.deepEqual(decodeTraces(ProtobufTraceSerializer.serializeRequest(got) as Uint8Array).map((s) => [s.name, s.spanContext().spanId, s.endTime]),
      got.map((s) => [s.name, s.spanContext().spanId, s.endTime]));
  });

  it('accepts POST /v1/traces, hands the spans to every exporter, and refuses anything else with a counted reason', async () => {
    const exported: ReadableSpan[][] = [];
    let shutdown = 0;
    const exporter: SpanExporter = {
      export: (spans, cb) => {
        exported.push(spans);
        cb({ code: ExportResultCode.SUCCESS });
      },
      shutdown: async () => {
        shutdown++;
      },
    };
    const failing: SpanExporter = { export: (_s, cb) => cb({ code: ExportResultCode.FAILED }), shutdown: async () => {} };
    const col = new DemoCollector({ exporters: [exporter, failing], maxBodyBytes: 64 * 1024, maxSpans: 1 });
    const port = await col.start(0);
    const post = (path: string, body: Uint8Array | string, method = 'POST') => new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path, method, headers: { 'content-type': 'application/x-protobuf' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end(body);
    });
    try {
      assert.equal(await post('/v1/traces', ProtobufTraceSerializer.serializeRequest([parent, child]) as Uint8Array), 200);
      assert.equal(await post('/v1/traces', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])), 400);
      assert.equal(await post('/v1/metrics', 'x'), 404);
      assert.equal(await post('/v1/traces', '', 'GET'), 404);
      assert.equal(await post('/v1/traces', Buffer.alloc(65 * 1024)), 413);
    } finally {
      await col.stop();
    }
    assert.deepEqual(exported.map((b) => b.map((s) => s.name)), [['GET /dispatch', 'GET /customer']]);
    assert.equal(shutdown, 1, 'stop() shuts the exporters down (the file exporter writes then)');
    const st = col.stats();
    assert.deepEqual([st.requests, st.spans, st.rejected, st.notKept], [1, 2, { too_large: 1, undecodable: 1, not_found: 2 }, 1]);
    assert.equal(col.spans().length, 1, 'kept at most maxSpans');
    assert.deepEqual(Object.values(st.exportFailures), [1], 'the failing exporter counted');
  });
});
