// Trace context from captured request headers, through the OpenTelemetry propagators.
import { type Context, ROOT_CONTEXT, type SpanContext, type TextMapGetter, trace } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';

const getter: TextMapGetter<Map<string, string>> = {
  keys: (c) => [...c.keys()],
  get: (c, k) => c.get(k.toLowerCase()),
};

const w3c = new W3CTraceContextPropagator();

export interface Extracted {
  ctx?: SpanContext;
  /** a context header was present but could not be parsed */
  malformed: boolean;
}

export function extractContext(headers: Map<string, string>): Extracted {
  if (!headers.has('traceparent')) return { malformed: false };
  const c: Context = w3c.extract(ROOT_CONTEXT, headers, getter);
  const sc = trace.getSpanContext(c);
  return sc ? { ctx: sc, malformed: false } : { malformed: true };
}
