// Typed surface of build/Release/strata_native.node (native/src/addon.cc).

export interface ProbeOptions {
  /** bytes of payload captured per socket syscall: multiple of 8, <= 512 (default 256) */
  sockPayloadCap?: number;
  /** bytes of payload captured per packet event: multiple of 8, 8..128 (default 128) */
  pktPayloadCap?: number;
  /** kernel wakes the consumer only when this much is pending (default 256 KiB) */
  wakeupBytes?: number;
  /** ring buffer size, a power of two multiple of the page size (default 16 MiB) */
  ringBytes?: number;
  /** false: trace every network namespace (default true: only those added with netnsAdd) */
  filterNetns?: boolean;
  /** true: also trace processes of the cgroups added with cgroupAdd, whatever their netns (hostNetwork pods) */
  filterCgroups?: boolean;
}

export interface PumpOptions {
  /** hand a batch to JS once it holds this many bytes (default 1 MiB) */
  batchBytes?: number;
  /** poll timeout: the latency bound when traffic is light (default 10 ms) */
  pollMs?: number;
  /** batches queued for JS before further batches are dropped (counted) (default 64) */
  maxQueued?: number;
}

export interface KernelStats {
  events: number;
  rbDrops: number;
  filtered: number;
  notTcp: number;
  pktSeen: number;
  pktAggregated: number;
  pktNotTcp: number;
  readErrors: number;
}

export interface PumpStats {
  records: number;
  batches: number;
  droppedBatches: number;
  droppedRecords: number;
  polls: number;
}

export interface ProgStat {
  name: string;
  id: number;
  runTimeNs: number;
  runCnt: number;
}

export interface TcAttachment {
  ifname: string;
  netns: string;
  ifindex: number;
}

/** One feature probe of `strata check` (a program of bpf/features.bpf.c tried on its own). */
export interface FeatureProbe {
  /** tracepoint, tracepoint_sock, raw_tp, tp_btf, kprobe, fentry, tc */
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

export declare class Probes {
  /** opens and loads every BPF object (stages open, load) */
  constructor(opts?: ProbeOptions);
  /** attaches every syscall/socket tracepoint; throws NativeError naming the section */
  attachSyscalls(): void;
  /** clsact ingress+egress on ifname inside netns (a /run/netns path; "" = ours); returns ifindex */
  attachTc(ifname: string, netns?: string): number;
  detachTc(ifname: string, netns?: string): void;
  netnsAdd(inode: number): void;
  netnsDelete(inode: number): void;
  /** a cgroup v2 id (the inode of its directory under the cgroup2 mount); needs filterCgroups */
  cgroupAdd(id: number | bigint): void;
  cgroupDelete(id: number | bigint): void;
  /** starts the ring-buffer pump thread; onBatch gets concatenated records */
  start(onBatch: (batch: Buffer, records: number) => void, opts?: PumpOptions): void;
  stop(): void;
  stats(): KernelStats;
  pumpStats(): PumpStats;
  /** turns on kernel BPF run-time statistics (run_time_ns, run_cnt) while this object lives */
  enableRunStats(): void;
  progStats(): ProgStat[];
  attachments(): TcAttachment[];
  /** see the module-level cleanupStale (it needs no loaded object; offered here for convenience) */
  cleanupStale(netns?: string): StaleTcFilter[];
  /** stops the pump, detaches everything, frees the objects; idempotent */
  close(): void;
}

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
