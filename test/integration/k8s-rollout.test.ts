// The DaemonSet on a real single-node Kubernetes built from Debian's packages (lab/k8s/cluster.ts:
// kube-apiserver, controller-manager, scheduler and kubelet 1.20 from the `kubernetes` source
// package, containerd 1.6 + runc, CNI bridge + host-local), with the image scripts/image.sh builds:
//   kubectl apply -k (manifests/base under a test overlay, below) -> the DaemonSet rolls out, its
//   pod becomes Ready (/readyz), the agent process runs the image's JavaScript build (its argv is
//   AGENT_IMAGE_COMMAND, node dist/src/cli.js; its root holds dist/ and no agent/ sources), its RSS
//   at rest is reported, it holds exactly the manifest's capabilities
//   (CapEff = CapBnd = the list), its root filesystem is read-only, strata's BPF programs are
//   loaded and its TC filters are on the node's interface, its discovery fresh from the API server
//   (strata_discovery_metadata_stale 0);
//   a rolling update (a changed pod-template annotation and configuration) -> one agent, the
//   same programs once, one TC filter per direction, the old agent's programs and maps gone, the
//   new agent fresh too;
//   kubectl delete -k -> nothing of strata left in the kernel (programs, maps, pins, TC filters).
// The test overlay (generated per run, on top of manifests/base unchanged otherwise; see
// writeAgentOverlay): the base's strata.yaml exporting to an OTLP receiver of the test's on loopback,
// the metrics port in this test's range (hostNetwork: 9464 may be another agent's on this machine),
// the node's bridge as an observed interface (so the agent puts TC filters where the test can count
// them), and the API server's loopback address in the agent's env (no kube-proxy on this node: the
// kubernetes Service's ClusterIP the kubelet gives it is not routed).
// Under CI=true a missing piece (binaries, image tools, kubectl) fails; elsewhere the test skips.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { FAMILIES, allProgramNames } from '../../agent/src/probes/registry.ts';
import { AGENT_IMAGE_COMMAND } from '../../agent/src/runtime-flags.ts';
import { waitFor } from '../../lab/exec.ts';
import { loadSnapshot } from '../../lab/k8s/host.ts';
import { type NodeCluster, debianKubectl, logTail, startNode } from '../../lab/k8s/cluster.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import {
  MANIFESTS_BASE, agentMetrics, bpfHeldBy, capMask, capNames, containerPid, hostTcFilters, imageArchive, loadedMapIds, loadedProgs, procCaps,
  requireNode, rootMountOptions, writeAgentOverlay,
} from '../helpers/k8s-node.ts';

const DAEMONSET = join(MANIFESTS_BASE, 'daemonset.yaml');
const STRATA_PROGS = new Set(allProgramNames());
// programs of the families attached per process (ovs: loaded while an ovs-vswitchd runs on the
// node; with hostPID that is any on this shared machine, e.g. another engineer's OVS lab, which
// may start or stop between two agents): compared apart from the rest
const PER_PROCESS = new Set(FAMILIES.filter((f) => f.attach === 'process').flatMap((f) => f.programs.map((p) => p.name.slice(0, 15))));
const nodeWide = (names: string[]) => names.filter((n) => !PER_PROCESS.has(n));

// Deadlines, from what this machine measured (README "The real-cluster test"): the node Ready in
// ~15-25 s; image import ~10 s; the agent's pod Ready ~10-20 s after apply (pod start ~3 s, the
// agent attaching ~2-5 s, the kubelet's first readiness probe); a rolling update ~15-40 s (the
// old agent's graceful stop, then the new one); delete -k ~10-40 s (namespace finalization).
// Each bound is a few times the slowest run seen, for a loaded 2-core machine.
const POD_READY_MS = 120_000;
const ROLLOUT_MS = 180_000;
const DELETE_MS = 180_000;

function manifestCaps(): string[] {
  const ds = parse(readFileSync(DAEMONSET, 'utf8')) as { spec: { template: { spec: { containers: { name: string; securityContext: { capabilities: { add: string[]; drop: string[] } } }[] } } } };
  const c = ds.spec.template.spec.containers.find((x) => x.name === 'strata');
  assert.ok(c, 'the strata container in manifests/base/daemonset.yaml');
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  return c.securityContext.capabilities.add;
}

