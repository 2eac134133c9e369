import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SpanKind } from '@opentelemetry/api';
import { JAEGER_FILE, OTLP_FILE, TraceFileExporter } from '../../agent/src/export/file-exporter.ts';
import type { JaegerTraces } from '../../agent/src/export/jaeger-json.ts';
import { SdkSpanSink } from '../../agent/src/export/sdk-sink.ts';
import { sinkOptions } from '../helpers/options.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { hrToNanos, spanTree, TRACE_ID, waitFor } from '../helpers/otlp-fixture.ts';
import { assertOtlpJaegerAgree, type OtlpJsonDoc, randomSpanRecords } from '../helpers/otlp-jaeger-agree.ts';
import { lcg } from '../helpers/rng.ts';

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;

interface OtlpJson {
  resourceSpans: {
    resource: { attributes: { key: string; value: Record<string, unknown> }[] };
    scopeSpans: {
      scope: { name: string; version?: string };
      spans: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        traceState?: string;
        name: string;
        kind: number;
        startTimeUnixNano: string;
        endTimeUnixNano: string;
        attributes: { key: string; value: Record<string, unknown> }[];
        status: { code: number; message?: string };
        flags: number;
      }[];
    }[];
  }[];
}

describe('TraceFileExporter', () => {
  const dirs: string[] = [];
  const newDir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'strata-export-'));
    dirs.push(d);
    return join(d, 'nested', 'out'); // created by the exporter
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('writes otlp-traces.json and jaeger-traces.json holding the same spans', async () => {
    const dir = await newDir();
    const file = new TraceFileExporter({ dir, writeDelayMillis: 60_000 });
    const sink = new SdkSpanSink(sinkOptions({ exporters: [file], batch: { scheduledDelayMillis: 60_000 } }));
    const records = spanTree();
    for (const r of records) sink.emit(r);
    await sink.flush(); // BSP -> exporter.export -> exporter.forceFlush -> files

    const names = (await readdir(dir)).sort();
    assert.deepEqual(names, [JAEGER_FILE, OTLP_FILE], 'both files, no temporary leftovers');
    const otlp = JSON.parse(await readFile(join(dir, OTLP_FILE), 'utf8')) as OtlpJson;
    const jaeger = JSON.parse(await readFile(join(dir, JAEGER_FILE), 'utf8')) as JaegerTraces;

    // OTLP JSON shape as the serializer emits it: hex ids, ns times as strings, numeric kinds
    assert.ok(Array.isArray(otlp.resourceSpans));
    const otlpSpans = otlp.resourceSpans.flatMap((rs) =>
      rs.scopeSpans.flatMap((ss) => ss.spans.map((span) => ({ rs, ss, span }))),
    );
    assert.equal(otlpSpans.length, records.length);
    for (const { rs, ss, span } of otlpSpans) {
      const r = records.find((x) => x.spanId === span.spanId) as SpanRecord;
      assert.ok(r, `record for ${span.spanId}`);
      assert.match(span.traceId, HEX32);
      assert.match(span.spanId, HEX16);
      assert.equal(span.traceId, r.traceId);
      if (r.parentSpanId) assert.equal(span.parentSpanId, r.parentSpanId);
      else assert.equal(span.parentSpanId, undefined);
      assert.equal(span.name, r.name);
      assert.equal(span.kind, r.kind + 1);
      assert.equal(span.startTimeUnixNano, hrToNanos(r.start).toString());
      assert.equal(span.endTimeUnixNano, hrToNanos(r.end).toString());
      assert.equal(typeof span.flags, 'number');
      assert.equal(ss.scope.name, 'strata');
      const svc = rs.resource.attributes.find((a) => a.key === 'service.name');
      assert.deepEqual(svc?.value, { stringValue: r.resource.serviceName });
      const code = span.attributes.find((a) => a.key === 'http.response.status_code');
      if (code) assert.deepEqual(code.value, { intValue: r.attributes['http.response.status_code'] });
    }
    const serverLayer = otlpSpans
      .find((x) => x.span.kind === SpanKind.SERVER + 1 && x.span.traceId === TRACE_ID)
      ?.span.attributes.find((a) => a.key === 'strata.layer');
    assert.deepEqual(serverLayer?.value, { stringValue: 'proxy' });

    // same span ids in both files
    const otlpIds = otlpSpans.map((x) => x.span.spanId).sort();
    const jaegerIds = jaeger.data.flatMap((t) => t.spans.map((s) => s.spanID)).sort();
    assert.deepEqual(jaegerIds, otlpIds);
    assert.deepEqual(otlpIds, records.map((r) => r.spanId).sort());
    assert.equal(jaeger.data.length, 2);
    for (const t of jaeger.data) {
      for (const s of t.spans) assert.ok(t.processes[s.processID], 'process present');
    }

    assert.equal(file.stats().writes, 1);
    assert.equal(file.stats().spansHeld, 4);
    await sink.shutdown();
  });

  it('the two files agree span by span (ids, parent, name, start, duration, tags, process) over 1500 random spans', async () => {
    const dir = await newDir();
    const file = new TraceFileExporter({ dir, writeDelayMillis: 60_000 });
    const sink = new SdkSpanSink(sinkOptions({ exporters: [file], batch: { maxQueueSize: 4096, scheduledDelayMillis: 60_000 } }));
    const records = randomSpanRecords(lcg(7), 75, 20);
    for (const r of records) sink.emit(r);
    await sink.flush();
    const otlp = JSON.parse(await readFile(join(dir, OTLP_FILE), 'utf8')) as OtlpJsonDoc;
    const jaeger = JSON.parse(await readFile(join(dir, JAEGER_FILE), 'utf8')) as JaegerTraces;
    assert.equal(assertOtlpJaegerAgree(otlp, jaeger), records.length);
    await sink.shutdown();
  });

  it('writes after an export without a flush (debounced) and keeps the trace count bounded', async () => {
    const dir = await newDir();
    const file = new TraceFileExporter({ dir, maxTraces: 2, writeDelayMillis: 20 });
    const sink = new SdkSpanSink(sinkOptions({ exporters: [file], batch: { scheduledDelayMillis: 10 } }));
    const base = spanTree()[3] as SpanRecord;
    const traceOf = (i: number) => (0xabc0 + i).toString(16).padStart(32, '0');
    for (let i = 0; i < 3; i++) {
      sink.emit({ ...base, traceId: traceOf(i), spanId: (0x10 + i).toString(16).padStart(16, '0') });
      sink.emit({ ...base, traceId: traceOf(i), spanId: (0x20 + i).toString(16).padStart(16, '0'), name: 'second' });
    }
    // no flush: the batch processor's timer and the exporter's debounce write the files
    const jaeger = await waitFor(async () => {
      if (!existsSync(join(dir, JAEGER_FILE))) return undefined;
      const j = JSON.parse(await readFile(join(dir, JAEGER_FILE), 'utf8')) as JaegerTraces;
      return j.data.length === 2 ? j : undefined;
    }, 'debounced write');
    assert.deepEqual(jaeger.data.map((t) => t.traceID).sort(), [traceOf(1), traceOf(2)]);
    const st = file.stats();
    assert.equal(st.tracesHeld, 2);
    assert.equal(st.tracesDropped, 1);
    assert.equal(st.spansDropped, 2);
    const otlp = JSON.parse(await readFile(join(dir, OTLP_FILE), 'utf8')) as OtlpJson;
    assert.equal(otlp.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans)).length, 4);
    await sink.shutdown();
    // after shutdown, exports are refused
    let code = -1;
    file.export([], (r) => {
      code = r.code;
    });
    assert.equal(code, 1);
  });

  it('counts a failed write instead of throwing', async () => {
    const d = await mkdtemp(join(tmpdir(), 'strata-export-'));
    dirs.push(d);
    const blocker = join(d, 'file');
    await writeFile(blocker, 'x'); // a file where a directory is needed
    const lines: string[] = [];
    const file = new TraceFileExporter({ dir: join(blocker, 'sub'), writeDelayMillis: 60_000, log: (l) => lines.push(l) });
    await file.forceFlush();
    await file.forceFlush();
    assert.equal(file.stats().writeFailures, 2);
    assert.equal(lines.length, 1);
    await file.shutdown();
  });
});
