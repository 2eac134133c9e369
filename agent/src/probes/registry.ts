// The probe families, declared once. Each names its BPF object (bpf/<object>.bpf.c), its
// programs and how they attach, whether the agent can run without it, a preflight that says in
// plain words why it cannot run here (or which variant it will use), the event types it emits,
// the kernel counters it increments, and what the agent wires for it once attached (filter maps,
// interfaces). The agent, `strata check`, the metrics and the tests iterate over FAMILIES; nothing
// else lists probes or says "required".
import { EVENT_TYPE, type STAT_NAMES } from '../events/layout.generated.ts';
import type { EventHandler } from '../events/decode.ts';
import type { PodEntry } from '../k8s/pods-file.ts';
import type { PodTopology } from '../k8s/topology.ts';
import { prefilterMask } from './prefilter.ts';
import type { PreflightEnv } from './preflight.ts';
import type { Knobs } from '../../../native/index.d.ts';
import type { ProbeSet } from './probe-set.ts';
import type { OvsView } from '../correlate/ovs.ts';
import { OVS_KERNEL_KPROBES, OVS_KERNEL_TRACEPOINTS, OVS_KERNEL_TRACEPOINT_NAMES, OVS_TRACEPOINTS, OVS_UPROBES, OvsTracker } from './ovs.ts';

export type AttachKind = 'tracepoint' | 'raw_tp' | 'tc' | 'uprobe' | 'kprobe' | 'fentry';
export type StatName = (typeof STAT_NAMES)[number];
export type SyscallAttach = 'auto' | 'tracepoint' | 'raw_tp';

export interface ProgramDesc {
  /** the program's name in the object */
  name: string;
  kind: AttachKind;
  /** the variant it belongs to; undefined: every variant */
  variant?: string;
  /** tc programs: the clsact hook */
  hook?: 'ingress' | 'egress';
  /**
   * only where the kernel cannot give a syscall's exit its arguments back from the task's
   * registers (no bpf_task_pt_regs, before 5.15): a receive's entry, whose only work is to keep
   * them in the inflight map (bpf/sock.bpf.c, exit_has_regs)
   */
  entryMapOnly?: true;
  /**
   * of a windowed family: stays attached between observation windows (a TCP state change, which
   * keeps the socket cache right while the syscall programs are off, and costs nothing per syscall)
   */
  betweenWindows?: true;
}

export interface EventDesc {
  /** hdr.type (EVENT_TYPE) */
  type: number;
  name: string;
  /** the decoder's reader calls this handler method */
  handler: keyof EventHandler;
}

/**
 * The kernel-side knobs. The agent passes every one from its configuration (probes.*, whose schema
 * holds the defaults); a knob left unset keeps the value compiled into the object, which is what
 * tests and benchmarks that open one family rely on.
 */
export interface ProbeSettings {
  /** payload bytes captured per socket syscall: multiple of 8, <= 512 */
  sockPayloadCap?: number;
  /** payload bytes captured per packet event: multiple of 8, 8..128 */
  pktPayloadCap?: number;
  /** the kernel wakes the consumer only past this many pending bytes */
  wakeupBytes?: number;
  /** ring buffer size shared by every family */
  ringBytes?: number;
  /** false: trace every network namespace (true: only those added with netnsAdd) */
  filterNetns?: boolean;
  /** true: also trace processes of the cgroups added with cgroupAdd (hostNetwork pods) */
  filterCgroups?: boolean;
  /** socket syscalls through tracepoints (need tracefs) or raw tracepoints; auto: by tracefs */
  syscallAttach?: SyscallAttach;
  /**
   * slots of the filter maps' prefilters (bpf/include/prefilter.bpf.h): a power of two in
   * 1..4096, 4096 when unset; tests set 1 so that every key shares one slot
   */
  prefilterSlots?: number;
}

export interface Preflight {
  ok: boolean;
  /** plain words: why it cannot run, or how it will run ("" when there is nothing to say) */
  reason: string;
  /** the variant chosen (a family with variants loads only that variant's programs) */
  variant?: string;
}

/**
 * One thing to trace, as discovery (k8s/discovery.ts) finds them while pods come and go: a pod's
 * netns (socket filter), a cgroup (hostNetwork pods, proxies outside pods), an interface of the
 * node (a pod's host veth or an uplink: TC, net_dev on uplinks), a pod's own interface (net_dev).
 */
