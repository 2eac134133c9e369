// Composition root of the agent: probes -> pump -> decoder -> correlator (exchange records) ->
// span mapping (export/semconv.ts) -> span sink (one BatchSpanProcessor per exporter), plus
// metrics. The same code runs in the lab and on a node; only discovery differs.
import { statSync } from 'node:fs';
import { type Server, createServer } from 'node:http';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Registry } from 'prom-client';
import { Correlator, measureWallClock } from './correlate/correlator.ts';
import type { CorrelatorOptions } from './correlate/options.ts';
import { StrataError, EXIT_CONFIG, EXIT_PROBE, STRATA_ERR_CONFIG, STRATA_ERR_PROBE_ATTACH, STRATA_ERR_PROBE_LOAD } from './errors.ts';
import { Decoder } from './events/decode.ts';
import { SpanExport } from './export/pipeline.ts';
import { type BatchOptions, SdkSpanSink } from './export/sdk-sink.ts';
import { type ExportConfig, createExporters } from './export/factory.ts';
import { type AgentDiscoveryOptions, createDiscovery, needsCgroupFilter } from './k8s/agent-discovery.ts';
import { type Discovery, targetKey } from './k8s/discovery.ts';
import type { PodEntry } from './k8s/pods-file.ts';
import { procExecutables } from './k8s/proc.ts';
import { PodTopology } from './k8s/topology.ts';
import { type PeerOptions, Peers } from './peers/peers.ts';
import type { KubeNodePeers } from './k8s/node-peers.ts';
import { createLayerMetrics, type LayerMetrics } from './metrics/layer-metrics.ts';
import { createMetrics } from './metrics/metrics.ts';
import { isNativeError, loadNative } from './probes/native.ts';
import { ProbeSet } from './probes/probe-set.ts';
import { FAMILIES, NET_DEV, VETH_TC, type ProbeFamily, type ProbeSettings, type TraceTarget, type TrackContext } from './probes/registry.ts';
import { LoadShedder, RATE_CHECK_MS, type SheddingOptions } from './probes/shedding.ts';
import { ProbeWindows } from './probes/windows.ts';
import { SAMPLING_FLAGS } from './events/layout.generated.ts';

export interface AgentOptions {
  nodeName: string;
  /** the pods file's pods as read at start, or (discovery.source none) the pods to trace */
  pods: PodEntry[];
  /** where pods come from and which to trace (config discovery.*) */
  discovery: AgentDiscoveryOptions;
  /** netns (path) holding the node's interfaces; "" = the agent's own (hostNetwork) */
  nodeNetns: string;
  /** extra interfaces of the node to observe (uplink / NIC), besides the pods' veths */
  interfaces: string[];
  /** the exporters (export.otlp, export.jaeger, export.files) */
  export: ExportConfig;
  /** the batch span processor in front of each exporter (bounded queue) */
  exportQueue: BatchOptions;
  /** distinct span resources kept built (export.maxResources) */
  maxResources: number;
  /** route patterns for span names (correlator.routes) */
  routes: readonly string[];
  /** kernel-side knobs, set before the programs load (config probes.*); syscallAttach picks the socket probes' variant */
  probes: Required<Omit<ProbeSettings, 'filterCgroups' | 'filterNetns' | 'prefilterSlots'>> & Pick<ProbeSettings, 'prefilterSlots'>;
  /** optional probe families not to load (probes.disable) */
  disableFamilies?: string[];
  /**
   * families that attach only while a pod is traced (the socket syscalls: every process on the
   * node pays for them) are detached this long after the last traced pod left; 0 or unset: attached
   * from the start, always (config probes.idleDetachS)
   */
  idleDetachS?: number;
  /** load shedding in the kernel when the agent exceeds its CPU budget (config shedding.*); undefined = never */
  shedding?: SheddingOptions & { windowCpu?: number; windowPeriodMs?: number; windowDrainMs?: number; minOpenShare?: number };
  /** port for /metrics, /healthz, /readyz; undefined = no server; 0 = any */
  metricsPort?: number;
  metricsHost: string;
  /** the kernel's BPF run-time statistics on (metrics.bpfRunStats) */
  bpfRunStats?: boolean;
  correlator: CorrelatorOptions;
  /** cross-node stitching without headers (config stitch.*); undefined = off */
  stitch?: { peers: PeerOptions; port: number; host: string; fromKubernetes?: { kubeconfig: string | null; backoff: { initialMs: number; maxMs: number } } };
  log?: (msg: string) => void;
}

