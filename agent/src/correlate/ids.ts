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
