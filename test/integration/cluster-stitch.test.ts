// Cross-node stitching without headers, end to end (issue 10 items 3 and 4): a 3-node cluster lab
// with the uninstrumented HotROD app spread over the nodes, one agent per node (its node's pods
// file and --node-netns), all exporting to one OTLP receiver and telling each other over the
// signed peer channel which trace each cross-node request belongs to. Each dispatch request,
// sent without any trace header, must come out as ONE trace across the nodes; a wrong secret is
// refused and counted; a dead peer costs a counted timeout, the spans still go out.
// Needs root, nginx, nftables, node; under CI=true their absence fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Cluster, clientOf, clusterDown, clusterPrerequisites, clusterUp } from '../../lab/cluster/cluster.ts';
import { loadTopology } from '../../lab/cluster/topology.ts';
import { curlFromClient } from '../../lab/lab.ts';
import { type AgentProc, testAgentCommand, metricValue, spawnAgent, stopAgent } from '../helpers/agent-proc.ts';
import { KIND_CLIENT, KIND_SERVER, type Row } from '../helpers/lab-tracing.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { freePort } from '../helpers/ports.ts';

const ci = process.env.CI === 'true';
const PREFIX = 'spr';
// nginx on node-1 -> frontend on node-2 -> customer on node-3, driver on node-1 -> route x3 on node-2:
// every call crosses nodes, over pod IPs (nginx) and over Service VIPs (the apps)
const TOPOLOGY = `apiVersion: strata.lab/v1alpha1
kind: Cluster
name: stitch
nodes:
  - { name: node-1 }
  - { name: node-2 }
  - { name: node-3 }
ingress: { node: node-1, hostPort: 80, rules: [ { service: hotrod/frontend } ] }
pods:
  - { namespace: hotrod, app: frontend, node: node-2, runtime: node }
  - { namespace: hotrod, app: customer, node: node-3, runtime: node }
  - { namespace: hotrod, app: driver, node: node-1, runtime: node, fanout: 3 }
  - { namespace: hotrod, app: route, node: node-2, runtime: node }
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


const dir = mkdtempSync(join(tmpdir(), 'strata-stitch-'));
const missing = missingPrerequisite(dir);
const skip = missing && !ci ? `skipped: ${missing}` : false;

describe('cluster stitch: one trace per request across nodes, no headers, no central service', { skip, timeout: 600_000 }, () => {
  const receiver = new OtlpReceiver();
  let c: Cluster;
  const agents = new Map<string, AgentProc>();
  const ports = new Map<string, number>();
  let peersFile = '';
  const secretFile = join(dir, 'secret');
  const wrongSecretFile = join(dir, 'wrong-secret');

  async function startNodeAgent(node: string, secret = secretFile, extra: string[] = []): Promise<AgentProc> {
    const n = c.nodes.find((x) => x.name === node);
    assert.ok(n, node);
    const args = ['--pods-file', n.podsFile, '--node-name', n.name, '--node-netns', n.netnsPath, '--iface', n.uplink,
      '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1',
      '--set', `stitch.peersFile=${peersFile}`, '--set', `stitch.secretFile=${secret}`, '--set', `stitch.port=${ports.get(node)}`,
      '--set', 'stitch.host=127.0.0.1', '--set', `stitch.holdMs=${HOLD_MS}`, '--set', 'export.queue.delayMs=100', ...extra];
    const a = await spawnAgent(testAgentCommand(args), 90_000, 64 * 1024);
    agents.set(node, a);
    return a;
  }
  const metrics = async (node: string) => (await fetch(`http://127.0.0.1:${agents.get(node)?.metricsPort}/metrics`)).text();
  const rows = (): Row[] => receiver.requests.flatMap((r) => flattenSpans(r.decoded)).map((x) => ({ span: x.span, service: String(x.resource['service.name']) }));
  const is = (r: Row, app: string, kind: number) => r.span.kind === kind && r.service.includes(app);

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    await receiver.start();
    c = await clusterUp({ prefix: PREFIX, topology: join(dir, 'topology.yaml') });
    const peers = [];
    for (const n of c.nodes) {
      ports.set(n.name, await freePort());
      // all agents of the lab run on this one machine: each on its own loopback port
      peers.push({ name: n.name, podCidr: n.podCidr, address: `http://127.0.0.1:${ports.get(n.name)}` });
    }
    peersFile = join(dir, 'peers.json');
    writeFileSync(peersFile, JSON.stringify(peers));
    writeFileSync(secretFile, 'correct-horse-battery-staple-0123\n');
    writeFileSync(wrongSecretFile, 'not-the-cluster-secret-at-all-456\n');
    for (const n of c.nodes) await startNodeAgent(n.name);
  });

  after(async () => {
    for (const a of agents.values()) await stopAgent(a, 'SIGKILL').catch(() => undefined);
    await clusterDown(PREFIX);
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** one dispatch from the client outside the cluster; its nginx SERVER span's trace once complete */
  async function dispatch(customer: number): Promise<number> {
    const r = await curlFromClient(clientOf(c), `${c.ingress.url}/dispatch?customer=${customer}`);
    assert.equal(r.status, 200, r.body);
    return r.status;
  }

  it('each request is one trace across the three nodes, every SERVER under the CLIENT that sent its bytes', async () => {
    const N = 4;
    const t0 = Date.now();
    for (let i = 0; i < N; i++) await dispatch([101, 202, 303, 404][i] as number);
    const traces = await waitFor(() => {
      const roots = rows().filter((r) => is(r, 'ingress', KIND_SERVER) && r.span.attributes['url.path'] === '/dispatch');
      if (roots.length < N) return undefined;
      const out = roots.map((root) => rows().filter((r) => r.span.traceId === root.span.traceId));
      const complete = out.every((t) => t.some((r) => is(r, 'frontend', KIND_SERVER)) && t.some((r) => is(r, 'customer', KIND_SERVER)) &&
        t.some((r) => is(r, 'driver', KIND_SERVER)) && t.filter((r) => is(r, 'route', KIND_SERVER)).length >= FANOUT);
      return complete ? out : undefined;
    }, `${N} complete traces`, 90_000, 100);
    console.log(`# ${N} traces complete ${Date.now() - t0} ms after the first request`);
    assert.equal(new Set(traces.map((t) => t[0]?.span.traceId)).size, N, 'one trace per request');
    // no exchange span of the app left in a trace of its own
    const traceIds = new Set(traces.map((t) => t[0]?.span.traceId));
    const strays = rows().filter((r) => r.span.kind !== 1 && !traceIds.has(r.span.traceId));
    assert.deepEqual(strays.map((r) => `${r.service} ${r.span.name} ${String(r.span.attributes['strata.stitch'])}`), [], 'no span outside the N traces');
    for (const t of traces) {
      const byId = new Map(t.map((r) => [r.span.spanId, r]));
      const parentOf = (r: Row) => byId.get(r.span.parentSpanId ?? '');
      const one = (app: string, kind: number) => {
        const xs = t.filter((r) => is(r, app, kind));
        assert.equal(xs.length, 1, `${app} kind ${kind}: ${xs.length}`);
        return xs[0] as Row;
      };
      const front = one('frontend', KIND_SERVER);
      assert.ok(is(parentOf(front) as Row, 'ingress', KIND_CLIENT), 'frontend SERVER (node-2) under nginx CLIENT (node-1)');
      assert.equal(front.span.attributes['strata.stitch'], 'peer');
      assert.equal(front.span.attributes['strata.stitch.peer'], 'node-1', 'frontend took its trace from the ingress node');
      assert.equal(typeof front.span.attributes['strata.stitch.skew_ms'], 'number');
      const customer = one('customer', KIND_SERVER);
      const cp = parentOf(customer);
      assert.ok(cp && is(cp, 'frontend', KIND_CLIENT) && cp.span.parentSpanId === front.span.spanId, 'customer SERVER (node-3) under a frontend CLIENT (node-2)');
      const driver = one('driver', KIND_SERVER);
      const dp = parentOf(driver);
      assert.ok(dp && is(dp, 'frontend', KIND_CLIENT) && dp.span.parentSpanId === front.span.spanId, 'driver SERVER (node-1) under a frontend CLIENT (node-2)');
      const routes = t.filter((r) => is(r, 'route', KIND_SERVER));
      assert.equal(routes.length, FANOUT);
      for (const r of routes) {
        const p = parentOf(r);
        assert.ok(p && is(p, 'driver', KIND_CLIENT) && p.span.parentSpanId === driver.span.spanId, 'route SERVER (node-2) under a driver CLIENT (node-1)');
      }
    }
    let stitched = 0;
    let waitS = 0;
    for (const n of c.nodes) {
      const m = await metrics(n.name);
      assert.equal(metricValue(m, 'strata_peer_stitch_timeouts_total'), 0, `${n.name}: no stitch timeouts`);
      assert.equal(metricValue(m, 'strata_peer_rejected_auth_total'), 0);
      stitched += metricValue(m, 'strata_peer_stitched_total');
      waitS += metricValue(m, 'strata_peer_stitch_wait_seconds_total');
      console.log(`# ${n.name}: sent ${metricValue(m, 'strata_peer_mappings_sent_total')} received ${metricValue(m, 'strata_peer_mappings_received_total')} ` +
        `stitched ${metricValue(m, 'strata_peer_stitched_total')} held ${metricValue(m, 'strata_peer_held_exchanges_total')} early ${metricValue(m, 'strata_peer_early_mappings_total')} ` +
        `wait ${(metricValue(m, 'strata_peer_stitch_wait_seconds_total') * 1000).toFixed(0)} ms`);
    }
    // per request: frontend, customer, driver, and the route calls (one local trace each on their node)
    assert.equal(stitched, N * (3 + FANOUT));
    console.log(`# mean stitch wait ${(waitS / stitched * 1000).toFixed(0)} ms over ${stitched} local traces`);
  });

  it('a wrong secret is refused and counted; the spans the mapping was for go out as their own trace, marked', async () => {
    // node-3 (customer) restarts with another secret: it refuses node-2's batches, node-2 is refused by it
    await stopAgent(agents.get('node-3') as AgentProc, 'SIGTERM');
    await startNodeAgent('node-3', wrongSecretFile);
    await dispatch(101);
    const customer = await waitFor(() => rows().find((r) => is(r, 'customer', KIND_SERVER) && r.span.attributes['strata.stitch'] === 'timeout'),
      'the customer SERVER span after its timeout', 90_000, 100);
    assert.ok(!customer.span.parentSpanId, 'a root of its own trace');
    await waitFor(async () => metricValue(await metrics('node-3'), 'strata_peer_rejected_auth_total') > 0, 'node-3 counts the refused batches', 30_000, 100);
    assert.ok(metricValue(await metrics('node-3'), 'strata_peer_stitch_timeouts_total') >= 1);
    await waitFor(async () => metricValue(await metrics('node-2'), 'strata_peer_mappings_dropped_total', 'stage="send_error"') > 0, 'node-2 counts its refused mappings', 30_000, 100);
  });

  it('a peer that is down costs a counted timeout; the waiting spans still export as their own trace', async () => {
    // node-1's agent (nginx) goes away: frontend on node-2 waits for a mapping that never comes
    await stopAgent(agents.get('node-1') as AgentProc, 'SIGKILL');
    agents.delete('node-1');
    const before = metricValue(await metrics('node-2'), 'strata_peer_stitch_timeouts_total');
    await dispatch(202);
    const front = await waitFor(() => rows().find((r) => is(r, 'frontend', KIND_SERVER) && r.span.attributes['strata.stitch'] === 'timeout'),
      'the frontend SERVER span after its timeout', 90_000, 100);
    assert.ok(!front.span.parentSpanId, 'a root of its own trace');
    // its own calls are in its trace
    await waitFor(() => rows().filter((r) => r.span.traceId === front.span.traceId && is(r, 'frontend', KIND_CLIENT)).length >= 2, 'frontend CLIENT spans in that trace', 30_000, 100);
    const m = await metrics('node-2');
    assert.ok(metricValue(m, 'strata_peer_stitch_timeouts_total') > before);
    // node-2 publishes its driver call (a Service VIP: every peer) to node-1 too, which is down
    await waitFor(async () => metricValue(await metrics('node-2'), 'strata_peer_mappings_dropped_total', 'stage="send_error"') > 0, 'node-2 counts the undeliverable mappings', 30_000, 100);
  });

  it('sampling is decided once per trace: at ratio 0.5 a request is kept on every node or on none', async () => {
    for (const a of agents.values()) await stopAgent(a, 'SIGTERM');
    agents.clear();
    for (const n of c.nodes) await startNodeAgent(n.name, secretFile, ['--set', 'sampling.ratio=0.5']);
    receiver.requests.length = 0;
    const N = 12;
    for (let i = 0; i < N; i++) await dispatch([101, 202, 303, 404][i % 4] as number);
    // every request is decided on every node: kept, or sampled out with its mapping's flag
    const decided = async () => {
      let n = 0;
      for (const node of c.nodes) {
        const m = await metrics(node.name);
        n += metricValue(m, 'strata_sampling_traces_kept_total') + metricValue(m, 'strata_sampling_traces_dropped_total');
      }
      return n;
    };
    // local traces per request: nginx (node-1), frontend (node-2), customer (node-3), driver (node-1), 3 routes (node-2)
    await waitFor(async () => (await decided()) >= N * (4 + FANOUT), 'every local trace decided', 90_000, 200);
    const kept = new Set<string>();
    const keptDecisions = async () => {
      let n = 0;
      for (const node of c.nodes) n += metricValue(await metrics(node.name), 'strata_sampling_traces_kept_total');
      return n;
    };
    // the exports of what was kept may still be on their way: wait for all of it
    const keptLocal = await keptDecisions();
    await waitFor(() => {
      kept.clear();
      for (const r of rows()) if (is(r, 'ingress', KIND_SERVER) && r.span.attributes['url.path'] === '/dispatch') kept.add(r.span.traceId);
      return rows().filter((r) => r.span.kind === KIND_SERVER && kept.has(r.span.traceId)).length >= keptLocal;
    }, 'the kept traces exported', 60_000, 100);
    // the kept ones whole, the others nowhere (binomial: all 12 kept or all dropped has p = 2^-11)
    assert.ok(kept.size > 0 && kept.size < N, `kept ${kept.size} of ${N}`);
    assert.equal(keptLocal, kept.size * (4 + FANOUT), 'every node kept the same requests');
    const strays = rows().filter((r) => r.span.kind !== 1 && !kept.has(r.span.traceId));
    assert.deepEqual(strays.map((r) => `${r.service} ${r.span.name}`), [], 'no span of a dropped request on any node');
    for (const id of kept) {
      const t = rows().filter((r) => r.span.traceId === id);
      for (const app of ['frontend', 'customer', 'driver']) assert.equal(t.filter((r) => is(r, app, KIND_SERVER)).length, 1, `${app} in kept trace ${id}`);
      assert.equal(t.filter((r) => is(r, 'route', KIND_SERVER)).length, FANOUT);
    }
    console.log(`# ratio 0.5: ${kept.size} of ${N} requests kept, each on all three nodes`);
  });
});
