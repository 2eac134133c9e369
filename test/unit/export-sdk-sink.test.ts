import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import v8 from 'node:v8';
import vm from 'node:vm';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { RecordSpan, spanHeapBytes } from '../../agent/src/export/readable-span.ts';
import { EXPORT_LATENCY_BUCKETS_MS, SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { loadFixture, replay } from '../helpers/replay.ts';
import { sinkOptions } from '../helpers/options.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, TRACE_ID_2, TRACESTATE, waitFor } from '../helpers/otlp-fixture.ts';

function byId(spans: ReadableSpan[]): Map<string, ReadableSpan> {
  return new Map(spans.map((s) => [s.spanContext().spanId, s]));
}

describe('SdkSpanSink', () => {
  it('exports each record as an SDK span with exactly its ids, parent, times, kind, attributes, status, resource', async () => {
    const mem = new InMemorySpanExporter();
    const sink = new SdkSpanSink(sinkOptions({ exporters: [mem], batch: { scheduledDelayMillis: 60_000 } }));
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
    const sink = new SdkSpanSink(sinkOptions({ exporters: [mem], maxResources: 2, batch: { scheduledDelayMillis: 60_000 } }));
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
    const sink = new SdkSpanSink(sinkOptions({ exporters: [mem], log: (l) => lines.push(l) }));
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
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [failing, throwing],
      batch: { scheduledDelayMillis: 60_000, maxExportBatchSize: 512 },
      log: (l) => lines.push(l),
    }));
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
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [hanging],
      batch: { maxQueueSize: 2, maxExportBatchSize: 2, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000, maxConcurrentExports: 1, shedFromFill: 1 },
      log: () => {},
    }));
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

  it('records the duration of each export call per exporter as a histogram (count, sum, last, max, cumulative buckets)', async () => {
    const delays: number[] = [];
    const delayed: SpanExporter = {
      export(_spans: ReadableSpan[], cb: (r: ExportResult) => void) {
        const ms = delays.shift() ?? 0;
        if (ms === 0) cb({ code: ExportResultCode.SUCCESS });
        else setTimeout(() => cb({ code: ExportResultCode.FAILED, error: new Error('slow and failed') }), ms);
      },
      shutdown: async () => {},
    };
    const mem = new InMemorySpanExporter();
    const sink = new SdkSpanSink(sinkOptions({ exporters: [delayed, mem], batch: { scheduledDelayMillis: 60_000 }, log: () => {} }));
    const empty = sink.stats().exporters[0]?.exportLatencyMs;
    assert.deepEqual(empty, { bucketsMs: [1, 5, 10, 50, 100, 500, 1000, 5000], buckets: [0, 0, 0, 0, 0, 0, 0, 0], count: 0, sumMs: 0, lastMs: 0, maxMs: 0 });
    assert.deepEqual(EXPORT_LATENCY_BUCKETS_MS, empty?.bucketsMs);

    const base = spanTree()[3] as SpanRecord;
    delays.push(0, 120);
    sink.emit(base);
    await sink.flush(); // synchronous result: well under 1 ms
    sink.emit({ ...base, spanId: 'e1e1e1e1e1e1e1e1' });
    await sink.flush(); // 120 ms, failed: counted the same way
    const st = sink.stats();
    const lat = st.exporters[0]?.exportLatencyMs;
    assert.ok(lat);
    assert.equal(lat.count, 2);
    assert.ok(lat.lastMs >= 115 && lat.lastMs < 5000, `last ${lat.lastMs}`);
    assert.equal(lat.maxMs, lat.lastMs);
    // the synchronous call took what this machine gave it (well under 1 ms when idle), less than the slow one
    const fastMs = lat.sumMs - lat.lastMs;
    assert.ok(fastMs >= 0 && fastMs < lat.lastMs, `fast ${fastMs} ms, slow ${lat.lastMs} ms`);
    // cumulative: each call in every bucket from its own duration on
    lat.bucketsMs.forEach((le, i) => assert.equal(lat.buckets[i], (fastMs <= le ? 1 : 0) + (lat.lastMs <= le ? 1 : 0), `<= ${le} ms`));
    assert.equal(lat.buckets[7], 2, '<= 5000 ms');
    for (let i = 1; i < lat.buckets.length; i++) assert.ok((lat.buckets[i] as number) >= (lat.buckets[i - 1] as number));
    // per exporter: the in-memory exporter has its own
    assert.equal(st.exporters[1]?.exportLatencyMs.count, 2);
    assert.equal(st.exporters[1]?.exportLatencyMs.buckets[7], 2);
    // a snapshot: later exports do not change it
    sink.emit({ ...base, spanId: 'e2e2e2e2e2e2e2e2' });
    await sink.flush();
    assert.equal(lat.count, 2);
    assert.equal(lat.buckets[7], 2);
    assert.equal(sink.stats().exporters[0]?.exportLatencyMs.count, 3);
    await sink.shutdown();
  });

  it('counts an export that never reports within exportTimeoutMillis as failed', async () => {
    const hanging: SpanExporter = { export() {}, shutdown: async () => {} };
    const lines: string[] = [];
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [hanging],
      batch: { scheduledDelayMillis: 10, exportTimeoutMillis: 80 },
      log: (l) => lines.push(l),
    }));
    sink.emit(spanTree()[3] as SpanRecord);
    const st = await waitFor(() => {
      const s = sink.stats();
      return s.exportsFailed === 1 ? s : undefined;
    }, 'the timed-out export to be counted');
    assert.equal(st.spansDropped, 1);
    assert.equal(st.exporters[0]?.lastError, 'export timed out after 80 ms');
    assert.ok((st.exporters[0]?.exportLatencyMs.lastMs ?? 0) >= 75);
    assert.match(lines[0] ?? '', /failed to export 1 spans: export timed out/);
    await sink.shutdown();
  });

  it('runs at most maxConcurrentExports export calls at once; flush waits for every one of them', async () => {
    const pending: { n: number; cb: (r: ExportResult) => void }[] = [];
    const hanging: SpanExporter = {
      export(spans: ReadableSpan[], cb: (r: ExportResult) => void) {
        pending.push({ n: spans.length, cb });
      },
      shutdown: async () => {},
    };
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [hanging],
      batch: { maxQueueSize: 100, maxExportBatchSize: 2, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000, maxConcurrentExports: 3 },
      log: () => {},
    }));
    const base = spanTree()[3] as SpanRecord;
    const mk = (i: number): SpanRecord => ({ ...base, spanId: (0x200 + i).toString(16).padStart(16, '0') });
    for (let i = 0; i < 12; i++) sink.emit(mk(i));
    await waitFor(() => pending.length === 3, 'three exports in flight');
    // a fourth never starts while three are in flight
    await new Promise((r) => setImmediate(r));
    assert.equal(pending.length, 3);
    assert.equal(sink.stats().exporters[0]?.queued, 6);
    let flushed = false;
    const flush = sink.flush().then(() => {
      flushed = true;
    });
    // one finishes: the next batch starts
    (pending.shift() as (typeof pending)[number]).cb({ code: ExportResultCode.SUCCESS });
    await waitFor(() => pending.length === 3, 'the next export after one finished');
    // drain everything; flush resolves only once every call has reported
    for (let done = 1; done < 6; done++) {
      await waitFor(() => pending.length > 0, 'an export');
      assert.equal(flushed, false);
      (pending.shift() as (typeof pending)[number]).cb({ code: ExportResultCode.SUCCESS });
    }
    await flush;
    const st = sink.stats();
    assert.equal(st.spansExported, 12);
    assert.equal(st.exportsSucceeded, 6);
    assert.equal(st.spansDropped, 0);
    await sink.shutdown();
  });

  it('bounds what an exporter holds by estimated heap bytes, queued and in flight alike; drops past it are counted', async () => {
    const pending: { n: number; cb: (r: ExportResult) => void }[] = [];
    const hanging: SpanExporter = {
      export(spans: ReadableSpan[], cb: (r: ExportResult) => void) {
        pending.push({ n: spans.length, cb });
      },
      shutdown: async () => {},
    };
    const base = spanTree()[3] as SpanRecord;
    const mk = (i: number): SpanRecord => ({ ...base, spanId: (0x300 + i).toString(16).padStart(16, '0') });
    const each = spanHeapBytes(mk(0));
    // room for 5 spans by bytes, 100 by count
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [hanging],
      batch: { maxQueueSize: 100, maxQueueBytes: 5 * each, maxExportBatchSize: 2, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000, maxConcurrentExports: 1, shedFromFill: 1 },
      log: () => {},
    }));
    for (let i = 0; i < 8; i++) sink.emit(mk(i));
    await waitFor(() => pending.length === 1, 'one export in flight');
    let st = sink.stats();
    assert.equal(st.spansDroppedQueueFull, 3, 'the 6th to 8th span: past the byte bound');
    assert.equal(st.spansDropped, 3);
    assert.equal(st.exporters[0]?.queued, 3, 'two left the queue for the export call');
    assert.equal(st.exporters[0]?.heldBytes, 5 * each, 'the batch in flight still counts');
    // still full while the export runs: the next span is dropped too
    sink.emit(mk(8));
    assert.equal(sink.stats().spansDroppedQueueFull, 4);
    // the export finishes: its bytes are released, and one more span fits
    (pending.shift() as (typeof pending)[number]).cb({ code: ExportResultCode.SUCCESS });
    await waitFor(() => (sink.stats().exporters[0]?.heldBytes ?? 0) < 5 * each, 'bytes released');
    sink.emit(mk(9));
    st = sink.stats();
    assert.equal(st.spansDroppedQueueFull, 4);
    assert.ok((st.exporters[0]?.heldBytes ?? 0) <= 5 * each);
    for (let i = 0; i < 4 && pending.length + (st.exporters[0]?.queued ?? 0) > 0; i++) {
      const flush = sink.flush();
      await waitFor(() => pending.length > 0, 'an export');
      while (pending.length) (pending.shift() as (typeof pending)[number]).cb({ code: ExportResultCode.SUCCESS });
      await flush;
      st = sink.stats();
    }
    assert.equal(st.spansExported, 10 - 4);
    assert.equal(st.exporters[0]?.heldBytes, 0);
    await sink.shutdown();
  });

  it('estimates the heap a queued span holds within 0.6-1.6x of what spans of captured lab traffic really hold', () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const { batches, meta } = loadFixture('http');
    const spans = replay(batches, meta).sink.spans;
    assert.ok(spans.length > 50);
    const res = resourceFromAttributes({ 'service.name': 'x' });
    const n = 20_000;
    gc();
    gc();
    const before = process.memoryUsage().heapUsed;
    // fresh copies, as the correlator makes them: no string shared with another span
    const held: RecordSpan[] = [];
    for (let i = 0; i < n; i++) held.push(new RecordSpan(structuredClone({ ...(spans[i % spans.length] as SpanRecord), resource: undefined }) as unknown as SpanRecord, res, { name: 'strata' }));
    gc();
    gc();
    const measured = (process.memoryUsage().heapUsed - before) / n;
    const estimated = held.reduce((a, s) => a + s.heapBytes, 0) / n;
    const ratio = estimated / measured;
    assert.ok(ratio > 0.6 && ratio < 1.6, `estimated ${estimated.toFixed(0)} B/span, measured ${measured.toFixed(0)} B/span (${ratio.toFixed(2)}x)`);
  });

  it('past half full sheds whole traces by trace id, the high ids first, and counts them apart from losses', async () => {
    const pending: ReadableSpan[][] = [];
    const hanging: SpanExporter = {
      export(spans: ReadableSpan[], _cb: (r: ExportResult) => void) {
        pending.push(spans);
      },
      shutdown: async () => {},
    };
    const base = spanTree()[3] as SpanRecord;
    const each = spanHeapBytes(base);
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [hanging],
      batch: { maxQueueSize: 1000, maxQueueBytes: 40 * each, maxExportBatchSize: 1000, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000, maxConcurrentExports: 1 },
      log: () => {},
    }));
    // a trace id whose low 32 bits place it at `at` in 0..1
    const trace = (at: number, n: number) => `${n.toString(16).padStart(24, '0')}${Math.floor(at * 2 ** 32).toString(16).padStart(8, '0')}`;
    let n = 0;
    const span = (traceId: string): SpanRecord => ({ ...base, traceId, parentSpanId: undefined, spanId: (0x1000 + ++n).toString(16).padStart(16, '0') });
    // up to half full, every trace is kept, however high its id
    for (let i = 0; i < 20; i++) sink.emit(span(trace(0.99, i)));
    assert.equal(sink.stats().spansShed, 0);
    assert.equal(sink.backlog(), 0.5);
    // the bound is taken once per turn of the event loop
    await Promise.resolve();
    for (let i = 0; i < 10; i++) sink.emit(span(trace(0.01, 100 + i)));
    assert.equal(sink.backlog(), 0.75);
    await Promise.resolve();
    // 3/4 full: ids below (1 - 0.75) / 0.5 = 0.5 are kept
    const high = trace(0.9, 200);
    const low = trace(0.3, 201);
    for (let i = 0; i < 3; i++) {
      sink.emit(span(high));
      sink.emit(span(low));
    }
    const st = sink.stats();
    assert.equal(st.spansShed, 3, 'every span of the high trace');
    assert.equal(st.spansDropped, 0, 'nothing lost at random');
    assert.equal(st.spansEmitted, 36);
    assert.equal(st.exporters[0]?.queued, 33);
    await sink.shutdown();
  });

  it('sheds a trace whole: its spans of one turn share one bound while the fill moves, and a shed trace stays shed', async () => {
    const pending: ((r: ExportResult) => void)[] = [];
    const slow: SpanExporter = {
      export(_spans: ReadableSpan[], cb: (r: ExportResult) => void) {
        pending.push(cb);
      },
      shutdown: async () => {},
    };
    const base = spanTree()[3] as SpanRecord;
    const sink = new SdkSpanSink(sinkOptions({
      exporters: [slow],
      batch: { maxQueueSize: 100, maxExportBatchSize: 100, scheduledDelayMillis: 60_000, exportTimeoutMillis: 60_000, maxConcurrentExports: 1 },
      log: () => {},
    }));
    const trace = (at: number, n: number) => `${n.toString(16).padStart(24, '0')}${Math.floor(at * 2 ** 32).toString(16).padStart(8, '0')}`;
    let n = 0;
    const span = (traceId: string): SpanRecord => ({ ...base, traceId, spanId: (0x1000 + ++n).toString(16).padStart(16, '0') });
    for (let i = 0; i < 50; i++) sink.emit(span(trace(0.01, i)));
    await Promise.resolve();
    // one local trace released in one turn: 30 spans take the fill from 0.5 to 0.8, past the bound
    // of its id (0.7 is kept below a fill of 0.65): none is shed, as none was when it began
    const whole = trace(0.7, 100);
    for (let i = 0; i < 30; i++) sink.emit(span(whole));
    assert.equal(sink.backlog(), 0.8);
    assert.equal(sink.stats().spansShed, 0, 'a trace is not cut by the fill it made itself');
    await Promise.resolve();
    // the next turn: 0.8 full keeps ids below 0.4
    const later = trace(0.6, 101);
    sink.emit(span(later));
    sink.emit(span(whole));
    assert.equal(sink.stats().spansShed, 2);
    // the queue drains; the shed trace's late span is shed still, a new trace of the same id range is kept
    const flushed = sink.flush();
    await waitFor(() => pending.length > 0, 'the export');
    (pending.shift() as (r: ExportResult) => void)({ code: ExportResultCode.SUCCESS });
    await flushed;
    assert.equal(sink.backlog(), 0);
    sink.emit(span(later));
    sink.emit(span(trace(0.6, 102)));
    const st = sink.stats();
    assert.equal(st.spansShed, 3, 'the late span of a shed trace');
    assert.equal(st.spansExported, 80);
    assert.equal(st.exporters[0]?.queued, 1);
    await sink.shutdown();
  });
});
