// `strata check`: can the agent run here, and which probes will attach? Kernel, BTF, tracefs
// and capabilities are read; probes are not guessed but tried: each program of
// bpf/features.bpf.o is loaded and attached on its own, and every probe family of the registry
// is put through its preflight, loaded and attached as the agent would (then everything is
// detached and freed).
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { machine, release, version as kernelVersion } from 'node:os';
import { parseArgs } from 'node:util';
import { EXIT_CHECK, EXIT_OK, EXIT_USAGE, STRATA_ERR_USAGE, StrataError } from './errors.ts';
import { isNativeError, loadNative } from './probes/native.ts';
import { BTF, KPROBE_PMU, type OvsState, type PreflightEnv, TRACEFS, type TracefsState, readPreflightEnv, readTracefs } from './probes/preflight.ts';
import { ProbeSet } from './probes/probe-set.ts';
import { FAMILIES, type ProbeFamily, SOCK_SYSCALLS, programsOf } from './probes/registry.ts';
import type { FeatureProbe } from '../../native/index.d.ts';

export { readTracefs };

export interface CapabilityState {
  name: string;
  bit: number;
  have: boolean;
  /** the agent cannot run without it (given the kernel version and the other capabilities) */
  required: boolean;
  neededFor: string;
}

/**
 * A probe family of the registry (tried as the agent would) or a feature probe (native
 * probeFeatures), whether the agent needs it, and why it failed.
 */
export interface ProbeCheck extends FeatureProbe {
  /** a family (sock_syscalls, veth_tc, net_dev) or a feature (FEATURES) */
  name: string;
  required: boolean;
  /** why it failed, in plain words ("" when ok) */
  reason: string;
  /** families only: "family" (features: "feature") */
  kind: 'family' | 'feature';
  /** families only: the variant the preflight chose (sock_syscalls: tracepoint | raw_tp) and why */
  variant?: string;
  note?: string;
}

export interface CheckReport {
  /** the agent can run: every required piece is there */
  ok: boolean;
  kernel: { release: string; version: string; machine: string };
  btf: { path: string; present: boolean };
  tracefs: TracefsState;
  capabilities: {
    /** CapEff of /proc/self/status, hex as printed there */
    effective: string;
    list: CapabilityState[];
    /** the required ones are all there */
    sufficient: boolean;
    missing: string[];
  };
  probes: ProbeCheck[];
  attachOptions: AttachOptions;
  /** required pieces that are missing, in plain words (empty when ok) */
  missing: string[];
}

/**
 * What this kernel accepted, for choosing attach points at run time: where the socket family can
 * take its data, and what the kernel Open vSwitch datapath offers.
 */
export interface AttachOptions {
  /** the attach kinds whose feature probes all attached: tracepoint, raw_tp, tp_btf, kprobe, fentry (kprobe/fentry: on tcp_sendmsg and tcp_recvmsg) */
  sockData: string[];
  ovs: OvsState & {
    /** the openvswitch tracepoints a BPF program attached to */
    attached: string[];
  };
}

/** The feature probes of bpf/features.bpf.c (native/src/features.cc tries them in this order). */
export const FEATURES = ['tracepoint', 'tracepoint_sock', 'raw_tp', 'tp_btf', 'kprobe', 'fentry', 'kprobe_recvmsg', 'fentry_recvmsg', 'ovs_dp_upcall', 'ovs_do_execute_action', 'tc'] as const;
/** attach kind -> the feature probes that must all attach for the socket family to use it */
const SOCK_DATA_FEATURES: Record<string, string[]> = {
  tracepoint: ['tracepoint', 'tracepoint_sock'], raw_tp: ['raw_tp'], tp_btf: ['tp_btf'], kprobe: ['kprobe', 'kprobe_recvmsg'], fentry: ['fentry', 'fentry_recvmsg'],
};
const OVS_TRACEPOINTS = ['ovs_dp_upcall', 'ovs_do_execute_action'];

