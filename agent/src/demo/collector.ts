// The demo's collector: an OTLP/HTTP traces receiver on this machine's loopback that every node's
// agent and the instrumented app pods (through the cluster lab's relay) export to. It decodes each
// ExportTraceServiceRequest back into ReadableSpans, keeps them for the waterfall, and hands them to
// the same exporters the agent would build from the configuration: the files (OTLP JSON + Jaeger
// JSON, TraceFileExporter) and, when OTEL_EXPORTER_OTLP_ENDPOINT or STRATA_EXPORT_* name one, a
// collector of the user's. One writer for the files, whatever the number of agents.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { type Attributes, type AttributeValue, type HrTime, type Link, type SpanContext, SpanKind, type SpanStatus } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, hrTimeDuration, type InstrumentationScope, TraceState } from '@opentelemetry/core';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter, TimedEvent } from '@opentelemetry/sdk-trace-base';

/** the path OTLP/HTTP exporters post traces to */
export const OTLP_TRACES_PATH = '/v1/traces';

export interface CollectorOptions {
  /** where decoded spans go: the file exporter and the user's exporters */
  exporters: SpanExporter[];
  /** spans kept in memory for the waterfall (beyond: not kept, counted; still exported) */
  maxSpans?: number;
  /** largest request body accepted (413 beyond, counted) */
  maxBodyBytes?: number;
}

export interface CollectorStats {
  requests: number;
  spans: number;
  /** requests refused, by why: too large, not decodable, not POST /v1/traces */
  rejected: { too_large: number; undecodable: number; not_found: number };
  /** spans exported but not kept for the waterfall (maxSpans) */
  notKept: number;
  /** export calls that failed, per exporter (its constructor name) */
  exportFailures: Record<string, number>;
}

interface StaticType {
  decode(b: Uint8Array): unknown;
  toObject(m: unknown, o: Record<string, unknown>): Record<string, unknown>;
}

type Obj = Record<string, unknown>;

let schema: StaticType | undefined;
/**
 * The ExportTraceServiceRequest protobuf type, as the OpenTelemetry project generated it from
 * opentelemetry-proto (protobufjs static code shipped in @opentelemetry/otlp-transformer 0.52, the
 * devDependency alias otlp-proto-schema: later versions encode by hand and ship no decoder).
 */
function requestType(): StaticType {
  if (!schema) {
    const require = createRequire(import.meta.url);
    const root = require('otlp-proto-schema/build/src/generated/root.js') as { opentelemetry: { proto: { collector: { trace: { v1: { ExportTraceServiceRequest: StaticType } } } } } };
    schema = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
  }
  return schema;
}

const hex = (b: unknown): string => (b instanceof Uint8Array ? Buffer.from(b).toString('hex') : '');

function attributeValue(v: Obj | undefined): AttributeValue | undefined {
  if (!v) return undefined;
  if ('stringValue' in v) return v.stringValue as string;
  if ('boolValue' in v) return v.boolValue as boolean;
  if ('intValue' in v) return Number(v.intValue as string);
  if ('doubleValue' in v) return v.doubleValue as number;
  if ('bytesValue' in v) return hex(v.bytesValue);
  if ('arrayValue' in v) {
    const xs = (((v.arrayValue as Obj).values as Obj[]) ?? []).map(attributeValue);
    if (xs.every((x) => typeof x === 'string')) return xs as string[];
    if (xs.every((x) => typeof x === 'number')) return xs as number[];
    if (xs.every((x) => typeof x === 'boolean')) return xs as boolean[];
    return JSON.stringify(xs);
  }
  if ('kvlistValue' in v) return JSON.stringify(attributes((v.kvlistValue as Obj).values as Obj[]));
  return undefined;
}

function attributes(list: Obj[] | undefined): Attributes {
  const out: Attributes = {};
  for (const kv of list ?? []) {
    const v = attributeValue(kv.value as Obj | undefined);
    if (v !== undefined) out[kv.key as string] = v;
  }
  return out;
}

/** unix ns (decimal string) -> HrTime */
function hrTime(ns: unknown): HrTime {
  const n = BigInt(typeof ns === 'string' || typeof ns === 'number' ? ns : 0);
  return [Number(n / 1_000_000_000n), Number(n % 1_000_000_000n)];
}

/** proto Span.SpanKind (0 unspecified, 1 internal, 2 server, ...) -> the API's (0 internal, 1 server, ...) */
const apiKind = (k: unknown): SpanKind => (typeof k === 'number' && k >= 2 && k <= 5 ? ((k - 1) as SpanKind) : SpanKind.INTERNAL);

