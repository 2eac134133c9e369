// OTLP over gRPC (Jaeger and the collector accept it on :4317), built on the SDK's
// @opentelemetry/exporter-trace-otlp-grpc, with two things that exporter (0.223) does not do itself:
//  - retries: it reports every failure at once; here UNAVAILABLE, DEADLINE_EXCEEDED etc. are retried
//    with backoff within the export's timeout (retry.ts: the policy of the SDK's OTLP/HTTP exporter);
//  - reconnecting: its gRPC channel backs off between connection attempts (up to 2 min in grpc-js)
//    and fails calls at once meanwhile, so after a backend outage export would resume only minutes
//    after the backend is back. After an UNAVAILABLE the SDK exporter is replaced (fresh channel).
// @grpc/grpc-js and the exporter are loaded when the first one is built (~100 ms), not at startup.
import { createRequire } from 'node:module';
import type { Metadata } from '@grpc/grpc-js';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { exportWithRetry, isRetryableGrpcError, type RetryOptions, retryPolicy, InFlight } from './retry.ts';

const require = createRequire(import.meta.url);
const grpcJs = () => require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
const sdkExporter = () =>
  (require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter;

export const DEFAULT_OTLP_GRPC_URL = 'http://localhost:4317';

const GRPC_UNAVAILABLE = 14;

export interface OtlpGrpcExporterOptions {
  /**
   * http://host:4317 (plaintext) or https://host:4317 (TLS, system roots); without it the SDK reads
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4317
   */
  url?: string;
  /** sent as gRPC metadata; names are lowercased; values of "-bin" names are base64 */
  headers?: Record<string, string>;
  /** per export, retries included (default 10 s) */
  timeoutMillis?: number;
  /** in-flight requests at most (default 30: further exports fail and are counted) */
  concurrencyLimit?: number;
  retry?: RetryOptions;
}

/** headers -> gRPC metadata; throws on a name gRPC refuses */
export function toGrpcMetadata(headers: Record<string, string> = {}): Metadata {
  const md = new (grpcJs().Metadata)();
  for (const [name, value] of Object.entries(headers)) {
    const key = name.trim().toLowerCase();
    md.set(key, key.endsWith('-bin') ? Buffer.from(value, 'base64') : value);
  }
  return md;
}

export class OtlpGrpcTraceExporter implements SpanExporter {
  private readonly config: ConstructorParameters<typeof OTLPTraceExporter>[0];
  private readonly timeoutMillis: number;
  private readonly policy: Required<RetryOptions>;
  private inner: OTLPTraceExporter | undefined;
  private readonly inFlight = new InFlight();
  private stopped = false;
  /** attempts repeated after a retryable failure */
  retries = 0;
  /** SDK exporters replaced after UNAVAILABLE (each with a new gRPC channel) */
  channelsReplaced = 0;

  constructor(options: OtlpGrpcExporterOptions = {}) {
    this.timeoutMillis = options.timeoutMillis ?? 10_000;
    this.policy = retryPolicy(options.retry);
    this.config = {
      url: options.url,
      metadata: toGrpcMetadata(options.headers),
      timeoutMillis: this.timeoutMillis,
      concurrencyLimit: options.concurrencyLimit,
    };
    this.inner = new (sdkExporter())(this.config); // validates the URL now
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('OtlpGrpcTraceExporter is shut down') });
      return;
    }
    const onRetry = () => {
      this.retries++;
    };
    const done = exportWithRetry(() => this.attempt(spans), isRetryableGrpcError, this.timeoutMillis, this.policy, { onRetry }).then(
      (o) => resultCallback(o.result),
    );
    this.inFlight.track(done);
  }

  private attempt(spans: ReadableSpan[]): Promise<ExportResult> {
    this.inner ??= new (sdkExporter())(this.config);
    const inner = this.inner;
    return new Promise((resolve) => {
      inner.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS && (result.error as { code?: unknown } | undefined)?.code === GRPC_UNAVAILABLE) {
          this.retire(inner);
        }
        resolve(result);
      });
    });
  }

  /** the next attempt gets a new SDK exporter; this one finishes its calls in flight, then closes */
  private retire(inner: OTLPTraceExporter): void {
    if (this.inner !== inner) return;
    this.inner = undefined;
    this.channelsReplaced++;
    this.inFlight.track(inner.shutdown().catch(() => {}));
  }

  /** waits for the exports in flight (retries included) */
  async forceFlush(): Promise<void> {
    await this.inFlight.drain();
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.forceFlush();
    const inner = this.inner;
    this.inner = undefined;
    await inner?.shutdown();
  }
}
