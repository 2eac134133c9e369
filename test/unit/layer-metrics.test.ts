// strata_layer_duration_seconds: each kept local root's time per layer, observed with its trace id
// as an OpenMetrics exemplar (served apart from /metrics on /metrics/layers).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ExchangeRecord } from '../../agent/src/correlate/records.ts';
import { createLayerMetrics } from '../../agent/src/metrics/layer-metrics.ts';

test('every layer observed per root with its trace id as exemplar; OpenMetrics; all series from the start', async () => {
  const m = createLayerMetrics('node-7');
  const empty = await m.registry.metrics();
  for (const layer of ['app', 'proxy', 'network', 'other']) {
    assert.match(empty, new RegExp(`strata_layer_duration_seconds_count\\{layer="${layer}",node="node-7"\\} 0`));
  }
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  m.observe({ traceId, layerTimeUs: { app: 1200, proxy: 80, network: 3000, other: 0 } } as unknown as ExchangeRecord);
  m.observe({ traceId: 'ffff', layerTimeUs: undefined } as unknown as ExchangeRecord);
  const text = await m.registry.metrics();
  assert.match(m.registry.contentType, /application\/openmetrics-text/);
  assert.match(text, /# EOF\s*$/);
  assert.match(text, /strata_layer_duration_seconds_count\{layer="network",node="node-7"\} 1/);
  assert.match(text, /strata_layer_duration_seconds_sum\{layer="network",node="node-7"\} 0\.003/);
  // the first bucket the 3 ms falls into carries the exemplar
  assert.match(text, new RegExp(`strata_layer_duration_seconds_bucket\\{le="0.005",layer="network",node="node-7"\\} 1 # \\{trace_id="${traceId}"\\} 0.003`));
  assert.match(text, new RegExp(`strata_layer_duration_seconds_bucket\\{le="0.0025",layer="app",node="node-7"\\} 1 # \\{trace_id="${traceId}"\\} 0.0012`));
  assert.match(text, /strata_layer_duration_seconds_count\{layer="app",node="node-7"\} 1/, 'a root without a split observes nothing');
});
