// The agent-to-agent stitching protocol (design.md section 3, point 5): the node that saw a request
// leave tells the node it went to "message key K belongs to trace T, parent span S, sampled or not".
// One HTTP/1.1 POST per batch; the body is JSON and authenticated by an HMAC-SHA256 over its exact
// bytes with a secret every agent shares (a Kubernetes Secret). Nothing of the application's bytes
// is changed or carried: keys are endpoints and sequence numbers, ids are ids.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { STRATA_ERR_PEER_AUTH, STRATA_ERR_PEER_BATCH, StrataError, EXIT_UNEXPECTED } from '../errors.ts';

export const PEER_PATH = '/v1/stitch';
export const SIGNATURE_HEADER = 'x-strata-signature';
export const PROTOCOL_VERSION = 1;

/** one stitch: the receiver's spans of request message `key` join trace `traceId` under `parentSpanId` */
export interface PeerMapping {
  /** request message key: client ip:port + TCP seq of the first byte (correlate/hops.ts) */
  key: string;
  traceId: string;
  parentSpanId: string;
  /** the sender's sampling decision (bit 0), so every node of a trace keeps or drops it alike */
  flags: number;
}

export interface PeerBatch {
  /** sending node */
  from: string;
  /** sender's wall clock at send (ms): the receiver records the skew, it does not trust it */
  sentAtMs: number;
  mappings: PeerMapping[];
}

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const MAX_KEY = 128;

export function sign(secret: Buffer, body: Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** constant-time check of a signature header against the body */
export function verify(secret: Buffer, body: Buffer, header: string | undefined): boolean {
  if (!header) return false;
  const want = Buffer.from(sign(secret, body));
  const got = Buffer.from(header);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** JSON bytes of a batch (compact: one array per mapping) */
export function encodeBatch(b: PeerBatch): Buffer {
  return Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, from: b.from, sentAtMs: b.sentAtMs, m: b.mappings.map((x) => [x.key, x.traceId, x.parentSpanId, x.flags]) }));
}

/** the bytes one mapping adds to an encoded batch, at most (for the batch byte bound) */
export function mappingBytes(m: PeerMapping): number {
  return m.key.length + 32 + 16 + 16;
}

const bad = (why: string) => new StrataError(STRATA_ERR_PEER_BATCH, `peer batch rejected: ${why}`, EXIT_UNEXPECTED);

/** Parses and validates a batch whose signature was already checked; throws STRATA_ERR_PEER_BATCH. */
export function decodeBatch(body: Buffer): PeerBatch {
  let j: unknown;
  try {
    j = JSON.parse(body.toString('utf8'));
  } catch {
    throw bad('not JSON');
  }
  if (typeof j !== 'object' || j === null) throw bad('not an object');
  const o = j as Record<string, unknown>;
  if (o.v !== PROTOCOL_VERSION) throw bad(`protocol version ${String(o.v)}, this agent speaks ${PROTOCOL_VERSION}`);
  if (typeof o.from !== 'string' || typeof o.sentAtMs !== 'number' || !Array.isArray(o.m)) throw bad('missing from, sentAtMs or m');
  const mappings: PeerMapping[] = [];
  for (const x of o.m as unknown[]) {
    if (!Array.isArray(x) || x.length !== 4) throw bad('a mapping is not [key, traceId, parentSpanId, flags]');
    const [key, traceId, parentSpanId, flags] = x as unknown[];
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY) throw bad('bad key');
    if (typeof traceId !== 'string' || !TRACE_ID.test(traceId) || typeof parentSpanId !== 'string' || !SPAN_ID.test(parentSpanId)) throw bad('bad trace or span id');
    if (typeof flags !== 'number' || !Number.isInteger(flags) || flags < 0 || flags > 255) throw bad('bad flags');
    mappings.push({ key, traceId, parentSpanId, flags });
  }
  return { from: o.from, sentAtMs: o.sentAtMs, mappings };
}

/** Verifies then decodes; throws STRATA_ERR_PEER_AUTH on a bad or missing signature. */
export function openBatch(secret: Buffer, body: Buffer, signature: string | undefined): PeerBatch {
  if (!verify(secret, body, signature)) throw new StrataError(STRATA_ERR_PEER_AUTH, 'peer batch rejected: bad or missing signature (is stitch.secret the same on every node?)', EXIT_UNEXPECTED);
  return decodeBatch(body);
}