export type TraceTarget =
  | { kind: 'netns'; inode: number }
  | { kind: 'cgroup'; id: number }
  | { kind: 'iface'; name: string; ifindex: number; uplink: boolean }
  | { kind: 'poddev'; netns: number; ifindex: number; name: string };

/** What a family needs to start or stop tracing one target. */
export interface TrackContext {
  probes: ProbeSet;
  /** netns path of the node's interfaces; "" = the agent's own */
  nodeNetns: string;
  /** inode of that netns */
  nodeNetnsInode: number;
  topology: PodTopology;
  log: (msg: string) => void;
  /** reports one attachment (strata_probe_attached{probe}) */
  attached: (name: string, ok: boolean) => void;
  /** the attachment is gone with its target (its strata_probe_attached series goes too) */
  forget?: (name: string) => void;
  /** where the ovs family reports OVS bridges and ports (the correlator's) */
  ovs?: OvsView;
}

/** What the agent hands a family to wire itself after attach. */
export interface WireContext extends TrackContext {
  /** pods given as a list (tests); the agent hands none: discovery tracks its pods through track() */
  pods: readonly PodEntry[];
  /** the node's uplinks to observe (the agent hands none: discovery tracks them) */
  interfaces: readonly string[];
}

export interface ProbeFamily {
  /** the family's name: strata_probe_attached{probe}, `strata check` rows */
  name: string;
  /** bpf/<object>.bpf.c */
  object: string;
  summary: string;
  /** false: the agent carries on without it (one warning, metric 0) */
  required: boolean;
  programs: ProgramDesc[];
  /**
   * attached only while the agent traces a target of these kinds (with probes.idleDetachS > 0):
   * loaded at start, attached at the first such target, detached a while after the last. For a
   * family every process on the node pays for, traced or not.
   */
  whileTraced?: TraceTarget['kind'][];
  /**
   * shedding by time (probes/windows.ts): between observation windows its programs are detached
   * (but those marked betweenWindows), so nothing on the node pays for them then
   */
  windowed?: true;
  /** how its programs attach: all at start ('programs'), per interface ('tc'), or per process its wire() follows ('process') */
  attach: 'programs' | 'tc' | 'process';
  knobs(s: ProbeSettings): Knobs;
  preflight(env: PreflightEnv, s: ProbeSettings): Preflight;
  events: EventDesc[];
  /** the kernel counters its programs increment (besides events, rbDrops, readErrors) */
  stats: StatName[];
  /** after load and attach: family-wide setup, then the static targets of ctx; failures of single items are warnings */
  wire?(ctx: WireContext): void;
  /** starts (on) or stops tracing one target whose kind the family handles; throws when it cannot */
  track?(ctx: TrackContext, t: TraceTarget, on: boolean): void;
  /** before the probes close: stops what wire() started (timers, per-process attachments) */
  unwire?(ctx: TrackContext): Promise<void>;
}

/** the targets of a static list of pods and uplinks (WireContext), as discovery would find them */
function staticTargets(ctx: WireContext): TraceTarget[] {
  const out: TraceTarget[] = [];
  for (const pod of ctx.pods) {
    if (!pod.hostNetwork && pod.netnsInode) out.push({ kind: 'netns', inode: pod.netnsInode });
    for (const id of pod.cgroupIds ?? []) out.push({ kind: 'cgroup', id });
  }
  return out;
}

/** every object's wakeup knob (bpf/include/common.bpf.h) */
const common = (s: ProbeSettings): Knobs => ({ wakeup_bytes: s.wakeupBytes });

function payloadCap(what: string, v: number | undefined, max: number): number | undefined {
  if (v !== undefined && (v % 8 !== 0 || v <= 0 || v > max)) throw new RangeError(`${what} must be a multiple of 8 in 8..${max} (got ${v})`);
  return v;
}

const SYSCALLS = ['read', 'recvfrom', 'recvmsg', 'readv', 'write', 'sendto', 'sendmsg', 'writev', 'sendfile64', 'accept', 'accept4', 'connect'];
/** syscalls whose entry does work with the exit reading the registers: a send decides its message there */
const SENDS = new Set(['write', 'sendto', 'sendmsg', 'writev', 'sendfile64']);