export class Agent {
  readonly topology: PodTopology;
  readonly decoder: Decoder;
  readonly correlator: Correlator;
  readonly sink: SdkSpanSink;
  readonly metrics: Registry;
  /** strata_layer_duration_seconds, OpenMetrics with exemplars, on /metrics/layers */
  readonly layerMetrics: LayerMetrics;
  private probes?: ProbeSet;
  readonly peers?: Peers;
  /** stitch.peersFrom=kubernetes: the Node informer feeding `peers` */
  private nodePeers?: KubeNodePeers;
  /** port the peer endpoint listens on, once started */
  peerPort = 0;
  private timer?: NodeJS.Timeout;
  private shedTimer?: NodeJS.Timeout;
  private trimTimer?: NodeJS.Timeout;
  /** malloc_trim calls (MALLOC_TRIM_INTERVAL_MS) and the time they took */
  private readonly trims = { count: 0, seconds: 0 };
  private trimming = false;
  private shedder?: LoadShedder;
  /** observation windows (shedding.windowCpu above cpuBudget) */
  private windows?: ProbeWindows;
  private server?: Server;
  private ready = false;
  /** strata_probe_attached{probe}: per family, and per interface (tc:<ifname>, net_dev:<ifname>) while it exists */
  private readonly attached = new Map<string, boolean>();
  /** what discovery applied, per family and target (a family that failed a target retries only its own part) */
  private readonly tracked = new Set<string>();
  discovery?: Discovery;
  /** per loaded family: its object and the variant its preflight chose */
  private readonly loadedFamilies: { name: string; object: string; variant: string; required: boolean }[] = [];
  private readonly log: (msg: string) => void;
  metricsPort = 0;

  private readonly opts: AgentOptions;

  constructor(opts: AgentOptions) {
    this.opts = opts;
    this.log = opts.log ?? ((m) => process.stderr.write(`${m}\n`));
    this.topology = new PodTopology(opts.nodeName, netnsInodeOr0(opts.nodeNetns || '/proc/self/ns/net'));
    const exporters: SpanExporter[] = createExporters(opts.export);
    this.sink = new SdkSpanSink({ exporters, batch: opts.exportQueue, maxResources: opts.maxResources });
    // records -> spans (semantic conventions, names, resources) -> the sink
    const spans = new SpanExport(this.sink, { routes: opts.routes, maxResources: opts.maxResources });
    if (opts.stitch) this.peers = new Peers(opts.stitch.peers, this.log);
    this.correlator = new Correlator(spans, this.topology, opts.correlator, measureWallClock(), procExecutables(opts.maxResources), this.peers);
    this.decoder = new Decoder(this.correlator);
    this.layerMetrics = createLayerMetrics(opts.nodeName);
    this.correlator.onLayerTime = (r) => this.layerMetrics.observe(r);
    this.metrics = createMetrics({
      kernel: () => this.probes?.stats(),
      pump: () => this.probes?.pumpStats() as Record<string, number> | undefined,
      decoder: () => this.decoder.stats as unknown as Record<string, number>,
      correlator: () => this.correlator.stats as unknown as Record<string, number>,
      exporter: () => ({ droppedSpans: this.sink.stats().spansDropped }),
      sink: () => this.sink.stats(),
      progStats: () => this.probes?.progStats() ?? [],
      probes: () => [...this.attached].map(([name, attached]) => ({ name, attached, idle: this.idle.get(name) ?? false })),
      discovery: () => this.discovery && {
        stale: this.discovery.stale(), source: this.discovery.sourceKind, stats: this.discovery.stats,
        sourceStats: this.discovery.sourceStats(), proc: this.discovery.scanner.stats,
      },
      peers: () => this.peers && { stats: this.peers.stats, pending: this.peers.pending, skewMs: this.peers.skewMs, links: this.peers.linkStats(), nodes: this.peers.peerCount, nodesUnusable: this.nodePeers?.stats.unusable, apiErrors: this.nodePeers?.stats.errors },
      memory: () => ({ mallocTrims: this.trims.count, mallocTrimSeconds: this.trims.seconds }),
      shedding: () => this.shedder && { ...this.shedder.state, cpuBudget: this.opts.shedding?.cpuBudget ?? 0 },
      windows: () => this.windows && {
        phase: this.windows.state.phase, observing: this.windows.observing, openShare: this.windows.state.openShare, keptShare: this.windows.state.keptShare, windows: this.windows.state.windows,
        closedSeconds: this.windows.closedMsNow() / 1000, offeredPerS: this.windows.state.offeredPerS, detachErrors: this.windows.state.detachErrors,
      },
    });
  }