export function attachOptions(probes: readonly Pick<ProbeCheck, 'name' | 'ok'>[], ovs: OvsState): AttachOptions {
  const ok = (n: string) => probes.some((p) => p.name === n && p.ok);
  return {
    sockData: Object.entries(SOCK_DATA_FEATURES).filter(([, need]) => need.every(ok)).map(([kind]) => kind),
    ovs: { ...ovs, attached: OVS_TRACEPOINTS.filter(ok).sort() },
  };
}

const CAPS: { name: string; bit: number; neededFor: string }[] = [
  { name: 'CAP_BPF', bit: 39, neededFor: 'loading BPF programs and maps (kernel 5.8+; before, CAP_SYS_ADMIN)' },
  { name: 'CAP_PERFMON', bit: 38, neededFor: 'attaching tracepoints and reading kernel memory from BPF (kernel 5.8+; before, CAP_SYS_ADMIN)' },
  { name: 'CAP_NET_ADMIN', bit: 12, neededFor: 'TC filters on pod veths and uplinks (optional probes)' },
  { name: 'CAP_SYS_ADMIN', bit: 21, neededFor: "entering the node's netns (node.netns); stands in for CAP_BPF/CAP_PERFMON" },
  { name: 'CAP_SYS_PTRACE', bit: 19, neededFor: "reading other processes' /proc/<pid>/ns (pod discovery)" },
  { name: 'CAP_DAC_READ_SEARCH', bit: 2, neededFor: "reading other users' /proc and /sys entries" },
  { name: 'CAP_SYS_RESOURCE', bit: 24, neededFor: 'raising RLIMIT_MEMLOCK for BPF maps (kernels before 5.11 only)' },
];

/** the feature probes the chosen socket-syscall variant needs */
const REQUIRED_FEATURES: Record<string, string[]> = { tracepoint: ['tracepoint', 'tracepoint_sock'], raw_tp: ['raw_tp'] };

function kernelAtLeast(rel: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return true;
  const [a, b] = [Number(m[1]), Number(m[2])];
  return a > major || (a === major && b >= minor);
}

export function readCapabilities(status = readFileSync('/proc/self/status', 'utf8'), rel = release()): CheckReport['capabilities'] {
  const hex = /^CapEff:\s*([0-9a-f]+)/im.exec(status)?.[1] ?? '0';
  const eff = BigInt(`0x${hex}`);
  const has = (bit: number) => ((eff >> BigInt(bit)) & 1n) === 1n;
  const sysAdmin = has(21);
  const modern = kernelAtLeast(rel, 5, 8);
  const list = CAPS.map((c) => {
    let required = false;
    if (c.name === 'CAP_BPF' || c.name === 'CAP_PERFMON') required = modern && !sysAdmin;
    if (c.name === 'CAP_SYS_ADMIN') required = !modern; // before 5.8 nothing else will do
    if (c.name === 'CAP_SYS_RESOURCE') required = !kernelAtLeast(rel, 5, 11);
    return { name: c.name, bit: c.bit, have: has(c.bit), required, neededFor: c.neededFor };
  });
  const missing = list.filter((c) => c.required && !c.have).map((c) => c.name);
  return { effective: hex, list, sufficient: missing.length === 0, missing };
}

