import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type Attributes, SpanKind } from '@opentelemetry/api';
import { createExporters } from '../../agent/src/export/factory.ts';
import { JaegerThriftExporter } from '../../agent/src/export/jaeger-thrift.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { sinkOptions } from '../helpers/options.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { type DecodedJaegerSpan, type DecodedTag, loadJaegerThrift, tagMap } from '../helpers/jaeger-thrift-decode.ts';
import { JaegerReceiver } from '../helpers/jaeger-receiver.ts';
import { hrToNanos, IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, waitFor } from '../helpers/otlp-fixture.ts';

const base = spanTree()[3] as SpanRecord;
const mk = (i: number, prefix: string): SpanRecord => ({ ...base, spanId: (0xf000 + i).toString(16).padStart(16, '0'), name: `${prefix}-${i}` });

const KIND_TAG: Record<number, string | undefined> = {
  [SpanKind.INTERNAL]: undefined, // not tagged
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
};

/** how an attribute value travels as a Jaeger tag: numbers as DOUBLE, arrays as joined strings */
function expectedTag(v: Attributes[string]): { type: string; value: unknown } {
  if (typeof v === 'number') return { type: 'DOUBLE', value: v };
  if (typeof v === 'boolean') return { type: 'BOOL', value: v };
  return { type: 'STRING', value: String(v) };
}

function assertTagsInclude(tags: DecodedTag[], attrs: Attributes, where: string): void {
  for (const [k, v] of Object.entries(attrs)) {
    const tag = tags.find((t) => t.key === k);
    assert.ok(tag, `${where}: tag ${k}`);
    assert.deepEqual({ type: tag.type, value: tag.value }, expectedTag(v), `${where}: tag ${k}`);
  }
}

/** µs since the epoch, as exact as the µs resolution of Jaeger thrift allows */
function assertMicros(actual: bigint, ns: bigint, what: string): void {
  const diff = actual * 1000n - ns;
  assert.ok(diff > -1000n && diff < 1000n, `${what}: ${actual} µs vs ${ns} ns`);
}