  async start(): Promise<void> {
    if (this.opts.metricsPort !== undefined) await this.serve(this.opts.metricsPort);
    if (this.peers && this.opts.stitch) {
      const st = this.opts.stitch;
      try {
        this.peerPort = await this.peers.listen(st.port, st.host, (node, ms, skewMs) => this.correlator.onPeerMappings(ms, monoNow(), { node, skewMs }));
      } catch (e) {
        throw new StrataError(STRATA_ERR_CONFIG, `stitch: cannot listen on ${st.host}:${st.port} (${(e as NodeJS.ErrnoException).code ?? String(e)}); set stitch.port`, EXIT_CONFIG);
      }
      this.peers.start();
      const k = st.fromKubernetes;
      if (k) {
        const peers = this.peers;
        // imported only here: only stitch.peersFrom=kubernetes needs the API client
        const { KubeNodePeers } = await import('./k8s/node-peers.ts');
        this.nodePeers = new KubeNodePeers({ kubeconfig: k.kubeconfig, port: st.port, backoff: k.backoff, log: this.log });
        this.nodePeers.start((list) => peers.setPeers(list));
      }
    }
    // the cgroup filter is a load-time constant: on only when some pod may need it
    const settings: ProbeSettings = { ...this.opts.probes, filterNetns: true, filterCgroups: needsCgroupFilter(this.opts.discovery, this.opts.pods) };
    try {
      this.probes = new ProbeSet(settings);
    } catch (e) {
      throw this.probeError(STRATA_ERR_PROBE_LOAD, 'creating the BPF maps failed', e);
    }
    const p = this.probes;
    if (this.opts.bpfRunStats) {
      try {
        p.enableRunStats();
      } catch (e) {
        // BPF_ENABLE_STATS needs CAP_SYS_ADMIN (and kernel 5.8+): without it the programs still run,
        // only strata_bpf_runs_total and strata_bpf_run_time_seconds_total stay at 0
        this.log(`strata: warning: BPF run-time statistics unavailable (strata_bpf_run_time_seconds_total stays 0): ${(e as Error).message}`);
      }
    }
    // every family from the registry: preflight, load, attach, wire; required ones stop the agent
    for (const f of FAMILIES) {
      if (!f.required && this.opts.disableFamilies?.includes(f.name)) {
        this.attached.set(f.name, false);
        this.log(`strata: ${f.name} not loaded: probes.disable`);
        continue;
      }
      this.startFamily(p, f);
    }
    p.start((batch) => this.onBatch(batch), { pollMs: 10 });
    const sh = this.opts.shedding;
    if (sh) {
      const shedder = new LoadShedder(sh, {
        write: () => this.writeSampling(),
        // events lost before the correlator, and spans the export queues had no room for: either
        // way the agent is making more than it can hand on, and shedding in the kernel is cheaper
        losses: () => {
          const x = this.sink.stats();
          return (p.stats().rbDrops ?? 0) + (p.pumpStats().droppedRecords ?? 0) + x.spansDroppedQueueFull + x.spansShed;
        },
        requests: () => p.stats().requests ?? 0,
        backlog: () => this.sink.backlog(),
      });
      this.shedder = shedder;
      if (sh.keepRatio < 1) shedder.set(sh.keepRatio);
      if (sh.cpuBudget > 0) {
        // as often as the brake's rate window, so the first batch of a surge after a quiet spell
        // is measured over a short window, not diluted by the quiet
        this.shedTimer = setInterval(() => shedder.maybeTick(), Math.min(sh.intervalMs, RATE_CHECK_MS));
        this.shedTimer.unref();
      }
      if (sh.cpuBudget > 0 && (sh.windowCpu ?? 0) > sh.cpuBudget) this.startWindows(p, shedder, sh);
    }
    // pods, their netns/cgroups/veths and the uplinks: applied through the families' track()
    this.discovery = await createDiscovery(this.opts.discovery, {
      nodeName: this.opts.nodeName, nodeNetns: this.opts.nodeNetns, nodeNetnsInode: this.nodeNetnsInode(), interfaces: this.opts.interfaces,
      pods: this.opts.pods, proxyComms: this.opts.correlator.proxyComms, topology: this.topology,
      linkInfo: (ifname, netns) => p.linkInfo(ifname, netns), listLinks: (netns) => loadNative().listLinks(netns),
      apply: (t, on) => this.track(t, on), log: this.log,
    });
    await this.discovery.start();
    this.timer = setInterval(() => {
      this.correlator.tick(monoNow());
      this.warnDrops();
    }, 50);
    // glibc keeps freed memory resident (libbpf's BTF parsing at load, ring-buffer batches, OTLP
    // request bodies): give it back now and every MALLOC_TRIM_INTERVAL_MS
    this.trimMalloc();
    this.trimTimer = setInterval(() => this.trimMalloc(), MALLOC_TRIM_INTERVAL_MS);
    this.trimTimer.unref();
    this.ready = true;
  }

