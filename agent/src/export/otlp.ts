// OTLP over HTTP with protobuf bodies (Jaeger accepts it natively on :4318). The body is the SDK's
// own encoding (ProtobufTraceSerializer from @opentelemetry/otlp-transformer); the request, its
// retries and its timeout are ours, for two reasons the SDK's OTLPTraceExporter (0.223) does not
// meet:
//  - it reads OTEL_EXPORTER_OTLP_* itself and merges them under the values it is given (headers are
//    merged key by key, compression and TLS files taken from the environment), so a variable the
//    configuration overrode would still reach the backend. Here the configuration (config/load.ts,
//    which reads OTEL_* once) is the only source: nothing below reads the environment;
//  - its retry policy and in-flight limit are fixed inside it; here they are the configuration's
//    (export.retry.*, retry.ts), and there is no in-flight limit that fails exports on its own:
//    the batch processor in front sends one batch at a time.
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { defaultConfig } from '../config/schema.ts';
import { exportWithRetry, InFlight, isRetryableHttpError, type RetryOptions, retryPolicy } from './retry.ts';

export const DEFAULT_OTLP_TRACES_URL = 'http://localhost:4318/v1/traces';

export interface OtlpHttpExporterOptions {
  /** full URL of the traces endpoint, e.g. http://jaeger:4318/v1/traces */
  url: string;
  headers?: Record<string, string>;
  /** per export, retries included (default: export.otlp.timeoutMs of the configuration's defaults) */
  timeoutMillis?: number;
  retry?: RetryOptions;
}


/** a response status the exporter failed on; `HTTP <status>` in the message, for isRetryableHttpError */
export class OtlpHttpError extends Error {
  readonly status: number;
  constructor(status: number, body: string) {
    super(`OTLP endpoint responded with HTTP ${status}${body ? `: ${body.slice(0, 200)}` : ''}`);
    this.status = status;
  }
}

const USER_AGENT = 'strata-otlp-exporter';
/** a response body larger than this is not read (a misbehaving endpoint) */
const MAX_RESPONSE_BYTES = 1 << 20;

/** Named like the SDK's exporter: metrics label their series exporter="OTLPTraceExporter". */
export class OTLPTraceExporter implements SpanExporter {
  private readonly url: URL;
  private readonly headers: Record<string, string>;
  private readonly timeoutMillis: number;
  private readonly policy: Required<RetryOptions>;
  private readonly agent: HttpAgent;
  private readonly inFlight = new InFlight();
  private stopped = false;
  /** attempts repeated after a retryable failure */
  retries = 0;

  constructor(options: OtlpHttpExporterOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new Error(`OTLP endpoint ${JSON.stringify(options.url)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`OTLP endpoint ${options.url} must be http(s)://`);
    this.url = url;
    this.headers = { ...options.headers };
    this.timeoutMillis = options.timeoutMillis ?? defaultConfig({}, '').export.otlp.timeoutMs;
    this.policy = retryPolicy(options.retry);
    this.agent = url.protocol === 'https:' ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('OTLPTraceExporter is shut down') });
      return;
    }
    let body: Uint8Array | undefined;
    try {
      body = ProtobufTraceSerializer.serializeRequest(spans);
    } catch (err) {
      resultCallback({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
      return;
    }
    if (!body) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('OTLP serialization produced nothing') });
      return;
    }
    const payload = body;
    const onRetry = () => {
      this.retries++;
    };
    const done = exportWithRetry((_remaining, signal) => this.post(payload, signal), isRetryableHttpError, this.timeoutMillis, this.policy, {
      onRetry,
    }).then((o) => resultCallback(o.result));
    this.inFlight.track(done);
  }

  /** one POST; resolves (never rejects) with success, or a failure whose error says whether to retry */
  private post(body: Uint8Array, signal: AbortSignal): Promise<ExportResult> {
    const request = this.url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<ExportResult>((resolve) => {
      const fail = (error: Error) => resolve({ code: ExportResultCode.FAILED, error });
      const req = request(this.url, {
        method: 'POST',
        agent: this.agent,
        signal,
        headers: {
          ...this.headers,
          'content-type': 'application/x-protobuf',
          'content-length': String(body.byteLength),
          'user-agent': USER_AGENT,
        },
      });
      req.on('response', (res: IncomingMessage) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_RESPONSE_BYTES) chunks.push(c);
        });
        res.on('end', () => {
          if (status >= 200 && status < 300) resolve({ code: ExportResultCode.SUCCESS });
          else fail(new OtlpHttpError(status, Buffer.concat(chunks).toString('utf8')));
        });
        res.on('error', fail);
      });
      // ECONNREFUSED, ECONNRESET (in err.code), an abort at the deadline: isRetryableHttpError decides
      req.on('error', fail);
      req.end(body);
    });
  }

  /** waits for the exports in flight (retries included) */
  async forceFlush(): Promise<void> {
    await this.inFlight.drain();
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.forceFlush();
    this.agent.destroy();
  }
}

export function createOtlpHttpExporter(options: OtlpHttpExporterOptions): SpanExporter {
  return new OTLPTraceExporter(options);
}