export const SOCK_SYSCALLS: ProbeFamily = {
  name: 'sock_syscalls',
  object: 'sock',
  summary: 'socket syscalls (accept/connect/read*/write*/sendfile/close) and TCP state changes of traced pods',
  required: true,
  attach: 'programs',
  whileTraced: ['netns', 'cgroup'],
  windowed: true,
  programs: [
    ...SYSCALLS.flatMap((n): ProgramDesc[] => [
      { name: `enter_${n}`, kind: 'tracepoint', variant: 'tracepoint', ...(SENDS.has(n) ? {} : { entryMapOnly: true as const }) },
      { name: `exit_${n}`, kind: 'tracepoint', variant: 'tracepoint' },
    ]),
    { name: 'enter_close', kind: 'tracepoint', variant: 'tracepoint' },
    { name: 'sock_state', kind: 'tracepoint', variant: 'tracepoint', betweenWindows: true },
    { name: 'raw_sys_enter', kind: 'raw_tp', variant: 'raw_tp' },
    { name: 'raw_sys_exit', kind: 'raw_tp', variant: 'raw_tp' },
    { name: 'raw_sock_state', kind: 'raw_tp', variant: 'raw_tp', betweenWindows: true },
  ],
  knobs: (s) => ({
    ...common(s),
    sock_payload_cap: payloadCap('sockPayloadCap', s.sockPayloadCap, 512),
    // unset knobs keep the value compiled into the object (tests open objects with a few knobs)
    filter_netns: s.filterNetns,
    filter_cgroups: s.filterCgroups,
    prefilter_mask: s.prefilterSlots === undefined ? undefined : prefilterMask(s.prefilterSlots),
  }),
  preflight(env, s) {
    const mode = s.syscallAttach ?? 'auto';
    const t = env.tracefs;
    if (!env.btf) return { ok: false, reason: 'the kernel has no BTF (/sys/kernel/btf/vmlinux): the CO-RE programs cannot be relocated' };
    if (mode === 'tracepoint' && !t.accessible) {
      return { ok: false, reason: `probes.syscallAttach is "tracepoint" but tracefs is ${t.path ? `not readable at ${t.path}` : 'not mounted'} (mount -t tracefs tracefs /sys/kernel/tracing, or use "auto"/"raw_tp")` };
    }
    if (mode === 'raw_tp') return { ok: true, variant: 'raw_tp', reason: 'raw tracepoints sys_enter/sys_exit, as probes.syscallAttach says' };
    if (mode === 'tracepoint' || t.accessible) return { ok: true, variant: 'tracepoint', reason: '' };
    return {
      ok: true, variant: 'raw_tp',
      reason: `tracefs is ${t.path ? `not readable at ${t.path}` : 'not mounted at /sys/kernel/tracing nor /sys/kernel/debug/tracing'}: raw tracepoints sys_enter/sys_exit instead (they need no tracefs)`,
    };
  },
  events: [
    { type: EVENT_TYPE.EV_SOCK_DATA, name: 'sock_data', handler: 'onSock' },
    { type: EVENT_TYPE.EV_SOCK_ACCEPT, name: 'sock_accept', handler: 'onSock' },
    { type: EVENT_TYPE.EV_SOCK_CONNECT, name: 'sock_connect', handler: 'onSock' },
    { type: EVENT_TYPE.EV_SOCK_CLOSE, name: 'sock_close', handler: 'onSock' },
    { type: EVENT_TYPE.EV_SOCK_STATE, name: 'sock_state', handler: 'onState' },
  ],
  stats: ['filtered', 'notTcp'],
  wire(ctx) {
    for (const t of staticTargets(ctx)) this.track?.(ctx, t, true);
  },
  track(ctx, t, on) {
    if (t.kind === 'netns') {
      if (on) ctx.probes.netnsAdd(t.inode);
      else ctx.probes.netnsDelete(t.inode);
    } else if (t.kind === 'cgroup') {
      if (on) ctx.probes.cgroupAdd(t.id);
      else ctx.probes.cgroupDelete(t.id);
    }
  },
};

