// What the machine offers, read once and handed to every probe family's preflight: tracefs (for
// tracepoint ids) and BTF (for CO-RE). Plain reads, no BPF: `strata check` and the agent share it.
import { existsSync, readFileSync } from 'node:fs';

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

export interface PreflightEnv {
  tracefs: TracefsState;
  btf: boolean;
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

export function readPreflightEnv(): PreflightEnv {
  return { tracefs: readTracefs(), btf: existsSync(BTF) };
}