  /**
   * The kernel's sampling state: the shedder's threshold, except with observation windows on:
   * then a decision is always recorded (shed >= 1, so that a window can close on whole requests),
   * no new request is kept while a window settles or drains, and the packet families pause while
   * it is closed.
   */
  private writeSampling(): void {
    const p = this.probes;
    const st = this.shedder?.state;
    if (!p || !st) return;
    const w = this.windows;
    let shed = st.shed;
    // settling: the first drainMs of a window keep no new request either, since a message whose
    // cause was sent or read just before the programs attached would be the root of a partial trace
    if (w?.active) shed = w.observing && !w.settling ? Math.max(1, shed) : 0xffffffff;
    const flags = w?.detached ? SAMPLING_FLAGS.SAMPLING_PAUSED : 0;
    // every window's decisions anew, and none once it closes (its kept requests have ended by
    // then): a thread's last decision is what a request it read unseen would inherit
    // (not as the first window begins: the programs stay attached, and the decisions of the
    // requests then in flight hold)
    const windowGen = w ? 2 * w.state.attaches + (w.detached ? 1 : 0) : 0;
    p.setSampling(shed, (st.gen + windowGen) >>> 0, flags, w?.state.attaches ?? 0);
  }

  private startWindows(p: ProbeSet, shedder: LoadShedder, sh: NonNullable<AgentOptions['shedding']>): void {
    const windowed = () => FAMILIES.filter((f) => f.windowed && this.loadedFamilies.some((l) => l.name === f.name) && this.attached.get(f.name) !== false && !this.idle.get(f.name));
    // STRATA_DEBUG=windows: every edge of every window, wall-clock ms (to lay spans against)
    const dbg = (process.env.STRATA_DEBUG ?? '').split(',').includes('windows') ? (m: string) => this.log(`strata: debug: windows ${Date.now()} ${m}`) : undefined;
    const w = new ProbeWindows({
      cpuBudget: sh.cpuBudget, windowCpu: sh.windowCpu ?? 0, periodMs: sh.windowPeriodMs ?? 10_000, drainMs: sh.windowDrainMs ?? 300, minOpenShare: sh.minOpenShare ?? 0.05,
    }, {
      open: (keep) => {
        dbg?.(`open ${w.state.windows}`);
        // the new window's number (and its settling) reach the kernel before the programs run:
        // a socket's state from before the pause must not serve a single event
        this.writeSampling();
        for (const f of windowed()) p.attach(f);
        shedder.resume();
        // where the measured demand says the window budget lands; the controller goes on from there
        shedder.set(Math.max(sh.minKeepRatio, keep));
        this.writeSampling();
      },
      drain: () => {
        dbg?.('drain');
        this.writeSampling();
      },
      settled: () => {
        dbg?.('settled');
        this.writeSampling();
      },
      close: () => {
        dbg?.('close');
        shedder.suspend();
        this.writeSampling();
        return Promise.all(windowed().map((f) => p.detachWindowed(f))).finally(() => dbg?.('closed'));
      },
      active: (on, keep) => {
        dbg?.(on ? 'begin' : 'end');
        shedder.setBudget(on ? (sh.windowCpu ?? 0) : sh.cpuBudget);
        if (on) shedder.set(Math.max(sh.minKeepRatio, keep));
        this.writeSampling();
      },
      requests: () => p.stats().requests ?? 0,
      costUs: () => shedder.state.costUs,
      log: this.log,
    });
    this.windows = w;
    w.start();
  }

