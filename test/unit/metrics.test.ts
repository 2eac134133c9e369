// createMetrics over a fake StatsSource: names, HELP, label values, and values that follow the
// source at every scrape (including a component restarting from zero).
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { EXPORT_LATENCY_BUCKETS_MS, type ExportLatencyStats, type ExporterStats, type SdkSinkStats } from '../../agent/src/export/sdk-sink.ts';
import { DROP_STAGES, type StatsSource, createMetrics } from '../../agent/src/metrics/metrics.ts';
import { type Family, missingPrometheus, parseExposition, promtoolCheck } from '../helpers/prometheus.ts';

/** export latency stats as the sink keeps them, from a list of call durations in ms */
function latency(ms: number[]): ExportLatencyStats {
  return {
    bucketsMs: EXPORT_LATENCY_BUCKETS_MS,
    buckets: EXPORT_LATENCY_BUCKETS_MS.map((b) => ms.filter((x) => x <= b).length),
    count: ms.length,
    sumMs: ms.reduce((a, x) => a + x, 0),
    lastMs: ms.at(-1) ?? 0,
    maxMs: Math.max(0, ...ms),
  };
}

function exporter(name: string, o: Partial<ExporterStats> = {}): ExporterStats {
  return { name, exportsSucceeded: 0, exportsFailed: 0, spansExported: 0, spansDropped: 0, spansDroppedQueueFull: 0, spansShed: 0, queued: 0, heldBytes: 0, exportLatencyMs: latency([]), ...o };
}

class FakeSource implements StatsSource {
  k: Record<string, number> | undefined = { events: 100, rbDrops: 2, filtered: 7, notTcp: 3, pktSeen: 50, pktAggregated: 40, pktNotTcp: 1, readErrors: 4 };
  p: Record<string, number> | undefined = { records: 90, batches: 9, droppedBatches: 1, droppedRecords: 10, polls: 30 };
  d: Record<string, number> = { records: 90, batches: 9, unknownType: 1, badVersion: 2, malformed: 3, skippedBytes: 0 };
  c: Record<string, number> = {
    conns: 5, messages: 6, connEvictions: 1, idleCloses: 2, tracesKept: 11, tracesSampledOut: 12, spansSampledOut: 13, heldEvictions: 14, clockClamps: 0, pending: 15, packetsWithoutConnection: 16, messageEvictions: 3, clientEvictions: 4, exchanges: 20, spansEmitted: 40,
    hopSpansEmitted: 120, nonHttp: 2, orphanResponses: 1, incomplete: 3, malformedContext: 1, truncatedHeads: 2, pointsDropped: 5,
    causesLinkedContext: 21, causesLinkedRequestId: 22, causesLinkedConnect: 23, causesLinkedEventLoop: 24, causesLinkedThread: 25, causesAmbiguous: 26, causesNone: 27, threadEvictions: 28,
  };
  exporters: ExporterStats[] = [
    exporter('OTLPTraceExporter', { exportsSucceeded: 8, exportsFailed: 2, spansExported: 150, spansDropped: 10, queued: 3, heldBytes: 4800, spansShed: 7,
      exportLatencyMs: latency([0.5, 3, 3, 7, 20, 20, 80, 400, 9000, 12_000]) }),
    exporter('TraceFileExporter', { exportsSucceeded: 9, spansExported: 160, exportLatencyMs: latency([0.1, 0.2]) }),
  ];
  rejected = 1;
  progs = [
    { name: 'enter_read', runTimeNs: 2_000_000_000, runCnt: 1000 },
    { name: 'tc_ingress', runTimeNs: 500_000, runCnt: 10 },
  ];
  probeList = [
    { name: 'sock_syscalls', attached: true },
    { name: 'tc:veth0', attached: false },
  ];
  calls = { kernel: 0, sink: 0 };

  kernel() {
    this.calls.kernel++;
    return this.k;
  }
  pump() {
    return this.p;
  }
  decoder() {
    return this.d;
  }
  correlator() {
    return this.c;
  }
  sink(): SdkSinkStats {
    this.calls.sink++;
    const sum = (f: (e: ExporterStats) => number) => this.exporters.reduce((a, e) => a + f(e), 0);
    return {
      spansEmitted: 160, spansShed: 0, spansRejected: this.rejected, providersCreated: 2, providersEvicted: 0, providersCached: 2,
      exportsSucceeded: sum((e) => e.exportsSucceeded), exportsFailed: sum((e) => e.exportsFailed),
      spansExported: sum((e) => e.spansExported), spansDropped: sum((e) => e.spansDropped), spansDroppedQueueFull: sum((e) => e.spansDroppedQueueFull),
      exporters: this.exporters.map((e) => ({ ...e })),
    };
  }
  progStats() {
    return this.progs;
  }
  memory() {
    return { mallocTrims: 6, mallocTrimSeconds: 0.012 };
  }
  probes() {
    return this.probeList;
  }
}

