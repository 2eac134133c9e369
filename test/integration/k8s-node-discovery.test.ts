// Discovery in the DaemonSet's pod on the real single-node Kubernetes (lab/k8s/cluster.ts: kubelet
// 1.20, containerd 1.6 + runc, CNI bridge; the image scripts/image.sh builds): manifests/base with
// its discovery settings (source kubernetes, in-cluster credentials, the node's procfs at
// /host/proc), exporting to a receiver on the host's loopback. A Deployment's pod is found through
// the API server and its cgroups and veth on the node: its spans carry the k8s.* attributes and
// the container's OTEL_SERVICE_NAME; scaling the Deployment up gets TC on the new pod's veth within
// 1 s of the veth appearing (the node's rtnetlink notifications, read from ip/tc monitor); a
// hostNetwork pod is traced by its container's cgroup and named by its annotation; scaling down
// leaves no TC filter of strata on the node; the agent's own pod is never traced.
// This node has no kube-proxy: the kubernetes Service's ClusterIP is not routed, so the agent is
// pointed at the API server's loopback address (KUBERNETES_SERVICE_HOST/PORT in its env).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { waitFor } from '../../lab/exec.ts';
import { type NodeCluster, startNode } from '../../lab/k8s/cluster.ts';
import { metricValue } from '../helpers/agent-proc.ts';
import { imageArchive, requireNode } from '../helpers/k8s-node.ts';
import { type AnyValue, type DecodedSpan, flattenSpans } from '../helpers/otlp-decode.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { type DevTimes, TcWatch } from '../helpers/tc-watch.ts';

const BASE = fileURLToPath(new URL('../../manifests/base', import.meta.url));
const KIND_SERVER = 2;

function writeOverlay(dir: string, c: NodeCluster, metricsPort: number, otlp: string): void {
  writeFileSync(join(dir, 'strata.yaml'), stringify({
    // what manifests/base/strata.yaml says about discovery, and an exporter on the host's loopback
    discovery: { source: 'kubernetes', procRoot: '/host/proc' },
    export: { otlp: { endpoint: otlp }, queue: { delayMs: 100 } },
    metrics: { port: metricsPort, host: '0.0.0.0' },
  }));
  writeFileSync(join(dir, 'patch.yaml'), stringify([
    { op: 'replace', path: '/spec/template/spec/containers/0/ports/0/containerPort', value: metricsPort },
    { op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' } },
    { op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name: 'KUBERNETES_SERVICE_PORT', value: String(c.ports.apiserver) } },
  ]));
  writeFileSync(join(dir, 'kustomization.yaml'), stringify({
    apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', bases: [relative(dir, BASE)],
    configMapGenerator: [{ name: 'strata', namespace: 'strata', behavior: 'replace', files: ['strata.yaml'] }],
    patchesJson6902: [{ target: { group: 'apps', version: 'v1', kind: 'DaemonSet', name: 'strata', namespace: 'strata' }, path: 'patch.yaml' }],
  }));
}

/** a Deployment of the agent's image running a tiny HTTP server, its service name in its env */
const web = (replicas: number) => ({
  apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' },
  spec: {
    replicas, selector: { matchLabels: { app: 'web' } },
    template: {
      metadata: { labels: { app: 'web', 'app.kubernetes.io/name': 'web-name' } },
      spec: {
        containers: [{
          name: 'http', image: 'strata:dev', imagePullPolicy: 'Never',
          command: ['node', '-e', "require('http').createServer((q, s) => s.end('ok\\n')).listen(8080)"],
          env: [{ name: 'OTEL_SERVICE_NAME', value: 'web-from-env' }],
        }],
      },
    },
  },
});

