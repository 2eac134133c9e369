import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { hrDurationToMicros, type JaegerProcess, type JaegerSpan, type JaegerTag, toJaegerTraces } from '../../agent/src/export/jaeger-json.ts';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { sinkOptions } from '../helpers/options.ts';
import { assertOtlpJaegerAgree, type OtlpJsonDoc, randomSpanRecords } from '../helpers/otlp-jaeger-agree.ts';
import { lcg } from '../helpers/rng.ts';
import { hrToNanos, IDS, REMOTE_PARENT_ID, spanTree, TRACE_ID, TRACE_ID_2 } from '../helpers/otlp-fixture.ts';

async function treeSpans(): Promise<ReadableSpan[]> {
  const mem = new InMemorySpanExporter();
  const sink = new SdkSpanSink(sinkOptions({ exporters: [mem] }));
  for (const r of spanTree()) sink.emit(r);
  await sink.flush();
  const spans = mem.getFinishedSpans();
  await sink.shutdown();
  return spans;
}

function tag(span: JaegerSpan | undefined, key: string): JaegerTag | undefined {
  return span?.tags.find((t) => t.key === key);
}

describe('toJaegerTraces', () => {
  it('converts the tree: traces, references, µs times, tags with types, processes', async () => {
    const spans = await treeSpans();
    const out = toJaegerTraces(spans);
    // the shape the Jaeger query API returns and the UI uploads
    assert.deepEqual(Object.keys(out).sort(), ['data', 'errors', 'limit', 'offset', 'total']);
    assert.equal(out.data.length, 2);
    const t1 = out.data.find((t) => t.traceID === TRACE_ID);
    const t2 = out.data.find((t) => t.traceID === TRACE_ID_2);
    assert.ok(t1 && t2);
    assert.equal(t1.spans.length, 3);
    assert.equal(t2.spans.length, 1);
    assert.equal(t1.warnings, null);

    const records = new Map(spanTree().map((r) => [r.spanId, r]));
    const all = [...t1.spans, ...t2.spans];
    for (const s of all) {
      const r = records.get(s.spanID);
      assert.ok(r);
      assert.equal(s.traceID, r.traceId);
      assert.equal(s.operationName, r.name);
      assert.equal(s.flags, 1);
      assert.deepEqual(s.logs, []);
      assert.equal(s.warnings, null);
      assert.equal(typeof s.startTime, 'number');
      assert.equal(s.startTime, r.start[0] * 1_000_000 + Math.floor(r.start[1] / 1000));
      // Jaeger's own OTLP conversion: (end - start) in ns, truncated to µs
      assert.equal(s.duration, Number((hrToNanos(r.end) - hrToNanos(r.start)) / 1000n));
      const proc: JaegerProcess | undefined = (s.traceID === TRACE_ID ? t1 : t2).processes[s.processID];
      assert.ok(proc, `process ${s.processID}`);
      assert.equal(proc.serviceName, r.resource.serviceName);
      for (const [k, v] of Object.entries(r.resource.attributes)) {
        assert.deepEqual(
          proc.tags.find((t) => t.key === k),
          { key: k, type: 'string', value: v },
        );
      }
      assert.equal(
        proc.tags.find((t) => t.key === 'service.name'),
        undefined,
      );
    }

    const server = all.find((s) => s.spanID === IDS.server);
    const client = all.find((s) => s.spanID === IDS.client);
    const hop = all.find((s) => s.spanID === IDS.hop);
    const root2 = all.find((s) => s.spanID === IDS.root2);
    // the start truncated to µs; the duration is (end - start) = 1_864_197_532 ns truncated to µs, as
    // Jaeger computes it from OTLP (not floor(end) - floor(start) = 1_864_198: 1 µs off)
    assert.equal(server?.startTime, 1_767_225_600_123_456);
    assert.equal(server?.duration, 1_864_197);
    assert.equal(hop?.startTime, 1_767_225_600_200_000);
    assert.equal(hop?.duration, 1);

    assert.deepEqual(server?.references, [{ refType: 'CHILD_OF', traceID: TRACE_ID, spanID: REMOTE_PARENT_ID }]);
    assert.deepEqual(client?.references, [{ refType: 'CHILD_OF', traceID: TRACE_ID, spanID: IDS.server }]);
    assert.deepEqual(hop?.references, [{ refType: 'CHILD_OF', traceID: TRACE_ID, spanID: IDS.client }]);
    assert.deepEqual(root2?.references, []);

    // one process per distinct resource: nginx (server + client) and strata-net in trace 1
    assert.equal(Object.keys(t1.processes).length, 2);
    assert.equal(server?.processID, client?.processID);
    assert.notEqual(server?.processID, hop?.processID);
    assert.equal(Object.keys(t2.processes).length, 1);

    // tag types
    assert.deepEqual(tag(server, 'strata.layer'), { key: 'strata.layer', type: 'string', value: 'proxy' });
    assert.deepEqual(tag(server, 'http.response.status_code'), { key: 'http.response.status_code', type: 'int64', value: 200 });
    assert.deepEqual(tag(server, 'strata.skew_ms'), { key: 'strata.skew_ms', type: 'float64', value: 0.25 });
    assert.deepEqual(tag(server, 'strata.keepalive'), { key: 'strata.keepalive', type: 'bool', value: true });
    assert.deepEqual(tag(server, 'strata.points'), { key: 'strata.points', type: 'string', value: '["accept","read","write"]' });
    assert.deepEqual(tag(server, 'span.kind'), { key: 'span.kind', type: 'string', value: 'server' });
    assert.deepEqual(tag(client, 'span.kind'), { key: 'span.kind', type: 'string', value: 'client' });
    assert.deepEqual(tag(hop, 'span.kind'), { key: 'span.kind', type: 'string', value: 'internal' });
    assert.deepEqual(tag(server, 'otel.status_code'), { key: 'otel.status_code', type: 'string', value: 'OK' });
    assert.equal(tag(server, 'error'), undefined);
    assert.equal(tag(client, 'otel.status_code'), undefined);
    assert.deepEqual(tag(root2, 'otel.status_code'), { key: 'otel.status_code', type: 'string', value: 'ERROR' });
    assert.deepEqual(tag(root2, 'error'), { key: 'error', type: 'bool', value: true });
    assert.deepEqual(tag(root2, 'otel.status_description'), {
      key: 'otel.status_description',
      type: 'string',
      value: 'upstream unavailable',
    });
    assert.deepEqual(tag(server, 'otel.scope.name'), { key: 'otel.scope.name', type: 'string', value: 'strata' });

    // spans sorted by start within a trace
    assert.deepEqual(
      t1.spans.map((s) => s.spanID),
      [IDS.server, IDS.client, IDS.hop],
    );
    // survives JSON
    assert.deepEqual(JSON.parse(JSON.stringify(out)), out);
  });

  it('agrees with the OTLP JSON of the same spans, field by field, over 2000 spans with random ns times', async () => {
    const records = randomSpanRecords(lcg(20261202), 100, 20);
    const mem = new InMemorySpanExporter();
    const sink = new SdkSpanSink(sinkOptions({ exporters: [mem], batch: { maxQueueSize: 4096, scheduledDelayMillis: 60_000 } }));
    for (const r of records) sink.emit(r);
    await sink.flush();
    const spans = mem.getFinishedSpans();
    await sink.shutdown();
    assert.equal(spans.length, records.length);
    const otlp = JSON.parse(new TextDecoder().decode(JsonTraceSerializer.serializeRequest(spans))) as OtlpJsonDoc;
    assert.equal(assertOtlpJaegerAgree(otlp, toJaegerTraces(spans)), records.length);
    // the case that was 1 µs off: the start's sub-µs part above the end's
    const odd = records.filter((r) => r.start[1] % 1000 > r.end[1] % 1000).length;
    assert.ok(odd > records.length / 4, `${odd} spans with a start's sub-µs part above the end's`);
    assert.equal(hrDurationToMicros([10, 999], [10, 1998]), 0, '999 ns: 0 µs (floor(end) - floor(start) would say 1)');
    assert.equal(hrDurationToMicros([10, 999_999_999], [11, 998]), 0, "999 ns across a second");
    assert.equal(hrDurationToMicros([10, 999_999_999], [11, 999]), 1);
    assert.equal(hrDurationToMicros([11, 0], [10, 0]), 0, 'an end before the start');
  });

  it('returns an empty document for no spans', () => {
    assert.deepEqual(toJaegerTraces([]).data, []);
  });
});
