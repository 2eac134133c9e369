// The DaemonSet's capability set on the real kernel: the agent, started with exactly the
// capabilities manifests/base/daemonset.yaml adds (everything else dropped from the bounding set
// with setpriv, as runc does for the container; no CAP_SYS_RESOURCE, which this VM cannot grant),
// attaches every probe family, puts its TC filters on an interface of its network namespace (the
// node's, under hostNetwork) and exits 0 on SIGTERM. Without CAP_NET_ADMIN, the one the README
// calls optional, it still runs: the TC hop on that interface is missing, with a warning. Without
// CAP_SYS_ADMIN it runs too, without the kernel's BPF run-time statistics (with a warning).
// (Not a pod: the kubelet, runc and the image are not part of this test; see manifests/README.md.)
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { readOvsUserspace } from '../../agent/src/probes/ovs.ts';
import { readPreflightEnv } from '../../agent/src/probes/preflight.ts';
import { OVS_KERNEL } from '../../agent/src/probes/registry.ts';
import { requireKernel, tcFilters } from '../helpers/kernel.ts';

const CLI = fileURLToPath(new URL('../../agent/src/cli.ts', import.meta.url));
const DAEMONSET = fileURLToPath(new URL('../../manifests/base/daemonset.yaml', import.meta.url));
const BITS: Record<string, number> = { DAC_READ_SEARCH: 2, NET_ADMIN: 12, SYS_PTRACE: 19, SYS_ADMIN: 21, SYS_RESOURCE: 24, PERFMON: 38, BPF: 39 };

function manifestCaps(): string[] {
  const ds = parse(readFileSync(DAEMONSET, 'utf8')) as { spec: { template: { spec: { containers: { name: string; securityContext: { capabilities: { add: string[]; drop: string[] } } }[] } } } };
  const c = ds.spec.template.spec.containers.find((x) => x.name === 'strata');
  assert.ok(c);
  assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
  return c.securityContext.capabilities.add;
}

interface Run {
  code: number | null;
  capEff: bigint;
  stderr: string;
  ready: string;
  filters: string;
}

