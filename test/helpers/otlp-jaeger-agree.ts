// The two files of the file exporter describe the same spans: OTLP JSON (the SDK's JsonTraceSerializer)
// and Jaeger JSON (jaeger-json.ts). This checks them against each other field by field, with Jaeger's
// own OTLP -> Jaeger rules: start truncated to µs, duration = (end - start) in ns truncated to µs,
// attributes as typed tags (arrays as JSON strings), the kind and status as tags, the resource as
// the process. Random span sets for it (ns times, every attribute type).
import assert from 'node:assert/strict';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { JaegerSpan, JaegerTag, JaegerTraces } from '../../agent/src/export/jaeger-json.ts';
import type { SpanRecord, SpanResource } from '../../agent/src/export/types.ts';

interface AnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
  arrayValue?: { values?: AnyValue[] };
}
interface KeyValue {
  key: string;
  value: AnyValue;
}

export interface OtlpJsonDoc {
  resourceSpans: {
    resource: { attributes: KeyValue[] };
    scopeSpans: {
      scope: { name: string; version?: string };
      spans: {
        traceId: string;
        spanId: string;
        parentSpanId?: string;
        name: string;
        kind: number;
        startTimeUnixNano: string | number;
        endTimeUnixNano: string | number;
        attributes?: KeyValue[];
        status?: { code?: number; message?: string };
        flags?: number;
      }[];
    }[];
  }[];
}

function plain(v: AnyValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.arrayValue !== undefined) return (v.arrayValue.values ?? []).map(plain);
  return undefined;
}

/** the Jaeger tag an OTLP attribute becomes */
function expectedTag(kv: KeyValue): JaegerTag {
  const v = kv.value;
  if (v.stringValue !== undefined) return { key: kv.key, type: 'string', value: v.stringValue };
  if (v.boolValue !== undefined) return { key: kv.key, type: 'bool', value: v.boolValue };
  if (v.intValue !== undefined) return { key: kv.key, type: 'int64', value: Number(v.intValue) };
  if (v.doubleValue !== undefined) {
    // a whole double (2.0) is an integer to JavaScript: the Jaeger side cannot tell them apart
    return { key: kv.key, type: Number.isInteger(v.doubleValue) ? 'int64' : 'float64', value: v.doubleValue };
  }
  return { key: kv.key, type: 'string', value: JSON.stringify(plain(v)) };
}

const KIND = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * Asserts that every span of `otlp` is in `jaeger` and agrees on ids, parent, name, start,
 * duration, flags, tags and process, and that `jaeger` holds no other span. Returns the span count.
 */
export function assertOtlpJaegerAgree(otlp: OtlpJsonDoc, jaeger: JaegerTraces): number {
  const jSpans = new Map<string, { span: JaegerSpan; process: { serviceName: string; tags: JaegerTag[] } | undefined }>();
  for (const t of jaeger.data) {
    for (const s of t.spans) {
      assert.equal(s.traceID, t.traceID, `span ${s.spanID} in the trace of its id`);
      jSpans.set(`${s.traceID}/${s.spanID}`, { span: s, process: t.processes[s.processID] });
    }
  }
  let n = 0;
  for (const rs of otlp.resourceSpans) {
    const resAttrs = rs.resource.attributes;
    const service = resAttrs.find((a) => a.key === 'service.name')?.value.stringValue;
    for (const ss of rs.scopeSpans) {
      for (const o of ss.spans) {
        n++;
        const where = `span ${o.spanId} (${o.name})`;
        const j = jSpans.get(`${o.traceId}/${o.spanId}`);
        assert.ok(j, `${where} in the Jaeger file`);
        jSpans.delete(`${o.traceId}/${o.spanId}`);
        const s = j.span;
        assert.equal(s.operationName, o.name, `${where}: name`);
        const parents = s.references.filter((r) => r.refType === 'CHILD_OF');
        if (o.parentSpanId) assert.deepEqual(parents, [{ refType: 'CHILD_OF', traceID: o.traceId, spanID: o.parentSpanId }], `${where}: parent`);
        else assert.deepEqual(parents, [], `${where}: no parent`);
        const start = BigInt(String(o.startTimeUnixNano));
        const end = BigInt(String(o.endTimeUnixNano));
        assert.equal(s.startTime, Number(start / 1000n), `${where}: start (ns ${start})`);
        const dur = end > start ? (end - start) / 1000n : 0n;
        assert.equal(s.duration, Number(dur), `${where}: duration (ns ${start}..${end})`);
        assert.equal(s.flags, (o.flags ?? 0) & 0xff, `${where}: flags`);

        const expected: JaegerTag[] = (o.attributes ?? []).map(expectedTag);
        expected.push({ key: 'otel.scope.name', type: 'string', value: ss.scope.name });
        if (ss.scope.version) expected.push({ key: 'otel.scope.version', type: 'string', value: ss.scope.version });
        expected.push({ key: 'span.kind', type: 'string', value: KIND[o.kind] === 'unspecified' ? 'internal' : (KIND[o.kind] as string) });
        const code = o.status?.code ?? SpanStatusCode.UNSET;
        if (code === SpanStatusCode.OK) expected.push({ key: 'otel.status_code', type: 'string', value: 'OK' });
        if (code === SpanStatusCode.ERROR) {
          expected.push({ key: 'otel.status_code', type: 'string', value: 'ERROR' }, { key: 'error', type: 'bool', value: true });
          if (o.status?.message) expected.push({ key: 'otel.status_description', type: 'string', value: o.status.message });
        }
        const got = s.tags.filter((t) => t.key !== 'w3c.tracestate');
        assert.deepEqual([...got].sort(byKey), expected.sort(byKey), `${where}: tags`);

        assert.ok(j.process, `${where}: process ${s.processID}`);
        assert.equal(j.process.serviceName, service, `${where}: service`);
        const procTags = resAttrs.filter((a) => a.key !== 'service.name').map(expectedTag);
        assert.deepEqual([...j.process.tags].sort(byKey), procTags.sort(byKey), `${where}: process tags`);
      }
    }
  }
  assert.deepEqual([...jSpans.keys()], [], 'no span only in the Jaeger file');
  return n;
}