export function runCheck(): CheckReport {
  const rel = release();
  const kernel = { release: rel, version: kernelVersion(), machine: machine() };
  const env = readPreflightEnv();
  const btf = { path: BTF, present: env.btf };
  const tracefs = env.tracefs;
  const capabilities = readCapabilities(undefined, rel);
  const probes = tryProbes(env);
  for (const p of probes) if (!p.ok && !p.reason) p.reason = explain(p, { tracefs, capabilities, btf, env });
  const missing: string[] = [];
  if (!btf.present) missing.push(`BTF: ${BTF} is missing: strata's CO-RE programs need a kernel built with CONFIG_DEBUG_INFO_BTF`);
  if (!capabilities.sufficient) missing.push(`capabilities: missing ${capabilities.missing.join(', ')}`);
  if (tracefs.path && !tracefs.accessible && SOCK_SYSCALLS.preflight(env, {}).variant === 'tracepoint') {
    missing.push(`tracefs: mounted at ${tracefs.path} but this process cannot read it (run as root)`);
  }
  for (const p of probes) if (p.required && !p.ok) missing.push(`probe ${p.name}: ${p.reason}`);
  return { ok: missing.length === 0, kernel, btf, tracefs, capabilities, probes, attachOptions: attachOptions(probes, env.ovs), missing };
}

function tryProbes(env: PreflightEnv): ProbeCheck[] {
  let native;
  try {
    native = loadNative();
  } catch (e) {
    const reason = `the native addon could not be loaded (npm run build): ${(e as Error).message.split('\n')[0]}`;
    const fail = (name: string, required: boolean, kind: ProbeCheck['kind']): ProbeCheck => ({
      name, section: '', required, kind, ok: false, attached: false, code: 'ENOENT', errno: 2, stage: 'open', message: reason, reason, log: [],
    });
    return [...FAMILIES.map((f) => fail(f.name, f.required, 'family')), ...FEATURES.map((n) => fail(n, false, 'feature'))];
  }
  const families = FAMILIES.map((f) => tryFamily(f, env));
  const variant = families.find((f) => f.name === SOCK_SYSCALLS.name)?.variant ?? 'tracepoint';
  const needed = new Set(REQUIRED_FEATURES[variant] ?? []);
  const features = native.probeFeatures().map((f): ProbeCheck => ({ ...f, required: needed.has(f.name), reason: '', kind: 'feature' }));
  return [...families, ...features];
}

/** What the agent does with a family: preflight, load (its variant), attach what attaches at start. */
function tryFamily(f: ProbeFamily, env: PreflightEnv): ProbeCheck {
  const pf = f.preflight(env, {});
  const progs = programsOf(f, pf.variant, env);
  const kinds = [...new Set(progs.map((p) => p.kind))].join('+');
  const r: ProbeCheck = {
    name: f.name, kind: 'family', section: `${f.object}.bpf.o: ${progs.length} ${kinds} programs`, required: f.required,
    ok: false, attached: false, code: '', errno: 0, stage: '', message: '', reason: '', log: [], variant: pf.variant, note: pf.reason,
  };
  if (!pf.ok) {
    Object.assign(r, { code: 'ENOTSUP', errno: 95, stage: 'open', message: pf.reason, reason: pf.reason });
    return r;
  }
  let p: ProbeSet | undefined;
  try {
    p = new ProbeSet({}, env);
    p.load(f);
    p.attach(f);
    r.ok = true;
    r.attached = f.attach === 'programs';
    r.message = f.attach === 'programs'
      ? `${f.summary}: loads and attaches${pf.variant ? ` (${pf.variant})` : ''}`
      : `${f.summary}: loads (attached per ${f.attach === 'process' ? 'ovs-vswitchd process' : 'interface'} by the agent)`;
  } catch (e) {
    if (isNativeError(e)) Object.assign(r, { code: e.code, errno: e.errno, stage: e.stage, message: e.message, log: e.log });
    else Object.assign(r, { code: 'EUNKNOWN', stage: 'open', message: (e as Error).message });
  } finally {
    p?.close();
  }
  return r;
}

