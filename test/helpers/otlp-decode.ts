// Decodes OTLP/HTTP protobuf bodies with the real OTLP schema: the protobufjs code that the
// OpenTelemetry project generated from opentelemetry-proto, as shipped in
// @opentelemetry/otlp-transformer 0.52 (devDependency alias `otlp-proto-schema`; later versions
// hand-write their encoder and no longer ship it). Independent of the exporter under test.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

interface StaticType {
  decode(b: Uint8Array): unknown;
  toObject(m: unknown, o: Record<string, unknown>): Record<string, unknown>;
}

export function loadOtlpSchema(): { type: StaticType; where: string } {
  const where = 'otlp-proto-schema/build/src/generated/root.js';
  const root = require(where) as { opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: StaticType } } } } } };
  return { type: root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest, where };
}

export type AnyValue = string | boolean | number | bigint | Uint8Array | null | AnyValue[] | { [k: string]: AnyValue };

export interface DecodedSpan {
  traceId: string; // hex
  spanId: string; // hex
  parentSpanId: string; // hex, '' for none
  traceState: string;
  name: string;
  kind: number; // proto SpanKind: 1 internal, 2 server, 3 client
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, AnyValue>;
  status: { code: number; message: string };
  flags: number;
}

export interface DecodedScopeSpans {
  scope: { name: string; version: string };
  spans: DecodedSpan[];
}

export interface DecodedResourceSpans {
  resource: Record<string, AnyValue>;
  scopeSpans: DecodedScopeSpans[];
}

type Obj = Record<string, unknown>;

function hex(b: unknown): string {
  return b instanceof Uint8Array ? Buffer.from(b).toString('hex') : '';
}

function anyValue(v: Obj | undefined): AnyValue {
  if (!v) return null;
  if ('stringValue' in v) return v.stringValue as string;
  if ('boolValue' in v) return v.boolValue as boolean;
  if ('intValue' in v) {
    const n = BigInt(v.intValue as string);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if ('doubleValue' in v) return v.doubleValue as number;
  if ('bytesValue' in v) return v.bytesValue as Uint8Array;
  if ('arrayValue' in v) return (((v.arrayValue as Obj).values as Obj[]) ?? []).map(anyValue);
  if ('kvlistValue' in v) return keyValues((v.kvlistValue as Obj).values as Obj[]);
  return null;
}

function keyValues(list: Obj[] | undefined): Record<string, AnyValue> {
  const out: Record<string, AnyValue> = {};
  for (const kv of list ?? []) out[kv.key as string] = anyValue(kv.value as Obj | undefined);
  return out;
}

/** Decodes an ExportTraceServiceRequest (the body of POST /v1/traces). */
export function decodeExportTraceServiceRequest(body: Uint8Array): DecodedResourceSpans[] {
  const T = loadOtlpSchema().type;
  const msg = T.toObject(T.decode(body), { longs: String, enums: Number, defaults: false });
  return ((msg.resourceSpans as Obj[]) ?? []).map((rs) => ({
    resource: keyValues((rs.resource as Obj | undefined)?.attributes as Obj[]),
    scopeSpans: ((rs.scopeSpans as Obj[]) ?? []).map((ss) => {
      const scope = (ss.scope as Obj | undefined) ?? {};
      return {
        scope: { name: (scope.name as string) ?? '', version: (scope.version as string) ?? '' },
        spans: ((ss.spans as Obj[]) ?? []).map((s) => {
          const status = (s.status as Obj | undefined) ?? {};
          return {
            traceId: hex(s.traceId),
            spanId: hex(s.spanId),
            parentSpanId: hex(s.parentSpanId),
            traceState: (s.traceState as string) ?? '',
            name: (s.name as string) ?? '',
            kind: (s.kind as number) ?? 0,
            startTimeUnixNano: BigInt((s.startTimeUnixNano as string) ?? '0'),
            endTimeUnixNano: BigInt((s.endTimeUnixNano as string) ?? '0'),
            attributes: keyValues(s.attributes as Obj[]),
            status: { code: (status.code as number) ?? 0, message: (status.message as string) ?? '' },
            flags: (s.flags as number) ?? 0,
          };
        }),
      };
    }),
  }));
}

/** Flattens decoded requests to (resource, scope, span) rows. */
export function flattenSpans(
  requests: DecodedResourceSpans[],
): { resource: Record<string, AnyValue>; scope: DecodedScopeSpans['scope']; span: DecodedSpan }[] {
  const out: { resource: Record<string, AnyValue>; scope: DecodedScopeSpans['scope']; span: DecodedSpan }[] = [];
  for (const rs of requests) {
    for (const ss of rs.scopeSpans) {
      for (const span of ss.spans) out.push({ resource: rs.resource, scope: ss.scope, span });
    }
  }
  return out;
}
