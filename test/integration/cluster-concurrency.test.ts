// Causality under concurrency, end to end (issue 10 item 7's must-show): 50 dispatch requests over
// 10 keep-alive connections, uninstrumented (no trace header anywhere), through a 4-node cluster
// lab with one stitching agent per node, once through the event-loop (Node) HotROD and once through
// the thread-per-request (Python) one, both in the same lab behind one NGINX ingress (by Host).
// No span of any trace may belong to another request: every request carries its own id (`req=`,
// which NGINX and the frontend see in the query) and its customer, which the frontend's calls,
// customer, driver and route requests repeat (id, location). Ambiguous calls are counted
// (strata_correlator_ambiguous_causes_total); the share of calls linked is printed and asserted.
// Needs root, nginx, nftables, node, python3, curl; under CI=true their absence fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Cluster, clientOf, clusterDown, clusterPrerequisites, clusterUp } from '../../lab/cluster/cluster.ts';
import { loadTopology } from '../../lab/cluster/topology.ts';
import { inNetns } from '../../lab/exec.ts';
import { type AgentProc, testAgentCommand, metricValue, spawnAgent, stopAgent } from '../helpers/agent-proc.ts';
import { KIND_CLIENT, KIND_SERVER } from '../helpers/lab-tracing.ts';
import { type DecodedSpan, flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { freePort } from '../helpers/ports.ts';

const ci = process.env.CI === 'true';
const PREFIX = 'scz';
const FANOUT = 3;
const CONNS = 10;
const PER_CONN = 5;
const RUNTIMES = [{ name: 'node', ns: 'hz-node', host: 'node.hotrod.lab' }, { name: 'python', ns: 'hz-py', host: 'py.hotrod.lab' }] as const;
// every call crosses nodes: nginx (node-1) -> frontend (node-2) -> customer (node-3), driver (node-1) -> route (node-4)
const NODE_OF: Record<string, string> = { ingress: 'node-1', frontend: 'node-2', customer: 'node-3', driver: 'node-1', route: 'node-4' };
const TOPOLOGY = `apiVersion: strata.lab/v1alpha1
kind: Cluster
name: concurrency
nodes:
  - { name: node-1 }
  - { name: node-2 }
  - { name: node-3 }
  - { name: node-4 }
ingress: { node: node-1, hostPort: 80, rules: [ ${RUNTIMES.map((r) => `{ host: ${r.host}, service: ${r.ns}/frontend }`).join(', ')} ] }
pods:
${RUNTIMES.map((r) => `  - { namespace: ${r.ns}, app: frontend, node: node-2, runtime: ${r.name} }
  - { namespace: ${r.ns}, app: customer, node: node-3, runtime: ${r.name} }
  - { namespace: ${r.ns}, app: driver, node: node-1, runtime: ${r.name}, fanout: ${FANOUT} }
  - { namespace: ${r.ns}, app: route, node: node-4, runtime: ${r.name} }`).join('\n')}
telemetry: { otlpEndpoint: "" }
faults: []
`;
// a local trace waits for its caller's chain of agents (each: the call ends, grace, a tick, a batch);
// under this load on two cores some waited over 5 s (the stitch test's 4 s lost half the routes)
const HOLD_MS = 20_000;
const DATA = JSON.parse(readFileSync(new URL('../../lab/apps/hotrod-data.json', import.meta.url), 'utf8')) as { customers: Record<string, { location: string }> };
const CUSTOMERS = Object.keys(DATA.customers);

function missingPrerequisite(dir: string): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces, BPF)';
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, TOPOLOGY);
  const missing = clusterPrerequisites(loadTopology(file));
  return missing.length ? missing.join('; ') : undefined;
}


interface Row {
  span: DecodedSpan;
  service: string;
  ns: string;
  /** the exporting agent's node (resource k8s.node.name) */
  node: string;
}

const dir = mkdtempSync(join(tmpdir(), 'strata-scz-'));
const missing = missingPrerequisite(dir);
const skip = missing && !ci ? `skipped: ${missing}` : false;

