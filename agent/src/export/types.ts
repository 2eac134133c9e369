// One finished span with explicit ids and wall-clock times, as export/ builds it from the
// correlator's records (semconv.ts); the sink turns it into a ReadableSpan for the SDK's
// processors and exporters.
import type { Attributes, HrTime, SpanKind, SpanStatusCode } from '@opentelemetry/api';

export interface SpanResource {
  /** service.name in Jaeger: the workload (pod's app) for exchanges, "net:<layer> <node>" for network hops */
  serviceName: string;
  /** k8s.* and process attributes; the resource of the span */
  attributes: Attributes;
}

export interface SpanEvent {
  name: string;
  time: HrTime;
  attributes?: Attributes;
}

export interface SpanRecord {
  traceId: string; // 32 lowercase hex
  spanId: string; // 16 lowercase hex
  parentSpanId?: string; // 16 lowercase hex
  /** true when the parent lives in another process (context from a request header) */
  parentIsRemote?: boolean;
  traceFlags: number; // W3C flags, 1 = sampled
  traceState?: string;
  name: string;
  kind: SpanKind;
  start: HrTime; // wall clock
  end: HrTime;
  attributes: Attributes;
  status?: { code: SpanStatusCode; message?: string };
  events?: SpanEvent[];
  resource: SpanResource;
}

export interface SpanSink {
  emit(span: SpanRecord): void;
  /** export everything pending */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}