export const VETH_TC: ProbeFamily = {
  name: 'veth_tc',
  object: 'veth_tc',
  summary: "TC clsact ingress+egress on the pods' host veths and the node's uplinks, observe only",
  required: false,
  attach: 'tc',
  programs: [
    { name: 'tc_ingress', kind: 'tc', hook: 'ingress' },
    { name: 'tc_egress', kind: 'tc', hook: 'egress' },
  ],
  knobs: (s) => ({ ...common(s), pkt_payload_cap: payloadCap('pktPayloadCap', s.pktPayloadCap, 128) }),
  preflight: (env) => (env.btf ? { ok: true, reason: '' } : { ok: false, reason: 'the kernel has no BTF (/sys/kernel/btf/vmlinux)' }),
  // tail events come from net_dev too (flow.bpf.h is shared); declared once, here
  events: [{ type: EVENT_TYPE.EV_PKT, name: 'pkt', handler: 'onPkt' }, { type: EVENT_TYPE.EV_TAIL, name: 'tail', handler: 'onTail' }],
  stats: ['pktSeen', 'pktAggregated', 'pktNotTcp'],
  wire(ctx) {
    // filters a previous strata left behind (SIGKILL, OOM kill) on any interface of the node
    try {
      for (const s of ctx.probes.cleanupStale(ctx.nodeNetns)) ctx.log(`strata: removed a stale strata TC filter from ${s.ifname}`);
    } catch (e) {
      ctx.log(`strata: warning: could not look for stale TC filters: ${(e as Error).message}`);
    }
    const ifaces = [...ctx.pods.filter((x) => x.hostVeth).map((x) => x.hostVeth), ...ctx.interfaces];
    for (const ifname of ifaces) {
      try {
        this.track?.(ctx, { kind: 'iface', name: ifname, ifindex: 0, uplink: ctx.interfaces.includes(ifname) }, true);
      } catch (e) {
        // one pod's veth missing must not stop tracing the others
        ctx.log(`strata: warning: TC probe on ${ifname} not attached: ${(e as Error).message}`);
      }
    }
  },
  track(ctx, t, on) {
    if (t.kind !== 'iface') return;
    if (!on) {
      try {
        ctx.probes.detachTc(t.name, ctx.nodeNetns);
      } catch (e) {
        // not attached (an earlier attach failed), or the device is gone with its filters
        if ((e as { code?: string }).code !== 'ENOENT') throw e;
      } finally {
        ctx.topology.removeInterface(t.ifindex);
        ctx.forget?.(`tc:${t.name}`);
      }
      return;
    }
    try {
      const ifindex = ctx.probes.attachTc(this, t.name, ctx.nodeNetns);
      ctx.topology.addInterface(ifindex, t.name);
      ctx.attached(`tc:${t.name}`, true);
    } catch (e) {
      ctx.attached(`tc:${t.name}`, false);
      throw e;
    }
  },
};

export const NET_DEV: ProbeFamily = {
  name: 'net_dev',
  object: 'net_dev',
  summary: "packets at the receive/queue/xmit points of the node's uplinks and each traced pod's own interface",
  required: false,
  attach: 'programs',
  windowed: true,
  programs: [
    { name: 'nd_rx', kind: 'raw_tp' },
    { name: 'nd_queue', kind: 'raw_tp' },
    { name: 'nd_xmit', kind: 'raw_tp' },
  ],
  knobs: (s) => ({ ...common(s), prefilter_mask: s.prefilterSlots === undefined ? undefined : prefilterMask(s.prefilterSlots) }),
  preflight: (env) => (env.btf
    ? { ok: true, reason: '' }
    : { ok: false, reason: 'the kernel has no BTF (/sys/kernel/btf/vmlinux): the skb and net_device fields cannot be relocated' }),
  events: [{ type: EVENT_TYPE.EV_NETDEV, name: 'netdev', handler: 'onNetDev' }],
  stats: ['netdevSeen', 'netdevAggregated', 'flowMisses'],
  wire(ctx) {
    for (const ifname of ctx.interfaces) {
      try {
        this.track?.(ctx, { kind: 'iface', name: ifname, ifindex: 0, uplink: true }, true);
      } catch (e) {
        // a missing uplink is already the TC probe's one warning
        if ((e as { code?: string }).code !== 'ENODEV') ctx.log(`strata: warning: net_dev cannot watch ${ifname}: ${(e as Error).message}`);
      }
    }
    // a pod's own interface is its host veth's peer: IFLA_LINK of the host veth, in the pod's netns
    for (const pod of ctx.pods) {
      if (pod.hostNetwork || !pod.hostVeth) continue;
      try {
        const { iflink } = ctx.probes.linkInfo(pod.hostVeth, ctx.nodeNetns);
        // CNI names the pod end CNI_IFNAME, eth0 unless configured otherwise (the lab too)
        this.track?.(ctx, { kind: 'poddev', netns: pod.netnsInode, ifindex: iflink, name: 'eth0' }, true);
      } catch (e) {
        ctx.log(`strata: warning: net_dev cannot watch the interface of pod ${pod.name}: ${(e as Error).message}`);
      }
    }
  },
  track(ctx, t, on) {
    if (t.kind === 'iface' && t.uplink) {
      // uplinks only: a pod's host veth is the same device as its peer's pair, watched on the pod side
      if (!on) {
        netdevUnwatch(ctx.probes, ctx.nodeNetnsInode, t.ifindex);
        ctx.forget?.(`net_dev:${t.name}`);
        return;
      }
      try {
        const ifindex = t.ifindex || ctx.probes.linkInfo(t.name, ctx.nodeNetns).ifindex;
        netdevWatch(ctx.probes, ctx.nodeNetnsInode, ifindex);
        ctx.topology.addInterface(ifindex, t.name, ctx.nodeNetnsInode);
        ctx.attached(`net_dev:${t.name}`, true);
        ctx.log(`strata: net_dev watches uplink ${t.name}`);
      } catch (e) {
        ctx.attached(`net_dev:${t.name}`, false);
        throw e;
      }
    } else if (t.kind === 'poddev') {
      if (on) {
        netdevWatch(ctx.probes, t.netns, t.ifindex);
        ctx.topology.addInterface(t.ifindex, t.name, t.netns);
        const pod = ctx.topology.podByNetns(t.netns);
        ctx.log(`strata: net_dev watches ${pod?.name ? `${pod.name}'s` : `netns ${t.netns}'s`} interface ${t.name}`);
      } else {
        netdevUnwatch(ctx.probes, t.netns, t.ifindex);
        ctx.topology.removeInterface(t.ifindex, t.netns);
      }
    }
  },
};

