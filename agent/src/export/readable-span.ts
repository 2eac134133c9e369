// A finished span handed to the SDK's span processors as it is: the ReadableSpan interface
// (sdk-trace-base 2.x) over a SpanRecord, with its ids, parent, times and resource exactly as given.
// No Tracer, no IdGenerator or Sampler: nothing is generated, nothing is re-decided.
import { type Attributes, type HrTime, type Link, type SpanContext, type SpanKind, type SpanStatus, SpanStatusCode } from '@opentelemetry/api';
import { type InstrumentationScope, TraceState, hrTimeDuration } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import type { SpanRecord } from './types.ts';

const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET }) as SpanStatus;
const NO_LINKS: Link[] = [];
const NO_EVENTS: TimedEvent[] = [];

export class RecordSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext?: SpanContext;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly links: Link[] = NO_LINKS;
  readonly events: TimedEvent[];
  readonly ended = true;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount = 0;
  readonly droppedEventsCount = 0;
  readonly droppedLinksCount = 0;
  /** estimated heap bytes this span holds (spanHeapBytes): what the export queue's byte bound counts */
  readonly heapBytes: number;
  private readonly ctx: SpanContext;

  constructor(r: SpanRecord, resource: Resource, scope: InstrumentationScope) {
    const traceState = r.traceState ? new TraceState(r.traceState) : undefined;
    this.ctx = { traceId: r.traceId, spanId: r.spanId, traceFlags: r.traceFlags, isRemote: false, traceState };
    if (r.parentSpanId !== undefined) {
      this.parentSpanContext = { traceId: r.traceId, spanId: r.parentSpanId, traceFlags: r.traceFlags, isRemote: r.parentIsRemote ?? false, traceState };
    }
    this.name = r.name;
    this.kind = r.kind;
    // the record's own arrays: the correlator never changes a time in place (correlate/clock.ts
    // replaces them), and nothing downstream writes them
    this.startTime = r.start;
    this.endTime = r.end;
    this.status = r.status ?? UNSET;
    this.attributes = r.attributes;
    this.events = r.events ?? NO_EVENTS;
    this.resource = resource;
    this.instrumentationScope = scope;
    this.heapBytes = spanHeapBytes(r);
  }

  spanContext(): SpanContext {
    return this.ctx;
  }

  get duration(): HrTime {
    return hrTimeDuration(this.startTime, this.endTime);
  }
}

// Heap bytes of a queued span, estimated (V8, 64-bit, pointer compression off as in Node): the
// span object with its contexts, times and id strings, then per attribute and event its slot and
// value. Calibrated against the heap a few thousand lab-shaped spans really hold
// (test/unit/export-sdk-sink.test.ts keeps the estimate within 0.6-1.6x of it).
const SPAN_BASE_BYTES = 480;
const ATTR_BYTES = 40;
const EVENT_BYTES = 160;

function valueBytes(v: unknown): number {
  if (typeof v === 'string') return 16 + v.length;
  if (Array.isArray(v)) {
    let n = 32;
    for (const x of v) n += 8 + valueBytes(x);
    return n;
  }
  return 0; // numbers and booleans live in the attribute's slot (or a 16-byte heap number)
}

export function spanHeapBytes(r: SpanRecord): number {
  let n = SPAN_BASE_BYTES + r.name.length;
  for (const k in r.attributes) n += ATTR_BYTES + valueBytes(r.attributes[k]);
  if (r.events) {
    for (const e of r.events) {
      n += EVENT_BYTES + e.name.length;
      if (e.attributes) for (const k in e.attributes) n += ATTR_BYTES + valueBytes(e.attributes[k]);
    }
  }
  return n;
}
