// The preflight's reading of attach options, on made-up /sys and tracefs trees: kprobes (PMU or
// kprobe_events), the kernel OVS datapath's module and tracepoints; and what `strata check` makes
// of them: the attach points for socket data, and why an OVS or kprobe feature probe failed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ProbeCheck, attachOptions, explain, readCapabilities } from '../../agent/src/check.ts';
import { EXIT_REGS_HELPERS, type FsView, KPROBE_PMU, btfHasNames, readKprobes, readOvs, readTracefs } from '../../agent/src/probes/preflight.ts';
import { family, programsOf } from '../../agent/src/probes/registry.ts';

/** a file tree given as paths: directories are listed from the paths below them */
function fakeFs(paths: string[]): FsView {
  return {
    exists: (p) => paths.some((x) => x === p || x.startsWith(`${p}/`)),
    list: (p) => [...new Set(paths.filter((x) => x.startsWith(`${p}/`)).map((x) => x.slice(p.length + 1).split('/')[0] as string))],
  };
}
const T = '/sys/kernel/tracing';
const OVS_EVENTS = [`${T}/events/openvswitch/enable`, `${T}/events/openvswitch/filter`];

test('kprobes: a kprobe PMU or tracefs kprobe_events; neither without CONFIG_KPROBES', () => {
  assert.equal(readKprobes(T, fakeFs([`${KPROBE_PMU}/type`])), true);
  assert.equal(readKprobes(T, fakeFs([`${T}/kprobe_events`])), true);
  assert.equal(readKprobes(null, fakeFs([`${T}/kprobe_events`])), false, 'kprobe_events is looked for in the tracefs found');
  assert.equal(readKprobes(T, fakeFs([`${T}/events/syscalls/enable`])), false);
});

test('openvswitch: not loaded; loaded with its tracepoints (6.1+); loaded without them (5.10)', () => {
  assert.deepEqual(readOvs(T, fakeFs([`${T}/events/sock/enable`])), { module: false, tracepoints: [] });
  const recent = readOvs(T, fakeFs(['/sys/module/openvswitch/refcnt', ...OVS_EVENTS,
    `${T}/events/openvswitch/ovs_dp_upcall/id`, `${T}/events/openvswitch/ovs_do_execute_action/id`]));
  assert.deepEqual(recent, { module: true, tracepoints: ['ovs_do_execute_action', 'ovs_dp_upcall'] });
  assert.deepEqual(readOvs(T, fakeFs(['/sys/module/openvswitch/refcnt'])), { module: true, tracepoints: [] });
  // a kernel with OVS built in has no /sys/module entry without parameters, but its tracepoints
  assert.deepEqual(readOvs(T, fakeFs([`${T}/events/openvswitch/ovs_dp_upcall/id`])).module, true);
  assert.deepEqual(readOvs(null, fakeFs(['/sys/module/openvswitch/refcnt'])), { module: true, tracepoints: [] }, 'no tracefs: no tracepoint ids either');
});

const probe = (name: string, ok: boolean, section = ''): ProbeCheck => ({
  name, ok, section, required: false, kind: 'feature', attached: ok, code: ok ? '' : 'ENOENT', errno: ok ? 0 : 2,
  stage: ok ? '' : 'attach', message: ok ? 'loaded and attached' : `attach ${section}: No such file or directory`, reason: '', log: [],
});

test('attach points for socket data: a kind counts when every one of its probes attached', () => {
  const ovs = { module: false, tracepoints: [] };
  const host = [probe('tracepoint', true), probe('tracepoint_sock', true), probe('raw_tp', true), probe('tp_btf', true),
    probe('kprobe', false), probe('fentry', false), probe('kprobe_recvmsg', false), probe('fentry_recvmsg', false)];
  assert.deepEqual(attachOptions(host, ovs).sockData, ['tracepoint', 'raw_tp', 'tp_btf']);
  const vm = host.map((p) => ({ ...p, ok: true }));
  assert.deepEqual(attachOptions(vm, ovs).sockData, ['tracepoint', 'raw_tp', 'tp_btf', 'kprobe', 'fentry']);
  // the send side alone is not enough to take a connection's data from
  const half = vm.map((p) => (p.name === 'fentry_recvmsg' ? { ...p, ok: false } : p));
  assert.deepEqual(attachOptions(half, ovs).sockData, ['tracepoint', 'raw_tp', 'tp_btf', 'kprobe']);
  const withOvs = attachOptions([probe('ovs_dp_upcall', true), probe('ovs_do_execute_action', false)], { module: true, tracepoints: ['ovs_dp_upcall'] });
  assert.deepEqual(withOvs.ovs, { module: true, tracepoints: ['ovs_dp_upcall'], attached: ['ovs_dp_upcall'] });
});

