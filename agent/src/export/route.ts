// Span names with bounded cardinality ({method} {route}, HTTP semantic conventions): the route is
// the first configured pattern that matches the path (correlator.routes), else the path with every
// id-like segment (numbers, UUIDs, long hex, base64-ish tokens) replaced by {id}. The full path
// stays in url.path.
import { clean } from './sanitize.ts';

/** longest route: further segments collapse into one "/…" */
const MAX_SEGMENTS = 8;
const MAX_ROUTE = 96;

interface Pattern {
  text: string;
  /** literal segment, or null for {param} */
  segs: (string | null)[];
  /** a last "*" matches the rest */
  rest: boolean;
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const HEX = /^(0x)?[0-9a-f]{12,}$/i;
const NUMERIC = /^[+-]?\d+([.,_:-]\d+)*$/;
const BASE64ISH = /^[A-Za-z0-9_~.=+-]{16,}$/;

/** Is this path segment an identifier rather than a name? */
export function idLike(seg: string): boolean {
  if (seg.length === 0) return false;
  if (NUMERIC.test(seg) || UUID.test(seg) || HEX.test(seg)) return true;
  // a long token of base64/url-safe characters with digits in it (camelCase words have none)
  if (BASE64ISH.test(seg) && /\d/.test(seg)) return true;
  // short mixed tokens that are mostly digits (a1b2c3, 42x)
  let digits = 0;
  for (let i = 0; i < seg.length; i++) if (seg.charCodeAt(i) >= 0x30 && seg.charCodeAt(i) <= 0x39) digits++;
  return seg.length >= 4 && digits * 2 >= seg.length;
}

export class Routes {
  private readonly patterns: Pattern[];

  constructor(patterns: readonly string[]) {
    this.patterns = patterns.map((p) => {
      const parts = p.split('/').slice(1);
      const rest = parts[parts.length - 1] === '*';
      if (rest) parts.pop();
      return { text: p, segs: parts.map((s) => (/^\{[^}]*\}$/.test(s) ? null : s)), rest };
    });
  }

  /**
   * The route of a (raw, maybe cut) request target's path: a configured pattern, or the path with
   * ids as {id}; the path of an absolute-form target (a proxy request); "" when there is no path
   * (CONNECT authority, OPTIONS *): the span is then named after the method alone.
   */
  route(target: string): string {
    let path = target;
    if (path.startsWith('http://') || path.startsWith('https://')) {
      const slash = path.indexOf('/', path.indexOf('//') + 2);
      path = slash < 0 ? '/' : path.slice(slash);
    }
    if (path === '' || path[0] !== '/') return '';
    for (const p of this.patterns) if (matches(p, path)) return p.text;
    const segs = path.split('/');
    let out = '';
    const n = Math.min(segs.length, MAX_SEGMENTS + 1);
    for (let i = 1; i < n; i++) {
      const s = segs[i] as string;
      out += `/${idLike(s) ? '{id}' : s}`;
    }
    if (segs.length > n) out += '/…';
    return clean(out || '/', MAX_ROUTE);
  }
}

function matches(p: Pattern, path: string): boolean {
  const segs = path.split('/').slice(1);
  if (p.rest ? segs.length < p.segs.length : segs.length !== p.segs.length) return false;
  for (let i = 0; i < p.segs.length; i++) {
    const want = p.segs[i];
    const got = segs[i] as string;
    if (want === null ? got === '' : want !== got) return false;
  }
  return true;
}