async function scrape(src: FakeSource): Promise<{ text: string; fam: Map<string, Family> }> {
  const reg = createMetrics(src);
  const text = await reg.metrics();
  return { text, fam: parseExposition(text) };
}

function value(fam: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  const f = fam.get(name);
  assert.ok(f, `${name} exposed`);
  const hits = f.samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(hits.length <= 1, `${name}${JSON.stringify(labels)} names one series`);
  return hits[0]?.value;
}

function labelValues(fam: Map<string, Family>, name: string, label: string): string[] {
  return [...new Set((fam.get(name)?.samples ?? []).map((s) => s.labels[label] ?? ''))].sort();
}

const OWN = [
  'strata_kernel_events_total', 'strata_kernel_syscalls_filtered_total', 'strata_kernel_syscalls_non_tcp_total', 'strata_kernel_packets_seen_total',
  'strata_kernel_packets_aggregated_total', 'strata_kernel_packets_non_tcp_total', 'strata_pump_batches_total', 'strata_pump_records_total',
  'strata_malloc_trims_total', 'strata_malloc_trim_seconds_total',
  'strata_decoder_records_total', 'strata_bpf_run_time_seconds_total', 'strata_bpf_runs_total', 'strata_correlator_exchanges_total',
  'strata_correlator_non_http_total', 'strata_correlator_orphan_responses_total', 'strata_correlator_incomplete_total',
  'strata_correlator_malformed_context_total', 'strata_correlator_trace_adopted_total', 'strata_correlator_trace_adopt_conflicts_total',
  'strata_correlator_truncated_heads_total', 'strata_correlator_seq_gaps_total', 'strata_correlator_seq_gap_bytes_total', 'strata_correlator_points_dropped_total',
  'strata_correlator_idle_closes_total', 'strata_correlator_clock_clamps_total', 'strata_correlator_pending_exchanges',
  'strata_correlator_ambiguous_causes_total', 'strata_correlator_unrelated_calls_total', 'strata_correlator_linked_causes_total',
  'strata_correlator_packets_without_connection_total', 'strata_correlator_hop_tails_unmatched_total', 'strata_correlator_hop_ends_unknown_total',
  'strata_kernel_flow_state_misses_total', 'strata_correlator_invalid_requests_total', 'strata_correlator_hops_incomplete_total',
  'strata_sampling_traces_kept_total', 'strata_sampling_traces_dropped_total',
  'strata_sampling_spans_dropped_total', 'strata_sampling_held_evictions_total', 'strata_correlator_connections', 'strata_correlator_messages', 'strata_correlator_evictions_total',
  'strata_spans_total', 'strata_drops_total', 'strata_export_spans_rejected_total', 'strata_export_spans_total', 'strata_export_requests_total',
  'strata_export_queue_spans', 'strata_export_held_bytes', 'strata_export_duration_seconds', 'strata_probe_attached', 'strata_probe_idle',
  'strata_kernel_shed_events_total', 'strata_kernel_shed_requests_total', 'strata_kernel_requests_total', 'strata_sampling_keep_ratio', 'strata_agent_cpu_budget_cores',
  'strata_agent_cpu_usage_cores', 'strata_agent_cpu_floor_cores', 'strata_sampling_adjustments_total', 'strata_correlator_shed_gaps_total', 'strata_correlator_cut_exchanges_total',
  'strata_discovery_metadata_stale', 'strata_discovery_pods', 'strata_discovery_pods_traced', 'strata_discovery_pods_pending',
  'strata_discovery_pods_unknown', 'strata_discovery_pods_over_limit', 'strata_discovery_targets', 'strata_discovery_reconciles_total',
  'strata_discovery_apply_errors_total', 'strata_discovery_link_events_total', 'strata_discovery_lists_total', 'strata_discovery_relists_total',
  'strata_discovery_list_errors_total', 'strata_discovery_watch_errors_total', 'strata_discovery_watch_bad_lines_total', 'strata_discovery_proc_scans_total',
  'strata_discovery_proc_scan_seconds_total', 'strata_discovery_proc_reads_total', 'strata_discovery_processes', 'strata_discovery_tc_attach_seconds',
  'strata_peer_mappings_sent_total', 'strata_peer_mappings_received_total', 'strata_peer_mappings_published_total', 'strata_peer_rejected_auth_total',
  'strata_peer_rejected_batches_total', 'strata_peer_timeouts_total', 'strata_peer_mappings_dropped_total', 'strata_peer_pending_mappings',
  'strata_peer_nodes', 'strata_peer_nodes_unusable', 'strata_peer_node_list_errors_total',
  'strata_peer_stitched_total', 'strata_peer_stitch_timeouts_total', 'strata_peer_held_evictions_total', 'strata_peer_held_exchanges',
  'strata_peer_held_exchanges_total', 'strata_peer_early_mappings_total', 'strata_peer_mappings_expired_total', 'strata_peer_stitch_wait_seconds_total',
  'strata_peer_clock_skew_seconds', 'strata_peer_link_mappings_total', 'strata_peer_up', 'strata_peer_link_pending_mappings',
  'strata_kernel_ovs_upcalls_total', 'strata_ovs_upcalls_total', 'strata_ovs_upcalls_not_tcp_total', 'strata_ovs_upcalls_charged_total',
  'strata_ovs_upcall_evictions_total', 'strata_ovs_hops_total', 'strata_kernel_ovs_kernel_upcalls_total', 'strata_kernel_ovs_kernel_returns_total',
  'strata_kernel_paused_packets_total', 'strata_observation_window_open', 'strata_observation_window_share', 'strata_observation_windows_total',
  'strata_observation_window_closed_seconds_total', 'strata_observation_offered_requests_per_second', 'strata_observation_window_detach_errors_total',
  'strata_observation_window_phase',
];

