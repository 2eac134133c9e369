// Cross-node stitching's peers from a real kube-apiserver (stitch.peersFrom=kubernetes): the
// agent (a child process, real BPF) authenticates as the strata ServiceAccount bound to
// manifests/base's ClusterRole and follows the Node objects: each Node with an IPv4 pod CIDR and
// InternalIP is a peer, others are counted as unusable; a Node added, changed or deleted reaches
// the peer list while the agent runs; with the API server down the last list stays and the
// failures are counted; back, it follows again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { type ApiCluster, missingForCluster, serviceAccountIdentity, startApiServer } from '../../lab/k8s/cluster.ts';
import { type AgentProc, metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { freePort } from '../helpers/ports.ts';

const why = missingPrerequisites() ?? missingForCluster('apiserver');
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const skip = why ?? false;

const MANIFESTS = fileURLToPath(new URL('../../manifests/base/', import.meta.url));
const AGENT = 'strata-agent';
const prefix = `skp${Math.random().toString(36).slice(2, 6)}`;


const node = (name: string, podCIDR: string | undefined) => ({
  apiVersion: 'v1', kind: 'Node', metadata: { name },
  spec: podCIDR ? { podCIDR, podCIDRs: [podCIDR] } : {},
});

describe('stitch peers from the API server\'s Nodes', { skip }, () => {
  let c: ApiCluster;
  let agent: AgentProc | undefined;
  let dir = '';
  let port = 0;
  const metrics = async () => (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text();
  const gauge = async (name: string) => metricValue(await metrics(), name);

  async function addNode(name: string, podCIDR: string | undefined, ip: string | undefined): Promise<void> {
    const r = await c.api('POST', '/api/v1/nodes', node(name, podCIDR));
    assert.equal(r.status, 201, r.body);
    if (!ip) return;
    // the address is status, written by the kubelet
    const s = await c.api('PATCH', `/api/v1/nodes/${name}/status`, { status: { addresses: [{ type: 'Hostname', address: name }, { type: 'InternalIP', address: ip }] } });
    assert.equal(s.status, 200, s.body);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skp-'));
    c = await startApiServer({ identities: [serviceAccountIdentity('strata', 'strata', AGENT)] });
    for (const f of ['namespace.yaml', 'serviceaccount.yaml', 'clusterrole.yaml', 'clusterrolebinding.yaml']) await c.kubectl(['apply', '-f', `${MANIFESTS}${f}`]);
    await addNode(`${prefix}-1`, '10.81.1.0/24', '127.0.0.1');
    await addNode(`${prefix}-2`, '10.81.2.0/24', '127.0.0.2');
    await addNode(`${prefix}-3`, '10.81.3.0/24', '127.0.0.3');
    writeFileSync(join(dir, 'secret'), 'correct-horse-battery-staple-0123\n');
    port = await freePort();
  });

  after(async () => {
    if (agent) await stopAgent(agent, 'SIGKILL');
    const problems = c ? await c.stop() : [];
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(problems, [], 'the API server cleaned up');
  });

  test('every other Node with a pod CIDR and an InternalIP is a peer; Nodes come, change and go while the agent runs', async (t) => {
    agent = await startAgent(['--node-name', `${prefix}-1`, '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--traces-dir', join(dir, 'traces'),
      '--set', 'discovery.source=none',
      '--set', 'stitch.peersFrom=kubernetes', '--set', `discovery.kubeconfig=${c.kubeconfigs[AGENT]}`,
      '--set', `stitch.secretFile=${join(dir, 'secret')}`, '--set', `stitch.port=${port}`, '--set', 'stitch.host=127.0.0.1',
      '--set', 'discovery.backoff.initialMs=200', '--set', 'discovery.backoff.maxMs=1000'], 30_000);
    await waitFor(async () => (await gauge('strata_peer_nodes')) === 2, 'the two other nodes as peers', 20_000, 100);
    assert.match(agent.stderr(), /stitch: 3 nodes from the API server/);
    assert.equal(await gauge('strata_peer_nodes_unusable'), 0);

    // a Node without a pod CIDR yet (the node IPAM has not run): not a peer, counted
    await addNode(`${prefix}-4`, undefined, '127.0.0.4');
    await waitFor(async () => (await gauge('strata_peer_nodes_unusable')) === 1, 'the node without a pod CIDR counted', 20_000, 100);
    assert.equal(await gauge('strata_peer_nodes'), 2);
    // a new usable Node joins
    await addNode(`${prefix}-5`, '10.81.5.0/24', '127.0.0.5');
    await waitFor(async () => (await gauge('strata_peer_nodes')) === 3, 'the new node a peer', 20_000, 100);
    // one leaves
    assert.equal((await c.api('DELETE', `/api/v1/nodes/${prefix}-2`)).status, 200);
    await waitFor(async () => (await gauge('strata_peer_nodes')) === 2, 'the deleted node gone', 20_000, 100);
    assert.match(agent.stderr(), /stitch: 3 nodes from the API server \(1 without an IPv4 pod CIDR or InternalIP left out\)/);

    // the API server goes: the last peers stay, failures counted; back: followed again
    await c.stopApiServer();
    await waitFor(async () => (await gauge('strata_peer_node_list_errors_total')) > 0, 'a failed list/watch counted', 60_000, 200);
    assert.equal(await gauge('strata_peer_nodes'), 2, 'the last peers kept');
    assert.match(agent.stderr(), /stitch: listing the Nodes failed .*keeping the last peers, retrying/);
    await c.startApiServer();
    await addNode(`${prefix}-6`, '10.81.6.0/24', '127.0.0.6');
    await waitFor(async () => (await gauge('strata_peer_nodes')) === 3, 'followed again after the API server returned', 60_000, 200);
    t.diagnostic(`node list errors while the API server was down: ${await gauge('strata_peer_node_list_errors_total')}`);
  });

  test('stitch.peersFrom=kubernetes with stitch.peersFile set, or without a secret: a configuration error', async () => {
    if (agent) await stopAgent(agent);
    agent = undefined;
    const common = ['--node-name', `${prefix}-1`, '--metrics-port', '0', '--traces-dir', join(dir, 'traces'), '--set', 'discovery.source=none', '--set', 'stitch.peersFrom=kubernetes'];
    await assert.rejects(startAgent([...common, '--set', `stitch.secretFile=${join(dir, 'secret')}`, '--set', `stitch.peersFile=${join(dir, 'peers.json')}`]), /STRATA_ERR_CONFIG.*stitch.peersFile is set and stitch.peersFrom is kubernetes/s);
    await assert.rejects(startAgent(common), /STRATA_ERR_CONFIG.*stitch.secretFile is not set/s);
  });
});
