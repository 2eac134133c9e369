import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import {
  DEFAULT_RETRY,
  exportWithRetry,
  isRetryableGrpcError,
  isRetryableHttpError,
  retryPolicy,
} from '../../agent/src/export/retry.ts';

const ok: ExportResult = { code: ExportResultCode.SUCCESS };
const fail = (error: unknown): ExportResult => ({ code: ExportResultCode.FAILED, error: error as Error });
const unavailable = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 });

describe('export retries', () => {
  it('defaults to the policy of the SDK OTLP/HTTP exporter', () => {
    assert.deepEqual({ ...DEFAULT_RETRY }, { initialBackoffMillis: 1000, maxBackoffMillis: 5000, multiplier: 1.5, jitter: 0.2, maxRetries: 5 });
    assert.deepEqual(retryPolicy({ initialBackoffMillis: 10, jitter: 7, maxRetries: -1 }), {
      ...DEFAULT_RETRY,
      initialBackoffMillis: 10,
      jitter: 1,
    });
  });

  it('classifies gRPC and HTTP errors like the OTLP specification', () => {
    for (const code of [1, 4, 8, 10, 11, 14, 15]) assert.ok(isRetryableGrpcError({ code }), `grpc ${code}`);
    for (const code of [0, 2, 3, 5, 6, 7, 9, 12, 13, 16]) assert.ok(!isRetryableGrpcError({ code }), `grpc ${code}`);
    assert.ok(!isRetryableGrpcError(new Error('Concurrent export limit reached')));
    assert.ok(!isRetryableGrpcError(undefined));
    assert.ok(isRetryableHttpError(new Error('error sending spans over HTTP: Error: connect ECONNREFUSED 127.0.0.1:14268')));
    assert.ok(isRetryableHttpError(new Error('error sending spans over HTTP: Error: socket hang up')));
    for (const s of [429, 502, 503, 504]) assert.ok(isRetryableHttpError(new Error(`server responded with HTTP ${s}`)), `${s}`);
    for (const s of [400, 401, 404, 413, 500]) assert.ok(!isRetryableHttpError(new Error(`server responded with HTTP ${s}`)), `${s}`);
    assert.ok(isRetryableHttpError(Object.assign(new Error('x'), { code: 'ECONNRESET' })));
    assert.ok(!isRetryableHttpError(new Error('Error encoding Thrift batch')));
  });

  it('backs off x1.5 with jitter, up to the cap, and stops after maxRetries', async () => {
    const backoffs: number[] = [];
    let attempts = 0;
    const out = await exportWithRetry(
      async () => {
        attempts++;
        return fail(unavailable);
      },
      isRetryableGrpcError,
      60_000,
      retryPolicy({ initialBackoffMillis: 4, maxBackoffMillis: 10, maxRetries: 4 }),
      { random: () => 1, onRetry: (_e, ms) => backoffs.push(ms) }, // jitter +20 %
    );
    assert.equal(out.result.code, ExportResultCode.FAILED);
    assert.equal(out.result.error, unavailable);
    assert.equal(out.attempts, 5);
    assert.equal(attempts, 5);
    assert.deepEqual(
      backoffs.map((b) => Math.round(b * 100) / 100),
      [4.8, 7.2, 10, 10],
    );
  });

  it('succeeds after retryable failures; gives up at once on a non-retryable one', async () => {
    let n = 0;
    const quick = retryPolicy({ initialBackoffMillis: 1 });
    const out = await exportWithRetry(async () => (++n < 3 ? fail(unavailable) : ok), isRetryableGrpcError, 10_000, quick);
    assert.deepEqual(out, { result: ok, attempts: 3 });
    n = 0;
    const refused = Object.assign(new Error('3 INVALID_ARGUMENT'), { code: 3 });
    const out2 = await exportWithRetry(async () => (++n, fail(refused)), isRetryableGrpcError, 10_000, quick);
    assert.equal(out2.attempts, 1);
    assert.equal(out2.result.error, refused);
    // a throwing attempt counts as failed with its error
    const out3 = await exportWithRetry(
      () => {
        throw new Error('boom');
      },
      () => true,
      10_000,
      retryPolicy({ initialBackoffMillis: 1, maxRetries: 1 }),
    );
    assert.equal(out3.attempts, 2);
    assert.equal((out3.result.error as Error).message, 'boom');
  });

  it('does not start a retry whose backoff ends after the deadline', async () => {
    let n = 0;
    const t0 = Date.now();
    const out = await exportWithRetry(async () => (n++, fail(unavailable)), isRetryableGrpcError, 200, DEFAULT_RETRY);
    assert.equal(n, 1, 'the first backoff (>= 800 ms) does not fit in 200 ms');
    assert.equal(out.attempts, 1);
    assert.ok(Date.now() - t0 < 150);
  });

  it('fails an attempt still running at the deadline and aborts its signal', async () => {
    let signal: AbortSignal | undefined;
    let late: ((r: ExportResult) => void) | undefined;
    const t0 = Date.now();
    const out = await exportWithRetry(
      (remaining, s) => {
        assert.ok(remaining > 0 && remaining <= 60);
        signal = s;
        return new Promise<ExportResult>((resolve) => {
          late = resolve;
        });
      },
      () => true,
      60,
    );
    assert.ok(Date.now() - t0 >= 55);
    assert.equal(out.result.code, ExportResultCode.FAILED);
    assert.match((out.result.error as Error).message, /timed out after 60 ms/);
    assert.equal(signal?.aborted, true);
    late?.(ok); // ignored
  });
});