describe('Jaeger thrift export', () => {
  const receiver = new JaegerReceiver();
  before(() => receiver.start());
  after(() => receiver.stop());

  const namesSince = (from: number) => receiver.batches.slice(from).flatMap((b) => b.batch.spans.map((s) => s.operationName));

  it('delivers one Batch per process with ids, parents, operation names, tags, times; the resource as process', async (t) => {
    const { idl, thriftrw } = loadJaegerThrift();
    t.diagnostic(`decoding with ${thriftrw} and ${idl}`);
    const exporters = createExporters({ jaeger: { endpoint: receiver.url } });
    assert.equal(exporters.length, 1);
    assert.ok(exporters[0] instanceof JaegerThriftExporter);
    const sink = new SdkSpanSink(sinkOptions({ exporters, batch: { scheduledDelayMillis: 50 } }));
    const records = spanTree();
    for (const r of records) sink.emit(r);
    await sink.flush();
    const got = await waitFor(() => {
      const all = receiver.batches.flatMap((b) => b.batch.spans.map((span) => ({ process: b.batch.process, span })));
      return all.length >= records.length ? all : undefined;
    }, 'all spans at the Jaeger receiver');
    assert.deepEqual(receiver.errors, []);
    assert.equal(got.length, records.length);
    for (const b of receiver.batches) {
      assert.equal(b.contentType, 'application/x-thrift');
      // TBinaryProtocol: the Batch starts with field 1 (process), type 12 (struct)
      assert.equal(b.body[0], 12);
      assert.equal(b.body.readInt16BE(1), 1);
    }
    // a batch per resource, named after service.name, tagged with the resource attributes
    assert.deepEqual(receiver.batches.map((b) => b.batch.process.serviceName).sort(), ['frontend', 'nginx', 'strata-net']);

    for (const r of records) {
      const found = got.filter((x) => x.span.spanId === r.spanId);
      assert.equal(found.length, 1, `span ${r.spanId} received once`);
      const { process, span } = found[0] as { process: { serviceName: string; tags: DecodedTag[] }; span: DecodedJaegerSpan };
      assert.equal(span.traceIdHigh + span.traceIdLow, r.traceId);
      assert.equal(span.parentSpanId, r.parentSpanId ?? '0000000000000000');
      assert.equal(span.operationName, r.name);
      assert.equal(span.flags, 1, 'sampled');
      assert.deepEqual(span.references, []);
      assertMicros(span.startTime, hrToNanos(r.start), 'startTime');
      assertMicros(span.duration, hrToNanos(r.end) - hrToNanos(r.start), 'duration');

      assertTagsInclude(span.tags, r.attributes, r.name);
      const tags = tagMap(span.tags);
      assert.equal(tags['span.kind'], KIND_TAG[r.kind]);
      assert.equal(tags['otel.library.name'], 'strata');
      if (r.status?.code === 1) assert.equal(tags['otel.status_code'], 'OK');
      if (r.status?.code === 2) {
        assert.equal(tags['otel.status_code'], 'ERROR');
        assert.equal(tags['otel.status_description'], r.status.message);
        assert.equal(tags.error, true);
      }
      if (!r.status) assert.equal(tags['otel.status_code'], undefined);
      // resource attributes go to the process, not to every span
      for (const k of Object.keys(r.resource.attributes)) assert.equal(tags[k], undefined, `${r.name}: no span tag ${k}`);

      assert.equal(process.serviceName, r.resource.serviceName);
      assert.equal(process.tags.length, Object.keys(r.resource.attributes).length);
      assertTagsInclude(process.tags, r.resource.attributes, `process of ${r.name}`);
    }
    const server = got.find((x) => x.span.spanId === IDS.server)?.span;
    assert.equal(server?.traceIdHigh, TRACE_ID.slice(0, 16));
    assert.equal(server?.traceIdLow, TRACE_ID.slice(16));
    assert.equal(server?.parentSpanId, REMOTE_PARENT_ID);
    assert.equal(got.find((x) => x.span.spanId === IDS.hop)?.span.parentSpanId, IDS.client);

    const st = sink.stats();
    assert.equal(st.spansExported, records.length);
    assert.equal(st.exportsFailed, 0);
    assert.equal(st.exporters[0]?.name, 'JaegerThriftExporter');
    assert.equal(st.exporters[0]?.exportLatencyMs.count, st.exportsSucceeded);
    await sink.shutdown();
  });

  it('sends basic auth from user:password@ in the endpoint, without it in the URL', async () => {
    const from = receiver.batches.length;
    const url = new URL(receiver.url);
    url.username = 'strata';
    url.password = 's3cr:et';
    const exporter = new JaegerThriftExporter({ endpoint: url.href });
    assert.equal(exporter.endpoint, receiver.url);
    const sink = new SdkSpanSink(sinkOptions({ exporters: [exporter], batch: { scheduledDelayMillis: 50 } }));
    sink.emit(mk(0, 'auth'));
    await sink.flush();
    const auth = receiver.batches[from]?.headers.authorization;
    assert.equal(auth, `Basic ${Buffer.from('strata:s3cr:et').toString('base64')}`);
    await sink.shutdown();
  });

  it('survives the backend going down: no throw, failures counted, later spans arrive when it is back on the same port', async () => {
    const lines: string[] = [];
    const exporters = createExporters({ jaeger: { endpoint: receiver.url, timeoutMs: 500 } });
    const sink = new SdkSpanSink(sinkOptions({ exporters, batch: { scheduledDelayMillis: 50 }, log: (l) => lines.push(l) }));
    sink.emit(mk(1, 'before')); // a kept-alive connection exists when the backend goes away
    await sink.flush();
    assert.equal(sink.stats().spansExported, 1);

    await receiver.stop();
    const from = receiver.batches.length;
    sink.emit(mk(2, 'down'));
    sink.emit(mk(3, 'down'));
    await sink.flush(); // must not throw
    const down = await waitFor(() => {
      const s = sink.stats();
      return s.exportsFailed >= 1 ? s : undefined;
    }, 'the failed export to be counted');
    assert.equal(down.spansDropped, 2);
    assert.equal(lines.length, 1, 'one warning line');
    assert.match(lines[0] as string, /JaegerThriftExporter failed to export 2 spans: error sending spans over HTTP/);

    sink.emit(mk(4, 'down'));
    await sink.flush();
    await waitFor(() => sink.stats().exportsFailed >= 2, 'the second failure to be counted');
    assert.equal(lines.length, 1, 'more failures within 10 s: counted, not logged');
    const failedWhileDown = sink.stats().exportsFailed;

    await receiver.start(); // same port
    sink.emit(mk(5, 'up'));
    sink.emit(mk(6, 'up'));
    await sink.flush();
    const names = await waitFor(() => {
      const got = namesSince(from);
      return got.includes('up-5') && got.includes('up-6') ? got : undefined;
    }, 'spans after the backend came back');
    assert.ok(!names.some((n) => n.startsWith('down-')), 'spans of failed exports are dropped, not replayed');
    const st = sink.stats();
    assert.equal(st.exportsFailed, failedWhileDown, 'no failure once the backend is back');
    assert.equal(st.spansExported, 3);
    assert.equal(st.spansDropped, 3);
    await sink.shutdown();
  });

  it('retries 503 and refused connections with backoff within the timeout; does not retry 400', async () => {
    const calls0 = receiver.calls;
    receiver.respond = (n) => (n - calls0 <= 2 ? 503 : 'ok');
    try {
      const exporter = new JaegerThriftExporter({ endpoint: receiver.url, timeoutMillis: 5000, retry: { initialBackoffMillis: 50 } });
      const sink = new SdkSpanSink(sinkOptions({ exporters: [exporter], batch: { scheduledDelayMillis: 50 }, log: () => {} }));
      const from = receiver.batches.length;
      sink.emit(mk(10, 'retried'));
      await sink.flush();
      let st = sink.stats();
      assert.equal(receiver.calls - calls0, 3, 'two failed attempts, then success');
      assert.equal(exporter.retries, 2);
      assert.equal(st.exportsSucceeded, 1);
      assert.equal(st.exportsFailed, 0);
      assert.deepEqual(namesSince(from), ['retried-10']);

      const calls1 = receiver.calls;
      receiver.respond = () => 400;
      sink.emit(mk(11, 'refused'));
      await sink.flush();
      st = sink.stats();
      assert.equal(receiver.calls - calls1, 1, 'not retried');
      assert.equal(st.exportsFailed, 1);
      assert.match(st.exporters[0]?.lastError ?? '', /HTTP 400/);

      // connection refused: retried until the backend is back, within the timeout
      receiver.respond = () => 'ok';
      await receiver.stop();
      const from2 = receiver.batches.length;
      sink.emit(mk(12, 'refused-then-ok'));
      const retries = exporter.retries;
      const flushed = sink.flush();
      // 5 retries, 50 ms backoff growing x1.5: about 650 ms before the export would give up
      await waitFor(() => exporter.retries > retries, 'a refused attempt', 30_000, 2);
      await receiver.start();
      await flushed;
      st = sink.stats();
      assert.equal(st.exportsFailed, 1, 'the refused attempts were retried until the backend was back');
      assert.deepEqual(namesSince(from2), ['refused-then-ok-12']);
      await sink.shutdown();
    } finally {
      receiver.respond = () => 'ok';
    }
  });

  it('bounds the queue while the backend does not answer: overflow and the timed-out export are dropped, the rest follows', async () => {
    const calls0 = receiver.calls;
    receiver.respond = (n) => (n - calls0 === 1 ? 'hang' : 'ok');
    try {
      const exporters = createExporters({ jaeger: { endpoint: receiver.url, timeoutMs: 300 } });
      const sink = new SdkSpanSink(sinkOptions({
        exporters,
        batch: { maxQueueSize: 4, maxExportBatchSize: 2, scheduledDelayMillis: 20, shedFromFill: 1 },
        log: () => {},
      }));
      const from = receiver.batches.length;
      sink.emit(mk(20, 'hung'));
      sink.emit(mk(21, 'hung')); // a full batch: exported at once, and the backend does not answer
      for (let i = 22; i < 28; i++) sink.emit(mk(i, 'queued')); // 4 fit in the queue, 2 do not
      let st = sink.stats();
      assert.equal(st.spansDroppedQueueFull, 2);
      assert.equal(st.exporters[0]?.queued, 4);

      st = await waitFor(() => {
        const s = sink.stats();
        return s.spansExported >= 4 ? s : undefined;
      }, 'the queued spans after the hung export timed out');
      assert.equal(st.exportsFailed, 1);
      assert.equal(st.spansDropped, 4, '2 overflowed + 2 in the timed-out export');
      assert.deepEqual(namesSince(from).sort(), ['queued-22', 'queued-23', 'queued-24', 'queued-25']);
      assert.match(st.exporters[0]?.lastError ?? '', /timed out after 300 ms/);
      assert.ok((st.exporters[0]?.exportLatencyMs.maxMs ?? 0) >= 250);
      // the sender with the hung request was closed and replaced
      assert.ok((exporters[0] as JaegerThriftExporter).sendersClosed >= 1);
      await sink.shutdown();
    } finally {
      receiver.respond = () => 'ok';
    }
  });

  it('keeps a bounded number of processes (senders); evicted ones are closed, spans still go to the right process', async () => {
    const from = receiver.batches.length;
    const exporter = new JaegerThriftExporter({ endpoint: receiver.url, maxProcesses: 2 });
    const sink = new SdkSpanSink(sinkOptions({ exporters: [exporter], batch: { scheduledDelayMillis: 60_000 } }));
    const services = ['a', 'b', 'c', 'a', 'b'];
    services.forEach((svc, i) => {
      sink.emit({ ...mk(30 + i, `span-${svc}`), resource: { serviceName: svc, attributes: { 'k8s.pod.name': `${svc}-pod` } } });
      // one export per span: each resource in turn
      void sink.flush();
    });
    await sink.flush();
    await waitFor(() => receiver.batches.length - from >= services.length, 'all batches');
    for (const b of receiver.batches.slice(from)) {
      const svc = b.batch.process.serviceName;
      assert.deepEqual(tagMap(b.batch.process.tags), { 'k8s.pod.name': `${svc}-pod` });
      for (const s of b.batch.spans) assert.match(s.operationName, new RegExp(`^span-${svc}-`));
    }
    assert.ok(exporter.sendersClosed >= 3, `evictions close senders (${exporter.sendersClosed})`);
    await sink.shutdown();
  });
});
