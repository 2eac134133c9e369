// Deterministic ids: two agents that see the same message (same client endpoint and TCP
// sequence number) name its spans the same way without talking to each other.
// The hash is cyrb-style 4x32-bit mixing: not cryptographic (ids need spread, not secrecy), and
// ~20x cheaper than sha256 per span, which the hot path pays for every span it emits.

function hash128(role: string, key: string): [number, number, number, number] {
  let h1 = 0x9e3779b1 ^ role.length;
  let h2 = 0x85ebca6b;
  let h3 = 0xc2b2ae35;
  let h4 = 0x27d4eb2f;
  const mix = (c: number) => {
    h1 = h2 ^ Math.imul(h1 ^ c, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ c, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ c, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ c, 2716044179);
  };
  for (let i = 0; i < role.length; i++) mix(role.charCodeAt(i));
  mix(0x2f);
  for (let i = 0; i < key.length; i++) mix(key.charCodeAt(i));
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}

const BYTE_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
// 8 hex digits of a uint32 by table: every emitted span pays this 4-6 times
const hex8 = (n: number) => BYTE_HEX[n >>> 24]! + BYTE_HEX[(n >>> 16) & 0xff]! + BYTE_HEX[(n >>> 8) & 0xff]! + BYTE_HEX[n & 0xff]!;

export function deriveTraceId(key: string): string {
  const [a, b, c, d] = hash128('trace', key);
  const id = hex8(a) + hex8(b) + hex8(c) + hex8(d);
  return id === '00000000000000000000000000000000' ? '00000000000000000000000000000001' : id;
}

export function deriveSpanId(role: string, key: string): string {
  const [a, b] = hash128(role, key);
  const id = hex8(a) + hex8(b);
  // all-zero is invalid in W3C; never emit it
  return id === '0000000000000000' ? '0000000000000001' : id;
}

/**
 * The base id of one node's hop spans for a message: two agents see the same message key (it is
 * what stitches them), but each reports different hops (its own devices), so the node is part of
 * the derivation; one node names a message's hops alike on every emission.
 */
export function hopBaseId(node: string, messageKey: string): string {
  return deriveSpanId(`hops@${node}`, messageKey);
}

/** the i-th id of a family derived from one base id (hop spans of one message): one hash per message */
export function nthSpanId(base: string, i: number): string {
  const tail = (Number.parseInt(base.slice(8), 16) ^ Math.imul(i, 0x9e3779b1)) >>> 0;
  const id = base.slice(0, 8) + hex8(tail);
  return id === '0000000000000000' ? '0000000000000001' : id;
}

/** The ids of one exchange's span: its own, its trace's, its parent's. */
export interface ExchangeIds {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  /** the parent is the caller's span (context header), not a span of this node */
  remote: boolean;
  flags: number;
  traceState?: string;
  format?: string;
}

/** What resolving ids needs to know about an exchange. */
export interface IdSubject {
  reqKey: string;
  headers: Map<string, string>;
  ids?: ExchangeIds;
}

export interface IdLookups<T extends IdSubject> {
  /** the exchange's local parent (a traced caller on this node), if any */
  parentOf(ex: T): T | undefined;
  /** "server" or "client": part of the derived span id */
  roleName(ex: T): string;
  /** the caller's context from the request headers (malformed ones counted by the caller) */
  extract(headers: Map<string, string>): { traceId: string; spanId: string; traceFlags: number; traceState?: string; format?: string } | undefined;
}

/**
 * Ids of an exchange, resolved once: under its local parent's trace when it has one, else the
 * caller's context from the request headers, else derived from the request's message key (so
 * another agent seeing the same message names it alike).
 */
export function resolveIds<T extends IdSubject>(ex: T, l: IdLookups<T>, depth = 0): ExchangeIds {
  if (ex.ids) return ex.ids;
  const spanId = deriveSpanId(l.roleName(ex), ex.reqKey);
  const parent = depth < 32 ? l.parentOf(ex) : undefined;
  if (parent) {
    const p = resolveIds(parent, l, depth + 1);
    ex.ids = { traceId: p.traceId, spanId, parentSpanId: p.spanId, remote: false, flags: p.flags, traceState: p.traceState };
    return ex.ids;
  }
  const x = l.extract(ex.headers);
  ex.ids = x
    ? { traceId: x.traceId, spanId, parentSpanId: x.spanId, remote: true, flags: x.traceFlags, traceState: x.traceState, format: x.format }
    : { traceId: deriveTraceId(ex.reqKey), spanId, remote: false, flags: 1 };
  return ex.ids;
}
