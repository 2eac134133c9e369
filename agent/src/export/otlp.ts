// OTLP over HTTP with protobuf bodies (Jaeger accepts it natively on :4318).
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { SpanExporter } from '@opentelemetry/sdk-trace-base';

export const DEFAULT_OTLP_TRACES_URL = 'http://localhost:4318/v1/traces';

export interface OtlpHttpExporterOptions {
  /** full URL of the traces endpoint, e.g. http://jaeger:4318/v1/traces */
  url?: string;
  headers?: Record<string, string>;
  /** per export, retries included (default 10 s) */
  timeoutMillis?: number;
  /** in-flight requests at most (default 30: further exports fail and are counted) */
  concurrencyLimit?: number;
}

type Env = Record<string, string | undefined>;

/**
 * The traces endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as is, else OTEL_EXPORTER_OTLP_ENDPOINT +
 * "/v1/traces", else http://localhost:4318/v1/traces.
 */
export function resolveOtlpTracesUrl(env: Env = process.env): string {
  const specific = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  if (specific) return specific;
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (base) return `${base.replace(/\/+$/, '')}/v1/traces`;
  return DEFAULT_OTLP_TRACES_URL;
}

export function createOtlpHttpExporter(options: OtlpHttpExporterOptions = {}): SpanExporter {
  return new OTLPTraceExporter({
    url: options.url ?? resolveOtlpTracesUrl(),
    headers: options.headers,
    timeoutMillis: options.timeoutMillis,
    concurrencyLimit: options.concurrencyLimit,
  });
}
