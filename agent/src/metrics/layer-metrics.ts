// strata_layer_duration_seconds{layer,node}: the time each kept request's local root spent per layer
// (correlate/layer-time.ts), with the trace id as an OpenMetrics exemplar, so that a latency alert
// on a layer leads to a trace of it. Served on its own path (/metrics/layers) in the OpenMetrics
// format: exemplars exist only there, and prom-client's OpenMetrics output renames counters
// (a second _total), so the agent's other metrics stay in the Prometheus text format on /metrics.
import { Histogram, Registry } from 'prom-client';
import { LAYER_CLASSES } from '../correlate/layer-time.ts';
import type { ExchangeRecord } from '../correlate/records.ts';

/** 100 us .. 10 s: a hop on a fast node to a slow handler */
export const LAYER_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface LayerMetrics {
  registry: Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>;
  observe(root: ExchangeRecord): void;
}

export function createLayerMetrics(node: string): LayerMetrics {
  const registry = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
  registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
  // exemplar label names are typed as the metric's own label names: trace_id is the exemplar's only
  const h = new Histogram<'layer' | 'node' | 'trace_id'>({
    name: 'strata_layer_duration_seconds',
    help: 'Time a traced request spent per layer (app, proxy, network, other) on this node, from its local root span (strata.time.*); exemplars carry trace_id.',
    labelNames: ['layer', 'node'], buckets: LAYER_BUCKETS, registers: [registry], enableExemplars: true,
  });
  // every series from the start, so a layer that saw nothing yet reads 0, not absent
  for (const layer of LAYER_CLASSES) h.zero({ layer, node });
  return {
    registry,
    observe(root) {
      const t = root.layerTimeUs;
      if (!t) return;
      for (const layer of LAYER_CLASSES) {
        h.observe({ labels: { layer, node }, value: t[layer] / 1e6, exemplarLabels: { trace_id: root.traceId } });
      }
    },
  };
}
