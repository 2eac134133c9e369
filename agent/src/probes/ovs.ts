// The ovs family's user-space half: finds ovs-vswitchd processes in the node's network namespace,
// attaches bpf/ovs.bpf.c's uprobes to the libc each one maps (resolved through /proc/<pid>/maps and
// /proc/<pid>/root, so a containerised OVS works too), reads its bridges and ports from its own
// ovsdb-server (OVSDB JSON-RPC, RFC 7047, on the unix socket named on its command line), and
// follows it: when it exits the probe is reported detached; when one comes back it is attached
// again. Polled, because nothing notifies a process's start.
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import type { OvsPort, OvsView } from '../correlate/ovs.ts';
import type { ProbeSet } from './probe-set.ts';

// (not probe-set.ts's: it imports the registry, which imports this file)
const ONE = Buffer.from([1]);
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};

export const VSWITCHD_COMM = 'ovs-vswitchd';
/** where Debian and upstream install it */
export const VSWITCHD_BINARIES = ['/usr/sbin/ovs-vswitchd', '/usr/local/sbin/ovs-vswitchd'];
const DEFAULT_DB = '/var/run/openvswitch/db.sock';
export const OVS_POLL_MS = 1000;
const OVSDB_TIMEOUT_MS = 2000;

/** the uprobes of one ovs-vswitchd: program, libc function, return probe, variant (undefined: every variant) */
export const OVS_UPROBES: readonly [string, string, boolean, string | undefined][] = [
  ['ovs_rx_enter', 'recvmmsg', false, 'uprobe'],
  ['ovs_rx_exit', 'recvmmsg', true, 'uprobe'],
  ['ovs_tx_enter', 'sendmmsg', false, 'uprobe'],
  ['ovs_flow_new', 'pthread_mutex_init', false, undefined],
];
/** variant "tracepoint": the syscall tracepoints that replace the recvmmsg/sendmmsg uprobes, attached once */
export const OVS_TRACEPOINTS: readonly string[] = ['ovs_rx_enter_tp', 'ovs_rx_exit_tp', 'ovs_tx_enter_tp'];

/** the kernel datapath (bpf/ovs_kernel.bpf.c), variant "tracepoint": the module's tracepoints, as raw tracepoints */
export const OVS_KERNEL_TRACEPOINTS: readonly string[] = ['ovs_kupcall_tp', 'ovs_kaction_tp'];
/** the tracepoints they attach to (tracefs events/openvswitch/), kernel >= 6.0 */
export const OVS_KERNEL_TRACEPOINT_NAMES: readonly string[] = ['ovs_dp_upcall', 'ovs_do_execute_action'];
/** variant "kprobe" (5.10: no such tracepoints): kprobes on ovs_dp_upcall and ovs_execute_actions */
export const OVS_KERNEL_KPROBES: readonly string[] = ['ovs_kupcall_kp', 'ovs_kaction_kp'];

export interface VswitchdProc {
  pid: number;
  /** inode of its network namespace */
  netns: number;
  argv: string[];
}

/** every ovs-vswitchd on the machine (hostPID: the node's) */
export function findVswitchd(proc = '/proc'): VswitchdProc[] {
  const out: VswitchdProc[] = [];
  let names: string[];
  try {
    names = readdirSync(proc);
  } catch {
    return out;
  }
  for (const d of names) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`${proc}/${d}/comm`, 'utf8').trim() !== VSWITCHD_COMM) continue;
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`${proc}/${d}/ns/net`));
      const argv = readFileSync(`${proc}/${d}/cmdline`, 'utf8').split('\0').filter(Boolean);
      out.push({ pid: Number(d), netns: m ? Number(m[1]) : 0, argv });
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return out;
}

/** the libc a process maps, as a path this process can open (through its root) */
export function libcOf(pid: number, proc = '/proc'): string {
  const maps = readFileSync(`${proc}/${pid}/maps`, 'utf8');
  for (const line of maps.split('\n')) {
    const path = line.slice(line.indexOf('/'));
    if (line.includes('/') && /\/libc(\.so\.6|-[\d.]+\.so)$/.test(path)) return `${proc}/${pid}/root${path}`;
  }
  throw Object.assign(new Error(`ovs-vswitchd ${pid} maps no libc (statically linked?): no uprobe target`), { code: 'ENOENT' });
}