/** net_dev observes the device ifindex of the netns with this inode (bpf/net_dev.bpf.c netdev_watch) */
export function netdevWatch(p: ProbeSet, netns: number, ifindex: number): void {
  p.netdevWatch(netns, ifindex, NET_DEV.object);
}

export function netdevUnwatch(p: ProbeSet, netns: number, ifindex: number): void {
  p.netdevUnwatch(netns, ifindex, NET_DEV.object);
}

const ovsTrackers = new WeakMap<ProbeSet, OvsTracker>();

export const OVS: ProbeFamily = {
  name: 'ovs',
  object: 'ovs',
  summary: 'Open vSwitch userspace datapath: flow misses in ovs-vswitchd (its recvmmsg/sendmmsg, a libc uprobe); the bridge crossing itself comes from veth_tc on its ports',
  required: false,
  attach: 'process',
  programs: [
    ...OVS_TRACEPOINTS.map((name): ProgramDesc => ({ name, kind: 'tracepoint', variant: 'tracepoint' })),
    ...OVS_UPROBES.map(([name, , , variant]): ProgramDesc => ({ name, kind: 'uprobe', variant })),
  ],
  knobs: common,
  preflight(env) {
    const u = env.ovsUserspace;
    if (!u) return { ok: false, reason: 'not looked for: no ovs-vswitchd information in this environment' };
    if (u.pids.length === 0 && !u.binary) return { ok: false, reason: 'no ovs-vswitchd found: no such process running and not installed (/usr/sbin/ovs-vswitchd); the node has no Open vSwitch userspace datapath' };
    const why = u.pids.length === 0 ? `${u.binary} is installed but not running: attached when it starts` : '';
    // the syscall tracepoints cost ovs-vswitchd far less than uprobes on the same libc calls
    if (env.tracefs.accessible) return { ok: true, variant: 'tracepoint', reason: why };
    return { ok: true, variant: 'uprobe', reason: [why, 'tracefs is not readable: recvmmsg/sendmmsg through libc uprobes instead of the syscall tracepoints (dearer for ovs-vswitchd)'].filter(Boolean).join('; ') };
  },
  events: [{ type: EVENT_TYPE.EV_OVS_UPCALL, name: 'ovs_upcall', handler: 'onOvsUpcall' }],
  stats: ['ovsUpcalls'],
  wire(ctx) {
    const variant = ctx.probes.preflights.get(this.name)?.variant ?? 'uprobe';
    // the tracepoints are node-wide (filtered by ovs_pids in the kernel); uprobes per process
    if (variant === 'tracepoint') for (const p of OVS_TRACEPOINTS) ctx.probes.native.attach(this.object, p);
    const t = new OvsTracker({
      probes: ctx.probes, nodeNetnsInode: ctx.nodeNetnsInode, view: ctx.ovs, log: ctx.log, object: this.object, variant,
      attached: (ok) => ctx.attached(this.name, ok),
    });
    ovsTrackers.set(ctx.probes, t);
    t.start();
  },
  async unwire(ctx) {
    await ovsTrackers.get(ctx.probes)?.stop();
    ovsTrackers.delete(ctx.probes);
  },
};

