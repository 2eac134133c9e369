// What the machine offers, read once and handed to every probe family's preflight: tracefs (for
// tracepoint ids), BTF (for CO-RE), kprobes, and the kernel Open vSwitch datapath's module and
// tracepoints. Plain reads, no BPF: `strata check` and the agent share it. Whether a kprobe or
// fentry program really attaches is only known by trying (check.ts, the feature probes).
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { type OvsUserspaceState, readOvsUserspace } from './ovs.ts';

export const TRACEFS = '/sys/kernel/tracing';
export const DEBUGFS_TRACING = '/sys/kernel/debug/tracing';
export const BTF = '/sys/kernel/btf/vmlinux';

export interface TracefsState {
  /** tracefs mounted at /sys/kernel/tracing (per /proc/mounts) */
  mounted: boolean;
  /** every tracefs mount point in /proc/mounts */
  mountPoints: string[];
  /** tracefs missing at /sys/kernel/tracing but there through debugfs (/sys/kernel/debug/tracing) */
  debugfsFallback: boolean;
  /** where tracepoint ids are read from; null = nowhere */
  path: string | null;
  /** this process can read it (tracefs is usually root-only) */
  accessible: boolean;
  /** no tracefs at all: tracepoints cannot attach, only raw tracepoints can */
  rawTracepointFallbackNeeded: boolean;
}

/** The kernel OVS datapath as tracefs and sysfs show it. */
export interface OvsState {
  /** the openvswitch module is loaded (or built in): the kernel datapath can be in use */
  module: boolean;
  /** its tracepoints (tracefs events/openvswitch/*): ovs_dp_upcall, ovs_do_execute_action where the kernel has them */
  tracepoints: string[];
}

export interface PreflightEnv {
  tracefs: TracefsState;
  btf: boolean;
  /** the kernel offers kprobes: a kprobe PMU or tracefs kprobe_events (CONFIG_KPROBES) */
  kprobes: boolean;
  ovs: OvsState;
  /**
   * a syscall's exit can read its arguments from the task's registers (bpf_task_pt_regs and
   * bpf_get_current_task_btf in the kernel's BTF, 5.15+): receives need no entry program. The
   * same test the BPF object makes when it is loaded (bpf/sock.bpf.c exit_has_regs). Unset: false.
   */
  exitRegs?: boolean;
  /** ovs-vswitchd (userspace datapath) running or installed; absent: not looked at (tests) */
  ovsUserspace?: OvsUserspaceState;
}

/** what readKprobes and readOvs look at, injectable for tests */
export interface FsView {
  exists: (p: string) => boolean;
  /** names in a directory; [] when it cannot be read */
  list: (p: string) => string[];
}

export const hostFs: FsView = {
  exists: existsSync,
  list: (p) => {
    try {
      return readdirSync(p);
    } catch {
      return [];
    }
  },
};

export const KPROBE_PMU = '/sys/bus/event_source/devices/kprobe';

export function readKprobes(tracefs: string | null, fs: FsView = hostFs): boolean {
  return fs.exists(KPROBE_PMU) || (tracefs !== null && fs.exists(`${tracefs}/kprobe_events`));
}

export function readOvs(tracefs: string | null, fs: FsView = hostFs): OvsState {
  // tracefs's per-event directories sit beside the subsystem's enable and filter files
  const tracepoints = tracefs === null ? [] : fs.list(`${tracefs}/events/openvswitch`).filter((n) => n !== 'enable' && n !== 'filter').sort();
  return { module: fs.exists('/sys/module/openvswitch') || tracepoints.length > 0, tracepoints };
}

export function readTracefs(mounts = readFileSync('/proc/mounts', 'utf8'), exists: (p: string) => boolean = existsSync): TracefsState {
  const entries = mounts
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length >= 3)
    // /proc/mounts escapes spaces and friends as octal
    .map((f) => ({ dir: (f[1] as string).replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))), type: f[2] as string }));
  const mountPoints = entries.filter((e) => e.type === 'tracefs').map((e) => e.dir);
  const mounted = mountPoints.includes(TRACEFS);
  // debugfs automounts tracefs at tracing/ on first access
  const debugfs = mountPoints.includes(DEBUGFS_TRACING) || entries.some((e) => e.type === 'debugfs' && e.dir === '/sys/kernel/debug');
  const debugfsFallback = !mounted && debugfs;
  const path = mounted ? TRACEFS : debugfsFallback ? DEBUGFS_TRACING : null;
  const accessible = path !== null && exists(`${path}/events`);
  return { mounted, mountPoints, debugfsFallback, path, accessible, rawTracepointFallbackNeeded: path === null };
}

/**
 * Whether the kernel's BTF names every one of these enumerators (e.g. BPF helper ids
 * BPF_FUNC_task_pt_regs): what CO-RE's bpf_core_enum_value_exists() answers at load. BTF keeps
 * names NUL-terminated in its string section, so a whole-name match is a search for "\0name\0".
 */
export function btfHasNames(names: readonly string[], btf: Buffer | null): boolean {
  if (!btf) return false;
  return names.every((n) => btf.indexOf(`\0${n}\0`, 0, 'latin1') >= 0);
}

export const EXIT_REGS_HELPERS = ['BPF_FUNC_task_pt_regs', 'BPF_FUNC_get_current_task_btf'] as const;

function readBtf(): Buffer | null {
  try {
    return readFileSync(BTF);
  } catch {
    return null;
  }
}

export function readPreflightEnv(): PreflightEnv {
  const tracefs = readTracefs();
  const btf = readBtf();
  return { tracefs, btf: btf !== null, kprobes: readKprobes(tracefs.path), ovs: readOvs(tracefs.path), exitRegs: btfHasNames(EXIT_REGS_HELPERS, btf), ovsUserspace: readOvsUserspace() };
}
