// Builds the span exporters the configuration asks for.
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';
import { TraceFileExporter } from './file-exporter.ts';
import { createOtlpHttpExporter } from './otlp.ts';

export interface ExportConfig {
  /** OTLP to a collector or Jaeger (4318 http/protobuf, 4317 grpc) */
  otlp?: { endpoint: string; protocol: 'http/protobuf' | 'grpc'; headers?: Record<string, string>; timeoutMs?: number };
  /** Jaeger thrift over HTTP for legacy collectors, e.g. http://jaeger:14268/api/traces */
  jaeger?: { endpoint: string };
  /** OTLP JSON + Jaeger JSON files in this directory */
  files?: { dir: string; writeDelayMs?: number };
}

export function createExporters(c: ExportConfig): SpanExporter[] {
  const out: SpanExporter[] = [];
  if (c.otlp) {
    if (c.otlp.protocol !== 'http/protobuf') throw new Error(`OTLP protocol ${c.otlp.protocol} not supported yet`);
    out.push(createOtlpHttpExporter({ url: c.otlp.endpoint, headers: c.otlp.headers, timeoutMillis: c.otlp.timeoutMs }));
  }
  if (c.jaeger) throw new Error('Jaeger thrift export not supported yet');
  if (c.files) out.push(new TraceFileExporter({ dir: c.files.dir, writeDelayMillis: c.files.writeDelayMs ?? 200 }));
  return out;
}