/** a span as received: ids, parent, times, resource and scope exactly as the sender gave them */
class ReceivedSpan implements ReadableSpan {
  readonly name: string;
  readonly kind: SpanKind;
  readonly parentSpanContext?: SpanContext;
  readonly startTime: HrTime;
  readonly endTime: HrTime;
  readonly status: SpanStatus;
  readonly attributes: Attributes;
  readonly links: Link[];
  readonly events: TimedEvent[];
  readonly ended = true;
  readonly resource: Resource;
  readonly instrumentationScope: InstrumentationScope;
  readonly droppedAttributesCount: number;
  readonly droppedEventsCount: number;
  readonly droppedLinksCount: number;
  private readonly ctx: SpanContext;

  constructor(s: Obj, flags: number | undefined, resource: Resource, scope: InstrumentationScope) {
    const traceState = typeof s.traceState === 'string' && s.traceState ? new TraceState(s.traceState) : undefined;
    const traceId = hex(s.traceId);
    // an exporter that does not fill Span.flags (older SDKs) sent a sampled span: it was exported
    const traceFlags = flags === undefined ? 1 : flags & 0xff;
    this.ctx = { traceId, spanId: hex(s.spanId), traceFlags, isRemote: false, traceState };
    const parent = hex(s.parentSpanId);
    // flags bit 8: whether the parent is known to be remote (bit 9)
    if (parent) this.parentSpanContext = { traceId, spanId: parent, traceFlags, isRemote: ((flags ?? 0) & 0x300) === 0x300, traceState };
    this.name = typeof s.name === 'string' ? s.name : '';
    this.kind = apiKind(s.kind);
    this.startTime = hrTime(s.startTimeUnixNano);
    this.endTime = hrTime(s.endTimeUnixNano);
    const st = (s.status as Obj | undefined) ?? {};
    this.status = { code: typeof st.code === 'number' ? st.code : 0, ...(typeof st.message === 'string' && st.message ? { message: st.message } : {}) };
    this.attributes = attributes(s.attributes as Obj[]);
    this.events = ((s.events as Obj[]) ?? []).map((e) => ({
      time: hrTime(e.timeUnixNano), name: typeof e.name === 'string' ? e.name : '', attributes: attributes(e.attributes as Obj[]),
      droppedAttributesCount: typeof e.droppedAttributesCount === 'number' ? e.droppedAttributesCount : 0,
    }));
    this.links = ((s.links as Obj[]) ?? []).map((l) => ({
      context: { traceId: hex(l.traceId), spanId: hex(l.spanId), traceFlags: typeof l.flags === 'number' ? l.flags & 0xff : 1 },
      attributes: attributes(l.attributes as Obj[]),
    }));
    this.droppedAttributesCount = typeof s.droppedAttributesCount === 'number' ? s.droppedAttributesCount : 0;
    this.droppedEventsCount = typeof s.droppedEventsCount === 'number' ? s.droppedEventsCount : 0;
    this.droppedLinksCount = typeof s.droppedLinksCount === 'number' ? s.droppedLinksCount : 0;
    this.resource = resource;
    this.instrumentationScope = scope;
  }

  spanContext(): SpanContext {
    return this.ctx;
  }

  get duration(): HrTime {
    return hrTimeDuration(this.startTime, this.endTime);
  }
}

/** a varint at i: [value, next index] (values past 2^53 lose precision: only lengths and tags are used) */
function varint(b: Uint8Array, i: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (;;) {
    if (i >= b.length) throw new Error('truncated varint');
    const x = b[i++] as number;
    v += (x & 0x7f) * mul;
    if (x < 0x80) return [v, i];
    mul *= 128;
  }
}

/** the fields of the message in b[start, end): [field number, wire type, value start, value end] */
function* wireFields(b: Uint8Array, start: number, end: number): Generator<[number, number, number, number]> {
  let i = start;
  while (i < end) {
    const [tag, j] = varint(b, i);
    const wt = tag % 8;
    const f = Math.floor(tag / 8);
    if (wt === 0) {
      const [, k] = varint(b, j);
      yield [f, wt, j, k];
      i = k;
    } else if (wt === 1 || wt === 5) {
      i = j + (wt === 1 ? 8 : 4);
      yield [f, wt, j, i];
    } else if (wt === 2) {
      const [len, k] = varint(b, j);
      i = k + len;
      yield [f, wt, k, i];
    } else {
      throw new Error(`wire type ${wt} not expected in OTLP`);
    }
    if (i > end) throw new Error('truncated field');
  }
}

/**
 * Span.flags (field 16, fixed32: W3C trace flags, and whether the parent is remote) of every span in
 * wire order: the generated schema predates the field and drops it, so it is read from the wire.
 */
function spanFlags(b: Uint8Array): (number | undefined)[] {
  const out: (number | undefined)[] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const sub = (f: number, from: [number, number], fn: (s: number, e: number) => void) => {
    for (const [g, wt, s, e] of wireFields(b, from[0], from[1])) if (g === f && wt === 2) fn(s, e);
  };
  // ExportTraceServiceRequest.resource_spans (1) -> ResourceSpans.scope_spans (2) -> ScopeSpans.spans (2)
  sub(1, [0, b.length], (rs, rse) => sub(2, [rs, rse], (ss, sse) => sub(2, [ss, sse], (sp, spe) => {
    let flags: number | undefined;
    for (const [g, wt, s] of wireFields(b, sp, spe)) if (g === 16 && wt === 5) flags = dv.getUint32(s, true);
    out.push(flags);
  })));
  return out;
}

