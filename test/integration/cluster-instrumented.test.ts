// strata beside an instrumented app, end to end (issue 10, the instrumented must-show): a 3-node
// cluster lab with the HotROD app running the OpenTelemetry Node SDK in every pod (it reads and
// sends traceparent and exports its own spans), one agent per node stitching over the signed peer
// channel, the agents and the SDK all exporting to one OTLP receiver.
// - The client sends a traceparent (NGINX forwards it unchanged): each request is one tree under
//   the client's span (the only parent id not in the trace), strata's SERVER spans under strata's
//   CLIENT spans that sent their bytes (across nodes), the SDK's spans in the same trace, each
//   SDK SERVER span under the span strata recorded as strata.context.span_id; no duplicates.
// - No header: the SDK starts a trace in the frontend; strata's frontend SERVER adopts it (a root
//   of it, its wire parent, NGINX's CLIENT in strata's ingress trace, as attributes); everything
//   from the frontend on is one trace with two roots (strata's and the SDK's frontend SERVER).
// Needs root, nginx, nftables, node; under CI=true their absence fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Cluster, clientOf, clusterDown, clusterPrerequisites, clusterUp } from '../../lab/cluster/cluster.ts';
import { loadTopology } from '../../lab/cluster/topology.ts';
import { curlFromClient } from '../../lab/lab.ts';
import { type AgentProc, testAgentCommand, metricValue, spawnAgent, stopAgent } from '../helpers/agent-proc.ts';
import { KIND_CLIENT, KIND_SERVER } from '../helpers/lab-tracing.ts';
import { type DecodedSpan, flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { freePort } from '../helpers/ports.ts';

const ci = process.env.CI === 'true';
const PREFIX = 'sin';
const NS = 'hotrod-otel';
// nginx on node-1 -> frontend on node-2 -> customer on node-3, driver on node-1 -> route x3 on
// node-2: every call crosses nodes; every app pod runs the SDK
const TOPOLOGY = `apiVersion: strata.lab/v1alpha1
kind: Cluster
name: instrumented
nodes:
  - { name: node-1 }
  - { name: node-2 }
  - { name: node-3 }
ingress: { node: node-1, hostPort: 80, rules: [ { service: ${NS}/frontend } ] }
pods:
  - { namespace: ${NS}, app: frontend, node: node-2, runtime: node, mode: instrumented }
  - { namespace: ${NS}, app: customer, node: node-3, runtime: node, mode: instrumented }
  - { namespace: ${NS}, app: driver, node: node-1, runtime: node, mode: instrumented, fanout: 3 }
  - { namespace: ${NS}, app: route, node: node-2, runtime: node, mode: instrumented }
telemetry: { otlpEndpoint: "" }
faults: []
`;
const FANOUT = 3;
// generous for two loaded cores: a chain of three agents each adds grace + flush + a tick
const HOLD_MS = 4000;

function missingPrerequisite(dir: string): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces, BPF)';
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, TOPOLOGY);
  const missing = clusterPrerequisites(loadTopology(file));
  return missing.length ? missing.join('; ') : undefined;
}


interface Row {
  span: DecodedSpan;
  resource: Record<string, unknown>;
}
const str = (v: unknown) => (v === undefined ? '' : String(v));
const isStrata = (r: Row) => r.span.attributes['strata.layer'] !== undefined;
const app = (r: Row) => str(r.resource['k8s.pod.name']).split('-')[0] ?? '';
const ns = (r: Row) => str(r.resource['k8s.namespace.name']);
const label = (r: Row) => `${isStrata(r) ? 'strata' : 'sdk'} ${ns(r)}/${app(r)} ${r.span.kind === KIND_SERVER ? 'SERVER' : r.span.kind === KIND_CLIENT ? 'CLIENT' : 'hop'} ${r.span.name} ${str(r.span.attributes['url.path'])}`;
/** strata's / the SDK's span of kind `kind` in pod `a` (ingress: the NGINX pod) */
// (the SDK's own exports to the collector, POST /v1/traces, are traced too: not the app's requests)
const strataOf = (rows: Row[], a: string, kind: number) => rows.filter((r) => isStrata(r) && r.span.kind === kind && r.span.attributes['url.path'] !== '/v1/traces' &&
  (a === 'ingress' ? ns(r) === 'ingress-nginx' : ns(r) === NS && app(r) === a));
