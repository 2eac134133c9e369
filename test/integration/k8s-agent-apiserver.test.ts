// The whole agent (a child process, real BPF) with discovery.source=kubernetes against a real
// kube-apiserver, on the lab: the lab's pods are API objects of the lab's node (their UIDs name
// the lab's kubelet-style cgroups; their status carries the lab's container IDs and IPs), the
// agent authenticates as the strata ServiceAccount bound to manifests/base's ClusterRole.
//   - API server down when the agent starts: it becomes ready, marks metadata stale
//     (strata_discovery_metadata_stale 1) and traces the pods /proc shows (uid only, service.name
//     the program); once the API server answers: stale 0, spans named by it.
//   - API server stopped mid-run: stale 1 while down, spans keep coming with the names last known;
//     back: stale 0, the informer fresh again.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { type ApiCluster, missingForCluster, serviceAccountIdentity, startApiServer } from '../../lab/k8s/cluster.ts';
import { labCgroupParent } from '../../lab/cgroups.ts';
import { type Lab, curlFromClient, labDown, labUp } from '../../lab/lab.ts';
import { type AgentProc, metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { type AnyValue, type DecodedSpan, flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

const why = missingPrerequisites({ nginx: true }) ?? missingForCluster('apiserver');
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const skip = why ?? false;

const MANIFESTS = fileURLToPath(new URL('../../manifests/base/', import.meta.url));
const AGENT = 'strata-agent';
const KIND_SERVER = 2;
const prefix = `sdi${Math.random().toString(36).slice(2, 6)}`;
const nodeName = `${prefix}-node1`;

interface Row {
  span: DecodedSpan;
  resource: Record<string, AnyValue>;
}

describe('the agent with the API server as discovery, on the lab', { skip }, () => {
  const receiver = new OtlpReceiver();
  let c: ApiCluster;
  let lab: Lab;
  let agent: AgentProc | undefined;
  let dir = '';
  const rows = (): Row[] => receiver.requests.flatMap((r) => flattenSpans(r.decoded));
  const metrics = async () => (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text();
  const stale = async () => metricValue(await metrics(), 'strata_discovery_metadata_stale');

  /** a request through NGINX to the app; its NGINX and app SERVER spans once exported */
  async function request(path: string): Promise<{ nginx: Row; app: Row }> {
    assert.equal((await curlFromClient(lab, `${lab.nginxUrl}${path}`)).status, 200);
    return waitFor(() => {
      const server = rows().filter((x) => x.span.kind === KIND_SERVER && x.span.attributes['url.path'] === path);
      const nginx = server.find((x) => x.resource['k8s.pod.uid'] === lab.pods.ingress.uid);
      const app = server.find((x) => x.resource['k8s.pod.uid'] === lab.pods.app.uid);
      return nginx && app ? { nginx, app } : undefined;
    }, `the spans of ${path}`, 20_000);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sdi-k8s-agent-'));
    await receiver.start();
    c = await startApiServer({ identities: [serviceAccountIdentity('strata', 'strata', AGENT)] });
    for (const f of ['namespace.yaml', 'serviceaccount.yaml', 'clusterrole.yaml', 'clusterrolebinding.yaml']) await c.kubectl(['apply', '-f', `${MANIFESTS}${f}`]);
    const post = async (path: string, body: object) => {
      const r = await c.api('POST', path, body);
      assert.equal(r.status, 201, `POST ${path}: ${r.body}`);
      return (JSON.parse(r.body) as { metadata: { uid: string } }).metadata.uid;
    };
    await post('/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: nodeName } });
    await post('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ingress-nginx' } });
    const template = { metadata: { labels: { app: 'x' } }, spec: { containers: [{ name: 'c', image: 'sdi.local/x:1' }] } };
    const dep = await post('/apis/apps/v1/namespaces/ingress-nginx/deployments', {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'ingress-nginx-controller' }, spec: { selector: { matchLabels: { app: 'x' } }, template },
    });
    const rs = await post('/apis/apps/v1/namespaces/ingress-nginx/replicasets', {
      apiVersion: 'apps/v1', kind: 'ReplicaSet',
      metadata: { name: 'ingress-nginx-controller-5c8d66c76d', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'ingress-nginx-controller', uid: dep, controller: true }] },
      spec: { selector: { matchLabels: { app: 'x' } }, template },
    });
    const ingressUid = await post('/api/v1/namespaces/ingress-nginx/pods', {
      apiVersion: 'v1', kind: 'Pod',
      metadata: {
        name: 'ingress-nginx-controller-5c8d66c76d-fbxk2', labels: { 'app.kubernetes.io/name': 'ingress-nginx', 'pod-template-hash': '5c8d66c76d' },
        ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'ingress-nginx-controller-5c8d66c76d', uid: rs, controller: true }],
      },
      spec: { nodeName, containers: [{ name: 'controller', image: 'sdi.local/nginx:1' }] },
    });
    const appUid = await post('/api/v1/namespaces/default/pods', {
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: 'frontend-0', annotations: { 'resource.opentelemetry.io/service.name': 'frontend-svc' } },
      spec: { nodeName, containers: [{ name: 'frontend', image: 'sdi.local/app:1' }, { name: 'raw10', image: 'sdi.local/app:1' }] },
    });
    lab = await labUp({ prefix, podUids: { ingress: ingressUid, app: appUid } });
    assert.equal(lab.nodeName, nodeName);
    // the status the kubelet would write: IPs and container IDs
    for (const [ns, name, pod] of [['ingress-nginx', 'ingress-nginx-controller-5c8d66c76d-fbxk2', lab.pods.ingress], ['default', 'frontend-0', lab.pods.app]] as const) {
      const r = await c.api('PATCH', `/api/v1/namespaces/${ns}/pods/${name}/status`, {
        status: {
          phase: 'Running', podIP: pod.ip, podIPs: [{ ip: pod.ip }],
          containerStatuses: pod.containers.map((x) => ({ name: x.name, containerID: `containerd://${x.id}`, image: 'i', imageID: '', ready: true, restartCount: 0, state: { running: {} } })),
        },
      });
      assert.equal(r.status, 200, r.body);
    }
  });

  after(async () => {
    if (agent) await stopAgent(agent, 'SIGKILL');
    if (lab) await labDown(prefix);
    const problems = c ? await c.stop() : [];
    await receiver.stop();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(problems, [], 'the API server cleaned up');
  });

  test('API server unreachable at start: ready, stale, tracing what /proc shows; named once it answers', async (t) => {
    await c.stopApiServer();
    const t0 = performance.now();
    agent = await startAgent(['--node-name', nodeName, '--node-netns', `/run/netns/${lab.nodeNetns}`, '--iface', lab.clientVeth,
      '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1', '--set', 'export.queue.delayMs=100',
      '--set', 'discovery.source=kubernetes', '--set', `discovery.kubeconfig=${c.kubeconfigs[AGENT]}`,
      '--set', `discovery.podCgroupParent=${labCgroupParent(prefix)}/`, '--set', 'discovery.startTimeoutMs=1000', '--set', 'discovery.backoff.initialMs=200', '--set', 'discovery.backoff.maxMs=1000']);
    t.diagnostic(`ready ${Math.round(performance.now() - t0)} ms after start with the API server down`);
    assert.match(agent.stderr(), /has not listed this node's pods yet/);
    assert.equal(await stale(), 1);
    // the lab's two pods, from their cgroups (only the lab's: discovery.podCgroupParent, as a node
    // sharing its kernel with others would set it; other labs and tests on this machine run pods too)
    assert.equal(metricValue(await metrics(), 'strata_discovery_pods_unknown'), 2, 'the lab\'s two pods, from their cgroups');
    // traced anyway: the pods by uid, service.name the program
    const dark = await request('/while-down');
    assert.equal(dark.nginx.resource['service.name'], 'nginx');
    assert.equal(dark.nginx.resource['k8s.pod.name'], undefined);
    assert.equal(dark.app.resource['k8s.pod.uid'], lab.pods.app.uid);

    await c.startApiServer();
    const back = performance.now();
    await waitFor(async () => (await stale()) === 0, 'metadata fresh', 30_000);
    t.diagnostic(`stale -> fresh ${Math.round(performance.now() - back)} ms after the API server was ready`);
    const lit = await request('/after-start');
    assert.equal(lit.nginx.resource['service.name'], 'ingress-nginx');
    assert.equal(lit.nginx.resource['k8s.pod.name'], 'ingress-nginx-controller-5c8d66c76d-fbxk2');
    assert.equal(lit.nginx.resource['k8s.namespace.name'], 'ingress-nginx');
    assert.equal(lit.nginx.resource['k8s.container.name'], 'controller');
    assert.equal(lit.nginx.resource['k8s.deployment.name'], 'ingress-nginx-controller');
    assert.equal(lit.nginx.resource['k8s.node.name'], nodeName);
    assert.equal(lit.app.resource['service.name'], 'frontend-svc', 'the annotation, on a connection NGINX opened while the API server was down');
    assert.equal(lit.app.resource['k8s.container.name'], 'frontend');
    const m = await metrics();
    assert.equal(metricValue(m, 'strata_discovery_pods_unknown'), 0);
    assert.equal(metricValue(m, 'strata_discovery_pods_traced'), 2);
  });

  test('API server stopped mid-run: stale while down, spans keep their names; fresh again when it returns', async (t) => {
    await c.stopApiServer();
    const down = performance.now();
    await waitFor(async () => (await stale()) === 1, 'metadata stale', 10_000);
    t.diagnostic(`stale ${Math.round(performance.now() - down)} ms after the API server stopped`);
    const during = await request('/mid-outage');
    assert.equal(during.nginx.resource['service.name'], 'ingress-nginx', 'the names last known');
    assert.equal(during.app.resource['service.name'], 'frontend-svc');
    await c.startApiServer();
    await waitFor(async () => (await stale()) === 0, 'metadata fresh again', 30_000);
    const afterwards = await request('/after-outage');
    assert.equal(afterwards.app.resource['k8s.pod.name'], 'frontend-0');
    assert.ok(metricValue(await metrics(), 'strata_discovery_list_errors_total') + metricValue(await metrics(), 'strata_discovery_watch_errors_total') > 0);
    assert.match(agent?.stderr() ?? '', /lost the API server/);
    assert.equal(agent?.child.exitCode, null, 'still running');
  });
});
