// Trace context from captured request headers, through the OpenTelemetry propagators:
// W3C traceparent/tracestate first, then b3 (single header, then multi), then uber-trace-id.
import { ROOT_CONTEXT, type SpanContext, type TextMapGetter, type TextMapPropagator, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { B3InjectEncoding, B3Propagator } from '@opentelemetry/propagator-b3';
import { JaegerPropagator } from '@opentelemetry/propagator-jaeger';

const getter: TextMapGetter<Map<string, string>> = {
  keys: (c) => [...c.keys()],
  get: (c, k) => c.get(k.toLowerCase()),
};

interface Format {
  name: 'w3c' | 'b3' | 'jaeger';
  /** headers whose presence means the request claims this format */
  headers: string[];
  propagator: TextMapPropagator;
}

const FORMATS: Format[] = [
  { name: 'w3c', headers: ['traceparent'], propagator: new W3CTraceContextPropagator() },
  { name: 'b3', headers: ['b3', 'x-b3-traceid'], propagator: new B3Propagator({ injectEncoding: B3InjectEncoding.MULTI_HEADER }) },
  { name: 'jaeger', headers: ['uber-trace-id'], propagator: new JaegerPropagator() },
];

export interface Extracted {
  ctx?: SpanContext;
  format?: Format['name'];
  /** context headers were present but none could be parsed */
  malformed: boolean;
}

export function extractContext(headers: Map<string, string>): Extracted {
  let claimed = false;
  for (const f of FORMATS) {
    if (!f.headers.some((h) => headers.has(h))) continue;
    claimed = true;
    const sc = trace.getSpanContext(f.propagator.extract(ROOT_CONTEXT, headers, getter));
    if (sc && trace.isSpanContextValid(sc)) return { ctx: sc, format: f.name, malformed: false };
  }
  return { malformed: claimed };
}

/** trace id a request claims (any format), for in-process matching; undefined if none */
export function claimedTraceId(headers: Map<string, string>): string | undefined {
  return extractContext(headers).ctx?.traceId;
}

/** does the request carry a valid trace context (any format)? */
export function hasContext(headers: Map<string, string>): boolean {
  return extractContext(headers).ctx !== undefined;
}
