// The kernel matrix: the agent built on this host, run unchanged on Debian's own kernels (5.10,
// 6.1, 6.12, 7.x) in the project's VM (scripts/vm.sh, lab/vm.ts; qemu TCG). In each guest
// (test/vm/matrix-job.sh): `modprobe openvswitch`, `strata check --json`, then every probe family
// loaded, attached and fired by an HTTP exchange in a namespace (test/vm/guest-families.ts).
// Asserted per kernel: check says the agent can run; each family loads, attaches and delivers
// every kind of event its traffic gives; what check reports about kprobe and fentry agrees with
// the kernel's own config (CONFIG_KPROBES, trampolines), and about OVS with tracefs after the
// modprobe, and the kernel datapath family's variant with them. The check's report, rendered as
// `strata check` prints it, plus those facts, is kept per kernel in
// test/fixtures/kernels/<kernel>.txt with volatile fields normalised (release, counts);
// a change is a failure with a diff (STRATA_UPDATE_FIXTURES=1 rewrites them).
// Under CI=true a missing piece (not root, no network for a cold build) fails; elsewhere it skips.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type CheckReport, formatCheck } from '../../agent/src/check.ts';
import { VM_BOOT_ALLOWANCE_MS, type VmKernel, runInVm, vmKernels } from '../../lab/vm.ts';
import { gate } from '../helpers/kernel.ts';
import { prepareVm } from '../helpers/vm.ts';
import { EXPECTED, type GuestReport } from './guest-report.ts';

const FIXTURES = new URL('../fixtures/kernels/', import.meta.url);
const JOB = readFileSync(new URL('matrix-job.sh', import.meta.url), 'utf8');
/**
 * The job's deadline in the guest. Measured under TCG on this 2-vCPU machine: 29-43 s with other
 * work at load 2.5-3.5, 56-73 s at load 7-9 (strata check 16-47 s, most of it the verifier on
 * sock.bpf.o; the families 13-43 s); four times the slowest for a busier machine.
 */
const JOB_TIMEOUT_MS = 300_000;
const KERNELS = await vmKernels();
const OVS_TRACEPOINTS = ['ovs_dp_upcall', 'ovs_do_execute_action'];

const lines = (s: string | undefined) => (s ?? '').split('\n').filter(Boolean);

/** what the fixture keeps: the report as `strata check` prints it, and the facts, normalised */
function fixtureText(kernel: string, rep: CheckReport, fam: GuestReport, ovsBefore: string[], ovsAfter: string[]): string {
  const probe = (n: string) => rep.probes.find((p) => p.name === n);
  const attaches = (n: string) => (probe(n)?.ok ? 'attaches' : `no (${probe(n)?.code ?? 'not probed'} at ${probe(n)?.stage || '?'})`);
  const events = (f: GuestReport['families'][number]) => {
    const want = EXPECTED[f.name] ?? [];
    const seen = Object.keys(f.events).filter((k) => (f.events[k] ?? 0) > 0);
    return [...want.filter((k) => seen.includes(k)), ...seen.filter((k) => !want.includes(k)).sort()].join(', ') || 'none';
  };
  const tp = (l: string[]) => l.filter((n) => n !== 'enable' && n !== 'filter').join(', ') || 'none';
  const out = [
    `# kernel ${kernel} in scripts/vm.sh's VM, after modprobe openvswitch (test/vm/kernel-matrix.test.ts)`,
    '',
    formatCheck(rep).split(rep.kernel.release).join('<release>'),
    '',
    '# facts',
    `openvswitch tracepoints: before modprobe ${tp(ovsBefore)}; after ${tp(ovsAfter)}`,
    `kprobe: tcp_sendmsg ${attaches('kprobe')}; tcp_recvmsg ${attaches('kprobe_recvmsg')}`,
    `fentry: tcp_sendmsg ${attaches('fentry')}; tcp_recvmsg ${attaches('fentry_recvmsg')}`,
    ...fam.families.map((f) => `${f.name}${f.variant ? ` (${f.variant})` : ''}: ${f.loaded ? 'loads' : `does not load (${f.error?.code})`}${f.loaded ? (f.attached ? ', attaches' : `, does not attach (${f.error?.code})`) : ''}; events: ${events(f)}`),
  ];
  return `${out.join('\n')}\n`;
}

