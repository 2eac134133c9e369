// The attach loop: what a discovery source says about the pods of this node (the API server or a
// pods file), what /proc says about their processes, and what rtnetlink says about the node's
// interfaces become one topology (which the correlator reads) and one set of trace targets (which
// the probe families apply: netns and cgroup filter maps, TC on veths, net_dev watches).
//
// Level-triggered: every reconcile computes the whole desired state and applies the difference, so
// a missed event costs at most one procScanIntervalMs. It runs on a source change, on every link
// event (a new veth: TC within milliseconds, before any pod is known behind it), every
// procScanIntervalMs, and faster (50 ms doubling) while a selected pod lacks its netns or veth.
import { readFileSync } from 'node:fs';
import { type PodContainerMeta, type PodMeta, cgroupUidOf, serviceNameOf } from './enrich.ts';
import { LINK_POLL_FALLBACK_MS, type LinkEvent, LinkMonitor, type NodeLink, listLinks } from './links.ts';
import { podInfoOf } from './pods-file.ts';
import { ProcScanner } from './proc.ts';
import type { PodSource } from './source.ts';
import { type ContainerInfo, type PodInfo, type PodKeys, type PodTopology, podKey } from './topology.ts';
import type { TraceTarget } from '../probes/registry.ts';

export interface DiscoveryOptions {
  nodeName: string;
  /** path of the node's netns ("" = the agent's own) and its inode */
  nodeNetns: string;
  nodeNetnsInode: number;
  /** uplinks to observe besides the pods' veths */
  interfaces: readonly string[];
  /** the selectors (k8s/selector.ts) */
  select: (p: { namespace: string; labels: Readonly<Record<string, string>> }) => boolean;
  traceProxies: boolean;
  proxyComms: readonly string[];
  /** pods seen in /proc but unknown to the source */
  unknownPods: 'trace' | 'ignore';
  procRoot: string;
  cgroupRoot: string;
  /** only cgroups under this v2 path are this node's pods; '' = any */
  podCgroupParent?: string;
  procScanIntervalMs: number;
  maxProcesses: number;
  maxPods: number;
  unmappedVethGraceMs: number;
  log: (msg: string) => void;
  /** ifindex and IFLA_LINK of an interface in a netns (native linkInfo); injectable for tests */
  linkInfo: (ifname: string, netns: string) => { ifindex: number; iflink: number };
  /** the node's interfaces; default `ip -j -d link show` in nodeNetns */
  listLinks?: () => Promise<NodeLink[]>;
  /** false: no `ip monitor` (tests drive reconcile themselves) */
  watchLinks?: boolean;
  /** the agent's pid as procRoot shows it (its pod is never traced); default process.pid */
  selfPid?: number;
}

/** Applies one target (on) or removes it; throws when it cannot (retried at the next reconcile). */
export type ApplyTarget = (t: TraceTarget, on: boolean) => void;

/** Latency histogram in the shape the metrics read (cumulative buckets, like Prometheus' le). */
export interface LatencyStats {
  bucketsMs: readonly number[];
  buckets: number[];
  count: number;
  sumMs: number;
}

export interface DiscoveryStats {
  reconciles: number;
  pods: number;
  podsTraced: number;
  /** pods of the source beyond discovery.maxPods, not traced */
  podsOverLimit: number;
  /** selected pods whose netns or veth is not found yet */
  podsPending: number;
  unknownPods: number;
  targets: number;
  applyErrors: number;
  linkEvents: number;
  /** veth appeared (rtnetlink event read) -> TC attached */
  attachLatency: LatencyStats;
}

const ATTACH_BUCKETS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
const PENDING_FIRST_MS = 50;
const MIN_SCAN_GAP_MS = 20;
/** the node's interfaces are listed again at least this often, events or not */
const LINK_RESYNC_MS = 30_000;

interface PodState {
  key: string;
  meta?: PodMeta;
  sig: string;
  info: PodInfo;
  keys: PodKeys;
  /** the revision the topology holds (IPs may have changed with it) */
  placedRev?: number;
}