  /**
   * Families attached only while they have something to trace (registry: whileTraced): loaded at
   * start, attached at their first target, detached idleDetachS after their last. What each
   * traces now, and its pending detach.
   */
  private readonly idle = new Map<string, boolean>();
  private readonly idleTargets = new Map<string, Set<string>>();
  private readonly idleTimers = new Map<string, NodeJS.Timeout>();

  private lazy(f: ProbeFamily): boolean {
    return (this.opts.idleDetachS ?? 0) > 0 && f.whileTraced !== undefined;
  }

  /** a lazy family's target came or went: attach at the first, detach idleDetachS after the last */
  private idleTrack(p: ProbeSet, f: ProbeFamily, t: TraceTarget, on: boolean): void {
    if (!this.lazy(f) || !f.whileTraced?.includes(t.kind)) return;
    const set = this.idleTargets.get(f.name) ?? new Set<string>();
    this.idleTargets.set(f.name, set);
    const key = targetKey(t);
    if (on) {
      clearTimeout(this.idleTimers.get(f.name));
      this.idleTimers.delete(f.name);
      if (this.idle.get(f.name)) {
        // throws to track(): discovery warns and retries at its next reconcile; between two
        // observation windows only what stays attached then (the next window attaches the rest)
        p.attach(f, f.windowed && this.windows?.detached ? 'betweenWindows' : 'all');
        this.idle.set(f.name, false);
        this.log(`strata: ${f.name} attached: a pod to trace (${describeTarget(t)})`);
      }
      set.add(key);
      return;
    }
    set.delete(key);
    if (set.size > 0 || this.idle.get(f.name) || this.idleTimers.has(f.name)) return;
    const timer = setTimeout(() => {
      this.idleTimers.delete(f.name);
      if ((this.idleTargets.get(f.name)?.size ?? 0) > 0 || this.probes !== p) return;
      try {
        p.detach(f);
        this.idle.set(f.name, true);
        this.log(`strata: ${f.name} detached: no pod traced on this node for ${this.opts.idleDetachS} s (probes.idleDetachS)`);
      } catch (e) {
        this.log(`strata: warning: ${f.name}: detaching while idle failed: ${(e as Error).message}`);
      }
    }, (this.opts.idleDetachS ?? 0) * 1000);
    timer.unref();
    this.idleTimers.set(f.name, timer);
  }

