// Retries with exponential backoff for every network exporter (OTLP/HTTP, OTLP/gRPC, Jaeger thrift).
// The policy is export.retry of the configuration; its defaults are those of the SDK's OTLP/HTTP
// exporter (otlp-exporter-base RetryingTransport): first backoff 1 s, x1.5 per retry up to 5 s,
// +-20 % jitter, at most 5 retries, and no retry whose backoff would end after the export's deadline.
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { type ConfigShape, defaultConfig } from '../config/schema.ts';

export interface RetryOptions {
  /** backoff before the first retry */
  initialBackoffMillis?: number;
  /** backoff cap */
  maxBackoffMillis?: number;
  /** backoff growth per retry */
  multiplier?: number;
  /** relative jitter, 0..1 (0.2: each backoff is 80..120 % of its nominal value) */
  jitter?: number;
  /** retries after the first attempt */
  maxRetries?: number;
}

/** export.retry of the configuration's defaults (config/schema.ts, the one place they are written) */
export const DEFAULT_RETRY: Readonly<Required<RetryOptions>> = Object.freeze(toRetryOptions(defaultConfig({}, '').export.retry));

/** export.retry (config units) -> RetryOptions */
export function toRetryOptions(r: Readonly<ConfigShape['export']['retry']>): Required<RetryOptions> {
  return {
    initialBackoffMillis: r.initialBackoffMs,
    maxBackoffMillis: r.maxBackoffMs,
    multiplier: r.multiplier,
    jitter: r.jitter,
    maxRetries: r.maxRetries,
  };
}

export function retryPolicy(o: RetryOptions = {}): Required<RetryOptions> {
  const p = { ...DEFAULT_RETRY };
  for (const k of Object.keys(p) as (keyof RetryOptions)[]) {
    const v = o[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) p[k] = v;
  }
  p.jitter = Math.min(p.jitter, 1);
  return p;
}

export interface RetryHooks {
  /** 0..1, for the jitter (default Math.random) */
  random?: () => number;
  /** called when a retry is scheduled, before its backoff */
  onRetry?: (error: unknown, backoffMillis: number) => void;
}

export interface RetryOutcome {
  result: ExportResult;
  /** attempts made, the first one included */
  attempts: number;
}

/**
 * Runs `attempt` until it succeeds, fails with an error `isRetryable` refuses, the retries are used
 * up, or the next backoff would end after `timeoutMillis` from now. `attempt` gets the time left
 * until that deadline and a signal that is aborted when the deadline passes with the attempt still
 * running: the attempt then counts as failed ("timed out") and its late result is ignored. Never
 * rejects: an attempt that throws or rejects counts as failed with that error.
 */
export async function exportWithRetry(
  attempt: (remainingMillis: number, signal: AbortSignal) => Promise<ExportResult>,
  isRetryable: (error: unknown) => boolean,
  timeoutMillis: number,
  policy: Required<RetryOptions> = DEFAULT_RETRY,
  hooks: RetryHooks = {},
): Promise<RetryOutcome> {
  const random = hooks.random ?? Math.random;
  const deadline = Date.now() + timeoutMillis;
  let nominal = policy.initialBackoffMillis;
  let attempts = 0;
  for (;;) {
    attempts++;
    const result = await bounded(attempt, Math.max(0, deadline - Date.now()), timeoutMillis);
    if (result.code === ExportResultCode.SUCCESS) return { result, attempts };
    if (attempts > policy.maxRetries || !isRetryable(result.error)) return { result, attempts };
    const backoff = Math.max(0, Math.min(nominal * (1 + (random() * 2 - 1) * policy.jitter), policy.maxBackoffMillis));
    nominal *= policy.multiplier;
    if (Date.now() + backoff >= deadline) return { result, attempts };
    hooks.onRetry?.(result.error, backoff);
    await new Promise((resolve) => setTimeout(resolve, backoff));
  }
}

function bounded(
  attempt: (remainingMillis: number, signal: AbortSignal) => Promise<ExportResult>,
  remainingMillis: number,
  timeoutMillis: number,
): Promise<ExportResult> {
  const controller = new AbortController();
  return new Promise<ExportResult>((resolve) => {
    const timer = setTimeout(() => {
      controller.abort();
      resolve({ code: ExportResultCode.FAILED, error: new Error(`export timed out after ${timeoutMillis} ms (retries included)`) });
    }, remainingMillis);
    const settle = (result: ExportResult) => {
      clearTimeout(timer);
      resolve(result);
    };
    let p: Promise<ExportResult>;
    try {
      p = attempt(remainingMillis, controller.signal);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(settle, (err: unknown) => settle({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) }));
  });
}

/** gRPC status codes worth retrying, per the OTLP specification (RESOURCE_EXHAUSTED included) */
const RETRYABLE_GRPC_CODES = new Set([
  1, // CANCELLED
  4, // DEADLINE_EXCEEDED
  8, // RESOURCE_EXHAUSTED
  10, // ABORTED
  11, // OUT_OF_RANGE
  14, // UNAVAILABLE
  15, // DATA_LOSS
]);

export function isRetryableGrpcError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'number' && RETRYABLE_GRPC_CODES.has(code);
}

const RETRYABLE_HTTP_STATUS = /\bHTTP (429|502|503|504)\b/;
const RETRYABLE_NETWORK = /\b(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|ENOTFOUND|socket hang up|timed out)\b/;

/**
 * For exporters that report HTTP failures as text (jaeger-client: "error sending spans over HTTP:
 * server responded with HTTP 503", "... Error: connect ECONNREFUSED ..."): network errors and
 * 429/502/503/504 are retryable, like in the SDK's OTLP/HTTP exporter.
 */
export function isRetryableHttpError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  if (typeof code === 'string' && RETRYABLE_NETWORK.test(code)) return true;
  const text = error instanceof Error ? error.message : String(error);
  return RETRYABLE_HTTP_STATUS.test(text) || RETRYABLE_NETWORK.test(text);
}

/** Promises still running (exports and their retries, channel shutdowns), awaited on flush. */
export class InFlight {
  private readonly pending = new Set<Promise<unknown>>();

  track(p: Promise<unknown>): void {
    this.pending.add(p);
    const forget = () => this.pending.delete(p);
    p.then(forget, forget);
  }

  /** waits until nothing is in flight, including work started while waiting */
  async drain(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}
