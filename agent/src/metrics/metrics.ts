// The agent's own overhead and loss, for Prometheus. Values are read from the components'
// counters at scrape time (collect), so the hot path only increments plain numbers. Counters
// mirror totals kept elsewhere: each scrape resets them and adds the current total, so a
// component's reset shows as a counter reset, which rate() handles.
import type { PeerLinkStats, PeerStats } from '../peers/peers.ts';
import { WINDOW_PHASES } from '../probes/windows.ts';
import type { CorrelatorStats } from '../correlate/correlator.ts';
import { Counter, Gauge, Histogram, type Metric, Registry, collectDefaultMetrics } from 'prom-client';
import type { ExportLatencyStats, ExporterStats, SdkSinkStats } from '../export/sdk-sink.ts';
import type { KernelStats } from '../probes/probe-set.ts';
import type { DiscoveryStats, LatencyStats } from '../k8s/discovery.ts';
import type { ProcScanStats } from '../k8s/proc.ts';
import type { SourceStats } from '../k8s/source.ts';

/** What discovery reports (k8s/discovery.ts): the source's health, the pods, the /proc scan, TC attach latency. */
export interface DiscoverySnapshot {
  /** the API server unreachable (or never listed): pod metadata may be out of date */
  stale: boolean;
  source: string;
  stats: DiscoveryStats;
  sourceStats: SourceStats & { restarts?: number; ownerLookupErrors?: number; watchBadLines?: number };
  proc: ProcScanStats;
}

export interface StatsSource {
  /** kernel counters by their generated names (enum strata_stat -> STAT_NAMES) */
  kernel(): Partial<KernelStats> | undefined;
  pump(): Record<string, number> | undefined;
  decoder(): Record<string, number>;
  correlator(): Record<string, number>;
  /** legacy summary of sink(); the metrics read sink(), which has the same numbers per exporter */
  exporter?(): Record<string, number>;
  /** the span sink's full statistics (per exporter: exported, failed, dropped, queued) */
  sink(): SdkSinkStats;
  /** kernel BPF run-time statistics per program (run_time_ns, run_cnt), when enabled */
  progStats(): { name: string; runTimeNs: number; runCnt: number }[];
  /** load shedding (probes/shedding.ts): keep ratio, budget, the agent's CPU over the last interval */
  shedding?(): { keepRatio: number; cpuBudget: number; usageCores: number; adjustments: number; floorCores?: number } | undefined;
  /** observation windows (probes/windows.ts), when shedding.windowCpu allows them */
  windows?(): { phase: string; observing: boolean; openShare: number; keptShare: number; windows: number; closedSeconds: number; offeredPerS: number; detachErrors: number } | undefined;
  /** malloc_trim calls of the agent (MALLOC_TRIM_INTERVAL_MS) and the CPU time they took */
  memory?(): { mallocTrims: number; mallocTrimSeconds: number };
  /** attachments: one per probe family of the registry (the agent reports each) plus per-interface ones (tc:<ifname>) */
  /** idle: loaded, detached while nothing is traced (probes.idleDetachS) */
  probes(): { name: string; attached: boolean; idle?: boolean }[];
  /** discovery, once it runs */
  discovery?(): DiscoverySnapshot | undefined;
  /** the peer channel of cross-node stitching, when stitch.peersFile is set */
  peers?(): { stats: PeerStats; pending: number; skewMs: ReadonlyMap<string, number>; links?: ReadonlyMap<string, PeerLinkStats>; nodes?: number; nodesUnusable?: number; apiErrors?: number } | undefined;
}

type Reader = () => number | undefined;
type Inc = (v: number) => void;
type SetFn = (v: number) => void;

/** the pipeline stages of strata_drops_total, in pipeline order */
export const DROP_STAGES = ['kernel_ringbuf', 'kernel_read', 'js_queue', 'decoder', 'exporter'] as const;

/**
 * One read of `read` per scrape: Registry.metrics() runs every collect() in one synchronous pass,
 * so a value cached until the next microtask is shared by that scrape's metrics only. The
 * kernel's per-CPU counters are then read once per scrape, and the sums agree across metrics
 * (strata_drops_total{stage="exporter"} = sum of strata_export_spans_total{result="dropped"}).
 */
function perScrape<T>(read: () => T): () => T {
  let cached: { v: T } | undefined;
  return () => {
    if (!cached) {
      cached = { v: read() };
      queueMicrotask(() => {
        cached = undefined;
      });
    }
    return cached.v;
  };
}

/** label children for values that appear at run time (programs, exporters, probes), bound once each */
function children<T>(bind: (...values: string[]) => T): (...values: string[]) => T {
  const bound = new Map<string, T>();
  return (...values) => {
    const key = values.join('\u0000');
    let c = bound.get(key);
    if (!c) {
      c = bind(...values);
      bound.set(key, c);
    }
    return c;
  };
}

