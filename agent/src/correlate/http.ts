// HTTP/1.x message heads from partial captures. A capture holds the first N bytes a syscall moved,
// so the head may be cut: what was seen is kept and `complete` says whether the blank line was.
import { isUtf8 } from 'node:buffer';

const METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE']);
const MAX_HEADERS = 64;

export interface HttpHead {
  /** request: method; response: '' */
  method: string;
  target: string;
  status: number;
  version: string;
  /** lowercased name -> value (first occurrence kept) */
  headers: Map<string, string>;
  /** bytes of the head including the blank line; -1 when the capture ended first */
  headLen: number;
  complete: boolean;
  /** Content-Length, or -1 */
  contentLength: number;
  chunked: boolean;
}

/** Cheap check on the first bytes: does this start an HTTP/1.x request? */
export function looksLikeRequest(b: Buffer, off: number, len: number): boolean {
  const sp = b.indexOf(0x20, off);
  if (sp < 0 || sp - off < 3 || sp - off > 7 || sp >= off + len) return false;
  return METHODS.has(b.toString('latin1', off, sp));
}

/** Does this start an HTTP/1.x response ("HTTP/1.")? */
export function looksLikeResponse(b: Buffer, off: number, len: number): boolean {
  return len >= 12 && b[off] === 0x48 && b[off + 1] === 0x54 && b[off + 2] === 0x54 && b[off + 3] === 0x50 &&
    b[off + 4] === 0x2f && b[off + 5] === 0x31 && b[off + 6] === 0x2e;
}

export function parseHead(b: Buffer, off: number, len: number, isRequest: boolean): HttpHead | null {
  const text = b.toString('latin1', off, off + len);
  const end = text.indexOf('\r\n\r\n');
  // the head's lines are what lies before the blank line (all of it when the capture ended first),
  // split at CRLF; walked in place rather than split into an array
  const limit = end >= 0 ? end : text.length;
  let eol = text.indexOf('\r\n');
  if (eol < 0 || eol > limit) eol = limit;
  const first = text.slice(0, eol);
  const head: HttpHead = { method: '', target: '', status: 0, version: '', headers: new Map(), headLen: end >= 0 ? end + 4 : -1, complete: end >= 0, contentLength: -1, chunked: false };
  const p1 = first.indexOf(' ');
  if (p1 < 0) return null;
  if (isRequest) {
    const p2 = first.lastIndexOf(' ');
    head.method = first.slice(0, p1);
    if (!METHODS.has(head.method)) return null;
    if (p2 > p1) {
      head.target = first.slice(p1 + 1, p2);
      head.version = first.slice(p2 + 1);
    } else {
      head.target = first.slice(p1 + 1); // request line cut by the capture
    }
  } else {
    head.version = first.slice(0, p1);
    if (!head.version.startsWith('HTTP/1.')) return null;
    const code = Number.parseInt(first.slice(p1 + 1, p1 + 4), 10);
    if (!(code >= 100 && code <= 999)) return null;
    head.status = code;
  }
  // header lines 1..MAX_HEADERS; the last line may be cut mid-header when the head was not
  // complete: dropped
  for (let i = 1, pos = eol + 2; i <= MAX_HEADERS && pos <= limit; i++) {
    let next = text.indexOf('\r\n', pos);
    const last = next < 0 || next >= limit;
    if (last) next = limit;
    if (last && !head.complete) break;
    const c = text.indexOf(':', pos);
    if (c > pos && c < next) {
      const name = text.slice(pos, c).trim().toLowerCase();
      if (!head.headers.has(name)) head.headers.set(name, text.slice(c + 1, next).trim());
    }
    pos = next + 2;
  }
  const cl = head.headers.get('content-length');
  if (cl !== undefined && /^\d+$/.test(cl)) head.contentLength = Number(cl);
  head.chunked = /\bchunked\b/i.test(head.headers.get('transfer-encoding') ?? '');
  return head;
}

/** Splits a request target into path and query without allocating a URL object. */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

/**
 * A request line is valid when its target has no controls or spaces and its bytes >= 0x80, if any,
 * are UTF-8 (RFC 9112 wants ASCII; raw UTF-8 paths are sent and served in practice), and, when the
 * capture holds the whole line, its version is HTTP/1.0 or 1.1. `GET ` followed by binary passes
 * looksLikeRequest but is junk.
 */
export function validRequestLine(head: HttpHead): boolean {
  const t = head.target;
  if (t.length === 0 && head.version !== '') return false;
  let high = false;
  for (let i = 0; i < t.length; i++) {
    const c = t.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return false;
    if (c >= 0x80) high = true;
  }
  if (high && !isUtf8(Buffer.from(t, 'latin1'))) return false;
  return head.version === '' || head.version === 'HTTP/1.1' || head.version === 'HTTP/1.0';
}
