export { type FileExporterOptions, type FileExporterStats, JAEGER_FILE, OTLP_FILE, TraceFileExporter } from './file-exporter.ts';
export type { JaegerLog, JaegerProcess, JaegerReference, JaegerSpan, JaegerTag, JaegerTrace, JaegerTraces } from './jaeger-json.ts';
export { hrTimeToMicros, toJaegerSpan, toJaegerTag, toJaegerTags, toJaegerTraces } from './jaeger-json.ts';
export { createOtlpHttpExporter, DEFAULT_OTLP_TRACES_URL, type OtlpHttpExporterOptions, resolveOtlpTracesUrl } from './otlp.ts';
export { type BatchOptions, type ExporterStats, type SdkSinkOptions, type SdkSinkStats, SdkSpanSink } from './sdk-sink.ts';
export type { SpanRecord, SpanResource, SpanSink } from './types.ts';
