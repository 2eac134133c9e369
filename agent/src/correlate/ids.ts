// Deterministic ids: two agents that see the same message (same client endpoint and TCP
// sequence number) name its spans the same way without talking to each other.
// The hash is cyrb-style 4x32-bit mixing: not cryptographic (ids need spread, not secrecy), and
// ~20x cheaper than sha256 per span, which the hot path pays for every span it emits.

// the last hash128's four words: no array, no closure per hash (every emitted span pays several)
const H = new Uint32Array(4);

function hash128(role: string, key: string): void {
  let h1 = 0x9e3779b1 ^ role.length;
  let h2 = 0x85ebca6b;
  let h3 = 0xc2b2ae35;
  let h4 = 0x27d4eb2f;
  // one mixing step per char of role, a '/', then key
  const n = role.length + 1 + key.length;
  for (let i = 0; i < n; i++) {
    const c = i < role.length ? role.charCodeAt(i) : i === role.length ? 0x2f : key.charCodeAt(i - role.length - 1);
    h1 = h2 ^ Math.imul(h1 ^ c, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ c, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ c, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ c, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  H[0] = h1;
  H[1] = h2;
  H[2] = h3;
  H[3] = h4;
}

const BYTE_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
// 8 hex digits of a uint32 by table: every emitted span pays this 4-6 times
const hex8 = (n: number) => BYTE_HEX[n >>> 24]! + BYTE_HEX[(n >>> 16) & 0xff]! + BYTE_HEX[(n >>> 8) & 0xff]! + BYTE_HEX[n & 0xff]!;

export function deriveTraceId(key: string): string {
  hash128('trace', key);
  const id = hex8(H[0] as number) + hex8(H[1] as number) + hex8(H[2] as number) + hex8(H[3] as number);
  return id === '00000000000000000000000000000000' ? '00000000000000000000000000000001' : id;
}

export function deriveSpanId(role: string, key: string): string {
  hash128(role, key);
  const id = hex8(H[0] as number) + hex8(H[1] as number);
  // all-zero is invalid in W3C; never emit it
  return id === '0000000000000000' ? '0000000000000001' : id;
}

/**
 * The base id of one node's hop spans for a message: two agents see the same message key (it is
 * what stitches them), but each reports different hops (its own devices), so the node is part of
 * the derivation; one node names a message's hops alike on every emission.
 */
export function hopBaseId(node: string, messageKey: string): string {
  if (node !== hopNode) {
    hopNode = node;
    hopRole = `hops@${node}`;
  }
  return deriveSpanId(hopRole, messageKey);
}
// the role string of the last node asked for (an agent has one)
let hopNode = '';
let hopRole = 'hops@';

/** the i-th id of a family derived from one base id (hop spans of one message): one hash per message */
export function nthSpanId(base: string, i: number): string {
  return nthSpanIdOf(base.slice(0, 8), Number.parseInt(base.slice(8), 16), i);
}

/** nthSpanId with the base already split (its first 8 hex digits, its last 8 as a number): once per message, not per span */
export function nthSpanIdOf(head: string, low: number, i: number): string {
  const tail = (low ^ Math.imul(i, 0x9e3779b1)) >>> 0;
  const id = head + hex8(tail);
  return id === '0000000000000000' ? '0000000000000001' : id;
}

/** The ids of one exchange's span: its own, its trace's, its parent's. */
export interface ExchangeIds {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  /** the parent is the caller's span (context header or a peer's mapping), not a span of this node */
  remote: boolean;
  flags: number;
  traceState?: string;
  format?: string;
  /** the span id the request's trace header names, where it is not parentSpanId (the app's SDK hangs its SERVER span there) */
  contextSpanId?: string;
  /** the trace id was adopted from the exchange's outbound calls (the app's SDK started that trace) */
  adopted?: boolean;
  /** with adopted: the CLIENT span that wrote the request's bytes, in the trace the exchange would have had */
  wireParent?: { traceId: string; spanId: string };
}

/** a trace context: from a header, a peer's mapping, or an exchange's outbound calls */
export interface TraceContext {
  traceId: string;
  spanId: string;
  traceFlags: number;
  traceState?: string;
  format?: string;
}

/** What resolving ids needs to know about an exchange. */
export interface IdSubject {
  reqKey: string;
  headers: Map<string, string>;
  ids?: ExchangeIds;
  /** a SERVER exchange whose request carried no trace context: the context its first outbound call carried */
  adopt?: TraceContext;
}

export interface IdLookups<T extends IdSubject> {
  /** the exchange's local parent (a traced caller on this node), if any */
  parentOf(ex: T): T | undefined;
  /** "server" or "client": part of the derived span id */
  roleName(ex: T): string;
  /** the caller's context from the request headers (malformed ones counted by the caller) */
  extract(headers: Map<string, string>): TraceContext | undefined;
}

/**
 * Ids of an exchange, resolved once. strata's spans follow the wire: under the local parent (the
 * CLIENT on this node that wrote the request, or the in-process cause of a CLIENT) when there is
 * one, else under the caller's context from the request headers, else a trace id derived from the
 * request's message key (so another agent seeing the same message names it alike). A trace header
 * whose span id is not the wire parent is kept as contextSpanId. One exception: a SERVER whose
 * request carried no context while its outbound calls did (the app's SDK started a trace there)
 * adopts that trace id as a root, its wire parent kept as wireParent (see adoptIds).
 */
export function resolveIds<T extends IdSubject>(ex: T, l: IdLookups<T>, depth = 0): ExchangeIds {
  if (ex.ids) return ex.ids;
  const spanId = deriveSpanId(l.roleName(ex), ex.reqKey);
  const parent = depth < 32 ? l.parentOf(ex) : undefined;
  const x = l.extract(ex.headers);
  if (parent) {
    const p = resolveIds(parent, l, depth + 1);
    if (!x && ex.adopt) ex.ids = adoptIds(spanId, ex.adopt, { traceId: p.traceId, spanId: p.spanId });
    else ex.ids = { traceId: p.traceId, spanId, parentSpanId: p.spanId, remote: false, flags: p.flags, traceState: p.traceState, contextSpanId: otherSpan(x, p.spanId) };
    return ex.ids;
  }
  if (x) ex.ids = { traceId: x.traceId, spanId, parentSpanId: x.spanId, remote: true, flags: x.traceFlags, traceState: x.traceState, format: x.format };
  else if (ex.adopt) ex.ids = adoptIds(spanId, ex.adopt);
  else ex.ids = { traceId: deriveTraceId(ex.reqKey), spanId, remote: false, flags: 1 };
  return ex.ids;
}

/**
 * The ids of a SERVER that adopts the trace its outbound calls carry: a root of that trace (the
 * SDK's own root span is not on the wire, so nothing names it), its wire parent, if any, recorded.
 */
export function adoptIds(spanId: string, a: TraceContext, wireParent?: { traceId: string; spanId: string }): ExchangeIds {
  return { traceId: a.traceId, spanId, remote: false, flags: a.traceFlags, traceState: a.traceState, adopted: true, ...(wireParent ? { wireParent } : {}) };
}

/** the header's span id when it differs from the parent strata chose */
export function otherSpan(x: TraceContext | undefined, parentSpanId: string): string | undefined {
  return x && x.spanId !== parentSpanId ? x.spanId : undefined;
}
