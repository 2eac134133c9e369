// The agent's event pipeline (decoder -> correlator -> span records -> SDK sink -> exporter) built
// with the current API, for benchmarks that compare implementations side by side. Options are the
// schema's defaults, with a queue big enough that the bench never drops.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { toBatchOptions, toCorrelatorOptions } from '../agent/src/config/agent-options.ts';
import { defaultConfig } from '../agent/src/config/schema.ts';
import { Correlator } from '../agent/src/correlate/correlator.ts';
import { Decoder } from '../agent/src/events/decode.ts';
import { SpanExport } from '../agent/src/export/pipeline.ts';
import { SdkSpanSink } from '../agent/src/export/sdk-sink.ts';
import { StaticTopology } from '../agent/src/k8s/pods-file.ts';
import type { PodEntry } from '../agent/src/k8s/pods-file.ts';

export interface Pipeline {
  decode(batch: Buffer): void;
  tick(nowNs: number): void;
  drain(): void;
  flush(): Promise<void>;
}

/** bench/correlator-worker.ts's options: the exporter, and the capture's pods and interfaces */
export function makePipeline(opts: { exporter: SpanExporter; nodeName: string; meta?: { pods: unknown[]; ifaces: { ifname: string; ifindex: number }[] } }): Pipeline {
  const config = defaultConfig({}, opts.nodeName);
  const topo = new StaticTopology(opts.nodeName, (opts.meta?.pods ?? []) as PodEntry[]);
  for (const i of opts.meta?.ifaces ?? []) topo.addInterface(i.ifindex, i.ifname);
  const sink = new SdkSpanSink({
    exporters: [opts.exporter],
    batch: { ...toBatchOptions(config), maxQueueSize: 1 << 20, scheduledDelayMillis: 60_000 },
    maxResources: config.export.maxResources,
  });
  const spans = new SpanExport(sink, { routes: config.correlator.routes, maxResources: config.export.maxResources });
  // a fixed wall clock: monotonic ns as is, from the epoch (no clock reads in the measured loop)
  const correlator = new Correlator(spans, topo, toCorrelatorOptions(config), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  const decoder = new Decoder(correlator);
  return {
    decode: (batch) => decoder.decode(batch),
    tick: (nowNs) => correlator.tick(nowNs),
    drain: () => correlator.drain(),
    flush: () => sink.flush(),
  };
}