const hex = (rand: () => number, digits: number) => {
  let s = '';
  while (s.length < digits) s += Math.floor(rand() * 0x10000).toString(16).padStart(4, '0');
  s = s.slice(0, digits);
  return /^0+$/.test(s) ? `${s.slice(0, -1)}1` : s;
};

/**
 * `traces` traces of `perTrace` spans with random ns start/end times (sub-µs parts all over the
 * range, durations from 0 to a few seconds), random parents within the trace, every attribute type.
 */
export function randomSpanRecords(rand: () => number, traces: number, perTrace: number): SpanRecord[] {
  const out: SpanRecord[] = [];
  const resources: SpanResource[] = [
    { serviceName: 'ingress-nginx', attributes: { 'k8s.namespace.name': 'ingress', 'k8s.pod.name': 'nginx-1' } },
    { serviceName: 'strata-net', attributes: { 'k8s.node.name': 'node-1' } },
    { serviceName: 'frontend', attributes: { 'k8s.namespace.name': 'default', 'k8s.pod.name': 'fe-2', 'k8s.node.name': 'node-2' } },
  ];
  const kinds = [SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT];
  const statuses = [undefined, { code: SpanStatusCode.OK }, { code: SpanStatusCode.ERROR, message: 'upstream reset' }, { code: SpanStatusCode.ERROR }];
  const T0 = 1_767_225_600;
  for (let t = 0; t < traces; t++) {
    const traceId = hex(rand, 32);
    const ids: string[] = [];
    for (let i = 0; i < perTrace; i++) {
      const spanId = hex(rand, 16);
      const sec = T0 + Math.floor(rand() * 100_000);
      const nsec = Math.floor(rand() * 1_000_000_000);
      // durations: sub-µs, µs, ms and seconds
      const scale = [1_000, 1_000_000, 1_000_000_000, 5_000_000_000][Math.floor(rand() * 4)] as number;
      const durNs = Math.floor(rand() * scale);
      const endTotal = nsec + durNs;
      const r: SpanRecord = {
        traceId,
        spanId,
        parentSpanId: ids.length && rand() < 0.8 ? ids[Math.floor(rand() * ids.length)] : undefined,
        traceFlags: 1,
        name: `op-${t}-${i}`,
        kind: kinds[Math.floor(rand() * kinds.length)] as SpanKind,
        start: [sec, nsec],
        end: [sec + Math.floor(endTotal / 1_000_000_000), endTotal % 1_000_000_000],
        attributes: {
          'url.path': `/p/${i}`,
          'http.response.status_code': 200 + Math.floor(rand() * 400),
          'strata.skew_ms': Math.round(rand() * 1000) / 7,
          'strata.keepalive': rand() < 0.5,
          'strata.points': ['accept', 'read', 'write'].slice(0, 1 + Math.floor(rand() * 3)),
          'strata.sizes': [Math.floor(rand() * 100), Math.floor(rand() * 100)],
        },
        status: statuses[Math.floor(rand() * statuses.length)],
        resource: resources[Math.floor(rand() * resources.length)] as SpanResource,
      };
      ids.push(spanId);
      out.push(r);
    }
  }
  return out;
}