  private startFamily(p: ProbeSet, f: ProbeFamily): void {
    const pf = p.preflight(f);
    /** `line`: what an optional family's failure logs instead of the warning */
    const fail = (code: string, what: string, e: unknown, line?: string) => {
      this.attached.set(f.name, false);
      if (f.required) throw this.probeError(code, `${what} (${f.name}, required)`, e);
      this.log(line ?? `strata: warning: optional probe ${f.name} not attached: ${what}: ${(e as Error).message}`);
    };
    // what this node lacks (a module, a binary, a kernel feature) is information, not a fault: said once
    if (!pf.ok) return fail(STRATA_ERR_PROBE_LOAD, `it cannot run here: ${pf.reason}`, new Error(pf.reason), `strata: info: optional probe ${f.name} off: it cannot run here: ${pf.reason}`);
    try {
      p.load(f);
    } catch (e) {
      return fail(STRATA_ERR_PROBE_LOAD, `loading ${f.object}.bpf.o failed`, e);
    }
    if (this.lazy(f)) {
      // nothing to trace yet: attached with the first pod (idleTrack); a kernel that cannot attach
      // it is found now all the same (attach, detach), not when the first pod comes
      try {
        p.attach(f);
        p.detach(f);
      } catch (e) {
        return fail(STRATA_ERR_PROBE_ATTACH, `${f.summary} could not attach`, e);
      }
      this.idle.set(f.name, true);
    } else {
      try {
        p.attach(f);
      } catch (e) {
        return fail(STRATA_ERR_PROBE_ATTACH, `${f.summary} could not attach`, e);
      }
    }
    if (pf.variant) this.log(`strata: ${f.name} attached via ${pf.variant}${pf.reason ? `: ${pf.reason}` : ''}`);
    if (f.attach !== 'process') this.attached.set(f.name, true);
    this.loadedFamilies.push({ name: f.name, object: f.object, variant: pf.variant ?? 'default', required: f.required });
    try {
      // family-wide setup only: pods and uplinks come from discovery, through track()
      f.wire?.({ ...this.trackContext(p), pods: [], interfaces: [] });
    } catch (e) {
      // a family's wiring handles single items itself (one veth, one pod): what escapes is the whole family
      this.attached.set(f.name, false);
      if (f.required) throw this.probeError(STRATA_ERR_PROBE_ATTACH, `${f.summary}: setting up its filters failed (${f.name}, required)`, e);
      this.log(`strata: warning: optional probe ${f.name} not set up: ${(e as Error).message}`);
    }
  }

  private trackContext(p: ProbeSet): TrackContext {
    return {
      probes: p, nodeNetns: this.opts.nodeNetns, nodeNetnsInode: this.nodeNetnsInode(), topology: this.topology, log: this.log,
      attached: (name, ok) => this.attached.set(name, ok), forget: (name) => this.attached.delete(name),
      ovs: this.correlator.ovs,
    };
  }