export class Discovery {
  readonly topology: PodTopology;
  readonly scanner: ProcScanner;
  private readonly o: DiscoveryOptions;
  private readonly source: PodSource;
  private readonly apply: ApplyTarget;
  private readonly proxies: Set<string>;
  private readonly applied = new Map<string, TraceTarget>();
  /** targets whose apply failed: one warning each until they succeed or go */
  private readonly failing = new Set<string>();
  private readonly pods = new Map<string, PodState>();
  private links = { byIndex: new Map<number, NodeLink>(), byName: new Map<string, NodeLink>() };
  /** veths that appeared while the agent ran: ifindex -> when the event was read */
  private readonly newVeths = new Map<number, number>();
  /** links known from an event and not from a listing yet */
  private readonly eventLinks = new Map<number, NodeLink>();
  /** veths whose TC latency is not measured yet: ifindex -> event time */
  private readonly latencyPending = new Map<number, number>();
  /** a pod netns's own interface and its peer (the host veth's ifindex), by netns inode */
  private readonly podIfaces = new Map<number, { ifindex: number; iflink: number }>();
  private monitor?: LinkMonitor;
  private timer?: NodeJS.Timeout;
  private pollTimer?: NodeJS.Timeout;
  private pendingDelay = PENDING_FIRST_MS;
  private running = false;
  private again = false;
  private lastScan = 0;
  private scanWanted = false;
  private linksDirty = true;
  private lastListing = 0;
  private stopped = false;
  private rev = 0;
  readonly stats: DiscoveryStats = {
    reconciles: 0, pods: 0, podsTraced: 0, podsOverLimit: 0, podsPending: 0, unknownPods: 0, targets: 0, applyErrors: 0, linkEvents: 0,
    attachLatency: { bucketsMs: ATTACH_BUCKETS_MS, buckets: ATTACH_BUCKETS_MS.map(() => 0), count: 0, sumMs: 0 },
  };

  constructor(o: DiscoveryOptions, source: PodSource, topology: PodTopology, apply: ApplyTarget) {
    this.o = o;
    this.source = source;
    this.topology = topology;
    this.apply = apply;
    this.proxies = new Set(o.proxyComms);
    this.scanner = new ProcScanner({ procRoot: o.procRoot, maxProcesses: o.maxProcesses, cgroupRoot: o.cgroupRoot, podCgroupParent: o.podCgroupParent });
    this.selfPod = this.scanner.lookup(o.selfPid ?? process.pid)?.cgroup.podUid;
  }

  /** the UID of the pod the agent runs in (the DaemonSet's), never traced */
  readonly selfPod: string | undefined;

  get sourceKind(): PodSource['kind'] {
    return this.source.kind;
  }

  stale(): boolean {
    return this.source.stale();
  }

  sourceStats() {
    return this.source.stats();
  }

  /** Starts watching the node's interfaces and the source, then reconciles once (awaited). */
  async start(): Promise<void> {
    if (this.o.watchLinks !== false) {
      // before the first listing, so that no veth falls between the two
      this.monitor = new LinkMonitor(this.o.nodeNetns, (e) => this.onLink(e), (why) => this.pollLinks(why));
      await this.monitor.start();
    }
    await this.source.start(() => {
      this.scanWanted = true;
      this.kick();
    });
    await this.reconcile();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.monitor?.stop();
    await this.source.stop();
  }