const sdkOf = (rows: Row[], a: string, kind: number) => rows.filter((r) => !isStrata(r) && r.span.kind === kind && ns(r) === NS && app(r) === a);

/** Every parent id of the trace is a span of it, but `allowed`; no span id twice; no cycle. Returns the spans under each missing parent. */
function treeCheck(rows: Row[], allowed: Set<string>): Map<string, Row[]> {
  const byId = new Map<string, Row>();
  for (const r of rows) {
    const twice = byId.get(r.span.spanId);
    if (twice) assert.fail(`span id ${r.span.spanId} twice: ${label(r)} / ${label(twice)}`);
    byId.set(r.span.spanId, r);
  }
  const tops = new Map<string, Row[]>();
  for (const r of rows) {
    let cur = r;
    for (let i = 0; ; i++) {
      assert.ok(i < rows.length, `a parent cycle above ${label(r)}`);
      const p = cur.span.parentSpanId;
      const up = p ? byId.get(p) : undefined;
      if (up) {
        cur = up;
        continue;
      }
      assert.ok(allowed.has(p), `${label(cur)}: parent ${p || '(none)'} is not in the trace`);
      if (cur === r) tops.set(p, [...(tops.get(p) ?? []), r]);
      break;
    }
  }
  return tops;
}

const dir = mkdtempSync(join(tmpdir(), 'strata-sin-'));
const missing = missingPrerequisite(dir);
const skip = missing && !ci ? `skipped: ${missing}` : false;

