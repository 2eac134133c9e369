// Component options for tests: the schema's defaults (the only place defaults are written),
// mapped as the agent maps them, plus the overrides a test needs.
import { toBatchOptions, toCorrelatorOptions } from '../../agent/src/config/agent-options.ts';
import { type ConfigShape, defaultConfig } from '../../agent/src/config/schema.ts';
import type { CorrelatorOptions, SamplingOptions } from '../../agent/src/correlate/options.ts';
import type { BatchOptions, SdkSinkOptions } from '../../agent/src/export/sdk-sink.ts';
import type { SpanMapperOptions } from '../../agent/src/export/semconv.ts';

export type CorrelatorOverrides = Partial<Omit<CorrelatorOptions, 'sampling'>> & { sampling?: Partial<SamplingOptions> };

const defaults = (): ConfigShape => defaultConfig({}, 'test-node');

export function correlatorOptions(over: CorrelatorOverrides = {}): CorrelatorOptions {
  const base = toCorrelatorOptions(defaults());
  return { ...base, ...over, sampling: { ...base.sampling, ...over.sampling } };
}

export function sinkOptions(o: Omit<SdkSinkOptions, 'batch' | 'maxResources'> & { batch?: Partial<BatchOptions>; maxResources?: number }): SdkSinkOptions {
  const c = defaults();
  return { ...o, batch: { ...toBatchOptions(c), ...o.batch }, maxResources: o.maxResources ?? c.export.maxResources };
}

export function mapperOptions(over: Partial<SpanMapperOptions> = {}): SpanMapperOptions {
  const c = defaults();
  return { routes: c.correlator.routes, maxResources: c.export.maxResources, ...over };
}