/** Why a probe failed, in plain words, from what failed (code, stage) and what the machine shows. */
export function explain(p: ProbeCheck, ctx: Pick<CheckReport, 'tracefs' | 'capabilities' | 'btf'> & { env: Pick<PreflightEnv, 'kprobes' | 'ovs'> }): string {
  const caps = ctx.capabilities;
  const what = `${p.stage} failed with ${p.code}`;
  if ((p.code === 'EPERM' || p.code === 'EACCES') && !caps.sufficient) {
    return `${what}: not permitted: missing ${caps.missing.join(', ')} (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)`;
  }
  if (!ctx.btf.present && (p.stage === 'open' || p.stage === 'load')) return `${what}: the kernel has no BTF (${BTF}) for CO-RE relocations`;
  // the function or tracepoint a feature probe attaches to: the last part of its section
  const target = p.section.slice(p.section.lastIndexOf('/') + 1);
  switch (p.name) {
    case 'kprobe':
    case 'kprobe_recvmsg':
      if (!ctx.env.kprobes) {
        return `${what}: this kernel has no kprobe support (no kprobe PMU in ${KPROBE_PMU.slice(0, KPROBE_PMU.lastIndexOf('/'))}, no kprobe_events in tracefs: built without CONFIG_KPROBES)`;
      }
      return `${what}: the kprobe on ${target} could not be created: ${p.message}`;
    case 'fentry':
    case 'fentry_recvmsg':
      if (p.stage === 'load' && caps.sufficient) {
        const held = caps.list.filter((c) => c.have && /BPF|PERFMON|SYS_ADMIN/.test(c.name)).map((c) => c.name).join(', ');
        const ftrace = ftraceRestriction(ctx.tracefs.path);
        return `${what}: the kernel refuses fentry programs although the process holds ${held}: BPF trampolines (function tracing) are unavailable or restricted on this kernel${ftrace ? ` (${ftrace})` : ''}`;
      }
      if (p.code === 'ENOTSUPP' || p.code === 'EOPNOTSUPP') return `${what}: this kernel has no BPF trampoline support for fentry`;
      return `${what}: fentry on ${target} is not available: ${p.message}`;
    case 'ovs_dp_upcall':
    case 'ovs_do_execute_action':
      if (!ctx.env.ovs.module) return `${what}: the openvswitch kernel module is not loaded: no kernel OVS datapath on this node (OVS's userspace datapath needs none)`;
      if (!ctx.env.ovs.tracepoints.includes(target)) {
        return `${what}: this kernel's openvswitch module has no ${target} tracepoint${ctx.env.ovs.tracepoints.length ? ` (it has ${ctx.env.ovs.tracepoints.join(', ')})` : ''}: kprobes on its functions are the fallback`;
      }
      return `${what}: ${p.message}`;
    case 'tracepoint':
    case 'tracepoint_sock':
    case 'sock_syscalls':
      if (ctx.tracefs.rawTracepointFallbackNeeded) {
        return `${what}: tracefs is not mounted (mount -t tracefs tracefs ${TRACEFS}); tracepoint ids are read from it (the agent uses raw tracepoints instead)`;
      }
      return `${what}: ${p.message}`;
    case 'tp_btf':
      return `${what}: BTF-typed raw tracepoints need kernel 5.5+ with BTF: ${p.message}`;
    default:
      return `${what}: ${p.message}`;
  }
}

