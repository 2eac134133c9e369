// What /proc says about the node's processes: the program behind a pid, for
// `process.executable.name`, and the scan that finds pods' processes (k8s/discovery.ts).
//
// The program behind a pid, for `process.executable.name`: the basename of /proc/<pid>/exe, else of
// argv[0] from /proc/<pid>/cmdline (comm is the name of a thread, and is cut at 15 characters).
// Read once per pid (needs hostPID and CAP_SYS_PTRACE for other users' processes), bounded.
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { LRUCache } from 'lru-cache';
import { type CgroupIdentity, parseProcCgroup } from './cgroup.ts';
import type { ExecutableOf } from './topology.ts';

export function procExecutables(max: number, procRoot = '/proc'): ExecutableOf {
  const cache = new LRUCache<number, string>({ max });
  return (pid: number) => {
    const hit = cache.get(pid);
    if (hit !== undefined) return hit || undefined;
    let name = '';
    try {
      name = basename(readlinkSync(`${procRoot}/${pid}/exe`).replace(/ \(deleted\)$/, ''));
    } catch {
      try {
        const argv0 = readFileSync(`${procRoot}/${pid}/cmdline`, 'latin1').split('\0')[0] ?? '';
        // a process may rewrite its argv into one line ("nginx: worker process")
        name = basename(argv0.split(' ')[0] ?? '').replace(/:$/, '');
      } catch {
        // gone already, or not ours to read: the caller falls back to comm
      }
    }
    cache.set(pid, name);
    return name || undefined;
  };
}

function basename(p: string): string {
  const i = p.lastIndexOf('/');
  return i >= 0 ? p.slice(i + 1) : p;
}

/** One process of the node as the /proc scan saw it. */
export interface ProcEntry {
  pid: number;
  /** the thread-group leader's comm (15 characters at most) */
  comm: string;
  /** pod UID and container ID from its cgroup path, and its cgroup v2 path */
  cgroup: CgroupIdentity;
}

export interface ProcScanStats {
  scans: number;
  /** /proc/<pid> entries read (new processes) */
  reads: number;
  /** processes the last scan did not read because maxProcesses are remembered */
  overLimit: number;
  /** processes remembered now */
  processes: number;
  /** wall time of the scans, total and last */
  scanMsTotal: number;
  lastScanMs: number;
}

/**
 * The processes of the node, by pod. A scan lists /proc (one readdir) and reads only processes it
 * has not seen (their cgroup and comm: two small reads each); processes gone since the last scan
 * are forgotten. A pid reused between two scans keeps the first process's entry until it is gone
 * from a listing, which at procScanIntervalMs (2 s) needs 32768+ forks in between.
 */
export class ProcScanner {
  private readonly procRoot: string;
  private readonly max: number;
  private readonly byPid = new Map<number, ProcEntry>();
  private readonly pods = new Map<string, Map<number, ProcEntry>>();
  private readonly netnsCache = new Map<number, number>();
  private readonly envCache = new Map<number, string | null>();
  private readonly cgroupIds = new Map<string, number | null>();
  private cgroupRootPath: string | undefined;
  private readonly podParent: string;
  readonly stats: ProcScanStats = { scans: 0, reads: 0, overLimit: 0, processes: 0, scanMsTotal: 0, lastScanMs: 0 };

  constructor(o: { procRoot: string; maxProcesses: number; cgroupRoot?: string; podCgroupParent?: string }) {
    this.procRoot = o.procRoot;
    this.podParent = o.podCgroupParent ?? '';
    this.max = o.maxProcesses;
    this.cgroupRootPath = o.cgroupRoot || undefined;
  }

  /** One scan; returns true when processes came or went. */
  scan(): boolean {
    const t0 = performance.now();
    let names: string[];
    try {
      names = readdirSync(this.procRoot);
    } catch {
      return false;
    }
    const seen = new Set<number>();
    let changed = false;
    let over = 0;
    for (const n of names) {
      const c = n.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(n);
      seen.add(pid);
      if (this.byPid.has(pid)) continue;
      if (this.byPid.size >= this.max) {
        over++;
        continue;
      }
      const e = this.read(pid);
      if (!e) continue;
      this.byPid.set(pid, e);
      if (e.cgroup.podUid) {
        let m = this.pods.get(e.cgroup.podUid);
        if (!m) this.pods.set(e.cgroup.podUid, (m = new Map()));
        m.set(pid, e);
      }
      changed = true;
    }
    for (const [pid, e] of this.byPid) {
      if (seen.has(pid)) continue;
      this.byPid.delete(pid);
      this.netnsCache.delete(pid);
      this.envCache.delete(pid);
      if (e.cgroup.podUid) {
        const m = this.pods.get(e.cgroup.podUid);
        m?.delete(pid);
        if (m?.size === 0) this.pods.delete(e.cgroup.podUid);
      }
      changed = true;
    }
    const ms = performance.now() - t0;
    this.stats.scans++;
    this.stats.scanMsTotal += ms;
    this.stats.lastScanMs = ms;
    this.stats.processes = this.byPid.size;
    this.stats.overLimit = over;
    return changed;
  }