test('discovery in the DaemonSet\'s pod on a real node: a Deployment\'s pods named, a scaled-up pod\'s veth traced within 1 s, scaled down leaves no filter', { timeout: 20 * 60_000 }, async (t) => {
  if (!requireNode(t)) return;
  const archive = imageArchive();
  const receiver = new OtlpReceiver();
  await receiver.start();
  const overlay = mkdtempSync(join(tmpdir(), 'sdi-node-'));
  const c = await startNode({ log: (s) => t.diagnostic(s) });
  const watch = new TcWatch();
  // what the agent said, for a failed wait
  const withLogs = async (p: Promise<unknown>) => p.catch(async (e: Error) => {
    const logs = await c.kubectl(['-n', 'strata', 'logs', '-l', 'app.kubernetes.io/name=strata', '--tail=60']).catch((x: Error) => x.message);
    throw new Error(`${e.message}\nthe agent's log:\n${logs}`);
  });
  try {
    await c.importImage(archive);
    const metricsPort = c.ports.spare[2] as number;
    writeOverlay(overlay, c, metricsPort, receiver.url);
    await c.kubectl(['apply', '-k', overlay]);
    const metrics = async () => {
      try {
        return await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      } catch {
        return '';
      }
    };
    await waitFor('the agent fresh from the API server', async () => /^strata_discovery_metadata_stale 0$/m.test(await metrics()), { timeoutMs: 180_000, intervalMs: 250 });
    assert.equal(metricValue(await metrics(), 'strata_discovery_pods'), 0, 'the agent\'s own pod is not among the traced');
    await watch.start('');

    // one pod: named through the API server, placed through /host/proc and the node's links
    await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify(web(1)) });
    let ip = '';
    await waitFor('the web pod traced, netns and veth found', async () => {
      const m = await metrics();
      const pods = JSON.parse(await c.kubectl(['get', 'pods', '-l', 'app=web', '-o', 'json'])) as { items: { status: { podIP?: string } }[] };
      ip = pods.items[0]?.status.podIP ?? '';
      return ip !== '' && metricValue(m, 'strata_discovery_pods_traced') === 1 && metricValue(m, 'strata_discovery_pods_pending') === 0;
    }, { timeoutMs: 120_000, intervalMs: 250 });
    assert.equal(execFileSync('curl', ['-sS', '--max-time', '5', `http://${ip}:8080/in-cluster`], { encoding: 'utf8' }).trim(), 'ok');
    let row: { span: DecodedSpan; resource: Record<string, AnyValue> } | undefined;
    await waitFor('the web pod\'s SERVER span', () => {
      row = receiver.requests.flatMap((x) => flattenSpans(x.decoded)).find((x) => x.span.kind === KIND_SERVER && x.span.attributes['url.path'] === '/in-cluster');
      return row !== undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    const res = (row as { resource: Record<string, AnyValue> }).resource;
    assert.equal(res['service.name'], 'web-from-env', 'rule 1: the container\'s OTEL_SERVICE_NAME (from the spec)');
    assert.match(String(res['k8s.pod.name']), /^web-[a-z0-9]+-[a-z0-9]{5}$/);
    assert.equal(res['k8s.namespace.name'], 'default');
    assert.equal(res['k8s.node.name'], c.nodeName);
    assert.equal(res['k8s.container.name'], 'http');
    assert.equal(res['k8s.deployment.name'], 'web', 'through the ReplicaSet, looked up');
    assert.match(String(res['k8s.replicaset.name']), /^web-[a-z0-9]+$/);

    // a hostNetwork pod: in the node's netns, traced by the cgroup v2 ids of its container (runc
    // places containers in the v2 hierarchy too on this hybrid host), named by its annotation
    const hostPort = c.ports.spare[3] as number;
    await c.kubectl(['apply', '-f', '-'], { input: JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: 'hostweb', namespace: 'default', annotations: { 'resource.opentelemetry.io/service.name': 'hostweb-annot' } },
      spec: {
        hostNetwork: true,
        containers: [{ name: 'http', image: 'strata:dev', imagePullPolicy: 'Never', command: ['node', '-e', `require('http').createServer((q, s) => s.end('ok\\n')).listen(${hostPort}, '127.0.0.1')`] }],
      },
    }) });
    await withLogs(waitFor('the hostNetwork pod traced', async () => {
      const m = await metrics();
      return metricValue(m, 'strata_discovery_pods_traced') === 2 && metricValue(m, 'strata_discovery_pods_pending') === 0;
    }, { timeoutMs: 120_000, intervalMs: 250 }));
    await waitFor('the hostNetwork pod answering', () => {
      try {
        return execFileSync('curl', ['-sS', '--max-time', '2', `http://127.0.0.1:${hostPort}/host-network`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() === 'ok';
      } catch {
        return false;
      }
    }, { timeoutMs: 60_000, intervalMs: 250 });
    let hostRow: { resource: Record<string, AnyValue> } | undefined;
    await waitFor('the hostNetwork pod\'s SERVER span', () => {
      hostRow = receiver.requests.flatMap((x) => flattenSpans(x.decoded)).find((x) => x.span.kind === KIND_SERVER && x.span.attributes['url.path'] === '/host-network');
      return hostRow !== undefined;
    }, { timeoutMs: 30_000, intervalMs: 100 });
    assert.equal(hostRow?.resource['k8s.pod.name'], 'hostweb');
    assert.equal(hostRow?.resource['service.name'], 'hostweb-annot', 'rule 2: the annotation');
    assert.equal(hostRow?.resource['k8s.container.name'], 'http');
    await c.kubectl(['delete', 'pod', 'hostweb', '--grace-period=1'], { timeoutMs: 120_000 });

    // scale up: the new pod's veth, timed from the node's own notifications
    const before = new Set(watch.devs.keys());
    await c.kubectl(['scale', 'deployment/web', '--replicas=2']);
    let d: DevTimes | undefined;
    await waitFor('the new pod\'s veth with strata\'s filter', () => {
      d = [...watch.devs].find(([n, x]) => !before.has(n) && n.startsWith('veth') && x.appeared !== undefined && x.attached !== undefined)?.[1];
      return d !== undefined;
    }, { timeoutMs: 120_000, intervalMs: 5 });
    const ms = (d?.attached as number) - (d?.appeared as number);
    t.diagnostic(`scaled-up pod: its veth RTM_NEWLINK -> strata's TC filter ${ms.toFixed(1)} ms`);
    assert.ok(ms < 1000, `${ms} ms`);
    await waitFor('two web pods traced (the hostNetwork one gone)', async () => metricValue(await metrics(), 'strata_discovery_pods_traced') === 2 && metricValue(await metrics(), 'strata_discovery_pods') === 2 && metricValue(await metrics(), 'strata_discovery_pods_pending') === 0,
      { timeoutMs: 120_000, intervalMs: 250 });

    // scale down to none: the veths go, and with them strata's filters and series
    await c.kubectl(['scale', 'deployment/web', '--replicas=0']);
    await waitFor('no web pod left', async () => metricValue(await metrics(), 'strata_discovery_pods') === 0 && !/probe="tc:veth/.test(await metrics()),
      { timeoutMs: 180_000, intervalMs: 500 });
    const links = (JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname);
    const withStrata = links.filter((n) => /handle 0x57a7/.test(execFileSync('tc', ['filter', 'show', 'dev', n, 'ingress'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })));
    assert.deepEqual(withStrata.filter((n) => n.startsWith('veth')), [], 'no strata filter left on a pod veth');
    await c.kubectl(['delete', 'deployment', 'web']);
    await c.kubectl(['delete', '-k', overlay], { timeoutMs: 180_000 });
  } finally {
    watch.stop();
    const problems = await c.stop();
    await receiver.stop();
    rmSync(overlay, { recursive: true, force: true });
    assert.deepEqual(problems, [], 'the node cleaned up');
  }
});
