// What leaves the agent is text a backend can store and a person can read: no control characters,
// no invalid UTF-8, bounded length. Captured bytes arrive as latin1 strings (one char per byte);
// those holding UTF-8 are decoded as such, anything else becomes U+FFFD.

/** longest span name exported */
export const MAX_NAME = 128;
/** longest string attribute value exported (url.path, url.full, header values) */
export const MAX_VALUE = 1024;

const REPLACEMENT = '\uFFFD';

/** `s` when already clean and short enough (no allocation), else a cleaned, cut copy (ending in "…" when cut). */
export function clean(s: string, max: number): string {
  let ok = s.length <= max;
  for (let i = 0; ok && i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c >= 0x7f) ok = false;
  }
  if (ok) return s;
  let t = s;
  // bytes >= 0x80: UTF-8 when they decode as UTF-8, else replaced
  for (let i = 0; i < t.length; i++) {
    if (t.charCodeAt(i) >= 0x80) {
      t = t.length <= 0xffff && isLatin1(t) ? Buffer.from(t, 'latin1').toString('utf8') : t;
      break;
    }
  }
  let out = '';
  for (const ch of t) {
    const c = ch.codePointAt(0) as number;
    out += c < 0x20 || (c >= 0x7f && c < 0xa0) || (c >= 0xd800 && c <= 0xdfff) ? REPLACEMENT : ch;
  }
  if (out.length > max) {
    // never cut a surrogate pair in two
    let n = max - 1;
    const hi = out.charCodeAt(n - 1);
    if (hi >= 0xd800 && hi <= 0xdbff) n--;
    out = `${out.slice(0, n)}…`;
  }
  return out;
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}