/** the test overlay: base + strata.yaml for this node + the metrics port + a pod-template revision */
function writeOverlay(dir: string, c: NodeCluster, metricsPort: number, exportPort: number, rev: number): void {
  writeAgentOverlay(dir, c, {
    metricsPort,
    config: {
      // on loopback (hostNetwork): the base's collector name would be resolved through the host's DNS
      export: { otlp: { endpoint: `http://127.0.0.1:${exportPort}/v1/traces` } },
      metrics: { port: metricsPort, host: '0.0.0.0' },
      node: { interfaces: [c.net.nodeBridge] },
      // a changed configuration: a new ConfigMap name, hence (with the annotation) a new pod template
      shutdown: { timeoutS: rev > 1 ? 9 : 10 },
    },
    merge: [{
      apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'strata', namespace: 'strata' },
      spec: { template: { metadata: { annotations: { 'strata.test/revision': String(rev) } } } },
    }],
  });
}

/** the agent's discovery fresh from the API server (reached at its loopback address: see writeAgentOverlay) */
async function waitFresh(c: NodeCluster, metricsPort: number, what: string): Promise<void> {
  await waitCluster(c, `${what}: metadata fresh from the API server`, async () => /^strata_discovery_metadata_stale 0$/m.test(await agentMetrics(metricsPort)), POD_READY_MS);
}

interface DsStatus {
  generation: number;
  observedGeneration: number;
  desired: number;
  updated: number;
  ready: number;
  available: number;
}

async function dsStatus(c: NodeCluster): Promise<DsStatus | undefined> {
  const r = await c.api('GET', '/apis/apps/v1/namespaces/strata/daemonsets/strata');
  if (r.status !== 200) return undefined;
  const d = JSON.parse(r.body) as { metadata: { generation: number }; status?: Record<string, number> };
  const s = d.status ?? {};
  return {
    generation: d.metadata.generation, observedGeneration: s.observedGeneration ?? 0, desired: s.desiredNumberScheduled ?? 0,
    updated: s.updatedNumberScheduled ?? 0, ready: s.numberReady ?? 0, available: s.numberAvailable ?? 0,
  };
}

interface AgentPod {
  name: string;
  uid: string;
  containerId: string;
  ready: boolean;
}