describe('cluster concurrency: 50 requests over 10 keep-alive connections, no span in another request\'s trace', { skip, timeout: 900_000 }, () => {
  const receiver = new OtlpReceiver();
  let c: Cluster;
  const agents = new Map<string, AgentProc>();
  const secretFile = join(dir, 'secret');

  const rows = (): Row[] => receiver.requests.flatMap((r) => flattenSpans(r.decoded))
    .map((x) => ({ span: x.span, service: String(x.resource['service.name']), ns: String(x.resource['k8s.namespace.name'] ?? ''), node: String(x.resource['k8s.node.name'] ?? '') }));
  const attr = (r: Row, k: string) => String(r.span.attributes[k] ?? '');
  const query = (r: Row) => new URLSearchParams(attr(r, 'url.query'));
  const metrics = async () => {
    const out: Record<string, number> = {};
    for (const [node, a] of agents) {
      const m = await (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();
      out[`${node} linked`] = metricValue(m, 'strata_correlator_linked_causes_total');
      out[`${node} ambiguous`] = metricValue(m, 'strata_correlator_ambiguous_causes_total');
    }
    return out;
  };
  const sum = (m: Record<string, number>, what: string) => Object.entries(m).filter(([k]) => k.endsWith(what)).reduce((s, [, v]) => s + v, 0);

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    await receiver.start();
    c = await clusterUp({ prefix: PREFIX, topology: join(dir, 'topology.yaml') });
    const ports = new Map<string, number>();
    const peers = [];
    for (const n of c.nodes) {
      ports.set(n.name, await freePort());
      peers.push({ name: n.name, podCidr: n.podCidr, address: `http://127.0.0.1:${ports.get(n.name)}` });
    }
    const peersFile = join(dir, 'peers.json');
    writeFileSync(peersFile, JSON.stringify(peers));
    writeFileSync(secretFile, 'scz-concurrency-secret-0123456789\n');
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

  for (const rt of RUNTIMES) {
    it(`${rt.name} runtime: ${CONNS * PER_CONN} requests over ${CONNS} keep-alive connections, each its own complete trace`, async () => {
      const before = await metrics();
      const sent = new Map<string, string>(); // request id -> customer
      const t0 = Date.now();
      // CONNS curl processes at once, each sending PER_CONN requests one after the other on one connection
      const outs = await Promise.all(Array.from({ length: CONNS }, (_, k) => {
        const args = ['-sS', '--max-time', '60', '-H', `Host: ${rt.host}`, '-w', '%{http_code} %{num_connects}\n'];
        for (let j = 0; j < PER_CONN; j++) {
          const id = `${rt.name}-${k}-${j}`;
          const customer = CUSTOMERS[(k + j) % CUSTOMERS.length] as string;
          sent.set(id, customer);
          args.push('-o', '/dev/null', `${c.ingress.url}/dispatch?customer=${customer}&req=${id}`);
        }
        return inNetns(clientOf(c).clientNetns, 'curl', args);
      }));
      const lines = outs.flatMap((o) => o.trim().split('\n'));
      assert.equal(lines.length, CONNS * PER_CONN);
      assert.ok(lines.every((l) => l.startsWith('200 ')), `every answer 200: ${lines.join(', ')}`);
      const connects = lines.reduce((s, l) => s + Number(l.split(' ')[1]), 0);
      assert.equal(connects, CONNS, 'one connection per curl, kept alive for its requests');
      console.log(`# ${rt.name}: ${sent.size} requests answered in ${Date.now() - t0} ms`);

      const mine = () => rows().filter((r) => r.ns === rt.ns || (r.service.includes('ingress') && (query(r).get('req') ?? '').startsWith(`${rt.name}-`)));
      // every request's root, then its trace complete (or the wait ends: what is missing is reported below)
      const roots = () => mine().filter((r) => r.service.includes('ingress') && r.span.kind === KIND_SERVER && r.span.attributes['url.path'] === '/dispatch');
      const complete = (tid: string) => {
        const t = mine().filter((r) => r.span.traceId === tid);
        const n = (app: string) => t.filter((r) => r.span.kind === KIND_SERVER && r.service.includes(app)).length;
        return n('frontend') >= 1 && n('customer') >= 1 && n('driver') >= 1 && n('route') >= FANOUT;
      };
      await waitFor(() => roots().length >= sent.size && roots().every((r) => complete(r.span.traceId)), `${sent.size} complete traces`, 120_000, 200)
        .catch(() => undefined);
      // then the exports settle: nothing new for two export periods and a tick
      let last = -1;
      await waitFor(() => {
        const n = mine().length;
        const still = n === last;
        last = n;
        return still;
      }, 'exports settled', 60_000, 1500);
      const all = mine();
      const after = await metrics();
      const linked = sum(after, 'linked') - sum(before, 'linked');
      const ambiguous = sum(after, 'ambiguous') - sum(before, 'ambiguous');

      // 1. no cross-linking: in every trace, every span that names a request names this trace's request
      const byTrace = new Map<string, Row[]>();
      for (const r of all) byTrace.set(r.span.traceId, [...(byTrace.get(r.span.traceId) ?? []), r]);
      let crossLinked = 0;
      const identity = (r: Row): { req?: string; customer?: string } => {
        const q = query(r);
        const path = attr(r, 'url.path');
        if (path === '/dispatch') return { req: q.get('req') ?? undefined, customer: q.get('customer') ?? undefined };
        if (path === '/customer') return { customer: q.get('id') ?? undefined };
        const loc = path === '/drivers' ? q.get('location') : path === '/route' ? q.get('to') : null;
        const cust = loc ? CUSTOMERS.find((id) => DATA.customers[id]?.location === loc) : undefined;
        return { customer: cust };
      };
      for (const [tid, t] of byTrace) {
        const reqs = new Set(t.map((r) => identity(r).req).filter(Boolean));
        const custs = new Set(t.map((r) => identity(r).customer).filter(Boolean));
        if (reqs.size > 1 || custs.size > 1) {
          crossLinked++;
          console.log(`# CROSS-LINKED trace ${tid}: requests ${[...reqs].join(' ')} customers ${[...custs].join(' ')}`);
        }
        for (const id of reqs) assert.ok(![...custs].some((x) => x !== sent.get(id as string)), `trace ${tid}: request ${id} is for customer ${sent.get(id as string)}`);
      }
      assert.equal(crossLinked, 0, 'no trace holds spans of two requests');

      // 2. each request: one trace, every expected span exactly once with the right parent
      let whole = 0;
      const broken: string[] = [];
      for (const [id] of sent) {
        const root = roots().find((r) => query(r).get('req') === id);
        if (!root) {
          broken.push(`${id}: no ingress SERVER span`);
          continue;
        }
        const t = byTrace.get(root.span.traceId) ?? [];
        const byId = new Map(t.map((r) => [r.span.spanId, r]));
        const parent = (r: Row | undefined) => (r ? byId.get(r.span.parentSpanId ?? '') : undefined);
        const of = (app: string, kind: number) => t.filter((r) => r.span.kind === kind && r.service.includes(app));
        const why: string[] = [];
        const one = (app: string) => {
          const xs = of(app, KIND_SERVER);
          if (xs.length !== 1) why.push(`${app} SERVER x${xs.length}`);
          return xs[0];
        };
        const front = one('frontend');
        const customer = one('customer');
        const driver = one('driver');
        const routes = of('route', KIND_SERVER);
        if (routes.length !== FANOUT) why.push(`route SERVER x${routes.length}`);
        const under = (child: Row | undefined, app: string, server: Row | undefined) => {
          const p = parent(child);
          if (child && !(p && p.span.kind === KIND_CLIENT && p.service.includes(app) && (!server || p.span.parentSpanId === server.span.spanId))) {
            why.push(`${child.service} not under a ${app} CLIENT of this request`);
          }
        };
        under(front, 'ingress', root);
        under(customer, 'frontend', front);
        under(driver, 'frontend', front);
        for (const r of routes) under(r, 'driver', driver);
        if (front && query(front).get('req') !== id) why.push('frontend SERVER of another request');
        // each node's spans come from that node's agent
        for (const r of t) {
          const app = Object.keys(NODE_OF).find((a) => r.service.includes(a));
          if (app && (r.span.kind === KIND_SERVER || r.span.kind === KIND_CLIENT) && r.node !== NODE_OF[app]) why.push(`${r.service} exported from ${r.node}, not ${NODE_OF[app]}`);
        }
        if (why.length) broken.push(`${id}: ${why.join('; ')}`);
        else whole++;
      }
      // 3. the calls (nginx's upstream call, the frontend's two, the driver's fan-out): each CLIENT span says what linked it
      const calls = all.filter((r) => r.span.kind === KIND_CLIENT && ['ingress', 'frontend', 'driver'].some((a) => r.service.includes(a)));
      const rules = new Map<string, number>();
      for (const r of calls) rules.set(attr(r, 'strata.cause'), (rules.get(attr(r, 'strata.cause')) ?? 0) + 1);
      const expectedCalls = sent.size * (3 + FANOUT);
      const linkedSpans = calls.filter((r) => !['ambiguous', 'none', ''].includes(attr(r, 'strata.cause'))).length;
      console.log(`# ${rt.name}: ${whole}/${sent.size} requests one complete trace; calls ${calls.length}/${expectedCalls} exported, ` +
        `by strata.cause ${JSON.stringify(Object.fromEntries(rules))}; share of calls linked ${(linkedSpans / expectedCalls * 100).toFixed(1)}%`);
      console.log(`# ${rt.name}: agents counted ${linked} calls linked, ${ambiguous} ambiguous ` +
        `(strata_correlator_ambiguous_causes_total): share linked ${(linked / Math.max(1, linked + ambiguous) * 100).toFixed(1)}%`);
      for (const b of broken.slice(0, 5)) console.log(`# incomplete: ${b}`);
      // where the missing spans went: their own trace (a stitch that timed out), or not exported
      const stitch = new Map<string, number>();
      for (const r of all) if (r.span.kind === KIND_SERVER) stitch.set(`${r.service}:${attr(r, 'strata.stitch') || '-'}:${r.span.parentSpanId ? 'child' : 'root'}`, (stitch.get(`${r.service}:${attr(r, 'strata.stitch') || '-'}:${r.span.parentSpanId ? 'child' : 'root'}`) ?? 0) + 1);
      console.log(`# ${rt.name}: SERVER spans by service:stitch:parent ${JSON.stringify(Object.fromEntries(stitch))}`);
      for (const [node, a] of agents) {
        const m = await (await fetch(`http://127.0.0.1:${a.metricsPort}/metrics`)).text();
        const stitched = metricValue(m, 'strata_peer_stitched_total');
        console.log(`# ${node} (cumulative): stitched ${stitched} timeouts ${metricValue(m, 'strata_peer_stitch_timeouts_total')} ` +
          `mean wait ${(metricValue(m, 'strata_peer_stitch_wait_seconds_total') / Math.max(1, stitched) * 1000).toFixed(0)} ms ` +
          `sent ${metricValue(m, 'strata_peer_mappings_sent_total')} received ${metricValue(m, 'strata_peer_mappings_received_total')} ` +
          `dropped: no_peer ${metricValue(m, 'strata_peer_mappings_dropped_total', 'no_peer')} send_error ${metricValue(m, 'strata_peer_mappings_dropped_total', 'send_error')} ` +
          `queue_full ${metricValue(m, 'strata_peer_mappings_dropped_total', 'queue_full')}`);
      }
      assert.equal(calls.length, expectedCalls, 'every call exported once');
      // every call either linked or counted as ambiguous, never anything else
      assert.equal(linkedSpans + (rules.get('ambiguous') ?? 0), expectedCalls);
      assert.equal(linked + ambiguous, expectedCalls, 'the agents counted every call as linked or ambiguous');
      assert.equal(ambiguous, rules.get('ambiguous') ?? 0, 'every ambiguous call counted');
      // the goal is all; what stays ambiguous must be rare, and each such request is the only one broken
      assert.ok(linkedSpans / expectedCalls >= 0.95, `share of calls linked ${linkedSpans}/${expectedCalls}`);
      assert.ok(whole >= sent.size - ambiguous, `${whole} of ${sent.size} requests one complete trace (${ambiguous} ambiguous calls)`);
    });
  }
});
