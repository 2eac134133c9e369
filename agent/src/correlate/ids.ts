// Deterministic ids: two agents that see the same message (same client ip, port and TCP
// sequence number) name its spans the same way without talking to each other.
import { createHash } from 'node:crypto';

export function deriveTraceId(key: string): string {
  return createHash('sha256').update('strata/trace/').update(key).digest('hex').slice(0, 32);
}

export function deriveSpanId(role: string, key: string): string {
  const h = createHash('sha256').update('strata/span/').update(role).update('/').update(key).digest('hex').slice(0, 16);
  // all-zero is invalid in W3C; astronomically unlikely, but never emit it
  return h === '0000000000000000' ? '0000000000000001' : h;
}

/** the i-th id of a family derived from one base id (hop spans of one message): one hash per message */
export function nthSpanId(base: string, i: number): string {
  const tail = (Number.parseInt(base.slice(8), 16) ^ (i * 0x9e3779b1)) >>> 0;
  const id = base.slice(0, 8) + tail.toString(16).padStart(8, '0');
  return id === '0000000000000000' ? '0000000000000001' : id;
}
