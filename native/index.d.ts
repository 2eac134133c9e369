// Typed surface of build/Release/strata_native.node (native/src/addon.cc).

export interface ProbeOptions {
  /** size of the ring buffer every object shares, a power of two multiple of the page size (default 16 MiB) */
  ringBytes?: number;
}

/** A load-time constant of an object (`const volatile` in .rodata), by variable name. */
export type Knobs = Record<string, number | boolean | bigint | undefined>;

export interface LoadOptions {
  /** written before the verifier runs; undefined values keep the object's default */
  knobs?: Knobs;
  /** only these programs load (the others' autoload is turned off); default: every program */
  programs?: string[];
}

/** An object built into the addon (bpf/<name>.bpf.c), opened without loading. */
export interface ObjectListing {
  name: string;
  programs: { name: string; section: string }[];
  /** its maps, internal ones (.rodata, .bss) left out */
  maps: string[];
}

export interface PumpOptions {
  /** hand a batch to JS once it holds this many bytes (default 1 MiB) */
  batchBytes?: number;
  /** poll timeout: the latency bound when traffic is light (default 10 ms) */
  pollMs?: number;
  /** batches queued for JS before further batches are dropped (counted) (default 64) */
  maxQueued?: number;
}

export interface PumpStats {
  records: number;
  batches: number;
  droppedBatches: number;
  droppedRecords: number;
  polls: number;
}

export interface ProgStat {
  /** the object it belongs to (bpf/<object>.bpf.c) */
  object: string;
  name: string;
  id: number;
  runTimeNs: number;
  runCnt: number;
}

export interface TcAttachment {
  object: string;
  ifname: string;
  netns: string;
  ifindex: number;
}

/** One feature probe of `strata check` (a program of bpf/features.bpf.c tried on its own). */
export interface FeatureProbe {
  /** tracepoint, tracepoint_sock, raw_tp, tp_btf, kprobe, fentry (both on tcp_sendmsg), kprobe_recvmsg, fentry_recvmsg, ovs_dp_upcall, ovs_do_execute_action, tc */
  name: string;
  /** the program's section, e.g. "kprobe/tcp_sendmsg" */
  section: string;
  /** loaded, and attached when it has an attach point (tc: loaded only) */
  ok: boolean;
  attached: boolean;
  /** errno name ("" when ok), e.g. "ENOENT", "EPERM", "ENOTSUPP" */
  code: string;
  errno: number;
  /** where it failed: "open" | "load" | "attach" ("" when ok) */
  stage: string;
  message: string;
  /** libbpf's warnings while trying (verifier log tail on load errors) */
  log: string[];
}

/** An interface whose leftover strata TC filters were removed. */
export interface StaleTcFilter {
  ifname: string;
  ifindex: number;
}

/** Errors thrown by the addon carry these fields. */
export interface NativeError extends Error {
  /** errno name, e.g. "EPERM", "ENOENT" */
  code: string;
  errno: number;
  stage: 'open' | 'load' | 'attach' | 'detach' | 'map';
  /** what was being opened/attached: object, section, interface@netns, map */
  target: string;
  /** libbpf's last warning/info lines (verifier log tail on load errors) */
  log: string[];
}

/**
 * The BPF objects of one agent, opened by name. The ring buffer (`events`) and the counter array
 * (`stats`) are created by the constructor and shared by every object loaded afterwards.
 */