/**
 * The kernel datapath (bpf/ovs_kernel.bpf.c): its upcalls and their return, node-wide. The bridge
 * and ports of the `ovs` hop still come from the ovs family's tracker (ovs-vswitchd's ovsdb), which
 * runs in both datapaths.
 */
export const OVS_KERNEL: ProbeFamily = {
  name: 'ovs_kernel',
  object: 'ovs_kernel',
  summary: 'Open vSwitch kernel datapath: flow misses sent to ovs-vswitchd (upcalls) and their return, from the openvswitch module',
  required: false,
  attach: 'programs',
  programs: [
    { name: 'ovs_kexec_enter', kind: 'kprobe' },
    { name: 'ovs_kexec_exit', kind: 'kprobe' },
    ...OVS_KERNEL_TRACEPOINTS.map((name): ProgramDesc => ({ name, kind: 'raw_tp', variant: 'tracepoint' })),
    ...OVS_KERNEL_KPROBES.map((name): ProgramDesc => ({ name, kind: 'kprobe', variant: 'kprobe' })),
  ],
  knobs: common,
  preflight(env) {
    if (!env.btf) return { ok: false, reason: 'the kernel has no BTF (/sys/kernel/btf/vmlinux): the skb fields cannot be relocated' };
    if (!env.ovs.module) {
      return { ok: false, reason: 'the openvswitch kernel module is not loaded: no kernel OVS datapath on this node (looked at when the agent starts: a module loaded later needs a restart)' };
    }
    if (!env.kprobes) return { ok: false, reason: 'the kernel offers no kprobes (CONFIG_KPROBES): the packet coming back from ovs-vswitchd (ovs_packet_cmd_execute) has no tracepoint' };
    const missing = OVS_KERNEL_TRACEPOINT_NAMES.filter((n) => !env.ovs.tracepoints.includes(n));
    if (missing.length === 0) return { ok: true, variant: 'tracepoint', reason: 'openvswitch tracepoints ovs_dp_upcall, ovs_do_execute_action; kprobe on ovs_packet_cmd_execute' };
    return {
      ok: true, variant: 'kprobe',
      reason: `${env.tracefs.accessible ? `this kernel's openvswitch module has no ${missing.join(', ')} tracepoint` : 'tracefs is not readable: the openvswitch tracepoints cannot be listed'}: kprobes on ovs_dp_upcall and ovs_execute_actions instead (and on ovs_packet_cmd_execute)`,
    };
  },
  events: [{ type: EVENT_TYPE.EV_OVS_KUPCALL, name: 'ovs_kupcall', handler: 'onOvsUpcall' }],
  stats: ['ovsKupcalls', 'ovsKreturns'],
};

/** the ovs family's tracker of a probe set (tests) */
export const ovsTracker = (p: ProbeSet): OvsTracker | undefined => ovsTrackers.get(p);

/** In load order: the required family first, so that its failure stops the agent before anything else loads. */
export const FAMILIES: readonly ProbeFamily[] = [SOCK_SYSCALLS, VETH_TC, NET_DEV, OVS, OVS_KERNEL];

/** Objects built from bpf/ that are no agent family: features.bpf.o is `strata check`'s own feature probes. */
export const NON_AGENT_OBJECTS: readonly string[] = ['features'];

export function family(name: string): ProbeFamily {
  const f = FAMILIES.find((x) => x.name === name || x.object === name);
  if (!f) throw new Error(`no probe family ${name}`);
  return f;
}

/**
 * the programs of a family that load for a variant; with `env`, those its kernel needs (without
 * it: all of them, which is always correct, an entry program the kernel does not need returns at once)
 */
export function programsOf(f: ProbeFamily, variant?: string, env?: Pick<PreflightEnv, 'exitRegs'>): ProgramDesc[] {
  return f.programs.filter((p) => (p.variant === undefined || p.variant === variant) && !(p.entryMapOnly && env?.exitRegs));
}

/** every program name the agent may load (as bpftool shows them: 15 characters at most) */
export function allProgramNames(): string[] {
  return FAMILIES.flatMap((f) => f.programs.map((p) => p.name.slice(0, 15)));
}
