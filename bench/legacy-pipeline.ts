// The bench's view of the agent's span pipeline (ring-buffer batch in, spans out to a SpanExporter),
// and its implementation over the API before the pipeline redesign: Decoder -> Correlator ->
// SdkSpanSink, with the agent's default export queue (8192 spans, batches of 512, 500 ms delay).
// A tree provides bench/pipeline-adapter.ts (makePipeline) when its API differs; for a tree without
// one (an older commit), correlator-worker.ts builds this pipeline from that tree's own modules.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export interface PipelineOptions {
  exporter: SpanExporter;
  nodeName: string;
  /**
   * the capture's pods and interfaces (test/helpers/replay.ts FixtureMeta), for a pipeline that
   * needs a topology; an adapter may ignore it
   */
  meta?: { pods: unknown[]; ifaces: { ifname: string; ifindex: number }[] };
}

export interface Pipeline {
  decode(batch: Buffer): void;
  /** the monotonic time of the newest event seen: exchanges past their grace emit spans */
  tick(nowNs: number): void;
  /** emits everything still open */
  drain(): void;
  /** exports everything emitted */
  flush(): Promise<void>;
}

export type MakePipeline = (opts: PipelineOptions) => Pipeline | Promise<Pipeline>;

/** the classes of a tree before the redesign (constructor shapes of commit 801d2e1) */
export interface LegacyModules {
  Decoder: new (correlator: never) => { decode(b: Buffer): void };
  Correlator: new (sink: never, topo: never, config: object, wall: (ns: number) => [number, number]) => { tick(ns: number): void; drain(): void };
  SdkSpanSink: new (o: { exporters: SpanExporter[]; batch: object; log?: (l: string) => void }) => { flush(): Promise<void> };
  StaticTopology: new (nodeName: string, pods: never) => { addInterface(ifindex: number, ifname: string): void };
}

/** the agent's default export queue (config/schema.ts export.queue at 801d2e1 and since) */
export const BENCH_QUEUE = Object.freeze({ maxQueueSize: 8192, maxExportBatchSize: 512, scheduledDelayMillis: 500 });

export function legacyMakePipeline(m: LegacyModules): MakePipeline {
  return (opts) => {
    const topo = new m.StaticTopology(opts.nodeName, (opts.meta?.pods ?? []) as never);
    for (const i of opts.meta?.ifaces ?? []) topo.addInterface(i.ifindex, i.ifname);
    const sink = new m.SdkSpanSink({ exporters: [opts.exporter], batch: { ...BENCH_QUEUE }, log: () => {} });
    // replayed monotonic ns as the wall clock, as the fixture tests do
    const correlator = new m.Correlator(sink as never, topo as never, {}, (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
    const decoder = new m.Decoder(correlator as never);
    return {
      decode: (b) => decoder.decode(b),
      tick: (ns) => correlator.tick(ns),
      drain: () => correlator.drain(),
      flush: () => sink.flush(),
    };
  };
}

/** LegacyModules of the tree at `root`, imported from its own files (and its node_modules) */
export async function loadLegacyModules(root: string): Promise<LegacyModules> {
  const at = (p: string) => import(new URL(p, `file://${root.replace(/\/?$/, '/')}`).href);
  const [decode, correlate, sink, pods] = await Promise.all([
    at('agent/src/events/decode.ts'),
    at('agent/src/correlate/correlator.ts'),
    at('agent/src/export/sdk-sink.ts'),
    at('agent/src/k8s/pods-file.ts'),
  ]);
  return { Decoder: decode.Decoder, Correlator: correlate.Correlator, SdkSpanSink: sink.SdkSpanSink, StaticTopology: pods.StaticTopology };
}