describe('kernel matrix: the agent on Debian kernels in the VM', () => {
  let built: VmKernel[] = [];
  let why: string | undefined;
  before(async () => {
    ({ built, why } = await prepareVm(KERNELS));
  });

  for (const kernel of KERNELS) {
    test(`Debian ${kernel}: check passes, the families load, attach and fire; kprobe/fentry/OVS facts as the kernel says`, { timeout: JOB_TIMEOUT_MS + VM_BOOT_ALLOWANCE_MS + 60_000 }, async (t) => {
      if (!gate(t, why)) return;
      const k = built.find((b) => b.kernel === kernel);
      assert.ok(k, `vm.sh build reported no ${kernel}`);
      const r = await runInVm({ kernel, script: JOB, timeoutMs: JOB_TIMEOUT_MS });
      t.diagnostic(`${kernel} (${k.release}): ${Math.round(r.durationMs / 1000)} s, guest up at ${r.bootS} s; ${lines(r.files.times).join(', ')}`);
      const ctx = `\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}\n--- files ---\n${JSON.stringify(r.files, null, 1).slice(0, 4000)}`;
      assert.equal(r.exitCode, 0, `the job failed${ctx}`);

      // strata check: the agent can run, on the release the VM booted
      assert.equal(r.files['check.rc']?.trim(), '0', `strata check exited ${r.files['check.rc']}:${r.files['check.err']}${ctx}`);
      const rep = JSON.parse(r.files['check.json'] ?? '') as CheckReport;
      assert.equal(rep.ok, true, rep.missing.join('; '));
      assert.equal(rep.kernel.release, k.release);

      // the families: loaded, attached, and every kind of event the exchange gives arrived
      const fam = JSON.parse(r.files['families.json'] ?? '') as GuestReport;
      assert.equal(fam.release, k.release);
      for (const f of fam.families) {
        assert.ok(f.loaded && f.attached, `${f.name}: ${JSON.stringify(f.error)}`);
        for (const kind of EXPECTED[f.name] ?? []) assert.ok((f.events[kind] ?? 0) > 0, `${f.name}: no ${kind} event (${JSON.stringify(f.events)})`);
      }
      assert.equal(r.files['families.rc']?.trim(), '0', r.files['families.err']);

      // kprobe and fentry on tcp_sendmsg/tcp_recvmsg as the kernel's config allows them
      const config = readFileSync(join(k.dir, 'config'), 'utf8');
      const y = (opt: string) => new RegExp(`^${opt}=y$`, 'm').test(config);
      const ok = (n: string) => rep.probes.find((p) => p.name === n)?.ok;
      for (const n of ['kprobe', 'kprobe_recvmsg']) assert.equal(ok(n), y('CONFIG_KPROBES'), `${n} vs CONFIG_KPROBES`);
      const trampolines = y('CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS') && y('CONFIG_BPF_JIT');
      for (const n of ['fentry', 'fentry_recvmsg']) assert.equal(ok(n), trampolines, `${n} vs CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS + CONFIG_BPF_JIT`);
      assert.equal(rep.attachOptions.sockData.includes('kprobe'), y('CONFIG_KPROBES'));
      assert.equal(rep.attachOptions.sockData.includes('fentry'), trampolines);

      // OVS: a module in every Debian kernel; its tracepoints as tracefs lists them after the modprobe
      assert.match(config, /^CONFIG_OPENVSWITCH=m$/m);
      assert.equal(r.files['modprobe.rc']?.trim(), '0', r.files['modprobe.err']);
      const before = lines(r.files['ovs-before.txt']);
      const after = lines(r.files['ovs-after.txt']).filter((n) => n !== 'enable' && n !== 'filter');
      assert.deepEqual(before, [], 'no openvswitch tracepoints before the module is loaded');
      assert.equal(rep.attachOptions.ovs.module, true);
      assert.deepEqual(rep.attachOptions.ovs.tracepoints, after);
      assert.deepEqual(rep.attachOptions.ovs.attached, OVS_TRACEPOINTS.filter((n) => after.includes(n)).sort(), 'each tracepoint there attaches, none other');
      for (const n of OVS_TRACEPOINTS.filter((x) => !after.includes(x))) {
        assert.match(rep.probes.find((p) => p.name === n)?.reason ?? '', /openvswitch module has no .* tracepoint/);
      }
      // the kernel datapath's family: the module's tracepoints where it has both, else kprobes (5.10)
      const ovsKernel = fam.families.find((f) => f.name === 'ovs_kernel');
      assert.equal(ovsKernel?.variant, OVS_TRACEPOINTS.every((n) => after.includes(n)) ? 'tracepoint' : 'kprobe', 'ovs_kernel variant');

      // the fixture: structure, not timings
      const text = fixtureText(kernel, rep, fam, lines(r.files['ovs-before.txt']), lines(r.files['ovs-after.txt']));
      const file = new URL(`${kernel}.txt`, FIXTURES);
      if (process.env.STRATA_UPDATE_FIXTURES === '1') writeFileSync(file, text);
      let kept = '';
      try {
        kept = readFileSync(file, 'utf8');
      } catch {
        assert.fail(`no fixture ${file.pathname}: run with STRATA_UPDATE_FIXTURES=1 to write it`);
      }
      assert.equal(text, kept, `${kernel}: strata check or the facts changed (STRATA_UPDATE_FIXTURES=1 rewrites test/fixtures/kernels/${kernel}.txt)`);
    });
  }
});