/** Why function tracing looks locked down, if it does: fentry trampolines ride on ftrace. */
function ftraceRestriction(tracefs: string | null): string | undefined {
  if (!tracefs) return undefined;
  const f = `${tracefs}/available_filter_functions`;
  if (!existsSync(f)) return `no ${f}: kernel built without function tracing`;
  let fd: number | undefined;
  try {
    fd = openSync(f, 'r');
    readSync(fd, Buffer.alloc(1));
    return undefined;
  } catch (e) {
    return `reading ${f} fails with ${(e as NodeJS.ErrnoException).code ?? 'an error'}`;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function formatCheck(r: CheckReport): string {
  const lines: string[] = [`strata check: kernel ${r.kernel.release} (${r.kernel.machine})`, ''];
  const w = Math.max(16, ...r.probes.map((p) => p.name.length));
  const row = (ok: boolean | 'warn', name: string, text: string) =>
    lines.push(`  ${(ok === true ? 'ok' : ok === 'warn' ? 'warn' : 'MISSING').padEnd(8)} ${name.padEnd(w)} ${text}`);
  row(r.btf.present, 'BTF', r.btf.present ? r.btf.path : `${r.btf.path} missing: the kernel needs CONFIG_DEBUG_INFO_BTF`);
  const t = r.tracefs;
  if (t.path && !t.accessible) row(false, 'tracefs', `mounted at ${t.path} but not readable by this process (run as root)`);
  else if (t.mounted) row(true, 'tracefs', `mounted at ${TRACEFS}; the raw tracepoint fallback is not needed`);
  else if (t.path) row('warn', 'tracefs', `not mounted at ${TRACEFS}; reachable through debugfs at ${t.path}`);
  else row('warn', 'tracefs', `not mounted: the socket syscalls use raw tracepoints instead (mount -t tracefs tracefs ${TRACEFS} for tracepoints)`);
  const have = r.capabilities.list.filter((c) => c.have).map((c) => c.name);
  const lacking = r.capabilities.list.filter((c) => !c.have);
  row(
    r.capabilities.sufficient ? (lacking.length ? 'warn' : true) : false,
    'capabilities',
    `${have.length ? have.join(' ') : 'none of the relevant ones'}${lacking.length ? `; without ${lacking.map((c) => `${c.name}${c.required ? ' (required)' : ''}`).join(', ')}` : ''}`,
  );
  for (const c of lacking) lines.push(`  ${''.padEnd(8)} ${''.padEnd(w)}   ${c.name}: ${c.neededFor}`);
  for (const p of r.probes) {
    const kind = p.required ? 'required' : 'optional';
    row(p.ok ? true : p.required ? false : 'warn', p.name, p.ok ? `${kind}: ${p.section}: ${p.message}` : `${kind}: ${p.section ? `${p.section}: ` : ''}${p.reason}`);
    if (p.ok && p.note) lines.push(`  ${''.padEnd(8)} ${''.padEnd(w)}   ${p.note}`);
  }
  const opts = r.attachOptions;
  lines.push('', `  attach points for socket data: ${opts.sockData.join(', ') || 'none'}${opts.sockData.some((k) => k === 'kprobe' || k === 'fentry') ? ' (kprobe, fentry: tcp_sendmsg and tcp_recvmsg)' : ''}`);
  lines.push(`  kernel openvswitch datapath: ${opts.ovs.module
    ? `module loaded; tracepoints ${opts.ovs.tracepoints.join(', ') || 'none'}${opts.ovs.tracepoints.length ? `, attached: ${opts.ovs.attached.join(', ') || 'none'}` : ''}`
    : 'module not loaded'}`);
  lines.push('');
  const optionalMissing = r.probes.filter((p) => !p.ok && !p.required).map((p) => p.name);
  if (r.ok) {
    lines.push(`The agent can run here.${optionalMissing.length ? ` Optional probes unavailable: ${optionalMissing.join(', ')}.` : ''}`);
  } else {
    lines.push('The agent cannot run here:');
    for (const m of r.missing) lines.push(`  - ${m}`);
  }
  return lines.join('\n');
}

export const CHECK_USAGE = `usage: strata check [--json]
  Preflight: kernel, BTF, tracefs, capabilities, and which probes load and attach here (each is
  tried, then detached). Needs the same privileges as the agent.
    --json   print the report as JSON
  Exit code 0 when the agent can run, 5 when a required piece is missing.`;

export function runCheckCommand(argv: string[]): number {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true }));
  } catch (e) {
    throw new StrataError(STRATA_ERR_USAGE, `${(e as Error).message}\n${CHECK_USAGE}`, EXIT_USAGE);
  }
  if (values.help) {
    process.stdout.write(`${CHECK_USAGE}\n`);
    return EXIT_OK;
  }
  const report = runCheck();
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatCheck(report)}\n`);
  return report.ok ? EXIT_OK : EXIT_CHECK;
}
