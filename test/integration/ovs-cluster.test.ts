// The ovs family in the cluster lab: node-2's bridge is Open vSwitch (userspace datapath, started by
// the lab), the ingress NGINX on node-1 sends /dispatch to the frontend pod on node-2 over its pod
// IP (VXLAN, then routed into the bridge's internal port cni0 and switched to the pod's veth). The
// agent of node-2 (its pods file, its netns, TC on its uplink and on cni0) puts an `ovs` hop
// span into the frontend SERVER span's tree, between the hop into cni0 and the hop out of the
// pod's veth, naming the bridge and both ports. Needs root, nginx, nftables, OVS; under CI=true
// their absence fails the test, elsewhere it skips.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Cluster, clientOf, clusterDown, clusterPrerequisites, clusterUp } from '../../lab/cluster/cluster.ts';
import { ovsMissing } from '../../lab/cluster/ovs.ts';
import { loadTopology } from '../../lab/cluster/topology.ts';
import { readPodsFile } from '../../agent/src/k8s/pods-file.ts';
import { curlFromClient } from '../../lab/lab.ts';
import { type AgentProc, testAgentCommand, metricValue, spawnAgent, stopAgent } from '../helpers/agent-proc.ts';
import { KIND_INTERNAL, KIND_SERVER, type Row } from '../helpers/lab-tracing.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

const ci = process.env.CI === 'true';
const PREFIX = 'sovc';
const TOPOLOGY = `apiVersion: strata.lab/v1alpha1
kind: Cluster
name: ovs
nodes:
  - { name: node-1 }
  - { name: node-2, bridge: ovs }
ingress: { node: node-1, hostPort: 80, rules: [ { service: hotrod/frontend } ] }
pods:
  - { namespace: hotrod, app: frontend, node: node-2, runtime: node }
  - { namespace: hotrod, app: customer, node: node-2, runtime: node }
  - { namespace: hotrod, app: driver, node: node-1, runtime: node }
  - { namespace: hotrod, app: route, node: node-1, runtime: node }
telemetry: { otlpEndpoint: "" }
faults: []
`;

const dir = mkdtempSync(join(tmpdir(), 'strata-ovsc-'));
function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces, BPF)';
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, TOPOLOGY);
  const missing = [...clusterPrerequisites(loadTopology(file)), ...(ovsMissing() ? [ovsMissing() as string] : [])];
  return missing.length ? missing.join('; ') : undefined;
}
const missing = missingPrerequisite();
const skip = missing && !ci ? `skipped: ${missing}` : false;

describe('ovs in the cluster lab: the OVS node puts an ovs hop into the request tree', { skip, timeout: 600_000 }, () => {
  const receiver = new OtlpReceiver();
  let c: Cluster;
  let agent: AgentProc | undefined;
  const rows = (): Row[] => receiver.requests.flatMap((r) => flattenSpans(r.decoded)).map((x) => ({ span: x.span, service: String(x.resource['service.name']) }));

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    await receiver.start();
    c = await clusterUp({ prefix: PREFIX, topology: join(dir, 'topology.yaml') });
    const n = c.nodes.find((x) => x.name === 'node-2');
    assert.ok(n && n.bridge.kind === 'ovs', `node-2 on OVS: ${n?.bridge.note ?? ''}`);
    agent = await spawnAgent(testAgentCommand(['--pods-file', n.podsFile, '--node-name', n.name, '--node-netns', n.netnsPath,
      '--iface', n.uplink, '--iface', n.bridge.name, '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1',
      '--set', 'export.queue.delayMs=100']), 90_000, 64 * 1024);
    await waitFor(async () => metricValue(await (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text(), 'strata_probe_attached', 'probe="ovs"') === 1,
      'ovs probe attached to node-2\'s ovs-vswitchd', 30_000);
  });

  after(async () => {
    if (agent) await stopAgent(agent, 'SIGTERM').catch(() => undefined);
    await clusterDown(PREFIX);
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the frontend SERVER span on the OVS node: an ovs hop from cni0 to its veth, between the node and veth hops', async (t) => {
    const frontend = c.pods.find((p) => p.app === 'frontend');
    assert.ok(frontend);
    const veth = readPodsFile(c.nodes[1]?.podsFile as string).find((p) => p.name === frontend.name)?.hostVeth;
    assert.ok(veth, 'the frontend pod\'s host veth');
    for (const customer of [101, 202]) {
      const r = await curlFromClient(clientOf(c), `${c.ingress.url}/dispatch?customer=${customer}`);
      assert.equal(r.status, 200, r.body);
    }
    const found = await waitFor(() => {
      const servers = rows().filter((r) => r.span.kind === KIND_SERVER && r.service.includes('frontend') && r.span.attributes['url.path'] === '/dispatch');
      for (const s of servers) {
        const hops = rows().filter((r) => r.span.kind === KIND_INTERNAL && r.span.parentSpanId === s.span.spanId && r.span.attributes['strata.direction'] === 'request')
          .sort((a, b) => Number(a.span.startTimeUnixNano - b.span.startTimeUnixNano));
        const i = hops.findIndex((h) => h.span.attributes['strata.layer'] === 'ovs');
        if (i >= 0) return { s, hops, i };
      }
      return undefined;
    }, 'a frontend /dispatch SERVER span with an ovs hop', 60_000);
    const h = found.hops[found.i] as Row;
    const a = h.span.attributes;
    const chain = found.hops.map((x) => `${x.span.attributes['strata.layer']} ${x.span.attributes['strata.from']} -> ${x.span.attributes['strata.to']}`).join('; ');
    t.diagnostic(`request hops of the frontend SERVER span: ${chain}`);
    assert.equal(a['strata.ovs.bridge'], 'cni0');
    assert.equal(a['strata.ovs.in_port'], 'cni0');
    assert.equal(a['strata.ovs.out_port'], veth);
    assert.equal(typeof a['strata.ovs.upcall'], 'boolean');
    assert.equal(h.service, 'net:ovs node-2');
    // before it: the packet routed into the bridge's internal port (time in its qdisc, layer node)
    const prev = found.hops[found.i - 1];
    assert.ok(prev, chain);
    assert.equal(prev.span.attributes['strata.to'], a['strata.from'], 'the ovs hop starts where the hop into cni0 ends');
    assert.ok(prev.span.endTimeUnixNano <= h.span.startTimeUnixNano);
    const next = found.hops[found.i + 1];
    assert.ok(next, `a hop after the ovs hop: ${found.hops.map((x) => x.span.attributes['strata.layer']).join(',')}`);
    assert.equal(next.span.attributes['strata.from'], a['strata.to'], 'the next hop leaves from the ovs hop\'s out port');
    assert.ok(h.span.endTimeUnixNano <= next.span.startTimeUnixNano);
    assert.ok(found.s.span.startTimeUnixNano <= h.span.startTimeUnixNano && h.span.endTimeUnixNano <= found.s.span.endTimeUnixNano, 'inside the SERVER span');
  });
});