  /**
   * Discovery's apply: each attached family that handles the target's kind starts or stops tracing
   * it. A family's failure is thrown (discovery warns once, and retries at its next reconcile) after
   * the other families had their turn.
   */
  private track(t: TraceTarget, on: boolean): void {
    const p = this.probes;
    if (!p) return;
    const ctx = this.trackContext(p);
    const key = targetKey(t);
    const errors: string[] = [];
    for (const f of FAMILIES) {
      if (!f.track || this.attached.get(f.name) !== true) continue;
      const fk = `${f.name}|${key}`;
      if (on === this.tracked.has(fk)) continue;
      try {
        f.track(ctx, t, on);
        if (on) this.idleTrack(p, f, t, true);
        if (on) this.tracked.add(fk);
      } catch (e) {
        const err = e as Error & { code?: string };
        // a missing device: the TC probe's warning says it; net_dev's would repeat it
        if (f === NET_DEV && err.code === 'ENODEV') errors.push('');
        else errors.push(f === VETH_TC && t.kind === 'iface' ? `TC probe on ${t.name} not attached: ${err.message}` : `${f.name}: ${err.message}`);
      } finally {
        if (!on) {
          this.tracked.delete(fk);
          // gone even when untracking it failed (its netns is gone): it keeps nothing attached
          this.idleTrack(p, f, t, false);
        }
      }
    }
    if (errors.length) throw new Error(errors.filter(Boolean).join('; ') || `${describeTarget(t)} is gone`);
  }

  private nodeNetnsInode(): number {
    return netnsInodeOr0(this.opts.nodeNetns || '/proc/self/ns/net');
  }

  /** per family: the variant its preflight chose ("tracepoint" or "raw_tp" for the socket syscalls) */
  families(): readonly { name: string; object: string; variant: string; required: boolean }[] {
    return this.loadedFamilies;
  }

  private onBatch(batch: Buffer): void {
    // before the work: a surge is braked in the kernel before the agent spends its CPU on it
    if (this.shedTimer) this.shedder?.maybeTick();
    // kernel timestamps are CLOCK_MONOTONIC: convert with an offset measured for this batch
    this.correlator.wall = measureWallClock(loadNative().clockPair());
    this.decoder.decode(batch);
    this.correlator.tick(monoNow());
  }

  private dropsSeen = { total: 0, at: 0 };

  /** Losses in the pipeline: one aggregated warning per interval, never a line per event. */
  private warnDrops(): void {
    const now = Date.now();
    if (now - this.dropsSeen.at < DROP_WARN_INTERVAL_MS) return;
    const k = this.probes?.stats();
    const p = this.probes?.pumpStats();
    const d = this.decoder.stats;
    const parts: [string, number][] = [
      ['kernel ring buffer full', k?.rbDrops ?? 0],
      ['kernel reads failed', k?.readErrors ?? 0],
      ['JS queue full', p?.droppedRecords ?? 0],
      ['undecodable', d.malformed + d.unknownType + d.badVersion],
      ['export', this.sink.stats().spansDropped],
    ];
    const total = parts.reduce((a, [, n]) => a + n, 0);
    if (total > this.dropsSeen.total) {
      const what = parts.filter(([, n]) => n > 0).map(([w, n]) => `${w}: ${n}`).join(', ');
      this.log(`strata: warning: ${total - this.dropsSeen.total} events or spans lost since the last report (totals: ${what}); see strata_drops_total`);
      this.dropsSeen = { total, at: now };
    }
  }

  private probeError(code: string, what: string, e: unknown): StrataError {
    if (isNativeError(e)) {
      const hint = e.code === 'EPERM' ? ' (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, or root)' : '';
      const log = e.log.slice(-5).map((l) => `\n  libbpf: ${l.replace(/^libbpf: /, '')}`).join('');
      return new StrataError(code, `${what}: ${e.message} [${e.code}, stage ${e.stage}, ${e.target}]${hint}${log}`, EXIT_PROBE, {
        errno: e.code, stage: e.stage, target: e.target,
      });
    }
    return new StrataError(code, `${what}: ${(e as Error).message}`, EXIT_PROBE);
  }

