// The socket syscall probes run inside every process's syscalls on the node, traced or not: with
// probes.idleDetachS the agent attaches them with the first traced pod and detaches them that long
// after the last one left. While detached their programs do not run at all (their BPF run counts
// stay put under traffic through the lab), and a pod that comes back is traced again.
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Lab, curlFromClient, labDown, labUp } from '../../lab/lab.ts';
import { allProgramNames, family } from '../../agent/src/probes/registry.ts';
import { type AgentProc, metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

const why = missingPrerequisites({ nginx: true });
if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
const skip = why ?? false;

const prefix = `sid${Math.random().toString(36).slice(2, 6)}`;
const receiver = new OtlpReceiver();
const IDLE_S = 1;
let lab: Lab;
let agent: AgentProc | undefined;
let dir = '';
let podsFile = '';

function writePods(entries: object[]): void {
  const tmp = `${podsFile}.tmp`;
  writeFileSync(tmp, JSON.stringify(entries, null, 2));
  renameSync(tmp, podsFile);
}

/** the lab's two pods, by uid: found through their kubelet-style cgroups */
const labEntries = () => [lab.pods.ingress, lab.pods.app].map((p, i) => ({
  name: i === 0 ? 'ingress-nginx' : 'frontend', namespace: 'default', uid: p.uid, node: lab.nodeName, ip: p.ip,
  containers: p.containers.map((c) => ({ name: c.name, id: c.id })),
}));

before(async () => {
  if (skip) return;
  dir = mkdtempSync(join(tmpdir(), 'sid-idle-'));
  podsFile = join(dir, 'pods.json');
  await receiver.start();
  lab = await labUp({ prefix });
  writePods([]);
  agent = await startAgent(['--pods-file', podsFile, '--node-name', lab.nodeName, '--node-netns', `/run/netns/${lab.nodeNetns}`,
    '--iface', lab.clientVeth, '--otlp-endpoint', receiver.url, '--metrics-port', '0', '--metrics-host', '127.0.0.1',
    '--set', 'export.queue.delayMs=100', '--set', `probes.idleDetachS=${IDLE_S}`,
    // the test reads whether the socket programs ran from strata_bpf_runs_total
    '--set', 'metrics.bpfRunStats=true']);
});

after(async () => {
  if (skip) return;
  if (agent) await stopAgent(agent, 'SIGKILL');
  await labDown(prefix);
  await receiver.stop();
  rmSync(dir, { recursive: true, force: true });
});

const metrics = async () => (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text();
const SOCK_PROGRAMS = new Set(family('sock_syscalls').programs.map((p) => p.name.slice(0, 15)));
/** runs of every socket syscall program so far (BPF run statistics) */
async function sockRuns(): Promise<number> {
  const m = await metrics();
  let n = 0;
  for (const name of allProgramNames()) if (SOCK_PROGRAMS.has(name)) n += metricValue(m, 'strata_bpf_runs_total', `program="${name}"`) || 0;
  return n;
}
const idle = async () => metricValue(await metrics(), 'strata_probe_idle', 'probe="sock_syscalls"');

/** a request through the lab whose app SERVER span is exported: the socket probes are working */
async function traced(path: string): Promise<void> {
  const r = await curlFromClient(lab, `${lab.nginxUrl}${path}`);
  assert.equal(r.status, 200);
  await waitFor(() => receiver.requests.flatMap((x) => flattenSpans(x.decoded)).some((s) => s.span.kind === 2 && s.span.attributes['url.path'] === path),
    `the server span of ${path}`, 20_000);
}

/** requests through the lab while the probes are detached: their programs never run */
async function untouched(path: string): Promise<void> {
  const before = await sockRuns();
  for (let i = 0; i < 3; i++) assert.equal((await curlFromClient(lab, `${lab.nginxUrl}${path}`)).status, 200);
  assert.equal(await sockRuns(), before, 'no socket syscall program ran: they are detached');
}

test('no traced pod: the socket probes are loaded but detached, and run for no process', { skip }, async () => {
  const m = await metrics();
  assert.equal(metricValue(m, 'strata_probe_attached', 'probe="sock_syscalls"'), 1, 'the family is usable (it attached once at start to prove it)');
  assert.equal(metricValue(m, 'strata_probe_idle', 'probe="sock_syscalls"'), 1);
  assert.equal(metricValue(m, 'strata_discovery_pods_traced'), 0);
  await untouched('/idle-at-start');
});

test('the first traced pod attaches them; its requests are traced', { skip }, async () => {
  const runs0 = await sockRuns();
  writePods(labEntries());
  await waitFor(async () => (await idle()) === 0, 'attached with the first pod', 20_000);
  await traced('/attached');
  assert.ok((await sockRuns()) > runs0, 'the programs run again');
});

test('the last pod gone: detached after probes.idleDetachS; a pod back: attached and traced again', { skip }, async () => {
  writePods([]);
  await waitFor(async () => (await idle()) === 1, `detached ${IDLE_S} s after the last pod left`, 20_000);
  await untouched('/idle-again');
  writePods(labEntries());
  await waitFor(async () => (await idle()) === 0, 'attached again', 20_000);
  await traced('/back');
  assert.equal(agent?.child.exitCode, null, 'the agent kept running through it');
});
