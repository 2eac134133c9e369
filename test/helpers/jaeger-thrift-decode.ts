// Decodes the body of POST /api/traces (Jaeger thrift, binary protocol, one `Batch`) with a real
// thrift implementation: thriftrw and the jaeger-idl jaeger.thrift that jaeger-client ships (both
// reached through @opentelemetry/exporter-jaeger's own dependency tree). No hand-written parsing.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);

interface ThriftRW {
  readFrom(buffer: Buffer, offset: number): { err: Error | null; offset: number; value: unknown };
}
interface ThriftModel {
  Batch: { rw: ThriftRW };
}

let cached: { thrift: ThriftModel; idl: string; thriftrw: string } | undefined;

/** thriftrw + jaeger.thrift from the jaeger-client that @opentelemetry/exporter-jaeger depends on */
export function loadJaegerThrift(): { thrift: ThriftModel; idl: string; thriftrw: string } {
  if (cached) return cached;
  const fromExporter = createRequire(require.resolve('@opentelemetry/exporter-jaeger'));
  const clientPkg = fromExporter.resolve('jaeger-client/package.json');
  const fromClient = createRequire(clientPkg);
  const idl = join(dirname(clientPkg), 'dist/src/jaeger-idl/thrift/jaeger.thrift');
  const thriftrw = fromClient.resolve('thriftrw');
  const { Thrift } = fromClient('thriftrw') as { Thrift: new (o: { source: string; allowOptionalArguments: boolean }) => ThriftModel };
  cached = { thrift: new Thrift({ source: readFileSync(idl, 'ascii'), allowOptionalArguments: true }), idl, thriftrw };
  return cached;
}

export type TagValue = string | number | boolean | bigint | Buffer;

export interface DecodedTag {
  key: string;
  /** STRING, DOUBLE, BOOL, LONG or BINARY */
  type: string;
  value: TagValue;
}

export interface DecodedJaegerSpan {
  traceIdHigh: string; // 16 hex
  traceIdLow: string; // 16 hex
  spanId: string; // 16 hex
  parentSpanId: string; // 16 hex, all zeros for none
  operationName: string;
  references: { refType: string; traceIdHigh: string; traceIdLow: string; spanId: string }[];
  flags: number;
  startTime: bigint; // µs since the epoch
  duration: bigint; // µs
  tags: DecodedTag[];
  logs: { timestamp: bigint; fields: DecodedTag[] }[];
}

export interface DecodedBatch {
  process: { serviceName: string; tags: DecodedTag[] };
  spans: DecodedJaegerSpan[];
}

type Obj = Record<string, unknown>;

function i64(b: unknown): bigint {
  if (!Buffer.isBuffer(b) || b.length !== 8) throw new Error(`i64: expected an 8-byte buffer, got ${String(b)}`);
  return b.readBigInt64BE(0);
}

function hex64(b: unknown): string {
  if (!Buffer.isBuffer(b) || b.length !== 8) throw new Error(`i64: expected an 8-byte buffer, got ${String(b)}`);
  return b.toString('hex');
}

function tag(t: Obj): DecodedTag {
  const type = String(t.vType);
  const value: TagValue =
    type === 'STRING'
      ? (t.vStr as string)
      : type === 'DOUBLE'
        ? (t.vDouble as number)
        : type === 'BOOL'
          ? (t.vBool as boolean)
          : type === 'LONG'
            ? i64(t.vLong)
            : (t.vBinary as Buffer);
  return { key: t.key as string, type, value };
}

const tags = (list: unknown): DecodedTag[] => ((list as Obj[] | null | undefined) ?? []).map(tag);

/** Decodes a whole body; throws on malformed input or trailing bytes. */
export function decodeJaegerBatch(body: Buffer): DecodedBatch {
  const r = loadJaegerThrift().thrift.Batch.rw.readFrom(body, 0);
  if (r.err) throw r.err;
  if (r.offset !== body.length) throw new Error(`${body.length - r.offset} bytes after the Batch`);
  const batch = r.value as Obj;
  const process = batch.process as Obj;
  return {
    process: { serviceName: process.serviceName as string, tags: tags(process.tags) },
    spans: ((batch.spans as Obj[]) ?? []).map((s) => ({
      traceIdHigh: hex64(s.traceIdHigh),
      traceIdLow: hex64(s.traceIdLow),
      spanId: hex64(s.spanId),
      parentSpanId: hex64(s.parentSpanId),
      operationName: s.operationName as string,
      references: ((s.references as Obj[] | null) ?? []).map((ref) => ({
        refType: String(ref.refType),
        traceIdHigh: hex64(ref.traceIdHigh),
        traceIdLow: hex64(ref.traceIdLow),
        spanId: hex64(ref.spanId),
      })),
      flags: s.flags as number,
      startTime: i64(s.startTime),
      duration: i64(s.duration),
      tags: tags(s.tags),
      logs: ((s.logs as Obj[] | null) ?? []).map((l) => ({ timestamp: i64(l.timestamp), fields: tags(l.fields) })),
    })),
  };
}

/** tags as key -> value (the last one wins) */
export function tagMap(list: DecodedTag[]): Record<string, TagValue> {
  return Object.fromEntries(list.map((t) => [t.key, t.value]));
}
