// ReadableSpan[] -> the JSON that Jaeger's query API returns for /api/traces, which is also what the
// Jaeger UI opens through "Upload JSON" / "JSON File".
import { type Attributes, type AttributeValue, type HrTime, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';

export type JaegerTagType = 'string' | 'bool' | 'int64' | 'float64';

export interface JaegerTag {
  key: string;
  type: JaegerTagType;
  value: string | boolean | number;
}

export interface JaegerReference {
  refType: 'CHILD_OF' | 'FOLLOWS_FROM';
  traceID: string;
  spanID: string;
}

export interface JaegerLog {
  /** µs since the epoch */
  timestamp: number;
  fields: JaegerTag[];
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: JaegerReference[];
  /** µs since the epoch */
  startTime: number;
  /** µs */
  duration: number;
  tags: JaegerTag[];
  logs: JaegerLog[];
  processID: string;
  warnings: string[] | null;
  flags: number;
}

export interface JaegerProcess {
  serviceName: string;
  tags: JaegerTag[];
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, JaegerProcess>;
  warnings: string[] | null;
}

export interface JaegerTraces {
  data: JaegerTrace[];
  total: number;
  limit: number;
  offset: number;
  errors: null;
}

const KIND_NAMES: Record<number, string> = {
  [SpanKind.INTERNAL]: 'internal',
  [SpanKind.SERVER]: 'server',
  [SpanKind.CLIENT]: 'client',
  [SpanKind.PRODUCER]: 'producer',
  [SpanKind.CONSUMER]: 'consumer',
};

/** HrTime -> integer µs since the epoch (truncated; exact for any realistic date) */
export function hrTimeToMicros(t: HrTime): number {
  return t[0] * 1_000_000 + Math.floor(t[1] / 1000);
}

/**
 * Span duration in µs the way Jaeger computes it from OTLP: end - start in ns (a Go time.Duration),
 * then truncated to µs (model.DurationAsMicroseconds). Not floor(end) - floor(start): that is 1 µs
 * more whenever the start's sub-µs part exceeds the end's. 0 for an end before the start.
 */
export function hrDurationToMicros(start: HrTime, end: HrTime): number {
  // exact in a double for any duration under ~104 days (2^53 ns)
  const ns = (end[0] - start[0]) * 1_000_000_000 + (end[1] - start[1]);
  return ns > 0 ? Math.floor(ns / 1000) : 0;
}

export function toJaegerTag(key: string, value: AttributeValue): JaegerTag {
  switch (typeof value) {
    case 'string':
      return { key, type: 'string', value };
    case 'boolean':
      return { key, type: 'bool', value };
    case 'number':
      if (!Number.isFinite(value)) return { key, type: 'string', value: String(value) };
      return Number.isInteger(value) ? { key, type: 'int64', value } : { key, type: 'float64', value };
    default:
      // arrays: as the OTel -> Jaeger translation does, a JSON string
      return { key, type: 'string', value: JSON.stringify(value) };
  }
}

export function toJaegerTags(attributes: Attributes, skip?: ReadonlySet<string>): JaegerTag[] {
  const tags: JaegerTag[] = [];
  for (const [k, v] of Object.entries(attributes)) {
    if (v === undefined || v === null || skip?.has(k)) continue;
    tags.push(toJaegerTag(k, v));
  }
  return tags;
}

const SERVICE_NAME = 'service.name';
const SKIP_SERVICE_NAME = new Set([SERVICE_NAME]);

function processOf(span: ReadableSpan): { key: string; process: JaegerProcess } {
  const attrs = span.resource.attributes;
  const sn = attrs[SERVICE_NAME];
  const serviceName = typeof sn === 'string' && sn !== '' ? sn : 'unknown_service';
  const tags = toJaegerTags(attrs, SKIP_SERVICE_NAME).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { key: JSON.stringify([serviceName, tags]), process: { serviceName, tags } };
}

export function toJaegerSpan(span: ReadableSpan, processID: string): JaegerSpan {
  const ctx = span.spanContext();
  const references: JaegerReference[] = [];
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    references.push({ refType: 'CHILD_OF', traceID: parent.traceId || ctx.traceId, spanID: parent.spanId });
  }
  for (const link of span.links) {
    references.push({ refType: 'FOLLOWS_FROM', traceID: link.context.traceId, spanID: link.context.spanId });
  }
  const tags = toJaegerTags(span.attributes);
  const scope = span.instrumentationScope;
  if (scope?.name) tags.push({ key: 'otel.scope.name', type: 'string', value: scope.name });
  if (scope?.version) tags.push({ key: 'otel.scope.version', type: 'string', value: scope.version });
  tags.push({ key: 'span.kind', type: 'string', value: KIND_NAMES[span.kind] ?? 'internal' });
  if (span.status.code === SpanStatusCode.OK) {
    tags.push({ key: 'otel.status_code', type: 'string', value: 'OK' });
  } else if (span.status.code === SpanStatusCode.ERROR) {
    tags.push({ key: 'otel.status_code', type: 'string', value: 'ERROR' });
    tags.push({ key: 'error', type: 'bool', value: true });
    if (span.status.message) tags.push({ key: 'otel.status_description', type: 'string', value: span.status.message });
  }
  if (span.droppedAttributesCount > 0) {
    tags.push({ key: 'otel.dropped_attributes_count', type: 'int64', value: span.droppedAttributesCount });
  }
  if (ctx.traceState) {
    const ts = ctx.traceState.serialize();
    if (ts) tags.push({ key: 'w3c.tracestate', type: 'string', value: ts });
  }
  const logs: JaegerLog[] = span.events.map((e) => ({
    timestamp: hrTimeToMicros(e.time),
    fields: [{ key: 'event', type: 'string', value: e.name }, ...toJaegerTags(e.attributes ?? {})],
  }));
  const startTime = hrTimeToMicros(span.startTime);
  return {
    traceID: ctx.traceId,
    spanID: ctx.spanId,
    operationName: span.name,
    references,
    startTime,
    duration: hrDurationToMicros(span.startTime, span.endTime),
    tags,
    logs,
    processID,
    warnings: null,
    flags: ctx.traceFlags,
  };
}

/**
 * Groups spans by trace id (traces in order of first appearance, spans by start time) with one
 * process per distinct resource (service name + resource attributes) in each trace.
 */
export function toJaegerTraces(spans: readonly ReadableSpan[]): JaegerTraces {
  interface Building {
    trace: JaegerTrace;
    processIds: Map<string, string>;
  }
  const traces = new Map<string, Building>();
  const processCache = new Map<object, { key: string; process: JaegerProcess }>();
  for (const span of spans) {
    const traceID = span.spanContext().traceId;
    let b = traces.get(traceID);
    if (!b) {
      b = { trace: { traceID, spans: [], processes: {}, warnings: null }, processIds: new Map() };
      traces.set(traceID, b);
    }
    let proc = processCache.get(span.resource);
    if (!proc) {
      proc = processOf(span);
      processCache.set(span.resource, proc);
    }
    let pid = b.processIds.get(proc.key);
    if (!pid) {
      pid = `p${b.processIds.size + 1}`;
      b.processIds.set(proc.key, pid);
      b.trace.processes[pid] = { serviceName: proc.process.serviceName, tags: proc.process.tags.map((t) => ({ ...t })) };
    }
    b.trace.spans.push(toJaegerSpan(span, pid));
  }
  const data = [...traces.values()].map((b) => {
    b.trace.spans.sort((x, y) => x.startTime - y.startTime);
    return b.trace;
  });
  return { data, total: 0, limit: 0, offset: 0, errors: null };
}