/** Decodes the body of POST /v1/traces (protobuf) into ReadableSpans. Throws on a body that is not one. */
export function decodeTraces(body: Uint8Array): ReadableSpan[] {
  const T = requestType();
  const msg = T.toObject(T.decode(body), { longs: String, enums: Number, defaults: false });
  const flags = spanFlags(body);
  const out: ReadableSpan[] = [];
  for (const rs of (msg.resourceSpans as Obj[]) ?? []) {
    const resource = resourceFromAttributes(attributes((rs.resource as Obj | undefined)?.attributes as Obj[]));
    for (const ss of (rs.scopeSpans as Obj[]) ?? []) {
      const sc = (ss.scope as Obj | undefined) ?? {};
      const scope: InstrumentationScope = { name: typeof sc.name === 'string' ? sc.name : '', ...(typeof sc.version === 'string' && sc.version ? { version: sc.version } : {}) };
      for (const s of (ss.spans as Obj[]) ?? []) out.push(new ReceivedSpan(s, flags[out.length], resource, scope));
    }
  }
  return out;
}

export class DemoCollector {
  private readonly server: Server;
  private readonly exporters: SpanExporter[];
  private readonly chains: Promise<void>[];
  private readonly maxSpans: number;
  private readonly maxBodyBytes: number;
  private readonly kept: ReadableSpan[] = [];
  private readonly s: CollectorStats = { requests: 0, spans: 0, rejected: { too_large: 0, undecodable: 0, not_found: 0 }, notKept: 0, exportFailures: {} };
  /** called after every accepted request (progress, waits) */
  onSpans?: (spans: ReadableSpan[]) => void;

  constructor(o: CollectorOptions) {
    this.exporters = o.exporters;
    this.chains = o.exporters.map(() => Promise.resolve());
    this.maxSpans = o.maxSpans ?? 200_000;
    this.maxBodyBytes = o.maxBodyBytes ?? 16 * 1024 * 1024;
    this.server = createServer((req, res) => this.handle(req, res));
  }

  /** Listens on 127.0.0.1:port (0: any free port); resolves with the port. */
  async start(port = 0): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const answer = (code: number, body = '') => {
      res.writeHead(code, { 'content-type': code === 200 ? 'application/x-protobuf' : 'text/plain' }).end(body);
    };
    if (req.method !== 'POST' || (req.url ?? '').split('?')[0] !== OTLP_TRACES_PATH) {
      this.s.rejected.not_found++;
      req.resume();
      answer(404, `POST ${OTLP_TRACES_PATH} only`);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > this.maxBodyBytes) {
        if (!refused) {
          refused = true;
          this.s.rejected.too_large++;
          answer(413, `body larger than ${this.maxBodyBytes} bytes`);
        }
        return;
      }
      chunks.push(b);
    });
    req.on('end', () => {
      if (refused) return;
      let spans: ReadableSpan[];
      try {
        spans = decodeTraces(Buffer.concat(chunks));
      } catch (e) {
        this.s.rejected.undecodable++;
        answer(400, `not an OTLP ExportTraceServiceRequest (protobuf): ${(e as Error).message}`);
        return;
      }
      this.accept(spans);
      answer(200); // an empty ExportTraceServiceResponse
    });
  }

  /** Keeps and exports spans (also used for spans that did not come over HTTP). */
  accept(spans: ReadableSpan[]): void {
    this.s.requests++;
    this.s.spans += spans.length;
    const room = Math.max(0, this.maxSpans - this.kept.length);
    this.kept.push(...spans.slice(0, room));
    this.s.notKept += Math.max(0, spans.length - room);
    this.exporters.forEach((e, i) => {
      this.chains[i] = (this.chains[i] as Promise<void>).then(() => new Promise<void>((resolve) => {
        e.export(spans, (r: ExportResult) => {
          if (r.code !== ExportResultCode.SUCCESS) {
            const name = e.constructor.name;
            this.s.exportFailures[name] = (this.s.exportFailures[name] ?? 0) + 1;
          }
          resolve();
        });
      }));
    });
    this.onSpans?.(spans);
  }

  /** every span received so far (at most maxSpans) */
  spans(): readonly ReadableSpan[] {
    return this.kept;
  }

  stats(): CollectorStats {
    return structuredClone(this.s);
  }

  /** Stops listening, waits for the exports in flight, flushes and shuts the exporters down (files written). */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    await Promise.all(this.chains);
    await Promise.all(this.exporters.map((e) => e.shutdown().catch(() => undefined)));
  }
}
