import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import {
  createOtlpHttpExporter,
  DEFAULT_OTLP_TRACES_URL,
  resolveOtlpTracesUrl,
} from '../../agent/src/export/otlp.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { flattenSpans, loadOtlpSchema } from '../helpers/otlp-decode.ts';
import { hrToNanos, IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, TRACESTATE, waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

// proto SpanKind = API SpanKind + 1
const PROTO_KIND: Record<number, number> = {
  [SpanKind.INTERNAL]: 1,
  [SpanKind.SERVER]: 2,
  [SpanKind.CLIENT]: 3,
};

describe('OTLP http/protobuf export', () => {
  const receiver = new OtlpReceiver();
  before(() => receiver.start());
  after(() => receiver.stop());

  it('resolves the endpoint from the environment', () => {
    assert.equal(resolveOtlpTracesUrl({}), DEFAULT_OTLP_TRACES_URL);
    assert.equal(DEFAULT_OTLP_TRACES_URL, 'http://localhost:4318/v1/traces');
    assert.equal(resolveOtlpTracesUrl({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318/' }), 'http://jaeger:4318/v1/traces');
    assert.equal(
      resolveOtlpTracesUrl({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:9999/custom',
      }),
      'http://collector:9999/custom',
    );
  });

  it('delivers spans with ids, names, parents, kinds, times, attributes and resources (decoded with the OTLP schema)', async (t) => {
    t.diagnostic(`OTLP schema from ${loadOtlpSchema().where}`);
    const sink = new SdkSpanSink({
      exporters: [createOtlpHttpExporter({ url: receiver.url, headers: { 'x-strata-test': '1' }, timeoutMillis: 2000 })],
      batch: { scheduledDelayMillis: 50 },
    });
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

    for (const r of records) {
      const row = rows.find((x) => x.span.spanId === r.spanId);
      assert.ok(row, `span ${r.spanId} received`);
      const s = row.span;
      assert.equal(s.traceId, r.traceId);
      assert.equal(s.parentSpanId, r.parentSpanId ?? '');
      assert.equal(s.name, r.name);
      assert.equal(s.kind, PROTO_KIND[r.kind]);
      assert.equal(s.startTimeUnixNano, hrToNanos(r.start));
      assert.equal(s.endTimeUnixNano, hrToNanos(r.end));
      assert.deepEqual(s.attributes, r.attributes);
      assert.equal(s.status.code, r.status?.code ?? 0);
      assert.equal(s.status.message, r.status?.message ?? '');
      assert.equal(row.scope.name, 'strata');
      assert.deepEqual(row.resource, { ...r.resource.attributes, 'service.name': r.resource.serviceName });
      // Span.flags (field 16, W3C flags + IS_REMOTE) is newer than the generated schema the test
      // decodes with (otlp-proto-schema): it is not asserted here.
    }
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
    const sink = new SdkSpanSink({
      // short timeout: connection refused is retried with backoff only within this budget
      exporters: [createOtlpHttpExporter({ url: receiver.url, timeoutMillis: 500 })],
      batch: { scheduledDelayMillis: 50 },
      log: (l) => lines.push(l),
    });
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
});
