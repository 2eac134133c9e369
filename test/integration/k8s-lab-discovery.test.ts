// Discovery on the real kernel, in the lab, with the pods file: the pods file names the lab's pods
// by uid and labels only (no netns, no veth) and the agent finds their processes by their
// kubelet-style cgroups (kubepods/besteffort/pod<uid>/<container id>), their netns from those
// processes and their host veths from the netns's eth0. Pods added while the agent runs (as the
// kubelet and the CNI add them) get TC on their veth within a second of the veth appearing
// (measured from just before `ip link add`, polled with a deadline), their spans carry the
// service.name of each rule of the order; deleted pods leave no TC filter and no target.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Lab, type LabPod, addLabPod, curlFromClient, labDown, labUp, removeLabPod } from '../../lab/lab.ts';
import { type AgentProc, testAgentCommand, metricValue, spawnAgent, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites, tcFilters } from '../helpers/kernel.ts';
import { type DecodedSpan, flattenSpans, type AnyValue } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { type DevTimes, TcWatch } from '../helpers/tc-watch.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const skip = why ?? false;

const KIND_SERVER = 2;
const prefix = `sdi${Math.random().toString(36).slice(2, 6)}`;
const receiver = new OtlpReceiver();
let lab: Lab;
let agent: AgentProc | undefined;
let dir = '';
let podsFile = '';
const extra: LabPod[] = [];

interface Row {
  span: DecodedSpan;
  resource: Record<string, AnyValue>;
}
const rows = (): Row[] => receiver.requests.flatMap((r) => flattenSpans(r.decoded));

/** the pods file as a cluster would know the pods: who they are, not where */
function writePods(entries: object[]): void {
  const tmp = `${podsFile}.tmp`;
  writeFileSync(tmp, JSON.stringify(entries, null, 2));
  renameSync(tmp, podsFile);
}

const labEntries = () => [
  {
    name: 'ingress-nginx-controller-5c8d66c76d-fbxk2', namespace: 'ingress-nginx', uid: lab.pods.ingress.uid, node: lab.nodeName, ip: lab.pods.ingress.ip,
    labels: { 'app.kubernetes.io/name': 'ingress-nginx', 'pod-template-hash': '5c8d66c76d' },
    owner: { kind: 'ReplicaSet', name: 'ingress-nginx-controller-5c8d66c76d' },
    containers: lab.pods.ingress.containers.map((c) => ({ name: c.name, id: c.id })),
  },
  {
    name: 'frontend', namespace: 'default', uid: lab.pods.app.uid, node: lab.nodeName, ip: lab.pods.app.ip,
    labels: { 'app.kubernetes.io/name': 'frontend' },
    containers: lab.pods.app.containers.map((c) => ({ name: c.name, id: c.id })),
  },
];

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'sdi-disc-'));
  podsFile = join(dir, 'pods.json');
  await receiver.start();
  lab = await labUp({ prefix });
  writePods(labEntries());
  agent = await startAgent(['--pods-file', podsFile, '--node-name', lab.nodeName, '--node-netns', `/run/netns/${lab.nodeNetns}`,
    '--iface', lab.clientVeth, '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1',
    '--set', 'export.queue.delayMs=100']);
});

after(async () => {
  if (skip) return;
  if (agent) await stopAgent(agent, 'SIGKILL');
  await labDown(prefix);
  await receiver.stop();
  rmSync(dir, { recursive: true, force: true });
});