  private read(pid: number): ProcEntry | undefined {
    this.stats.reads++;
    try {
      let cgroup = parseProcCgroup(readFileSync(`${this.procRoot}/${pid}/cgroup`, 'latin1'));
      // a pod of another node sharing this kernel: a process like any other outside pods
      if (this.podParent && cgroup.podUid && !(cgroup.v2Path ?? '').startsWith(this.podParent)) cgroup = { v2Path: cgroup.v2Path };
      const comm = readFileSync(`${this.procRoot}/${pid}/comm`, 'latin1').replace(/\n$/, '');
      return { pid, comm, cgroup };
    } catch {
      return undefined; // gone already
    }
  }

  /** A process as the last scan saw it, else read now (started since): not added to the scan's view. */
  lookup(pid: number): ProcEntry | undefined {
    return this.byPid.get(pid) ?? this.read(pid);
  }

  /** the processes of a pod (by the UID its cgroup is named after) */
  podProcs(uid: string): ProcEntry[] {
    const m = this.pods.get(uid);
    return m ? [...m.values()] : [];
  }

  /** UIDs of every pod that has processes */
  podUids(): string[] {
    return [...this.pods.keys()];
  }

  /** every process remembered (the caller filters: proxies outside pods) */
  all(): IterableIterator<ProcEntry> {
    return this.byPid.values();
  }

  /** inode of the process's network namespace, cached while it lives */
  netnsOf(pid: number): number | undefined {
    const hit = this.netnsCache.get(pid);
    if (hit !== undefined) return hit;
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`${this.procRoot}/${pid}/ns/net`));
      if (!m) return undefined;
      const ino = Number(m[1]);
      this.netnsCache.set(pid, ino);
      return ino;
    } catch {
      return undefined;
    }
  }

  /** a path to the process's network namespace (what setns opens) */
  netnsPath(pid: number): string {
    return `${this.procRoot}/${pid}/ns/net`;
  }

  /**
   * One variable of the process's environment (initial environment: what the container was started
   * with), cached while it lives; undefined when unset or unreadable. Only this variable is kept.
   */
  envOf(pid: number, name: string): string | undefined {
    const hit = this.envCache.get(pid);
    if (hit !== undefined) return hit ?? undefined;
    let v: string | null = null;
    try {
      const env = readFileSync(`${this.procRoot}/${pid}/environ`, 'latin1');
      const prefix = `${name}=`;
      for (const kv of env.split('\0')) if (kv.startsWith(prefix)) v = kv.slice(prefix.length) || null;
    } catch {
      // gone, or not ours to read (needs CAP_SYS_PTRACE for other users' processes)
    }
    if (this.envCache.size > this.max) this.envCache.clear();
    this.envCache.set(pid, v);
    return v ?? undefined;
  }

  /**
   * The cgroup v2 id (its directory's inode under the cgroup2 mount) of a v2 path; undefined for the
   * root (a hybrid host whose runtime left v2 alone: every process there shares it), for paths
   * relative to another cgroup namespace, and when no cgroup2 mount is found.
   */
  cgroupIdOf(v2Path: string | undefined): number | undefined {
    if (!v2Path || v2Path === '/' || v2Path.includes('/..')) return undefined;
    const hit = this.cgroupIds.get(v2Path);
    if (hit !== undefined) return hit ?? undefined;
    const root = this.cgroupRoot();
    let id: number | null = null;
    if (root) {
      try {
        id = statSync(`${root}${v2Path}`).ino;
      } catch {
        // the cgroup went away
      }
    }
    if (this.cgroupIds.size > this.max) this.cgroupIds.clear();
    if (id !== null) this.cgroupIds.set(v2Path, id);
    return id ?? undefined;
  }

  /**
   * The cgroup2 mount: our own; or, when procRoot is the node's procfs mounted elsewhere (a pod's
   * /host/proc: a container's own /sys/fs/cgroup shows its own cgroup only), the node's, where its
   * init has it (<procRoot>/1/mounts): under /host (the DaemonSet mounts the node's /sys/fs/cgroup
   * at /host/sys/fs/cgroup), else through <procRoot>/1/root (CAP_SYS_PTRACE; refused on some hosts).
   */
  private cgroupRoot(): string | undefined {
    if (this.cgroupRootPath === undefined) {
      const host = this.procRoot !== '/proc';
      this.cgroupRootPath = '';
      try {
        const mounts = readFileSync(host ? `${this.procRoot}/1/mounts` : '/proc/self/mounts', 'utf8');
        const mp = mounts.split('\n').find((l) => l.split(' ')[2] === 'cgroup2')?.split(' ')[1] ?? '';
        const candidates = !mp ? [] : host ? [`/host${mp}`, `${this.procRoot}/1/root${mp}`] : [mp];
        for (const c of candidates) {
          try {
            readdirSync(c);
            this.cgroupRootPath = c;
            break;
          } catch {
            // not mounted there, or not ours to read
          }
        }
      } catch {
        // no procfs to read the mounts from
      }
    }
    return this.cgroupRootPath || undefined;
  }
}
