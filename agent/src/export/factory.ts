// Builds the span exporters the configuration asks for. Each goes behind its own bounded
// BatchSpanProcessor in SdkSpanSink; the network ones retry with backoff (retry) within timeoutMs.
// Every value comes from the configuration: no exporter reads OTEL_* variables by itself.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { TraceFileExporter } from './file-exporter.ts';
import { JaegerThriftExporter } from './jaeger-thrift.ts';
import { OtlpGrpcTraceExporter } from './otlp-grpc.ts';
import { createOtlpHttpExporter } from './otlp.ts';
import type { RetryOptions } from './retry.ts';

export interface ExportConfig {
  /**
   * OTLP to a collector or Jaeger: http/protobuf to the traces URL (http://jaeger:4318/v1/traces),
   * grpc to host and port (http://jaeger:4317 plaintext, https:// TLS). headers: HTTP headers, or
   * gRPC metadata. timeoutMs: per export, retries included (default 10 s).
   */
  otlp?: { endpoint: string; protocol: 'http/protobuf' | 'grpc'; headers?: Record<string, string>; timeoutMs?: number };
  /**
   * Jaeger thrift over HTTP for legacy collectors, e.g. http://jaeger:14268/api/traces
   * (user:password@ in the URL for basic auth). timeoutMs: per export, retries included (default 10 s).
   */
  jaeger?: { endpoint: string; timeoutMs?: number };
  /** OTLP JSON + Jaeger JSON files in this directory */
  files?: { dir: string; writeDelayMs?: number };
  /** backoff of the OTLP and Jaeger exporters' retries (export.retry of the configuration) */
  retry?: RetryOptions;
}

/** Throws on a configuration it cannot honour (unknown protocol, malformed endpoint or header name). */
export function createExporters(c: ExportConfig): SpanExporter[] {
  const out: SpanExporter[] = [];
  if (c.otlp) {
    const { endpoint, protocol, headers, timeoutMs } = c.otlp;
    if (protocol === 'http/protobuf') {
      out.push(createOtlpHttpExporter({ url: endpoint, headers, timeoutMillis: timeoutMs, retry: c.retry }));
    } else if (protocol === 'grpc') {
      out.push(new OtlpGrpcTraceExporter({ url: endpoint, headers, timeoutMillis: timeoutMs, retry: c.retry }));
    } else {
      throw new Error(`OTLP protocol ${String(protocol)} not supported (http/protobuf or grpc)`);
    }
  }
  if (c.jaeger) out.push(new JaegerThriftExporter({ endpoint: c.jaeger.endpoint, timeoutMillis: c.jaeger.timeoutMs, retry: c.retry }));
  if (c.files) out.push(new TraceFileExporter({ dir: c.files.dir, writeDelayMillis: c.files.writeDelayMs ?? 200 }));
  return out;
}