const metrics = async () => (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text();

test('the lab\'s pods, named in the pods file by uid only, are found through their kubelet-style cgroups and traced', { skip }, async () => {
  const m = await metrics();
  assert.equal(metricValue(m, 'strata_discovery_pods_traced'), 2, m.split('\n').filter((l) => l.startsWith('strata_discovery')).join('\n'));
  assert.equal(metricValue(m, 'strata_probe_attached', `probe="tc:${lab.pods.ingress.hostVeth}"`), 1, 'TC on the ingress pod\'s veth, found from its netns');
  assert.equal(metricValue(m, 'strata_probe_attached', `probe="tc:${lab.pods.app.hostVeth}"`), 1);
  assert.match(tcFilters(lab.nodeNetns, lab.pods.app.hostVeth), /bpf/);
  const r = await curlFromClient(lab, `${lab.nginxUrl}/discovered`);
  assert.equal(r.status, 200);
  const t = await waitFor(() => {
    const nginx = rows().find((x) => x.span.kind === KIND_SERVER && x.span.attributes['url.path'] === '/discovered' && x.resource['service.name'] === 'ingress-nginx');
    if (!nginx) return undefined;
    const trace = rows().filter((x) => x.span.traceId === nginx.span.traceId);
    return trace.some((x) => x.span.kind === KIND_SERVER && x.resource['service.name'] === 'frontend') && trace.some((x) => x.span.kind === 1) ? trace : undefined;
  }, 'the trace of /discovered', 20_000);
  const nginx = t.find((x) => x.span.kind === KIND_SERVER && x.resource['service.name'] === 'ingress-nginx');
  const app = t.find((x) => x.span.kind === KIND_SERVER && x.resource['service.name'] === 'frontend');
  assert.deepEqual(pick(nginx?.resource), {
    'k8s.pod.name': 'ingress-nginx-controller-5c8d66c76d-fbxk2', 'k8s.namespace.name': 'ingress-nginx', 'k8s.pod.uid': lab.pods.ingress.uid,
    'k8s.node.name': lab.nodeName, 'k8s.container.name': 'controller',
    'k8s.replicaset.name': 'ingress-nginx-controller-5c8d66c76d', 'k8s.deployment.name': 'ingress-nginx-controller',
  });
  assert.deepEqual(pick(app?.resource), {
    'k8s.pod.name': 'frontend', 'k8s.namespace.name': 'default', 'k8s.pod.uid': lab.pods.app.uid, 'k8s.node.name': lab.nodeName, 'k8s.container.name': 'frontend',
  });
  // hop spans: the node in the resource, the pod whose interface they cross on the span
  const hops = t.filter((x) => x.span.kind === 1);
  assert.ok(hops.every((h) => h.resource['k8s.node.name'] === lab.nodeName));
  assert.ok(hops.some((h) => h.span.attributes['k8s.pod.name'] === 'frontend' && h.span.attributes['k8s.pod.uid'] === lab.pods.app.uid));
});

function pick(res: Record<string, AnyValue> | undefined): Record<string, AnyValue> {
  return Object.fromEntries(Object.entries(res ?? {}).filter(([k]) => k.startsWith('k8s.')).sort());
}

/** one pod per rule of the service.name order, each also matching every later rule */
const RULES: { rule: string; want: string; entry: Record<string, unknown>; env?: Record<string, string>; attrs?: Record<string, string> }[] = [
  {
    rule: '1 container OTEL_SERVICE_NAME', want: 'svc-from-env', env: { OTEL_SERVICE_NAME: 'svc-from-env' },
    entry: { annotations: { 'resource.opentelemetry.io/service.name': 'svc-annot' }, labels: { 'app.kubernetes.io/instance': 'inst', 'app.kubernetes.io/name': 'nm' } },
  },
  {
    rule: '2 annotation', want: 'svc-annot',
    entry: { annotations: { 'resource.opentelemetry.io/service.name': 'svc-annot' }, labels: { 'app.kubernetes.io/instance': 'inst', 'app.kubernetes.io/name': 'nm' } },
  },
  { rule: '3 app.kubernetes.io/instance', want: 'inst', entry: { labels: { 'app.kubernetes.io/instance': 'inst', 'app.kubernetes.io/name': 'nm' } } },
  { rule: '4 app.kubernetes.io/name', want: 'nm', entry: { labels: { 'app.kubernetes.io/name': 'nm', app: 'not-a-rule' } } },
  {
    rule: '5 top owner', want: 'shop', attrs: { 'k8s.deployment.name': 'shop', 'k8s.replicaset.name': 'shop-7d4b9c6f5' },
    entry: { labels: { app: 'not-a-rule', 'pod-template-hash': '7d4b9c6f5' }, owner: { kind: 'ReplicaSet', name: 'shop-7d4b9c6f5' } },
  },
  { rule: '6 pod name', want: 'rule6pod', entry: { labels: { app: 'not-a-rule' } } },
];

const latencies: number[] = [];
const bounds: number[] = [];
/** host veth letters of the added pods (c, i, a are the lab's) */
const LETTERS = 'defghj';

/** strata's ingress filter on a device of the node's netns (its absence: no output, no error) */
function hasFilter(dev: string): boolean {
  try {
    return /bpf/.test(execFileSync('ip', ['netns', 'exec', lab.nodeNetns, 'tc', 'filter', 'show', 'dev', dev, 'ingress'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  } catch {
    return false;
  }
}

test('pods added while the agent runs: TC on each new veth within 1 s of it appearing; spans carry service.name by each rule', { skip }, async (t) => {
  const entries: object[] = [...labEntries()];
  const watch = new TcWatch();
  await watch.start(lab.nodeNetns);
  const started: Record<string, number> = {};
  try {
    for (const [i, r] of RULES.entries()) {
      const name = r.rule.startsWith('6') ? 'rule6pod' : `rule${i + 1}pod`;
      const letter = LETTERS[i] as string;
      const veth = `v${letter}-${prefix}`;
      let attached: Promise<DevTimes> | undefined;
      const pod = await addLabPod(lab, {
        name, vethLetter: letter, ipOctet: 31 + i, containers: [{ name: 'app', env: r.env }],
        beforeLink: () => {
          started[veth] = performance.now();
          // polled from before the veth exists; the 1 s bound is asserted on the monitors' stamps below
          // (this wait's own deadline would also count spawning `ip` on a loaded machine)
          attached = waitFor(() => {
            const x = watch.devs.get(veth);
            return x?.appeared !== undefined && x.attached !== undefined ? x : undefined;
          }, `strata's TC filter on ${veth}`, 30_000, 5);
        },
      });
      extra.push(pod);
      const d = await (attached as Promise<DevTimes>);
      latencies.push((d.attached as number) - (d.appeared as number));
      bounds.push((d.attached as number) - (started[veth] as number));
      entries.push({ name, namespace: 'default', uid: pod.uid, node: lab.nodeName, ip: pod.ip, containers: [{ name: 'app', id: pod.containers[0]?.id }], ...r.entry });
    }
  } finally {
    watch.stop();
  }
  const fmt = (xs: number[]) => [...xs].sort((a, b) => a - b).map((x) => x.toFixed(1)).join(' ');
  t.diagnostic(`veth RTM_NEWLINK -> strata's TC filter added, as read from ip/tc monitor (ms): ${fmt(latencies)}`);
  t.diagnostic(`just before \`ip link add\` -> filter added (ms, includes spawning ip): ${fmt(bounds)}`);
  const m = await metrics();
  t.diagnostic(`agent's own strata_discovery_tc_attach_seconds: count ${metricValue(m, 'strata_discovery_tc_attach_seconds_count')}, mean ${(1000 * metricValue(m, 'strata_discovery_tc_attach_seconds_sum') / metricValue(m, 'strata_discovery_tc_attach_seconds_count')).toFixed(2)} ms`);
  for (const [i, ms] of latencies.entries()) assert.ok(ms < 1000, `${RULES[i]?.rule}: ${ms} ms`);
  writePods(entries);

  // every pod gets a request from the client; its SERVER span's resource says who it is
  await waitFor(async () => metricValue(await metrics(), 'strata_discovery_pods_traced') === 2 + RULES.length, 'the new pods traced', 10_000);
  for (const [i, r] of RULES.entries()) {
    const pod = extra[i] as LabPod;
    const res = await curlFromClient(lab, `http://${pod.ip}:8080/rule/${i + 1}`);
    assert.equal(res.status, 200);
    const row = await waitFor(() => rows().find((x) => x.span.kind === KIND_SERVER && x.span.attributes['url.path'] === `/rule/${i + 1}`), `span of rule ${r.rule}`, 20_000);
    assert.equal(row.resource['service.name'], r.want, r.rule);
    assert.equal(row.resource['k8s.pod.uid'], pod.uid, r.rule);
    assert.equal(row.resource['k8s.container.name'], 'app', r.rule);
    for (const [k, v] of Object.entries(r.attrs ?? {})) assert.equal(row.resource[k], v, `${r.rule}: ${k}`);
    if (!r.attrs) assert.equal(row.resource['k8s.deployment.name'], undefined, r.rule);
  }
});

test('deleting the added pods leaves no TC filter, no trace target and no attachment metric behind', { skip }, async () => {
  const before = metricValue(await metrics(), 'strata_discovery_targets');
  for (const pod of extra.splice(0)) await removeLabPod(lab, pod);
  writePods(labEntries());
  await waitFor(async () => metricValue(await metrics(), 'strata_discovery_pods_traced') === 2, 'back to the lab\'s two pods', 10_000);
  const m = await metrics();
  // per pod: its netns, its veth, its eth0 (net_dev)
  assert.equal(metricValue(m, 'strata_discovery_targets'), before - 3 * RULES.length);
  assert.doesNotMatch(m, new RegExp(`probe="tc:v[${LETTERS}]-${prefix}"`));
  // only the lab's own interfaces keep strata's filters
  const links = JSON.parse(execFileSync('ip', ['-n', lab.nodeNetns, '-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[];
  const withFilters = links.map((l) => l.ifname).filter((n) => hasFilter(n)).sort();
  assert.deepEqual(withFilters, [lab.pods.app.hostVeth, lab.clientVeth, lab.pods.ingress.hostVeth].sort());
});

test('without iproute2 (a minimal image): no link events, the interfaces polled; a new veth still gets TC within 1 s', { skip }, async (t) => {
  if (agent) await stopAgent(agent);
  // a PATH with nsenter and no `ip` (this Debian has it in /usr/bin, with everything else)
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync('/usr/bin/nsenter', join(bin, 'nsenter'));
  agent = await spawnAgent(['/usr/bin/env', `PATH=${bin}`, ...testAgentCommand(['--pods-file', podsFile, '--node-name', lab.nodeName,
    '--node-netns', `/run/netns/${lab.nodeNetns}`, '--iface', lab.clientVeth, '--otlp-endpoint', receiver.url,
    '--metrics-port', '0', '--metrics-host', '127.0.0.1'])]);
  await waitFor(() => /no rtnetlink events .*polling the node's interfaces every 100 ms/.test(agent?.stderr() ?? ''), 'the warning about polling', 10_000);
  assert.equal(metricValue(await metrics(), 'strata_probe_attached', `probe="tc:${lab.pods.app.hostVeth}"`), 1, 'the lab\'s veths found by the dump');
  const watch = new TcWatch();
  await watch.start(lab.nodeNetns);
  try {
    let attached: Promise<DevTimes> | undefined;
    const veth = `vk-${prefix}`;
    const pod = await addLabPod(lab, {
      name: 'polled', vethLetter: 'k', ipOctet: 41, containers: [{ name: 'app' }],
      beforeLink: () => {
        attached = waitFor(() => {
          const x = watch.devs.get(veth);
          return x?.appeared !== undefined && x.attached !== undefined ? x : undefined;
        }, `strata's TC filter on ${veth}`, 30_000, 5);
      },
    });
    const d = await (attached as Promise<DevTimes>);
    const ms = (d.attached as number) - (d.appeared as number);
    t.diagnostic(`polled: veth RTM_NEWLINK -> filter added ${ms.toFixed(1)} ms`);
    assert.ok(ms < 1000, `polled: ${ms} ms`);
    await removeLabPod(lab, pod);
  } finally {
    watch.stop();
  }
});
