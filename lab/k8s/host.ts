// What a kubelet, containerd and the CNI plugins change on the host, recorded before the node
// starts and put back at teardown: sysctls (the kubelet's setupKernelTunables sets kernel.panic,
// kernel.panic_on_oops, vm.overcommit_memory...; the bridge plugin sets ip_forward) and paths
// some of them write whatever they are told (/var/lib/kubelet/device-plugins and /var/log/pods
// are constants in kubelet 1.20; containerd's shim sockets live under /run/containerd whatever
// its state dir; libcni caches results under /var/lib/cni). The snapshot is a JSON file in the
// cluster's state dir, so a later process can restore it after a crash.
import { existsSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** sysctls the node's components set (kubelet: pkg/kubelet/cm/container_manager_linux.go; CNI bridge: ip_forward) */
export const NODE_SYSCTLS = [
  'kernel.panic',
  'kernel.panic_on_oops',
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
  'net.ipv4.ip_forward',
  'net.ipv4.conf.all.forwarding',
  'net.ipv6.conf.all.forwarding',
] as const;

/** host paths the node's components write regardless of the state dir they are given */
export const NODE_PATHS = [
  '/var/lib/kubelet',
  '/var/log/pods',
  '/var/log/containers',
  '/run/containerd',
  '/var/lib/cni',
  '/etc/cni',
  '/opt/cni',
  '/opt/containerd',
  '/var/lib/containerd',
] as const;

/**
 * mounts the node needs shared: the DaemonSet mounts /sys/fs/bpf with HostToContainer propagation,
 * which containerd refuses from a private mount ("is not a shared or slave mount"). systemd makes
 * every mount shared on a real node; this machine has no systemd, so its mounts are private.
 */
export const SHARED_MOUNTS = ['/sys/fs/bpf'] as const;

export interface PathRecord {
  path: string;
  existed: boolean;
  /** entries directly under it before the node started (only when it existed) */
  entries: string[];
}

export interface HostSnapshot {
  sysctls: Record<string, string>;
  paths: PathRecord[];
  /** iptables-save (filter/nat/mangle rules, no counters) before: compared, not restored */
  iptables: string;
  /** propagation of SHARED_MOUNTS before (findmnt: private, shared, slave, ...) */
  propagation?: Record<string, string>;
}

export function propagationOf(mountpoint: string): string | undefined {
  try {
    return execFileSync('findmnt', ['-n', '-o', 'PROPAGATION', '--mountpoint', mountpoint], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** makes SHARED_MOUNTS shared (call after snapshotHost: restoreHost puts the old propagation back) */
export function shareMounts(): void {
  for (const m of SHARED_MOUNTS) {
    const p = propagationOf(m);
    if (p && p !== 'shared') execFileSync('mount', ['--make-shared', m], { stdio: 'ignore' });
  }
}

const sysctlFile = (name: string) => `/proc/sys/${name.replaceAll('.', '/')}`;

export function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(sysctlFile(name), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function iptablesRules(): string {
  try {
    const out = execFileSync('iptables-save', [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
    // comments carry a timestamp; chain lines carry counters
    return out.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, '')).join('\n');
  } catch {
    return '';
  }
}

export function snapshotHost(): HostSnapshot {
  const sysctls: Record<string, string> = {};
  for (const s of NODE_SYSCTLS) {
    const v = readSysctl(s);
    if (v !== undefined) sysctls[s] = v;
  }
  const paths = NODE_PATHS.map((path): PathRecord => {
    const existed = existsSync(path);
    return { path, existed, entries: existed ? readdirSync(path) : [] };
  });
  const propagation: Record<string, string> = {};
  for (const m of SHARED_MOUNTS) {
    const p = propagationOf(m);
    if (p) propagation[m] = p;
  }
  return { sysctls, paths, iptables: iptablesRules(), propagation };
}

export function saveSnapshot(file: string, snap: HostSnapshot): void {
  writeFileSync(file, `${JSON.stringify(snap, null, 2)}\n`);
}

export function loadSnapshot(file: string): HostSnapshot | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as HostSnapshot;
  } catch {
    return undefined;
  }
}

/** mount points at or under `dir` (host mount namespace), deepest first */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    // mountinfo escapes space, tab, newline and backslash as octal
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** unmounts everything at or under dir; returns what is still mounted */
export function unmountUnder(dir: string): string[] {
  for (let round = 0; round < 3; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return [];
    for (const p of points) {
      try {
        execFileSync('umount', [p], { stdio: 'ignore' });
      } catch {
        try {
          // busy (a process still has it open): detach it from the tree now
          execFileSync('umount', ['-l', p], { stdio: 'ignore' });
        } catch {
          // reported by the caller
        }
      }
    }
  }
  return mountsUnder(dir);
}

/** rm -rf that never crosses into another filesystem (a bind mount under it stays untouched) */
export function removeTree(path: string): void {
  if (!existsSync(path)) return;
  execFileSync('rm', ['-rf', '--one-file-system', path], { stdio: 'ignore' });
}

/**
 * Puts the host back as the snapshot found it. Returns what could not be restored (empty = all).
 * Call after every process of the node is gone.
 */
export function restoreHost(snap: HostSnapshot): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(snap.sysctls)) {
    if (readSysctl(name) === value) continue;
    try {
      writeFileSync(sysctlFile(name), value);
    } catch (e) {
      problems.push(`sysctl ${name}=${value}: ${(e as Error).message}`);
    }
  }
  for (const rec of snap.paths) {
    if (!existsSync(rec.path)) continue;
    const left = unmountUnder(rec.path);
    if (left.length) {
      problems.push(`still mounted under ${rec.path}: ${left.join(', ')}`);
      continue;
    }
    try {
      if (!rec.existed) {
        removeTree(rec.path);
      } else {
        const before = new Set(rec.entries);
        for (const e of readdirSync(rec.path)) if (!before.has(e)) removeTree(join(rec.path, e));
      }
    } catch (e) {
      problems.push(`${rec.path}: ${(e as Error).message}`);
    }
  }
  for (const [m, p] of Object.entries(snap.propagation ?? {})) {
    if (propagationOf(m) === p) continue;
    const flag = { private: '--make-private', shared: '--make-shared', slave: '--make-slave', unbindable: '--make-unbindable' }[p];
    try {
      if (!flag) throw new Error(`unknown propagation ${p}`);
      execFileSync('mount', [flag, m], { stdio: 'ignore' });
    } catch (e) {
      problems.push(`propagation of ${m} back to ${p}: ${(e as Error).message}`);
    }
  }
  const rules = iptablesRules();
  if (rules !== snap.iptables) problems.push('iptables rules differ from before the node started (not restored: look at iptables-save)');
  return [...problems, ...verifyHost(snap)];
}

/**
 * What differs from the snapshot now (empty = the host is as it was). restoreHost() runs it
 * while the node lock is still held: another node starting right after would change all this.
 */
export function verifyHost(snap: HostSnapshot): string[] {
  const diff: string[] = [];
  for (const [name, value] of Object.entries(snap.sysctls)) {
    const now = readSysctl(name);
    if (now !== value) diff.push(`sysctl ${name} is ${now}, was ${value}`);
  }
  for (const rec of snap.paths) {
    const exists = existsSync(rec.path);
    if (exists !== rec.existed) {
      diff.push(`${rec.path} ${exists ? 'exists' : 'is gone'}, ${rec.existed ? 'was there' : 'was not there'}`);
    } else if (exists) {
      const before = new Set(rec.entries);
      const added = readdirSync(rec.path).filter((e) => !before.has(e));
      if (added.length) diff.push(`${rec.path}: new entries ${added.join(', ')}`);
    }
  }
  for (const [m, p] of Object.entries(snap.propagation ?? {})) {
    const now = propagationOf(m);
    if (now !== p) diff.push(`propagation of ${m} is ${now}, was ${p}`);
  }
  return diff;
}

const CGROUP_ROOT = '/sys/fs/cgroup';

/** the cgroup hierarchies mounted here (v1 controllers, named hierarchies, the v2 unified one) */
export function cgroupHierarchies(): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    const fstype = f[sep + 1];
    const point = f[4] ?? '';
    if ((fstype === 'cgroup' || fstype === 'cgroup2') && point.startsWith(CGROUP_ROOT)) out.push(point);
  }
  return out;
}

/** cgroup directories named `name` directly under each hierarchy's root */
export function cgroupDirs(name: string): string[] {
  return cgroupHierarchies().map((h) => join(h, name)).filter((d) => existsSync(d));
}

/** pids in the cgroup subtree `dir` (any hierarchy) */
export function cgroupPids(dir: string): number[] {
  const pids = new Set<number>();
  const walk = (d: string) => {
    try {
      for (const p of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (p) pids.add(Number(p));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      // removed while walking
    }
  };
  walk(dir);
  return [...pids];
}

/** removes a cgroup subtree, deepest first (only empty cgroups can go); returns what is left */
export function removeCgroupTree(dir: string): string[] {
  const left: string[] = [];
  const walk = (d: string) => {
    let subdirs: string[];
    try {
      subdirs = readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => join(d, e.name));
    } catch {
      return;
    }
    for (const s of subdirs) walk(s);
    try {
      rmdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') left.push(d);
    }
  };
  walk(dir);
  return left;
}

/** removes a file if it is there */
export function removeFile(path: string): void {
  rmSync(path, { force: true });
}
