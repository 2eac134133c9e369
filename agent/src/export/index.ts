export { createExporters, type ExportConfig } from './factory.ts';
export { type FileExporterOptions, type FileExporterStats, JAEGER_FILE, OTLP_FILE, TraceFileExporter } from './file-exporter.ts';
export type { JaegerLog, JaegerProcess, JaegerReference, JaegerSpan, JaegerTag, JaegerTrace, JaegerTraces } from './jaeger-json.ts';
export { hrDurationToMicros, hrTimeToMicros, toJaegerSpan, toJaegerTag, toJaegerTags, toJaegerTraces } from './jaeger-json.ts';
export { DEFAULT_JAEGER_THRIFT_URL, JaegerThriftExporter, type JaegerThriftExporterOptions } from './jaeger-thrift.ts';
export { createOtlpHttpExporter, DEFAULT_OTLP_TRACES_URL, type OtlpHttpExporterOptions } from './otlp.ts';
export { DEFAULT_OTLP_GRPC_URL, type OtlpGrpcExporterOptions, OtlpGrpcTraceExporter, toGrpcMetadata } from './otlp-grpc.ts';
export { DEFAULT_RETRY, exportWithRetry, isRetryableGrpcError, isRetryableHttpError, type RetryOptions } from './retry.ts';
export {
  type BatchOptions,
  EXPORT_LATENCY_BUCKETS_MS,
  type ExportLatencyStats,
  type ExporterStats,
  type SdkSinkOptions,
  type SdkSinkStats,
  SdkSpanSink,
} from './sdk-sink.ts';
export { SpanExport } from './pipeline.ts';
export { RecordSpan } from './readable-span.ts';
export { Routes, idLike } from './route.ts';
export { clean, MAX_NAME, MAX_VALUE } from './sanitize.ts';
export { INVALID_REQUEST_NAME, pointLabel, SpanMapper, type SpanMapperOptions } from './semconv.ts';
export type { SpanEvent, SpanRecord, SpanResource, SpanSink } from './types.ts';