  /** A reconcile soon (coalesced: one runs at a time, one more after it if asked meanwhile). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.reconcile();
  }

  private onLink(e: LinkEvent): void {
    this.stats.linkEvents++;
    this.linksDirty = true;
    if (e.deleted) {
      this.eventLinks.delete(e.ifindex);
    } else if (!this.links.byIndex.has(e.ifindex) && !this.newVeths.has(e.ifindex)) {
      this.newVeths.set(e.ifindex, e.at);
      this.latencyPending.set(e.ifindex, e.at);
      this.scanWanted = true;
      if (e.kind === 'veth' && !this.o.interfaces.includes(e.name) && !this.stopped) {
        // TC now, from the event alone: the listing, the /proc scan and the pod behind it follow
        this.eventLinks.set(e.ifindex, { ifindex: e.ifindex, name: e.name, kind: e.kind, peerIfindex: e.peerIfindex });
        const t: TraceTarget = { kind: 'iface', name: e.name, ifindex: e.ifindex, uplink: false };
        this.applyOne(targetKey(t), t);
      }
    }
    this.kick();
  }

  private pollLinks(why: string): void {
    if (this.stopped || this.pollTimer) return;
    this.o.log(`strata: warning: no rtnetlink events (${why}); polling the node's interfaces every ${LINK_POLL_FALLBACK_MS} ms instead`);
    this.pollTimer = setInterval(() => this.kick(), LINK_POLL_FALLBACK_MS);
    this.pollTimer.unref();
  }

  private async refreshLinks(): Promise<void> {
    let list: NodeLink[];
    try {
      list = await (this.o.listLinks ?? (() => listLinks(this.o.nodeNetns)))();
    } catch (e) {
      if (!this.failing.has('links')) this.o.log(`strata: warning: ${(e as Error).message}`);
      this.failing.add('links');
      this.linksDirty = true;
      return;
    }
    this.failing.delete('links');
    const now = performance.now();
    const byIndex = new Map<number, NodeLink>();
    const byName = new Map<string, NodeLink>();
    for (const l of list) {
      byIndex.set(l.ifindex, l);
      byName.set(l.name, l);
      // polling (no monitor): a veth not in the previous listing is new
      if (this.stats.reconciles > 0 && !this.links.byIndex.has(l.ifindex) && !this.newVeths.has(l.ifindex) && this.pollTimer) {
        this.newVeths.set(l.ifindex, now);
        this.latencyPending.set(l.ifindex, now);
      }
    }
    // a link from an event that this listing (begun before it, perhaps) does not show yet stays;
    // one the listing shows is the listing's now; a deleted one was removed by its event
    for (const i of this.eventLinks.keys()) if (byIndex.has(i)) this.eventLinks.delete(i);
    const known = (i: number) => byIndex.has(i) || this.eventLinks.has(i);
    for (const i of this.newVeths.keys()) if (!known(i)) this.newVeths.delete(i);
    for (const i of this.latencyPending.keys()) if (!known(i)) this.latencyPending.delete(i);
    this.links = { byIndex, byName };
  }

  /** One reconcile now (awaits the link listing); coalesces with kick(). */
  async reconcile(): Promise<void> {
    if (this.stopped) return;
    this.running = true;
    try {
      do {
        this.again = false;
        this.source.poll();
        // /proc: every procScanIntervalMs, sooner while a pod waits for its processes, and after
        // a new veth or a source change (a new pod's processes are likely there), at most every 20 ms
        const now = Date.now();
        const every = this.stats.podsPending > 0 ? Math.min(this.pendingDelay, this.o.procScanIntervalMs) : this.o.procScanIntervalMs;
        if (this.stats.reconciles === 0 || now - this.lastScan >= every || (this.scanWanted && now - this.lastScan >= MIN_SCAN_GAP_MS)) {
          this.scanner.scan();
          this.lastScan = now;
          this.scanWanted = false;
        }
        // the node's links: after a link event, at every reconcile without a monitor (polling),
        // and every LINK_RESYNC_MS as a safety net for an event the monitor missed
        if (this.linksDirty || !this.monitor || this.pollTimer || now - this.lastListing >= LINK_RESYNC_MS) {
          this.linksDirty = false;
          this.lastListing = now;
          await this.refreshLinks();
        }
        if (this.stopped) return;
        this.reconcileOnce();
      } while (this.again && !this.stopped);
    } catch (e) {
      this.o.log(`strata: warning: discovery: ${(e as Error).stack ?? e}`);
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const pending = this.stats.podsPending > 0 || this.latencyPending.size > 0;
    const delay = pending ? Math.min(this.pendingDelay, this.o.procScanIntervalMs) : this.o.procScanIntervalMs;
    this.pendingDelay = pending ? Math.min(this.pendingDelay * 2, this.o.procScanIntervalMs) : PENDING_FIRST_MS;
    this.timer = setTimeout(() => this.kick(), delay);
    this.timer.unref();
  }

  private reconcileOnce(): void {
    this.stats.reconciles++;
    const o = this.o;
    const desired = new Map<string, TraceTarget>();
    const want = (t: TraceTarget) => desired.set(targetKey(t), t);
    const metas = this.source.pods();
    const byUid = new Map<string, PodMeta>();
    let over = 0;
    for (const m of metas) {
      if (byUid.size >= o.maxPods) {
        over++;
        continue;
      }
      byUid.set(m.uid ? cgroupUidOf(m) : podKey(m), m);
    }
    const keys = new Set(byUid.keys());
    if (o.unknownPods === 'trace') for (const u of this.scanner.podUids()) if (keys.size < o.maxPods) keys.add(u);
    const seen = new Set<string>();
    const vethPods = new Map<string, boolean>(); // host veth name -> traced
    let pending = 0;
    let traced = 0;
    let unknown = 0;
    for (const key of keys) {
      // the agent's own pod: tracing it would trace its own exports
      if (key === this.selfPod) continue;
      const meta = byUid.get(key);
      const procs = meta?.uid || !meta ? this.scanner.podProcs(key) : [];
      if (!meta && procs.length === 0) continue;
      if (!meta) unknown++;
      // where the pod is: as the source says, else from its processes
      let hostNet = meta?.hostNetwork ?? false;
      let netns = meta?.netnsInode;
      let netnsPath: string | undefined;
      if (!hostNet && !netns) {
        for (const p of procs) {
          const ino = this.scanner.netnsOf(p.pid);
          if (ino) {
            netns = ino;
            netnsPath = this.scanner.netnsPath(p.pid);
            break;
          }
        }
      }
      if (netns !== undefined && netns === o.nodeNetnsInode) {
        // a pod in the node's netns is a hostNetwork pod, whatever the source says
        hostNet = true;
        netns = undefined;
      }
      const cgroupIds = meta?.cgroupIds?.length
        ? [...meta.cgroupIds]
        : hostNet ? [...new Set(procs.map((p) => this.scanner.cgroupIdOf(p.cgroup.v2Path)).filter((x): x is number => x !== undefined))] : [];
      let veth: NodeLink | undefined;
      let podDev: { ifindex: number } | undefined;
      if (!hostNet && netns) {
        const r = this.podInterface(netns, netnsPath, meta?.hostVeth);
        veth = r.veth;
        podDev = r.podDev;
      }
      const proxy = procs.some((p) => this.proxies.has(p.comm));
      const selected = meta ? o.select(meta) || (o.traceProxies && proxy) : o.unknownPods === 'trace';
      const state = this.podState(key, meta);
      seen.add(key);
      const podKeys: PodKeys = { netns: hostNet ? undefined : netns, veth: veth?.name ?? meta?.hostVeth, cgroupIds };
      if (!sameKeys(state.keys, podKeys) || state.placedRev !== state.info.rev) {
        state.keys = podKeys;
        state.placedRev = state.info.rev;
        this.topology.put(state.info, podKeys);
      }
      if (veth) vethPods.set(veth.name, selected || vethPods.get(veth.name) === true);
      if (!selected) continue;
      traced++;
      if (!hostNet && netns) want({ kind: 'netns', inode: netns });
      for (const id of hostNet ? cgroupIds : []) want({ kind: 'cgroup', id });
      if (veth) want({ kind: 'iface', name: veth.name, ifindex: veth.ifindex, uplink: false });
      if (podDev && netns) want({ kind: 'poddev', netns, ifindex: podDev.ifindex, name: 'eth0' });
      // a selected pod of the source not placed yet: its sandbox or its veth is still coming
      if (meta && (hostNet ? cgroupIds.length === 0 : !netns || !veth)) pending++;
      if (hostNet && cgroupIds.length === 0 && procs.length > 0 && !this.failing.has(`hostnet:${key}`)) {
        // running, yet no cgroup v2 id: a v1-only host, the root cgroup, or paths from another cgroup namespace
        this.failing.add(`hostnet:${key}`);
        o.log(`strata: warning: hostNetwork pod ${meta?.namespace ?? ''}/${meta?.name ?? key} is not traced: no cgroup v2 id for its processes (cgroup ${procs[0]?.cgroup.v2Path ?? 'v1 only'}); see README "Discovery" limits`);
      }
    }
    for (const [key, st] of this.pods) {
      if (seen.has(key)) continue;
      this.pods.delete(key);
      this.topology.drop(podKey(st.info));
    }
    for (const name of o.interfaces) {
      const l = this.links.byName.get(name);
      want({ kind: 'iface', name, ifindex: l?.ifindex ?? 0, uplink: true });
    }
    // a veth that came while the agent ran: traced at once, kept while no pod says otherwise
    const now = performance.now();
    for (const [ifindex, at] of this.newVeths) {
      const l = this.links.byIndex.get(ifindex) ?? this.eventLinks.get(ifindex);
      if (!l || l.kind !== 'veth' || o.interfaces.includes(l.name)) {
        this.newVeths.delete(ifindex);
        this.latencyPending.delete(ifindex);
        continue;
      }
      const owner = vethPods.get(l.name);
      if (owner === false || (owner === undefined && now - at > o.unmappedVethGraceMs)) {
        this.newVeths.delete(ifindex);
        continue;
      }
      want({ kind: 'iface', name: l.name, ifindex, uplink: false });
      if (owner === true) this.newVeths.delete(ifindex);
    }
    // proxies outside any pod (an NGINX on the node), by their cgroup: never the root cgroup
    if (o.traceProxies) {
      for (const p of this.scanner.all()) {
        if (p.cgroup.podUid || !this.proxies.has(p.comm)) continue;
        const id = this.scanner.cgroupIdOf(p.cgroup.v2Path);
        if (id !== undefined) want({ kind: 'cgroup', id });
      }
    }
    this.applyDiff(desired);
    Object.assign(this.stats, { pods: seen.size, podsTraced: traced, podsOverLimit: over, podsPending: pending, unknownPods: unknown, targets: this.applied.size });
  }

  /** The pod's host veth (as given, or as its netns's eth0 says) and its own interface. */
  private podInterface(netns: number, netnsPath: string | undefined, givenVeth: string | undefined): { veth?: NodeLink; podDev?: { ifindex: number } } {
    let pi = this.podIfaces.get(netns);
    if (givenVeth) {
      const veth = this.links.byName.get(givenVeth);
      if (!veth) return {};
      if (!pi || pi.iflink !== veth.ifindex) {
        try {
          // the host veth's IFLA_LINK is its peer: the pod's own interface, in the pod's netns
          const { iflink } = this.o.linkInfo(givenVeth, this.o.nodeNetns);
          pi = { ifindex: iflink, iflink: veth.ifindex };
          this.podIfaces.set(netns, pi);
        } catch {
          return { veth };
        }
      }
      return { veth, podDev: { ifindex: pi.ifindex } };
    }
    if (!pi || !this.links.byIndex.has(pi.iflink)) {
      if (!netnsPath) return {};
      // CNI names the pod end CNI_IFNAME, eth0 unless configured otherwise; its IFLA_LINK is the
      // host veth's ifindex in the node's netns. Asked inside the pod's netns (setns: CAP_SYS_ADMIN),
      // else read from the sysfs the pod's own mount namespace shows (CAP_SYS_PTRACE suffices)
      let r: { ifindex: number; iflink: number } | undefined;
      try {
        r = this.o.linkInfo('eth0', netnsPath);
      } catch {
        r = podSysfsIface(netnsPath.replace(/\/ns\/net$/, '/root'));
      }
      if (!r) return {};
      pi = { ifindex: r.ifindex, iflink: r.iflink };
      this.podIfaces.set(netns, pi);
    }
    const veth = this.links.byIndex.get(pi.iflink);
    // the pair must point both ways: an eth0 whose peer lives in another netns than the node's
    // would name, by its ifindex, an unrelated device of the node
    if (!veth || veth.kind !== 'veth' || (veth.peerIfindex !== undefined && veth.peerIfindex !== pi.ifindex)) return {};
    return { veth, podDev: { ifindex: pi.ifindex } };
  }

  /**
   * The pod's PodInfo, updated only when what is known of it changed, and in place: connections
   * the correlator already tracks hold this object, so they see the names the API server gave
   * after an outage (the span resources built from it are keyed by its rev).
   */
  private podState(key: string, meta: PodMeta | undefined): PodState {
    const sig = meta ? JSON.stringify(meta) : `unknown:${key}`;
    let st = this.pods.get(key);
    if (st && st.sig === sig) return st;
    const rev = ++this.rev;
    const fresh: PodInfo = meta
      ? { ...podInfoOf(meta, rev), unknown: undefined }
      : { name: '', namespace: '', uid: key, node: this.o.nodeName, workload: `pod-${key.slice(0, 8)}`, unknown: true, rev, attributes: {}, ips: [] };
    fresh.container = meta ? this.containerLookup(meta) : undefined;
    if (st) {
      Object.assign(st.info, fresh);
      st.meta = meta;
      st.sig = sig;
    } else {
      st = { key, meta, sig, info: fresh, keys: {} };
      this.pods.set(key, st);
    }
    return st;
  }

  /** pid -> container of the pod: by the container ID of its cgroup, else a pid the source named */
  private containerLookup(meta: PodMeta): (pid: number) => ContainerInfo | undefined {
    const cache = new Map<number, ContainerInfo | null>();
    const byId = new Map<string, PodContainerMeta>();
    const byPid = new Map<number, PodContainerMeta>();
    for (const c of meta.containers) {
      if (c.id) byId.set(c.id, c);
      if (c.pid) byPid.set(c.pid, c);
    }
    // the kubelet writes container IDs into the status a moment after the containers start: until
    // then a pod with a single container has its processes in it (its sandbox, pause, moves no bytes)
    const only = meta.containers.length === 1 ? meta.containers[0] : undefined;
    return (pid) => {
      const hit = cache.get(pid);
      if (hit !== undefined) return hit ?? undefined;
      const entry = this.scanner.lookup(pid);
      const cid = entry?.cgroup.containerId;
      const c = (cid !== undefined ? byId.get(cid) : undefined) ?? byPid.get(pid) ??
        (only && !only.id && entry?.comm !== 'pause' ? only : undefined);
      let out: ContainerInfo | null = null;
      if (c) out = { name: c.name, serviceName: serviceNameOf(meta, c.serviceName || this.scanner.envOf(pid, 'OTEL_SERVICE_NAME')) };
      else if (cid) {
        // a container the source does not name (yet): its own OTEL_SERVICE_NAME still counts
        const env = this.scanner.envOf(pid, 'OTEL_SERVICE_NAME');
        if (env) out = { name: '', serviceName: env };
      }
      if (cache.size > 4096) cache.clear();
      cache.set(pid, out);
      return out ?? undefined;
    };
  }

  private applyDiff(desired: Map<string, TraceTarget>): void {
    for (const [k, t] of this.applied) {
      if (desired.has(k)) continue;
      try {
        this.apply(t, false);
      } catch (e) {
        this.stats.applyErrors++;
        this.o.log(`strata: warning: could not stop tracing ${describe(t)}: ${(e as Error).message}`);
      }
      this.applied.delete(k);
      this.failing.delete(k);
    }
    for (const k of this.failing) if (!desired.has(k) && k !== 'links' && !k.startsWith('hostnet:')) this.failing.delete(k);
    for (const [k, t] of desired) this.applyOne(k, t);
  }

  private applyOne(k: string, t: TraceTarget): void {
    if (this.applied.has(k)) return;
    try {
      this.apply(t, true);
      this.applied.set(k, t);
      if (this.failing.delete(k)) this.o.log(`strata: tracing ${describe(t)} now`);
      if (t.kind === 'iface') this.measured(t.ifindex);
    } catch (e) {
      this.stats.applyErrors++;
      if (!this.failing.has(k)) this.o.log(`strata: warning: ${(e as Error).message}`);
      this.failing.add(k);
    }
  }

  private measured(ifindex: number): void {
    const at = this.latencyPending.get(ifindex);
    if (at === undefined) return;
    this.latencyPending.delete(ifindex);
    const ms = performance.now() - at;
    const l = this.stats.attachLatency;
    l.count++;
    l.sumMs += ms;
    l.bucketsMs.forEach((b, i) => {
      if (ms <= b) l.buckets[i] = (l.buckets[i] ?? 0) + 1;
    });
  }

  /** targets applied now (tests) */
  targets(): TraceTarget[] {
    return [...this.applied.values()];
  }
}

/** eth0's ifindex and iflink as the sysfs under a process's root shows them (its mount namespace's /sys) */
function podSysfsIface(root: string): { ifindex: number; iflink: number } | undefined {
  try {
    const read = (f: string) => Number(readFileSync(`${root}/sys/class/net/eth0/${f}`, 'latin1').trim());
    const r = { ifindex: read('ifindex'), iflink: read('iflink') };
    return r.ifindex > 0 && r.iflink > 0 ? r : undefined;
  } catch {
    return undefined;
  }
}

export function targetKey(t: TraceTarget): string {
  switch (t.kind) {
    case 'netns':
      return `netns:${t.inode}`;
    case 'cgroup':
      return `cgroup:${t.id}`;
    case 'iface':
      return `iface:${t.name}:${t.ifindex}:${t.uplink ? 'u' : 'p'}`;
    case 'poddev':
      return `poddev:${t.netns}:${t.ifindex}`;
  }
}

function describe(t: TraceTarget): string {
  switch (t.kind) {
    case 'netns':
      return `netns ${t.inode}`;
    case 'cgroup':
      return `cgroup ${t.id}`;
    case 'iface':
      return `${t.uplink ? 'uplink' : 'interface'} ${t.name}`;
    case 'poddev':
      return `the interface ${t.name} of netns ${t.netns}`;
  }
}

function sameKeys(a: PodKeys, b: PodKeys): boolean {
  return a.netns === b.netns && a.veth === b.veth && (a.cgroupIds ?? []).join() === (b.cgroupIds ?? []).join();
}
