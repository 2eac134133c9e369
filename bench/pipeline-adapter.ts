// This tree's span pipeline for bench/correlator.ts: makePipeline({ exporter, nodeName }) ->
// { decode, tick, drain, flush }. Today the Decoder -> Correlator -> SdkSpanSink chain (the same
// code the bench falls back to for a tree without this file); replace it when the API changes.
import { Correlator } from '../agent/src/correlate/correlator.ts';
import { Decoder } from '../agent/src/events/decode.ts';
import { SdkSpanSink } from '../agent/src/export/sdk-sink.ts';
import { StaticTopology } from '../agent/src/k8s/pods-file.ts';
import { type LegacyModules, legacyMakePipeline, type MakePipeline } from './legacy-pipeline.ts';

export type { Pipeline, PipelineOptions } from './legacy-pipeline.ts';

export const makePipeline: MakePipeline = legacyMakePipeline({ Decoder, Correlator, SdkSpanSink, StaticTopology } as unknown as LegacyModules);
