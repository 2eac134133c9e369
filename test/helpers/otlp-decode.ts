// Decodes OTLP/protobuf request bodies with the real OTLP schema, independently of the encoder under
// test (@opentelemetry/otlp-transformer writes protobuf by hand and ships no schema).
//
// Where the schema comes from: the opentelemetry-proto Python wheel that the machine image keeps in
// its local package mirror (/opt/pypi/files/opentelemetry_proto-*.whl). Its *_pb2.py modules embed
// the protoc-compiled FileDescriptorProto of each .proto file as a bytes literal
// (AddSerializedFile(b'...')). We read those straight out of the wheel (a zip), decode them with
// protobufjs' descriptor extension, and build a protobufjs Root from the descriptor set.
// Override the location with STRATA_OTLP_PROTO_WHEEL=/path/to/opentelemetry_proto-X.whl, or with
// STRATA_OTLP_PROTO_DIR=<dir holding opentelemetry/proto/...> (e.g. a Python site-packages dir).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import protobuf from 'protobufjs';
import descriptor, { type IFileDescriptorProto } from 'protobufjs/ext/descriptor.js';

const PROTO_FILES = [
  'common/v1/common',
  'resource/v1/resource',
  'trace/v1/trace',
  'collector/trace/v1/trace_service',
] as const;

const WHEEL_DIRS = ['/opt/pypi/files'];

type FileReader = (path: string) => Buffer | undefined;

/** Minimal zip reader (stored + deflate), enough for a wheel. */
function zipReader(zip: Buffer): FileReader {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('otlp-decode: not a zip file');
  const count = zip.readUInt16LE(eocd + 10);
  let off = zip.readUInt32LE(eocd + 16);
  const entries = new Map<string, { method: number; size: number; local: number }>();
  for (let k = 0; k < count; k++) {
    if (zip.readUInt32LE(off) !== 0x02014b50) throw new Error('otlp-decode: bad zip central directory');
    const method = zip.readUInt16LE(off + 10);
    const size = zip.readUInt32LE(off + 20);
    const nameLen = zip.readUInt16LE(off + 28);
    const extraLen = zip.readUInt16LE(off + 30);
    const commentLen = zip.readUInt16LE(off + 32);
    const local = zip.readUInt32LE(off + 42);
    entries.set(zip.toString('utf8', off + 46, off + 46 + nameLen), { method, size, local });
    off += 46 + nameLen + extraLen + commentLen;
  }
  return (path) => {
    const e = entries.get(path);
    if (!e) return undefined;
    const start = e.local + 30 + zip.readUInt16LE(e.local + 26) + zip.readUInt16LE(e.local + 28);
    const data = zip.subarray(start, start + e.size);
    if (e.method === 0) return Buffer.from(data);
    if (e.method === 8) return inflateRawSync(data);
    throw new Error(`otlp-decode: unsupported zip method ${e.method}`);
  };
}

