import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createExporters } from '../../agent/src/export/factory.ts';
import {
  createOtlpHttpExporter,
  DEFAULT_OTLP_TRACES_URL,
} from '../../agent/src/export/otlp.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { sinkOptions } from '../helpers/options.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { assertOtlpRowsMatch } from '../helpers/otlp-assert.ts';
import { flattenSpans, loadOtlpSchema } from '../helpers/otlp-decode.ts';
import { IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, TRACESTATE, waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { loadConfig } from '../../agent/src/config/index.ts';

describe('OTLP http/protobuf export', () => {
  const receiver = new OtlpReceiver();
  before(() => receiver.start());
  after(() => receiver.stop());

  it('resolves the endpoint from the environment (through the configuration, its one reader)', () => {
    const endpoint = (env: Record<string, string>) => loadConfig({ env, hostname: 'n' }).export.otlp.endpoint;
    assert.equal(endpoint({}), DEFAULT_OTLP_TRACES_URL);
    assert.equal(DEFAULT_OTLP_TRACES_URL, 'http://localhost:4318/v1/traces');
    assert.equal(endpoint({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318/' }), 'http://jaeger:4318/v1/traces');
    assert.equal(
      endpoint({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:9999/custom',
      }),
      'http://collector:9999/custom',
    );
  });

  it('delivers spans with ids, names, parents, kinds, times, attributes and resources (decoded with the OTLP schema)', async (t) => {
    t.diagnostic(`OTLP schema from ${loadOtlpSchema().where}`);
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [createOtlpHttpExporter({ url: receiver.url, headers: { 'x-strata-test': '1' }, timeoutMillis: 2000 })],
      batch: { scheduledDelayMillis: 50 },
    }));
    const records = spanTree();
    for (const r of records) sink.emit(r);
    await sink.flush();
    const rows = await waitFor(() => {
      const all = flattenSpans(receiver.requests.flatMap((q) => q.decoded));
      return all.length >= records.length ? all : undefined;
    }, 'all spans at the receiver');
    assert.deepEqual(receiver.errors, []);
    assert.equal(receiver.requests[0]?.contentType, 'application/x-protobuf');
    assert.equal(receiver.requests[0]?.headers['x-strata-test'], '1');
    assert.equal(rows.length, records.length);

    assertOtlpRowsMatch(rows, records);
    const server = rows.find((x) => x.span.spanId === IDS.server)?.span;
    assert.equal(server?.traceId, TRACE_ID);
    assert.equal(server?.parentSpanId, REMOTE_PARENT_ID);
    assert.equal(server?.traceState, TRACESTATE);

    const st = sink.stats();
    assert.equal(st.spansExported, records.length);
    assert.equal(st.exportsFailed, 0);
    await sink.shutdown();
  });

  it('survives the backend going down: no throw, failure counted, later spans arrive when it is back', async () => {
    const lines: string[] = [];
    const sink = new SdkSpanSink(sinkOptions({
      // short timeout: connection refused is retried with backoff only within this budget
      exporters: [createOtlpHttpExporter({ url: receiver.url, timeoutMillis: 500 })],
      batch: { scheduledDelayMillis: 50 },
      log: (l) => lines.push(l),
    }));
    const base = spanTree()[3] as SpanRecord;
    const mk = (i: number): SpanRecord => ({ ...base, spanId: (0xd00 + i).toString(16).padStart(16, '0'), name: `down-${i}` });

    await receiver.stop();
    const before = receiver.requests.length;
    sink.emit(mk(0));
    sink.emit(mk(1));
    await sink.flush(); // must not throw
    const down = await waitFor(() => {
      const s = sink.stats();
      return s.exportsFailed >= 1 ? s : undefined;
    }, 'the failed export to be counted');
    assert.equal(down.spansDropped, 2);
    assert.equal(down.spansExported, 0);
    assert.equal(lines.length, 1, 'one warning line');
    assert.match(lines[0] as string, /failed to export 2 spans/);

    // more failures within 10 s: counted, not logged
    sink.emit(mk(2));
    await sink.flush();
    await waitFor(() => sink.stats().exportsFailed >= 2, 'the second failure to be counted');
    assert.equal(lines.length, 1);

    await receiver.start(); // same port
    sink.emit(mk(3));
    sink.emit(mk(4));
    await sink.flush();
    const names = await waitFor(() => {
      const got = flattenSpans(receiver.requests.slice(before).flatMap((q) => q.decoded)).map((x) => x.span.name);
      return got.includes('down-3') && got.includes('down-4') ? got : undefined;
    }, 'spans after the backend came back');
    assert.ok(!names.includes('down-0'), 'spans of the failed export are dropped, not replayed');
    const st = sink.stats();
    assert.equal(st.spansExported, 2);
    assert.equal(st.spansDropped, 3);
    await sink.shutdown();
  });

  it('retries 503 with backoff within the timeout (the SDK exporter retries by itself)', async () => {
    const calls0 = receiver.calls;
    receiver.respond = (n) => (n - calls0 === 1 ? 503 : 'ok');
    try {
      const sink = new SdkSpanSink(sinkOptions({
        // the SDK's first backoff is 0.8..1.2 s
        exporters: createExporters({ otlp: { protocol: 'http/protobuf', endpoint: receiver.url, timeoutMs: 5000 } }),
        batch: { scheduledDelayMillis: 50 },
        log: () => {},
      }));
      const from = receiver.requests.length;
      sink.emit({ ...(spanTree()[3] as SpanRecord), spanId: 'f1f1f1f1f1f1f1f1', name: 'retried' });
      await sink.flush();
      const st = sink.stats();
      assert.equal(receiver.calls - calls0, 2, 'one failed attempt, then success');
      assert.equal(st.exportsSucceeded, 1);
      assert.equal(st.exportsFailed, 0);
      assert.deepEqual(
        flattenSpans(receiver.requests.slice(from).flatMap((q) => q.decoded)).map((x) => x.span.name),
        ['retried'],
      );
      assert.ok((st.exporters[0]?.exportLatencyMs.lastMs ?? 0) >= 700, 'the export includes the backoff');
      await sink.shutdown();
    } finally {
      receiver.respond = () => 'ok';
    }
  });

  it('bounds the queue while the backend does not answer: overflow and the timed-out export are dropped, the rest follows', async () => {
    const calls0 = receiver.calls;
    receiver.respond = (n) => (n - calls0 === 1 ? 'hang' : 'ok');
    try {
      const sink = new SdkSpanSink(sinkOptions({
        exporters: createExporters({ otlp: { protocol: 'http/protobuf', endpoint: receiver.url, timeoutMs: 300 } }),
        batch: { maxQueueSize: 4, maxExportBatchSize: 2, scheduledDelayMillis: 20, shedFromFill: 1 },
        log: () => {},
      }));
      const base = spanTree()[3] as SpanRecord;
      const mk = (i: number, prefix: string): SpanRecord => ({ ...base, spanId: (0xa000 + i).toString(16).padStart(16, '0'), name: `${prefix}-${i}` });
      const from = receiver.requests.length;
      sink.emit(mk(0, 'hung'));
      sink.emit(mk(1, 'hung')); // a full batch: exported at once, and the backend does not answer
      for (let i = 2; i < 8; i++) sink.emit(mk(i, 'queued')); // 4 fit in the queue, 2 do not
      let st = sink.stats();
      assert.equal(st.spansDroppedQueueFull, 2);
      assert.equal(st.exporters[0]?.queued, 4);

      // the queued spans go out alongside the hung export (export.queue.maxConcurrentExports),
      // which fails at its timeout
      st = await waitFor(() => {
        const s = sink.stats();
        return s.spansExported >= 4 && s.exportsFailed === 1 ? s : undefined;
      }, 'the queued spans exported and the hung export timed out');
      assert.equal(st.exportsFailed, 1);
      assert.equal(st.spansDropped, 4, '2 overflowed + 2 in the timed-out export');
      const names = flattenSpans(receiver.requests.slice(from).flatMap((q) => q.decoded)).map((x) => x.span.name);
      assert.deepEqual(names.sort(), ['queued-2', 'queued-3', 'queued-4', 'queued-5']);
      assert.match(st.exporters[0]?.lastError ?? '', /timed out/);
      assert.ok((st.exporters[0]?.exportLatencyMs.maxMs ?? 0) >= 250);
      await sink.shutdown();
    } finally {
      receiver.respond = () => 'ok';
    }
  });
});