describe('createMetrics', () => {
  it('declares every metric once, strata_-named, with HELP, counters ending in _total and nothing else', async () => {
    const { fam } = await scrape(new FakeSource());
    const ours = [...fam.values()].filter((f) => !f.name.startsWith('strata_process_'));
    assert.deepEqual(ours.map((f) => f.name).sort(), [...OWN].sort());
    for (const f of fam.values()) {
      assert.match(f.name, /^strata_[a-z0-9]+_[a-z0-9_]+$/, f.name);
      assert.ok(f.help && f.help.length > 10, `${f.name} has HELP`);
      assert.ok(f.type, `${f.name} has TYPE`);
      assert.equal(f.name.endsWith('_total'), f.type === 'counter', `${f.name} (${f.type}): _total iff counter`);
      if (f.type === 'histogram') assert.match(f.name, /_seconds$/, `${f.name}: a duration in seconds`);
    }
    assert.match(fam.get('strata_bpf_run_time_seconds_total')?.help ?? '', /rate\(strata_bpf_run_time_seconds_total\[1m\]\) \/ rate\(strata_bpf_runs_total\[1m\]\)/);
  });

  it('has process CPU, RSS and event-loop lag under strata_process_ (prom-client process_* without a doubled prefix)', async () => {
    const { fam } = await scrape(new FakeSource());
    for (const n of ['strata_process_cpu_seconds_total', 'strata_process_cpu_user_seconds_total', 'strata_process_resident_memory_bytes',
      'strata_process_start_time_seconds', 'strata_process_nodejs_eventloop_lag_seconds',
      'strata_process_nodejs_eventloop_lag_p99_seconds', 'strata_process_nodejs_heap_size_used_bytes']) {
      assert.ok(fam.get(n)?.samples.length, `${n} has a sample`);
    }
    assert.ok((value(fam, 'strata_process_resident_memory_bytes') ?? 0) > 1 << 20);
    assert.ok((value(fam, 'strata_process_cpu_seconds_total') ?? 0) > 0);
    const doubled = [...fam.keys()].filter((n) => n.includes('process_process'));
    assert.deepEqual(doubled, [], 'no strata_process_process_*');
    const outside = [...fam.keys()].filter((n) => /^(process|nodejs)_/.test(n));
    assert.deepEqual(outside, [], 'every default metric under strata_');
  });

  it('observation windows: off, the probes always observe; on, the phase, the share and the keep ratio times the share', async () => {
    const off = (await scrape(new FakeSource())).fam;
    assert.equal(value(off, 'strata_observation_window_open'), 1);
    assert.equal(value(off, 'strata_observation_window_share'), 1);
    assert.equal(value(off, 'strata_observation_window_phase', { phase: 'steady' }), 1);
    const src = new FakeSource();
    Object.assign(src, {
      shedding: () => ({ keepRatio: 0.5, cpuBudget: 0.1, usageCores: 0.2, adjustments: 3 }),
      windows: () => ({ phase: 'closed', observing: false, openShare: 0.25, keptShare: 0.2, windows: 7, closedSeconds: 12.5, offeredPerS: 900, detachErrors: 0 }),
    });
    src.k = { ...src.k, paused: 33 };
    const { fam } = await scrape(src);
    assert.equal(value(fam, 'strata_sampling_keep_ratio'), 0.1);
    assert.equal(value(fam, 'strata_observation_window_open'), 0);
    assert.equal(value(fam, 'strata_observation_window_share'), 0.25);
    assert.equal(value(fam, 'strata_observation_windows_total'), 7);
    assert.equal(value(fam, 'strata_observation_window_closed_seconds_total'), 12.5);
    assert.equal(value(fam, 'strata_observation_offered_requests_per_second'), 900);
    assert.equal(value(fam, 'strata_kernel_paused_packets_total'), 33);
    assert.equal(value(fam, 'strata_observation_window_phase', { phase: 'closed' }), 1);
    assert.equal(value(fam, 'strata_observation_window_phase', { phase: 'steady' }), 0);
  });

  it('labels: drop stages, eviction tables, span kinds, programs, probes, exporters', async () => {
    const { fam } = await scrape(new FakeSource());
    assert.deepEqual(labelValues(fam, 'strata_drops_total', 'stage'), [...DROP_STAGES].sort());
    assert.deepEqual(labelValues(fam, 'strata_correlator_evictions_total', 'table'), ['client_exchanges', 'connections', 'messages', 'threads']);
    assert.deepEqual(labelValues(fam, 'strata_spans_total', 'kind'), ['exchange', 'hop']);
    assert.deepEqual(labelValues(fam, 'strata_bpf_runs_total', 'program'), ['enter_read', 'tc_ingress']);
    assert.deepEqual(labelValues(fam, 'strata_bpf_run_time_seconds_total', 'program'), ['enter_read', 'tc_ingress']);
    assert.deepEqual(labelValues(fam, 'strata_probe_attached', 'probe'), ['sock_syscalls', 'tc:veth0']);
    for (const n of ['strata_export_spans_total', 'strata_export_requests_total', 'strata_export_queue_spans']) {
      assert.deepEqual(labelValues(fam, n, 'exporter'), ['OTLPTraceExporter', 'TraceFileExporter'], n);
    }
    assert.deepEqual(labelValues(fam, 'strata_export_spans_total', 'result'), ['dropped', 'exported', 'shed']);
    assert.deepEqual(labelValues(fam, 'strata_export_requests_total', 'result'), ['failure', 'success']);
  });

  it('values are the source totals', async () => {
    const { fam } = await scrape(new FakeSource());
    const v = (n: string, l?: Record<string, string>) => value(fam, n, l);
    assert.equal(v('strata_kernel_events_total'), 100);
    assert.equal(v('strata_kernel_syscalls_filtered_total'), 7);
    assert.equal(v('strata_kernel_syscalls_non_tcp_total'), 3);
    assert.equal(v('strata_kernel_packets_seen_total'), 50);
    assert.equal(v('strata_kernel_packets_aggregated_total'), 40);
    assert.equal(v('strata_kernel_packets_non_tcp_total'), 1);
    assert.equal(v('strata_pump_batches_total'), 9);
    assert.equal(v('strata_pump_records_total'), 90);
    assert.equal(v('strata_malloc_trims_total'), 6);
    assert.equal(v('strata_malloc_trim_seconds_total'), 0.012);
    assert.equal(v('strata_decoder_records_total'), 90);
    assert.equal(v('strata_bpf_run_time_seconds_total', { program: 'enter_read' }), 2);
    assert.equal(v('strata_bpf_run_time_seconds_total', { program: 'tc_ingress' }), 0.0005);
    assert.equal(v('strata_bpf_runs_total', { program: 'enter_read' }), 1000);
    assert.equal(v('strata_correlator_exchanges_total'), 20);
    assert.equal(v('strata_correlator_linked_causes_total', { rule: 'context' }), 21);
    assert.equal(v('strata_correlator_linked_causes_total', { rule: 'request_id' }), 22);
    assert.equal(v('strata_correlator_linked_causes_total', { rule: 'connect' }), 23);
    assert.equal(v('strata_correlator_linked_causes_total', { rule: 'event_loop' }), 24);
    assert.equal(v('strata_correlator_linked_causes_total', { rule: 'thread' }), 25);
    assert.equal(v('strata_correlator_ambiguous_causes_total'), 26);
    assert.equal(v('strata_correlator_unrelated_calls_total'), 27);
    assert.equal(v('strata_correlator_evictions_total', { table: 'threads' }), 28);
    assert.equal(v('strata_correlator_orphan_responses_total'), 1);
    assert.equal(v('strata_correlator_incomplete_total'), 3);
    assert.equal(v('strata_correlator_points_dropped_total'), 5);
    assert.equal(v('strata_correlator_truncated_heads_total'), 2);
    assert.equal(v('strata_correlator_idle_closes_total'), 2);
    assert.equal(v('strata_sampling_traces_kept_total'), 11);
    assert.equal(v('strata_correlator_pending_exchanges'), 15);
    assert.equal(v('strata_correlator_packets_without_connection_total'), 16);
    assert.equal(v('strata_sampling_traces_dropped_total'), 12);
    assert.equal(v('strata_sampling_spans_dropped_total'), 13);
    assert.equal(v('strata_sampling_held_evictions_total'), 14);
    assert.equal(v('strata_correlator_connections'), 5);
    assert.equal(v('strata_correlator_messages'), 6);
    assert.equal(v('strata_correlator_evictions_total', { table: 'connections' }), 1);
    assert.equal(v('strata_correlator_evictions_total', { table: 'messages' }), 3);
    assert.equal(v('strata_correlator_evictions_total', { table: 'client_exchanges' }), 4);
    assert.equal(v('strata_spans_total', { kind: 'exchange' }), 40);
    assert.equal(v('strata_spans_total', { kind: 'hop' }), 120);
    assert.equal(v('strata_drops_total', { stage: 'kernel_ringbuf' }), 2);
    assert.equal(v('strata_drops_total', { stage: 'kernel_read' }), 4);
    assert.equal(v('strata_drops_total', { stage: 'js_queue' }), 10);
    assert.equal(v('strata_drops_total', { stage: 'decoder' }), 6);
    assert.equal(v('strata_drops_total', { stage: 'exporter' }), 10);
    assert.equal(v('strata_export_spans_rejected_total'), 1);
    assert.equal(v('strata_export_spans_total', { exporter: 'OTLPTraceExporter', result: 'exported' }), 150);
    assert.equal(v('strata_export_spans_total', { exporter: 'OTLPTraceExporter', result: 'dropped' }), 10);
    assert.equal(v('strata_export_spans_total', { exporter: 'TraceFileExporter', result: 'dropped' }), 0);
    assert.equal(v('strata_export_spans_total', { exporter: 'OTLPTraceExporter', result: 'shed' }), 7);
    assert.equal(v('strata_export_requests_total', { exporter: 'OTLPTraceExporter', result: 'success' }), 8);
    assert.equal(v('strata_export_requests_total', { exporter: 'OTLPTraceExporter', result: 'failure' }), 2);
    assert.equal(v('strata_export_queue_spans', { exporter: 'OTLPTraceExporter' }), 3);
    assert.equal(v('strata_export_held_bytes', { exporter: 'OTLPTraceExporter' }), 4800);
    assert.equal(v('strata_probe_attached', { probe: 'sock_syscalls' }), 1);
    assert.equal(v('strata_probe_attached', { probe: 'tc:veth0' }), 0);
  });

  it('follows the source at every scrape: no accumulation, restarts from zero, vanished series go', async () => {
    const src = new FakeSource();
    const reg = createMetrics(src);
    const read = async () => parseExposition(await reg.metrics());
    for (let i = 0; i < 3; i++) {
      const fam = await read();
      assert.equal(value(fam, 'strata_kernel_events_total'), 100, 'same total scraped three times');
      assert.equal(value(fam, 'strata_drops_total', { stage: 'decoder' }), 6);
      assert.equal(value(fam, 'strata_bpf_runs_total', { program: 'enter_read' }), 1000);
    }
    src.k = { ...src.k, events: 250, rbDrops: 9 };
    src.c = { ...src.c, conns: 1, connEvictions: 8 };
    src.exporters[0] = exporter('OTLPTraceExporter', { exportsFailed: 7, spansDropped: 300, queued: 0 });
    src.probeList = [{ name: 'sock_syscalls', attached: true }, { name: 'tc:veth0', attached: true }];
    let fam = await read();
    assert.equal(value(fam, 'strata_kernel_events_total'), 250);
    assert.equal(value(fam, 'strata_drops_total', { stage: 'kernel_ringbuf' }), 9);
    assert.equal(value(fam, 'strata_correlator_connections'), 1);
    assert.equal(value(fam, 'strata_correlator_evictions_total', { table: 'connections' }), 8);
    assert.equal(value(fam, 'strata_export_requests_total', { exporter: 'OTLPTraceExporter', result: 'failure' }), 7);
    assert.equal(value(fam, 'strata_export_requests_total', { exporter: 'OTLPTraceExporter', result: 'success' }), 0, 'a restarted exporter shows 0');
    assert.equal(value(fam, 'strata_drops_total', { stage: 'exporter' }), 300);
    assert.equal(value(fam, 'strata_export_queue_spans', { exporter: 'OTLPTraceExporter' }), 0);
    assert.equal(value(fam, 'strata_probe_attached', { probe: 'tc:veth0' }), 1);

    // programs unloaded, probes not yet loaded (kernel/pump undefined before start)
    src.progs = [];
    src.k = undefined;
    src.p = undefined;
    fam = await read();
    assert.deepEqual(fam.get('strata_bpf_runs_total')?.samples, []);
    assert.equal(value(fam, 'strata_kernel_events_total'), 0);
    assert.equal(value(fam, 'strata_drops_total', { stage: 'kernel_ringbuf' }), 0);
    assert.equal(value(fam, 'strata_drops_total', { stage: 'js_queue' }), 0);
    assert.equal(value(fam, 'strata_pump_records_total'), 0);
  });

  it("export duration: the sink's cumulative ms buckets as a seconds histogram per exporter", async () => {
    const src = new FakeSource();
    const { fam } = await scrape(src);
    const f = fam.get('strata_export_duration_seconds');
    assert.equal(f?.type, 'histogram');
    const otlp = (f?.samples ?? []).filter((s) => s.labels.exporter === 'OTLPTraceExporter');
    const buckets = otlp.filter((s) => s.labels.le !== undefined).map((s) => [s.labels.le, s.value]);
    assert.deepEqual(buckets, [['0.001', 1], ['0.005', 3], ['0.01', 4], ['0.05', 6], ['0.1', 7], ['0.5', 8], ['1', 8], ['5', 8], ['+Inf', 10]]);
    // _sum and _count carry no le
    assert.deepEqual(otlp.filter((s) => s.labels.le === undefined).map((s) => s.value), [21.5335, 10]);
    assert.equal(f?.samples.filter((s) => s.labels.exporter === 'TraceFileExporter' && s.labels.le === '0.001')[0]?.value, 2);
    // follows the source
    src.exporters[0] = exporter('OTLPTraceExporter', { exportLatencyMs: latency([2]) });
    const again = parseExposition(await createMetrics(src).metrics()).get('strata_export_duration_seconds')?.samples ?? [];
    assert.deepEqual(again.filter((s) => s.labels.exporter === 'OTLPTraceExporter').map((s) => s.value), [0, 1, 1, 1, 1, 1, 1, 1, 1, 0.002, 1]);
  });

  it('names two exporters of the same class apart', async () => {
    const src = new FakeSource();
    src.exporters = [exporter('OTLPTraceExporter', { spansExported: 1 }), exporter('OTLPTraceExporter', { spansExported: 2 })];
    const { fam } = await scrape(src);
    assert.equal(value(fam, 'strata_export_spans_total', { exporter: 'OTLPTraceExporter', result: 'exported' }), 1);
    assert.equal(value(fam, 'strata_export_spans_total', { exporter: 'OTLPTraceExporter_2', result: 'exported' }), 2);
  });

  it('reads the kernel counters and the sink once per scrape', async () => {
    const src = new FakeSource();
    const reg = createMetrics(src);
    await reg.metrics();
    assert.deepEqual(src.calls, { kernel: 1, sink: 1 });
    await reg.metrics();
    assert.deepEqual(src.calls, { kernel: 2, sink: 2 });
  });

  it('passes promtool check metrics', (t: TestContext) => {
    const why = missingPrometheus();
    if (why) {
      if (process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
      t.skip(why);
      return;
    }
    return scrape(new FakeSource()).then(({ text }) => {
      const r = promtoolCheck(text);
      assert.equal(r.code, 0, r.output);
    });
  });
});