export declare class Probes {
  /** creates the shared maps (stage open) */
  constructor(opts?: ProbeOptions);
  /** opens the embedded object, writes its knobs, shares the maps and loads it (stages open, load) */
  load(object: string, opts?: LoadOptions): void;
  /** attaches one loaded program as its section says (tracepoint, raw_tp, ...); throws naming the section */
  attach(object: string, program: string): void;
  /** destroys one program's links (the program stays loaded, attach() again later); not attached: nothing to do */
  detach(object: string, program: string): void;
  /**
   * detach() of several programs whose links are destroyed on a libuv pool thread (a tracepoint's
   * detach waits for RCU grace periods: ~0.1 s per program on a VM); resolves with the ms it took.
   * The links leave the object at once: wait for the promise before attaching them again, else the
   * old and the new links both run for a while.
   */
  detachAsync(object: string, programs: string[]): Promise<number>;
  /**
   * clsact ingress+egress on ifname inside netns (a /run/netns path; "" = ours) with two programs of
   * a loaded object (default tc_ingress/tc_egress); returns the ifindex
   */
  attachTc(object: string, ifname: string, netns?: string, programs?: { ingress?: string; egress?: string }): number;
  detachTc(ifname: string, netns?: string): void;
  /**
   * a uprobe (retprobe: uretprobe) of a loaded program on the function `func` of the ELF file
   * `binary` (a path as this process sees it, e.g. /proc/<pid>/root/...), for process `pid` only
   * (-1: every process); returns an id for detachUprobe. NativeError stage "attach".
   */
  attachUprobe(object: string, program: string, binary: string, func: string, pid: number, retprobe: boolean): number;
  /** detaches what attachUprobe returned the id of (close() detaches every one) */
  detachUprobe(id: number): void;
  /** updates a map by name (in `object`, or the first loaded object that has it) */
  mapUpdate(map: string, key: Buffer, value: Buffer, object?: string): void;
  mapDelete(map: string, key: Buffer, object?: string): void;
  /**
   * Runs a loaded program once on `packet` (BPF_PROG_TEST_RUN) and drains the ring-buffer records
   * it produced (throws EBUSY while the pump runs). retval is what the program returned.
   */
  testRun(object: string, program: string, packet: Buffer): { retval: number; records: Buffer };
  /** names of the loaded objects, in load order */
  loaded(): string[];
  /** starts the ring-buffer pump thread; onBatch gets concatenated records (the batch's own memory, not a copy) */
  start(onBatch: (batch: Buffer, records: number) => void, opts?: PumpOptions): void;
  stop(): void;
  /** kernel counters summed over CPUs, indexed by enum strata_stat (STAT_NAMES in layout.generated.ts) */
  stats(): number[];
  pumpStats(): PumpStats;
  /** turns on kernel BPF run-time statistics (run_time_ns, run_cnt) while this object lives */
  enableRunStats(): void;
  progStats(): ProgStat[];
  attachments(): TcAttachment[];
  /** see the module-level cleanupStale (it needs no loaded object; offered here for convenience) */
  cleanupStale(netns?: string): StaleTcFilter[];
  /** stops the pump, detaches everything, frees the objects and the shared maps; idempotent */
  close(): void;
}

/** Every object built into the addon with its programs and sections; opens, never loads: no privilege needed. */
export declare function listObjects(): ObjectListing[];

/** ifindex of ifname in netns (a path; "" = ours) and its IFLA_LINK (a veth's peer ifindex, in the peer's netns) */
export declare function linkInfo(ifname: string, netns?: string): { ifindex: number; iflink: number };

/**
 * Every interface of netns (a path; "" = ours), an RTM_GETLINK dump: kind is IFLA_INFO_KIND (veth,
 * bridge, ...; absent for plain devices), iflink IFLA_LINK when it differs from ifindex (a veth's
 * peer ifindex, in the peer's netns). Throws NativeError (stage "attach") for netns errors.
 */
export declare function listLinks(netns?: string): { ifindex: number; name: string; kind?: string; iflink?: number }[];

export declare const eventsVersion: number;

/**
 * Loads each program of features.bpf.o on its own (autoload of that one only) and attaches it,
 * then detaches and frees it: which attach mechanisms this kernel and these privileges allow.
 * Never throws for a failing probe: failures are entries with ok=false.
 */
export declare function probeFeatures(): FeatureProbe[];

/**
 * Removes strata's TC filters (fixed handle/priority 0x57a7, ingress and egress) left on any
 * interface of the netns (a /run/netns path; "" = ours) by an agent that died without
 * detaching (SIGKILL, OOM). Other filters and the clsact qdisc stay. Call it before attaching:
 * it would also remove a live agent's filters in that netns. Returns the interfaces cleaned;
 * throws NativeError (stage "attach" for netns errors, "detach" otherwise).
 */
export declare function cleanupStale(netns?: string): StaleTcFilter[];

/** CLOCK_REALTIME and CLOCK_MONOTONIC (what BPF timestamps use), read back to back, in ns */
export declare function clockPair(): { realtimeNs: bigint; monotonicNs: bigint };

/**
 * glibc malloc_trim(0) on a libuv pool thread: the free memory of every malloc arena back to the
 * kernel. Resolves with the microseconds it took, or false where the C library has no malloc_trim.
 */
export declare function mallocTrim(): Promise<number | false>;
