import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, TRACE_ID_2, TRACESTATE, waitFor } from '../helpers/otlp-fixture.ts';

function byId(spans: ReadableSpan[]): Map<string, ReadableSpan> {
  return new Map(spans.map((s) => [s.spanContext().spanId, s]));
}

describe('SdkSpanSink', () => {
  it('exports each record as an SDK span with exactly its ids, parent, times, kind, attributes, status, resource', async () => {
    const mem = new InMemorySpanExporter();
    const sink = new SdkSpanSink({ exporters: [mem], batch: { scheduledDelayMillis: 60_000 } });
    const records = spanTree();
    for (const r of records) sink.emit(r);
    await sink.flush();
    const got = byId(mem.getFinishedSpans());
    assert.equal(got.size, records.length);

    for (const r of records) {
      const s = got.get(r.spanId);
      assert.ok(s, `span ${r.spanId} exported`);
      const ctx = s.spanContext();
      assert.equal(ctx.traceId, r.traceId);
      assert.equal(ctx.spanId, r.spanId);
      assert.equal(ctx.traceFlags, 1);
      assert.equal(s.name, r.name);
      assert.equal(s.kind, r.kind);
      // to the nanosecond
      assert.deepEqual(s.startTime, r.start);
      assert.deepEqual(s.endTime, r.end);
      assert.ok(s.ended);
      assert.deepEqual(s.attributes, r.attributes);
      assert.deepEqual(s.status, r.status ?? { code: SpanStatusCode.UNSET });
      assert.equal(s.resource.attributes['service.name'], r.resource.serviceName);
      for (const [k, v] of Object.entries(r.resource.attributes)) assert.equal(s.resource.attributes[k], v, k);
      assert.equal(s.instrumentationScope.name, 'strata');
      // SDK 2.x: ReadableSpan.parentSpanContext (1.x had parentSpanId)
      if (r.parentSpanId) {
        assert.equal(s.parentSpanContext?.spanId, r.parentSpanId);
        assert.equal(s.parentSpanContext?.traceId, r.traceId);
        assert.equal(s.parentSpanContext?.isRemote, r.parentIsRemote ?? false);
      } else {
        assert.equal(s.parentSpanContext, undefined);
      }
    }

    const server = got.get(IDS.server);
    assert.equal(server?.parentSpanContext?.spanId, REMOTE_PARENT_ID);
    assert.equal(server?.parentSpanContext?.isRemote, true);
    assert.equal(server?.spanContext().traceState?.serialize(), TRACESTATE);
    assert.equal(got.get(IDS.client)?.kind, SpanKind.CLIENT);
    assert.equal(got.get(IDS.hop)?.kind, SpanKind.INTERNAL);
    assert.equal(got.get(IDS.hop)?.parentSpanContext?.spanId, IDS.client);
    const root2 = got.get(IDS.root2);
    assert.equal(root2?.spanContext().traceId, TRACE_ID_2);
    assert.equal(root2?.spanContext().traceId === TRACE_ID, false);
    // spans of one resource share a Resource (one provider per resource)
    assert.equal(got.get(IDS.server)?.resource, got.get(IDS.client)?.resource);
    assert.notEqual(got.get(IDS.server)?.resource, got.get(IDS.hop)?.resource);

    const st = sink.stats();
    assert.equal(st.spansEmitted, 4);
    assert.equal(st.spansExported, 4);
    assert.equal(st.providersCreated, 3);
    assert.equal(st.providersEvicted, 0);
    assert.equal(st.exportsFailed, 0);
    await sink.shutdown();
  });

  it('bounds the provider cache (LRU), counts evictions, and keeps resources right after eviction', async () => {
    const mem = new InMemorySpanExporter();
    const sink = new SdkSpanSink({ exporters: [mem], maxProviders: 2, batch: { scheduledDelayMillis: 60_000 } });
    const mk = (i: number, service: string, pod: string): SpanRecord => ({
      traceId: TRACE_ID,
      spanId: (i + 1).toString(16).padStart(16, '0'),
      traceFlags: 1,
      name: `s${i}`,
      kind: SpanKind.INTERNAL,
      start: [1_767_225_600, i],
      end: [1_767_225_600, i + 1],
      attributes: {},
      // fresh objects each time: the cache key is the content, not the object
      resource: { serviceName: service, attributes: { 'k8s.pod.name': pod } },
    });
    sink.emit(mk(0, 'a', 'a-1'));
    sink.emit(mk(1, 'b', 'b-1'));
    sink.emit(mk(2, 'a', 'a-1')); // hit: a becomes most recent
    assert.equal(sink.stats().providersEvicted, 0);
    sink.emit(mk(3, 'c', 'c-1')); // evicts b
    assert.equal(sink.stats().providersEvicted, 1);
    sink.emit(mk(4, 'a', 'a-1')); // still cached
    assert.equal(sink.stats().providersEvicted, 1);
    sink.emit(mk(5, 'b', 'b-1')); // evicts c
    sink.emit(mk(6, 'b', 'b-2')); // same service, other attributes: another resource; evicts a
    const st = sink.stats();
    assert.equal(st.providersEvicted, 3);
    assert.equal(st.providersCreated, 5);
    assert.equal(st.providersCached, 2);
    await sink.flush();
    const spans = mem.getFinishedSpans();
    assert.equal(spans.length, 7);
    for (const s of spans) {
      const i = Number(s.name.slice(1));
      const want = [
        ['a', 'a-1'],
        ['b', 'b-1'],
        ['a', 'a-1'],
        ['c', 'c-1'],
        ['a', 'a-1'],
        ['b', 'b-1'],
        ['b', 'b-2'],
      ][i];
      assert.equal(s.resource.attributes['service.name'], want?.[0]);
      assert.equal(s.resource.attributes['k8s.pod.name'], want?.[1]);
    }
    await sink.shutdown();
  });

  it('refuses invalid records without throwing and counts them; emit after shutdown is counted too', async () => {
    const mem = new InMemorySpanExporter();
    const lines: string[] = [];
    const sink = new SdkSpanSink({ exporters: [mem], log: (l) => lines.push(l) });
    const good = spanTree()[3] as SpanRecord;
    sink.emit({ ...good, traceId: 'nothex' });
    sink.emit({ ...good, spanId: '0000000000000000' });
    sink.emit({ ...good, parentSpanId: 'xyz' });
    sink.emit({ ...good, start: [1_767_225_600, 1_000_000_000] });
    sink.emit({ ...good, end: [Number.NaN, 0] });
    assert.equal(sink.stats().spansRejected, 5);
    assert.equal(lines.length, 1, 'one warning line per 10 s');
    await sink.shutdown();
    sink.emit(good);
    assert.equal(sink.stats().spansRejected, 6);
    assert.equal(sink.stats().spansEmitted, 0);
  });

  it('counts failed exports and dropped spans, never throws, warns at most once per 10 s', async () => {
    let calls = 0;
    const failing: SpanExporter = {
      export(_spans: ReadableSpan[], cb: (r: ExportResult) => void) {
        calls++;
        setImmediate(() => cb({ code: ExportResultCode.FAILED, error: new Error('backend down') }));
      },
      shutdown: async () => {},
    };
    const throwing: SpanExporter = {
      export() {
        throw new Error('boom');
      },
      shutdown: async () => {},
    };
    const lines: string[] = [];
    const sink = new SdkSpanSink({
      exporters: [failing, throwing],
      batch: { scheduledDelayMillis: 60_000, maxExportBatchSize: 512 },
      log: (l) => lines.push(l),
    });
    for (const r of spanTree()) sink.emit(r);
    await sink.flush();
    for (const r of spanTree()) sink.emit({ ...r, spanId: r.spanId.replace(/^../, 'ee') });
    await sink.flush();
    const st = sink.stats();
    assert.equal(calls, 2);
    assert.equal(st.exportsFailed, 4);
    assert.equal(st.spansDropped, 16);
    assert.equal(st.spansExported, 0);
    assert.equal(st.exporters[0]?.lastError, 'backend down');
    assert.equal(st.exporters[1]?.lastError, 'boom');
    assert.equal(lines.length, 1);
    await sink.shutdown();
  });

  it('counts spans dropped because the batch queue is full', async () => {
    const pending: ((r: ExportResult) => void)[] = [];
    const hanging: SpanExporter = {
      export(_spans: ReadableSpan[], cb: (r: ExportResult) => void) {
        pending.push(cb);
      },
      shutdown: async () => {},
    };
    const sink = new SdkSpanSink({
      exporters: [hanging],
      batch: { maxQueueSize: 2, maxExportBatchSize: 2, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000 },
      log: () => {},
    });
    const base = spanTree()[3] as SpanRecord;
    const mk = (i: number): SpanRecord => ({ ...base, spanId: (0x100 + i).toString(16).padStart(16, '0') });
    sink.emit(mk(0));
    sink.emit(mk(1)); // queue reaches the batch size: handed to the exporter, which hangs
    assert.equal(pending.length, 1);
    sink.emit(mk(2));
    sink.emit(mk(3)); // queued (an export is in flight)
    sink.emit(mk(4));
    sink.emit(mk(5));
    sink.emit(mk(6));
    let st = sink.stats();
    assert.equal(st.spansEmitted, 7);
    assert.equal(st.spansDroppedQueueFull, 3);
    assert.equal(st.exporters[0]?.queued, 2);
    // let the exports complete
    (pending.shift() as (r: ExportResult) => void)({ code: ExportResultCode.SUCCESS });
    const flushed = sink.flush();
    await waitFor(() => pending.length > 0, 'second export');
    (pending.shift() as (r: ExportResult) => void)({ code: ExportResultCode.SUCCESS });
    await flushed;
    st = sink.stats();
    assert.equal(st.spansExported, 4);
    assert.equal(st.spansDropped, 3);
    assert.equal(st.exporters[0]?.queued, 0);
    await sink.shutdown();
  });
});