describe('cluster instrumented: strata\'s spans and the app\'s SDK spans, with and without a client traceparent', { skip, timeout: 600_000 }, () => {
  const receiver = new OtlpReceiver();
  let c: Cluster;
  const agents = new Map<string, AgentProc>();
  const ports = new Map<string, number>();
  const secretFile = join(dir, 'secret');

  const rows = (): Row[] => receiver.requests.flatMap((r) => flattenSpans(r.decoded)).map((x) => ({ span: x.span, resource: x.resource }));
  const metrics = async (node: string) => (await fetch(`http://127.0.0.1:${agents.get(node)?.metricsPort}/metrics`)).text();

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    await receiver.start();
    c = await clusterUp({ prefix: PREFIX, topology: join(dir, 'topology.yaml'), otlpEndpoint: `http://127.0.0.1:${receiver.port}` });
    const peers = [];
    for (const n of c.nodes) {
      ports.set(n.name, await freePort());
      peers.push({ name: n.name, podCidr: n.podCidr, address: `http://127.0.0.1:${ports.get(n.name)}` });
    }
    const peersFile = join(dir, 'peers.json');
    writeFileSync(peersFile, JSON.stringify(peers));
    writeFileSync(secretFile, 'instrumented-lab-secret-0123456789\n');
    for (const n of c.nodes) {
      const args = ['--pods-file', n.podsFile, '--node-name', n.name, '--node-netns', n.netnsPath, '--iface', n.uplink,
        '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1',
        '--set', `stitch.peersFile=${peersFile}`, '--set', `stitch.secretFile=${secretFile}`, '--set', `stitch.port=${ports.get(n.name)}`,
        '--set', 'stitch.host=127.0.0.1', '--set', `stitch.holdMs=${HOLD_MS}`, '--set', 'export.queue.delayMs=100'];
      agents.set(n.name, await spawnAgent(testAgentCommand(args), 90_000, 64 * 1024));
    }
  });

  after(async () => {
    for (const a of agents.values()) await stopAgent(a, 'SIGKILL').catch(() => undefined);
    await clusterDown(PREFIX);
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function dispatch(customer: number, headers: string[] = []): Promise<{ traceparents: { frontend: string | null; customer: string | null } }> {
    const r = await curlFromClient(clientOf(c), `${c.ingress.url}/dispatch?customer=${customer}`, headers.flatMap((h) => ['-H', h]));
    assert.equal(r.status, 200, r.body);
    return JSON.parse(r.body) as { traceparents: { frontend: string | null; customer: string | null } };
  }

  /** strata's and the SDK's SERVER spans of every service of one dispatch, all in `trace` */
  const complete = (trace: Row[]) =>
    ['ingress', 'frontend', 'customer', 'driver'].every((a) => strataOf(trace, a, KIND_SERVER).length >= 1) && strataOf(trace, 'route', KIND_SERVER).length >= FANOUT &&
    ['frontend', 'customer', 'driver'].every((a) => sdkOf(trace, a, KIND_SERVER).length >= 1) && sdkOf(trace, 'route', KIND_SERVER).length >= FANOUT &&
    sdkOf(trace, 'driver', KIND_CLIENT).length >= FANOUT && sdkOf(trace, 'frontend', KIND_CLIENT).length >= 2;

  it('the client sends a traceparent: one tree per request under the client\'s span, strata\'s SERVER under strata\'s CLIENT, the SDK\'s spans in it', async () => {
    const N = 4;
    const sent = Array.from({ length: N }, () => ({ traceId: randomBytes(16).toString('hex'), span: randomBytes(8).toString('hex') }));
    const t0 = Date.now();
    // in parallel: strata links each frontend call to its request by the trace id the SDK continues
    await Promise.all(sent.map((s, i) => dispatch([101, 202, 303, 404][i] as number, [`traceparent: 00-${s.traceId}-${s.span}-01`])));
    const traces = await waitFor(() => {
      const out = sent.map((s) => rows().filter((r) => r.span.traceId === s.traceId));
      return out.every(complete) ? out : undefined;
    }, `${N} complete traces`, 90_000, 100);
    console.log(`# ${N} instrumented traces complete ${Date.now() - t0} ms after the requests`);
    for (const [i, s] of sent.entries()) {
      const t = traces[i] as Row[];
      // one tree: every parent id is a span of the trace, but the client's own span at the top
      const tops = treeCheck(t, new Set([s.span]));
      const top = (tops.get(s.span) ?? []).map(label).sort();
      assert.deepEqual(top, [label(strataOf(t, 'ingress', KIND_SERVER)[0] as Row), label(sdkOf(t, 'frontend', KIND_SERVER)[0] as Row)].sort(),
        `${s.traceId}: under the client's span, strata's ingress SERVER and the SDK's frontend SERVER (NGINX forwarded the header as is)`);
      const one = (xs: Row[], what: string) => {
        assert.equal(xs.length, 1, `${s.traceId}: one ${what}, ${xs.length}: ${xs.map(label).join('; ')}`);
        return xs[0] as Row;
      };
      const byId = new Map(t.map((r) => [r.span.spanId, r]));
      const parent = (r: Row) => byId.get(r.span.parentSpanId);
      // strata follows the wire: each SERVER under the CLIENT that sent its bytes, across nodes
      const ingressClient = one(strataOf(t, 'ingress', KIND_CLIENT), 'ingress CLIENT');
      const front = one(strataOf(t, 'frontend', KIND_SERVER), 'strata frontend SERVER');
      assert.equal(front.span.parentSpanId, ingressClient.span.spanId, 'strata frontend SERVER (node-2) under strata NGINX CLIENT (node-1)');
      assert.equal(front.span.attributes['strata.stitch'], 'peer');
      const frontCalls = strataOf(t, 'frontend', KIND_CLIENT);
      assert.equal(frontCalls.length, 2);
      for (const x of frontCalls) assert.equal(x.span.parentSpanId, front.span.spanId);
      for (const a of ['customer', 'driver']) {
        const sv = one(strataOf(t, a, KIND_SERVER), `strata ${a} SERVER`);
        assert.ok(frontCalls.includes(parent(sv) as Row), `strata ${a} SERVER under a strata frontend CLIENT, not ${label(parent(sv) ?? sv)}`);
      }
      const driver = one(strataOf(t, 'driver', KIND_SERVER), 'strata driver SERVER');
      const routes = strataOf(t, 'route', KIND_SERVER);
      assert.equal(routes.length, FANOUT);
      for (const r of routes) {
        const p = parent(r);
        assert.ok(p && isStrata(p) && app(p) === 'driver' && p.span.kind === KIND_CLIENT && p.span.parentSpanId === driver.span.spanId, 'strata route SERVER under a strata driver CLIENT');
      }
      // how the two sets relate: the SDK's SERVER span of a service hangs under the span the
      // traceparent it read names, which strata records on its own SERVER span of that request
      for (const a of ['frontend', 'customer', 'driver']) {
        const sv = one(strataOf(t, a, KIND_SERVER), `strata ${a} SERVER`);
        const sdk = one(sdkOf(t, a, KIND_SERVER), `SDK ${a} SERVER`);
        assert.equal(sdk.span.parentSpanId, sv.span.attributes['strata.context.span_id'], `${a}: the SDK SERVER's parent is strata.context.span_id`);
      }
      assert.equal(front.span.attributes['strata.context.span_id'], s.span, 'for the frontend: the client\'s span, forwarded by NGINX');
      // strata's CLIENT spans of the app name the SDK CLIENT span of the same call
      const sdkClients = new Set([...sdkOf(t, 'frontend', KIND_CLIENT), ...sdkOf(t, 'driver', KIND_CLIENT)].map((r) => r.span.spanId));
      for (const x of [...frontCalls, ...strataOf(t, 'driver', KIND_CLIENT)]) assert.ok(sdkClients.has(str(x.span.attributes['strata.context.span_id'])), `${label(x)} names the SDK's CLIENT span`);
      // no duplicates: one span per exchange and side, per SDK span
      one(sdkOf(t, 'frontend', KIND_SERVER), 'SDK frontend SERVER');
      assert.equal(sdkOf(t, 'route', KIND_SERVER).length, FANOUT);
      assert.equal(sdkOf(t, 'driver', KIND_CLIENT).length, FANOUT);
      assert.equal(strataOf(t, 'driver', KIND_CLIENT).length, FANOUT);
    }
    // no span of these requests in another trace (the SDK's own exports to the collector aside)
    const ids = new Set(sent.map((s) => s.traceId));
    const strays = rows().filter((r) => !ids.has(r.span.traceId) && (ns(r) === NS || ns(r) === 'ingress-nginx') && r.span.attributes['url.path'] !== '/v1/traces' && r.span.kind !== 1);
    assert.deepEqual(strays.map(label), [], 'no span of the requests outside their traces');
    for (const n of c.nodes) assert.equal(metricValue(await metrics(n.name), 'strata_peer_stitch_timeouts_total'), 0, `${n.name}: no stitch timeouts`);
  });

  it('no header: the SDK starts a trace in the frontend; strata\'s frontend SERVER adopts it, its wire parent recorded; one trace from there on', async () => {
    receiver.requests.length = 0;
    const N = 3;
    const sdkTraces: string[] = [];
    // one after the other: without any header, strata links the frontend's calls to its
    // request by the event loop's order (causality.ts), not by a trace id
    for (let i = 0; i < N; i++) {
      const a = await dispatch([101, 202, 303][i] as number);
      assert.equal(a.traceparents.frontend, null, 'the frontend received no header');
      const m = /^00-([0-9a-f]{32})-/.exec(a.traceparents.customer ?? '');
      assert.ok(m, `the SDK sent a traceparent to customer: ${a.traceparents.customer}`);
      sdkTraces.push(m[1] as string);
    }
    assert.equal(new Set(sdkTraces).size, N);
    const traces = await waitFor(() => {
      const out = sdkTraces.map((id) => rows().filter((r) => r.span.traceId === id));
      const ingressDone = out.every((t) => {
        const w = strataOf(t, 'frontend', KIND_SERVER)[0]?.span.attributes['strata.wire.parent.trace_id'];
        return w !== undefined && strataOf(rows().filter((r) => r.span.traceId === w), 'ingress', KIND_CLIENT).length === 1;
      });
      return ingressDone && out.every((t) => ['frontend', 'customer', 'driver'].every((a) => strataOf(t, a, KIND_SERVER).length >= 1 && sdkOf(t, a, KIND_SERVER).length >= 1) &&
        strataOf(t, 'route', KIND_SERVER).length >= FANOUT && sdkOf(t, 'route', KIND_SERVER).length >= FANOUT) ? out : undefined;
    }, `${N} adopted traces and their ingress traces`, 90_000, 100);
    for (const [i, id] of sdkTraces.entries()) {
      const t = traces[i] as Row[];
      // every parent id is in the trace: two roots, strata's frontend SERVER and the SDK's
      const tops = treeCheck(t, new Set(['']));
      const roots = (tops.get('') ?? []).map(label).sort();
      const front = strataOf(t, 'frontend', KIND_SERVER);
      assert.equal(front.length, 1);
      const f = front[0] as Row;
      assert.deepEqual(roots, [label(f), label(sdkOf(t, 'frontend', KIND_SERVER)[0] as Row)].sort(), `${id}: the roots`);
      assert.equal(f.span.attributes['strata.context.adopted'], true);
      assert.equal(f.span.attributes['strata.stitch'], 'peer', 'it waited for its wire parent');
      // the wire parent: NGINX's CLIENT span, in strata's ingress trace (one tree of its own)
      const ingress = rows().filter((r) => r.span.traceId === f.span.attributes['strata.wire.parent.trace_id']);
      const ic = strataOf(ingress, 'ingress', KIND_CLIENT);
      assert.equal(ic.length, 1);
      assert.equal(f.span.attributes['strata.wire.parent.span_id'], (ic[0] as Row).span.spanId, 'the wire parent is NGINX\'s CLIENT span');
      const ingressTops = treeCheck(ingress, new Set(['']));
      assert.deepEqual((ingressTops.get('') ?? []).map(label), [label(strataOf(ingress, 'ingress', KIND_SERVER)[0] as Row)], 'the ingress trace: strata\'s NGINX spans, one tree');
      assert.ok(ingress.every((r) => isStrata(r) && ns(r) !== NS), `only NGINX's spans and their hops there: ${ingress.map(label).join('; ')}`);
      // from the frontend on, strata follows the wire inside the adopted trace
      const byId = new Map(t.map((r) => [r.span.spanId, r]));
      for (const a of ['customer', 'driver']) {
        const sv = strataOf(t, a, KIND_SERVER);
        assert.equal(sv.length, 1);
        const p = byId.get((sv[0] as Row).span.parentSpanId);
        assert.ok(p && isStrata(p) && app(p) === 'frontend' && p.span.kind === KIND_CLIENT && p.span.parentSpanId === f.span.spanId, `strata ${a} SERVER under a strata frontend CLIENT`);
        assert.equal(sdkOf(t, a, KIND_SERVER)[0]?.span.parentSpanId, (sv[0] as Row).span.attributes['strata.context.span_id']);
      }
      assert.equal(strataOf(t, 'route', KIND_SERVER).length, FANOUT);
    }
    const adopted = metricValue(await metrics('node-2'), 'strata_correlator_trace_adopted_total');
    assert.ok(adopted >= N, `node-2 adopted ${adopted}`);
    assert.equal(metricValue(await metrics('node-2'), 'strata_correlator_trace_adopt_conflicts_total'), 0);
    for (const n of c.nodes) assert.equal(metricValue(await metrics(n.name), 'strata_peer_stitch_timeouts_total'), 0, `${n.name}: no stitch timeouts`);
  });
});
