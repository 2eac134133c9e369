// The cause of the flaky "OTLP backend outage under load" test, reproduced without the lab: the
// SDK's BatchSpanProcessor lost its one-export-at-a-time state after a failed export (its flush
// loop starts the next batch in .finally() and then clears _isExporting in .catch()), so during an
// outage every onEnd() with a full batch queued started one more concurrent export. The SDK's OTLP
// exporter refused exports past 30 in flight, and spans made right after the backend returned were
// dropped while the old exports still sat in their backoff.
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { createOtlpHttpExporter } from '../../agent/src/export/otlp.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { spanTree, waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { sinkOptions } from '../helpers/options.ts';

const base = spanTree()[3] as SpanRecord;
let nextId = 1;
const span = (name: string): SpanRecord => ({ ...base, spanId: (nextId++).toString(16).padStart(16, '0'), name });

/** counts the export calls in flight (called, not yet reported) */
class Concurrency implements SpanExporter {
  inFlight = 0;
  max = 0;
  private readonly inner: SpanExporter;
  constructor(inner: SpanExporter) {
    this.inner = inner;
  }
  export(spans: ReadableSpan[], cb: (r: ExportResult) => void): void {
    this.inFlight++;
    this.max = Math.max(this.max, this.inFlight);
    this.inner.export(spans, (r) => {
      this.inFlight--;
      cb(r);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

describe('export through a backend outage', () => {
  it('keeps one export in flight per exporter when exports fail (BatchSpanProcessor state after a failure)', async () => {
    const pending: ((r: ExportResult) => void)[] = [];
    const scripted: SpanExporter = { export: (_s, cb) => void pending.push(cb), shutdown: async () => {} };
    const c = new Concurrency(scripted);
    const batch = 8;
    // no timer flush: only full batches are exported, so every export below is the one the test causes
    const sink = new SdkSpanSink(sinkOptions({ exporters: [c], batch: { maxQueueSize: 64, maxExportBatchSize: batch, scheduledDelayMillis: 600_000, maxConcurrentExports: 1 }, log: () => {} }));
    for (let i = 0; i < batch; i++) sink.emit(span('a'));
    assert.equal(pending.length, 1, 'a full batch is exported at once');
    for (let i = 0; i < 2 * batch; i++) sink.emit(span('b'));
    assert.equal(pending.length, 1, 'nothing more while it is in flight');

    pending.shift()?.({ code: ExportResultCode.FAILED, error: new Error('backend down') });
    await tick(); // the processor's promise handlers run
    await tick();
    assert.equal(pending.length, 1, 'the next full batch follows the failed one');
    for (let i = 0; i < batch; i++) sink.emit(span('c'));
    await tick();
    assert.equal(c.inFlight, 1, `one export in flight after a failure (got ${c.inFlight})`);

    // and it drains in order, one at a time, once exports succeed again
    while (pending.length) {
      assert.equal(pending.length, 1);
      pending.shift()?.({ code: ExportResultCode.SUCCESS });
      await tick();
      await tick();
    }
    const st = sink.stats();
    assert.equal(c.max, 1);
    assert.equal(st.exportsFailed, 1);
    assert.equal(st.spansDropped, batch);
    assert.equal(st.spansExported, 3 * batch);
    await sink.shutdown();
  });

  it('with every queue full, a span is counted as dropped without being built (no SDK span, no provider)', async () => {
    const pending: ((r: ExportResult) => void)[] = [];
    const exported: string[] = [];
    const hanging: SpanExporter = {
      export: (spans, cb) => {
        exported.push(...spans.map((x) => x.name));
        pending.push(cb);
      },
      shutdown: async () => {},
    };
    const sink = new SdkSpanSink(sinkOptions({ exporters: [hanging], batch: { maxQueueSize: 4, maxExportBatchSize: 2, scheduledDelayMillis: 600_000, shedFromFill: 1 }, log: () => {} }));
    for (let i = 0; i < 6; i++) sink.emit(span(`fill-${i}`)); // 2 in flight (hanging), 4 queued: full
    const before = sink.stats();
    assert.equal(before.exporters[0]?.queued, 4);
    const other = { serviceName: 'never-built', attributes: { 'k8s.pod.name': 'x' } };
    for (let i = 0; i < 100; i++) sink.emit({ ...span(`dropped-${i}`), resource: other });
    sink.emit({ ...span('unsampled'), traceFlags: 0, resource: other });
    const st = sink.stats();
    assert.equal(st.spansDroppedQueueFull - before.spansDroppedQueueFull, 100, 'sampled ones counted as dropped');
    assert.equal(st.spansEmitted - before.spansEmitted, 101);
    assert.equal(st.providersCreated, before.providersCreated, 'no TracerProvider for a resource whose spans were all dropped');
    // room again: spans are built and exported as before
    pending.shift()?.({ code: ExportResultCode.SUCCESS });
    await waitFor(() => (sink.stats().exporters[0]?.queued ?? 4) < 4, 'room in the queue');
    sink.emit({ ...span('after'), resource: other });
    assert.equal(sink.stats().providersCreated, before.providersCreated + 1);
    const flushed = sink.flush();
    await waitFor(() => {
      while (pending.length) pending.shift()?.({ code: ExportResultCode.SUCCESS });
      return exported.includes('after');
    }, 'the span made after room came back');
    await flushed;
    assert.ok(!exported.some((n) => n.startsWith('dropped-')));
    await sink.shutdown();
  });

  it('the receiver down during a burst, then up: a span made after recovery arrives within delay + 2 x export timeout', async () => {
    const receiver = new OtlpReceiver();
    await receiver.start();
    // small, configured values: every bound below derives from them
    const timeoutMillis = 600;
    const delayMillis = 50;
    const batch = 16;
    const concurrent = 3;
    const exporter = new Concurrency(
      createOtlpHttpExporter({
        url: receiver.url,
        timeoutMillis,
        retry: { initialBackoffMillis: 40, maxBackoffMillis: 150, multiplier: 2, jitter: 0, maxRetries: 1000 },
      }),
    );
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [exporter],
      batch: { maxQueueSize: 8 * batch, maxExportBatchSize: batch, scheduledDelayMillis: delayMillis, maxConcurrentExports: concurrent, shedFromFill: 1 },
      log: () => {},
    }));
    try {
      await receiver.stop();
      // a burst while it is down: spans keep coming until several exports have failed
      await waitFor(() => {
        for (let i = 0; i < batch; i++) sink.emit(span('outage'));
        return sink.stats().exportsFailed >= 3;
      }, 'three failed exports', 20 * timeoutMillis, 5);
      assert.ok(sink.stats().spansDroppedQueueFull > 0, 'the burst overflowed the queue');

      await receiver.start(); // same port
      const ok0 = sink.stats().exportsSucceeded;
      await waitFor(() => {
        const s = sink.stats();
        return s.exportsSucceeded > ok0 && (s.exporters[0]?.queued ?? Infinity) < batch;
      }, 'exports succeeding again and the queue drained', 8 * 2 * timeoutMillis);

      // an export still retrying from the outage ends within its timeout; the marker's own export
      // (first attempt, or retried on a connection closed by the restart) within another
      const bound = delayMillis + 2 * timeoutMillis;
      const t0 = performance.now();
      sink.emit(span('after-recovery'));
      await waitFor(
        () => flattenSpans(receiver.requests.flatMap((q) => q.decoded)).some((x) => x.span.name === 'after-recovery'),
        'the span made after recovery at the receiver',
        bound,
        5,
      );
      const took = performance.now() - t0;
      assert.ok(took <= bound, `arrived after ${took.toFixed(0)} ms (bound ${bound} ms)`);
      assert.ok(exporter.max <= concurrent, `exports in flight at most ${concurrent} (saw ${exporter.max})`);
      await sink.flush();
      const st = sink.stats();
      assert.equal(st.exportsFailed > 0 && st.spansExported > 0, true);
      assert.deepEqual(receiver.errors, []);
    } finally {
      await sink.shutdown();
      await receiver.stop();
    }
  });
});