  private serve(port: number): Promise<void> {
    this.server = createServer((req, res) => {
      if (req.url === '/metrics') {
        this.metrics.metrics().then(
          (body) => res.writeHead(200, { 'content-type': this.metrics.contentType }).end(body),
          (err) => res.writeHead(500).end(String(err)),
        );
      } else if (req.url === '/metrics/layers') {
        // OpenMetrics (exemplars): metrics/layer-metrics.ts
        this.layerMetrics.registry.metrics().then(
          (body) => res.writeHead(200, { 'content-type': this.layerMetrics.registry.contentType }).end(body),
          (err) => res.writeHead(500).end(String(err)),
        );
      } else if (req.url === '/healthz') {
        res.writeHead(200).end('ok\n');
      } else if (req.url === '/readyz') {
        res.writeHead(this.ready ? 200 : 503).end(this.ready ? 'ready\n' : 'starting\n');
      } else {
        res.writeHead(404).end();
      }
    });
    return new Promise((resolve, reject) => {
      this.server?.once('error', reject);
      this.server?.listen(port, this.opts.metricsHost, () => {
        const a = this.server?.address();
        this.metricsPort = typeof a === 'object' && a ? a.port : port;
        resolve();
      });
    });
  }

  kernelStats() {
    return this.probes?.stats();
  }

  progStats() {
    return this.probes?.progStats() ?? [];
  }

  private trimMalloc(): void {
    // one at a time: a trim still running (a loaded machine) is not queued again
    if (this.trimming) return;
    this.trimming = true;
    loadNative().mallocTrim().then((us) => {
      this.trimming = false;
      if (us === false) return;
      this.trims.count++;
      this.trims.seconds += us / 1e6;
    }, (e: unknown) => {
      this.trimming = false;
      this.log(`strata: malloc_trim failed: ${(e as Error).message}`);
    });
  }

  /** Stops the pump, emits what is pending, exports, detaches everything. */
  /** Detaches and frees every probe now (the shutdown deadline passed while stop() was still waiting). */
  detachNow(): void {
    const p = this.probes;
    this.probes = undefined;
    try {
      p?.stop();
      p?.close();
    } catch {
      // exiting anyway: what is left, the next agent's start removes (TC filters by name)
    }
  }

  async stop(): Promise<void> {
    this.ready = false;
    if (this.timer) clearInterval(this.timer);
    if (this.shedTimer) clearInterval(this.shedTimer);
    this.windows?.stop();
    if (this.trimTimer) clearInterval(this.trimTimer);
    await this.discovery?.stop();
    for (const timer of this.idleTimers.values()) clearTimeout(timer);
    this.idleTimers.clear();
    const p = this.probes;
    if (p) for (const f of FAMILIES) if (this.loadedFamilies.some((l) => l.name === f.name)) await f.unwire?.(this.trackContext(p)).catch(() => {});
    this.probes?.stop();
    this.correlator.drain();
    // detached before the export is flushed: a backend that does not answer can hold the flush
    // past shutdown.timeoutS, and the node must not keep our programs in its paths after we go
    this.probes?.close();
    this.probes = undefined;
    await this.nodePeers?.stop();
    this.peers?.flush();
    await this.peers?.close();
    await this.sink.flush().catch(() => {});
    await this.sink.shutdown().catch(() => {});
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

function describeTarget(t: TraceTarget): string {
  return t.kind === 'iface' || t.kind === 'poddev' ? `interface ${t.name}` : t.kind === 'netns' ? `netns ${t.inode}` : `cgroup ${t.id}`;
}

/**
 * how often the agent calls malloc_trim: at 1000 req/s with the exporter down the main arena held
 * 120 MiB of free memory after a minute (bench/README.md, 2026-12-02 17:45)
 */
const MALLOC_TRIM_INTERVAL_MS = 10_000;

/** at most one drop warning per this interval */
const DROP_WARN_INTERVAL_MS = 10_000;

export function monoNow(): number {
  return Number(process.hrtime.bigint());
}

export function netnsInode(path: string): number {
  return statSync(path).ino;
}

function netnsInodeOr0(path: string): number {
  try {
    return statSync(path).ino;
  } catch {
    return 0;
  }
}
