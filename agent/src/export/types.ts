// The correlator's output: one finished span with explicit ids and wall-clock times.
// Everything downstream (OTel SDK, OTLP, files) consumes only this.
import type { Attributes, HrTime, SpanKind, SpanStatusCode } from '@opentelemetry/api';

export interface SpanResource {
  /** service.name in Jaeger: the workload (pod's app), or "strata-net" for network hops */
  serviceName: string;
  /** k8s.* and host attributes; used as the resource of the span */
  attributes: Attributes;
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
  resource: SpanResource;
}

export interface SpanSink {
  emit(span: SpanRecord): void;
  /** export everything pending */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}