async function agentPods(c: NodeCluster): Promise<AgentPod[]> {
  const r = await c.api('GET', '/api/v1/namespaces/strata/pods?labelSelector=app.kubernetes.io%2Fname%3Dstrata');
  if (r.status !== 200) return [];
  const list = JSON.parse(r.body) as { items: { metadata: { name: string; uid: string }; status?: { containerStatuses?: { name: string; containerID?: string; ready: boolean }[] } }[] };
  return list.items.map((p) => {
    const cs = p.status?.containerStatuses?.find((x) => x.name === 'strata');
    return { name: p.metadata.name, uid: p.metadata.uid, containerId: (cs?.containerID ?? '').replace(/^containerd:\/\//, ''), ready: cs?.ready ?? false };
  });
}

/** rolled out: the controller saw the latest spec, one pod, updated, ready and available */
async function rolledOut(c: NodeCluster): Promise<boolean> {
  const s = await dsStatus(c);
  if (!s || s.observedGeneration < s.generation || s.desired !== 1) return false;
  if (s.updated !== 1 || s.ready !== 1 || s.available !== 1) return false;
  const pods = await agentPods(c);
  return pods.length === 1 && (pods[0]?.ready ?? false);
}

interface Agent {
  pod: AgentPod;
  pid: number;
  held: { progs: number[]; maps: number[] };
  progNames: string[];
}

async function runningAgent(c: NodeCluster): Promise<Agent> {
  const pods = await agentPods(c);
  assert.equal(pods.length, 1, `one agent pod: ${JSON.stringify(pods)}`);
  const pod = pods[0] as AgentPod;
  const pid = await containerPid(c.ctr, pod.containerId);
  assert.ok(pid, `the agent's container ${pod.containerId} runs`);
  const held = bpfHeldBy(pid);
  const byId = new Map(loadedProgs().map((p) => [p.id, p.name]));
  const progNames = held.progs.map((id) => byId.get(id) ?? '?').filter((n) => STRATA_PROGS.has(n)).sort();
  return { pod, pid, held, progNames };
}

const ms = (t0: number) => Math.round(performance.now() - t0);

/** VmRSS and its anonymous / file-backed / shared-memory (the ring buffer's mapping) parts of a process, MiB (/proc/<pid>/status) */
function rssMiB(pid: number): { rss: number; anon: number; file: number; shmem: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s*(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  const mib = (k: string) => Math.round((kb(k) / 1024) * 10) / 10;
  return { rss: mib('VmRSS'), anon: mib('RssAnon'), file: mib('RssFile'), shmem: mib('RssShmem') };
}

/** what the cluster says when a wait fails: the agent pods' events and logs, the kubelet's last lines */
async function explain(c: NodeCluster): Promise<string> {
  const parts: string[] = [];
  const grab = async (what: string, args: string[]) => {
    parts.push(`--- ${what}\n${(await c.kubectl(args).catch((e: Error) => e.message)).slice(-4000)}`);
  };
  await grab('pods', ['-n', 'strata', 'get', 'ds,pods', '-o', 'wide']);
  await grab('describe', ['-n', 'strata', 'describe', 'pods']);
  await grab('logs', ['-n', 'strata', 'logs', '-l', 'app.kubernetes.io/name=strata', '--tail=40']);
  parts.push(`--- kubelet\n${logTail(c.stateDir, 'kubelet', 30)}`);
  return parts.join('\n');
}

/** waitFor, and on timeout the cluster's own account of why */
async function waitCluster(c: NodeCluster, what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  try {
    await waitFor(what, check, { timeoutMs, intervalMs: 250 });
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${await explain(c)}`, { cause: e });
  }
}

function bpffsEntries(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      out.push(join(d, e.name));
      if (e.isDirectory()) walk(join(d, e.name));
    }
  };
  if (existsSync('/sys/fs/bpf')) walk('/sys/fs/bpf');
  return out;
}

test('the DaemonSet on a real single-node Kubernetes: rollout, exact capabilities, read-only root, rolling update without duplicate probes, delete leaves nothing', { timeout: 20 * 60_000 }, async (t) => {
  if (!requireNode(t)) return;
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const archive = imageArchive();
  timings.imageMs = ms(t0);

  const bpffsBefore = new Set(bpffsEntries());
  const caps = manifestCaps();
  const overlay = mkdtempSync(join(tmpdir(), 'sk8-rollout-'));

  t0 = performance.now();
  const c = await startNode({ log: (s) => t.diagnostic(s) });
  timings.nodeStartMs = ms(t0);
  let stopped = false;
  const teardown = async () => {
    if (stopped) return [];
    stopped = true;
    const t1 = performance.now();
    const problems = await c.stop();
    timings.stopMs = ms(t1);
    rmSync(overlay, { recursive: true, force: true });
    return problems;
  };
  const snapshot = loadSnapshot(join(c.stateDir, 'host-snapshot.json'));
  const receiver = new OtlpReceiver();
  try {
    Object.assign(timings, Object.fromEntries(Object.entries(c.timings).map(([k, v]) => [`node.${k}`, v])));
    t0 = performance.now();
    await c.importImage(archive);
    timings.imageImportMs = ms(t0);
    const metricsPort = c.ports.spare[0] as number;
    // an OTLP receiver on loopback: the agent finds a pod to trace on this node (its log says so;
    // during the rolling update the other agent's hostNetwork pod is one) and exports spans; with
    // nothing listening, the rolled-out agent's stop spent shutdown.timeoutS (9 s) on the failing
    // export and exited 1 without detaching, leaving its TC filters (3 runs of 3)
    const exportPort = c.ports.spare[1] as number;
    receiver.port = exportPort;
    await receiver.start();

    // ---- apply: rolled out, Ready, exactly the manifest's capabilities, read-only root ----
    writeOverlay(overlay, c, metricsPort, exportPort, 1);
    t0 = performance.now();
    await c.kubectl(['apply', '-k', overlay]);
    await waitCluster(c, 'the DaemonSet rolled out and its pod Ready', () => rolledOut(c), POD_READY_MS);
    timings.applyToReadyMs = ms(t0);
    const first = await runningAgent(c);
    const logs = await c.kubectl(['-n', 'strata', 'logs', first.pod.name]);
    const readyLine = logs.split('\n').find((l) => l.includes('"ready"'));
    assert.ok(readyLine, `the agent's ready line in kubectl logs: ${logs.slice(-2000)}`);
    const readyz = await fetch(`http://${c.net.nodeIP}:${metricsPort}/readyz`);
    assert.equal(readyz.status, 200, 'GET /readyz on the node IP (hostNetwork)');
    t0 = performance.now();
    await waitFresh(c, metricsPort, 'the agent');
    timings.readyToFreshMs = ms(t0);
    const tFresh = performance.now();

    const pc = procCaps(first.pid);
    const want = capMask(caps);
    assert.equal(capNames(pc.eff).join(','), capNames(want).join(','), 'CapEff: exactly the manifest\'s capabilities');
    assert.equal(pc.bnd, want, `CapBnd ${capNames(pc.bnd).join(',')}: exactly the manifest's capabilities`);
    assert.equal(pc.prm, want, 'CapPrm');
    assert.ok(rootMountOptions(first.pid).includes('ro'), `read-only root filesystem: ${rootMountOptions(first.pid).join(',')}`);

    // what runs in the pod: the image's JavaScript build, never the .ts sources (they would load
    // Node's TypeScript stripper, ~33 MiB of RSS): the agent's argv is AGENT_IMAGE_COMMAND, and the
    // container's root has dist/src/cli.js and no agent/ to run
    const argv = readFileSync(`/proc/${first.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    assert.deepEqual(argv, [...AGENT_IMAGE_COMMAND], 'the agent process runs node dist/src/cli.js (AGENT_IMAGE_COMMAND)');
    const app = `/proc/${first.pid}/root/opt/strata`;
    assert.ok(existsSync(`${app}/dist/src/cli.js`), 'dist/src/cli.js in the container');
    assert.ok(!existsSync(`${app}/agent`), 'no agent/ sources in the container');
    // at rest: Ready, discovery fresh, no traced pod on this node, no traffic (as bench/README.md's
    // "Memory" measures it on the host)
    const rest = rssMiB(first.pid);
    assert.ok(rest.rss > 0, 'VmRSS read');

    assert.ok(first.progNames.length > 0, 'strata BPF programs loaded by the agent in the pod');
    const families = JSON.parse(readyLine) as { probes?: Record<string, string> };
    t.diagnostic(`agent pid ${first.pid}: ${first.progNames.length} programs (${[...new Set(first.progNames)].join(' ')}), ${first.held.maps.length} maps; probes ${JSON.stringify(families.probes)}`);
    const tc1 = hostTcFilters(c.net.nodeBridge);
    assert.deepEqual(tc1.map((f) => `${f.dir}:${f.name}`).sort(), ['egress:tc_egress', 'ingress:tc_ingress'], `TC filters on ${c.net.nodeBridge}`);
    for (const f of tc1) assert.ok(first.held.progs.includes(f.progId), `TC filter ${f.dir} runs the agent's program ${f.progId}`);
    const rest2 = rssMiB(first.pid);
    t.diagnostic(`agent pid ${first.pid} at rest (dist/src/cli.js, discovery from the API server): VmRSS ${rest.rss} MiB (anon ${rest.anon}, file ${rest.file}, shmem ${rest.shmem}) ` +
      `when fresh, ${rest2.rss} MiB (anon ${rest2.anon}, file ${rest2.file}) ${ms(tFresh)} ms later`);

    // ---- rolling update: a new pod template (annotation + configuration) ----
    writeOverlay(overlay, c, metricsPort, exportPort, 2);
    t0 = performance.now();
    await c.kubectl(['apply', '-k', overlay]);
    await waitCluster(c, 'the rolling update done: one new agent Ready', async () => {
      if (!(await rolledOut(c))) return false;
      const pods = await agentPods(c);
      return pods[0]?.uid !== first.pod.uid;
    }, ROLLOUT_MS);
    timings.rollingUpdateMs = ms(t0);
    const second = await runningAgent(c);
    assert.notEqual(second.pid, first.pid);
    await waitFresh(c, metricsPort, 'the new agent');
    assert.ok(!existsSync(`/proc/${first.pid}`), `the old agent (pid ${first.pid}) is gone`);
    assert.deepEqual(nodeWide(second.progNames), nodeWide(first.progNames), `the new agent loaded the same programs (per-process families aside: first ${first.progNames.filter((n) => PER_PROCESS.has(n)).join(' ') || 'none'}, new ${second.progNames.filter((n) => PER_PROCESS.has(n)).join(' ') || 'none'})`);
    assert.equal(new Set(nodeWide(second.progNames)).size, nodeWide(second.progNames).length, 'each of them once');
    const live = new Set(loadedProgs().map((p) => p.id));
    assert.deepEqual(first.held.progs.filter((id) => live.has(id)), [], "none of the old agent's programs is left");
    const liveMaps = loadedMapIds();
    assert.deepEqual(first.held.maps.filter((id) => liveMaps.has(id)), [], "none of the old agent's maps is left");
    const tc2 = hostTcFilters(c.net.nodeBridge);
    assert.deepEqual(tc2.map((f) => `${f.dir}:${f.name}`).sort(), ['egress:tc_egress', 'ingress:tc_ingress'], `one TC filter per direction on ${c.net.nodeBridge} after the update: ${JSON.stringify(tc2)}`);
    for (const f of tc2) assert.ok(second.held.progs.includes(f.progId), `TC filter ${f.dir} runs the new agent's program`);

    // ---- delete -k: nothing of strata left in the kernel ----
    // the agent's own account of its stop (its log goes with the pod): followed from here
    const follow = spawn(debianKubectl() as string, ['-n', 'strata', 'logs', '-f', second.pod.name], { env: { ...process.env, KUBECONFIG: c.kubeconfigs.admin }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stopLog = '';
    follow.stdout.on('data', (d: Buffer) => { stopLog = (stopLog + d.toString()).slice(-4000); });
    follow.stderr.on('data', (d: Buffer) => { stopLog = (stopLog + d.toString()).slice(-4000); });
    t.after(() => { follow.kill(); });
    t0 = performance.now();
    await c.kubectl(['delete', '-k', overlay, '--wait=false']);
    await waitCluster(c, 'namespace strata gone', async () => (await c.api('GET', '/api/v1/namespaces/strata')).status === 404, DELETE_MS);
    timings.deleteMs = ms(t0);
    assert.ok(!existsSync(`/proc/${second.pid}`), `the agent (pid ${second.pid}) is gone`);
    assert.deepEqual(hostTcFilters(c.net.nodeBridge), [], `no TC filter on ${c.net.nodeBridge}; the agent's log as it stopped:\n${stopLog.slice(-1500)}`);
    // the kernel frees a program after its last reference (fd, link, filter) went, from deferred
    // work: seen still listed just after the agent's exit on a loaded machine, gone later; polled,
    // then asserted with the ids left
    const ours = [...first.held.progs, ...second.held.progs];
    const oursMaps = [...first.held.maps, ...second.held.maps];
    await waitFor('the agents\' programs and maps freed', () => {
      const progs = new Set(loadedProgs().map((p) => p.id));
      const maps = loadedMapIds();
      return !ours.some((id) => progs.has(id)) && !oursMaps.some((id) => maps.has(id));
    }, { timeoutMs: 60_000, intervalMs: 250 }).catch(() => {});
    const liveAfter = new Set(loadedProgs().map((p) => p.id));
    assert.deepEqual(ours.filter((id) => liveAfter.has(id)), [], "no program the agents loaded is left");
    const mapsAfter = loadedMapIds();
    assert.deepEqual(oursMaps.filter((id) => mapsAfter.has(id)), [], 'no map the agents made is left');
    const newPins = bpffsEntries().filter((p) => !bpffsBefore.has(p));
    assert.deepEqual(newPins, [], 'nothing new pinned under /sys/fs/bpf');
    t.diagnostic(`OTLP requests received from the agents: ${receiver.requests.length}`);
    t.diagnostic(`other strata programs on this machine now (other users' agents): ${loadedProgs().filter((p) => STRATA_PROGS.has(p.name)).length}`);
  } finally {
    await receiver.stop();
    const problems = await teardown();
    t.diagnostic(`timings ${JSON.stringify(timings)}`);
    // stop() compares the host with the snapshot taken before the node started (every sysctl and
    // path the kubelet, containerd and the CNI plugins touch, /sys/fs/bpf's propagation) and checks
    // links, cgroups and the state dir are gone, before it lets another node start: a check here,
    // after it, could see the next node's changes (another engineer's tests run on this machine)
    assert.deepEqual(problems, [], 'teardown cleaned up everything and the host is as before');
  }
  assert.ok(snapshot, 'the node recorded the host before it started');
  t.diagnostic(`host before the node: ${JSON.stringify(snapshot.sysctls)}`);
});
