// OTLP over gRPC (Jaeger and the collector accept it on :4317), built on the SDK's
// @opentelemetry/exporter-trace-otlp-grpc, with two things that exporter (0.223) does not do itself:
//  - retries: it reports every failure at once; here UNAVAILABLE, DEADLINE_EXCEEDED etc. are retried
//    with backoff within the export's timeout (retry.ts: the policy of the SDK's OTLP/HTTP exporter);
//  - reconnecting: its gRPC channel backs off between connection attempts (up to 2 min in grpc-js)
//    and fails calls at once meanwhile, so after a backend outage export would resume only minutes
//    after the backend is back. After an UNAVAILABLE the SDK exporter is replaced (fresh channel).
// Its configuration is the agent's alone: the SDK exporter merges OTEL_EXPORTER_OTLP_* (metadata key
// by key, compression, endpoint, TLS) under what it is given, so it is built with every value
// explicit (credentials from the URL's scheme, no compression) and with those variables hidden while
// its constructor reads them (otlpEnvHidden). config/load.ts is the one reader of OTEL_*.
// @grpc/grpc-js and the exporter are loaded when the first one is built (~100 ms), not at startup.
import { createRequire } from 'node:module';
import type { Metadata } from '@grpc/grpc-js';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { defaultConfig } from '../config/schema.ts';
import { exportWithRetry, isRetryableGrpcError, type RetryOptions, retryPolicy, InFlight } from './retry.ts';

const require = createRequire(import.meta.url);
const grpcJs = () => require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
const sdkExporter = () =>
  (require('@opentelemetry/exporter-trace-otlp-grpc') as typeof import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter;

export const DEFAULT_OTLP_GRPC_URL = 'http://localhost:4317';

const GRPC_UNAVAILABLE = 14;

export interface OtlpGrpcExporterOptions {
  /** http://host:4317 (plaintext) or https://host:4317 (TLS, system roots) */
  url: string;
  /** sent as gRPC metadata; names are lowercased; values of "-bin" names are base64 */
  headers?: Record<string, string>;
  /** per export, retries included (default: export.otlp.timeoutMs of the configuration's defaults) */
  timeoutMillis?: number;
  retry?: RetryOptions;
}

const OTLP_ENV = /^OTEL_EXPORTER_OTLP_/;

/**
 * Runs `build` (synchronous: an SDK exporter's constructor, which reads its OTEL_EXPORTER_OTLP_*
 * fallbacks there and then) with those variables out of process.env, and puts them back.
 */
export function otlpEnvHidden<T>(build: () => T, env: NodeJS.ProcessEnv = process.env): T {
  const saved: [string, string][] = [];
  for (const [k, v] of Object.entries(env)) {
    if (OTLP_ENV.test(k) && v !== undefined) {
      saved.push([k, v]);
      delete env[k];
    }
  }
  try {
    return build();
  } finally {
    for (const [k, v] of saved) env[k] = v;
  }
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

  constructor(options: OtlpGrpcExporterOptions) {
    this.timeoutMillis = options.timeoutMillis ?? defaultConfig({}, '').export.otlp.timeoutMs;
    this.policy = retryPolicy(options.retry);
    const grpc = grpcJs();
    this.config = {
      url: options.url,
      metadata: toGrpcMetadata(options.headers),
      timeoutMillis: this.timeoutMillis,
      compression: 'none' as NonNullable<NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>['compression']>,
      credentials: options.url.trim().toLowerCase().startsWith('https://') ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(),
    };
    this.inner = this.newInner(); // validates the URL now
  }

  private newInner(): OTLPTraceExporter {
    return otlpEnvHidden(() => new (sdkExporter())(this.config));
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
    this.inner ??= this.newInner();
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
