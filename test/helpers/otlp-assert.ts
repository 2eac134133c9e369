// Checks decoded OTLP spans (otlp-decode.ts) against the records they were made from.
import assert from 'node:assert/strict';
import { SpanKind } from '@opentelemetry/api';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import type { AnyValue, DecodedScopeSpans, DecodedSpan } from './otlp-decode.ts';
import { hrToNanos } from './otlp-fixture.ts';

// proto SpanKind = API SpanKind + 1
export const PROTO_KIND: Record<number, number> = {
  [SpanKind.INTERNAL]: 1,
  [SpanKind.SERVER]: 2,
  [SpanKind.CLIENT]: 3,
  [SpanKind.PRODUCER]: 4,
  [SpanKind.CONSUMER]: 5,
};

export type OtlpRow = { resource: Record<string, AnyValue>; scope: DecodedScopeSpans['scope']; span: DecodedSpan };

/** every record arrived exactly once, with its ids, parent, name, kind, times, attributes, status, resource */
export function assertOtlpRowsMatch(rows: OtlpRow[], records: SpanRecord[]): void {
  assert.equal(rows.length, records.length, 'one row per record');
  for (const r of records) {
    const found = rows.filter((x) => x.span.spanId === r.spanId);
    assert.equal(found.length, 1, `span ${r.spanId} received once`);
    const row = found[0] as OtlpRow;
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
    assert.equal(s.traceState, r.traceState ?? '');
    assert.equal(row.scope.name, 'strata');
    assert.deepEqual(row.resource, { ...r.resource.attributes, 'service.name': r.resource.serviceName });
    // Span.flags (field 16, W3C flags + IS_REMOTE) is newer than the generated schema the tests
    // decode with (otlp-proto-schema): it is not asserted here.
  }
}