/** exporter label values: the exporter's class name, made unique when two share one */
function exporterNames(exporters: ExporterStats[]): string[] {
  const seen = new Map<string, number>();
  return exporters.map((e) => {
    const n = (seen.get(e.name) ?? 0) + 1;
    seen.set(e.name, n);
    return n === 1 ? e.name : `${e.name}_${n}`;
  });
}

type HistogramSample = { labels: Record<string, string | number>; value: number; metricName: string };
type LatencySource = () => { labels: Record<string, string>; latency: ExportLatencyStats | LatencyStats | undefined }[];

/**
 * A histogram whose buckets are counted elsewhere (the sink's ExportLatencyStats, discovery's TC
 * attach latency; cumulative like `le`). prom-client's Histogram only counts its own observe()
 * calls, so this is a metric of its own with the shape Registry reads (name, help, type, get()),
 * turning the source's buckets into samples at scrape time.
 */
class ExternalHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly name: string;
  readonly help: string;
  private readonly read: LatencySource;

  constructor(name: string, help: string, read: LatencySource) {
    this.name = name;
    this.help = help;
    this.read = read;
  }

  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: HistogramSample[] }> {
    const values: HistogramSample[] = [];
    const bucket = `${this.name}_bucket`;
    for (const { labels, latency: l } of this.read()) {
      if (!l) continue; // a source without latency records: no series rather than a failed scrape
      l.bucketsMs.forEach((ms, i) => values.push({ labels: { ...labels, le: ms / 1000 }, value: l.buckets[i] ?? 0, metricName: bucket }));
      values.push({ labels: { ...labels, le: '+Inf' }, value: l.count, metricName: bucket });
      values.push({ labels, value: l.sumMs / 1000, metricName: `${this.name}_sum` });
      values.push({ labels, value: l.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Registry.resetMetrics(): nothing to reset, the source holds the counts */
  reset(): void {}
}

/**
 * prom-client's default metrics under strata_process_: process CPU, RSS, fds
 * (strata_process_cpu_seconds_total, strata_process_resident_memory_bytes: prom-client names them
 * process_*, and its prefix alone would give strata_process_process_*), heap, GC and event-loop lag
 * (strata_process_nodejs_eventloop_lag_*_seconds).
 */
function registerProcessMetrics(registry: Registry): void {
  const collected = new Registry();
  collectDefaultMetrics({ register: collected, prefix: PROCESS_PREFIX });
  for (const m of collected.getMetricsAsArray() as unknown as Metric[]) {
    const metric = m as unknown as { name: string };
    // gauges named *_total fail `promtool check metrics`; the same numbers are the sum over `type`
    // of strata_process_nodejs_active_{handles,requests,resources}, which stay
    if (/^strata_process_nodejs_active_\w+_total$/.test(metric.name)) continue;
    if (metric.name.startsWith(`${PROCESS_PREFIX}process_`)) metric.name = PROCESS_PREFIX + metric.name.slice(`${PROCESS_PREFIX}process_`.length);
    registry.registerMetric(m);
  }
}

const PROCESS_PREFIX = 'strata_process_';

export function createMetrics(src: StatsSource): Registry {
  const registry = new Registry();
  registerProcessMetrics(registry);

  const kernel = perScrape(() => src.kernel());
  const pump = perScrape(() => src.pump());
  const decoder = perScrape(() => src.decoder());
  const correlator = perScrape(() => src.correlator());
  const sink = perScrape(() => src.sink());
  const progs = perScrape(() => src.progStats());

  const counter = (name: string, help: string, read: Reader) =>
    new Counter({
      name, help, registers: [registry],
      collect() {
        const v = read();
        this.reset();
        if (v !== undefined) this.inc(v);
      },
    });
  const gauge = (name: string, help: string, read: Reader) =>
    new Gauge({ name, help, registers: [registry], collect() { this.set(read() ?? 0); } });

  // kernel and transport
  counter('strata_kernel_events_total', 'Records the BPF programs submitted to the ring buffer.', () => kernel()?.events);
  counter('strata_kernel_syscalls_filtered_total', 'Socket syscalls rejected in the kernel by the netns filter.', () => kernel()?.filtered);
  counter('strata_kernel_syscalls_non_tcp_total', 'Socket syscalls of traced pods on non-TCP sockets, ignored in the kernel.', () => kernel()?.notTcp);
  counter('strata_kernel_packets_seen_total', 'Packets seen by the TC programs.', () => kernel()?.pktSeen);
  counter('strata_kernel_packets_aggregated_total', 'Data packets counted in the kernel instead of emitted.', () => kernel()?.pktAggregated);
  counter('strata_kernel_flow_state_misses_total', 'Data packets (not SYN) that found no per-flow state in the kernel: the flow predates the probe, or its state was evicted from the bounded LRU map (that message has no end at that point).', () => kernel()?.flowMisses);
  counter('strata_kernel_packets_non_tcp_total', 'Packets seen by the TC programs that were not TCP, ignored in the kernel.', () => kernel()?.pktNotTcp);
  counter('strata_kernel_shed_events_total', 'Events the kernel did not emit because their request was shed by load shedding (whole requests, never parts).', () => kernel()?.shedEvents);
  counter('strata_kernel_requests_total', 'Requests read by traced servers as the kernel saw them, kept or shed: the offered load load shedding works against.', () => kernel()?.requests);
  counter('strata_kernel_shed_requests_total', 'Requests (root messages) shed by load shedding in the kernel: these traces are not exported, on purpose.', () => kernel()?.shedRoots);
  const shedding = perScrape(() => src.shedding?.());
  const windows = perScrape(() => src.windows?.());
  gauge('strata_sampling_keep_ratio', 'Share of requests the agent traces (load shedding; 1 = all): the kernel\'s keep ratio times the share of time observation windows keep new requests (open, less settling and draining). Traces of the others are shed whole.', () => (shedding()?.keepRatio ?? 1) * (windows()?.keptShare ?? 1));
  gauge('strata_observation_window_open', '1 while the socket and net_dev probes are attached and new requests are kept (always, unless observation windows are on: shedding.windowCpu).', () => (windows() ? (windows()?.observing ? 1 : 0) : 1));
  gauge('strata_observation_window_share', 'Share of every shedding.windowPeriodMs the observation windows are open (1: no windows, the probes stay attached).', () => windows()?.openShare ?? 1);
  counter('strata_observation_windows_total', 'Observation windows opened (shedding by time: the probes attached for a share of each period).', () => windows()?.windows);
  counter('strata_observation_window_closed_seconds_total', 'Time the socket and net_dev probes were detached between observation windows: requests then are not seen (about strata_observation_offered_requests_per_second times this many).', () => windows()?.closedSeconds);
  gauge('strata_observation_offered_requests_per_second', 'Requests per second traced servers read while the probes were attached, over the last window period: the load the windows were sized for.', () => windows()?.offeredPerS);
  counter('strata_observation_window_detach_errors_total', 'Detaches of the windowed probes that failed between observation windows.', () => windows()?.detachErrors);
  new Gauge({
    name: 'strata_observation_window_phase', help: '1 for the phase observation windows are in: steady (no windows, the probes stay attached), open, draining (no new request kept), closing (the probes being detached), closed.',
    labelNames: ['phase'], registers: [registry],
    collect() {
      const w = windows();
      for (const p of WINDOW_PHASES) this.labels(p).set(w ? (w.phase === p ? 1 : 0) : p === 'steady' ? 1 : 0);
    },
  });
  counter('strata_kernel_paused_packets_total', 'Packets the TC and net_dev programs passed over between observation windows (one map lookup each).', () => kernel()?.paused);
  gauge('strata_agent_cpu_budget_cores', 'CPU the agent may use before it sheds load (shedding.cpuBudget; 0 = never).', () => shedding()?.cpuBudget);
  gauge('strata_agent_cpu_usage_cores', 'CPU the agent used over the last shedding interval, in cores.', () => shedding()?.usageCores);
  gauge('strata_agent_cpu_floor_cores', 'CPU the agent uses with no request at all (learned from request-free intervals; 0 until one is seen), in cores: shedding.cpuBudget is for the usage above it.', () => shedding()?.floorCores);
  counter('strata_sampling_adjustments_total', 'Changes of the kernel keep ratio made by load shedding.', () => shedding()?.adjustments);
  const memory = perScrape(() => src.memory?.());
  counter('strata_malloc_trims_total', 'Times the agent gave the free memory of its malloc arenas back to the kernel (malloc_trim, every 10 s).', () => memory()?.mallocTrims);
  counter('strata_malloc_trim_seconds_total', 'Wall time spent in malloc_trim.', () => memory()?.mallocTrimSeconds);
  counter('strata_pump_batches_total', 'Batches handed from the ring-buffer thread to JS.', () => pump()?.batches);
  counter('strata_pump_records_total', 'Records handed from the ring-buffer thread to JS.', () => pump()?.records);
  counter('strata_decoder_records_total', 'Records decoded.', () => decoder().records);

  // kernel CPU cost per BPF program (kernel.bpf_stats_enabled, turned on by the agent while it runs)
  const runTime = new Counter({
    name: 'strata_bpf_run_time_seconds_total',
    help: 'Kernel CPU time spent running this BPF program (bpf_prog_info run_time_ns). ' +
      'Cost per run in ns: rate(strata_bpf_run_time_seconds_total[1m]) / rate(strata_bpf_runs_total[1m]) * 1e9; ' +
      'sum the enter_/exit_ programs for one traced syscall, tc_ingress/tc_egress for one packet.',
    labelNames: ['program'], registers: [registry],
    collect() {
      this.reset();
      for (const p of progs()) runTimeOf(p.name).inc(p.runTimeNs / 1e9);
    },
  });
  const runTimeOf = children<{ inc: Inc }>((program) => runTime.labels(program));
  const runs = new Counter({
    name: 'strata_bpf_runs_total',
    help: 'Times this BPF program ran (bpf_prog_info run_cnt); see strata_bpf_run_time_seconds_total for the cost per run.',
    labelNames: ['program'], registers: [registry],
    collect() {
      this.reset();
      for (const p of progs()) runsOf(p.name).inc(p.runCnt);
    },
  });
  const runsOf = children<{ inc: Inc }>((program) => runs.labels(program));

  // ovs (bpf/ovs.bpf.c, correlate/ovs.ts)
  counter('strata_kernel_ovs_upcalls_total', 'Flow installs seen in ovs-vswitchd (userspace datapath) while it handled a batch read from a port: flow misses.', () => kernel()?.ovsUpcalls);
  // ovs_kernel (bpf/ovs_kernel.bpf.c)
  counter('strata_kernel_ovs_kernel_upcalls_total', 'Packets the kernel OVS datapath sent to ovs-vswitchd (ovs_dp_upcall): flow misses, any protocol.', () => kernel()?.ovsKupcalls);
  counter('strata_kernel_ovs_kernel_returns_total', 'Upcalled TCP packets seen coming back from ovs-vswitchd to be executed (OVS_PACKET_CMD_EXECUTE): one upcall record each.', () => kernel()?.ovsKreturns);
  counter('strata_ovs_upcalls_total', 'OVS flow-miss records the correlator received.', () => correlator().ovsUpcalls);
  counter('strata_ovs_upcalls_not_tcp_total', 'OVS flow misses on a batch whose first packet was not TCP (ARP, ICMP): not attributed to any request.', () => correlator().ovsUpcallsNotTcp);
  counter('strata_ovs_upcalls_charged_total', 'OVS flow misses marked on an ovs hop span (strata.ovs.upcall).', () => correlator().ovsUpcallsCharged);
  counter('strata_ovs_upcall_evictions_total', 'OVS flow-miss records dropped from the bounded table before a span claimed them.', () => correlator().ovsUpcallEvictions);
  counter('strata_ovs_hops_total', 'Hop spans that crossed an Open vSwitch bridge (layer ovs).', () => correlator().ovsHops);

  // correlator
  counter('strata_correlator_exchanges_total', 'HTTP exchanges seen on traced sockets.', () => correlator().exchanges);
  counter('strata_correlator_non_http_total', 'Socket reads/writes that were not HTTP/1.x and were ignored.', () => correlator().nonHttp);
  counter('strata_correlator_orphan_responses_total', 'Response bytes with no request on their connection.', () => correlator().orphanResponses);
  counter('strata_correlator_incomplete_total', 'Exchanges closed before their response (truncated or reset).', () => correlator().incomplete);
  counter('strata_correlator_malformed_context_total', 'Trace context headers that could not be parsed.', () => correlator().malformedContext);
  counter('strata_correlator_trace_adopted_total', 'SERVER exchanges without an incoming trace context that took the trace id their outbound calls carried (the app\'s SDK started that trace).', () => correlator().traceAdopted ?? 0);
  counter('strata_correlator_trace_adopt_conflicts_total', 'Outbound calls of such an exchange that carried another trace id than the one it adopted.', () => correlator().traceAdoptConflicts ?? 0);
  counter('strata_correlator_truncated_heads_total', 'HTTP heads cut by the capture (kept as far as seen).', () => correlator().truncatedHeads);
  counter('strata_correlator_cut_exchanges_total', 'Exchanges whose request was seen and whose response the kernel shed (in flight across an observation window\'s edge): neither they nor their local traces are exported.', () => correlator().cutExchanges);
  counter('strata_correlator_shed_gaps_total', 'Socket events after requests the kernel shed on purpose (load shedding): a seq gap that is not a loss.', () => correlator().shedGaps);
  counter('strata_correlator_seq_gaps_total', 'Socket events whose TCP seq skipped bytes the correlator never saw (events lost upstream): the parser resynchronised.', () => correlator().seqGaps);
  counter('strata_correlator_seq_gap_bytes_total', 'Bytes of those gaps.', () => correlator().seqGapBytes);
  counter('strata_correlator_points_dropped_total', 'Observation points beyond the per-message cap (retransmissions), not turned into hop spans.', () => correlator().pointsDropped);
  counter('strata_correlator_idle_closes_total', 'Connections ended by the agent after a quiet period without events.', () => correlator().idleCloses);
  counter('strata_correlator_clock_clamps_total', 'Span times moved inside their parent because the clock offset drifted between batches.', () => correlator().clockClamps);
  counter('strata_sampling_traces_kept_total', 'Local traces exported by the sampling decision (errors, slow, sampled caller, ratio).', () => correlator().tracesKept);
  counter('strata_sampling_traces_dropped_total', 'Local traces not exported by the sampling decision.', () => correlator().tracesSampledOut);
  counter('strata_sampling_spans_dropped_total', 'Spans not exported by the sampling decision.', () => correlator().spansSampledOut);
  counter('strata_sampling_held_evictions_total', 'Local traces decided before their root ended because too many were held.', () => correlator().heldEvictions);
  gauge('strata_correlator_connections', 'Connections tracked.', () => correlator().conns);
  gauge('strata_correlator_messages', 'Messages (request/response observation sets) tracked.', () => correlator().messages);
  gauge('strata_correlator_pending_exchanges', 'HTTP exchanges whose request was seen and whose response has not ended.', () => correlator().pending);
  counter('strata_correlator_hop_tails_unmatched_total', 'Tail events (where a message ends at an observation point) whose message was not on file (expired, evicted, or no first packet seen).', () => correlator().tailsUnmatched);
  counter('strata_correlator_hop_ends_unknown_total', 'Messages whose last byte was not reported at one of their packet points (no PSH at the end, state evicted): those hop spans end at the last byte known.', () => correlator().hopEndsUnknown);
  counter('strata_correlator_packets_without_connection_total', 'Data packets on traced interfaces that no traced socket on this node sent or received.', () => correlator().packetsWithoutConnection);

  const evictions = new Counter({
    name: 'strata_correlator_evictions_total', help: 'Entries evicted from bounded tables (oldest first, when full).', labelNames: ['table'], registers: [registry],
    collect() {
      this.reset();
      const c = correlator();
      evictedConns.inc(c.connEvictions ?? 0);
      evictedMsgs.inc(c.messageEvictions ?? 0);
      evictedClients.inc(c.clientEvictions ?? 0);
      evictedThreads.inc(c.threadEvictions ?? 0);
    },
  });
  const evictedConns = evictions.labels('connections');
  const evictedMsgs = evictions.labels('messages');
  const evictedClients = evictions.labels('client_exchanges');
  const evictedThreads = evictions.labels('threads');

  // causality (correlate/causality.ts): the share of calls linked is linked / (linked + ambiguous)
  counter('strata_correlator_ambiguous_causes_total', 'Outbound calls of a process serving requests that no evidence (trace context, X-Request-ID, connect, event-loop order, thread) tied to one: left unlinked as their own local root, strata.cause=ambiguous.', () => correlator().causesAmbiguous);
  counter('strata_correlator_unrelated_calls_total', 'Outbound calls of a process with no inbound request in progress: local roots, strata.cause=none.', () => correlator().causesNone);
  const linked = new Counter({
    name: 'strata_correlator_linked_causes_total', help: 'Outbound calls linked to the inbound request they serve, by the evidence used (strata.cause on the span).', labelNames: ['rule'], registers: [registry],
    collect() {
      this.reset();
      const c = correlator();
      for (const [rule, key] of LINKED_BY_RULE) linked.labels(rule).inc(c[key] ?? 0);
    },
  });

  const invalid = new Counter({
    name: 'strata_correlator_invalid_requests_total',
    help: 'Requests that were not valid HTTP/1.x, by reason (bad_request_line: junk after a method; head_incomplete: the connection ended inside the head; head_too_long), not exported unless correlator.exportInvalid.',
    labelNames: ['reason'], registers: [registry],
    collect() {
      this.reset();
      const c = correlator();
      invalidLine.inc(c.invalidBadRequestLine ?? 0);
      invalidIncomplete.inc(c.invalidHeadIncomplete ?? 0);
      invalidTooLong.inc(c.invalidHeadTooLong ?? 0);
    },
  });
  const invalidLine = invalid.labels('bad_request_line');
  const invalidIncomplete = invalid.labels('head_incomplete');
  const invalidTooLong = invalid.labels('head_too_long');
  counter('strata_correlator_hops_incomplete_total', 'Exchanges whose hop chain lacks observation points (strata.hops.incomplete on the span).', () => correlator().hopsIncomplete);

  const spans = new Counter({
    name: 'strata_spans_total', help: 'Spans emitted by the correlator (exchange: SERVER/CLIENT, hop: INTERNAL network hops).', labelNames: ['kind'], registers: [registry],
    collect() {
      this.reset();
      spansExchange.inc(correlator().spansEmitted ?? 0);
      spansHop.inc(correlator().hopSpansEmitted ?? 0);
    },
  });
  const spansExchange = spans.labels('exchange');
  const spansHop = spans.labels('hop');

  // cross-node stitching: the channel (peers) and the held local traces (correlator)
  const peers = perScrape(() => src.peers?.());
  counter('strata_peer_mappings_sent_total', 'Stitch mappings (message key -> trace, parent, sampled) delivered to peer agents.', () => peers()?.stats.sent);
  counter('strata_peer_mappings_received_total', 'Stitch mappings received from peer agents with a valid signature.', () => peers()?.stats.received);
  counter('strata_peer_mappings_published_total', 'Stitch mappings published by CLIENT exchanges to another node or a Service (before routing and bounds).', () => correlator().stitchPublished);
  counter('strata_peer_rejected_auth_total', 'Peer batches refused: bad or missing HMAC signature (stitch.secretFile differs between nodes).', () => peers()?.stats.rejectedAuth);
  counter('strata_peer_rejected_batches_total', 'Peer batches refused although signed: malformed, wrong version or larger than stitch.maxBatchBytes.', () => peers()?.stats.rejectedBatch);
  counter('strata_peer_timeouts_total', 'Batch requests to a peer abandoned after stitch.timeoutMs (their mappings are counted as dropped{stage="send_error"}).', () => peers()?.stats.timeouts);
  const peerDrops = new Counter({
    name: 'strata_peer_mappings_dropped_total',
    help: 'Stitch mappings not delivered, by stage: queue_full (a peer\'s outbox at stitch.maxPending: oldest dropped), send_error (peer unreachable, refused or timed out), no_peer (no peer configured for the address).',
    labelNames: ['stage'], registers: [registry],
    collect() {
      this.reset();
      const p = peers()?.stats;
      peerDrop.queue_full.inc(p?.droppedQueueFull ?? 0);
      peerDrop.send_error.inc(p?.droppedSendError ?? 0);
      peerDrop.no_peer.inc(p?.droppedNoPeer ?? 0);
    },
  });
  const peerDrop = { queue_full: peerDrops.labels('queue_full'), send_error: peerDrops.labels('send_error'), no_peer: peerDrops.labels('no_peer') };
  gauge('strata_peer_nodes', 'Other nodes whose agents get stitch mappings (stitch.peersFile, or the API server\'s Nodes with stitch.peersFrom=kubernetes).', () => peers()?.nodes);
  gauge('strata_peer_nodes_unusable', 'Nodes the API server lists without an IPv4 pod CIDR or InternalIP: not peers (stitch.peersFrom=kubernetes).', () => peers()?.nodesUnusable);
  counter('strata_peer_node_list_errors_total', 'Failed lists/watches of the Node objects (stitch.peersFrom=kubernetes); the last peers are kept and the informer retried.', () => peers()?.apiErrors);
  gauge('strata_peer_pending_mappings', 'Stitch mappings waiting in the peers\' outboxes.', () => peers()?.pending);
  // the same, per peer: which node's joins are being lost, and whether it answers again
  new Counter({
    name: 'strata_peer_link_mappings_total',
    help: 'Stitch mappings for one peer, by result: delivered, queue_full (dropped from its full outbox), send_error (it was unreachable, refused or timed out: joins lost on that node).',
    labelNames: ['peer', 'result'], registers: [registry],
    collect() {
      this.reset();
      for (const [peer, l] of peers()?.links ?? []) {
        this.labels(peer, 'delivered').inc(l.delivered);
        this.labels(peer, 'queue_full').inc(l.droppedQueueFull);
        this.labels(peer, 'send_error').inc(l.droppedSendError);
      }
    },
  });
  new Gauge({
    name: 'strata_peer_up', help: 'Whether the peer took the last batch sent to it (1; also before any batch) or not (0: unreachable, refused or timed out).',
    labelNames: ['peer'], registers: [registry],
    collect() {
      this.reset();
      for (const [peer, l] of peers()?.links ?? []) this.labels(peer).set(l.up ? 1 : 0);
    },
  });
  new Gauge({
    name: 'strata_peer_link_pending_mappings', help: 'Stitch mappings waiting in one peer\'s outbox (at most stitch.maxPending).',
    labelNames: ['peer'], registers: [registry],
    collect() {
      this.reset();
      for (const [peer, l] of peers()?.links ?? []) this.labels(peer).set(l.pending);
    },
  });
  counter('strata_peer_stitched_total', 'Local traces that took their trace id and parent from a peer\'s mapping.', () => correlator().stitched);
  counter('strata_peer_stitch_timeouts_total', 'Local traces that waited stitch.holdMs for a peer in vain and were exported as their own (strata.stitch=timeout), incl. those given up early.', () => correlator().stitchTimeouts);
  counter('strata_peer_held_evictions_total', 'Local traces given up before stitch.holdMs because stitch.maxHeldTraces were waiting.', () => correlator().stitchHeldEvictions);
  gauge('strata_peer_held_exchanges', 'Exchanges held right now waiting for a peer\'s mapping.', () => correlator().stitchHeld);
  counter('strata_peer_held_exchanges_total', 'Exchanges held for a peer\'s mapping, in all.', () => correlator().stitchHeldTotal);
  counter('strata_peer_early_mappings_total', 'Mappings that arrived before their spans (kept for stitch.mappingTtlMs).', () => correlator().stitchEarlyMappings);
  counter('strata_peer_mappings_expired_total', 'Early mappings forgotten unused after stitch.mappingTtlMs.', () => correlator().stitchMappingsExpired);
  counter('strata_peer_stitch_wait_seconds_total', 'Time held traces waited for their mapping, summed (divide by strata_peer_stitched_total for the mean added latency).', () => (correlator().stitchWaitNs ?? 0) / 1e9);
  new Gauge({
    name: 'strata_peer_clock_skew_seconds', help: 'This node\'s wall clock minus the peer\'s at its last batch (includes the transfer time; recorded, never corrected).',
    labelNames: ['peer'], registers: [registry],
    collect() {
      this.reset();
      for (const [peer, ms] of peers()?.skewMs ?? []) this.labels(peer).set(ms / 1e3);
    },
  });

  // every loss, by the stage it happened in
  const drops = new Counter({
    name: 'strata_drops_total',
    help: 'Events, batches or spans lost, by pipeline stage: kernel_ringbuf (ring buffer full), kernel_read (payload reads that failed in BPF), ' +
      'js_queue (records of batches dropped before JS), decoder (malformed, unknown-type or wrong-version records), exporter (spans lost in export, summed over exporters).',
    labelNames: ['stage'], registers: [registry],
    collect() {
      this.reset();
      const k = kernel();
      const d = decoder();
      drop.kernel_ringbuf.inc(k?.rbDrops ?? 0);
      drop.kernel_read.inc(k?.readErrors ?? 0);
      drop.js_queue.inc(pump()?.droppedRecords ?? 0);
      drop.decoder.inc((d.malformed ?? 0) + (d.unknownType ?? 0) + (d.badVersion ?? 0));
      drop.exporter.inc(sink().spansDropped);
    },
  });
  const drop = Object.fromEntries(DROP_STAGES.map((s) => [s, drops.labels(s)])) as Record<(typeof DROP_STAGES)[number], { inc: Inc }>;

  // export, per exporter
  counter('strata_export_spans_rejected_total', 'Spans refused before reaching any exporter (invalid ids or times, or emitted after shutdown).', () => sink().spansRejected);
  // one counter per exporter and result, read from the sink's per-exporter statistics
  const perExporter = (name: string, help: string, results: [string, (e: ExporterStats) => number][]) => {
    const c: Counter<'exporter' | 'result'> = new Counter({
      name, help, labelNames: ['exporter', 'result'], registers: [registry],
      collect() {
        this.reset();
        const ex = sink().exporters;
        exporterNames(ex).forEach((exporter, i) => {
          for (const [result, read] of results) of(exporter, result).inc(read(ex[i] as ExporterStats));
        });
      },
    });
    const of = children<{ inc: Inc }>((exporter, result) => c.labels(exporter, result));
  };
  perExporter('strata_export_spans_total', 'Spans per exporter: result="exported" acknowledged by the backend, "dropped" lost (failed export or queue full), "shed" whole traces left out on purpose while the queues were past half full.',
    [['exported', (e) => e.spansExported], ['dropped', (e) => e.spansDropped], ['shed', (e) => e.spansShed]]);
  perExporter('strata_export_requests_total', 'Export calls (one batch each) per exporter, by result: success or failure.',
    [['success', (e) => e.exportsSucceeded], ['failure', (e) => e.exportsFailed]]);
  // one gauge per exporter, read from the sink's per-exporter statistics
  const perExporterGauge = (name: string, help: string, read: (e: ExporterStats) => number) => {
    const g: Gauge<'exporter'> = new Gauge({
      name, help, labelNames: ['exporter'], registers: [registry],
      collect() {
        this.reset();
        const ex = sink().exporters;
        exporterNames(ex).forEach((exporter, i) => of(exporter).set(read(ex[i] as ExporterStats)));
      },
    });
    const of = children<{ set: SetFn }>((exporter) => g.labels(exporter));
  };
  perExporterGauge('strata_export_queue_spans', "Spans waiting in the exporter's batch queue.", (e) => e.queued);
  perExporterGauge('strata_export_held_bytes', 'Estimated heap bytes of the spans an exporter holds, queued or in export calls (bounded by export.queue.maxBytes).', (e) => e.heldBytes);
  const exportDuration = new ExternalHistogram('strata_export_duration_seconds',
    "Duration of an exporter's export calls (one batch each), retries included, successes and failures alike.", () => {
      const ex = sink().exporters;
      return exporterNames(ex).map((exporter, i) => ({ labels: { exporter }, latency: (ex[i] as ExporterStats).exportLatencyMs }));
    });
  // Registry reads metrics by shape; its type names prom-client's classes only
  registry.registerMetric(exportDuration as unknown as Histogram);

  const attached = new Gauge({
    name: 'strata_probe_attached', help: '1 when the probe is attached, 0 when it could not be.', labelNames: ['probe'], registers: [registry],
    collect() {
      this.reset();
      for (const p of src.probes()) attachedOf(p.name).set(p.attached ? 1 : 0);
    },
  });
  const attachedOf = children<{ set: SetFn }>((probe) => attached.labels(probe));
  const idle = new Gauge({
    name: 'strata_probe_idle', help: '1 while the probe is loaded but detached because no pod on this node is traced (probes.idleDetachS): no process pays for it.',
    labelNames: ['probe'], registers: [registry],
    collect() {
      this.reset();
      for (const p of src.probes()) if (p.idle !== undefined) idleOf(p.name).set(p.idle ? 1 : 0);
    },
  });
  const idleOf = children<{ set: SetFn }>((probe) => idle.labels(probe));

  // discovery: pods of this node, the API server's health, the /proc scan, TC attach latency
  const disc = perScrape(() => src.discovery?.());
  gauge('strata_discovery_metadata_stale', '1 while pod metadata may be out of date (the API server unreachable, or not listed yet): tracing goes on with the pods last known and those /proc shows.', () => (disc()?.stale ? 1 : 0));
  gauge('strata_discovery_pods', 'Pods of this node known to discovery (the source\'s, and those found only in /proc).', () => disc()?.stats.pods);
  gauge('strata_discovery_pods_traced', 'Pods traced (selected by discovery.namespaces/excludeNamespaces/labelSelector, running a proxy, or unknown and discovery.unknownPods=trace).', () => disc()?.stats.podsTraced);
  gauge('strata_discovery_pods_pending', 'Traced pods whose network namespace or host veth is not found yet.', () => disc()?.stats.podsPending);
  gauge('strata_discovery_pods_unknown', 'Pods found in /proc (kubelet-style cgroups) that the source does not name.', () => disc()?.stats.unknownPods);
  gauge('strata_discovery_pods_over_limit', 'Pods of the source beyond discovery.maxPods, not traced.', () => disc()?.stats.podsOverLimit);
  gauge('strata_discovery_targets', 'Trace targets applied: pod netns and cgroups in the kernel filters, interfaces with TC or net_dev.', () => disc()?.stats.targets);
  counter('strata_discovery_reconciles_total', 'Reconciles of the topology and kernel filters with discovery.', () => disc()?.stats.reconciles);
  counter('strata_discovery_apply_errors_total', 'Trace targets that could not be applied or removed (retried at the next reconcile).', () => disc()?.stats.applyErrors);
  counter('strata_discovery_link_events_total', 'rtnetlink link events of the node\'s netns (ip monitor).', () => disc()?.stats.linkEvents);
  counter('strata_discovery_lists_total', 'Successful lists of the source (API server LIST, pods file read).', () => disc()?.sourceStats.lists);
  counter('strata_discovery_relists_total', 'Lists after the first: resync, 410 Gone (expired resourceVersion), reconnect without a resumable resourceVersion.', () => disc()?.sourceStats.relists);
  counter('strata_discovery_list_errors_total', 'Failed lists (API server unreachable or refusing, pods file unreadable).', () => disc()?.sourceStats.listErrors);
  counter('strata_discovery_watch_errors_total', 'Watches that ended with an error (not the server\'s normal close).', () => disc()?.sourceStats.watchErrors);
  counter('strata_discovery_watch_bad_lines_total', 'Watch stream lines longer than the bound (16 MiB) or not a watch event; each ends its watch with an error (STRATA_ERR_KUBE_WATCH), resumed with backoff.', () => disc()?.sourceStats.watchBadLines);
  counter('strata_discovery_proc_scans_total', 'Scans of /proc for processes of pods and proxies.', () => disc()?.proc.scans);
  counter('strata_discovery_proc_scan_seconds_total', 'Wall time spent in /proc scans.', () => (disc()?.proc.scanMsTotal ?? 0) / 1000);
  counter('strata_discovery_proc_reads_total', 'New processes read by /proc scans (cgroup and comm of each).', () => disc()?.proc.reads);
  gauge('strata_discovery_processes', 'Processes the /proc scan remembers.', () => disc()?.proc.processes);
  const attachLatency = new ExternalHistogram('strata_discovery_tc_attach_seconds',
    'From a new veth\'s rtnetlink event (as read by the agent) to TC attached on it.', () => [{ labels: {}, latency: disc()?.stats.attachLatency }]);
  registry.registerMetric(attachLatency as unknown as Histogram);
  return registry;
}

/** strata_correlator_linked_causes_total's rule label -> the correlator stat */
const LINKED_BY_RULE: [string, keyof CorrelatorStats][] = [
  ['context', 'causesLinkedContext'], ['request_id', 'causesLinkedRequestId'], ['connect', 'causesLinkedConnect'],
  ['event_loop', 'causesLinkedEventLoop'], ['thread', 'causesLinkedThread'],
];