/** Python bytes literal body (between the quotes) -> bytes */
function pythonBytes(lit: string): Uint8Array {
  const simple: Record<string, number> = { n: 10, r: 13, t: 9, '\\': 92, "'": 39, '"': 34, a: 7, b: 8, f: 12, v: 11 };
  const out: number[] = [];
  for (let i = 0; i < lit.length; i++) {
    const c = lit[i] as string;
    if (c !== '\\') {
      out.push(c.charCodeAt(0));
      continue;
    }
    const e = lit[++i] as string;
    if (e in simple) out.push(simple[e] as number);
    else if (e === 'x') {
      out.push(Number.parseInt(lit.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (e >= '0' && e <= '7') {
      let j = i;
      while (j < lit.length && j < i + 3 && (lit[j] as string) >= '0' && (lit[j] as string) <= '7') j++;
      out.push(Number.parseInt(lit.slice(i, j), 8));
      i = j - 1;
    } else throw new Error(`otlp-decode: unexpected escape \\${e}`);
  }
  return Uint8Array.from(out);
}

function findSchemaSource(): { reader: FileReader; where: string } {
  const dir = process.env.STRATA_OTLP_PROTO_DIR;
  if (dir) {
    return {
      where: dir,
      reader: (p) => {
        const f = join(dir, p);
        return existsSync(f) ? readFileSync(f) : undefined;
      },
    };
  }
  let wheel = process.env.STRATA_OTLP_PROTO_WHEEL;
  if (!wheel) {
    for (const d of WHEEL_DIRS) {
      if (!existsSync(d)) continue;
      const hit = readdirSync(d)
        .filter((f) => /^opentelemetry_proto-.*\.whl$/.test(f))
        .sort()
        .pop();
      if (hit) {
        wheel = join(d, hit);
        break;
      }
    }
  }
  if (!wheel) {
    throw new Error(
      'otlp-decode: no OTLP schema found: expected an opentelemetry_proto-*.whl in /opt/pypi/files ' +
        '(set STRATA_OTLP_PROTO_WHEEL or STRATA_OTLP_PROTO_DIR)',
    );
  }
  return { where: wheel, reader: zipReader(readFileSync(wheel)) };
}

let cachedRoot: { root: protobuf.Root; where: string } | undefined;

/** The OTLP schema as a protobufjs Root (field names as in the .proto files: snake_case). */
export function loadOtlpSchema(): { root: protobuf.Root; where: string } {
  if (cachedRoot) return cachedRoot;
  const { reader, where } = findSchemaSource();
  const files = PROTO_FILES.map((p) => {
    const path = `opentelemetry/proto/${p}_pb2.py`;
    const src = reader(path);
    if (!src) throw new Error(`otlp-decode: ${path} missing in ${where}`);
    const m = /AddSerializedFile\(b'((?:[^'\\]|\\.)*)'\)/.exec(src.toString('latin1'));
    if (!m) throw new Error(`otlp-decode: no serialized descriptor in ${path}`);
    return descriptor.FileDescriptorProto.decode(pythonBytes(m[1] as string)) as unknown as IFileDescriptorProto;
  });
  const root = protobuf.Root.fromDescriptor({ file: files });
  cachedRoot = { root, where };
  return cachedRoot;
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
  if ('string_value' in v) return v.string_value as string;
  if ('bool_value' in v) return v.bool_value as boolean;
  if ('int_value' in v) {
    const n = BigInt(v.int_value as string);
    return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }
  if ('double_value' in v) return v.double_value as number;
  if ('bytes_value' in v) return v.bytes_value as Uint8Array;
  if ('array_value' in v) return (((v.array_value as Obj).values as Obj[]) ?? []).map(anyValue);
  if ('kvlist_value' in v) return keyValues((v.kvlist_value as Obj).values as Obj[]);
  return null;
}

function keyValues(list: Obj[] | undefined): Record<string, AnyValue> {
  const out: Record<string, AnyValue> = {};
  for (const kv of list ?? []) out[kv.key as string] = anyValue(kv.value as Obj | undefined);
  return out;
}

/** Decodes an ExportTraceServiceRequest (the body of POST /v1/traces). */
export function decodeExportTraceServiceRequest(body: Uint8Array): DecodedResourceSpans[] {
  const { root } = loadOtlpSchema();
  const T = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
  const msg = T.toObject(T.decode(body), { longs: String, enums: Number, defaults: false });
  return ((msg.resource_spans as Obj[]) ?? []).map((rs) => ({
    resource: keyValues((rs.resource as Obj | undefined)?.attributes as Obj[]),
    scopeSpans: ((rs.scope_spans as Obj[]) ?? []).map((ss) => {
      const scope = (ss.scope as Obj | undefined) ?? {};
      return {
        scope: { name: (scope.name as string) ?? '', version: (scope.version as string) ?? '' },
        spans: ((ss.spans as Obj[]) ?? []).map((s) => {
          const status = (s.status as Obj | undefined) ?? {};
          return {
            traceId: hex(s.trace_id),
            spanId: hex(s.span_id),
            parentSpanId: hex(s.parent_span_id),
            traceState: (s.trace_state as string) ?? '',
            name: (s.name as string) ?? '',
            kind: (s.kind as number) ?? 0,
            startTimeUnixNano: BigInt((s.start_time_unix_nano as string) ?? '0'),
            endTimeUnixNano: BigInt((s.end_time_unix_nano as string) ?? '0'),
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