/** its database socket: the first non-option argument (unix:PATH), else $OVS_RUNDIR/db.sock, else the default */
export function dbSocketOf(p: VswitchdProc, proc = '/proc'): string {
  const arg = p.argv.slice(1).find((a) => !a.startsWith('-'));
  let path = arg?.startsWith('unix:') ? arg.slice(5) : undefined;
  if (!path) {
    try {
      const env = readFileSync(`${proc}/${p.pid}/environ`, 'utf8').split('\0');
      const rundir = env.find((e) => e.startsWith('OVS_RUNDIR='))?.slice(11);
      path = rundir ? `${rundir}/db.sock` : DEFAULT_DB;
    } catch {
      path = DEFAULT_DB;
    }
  }
  return `${proc}/${p.pid}/root${path}`;
}

type OvsdbValue = unknown;
const uuidsOf = (v: OvsdbValue): string[] => {
  // a set is ["set", [["uuid", u], ...]], a single element ["uuid", u]
  if (!Array.isArray(v)) return [];
  if (v[0] === 'uuid') return [String(v[1])];
  if (v[0] === 'set' && Array.isArray(v[1])) return (v[1] as unknown[][]).filter((x) => x[0] === 'uuid').map((x) => String(x[1]));
  return [];
};

/** interface name -> bridge and OpenFlow port, from ovsdb-server (one transact of three selects) */
export function ovsdbPorts(socket: string, timeoutMs = OVSDB_TIMEOUT_MS): Promise<Map<string, OvsPort>> {
  const req = {
    id: 1, method: 'transact',
    params: ['Open_vSwitch',
      { op: 'select', table: 'Bridge', where: [], columns: ['name', 'ports'] },
      { op: 'select', table: 'Port', where: [], columns: ['_uuid', 'interfaces'] },
      { op: 'select', table: 'Interface', where: [], columns: ['_uuid', 'name', 'ofport'] }],
  };
  return new Promise((resolve, reject) => {
    const s = createConnection(socket);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`ovsdb at ${socket}: no answer in ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('connect', () => s.write(JSON.stringify(req)));
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      let msg: { id?: number; result?: { rows?: Record<string, OvsdbValue>[] }[]; error?: unknown };
      try {
        msg = JSON.parse(buf) as typeof msg;
      } catch {
        return; // not complete yet
      }
      clearTimeout(timer);
      s.destroy();
      if (msg.error || !Array.isArray(msg.result) || msg.result.length < 3) {
        reject(new Error(`ovsdb at ${socket}: ${JSON.stringify(msg.error ?? msg.result).slice(0, 200)}`));
        return;
      }
      const [bridges, ports, ifaces] = msg.result.map((r) => r.rows ?? []) as Record<string, OvsdbValue>[][];
      const ifaceById = new Map((ifaces ?? []).map((r) => [uuidsOf(r._uuid)[0], r]));
      const portById = new Map((ports ?? []).map((r) => [uuidsOf(r._uuid)[0], r]));
      const out = new Map<string, OvsPort>();
      for (const b of bridges ?? []) {
        for (const pu of uuidsOf(b.ports)) {
          for (const iu of uuidsOf(portById.get(pu)?.interfaces)) {
            const i = ifaceById.get(iu);
            if (!i || typeof i.name !== 'string') continue;
            const ofport = typeof i.ofport === 'number' ? i.ofport : -1;
            out.set(i.name, { bridge: String(b.name), ofport });
          }
        }
      }
      resolve(out);
    });
  });
}

interface Attached {
  pid: number;
  links: number[];
  db: string;
  /** the last port listing failed: warn once until it works again */
  dbFailed: boolean;
}

export interface OvsTrackerContext {
  probes: ProbeSet;
  /** inode of the node's netns: the ovs-vswitchd to follow runs there */
  nodeNetnsInode: number;
  view?: OvsView;
  log: (msg: string) => void;
  /** strata_probe_attached{probe="ovs"}: at least one ovs-vswitchd attached */
  attached: (ok: boolean) => void;
  object: string;
  /** the family's variant: which libc functions get a uprobe per process */
  variant: string;
  pollMs?: number;
}

/** Follows the ovs-vswitchd processes of the node netns; see the file comment. */
export class OvsTracker {
  private readonly ctx: OvsTrackerContext;
  private readonly procs = new Map<number, Attached>();
  private timer?: NodeJS.Timeout;
  private polling?: Promise<void>;
  /** pids that failed to attach: warned once */
  private readonly failed = new Set<number>();
  private waitingLogged = false;
  readonly stats = { attaches: 0, detaches: 0, attachFailures: 0 };

  constructor(ctx: OvsTrackerContext) {
    this.ctx = ctx;
  }

  start(): void {
    this.ctx.attached(false);
    void this.poll();
    this.timer = setInterval(() => void this.poll(), this.ctx.pollMs ?? OVS_POLL_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.polling;
    for (const a of [...this.procs.values()]) this.detach(a, 'the agent stops');
  }

  /** pids attached now */
  pids(): number[] {
    return [...this.procs.keys()];
  }

  /** one pass: attach new ones, detach gone ones, refresh every attached one's ports */
  poll(): Promise<void> {
    if (this.polling) return this.polling;
    this.polling = this.pollOnce().finally(() => (this.polling = undefined));
    return this.polling;
  }

  private async pollOnce(): Promise<void> {
    const live = findVswitchd().filter((p) => p.netns === this.ctx.nodeNetnsInode);
    const livePids = new Set(live.map((p) => p.pid));
    for (const a of [...this.procs.values()]) if (!livePids.has(a.pid)) this.detach(a, 'it exited');
    for (const p of live) {
      if (this.procs.has(p.pid) || this.failed.has(p.pid)) continue;
      this.attach(p);
    }
    for (const f of this.failed) if (!livePids.has(f)) this.failed.delete(f);
    if (this.procs.size === 0 && !this.waitingLogged) {
      this.waitingLogged = true;
      this.ctx.log('strata: ovs: no ovs-vswitchd in the node network namespace: the ovs probe waits for one (strata_probe_attached{probe="ovs"} 0)');
    }
    await Promise.all([...this.procs.values()].map((a) => this.refreshPorts(a)));
    this.ctx.attached(this.procs.size > 0);
  }

  private attach(p: VswitchdProc): void {
    const n = this.ctx.probes.native;
    const links: number[] = [];
    try {
      const libc = libcOf(p.pid);
      n.mapUpdate('ovs_pids', u32(p.pid), ONE, this.ctx.object);
      for (const [prog, fn, ret, variant] of OVS_UPROBES) {
        if (variant === undefined || variant === this.ctx.variant) links.push(n.attachUprobe(this.ctx.object, prog, libc, fn, p.pid, ret));
      }
    } catch (e) {
      for (const id of links) n.detachUprobe(id);
      try {
        n.mapDelete('ovs_pids', u32(p.pid), this.ctx.object);
      } catch {
        // not added
      }
      this.failed.add(p.pid);
      this.stats.attachFailures++;
      this.ctx.log(`strata: warning: ovs: cannot attach to ovs-vswitchd ${p.pid}: ${(e as Error).message}`);
      return;
    }
    this.procs.set(p.pid, { pid: p.pid, links, db: dbSocketOf(p), dbFailed: false });
    this.stats.attaches++;
    this.waitingLogged = false;
    this.ctx.log(`strata: ovs: attached to ovs-vswitchd ${p.pid} (${links.length} libc uprobes)`);
  }

  private detach(a: Attached, why: string): void {
    const n = this.ctx.probes.native;
    for (const id of a.links) {
      try {
        n.detachUprobe(id);
      } catch {
        // already gone with the probe set
      }
    }
    try {
      n.mapDelete('ovs_pids', u32(a.pid), this.ctx.object);
    } catch {
      // already gone
    }
    this.procs.delete(a.pid);
    this.ctx.view?.dropProcess(a.pid);
    this.stats.detaches++;
    this.ctx.log(`strata: ovs: ovs-vswitchd ${a.pid} detached: ${why}`);
  }

  private async refreshPorts(a: Attached): Promise<void> {
    try {
      const ports = await ovsdbPorts(a.db);
      if (!this.procs.has(a.pid)) return;
      this.ctx.view?.setPorts(a.pid, ports);
      a.dbFailed = false;
    } catch (e) {
      if (!a.dbFailed) this.ctx.log(`strata: warning: ovs: cannot read the bridges of ovs-vswitchd ${a.pid} from ${a.db}: ${(e as Error).message}`);
      a.dbFailed = true;
    }
  }
}

/** ovs-vswitchd installed or running, for the preflight */
export interface OvsUserspaceState {
  /** pids of running ovs-vswitchd (any netns) */
  pids: number[];
  /** the binary, when installed on this filesystem */
  binary: string | null;
}

export function readOvsUserspace(): OvsUserspaceState {
  let binary: string | null = null;
  for (const b of VSWITCHD_BINARIES) {
    try {
      statSync(b);
      binary = b;
      break;
    } catch {
      // not there
    }
  }
  return { pids: findVswitchd().map((p) => p.pid), binary };
}