/** the agent in netns ns with only `caps`, TC on `iface`; SIGTERM once ready */
async function runWith(ns: string, iface: string, caps: string[], dir: string, extra: string[] = []): Promise<Run> {
  const bounding = ['-all', ...caps.map((c) => `+${c.toLowerCase()}`)].join(',');
  const args = ['netns', 'exec', ns, 'setpriv', '--bounding-set', bounding, '--inh-caps', '-all', '--',
    process.execPath, CLI, 'agent', '--otlp-endpoint', 'none', '--traces-dir', dir, '--metrics-port', '0', '--iface', iface, ...extra];
  const child: ChildProcess = spawn('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  // a wait, not a bound: a loaded machine can take a while to load the BPF objects
  const deadline = Date.now() + 90_000;
  while (!out.includes('"ready"') && child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  let capEff = 0n;
  let filters = '';
  if (out.includes('"ready"')) {
    // ip netns exec and setpriv exec in place: the child's pid is the agent's
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
    filters = tcFilters(ns, iface);
  }
  if (child.exitCode === null) child.kill('SIGTERM');
  const code = await exited;
  return { code, capEff, stderr: err, ready: out.split('\n').find((l) => l.includes('"ready"')) ?? '', filters };
}

const bitsOf = (caps: string[]) => caps.reduce((m, c) => m | (1n << BigInt(BITS[c] ?? -1)), 0n);

test('the agent runs with exactly the DaemonSet\'s capabilities (no CAP_SYS_RESOURCE), and without the optional CAP_NET_ADMIN', async (t) => {
  if (!requireKernel(t)) return;
  try {
    execFileSync('setpriv', ['--version'], { stdio: 'ignore' });
  } catch {
    if (process.env.CI === 'true') throw new Error('setpriv (util-linux) missing');
    t.skip('needs setpriv (util-linux)');
    return;
  }
  const caps = manifestCaps();
  assert.ok(!caps.includes('SYS_RESOURCE'));
  for (const c of caps) assert.ok(BITS[c] !== undefined, `${c} known`);
  const ns = `capt${Math.random().toString(36).slice(2, 6)}`;
  const iface = 'strata-cap0';
  const dir = mkdtempSync(join(tmpdir(), 'strata-caps-'));
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    // a veth pair inside the namespace (this kernel has no dummy driver), as a pod's veth sits in the node's
    execFileSync('ip', ['-n', ns, 'link', 'add', iface, 'type', 'veth', 'peer', 'name', 'strata-cap1']);
    execFileSync('ip', ['-n', ns, 'link', 'set', iface, 'up']);

    const full = await runWith(ns, iface, caps, dir);
    assert.ok(full.ready, `ready with ${caps.join(', ')}: ${full.stderr}`);
    assert.equal(full.capEff, bitsOf(caps), `CapEff ${full.capEff.toString(16)}: exactly the manifest's capabilities`);
    const probes = (JSON.parse(full.ready) as { probes: Record<string, string> }).probes;
    // the ovs family loads where Open vSwitch is installed or running, ovs_kernel where the openvswitch module is loaded
    const ovs = readOvsUserspace();
    const ovsKernel = OVS_KERNEL.preflight(readPreflightEnv(), {}).ok;
    assert.deepEqual(Object.keys(probes).sort(), ['net_dev', ...(ovs.binary || ovs.pids.length ? ['ovs'] : []), ...(ovsKernel ? ['ovs_kernel'] : []), 'sock_syscalls', 'veth_tc']);
    // a node without the openvswitch module says so once (ovs_kernel off): about the node, not the capabilities
    const nodeSays = /^strata: info: optional probe ovs_kernel off: it cannot run here: the openvswitch kernel module is not loaded.*\n/m;
    assert.equal(nodeSays.test(full.stderr), !ovsKernel);
    // the reason once, not repeated
    assert.equal(full.stderr.split('the openvswitch kernel module is not loaded').length - 1, ovsKernel ? 0 : 1, full.stderr);
    assert.doesNotMatch(full.stderr.replace(nodeSays, ''), /not attached|warning/);
    assert.match(full.filters, /bpf/, `strata's TC filters on ${iface}`);
    assert.equal(full.code, 0, full.stderr);

    const noNetAdmin = await runWith(ns, iface, caps.filter((c) => c !== 'NET_ADMIN'), dir);
    assert.ok(noNetAdmin.ready, `ready without NET_ADMIN: ${noNetAdmin.stderr}`);
    assert.equal(noNetAdmin.capEff & bitsOf(['NET_ADMIN']), 0n);
    assert.match(noNetAdmin.stderr, new RegExp(`TC probe on ${iface} not attached: .*Operation not permitted`));
    assert.equal(noNetAdmin.filters, '');
    assert.equal(noNetAdmin.code, 0, noNetAdmin.stderr);

    // CAP_SYS_ADMIN is only needed for the kernel's BPF run-time statistics (metrics.bpfRunStats,
    // off by default) and setns into a node netns given by path: asked for the statistics without
    // it, the agent traces, and says what it lost
    const noSysAdmin = await runWith(ns, iface, caps.filter((c) => c !== 'SYS_ADMIN'), dir, ['--set', 'metrics.bpfRunStats=true']);
    assert.ok(noSysAdmin.ready, `ready without SYS_ADMIN: ${noSysAdmin.stderr}`);
    assert.equal(noSysAdmin.capEff & bitsOf(['SYS_ADMIN']), 0n);
    assert.match(noSysAdmin.stderr, /BPF run-time statistics unavailable/);
    assert.match(noSysAdmin.filters, /bpf/, `strata's TC filters on ${iface} without SYS_ADMIN`);
    assert.equal(noSysAdmin.code, 0, noSysAdmin.stderr);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
});