test('why a feature probe failed: OVS module absent, OVS tracepoint absent, no kprobes', () => {
  const ctx = (env: { kprobes: boolean; ovs: { module: boolean; tracepoints: string[] } }) => ({
    tracefs: readTracefs(`tracefs ${T} tracefs rw 0 0\n`, () => true), btf: { path: '/sys/kernel/btf/vmlinux', present: true },
    capabilities: readCapabilities('CapEff:\t000001ffffffffff\n', '6.1.0'), env,
  });
  const upcall = probe('ovs_dp_upcall', false, 'tracepoint/openvswitch/ovs_dp_upcall');
  assert.match(explain(upcall, ctx({ kprobes: true, ovs: { module: false, tracepoints: [] } })), /attach failed with ENOENT: the openvswitch kernel module is not loaded/);
  assert.match(explain(upcall, ctx({ kprobes: true, ovs: { module: true, tracepoints: [] } })), /openvswitch module has no ovs_dp_upcall tracepoint: kprobes on its functions are the fallback/);
  assert.match(explain(upcall, ctx({ kprobes: true, ovs: { module: true, tracepoints: ['ovs_do_execute_action'] } })), /no ovs_dp_upcall tracepoint \(it has ovs_do_execute_action\)/);
  const kp = probe('kprobe_recvmsg', false, 'kprobe/tcp_recvmsg');
  assert.match(explain(kp, ctx({ kprobes: false, ovs: { module: false, tracepoints: [] } })), /no kprobe support .*CONFIG_KPROBES/);
  assert.match(explain(kp, ctx({ kprobes: true, ovs: { module: false, tracepoints: [] } })), /the kprobe on tcp_recvmsg could not be created/);
});

test('BTF enumerator names: whole names in the string section, not prefixes of longer ones', () => {
  const btf = Buffer.from('\0BPF_FUNC_task_pt_regs_x\0BPF_FUNC_get_current_task_btf\0', 'latin1');
  assert.equal(btfHasNames(['BPF_FUNC_get_current_task_btf'], btf), true);
  assert.equal(btfHasNames(['BPF_FUNC_task_pt_regs'], btf), false, 'only a longer name contains it');
  assert.equal(btfHasNames(EXIT_REGS_HELPERS, Buffer.from('\0BPF_FUNC_task_pt_regs\0BPF_FUNC_get_current_task_btf\0', 'latin1')), true);
  assert.equal(btfHasNames(EXIT_REGS_HELPERS, null), false, 'no BTF: the entry programs stay');
});

test('receive entries load only where the exit cannot read the registers (5.10); sends always decide at entry', () => {
  const f = family('sock_syscalls');
  const names = (exitRegs?: boolean) => programsOf(f, 'tracepoint', exitRegs === undefined ? undefined : { exitRegs }).map((p) => p.name);
  const all = names();
  assert.deepEqual(names(false), all, 'without the helpers: every entry and exit');
  const lean = names(true);
  for (const n of ['enter_read', 'enter_recvfrom', 'enter_recvmsg', 'enter_readv', 'enter_accept', 'enter_accept4', 'enter_connect']) {
    assert.ok(all.includes(n) && !lean.includes(n), n);
  }
  for (const n of ['enter_write', 'enter_sendto', 'enter_sendmsg', 'enter_writev', 'enter_sendfile64', 'enter_close', 'exit_read', 'exit_write', 'sock_state']) {
    assert.ok(lean.includes(n), n);
  }
  assert.equal(lean.length, all.length - 7);
  assert.deepEqual(programsOf(f, 'raw_tp', { exitRegs: true }).map((p) => p.name), ['raw_sys_enter', 'raw_sys_exit', 'raw_sock_state']);
});
