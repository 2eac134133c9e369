// The probe families of one agent over the native transport: loads each family's object with
// its knobs and variant, attaches its programs, and turns the filter maps into typed calls.
// Native knows objects and maps by name only; what a family is lives in registry.ts.
import { SAMPLING, STAT_NAMES } from '../events/layout.generated.ts';
import { type Probes, loadNative } from './native.ts';
import { Prefilter, prefilterMask, prefilterSlot, prefilterSlot64 } from './prefilter.ts';
import { type PreflightEnv, readPreflightEnv } from './preflight.ts';
import { FAMILIES, type Preflight, type ProbeFamily, type ProbeSettings, programsOf } from './registry.ts';
import type { PumpOptions, PumpStats, ProgStat, StaleTcFilter, TcAttachment } from '../../../native/index.d.ts';

export type KernelStats = Record<(typeof STAT_NAMES)[number], number>;

/** Probes.stats() (indexed by enum strata_stat) as named counters */
export function kernelStats(v: number[]): KernelStats {
  return Object.fromEntries(STAT_NAMES.map((n, i) => [n, v[i] ?? 0])) as KernelStats;
}

export const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};
export const u64 = (v: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
export const ONE = Buffer.from([1]);

export class ProbeSet {
  readonly native: Probes;
  readonly settings: ProbeSettings;
  readonly env: PreflightEnv;
  /** what each loaded family's preflight said (its variant) */
  readonly preflights = new Map<string, Preflight>();

  constructor(settings: ProbeSettings = {}, env: PreflightEnv = readPreflightEnv()) {
    this.settings = settings;
    this.env = env;
    this.native = new (loadNative().Probes)({ ringBytes: settings.ringBytes });
  }

  preflight(f: ProbeFamily): Preflight {
    return f.preflight(this.env, this.settings);
  }

  /** Loads a family's object (its chosen variant only). Throws a NativeError (stage open/load) or a preflight Error. */
  load(f: ProbeFamily): Preflight {
    const pf = this.preflight(f);
    if (!pf.ok) throw new Error(`${f.name}: ${pf.reason}`);
    this.native.load(f.object, { knobs: f.knobs(this.settings), programs: programsOf(f, pf.variant, this.env).map((p) => p.name) });
    this.preflights.set(f.name, pf);
    return pf;
  }

  /** programs attached now, per family (attach and detach skip what is already so) */
  private readonly attachedProgs = new Map<string, Set<string>>();

  /**
   * Attaches a loaded family's programs that attach at start (not TC: per interface), those not
   * attached yet; `which` limits it (default: all).
   */
  attach(f: ProbeFamily, which: 'all' | 'betweenWindows' = 'all'): void {
    if (f.attach !== 'programs') return;
    const on = this.attachedProgs.get(f.name) ?? new Set<string>();
    this.attachedProgs.set(f.name, on);
    for (const p of programsOf(f, this.preflights.get(f.name)?.variant, this.env)) {
      if (on.has(p.name) || (which === 'betweenWindows' && !p.betweenWindows)) continue;
      this.native.attach(f.object, p.name);
      on.add(p.name);
    }
  }

  /** Detaches a family's start-time programs (they stay loaded, maps and all: attach() again later). */
  detach(f: ProbeFamily): void {
    if (f.attach !== 'programs') return;
    for (const p of programsOf(f, this.preflights.get(f.name)?.variant, this.env)) this.native.detach(f.object, p.name);
    this.attachedProgs.get(f.name)?.clear();
  }

  /**
   * Detaches a windowed family's programs for the time between observation windows (all but those
   * marked betweenWindows). They stop at once; their links are destroyed on a pool thread (a
   * tracepoint waits out RCU grace periods, ~0.1 s each on a VM): attach again only once the
   * promise resolved (to the ms it took).
   */
  detachWindowed(f: ProbeFamily): Promise<number> {
    const on = this.attachedProgs.get(f.name);
    if (f.attach !== 'programs' || !on) return Promise.resolve(0);
    const names = programsOf(f, this.preflights.get(f.name)?.variant, this.env).filter((p) => !p.betweenWindows && on.has(p.name)).map((p) => p.name);
    for (const n of names) on.delete(n);
    return names.length ? this.native.detachAsync(f.object, names) : Promise.resolve(0);
  }

  /** load + attach by family name (tests, bench) */
  open(...names: string[]): this {
    for (const n of names) {
      const f = FAMILIES.find((x) => x.name === n);
      if (!f) throw new Error(`no probe family ${n}`);
      this.load(f);
      this.attach(f);
    }
    return this;
  }

  attachTc(f: ProbeFamily, ifname: string, netns = ''): number {
    const progs = programsOf(f, this.preflights.get(f.name)?.variant);
    const ingress = progs.find((p) => p.hook === 'ingress')?.name;
    const egress = progs.find((p) => p.hook === 'egress')?.name;
    return this.native.attachTc(f.object, ifname, netns, { ingress, egress });
  }

  detachTc(ifname: string, netns = ''): void {
    this.native.detachTc(ifname, netns);
  }

  // filter maps (bpf/sock.bpf.c traced_netns/traced_cgroups, bpf/net_dev.bpf.c netdev_watch),
  // each with its prefilter `<map>_slots` (bpf/include/prefilter.bpf.h, prefilter.ts) kept in step
  netnsAdd(inode: number): void {
    this.filterAdd('traced_netns', undefined, u32(inode), String(inode >>> 0), prefilterSlot(inode, this.prefilterMask()));
  }

  netnsDelete(inode: number): void {
    this.filterDelete('traced_netns', undefined, u32(inode), String(inode >>> 0));
  }

  /** a cgroup v2 id (the inode of its directory); needs filterCgroups */
  cgroupAdd(id: number | bigint): void {
    this.filterAdd('traced_cgroups', undefined, u64(id), String(id), prefilterSlot64(id, this.prefilterMask()));
  }

  cgroupDelete(id: number | bigint): void {
    this.filterDelete('traced_cgroups', undefined, u64(id), String(id));
  }

  /** net_dev observes the device ifindex of the netns with this inode (its prefilter is by ifindex) */
  netdevWatch(netns: number, ifindex: number, object = 'net_dev'): void {
    this.filterAdd('netdev_watch', object, Buffer.concat([u32(netns), u32(ifindex)]), `${netns >>> 0}:${ifindex >>> 0}`, prefilterSlot(ifindex, this.prefilterMask()));
  }

  netdevUnwatch(netns: number, ifindex: number, object = 'net_dev'): void {
    this.filterDelete('netdev_watch', object, Buffer.concat([u32(netns), u32(ifindex)]), `${netns >>> 0}:${ifindex >>> 0}`);
  }

  /** the prefilter of an exact filter map (created on first use; tests read its counts) */
  prefilter(map: string, object?: string): Prefilter {
    this.prefilterState ??= new Map();
    let p = this.prefilterState.get(map);
    if (!p) {
      p = new Prefilter((slot, n) => this.native.mapUpdate(`${map}_slots`, u32(slot), u32(n), object));
      this.prefilterState.set(map, p);
    }
    return p;
  }

  /** lazily made: tests build ProbeSets around a fake native with Object.create */
  private prefilterState?: Map<string, Prefilter>;

  private prefilterMask(): number {
    return prefilterMask(this.settings.prefilterSlots);
  }

  /** exact map first, then the slot; a slot that cannot be written takes the key back out */
  private filterAdd(map: string, object: string | undefined, key: Buffer, id: string, slot: number): void {
    this.native.mapUpdate(map, key, ONE, object);
    try {
      this.prefilter(map, object).add(id, slot);
    } catch (e) {
      this.native.mapDelete(map, key, object);
      throw e;
    }
  }

  /** exact map first: the slot is never 0 while its key is still in the map */
  private filterDelete(map: string, object: string | undefined, key: Buffer, id: string): void {
    this.native.mapDelete(map, key, object);
    this.prefilter(map, object).delete(id);
  }

  /**
   * In-kernel sampling (bpf/include/common.bpf.h, events.h strata_sampling): root messages whose
   * hash is below `shed` (0..2^32-1) are not reported by any family; 0 keeps everything. `gen`
   * voids the per-thread decisions made before it (bump it when shedding starts). `flags`:
   * SAMPLING_FLAG (events.h strata_sampling_flags: observation windows); `window`: bumped as each
   * window opens, so socket and flow state from before the pause starts afresh.
   */
  setSampling(shed: number, gen: number, flags = 0, window = 0): void {
    const v = Buffer.alloc(SAMPLING.SIZE);
    v.writeUInt32LE(shed >>> 0, SAMPLING.shed);
    v.writeUInt32LE(gen >>> 0, SAMPLING.gen);
    v.writeUInt32LE(flags >>> 0, SAMPLING.flags);
    v.writeUInt32LE(window >>> 0, SAMPLING.window);
    this.native.mapUpdate('sampling', u32(0), v);
  }

  linkInfo(ifname: string, netns = ''): { ifindex: number; iflink: number } {
    return loadNative().linkInfo(ifname, netns);
  }

  stats(): KernelStats {
    return kernelStats(this.native.stats());
  }

  start(onBatch: (batch: Buffer, records: number) => void, opts?: PumpOptions): void {
    this.native.start(onBatch, opts);
  }

  stop(): void {
    this.native.stop();
  }

  pumpStats(): PumpStats {
    return this.native.pumpStats();
  }

  enableRunStats(): void {
    this.native.enableRunStats();
  }

  progStats(): ProgStat[] {
    return this.native.progStats();
  }

  attachments(): TcAttachment[] {
    return this.native.attachments();
  }

  cleanupStale(netns?: string): StaleTcFilter[] {
    return this.native.cleanupStale(netns);
  }

  close(): void {
    this.native.close();
  }
}

/** A ProbeSet with the named families loaded and attached (by default: the socket syscalls). */
export function openProbes(settings: ProbeSettings = {}, families: string[] = ['sock_syscalls']): ProbeSet {
  const s = new ProbeSet(settings);
  try {
    return s.open(...families);
  } catch (e) {
    s.close();
    throw e;
  }
}
