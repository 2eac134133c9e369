// The agent's own overhead and loss, for Prometheus. Values are read from the components'
// counters at scrape time (collect), so the hot path only increments plain numbers.
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { SdkSinkStats } from '../export/sdk-sink.ts';

export interface StatsSource {
  kernel(): Record<string, number> | undefined;
  pump(): Record<string, number> | undefined;
  decoder(): Record<string, number>;
  correlator(): Record<string, number>;
  exporter(): Record<string, number>;
  /** the span sink's full statistics (per exporter: exported, failed, dropped, queued) */
  sink(): SdkSinkStats;
  /** kernel BPF run-time statistics per program (run_time_ns, run_cnt), when enabled */
  progStats(): { name: string; runTimeNs: number; runCnt: number }[];
  probes(): { name: string; attached: boolean }[];
}

type Reader = () => number | undefined;

export function createMetrics(src: StatsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'strata_process_' });

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

  counter('strata_kernel_events_total', 'Records the BPF programs submitted to the ring buffer.', () => src.kernel()?.events);
  counter('strata_kernel_syscalls_filtered_total', 'Socket syscalls rejected in the kernel by the netns filter.', () => src.kernel()?.filtered);
  counter('strata_kernel_packets_seen_total', 'Packets seen by the TC programs.', () => src.kernel()?.pktSeen);
  counter('strata_kernel_packets_aggregated_total', 'Data packets counted in the kernel instead of emitted.', () => src.kernel()?.pktAggregated);
  counter('strata_pump_batches_total', 'Batches handed from the ring-buffer thread to JS.', () => src.pump()?.batches);
  counter('strata_pump_records_total', 'Records handed from the ring-buffer thread to JS.', () => src.pump()?.records);
  counter('strata_decoder_records_total', 'Records decoded.', () => src.decoder().records);
  counter('strata_correlator_exchanges_total', 'HTTP exchanges seen on traced sockets.', () => src.correlator().exchanges);
  counter('strata_correlator_non_http_total', 'Socket reads/writes that were not HTTP/1.x and were ignored.', () => src.correlator().nonHttp);
  counter('strata_correlator_orphan_responses_total', 'Response bytes with no request on their connection.', () => src.correlator().orphanResponses);
  counter('strata_correlator_incomplete_total', 'Exchanges closed before their response (truncated or reset).', () => src.correlator().incomplete);
  counter('strata_correlator_malformed_context_total', 'Trace context headers that could not be parsed.', () => src.correlator().malformedContext);
  gauge('strata_correlator_connections', 'Connections tracked.', () => src.correlator().conns);
  gauge('strata_correlator_messages', 'Messages (request/response observation sets) tracked.', () => src.correlator().messages);

  const evictions = new Counter({
    name: 'strata_correlator_evictions_total', help: 'Entries evicted from bounded tables.', labelNames: ['table'], registers: [registry],
    collect() {
      this.reset();
      this.labels('connections').inc(src.correlator().connEvictions ?? 0);
      this.labels('messages').inc(src.correlator().messageEvictions ?? 0);
      this.labels('client_exchanges').inc(src.correlator().clientEvictions ?? 0);
    },
  });
  void evictions;
  new Counter({
    name: 'strata_spans_total', help: 'Spans emitted by the correlator.', labelNames: ['kind'], registers: [registry],
    collect() {
      this.reset();
      this.labels('exchange').inc(src.correlator().spansEmitted ?? 0);
      this.labels('hop').inc(src.correlator().hopSpansEmitted ?? 0);
    },
  });
  // every loss, by the stage it happened in
  new Counter({
    name: 'strata_drops_total', help: 'Events, batches or spans lost, by pipeline stage.', labelNames: ['stage'], registers: [registry],
    collect() {
      this.reset();
      const k = src.kernel();
      const p = src.pump();
      const d = src.decoder();
      const e = src.exporter();
      this.labels('kernel_ringbuf').inc(k?.rbDrops ?? 0);
      this.labels('kernel_read').inc(k?.readErrors ?? 0);
      this.labels('js_queue').inc(p?.droppedRecords ?? 0);
      this.labels('decoder').inc((d.malformed ?? 0) + (d.unknownType ?? 0) + (d.badVersion ?? 0));
      this.labels('exporter').inc(e.droppedSpans ?? 0);
    },
  });
  new Gauge({
    name: 'strata_probe_attached', help: '1 when the probe is attached, 0 when it could not be.', labelNames: ['probe'], registers: [registry],
    collect() {
      this.reset();
      for (const p of src.probes()) this.labels(p.name).set(p.attached ? 1 : 0);
    },
  });
  return registry;
}
