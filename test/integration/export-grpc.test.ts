import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { status } from '@grpc/grpc-js';
import { createExporters } from '../../agent/src/export/factory.ts';
import { OtlpGrpcTraceExporter } from '../../agent/src/export/otlp-grpc.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { sinkOptions } from '../helpers/options.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { assertOtlpRowsMatch } from '../helpers/otlp-assert.ts';
import { flattenSpans, loadOtlpSchema } from '../helpers/otlp-decode.ts';
import { IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, TRACESTATE, waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpGrpcReceiver } from '../helpers/otlp-grpc-receiver.ts';

const base = spanTree()[3] as SpanRecord;
const mk = (i: number, prefix: string): SpanRecord => ({ ...base, spanId: (0xe000 + i).toString(16).padStart(16, '0'), name: `${prefix}-${i}` });

describe('OTLP gRPC export', () => {
  const receiver = new OtlpGrpcReceiver();
  before(() => receiver.start());
  after(() => receiver.stop());

  const namesSince = (from: number) => flattenSpans(receiver.requests.slice(from).flatMap((q) => q.decoded)).map((x) => x.span.name);

  it('delivers spans with ids, parents, names, kinds, times, attributes and resources, and headers as metadata', async (t) => {
    t.diagnostic(`OTLP schema from ${loadOtlpSchema().where}; server on ${receiver.url}`);
    const exporters = createExporters({
      otlp: { protocol: 'grpc', endpoint: receiver.url, headers: { 'X-Strata-Test': '1', authorization: 'Bearer t0k3n' }, timeoutMs: 2000 },
    });
    assert.equal(exporters.length, 1);
    assert.ok(exporters[0] instanceof OtlpGrpcTraceExporter);
    const sink = new SdkSpanSink(sinkOptions({ exporters, batch: { scheduledDelayMillis: 50 } }));
    const records = spanTree();
    for (const r of records) sink.emit(r);
    await sink.flush();
    const rows = await waitFor(() => {
      const all = flattenSpans(receiver.requests.flatMap((q) => q.decoded));
      return all.length >= records.length ? all : undefined;
    }, 'all spans at the gRPC receiver');
    assert.deepEqual(receiver.errors, []);
    assertOtlpRowsMatch(rows, records);

    const server = rows.find((x) => x.span.spanId === IDS.server)?.span;
    assert.equal(server?.traceId, TRACE_ID);
    assert.equal(server?.parentSpanId, REMOTE_PARENT_ID);
    assert.equal(server?.traceState, TRACESTATE);
    assert.equal(rows.find((x) => x.span.spanId === IDS.hop)?.span.parentSpanId, IDS.client);
    assert.equal(rows.find((x) => x.span.spanId === IDS.root2)?.span.parentSpanId, '');
    // one ResourceSpans per resource
    const services = receiver.requests.flatMap((q) => q.decoded.map((rs) => rs.resource['service.name'])).sort();
    assert.deepEqual(services, ['frontend', 'nginx', 'strata-net']);

    const md = receiver.requests[0]?.metadata ?? {};
    assert.equal(md['x-strata-test'], '1', 'header names are lowercased into metadata');
    assert.equal(md.authorization, 'Bearer t0k3n');
    assert.match(String(md['user-agent']), /OTel-OTLP-Exporter-JavaScript/);

    const st = sink.stats();
    assert.equal(st.spansExported, records.length);
    assert.equal(st.exportsFailed, 0);
    const lat = st.exporters[0]?.exportLatencyMs;
    assert.equal(lat?.count, st.exportsSucceeded);
    assert.ok((lat?.sumMs ?? 0) > 0);
    await sink.shutdown();
  });

  it('survives the backend going down: no throw, failures counted, later spans arrive when it is back on the same port', async () => {
    const lines: string[] = [];
    const exporters = createExporters({ otlp: { protocol: 'grpc', endpoint: receiver.url, timeoutMs: 500 } });
    const sink = new SdkSpanSink(sinkOptions({ exporters, batch: { scheduledDelayMillis: 50 }, log: (l) => lines.push(l) }));
    // connect first, so that the outage hits an established channel
    sink.emit(mk(0, 'before'));
    await sink.flush();
    assert.equal(sink.stats().spansExported, 1);

    await receiver.stop();
    const from = receiver.requests.length;
    sink.emit(mk(1, 'down'));
    sink.emit(mk(2, 'down'));
    await sink.flush(); // must not throw
    const down = await waitFor(() => {
      const s = sink.stats();
      return s.exportsFailed >= 1 ? s : undefined;
    }, 'the failed export to be counted');
    assert.equal(down.spansDropped, 2);
    assert.equal(lines.length, 1, 'one warning line');
    assert.match(lines[0] as string, /OtlpGrpcTraceExporter failed to export 2 spans: 14 UNAVAILABLE/);

    sink.emit(mk(3, 'down'));
    await sink.flush();
    await waitFor(() => sink.stats().exportsFailed >= 2, 'the second failure to be counted');
    assert.equal(lines.length, 1, 'more failures within 10 s: counted, not logged');
    const failedWhileDown = sink.stats().exportsFailed;

    await receiver.start(); // same port
    sink.emit(mk(4, 'up'));
    sink.emit(mk(5, 'up'));
    await sink.flush();
    const names = await waitFor(() => {
      const got = namesSince(from);
      return got.includes('up-4') && got.includes('up-5') ? got : undefined;
    }, 'spans after the backend came back');
    assert.ok(!names.some((n) => n.startsWith('down-')), 'spans of failed exports are dropped, not replayed');
    const st = sink.stats();
    // a fresh channel after UNAVAILABLE: the first export after the restart goes through (grpc-js
    // would otherwise fail calls at once until its reconnect backoff has passed)
    assert.equal(st.exportsFailed, failedWhileDown, 'no failure once the backend is back');
    assert.equal(st.spansExported, 3);
    assert.equal(st.spansDropped, 3);
    assert.ok((exporters[0] as OtlpGrpcTraceExporter).channelsReplaced >= 2);
    await sink.shutdown();
  });

  it('retries UNAVAILABLE with backoff within the timeout; does not retry INVALID_ARGUMENT', async () => {
    const calls0 = receiver.calls;
    receiver.respond = (n) => (n - calls0 <= 2 ? status.UNAVAILABLE : 'ok');
    try {
      const exporter = new OtlpGrpcTraceExporter({ url: receiver.url, timeoutMillis: 5000, retry: { initialBackoffMillis: 20 } });
      const sink = new SdkSpanSink(sinkOptions({ exporters: [exporter], batch: { scheduledDelayMillis: 50 }, log: () => {} }));
      const from = receiver.requests.length;
      sink.emit(mk(10, 'retried'));
      await sink.flush();
      let st = sink.stats();
      assert.equal(receiver.calls - calls0, 3, 'two failed attempts, then success');
      assert.equal(exporter.retries, 2);
      assert.equal(st.exportsSucceeded, 1);
      assert.equal(st.exportsFailed, 0);
      assert.deepEqual(namesSince(from), ['retried-10']);

      const calls1 = receiver.calls;
      receiver.respond = () => status.INVALID_ARGUMENT;
      sink.emit(mk(11, 'refused'));
      await sink.flush();
      st = sink.stats();
      assert.equal(receiver.calls - calls1, 1, 'not retried');
      assert.equal(st.exportsFailed, 1);
      assert.match(st.exporters[0]?.lastError ?? '', /INVALID_ARGUMENT/);
      await sink.shutdown();
    } finally {
      receiver.respond = () => 'ok';
    }
  });

  it('bounds the queue while the backend does not answer: overflow and the timed-out export are dropped, the rest follows', async () => {
    const calls0 = receiver.calls;
    receiver.respond = (n) => (n - calls0 === 1 ? 'hang' : 'ok');
    try {
      const exporters = createExporters({ otlp: { protocol: 'grpc', endpoint: receiver.url, timeoutMs: 300 } });
      const sink = new SdkSpanSink(sinkOptions({
        exporters,
        batch: { maxQueueSize: 4, maxExportBatchSize: 2, scheduledDelayMillis: 20, shedFromFill: 1 },
        log: () => {},
      }));
      const from = receiver.requests.length;
      sink.emit(mk(20, 'hung'));
      sink.emit(mk(21, 'hung')); // a full batch: exported at once, and the backend does not answer
      for (let i = 22; i < 28; i++) sink.emit(mk(i, 'queued')); // 4 fit in the queue, 2 do not
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
      assert.equal(st.exporters[0]?.queued, 0);
      assert.deepEqual(namesSince(from).sort(), ['queued-22', 'queued-23', 'queued-24', 'queued-25']);
      const lat = st.exporters[0]?.exportLatencyMs;
      assert.ok((lat?.maxMs ?? 0) >= 250, `the hung export took about its timeout (${lat?.maxMs} ms)`);
      assert.match(st.exporters[0]?.lastError ?? '', /DEADLINE_EXCEEDED|timed out/);
      await sink.shutdown();
    } finally {
      receiver.respond = () => 'ok';
    }
  });
});
