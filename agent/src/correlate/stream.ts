// One direction of an HTTP/1.x connection, fed with what the syscalls moved: `cap` captured bytes
// and `total` bytes in all (the return value). Finds where each message starts and ends, byte
// exact while framing is known (Content-Length, chunked, no body), whatever the segmentation.
// Bytes that were moved but not captured are a gap: a gap inside a known-length body or chunk is
// counted through; a gap inside a head or a chunk-size line loses the framing ("lost") until an
// event starts with something that looks like a new message head.
import { type HttpHead, looksLikeRequest, looksLikeResponse, parseHead } from './http.ts';

export type Framing = { mode: 'none' } | { mode: 'length'; length: number } | { mode: 'chunked' } | { mode: 'close' } | { mode: 'opaque' };

/**
 * Why a head is incomplete: bytes moved but not captured ('capture': the head was there, we did not
 * see all of it), the connection ended inside it ('close'), or it exceeded MAX_HEAD ('too_long').
 */
export type HeadCut = 'capture' | 'close' | 'too_long';

/**
 * Called back from feed()/close() with the event being fed (`ev`, passed through untouched;
 * undefined for close() or when the caller has none): a callback receives what it works on.
 */
export interface StreamListener<E> {
  /** a message starts at byte `off` of the event */
  onStart(ev: E | undefined, off: number): void;
  /** its head: parsed (null when even the first line was not captured); `truncated` if cut, and why */
  onHead(ev: E | undefined, head: HttpHead | null, truncated: boolean, cut?: HeadCut): Framing;
  /** the message's last byte is at `off` of the event; -1: the last byte of the previous event */
  onEnd(ev: E | undefined, off: number): void;
  /** the direction does not carry HTTP/1.x */
  onNonHttp(ev: E | undefined): void;
}

const IDLE = 0;
const HEAD = 1;
const LENGTH = 2;
const CHUNKED = 3;
const CLOSE = 4;
const OPAQUE = 5;
const LOST = 6;
const NONHTTP = 7;

// chunked sub-states
const C_SIZE = 0; // hex digits (and extensions) up to CRLF
const C_DATA = 1;
const C_DATA_CRLF = 2; // the CRLF after chunk data
const C_TRAILER = 3; // after the 0-size chunk: lines until an empty one

export const MAX_HEAD = 16 * 1024;
const SNIFF = 8;

export class HttpStream<E = unknown> {
  private mode = IDLE;
  private head: Buffer[] = [];
  private headBytes = 0;
  /** how much of "\r\n\r\n" was matched at the end of what we have */
  private crlf = 0;
  private remaining = 0;
  private cState = C_SIZE;
  private chunkSize = 0;
  private lineLen = 0;
  private sizeDigits = 0;
  /** framing was lost inside a chunked body: its terminator can still be recognised */
  private lostChunked = false;
  private evTotal = 0;
  private bytes = 0;
  private readonly requests: boolean;
  private readonly l: StreamListener<E>;

  constructor(requests: boolean, listener: StreamListener<E>) {
    this.requests = requests;
    this.l = listener;
  }

  get state(): string {
    return ['idle', 'head', 'length', 'chunked', 'close', 'opaque', 'lost', 'non-http'][this.mode] as string;
  }

  /** bytes of the current message so far (exact at onEnd) */
  get messageBytes(): number {
    return this.bytes;
  }

  /** true while a message is in progress */
  get inMessage(): boolean {
    return this.mode !== IDLE && this.mode !== OPAQUE && this.mode !== NONHTTP;
  }

  feed(b: Buffer, off: number, cap: number, total: number, ev?: E): void {
    if (this.mode === NONHTTP || this.mode === OPAQUE) return;
    if (this.mode === LOST && cap > 0 && this.startsMessage(b, off, cap)) {
      this.l.onEnd(ev, -1);
      this.mode = IDLE;
      this.lostChunked = false;
    }
    this.evTotal = total;
    if (this.mode !== IDLE) this.bytes += total;
    if (this.mode === LOST && this.lostChunked && cap === total && endsWithLastChunk(b, off, cap)) {
      // a fully captured write/read that ends a chunked body
      this.lostChunked = false;
      this.end(cap - 1, ev);
      return;
    }
    let p = 0;
    while (p < cap) {
      switch (this.mode) {
        case IDLE:
          this.bytes = total - p;
          this.l.onStart(ev, p);
          this.mode = HEAD;
          this.head = [];
          this.headBytes = 0;
          this.crlf = 0;
          break;
        case HEAD:
          p = this.feedHead(b, off, p, cap, ev);
          break;
        case LENGTH: {
          const take = Math.min(this.remaining, cap - p);
          this.remaining -= take;
          p += take;
          if (this.remaining === 0) this.end(p - 1, ev);
          break;
        }
        case CHUNKED:
          p = this.feedChunked(b, off, p, cap, ev);
          break;
        default: // CLOSE, LOST, OPAQUE, NONHTTP: bytes are counted by the caller, not framed
          p = cap;
      }
      if (this.mode === NONHTTP || this.mode === OPAQUE) return;
    }
    this.gap(total - cap, cap, ev);
  }

  /** the connection switched protocols (101, CONNECT tunnel): nothing further is HTTP/1.x */
  switchProtocols(): void {
    this.mode = OPAQUE;
  }

  /** the connection closed: a close-delimited or lost message ends at its last byte */
  close(): void {
    if (this.mode === HEAD && this.headBytes > 0) {
      // the connection ended inside a head: report what was seen, cut
      this.headDone(true, undefined, 'close');
      this.mode = LOST;
    }
    if (this.mode === CLOSE || this.mode === LOST) this.l.onEnd(undefined, -1);
    this.mode = IDLE;
  }

  private startsMessage(b: Buffer, off: number, cap: number): boolean {
    return this.requests ? looksLikeRequest(b, off, cap) : looksLikeResponse(b, off, cap);
  }

  private end(off: number, ev: E | undefined): void {
    this.mode = IDLE;
    this.bytes -= this.evTotal - off - 1;
    this.l.onEnd(ev, off);
  }

  private feedHead(b: Buffer, off: number, p: number, cap: number, ev: E | undefined): number {
    let q = p;
    let found = -1;
    for (; q < cap; q++) {
      const c = b[off + q];
      if (c === 0x0d) this.crlf = this.crlf === 2 ? 3 : 1;
      else if (c === 0x0a && (this.crlf === 1 || this.crlf === 3)) {
        this.crlf++;
        if (this.crlf === 4) {
          found = q;
          break;
        }
      } else this.crlf = 0;
    }
    const upto = found >= 0 ? found + 1 : cap;
    const room = MAX_HEAD - this.headBytes;
    if (room > 0) {
      this.head.push(b.subarray(off + p, off + p + Math.min(upto - p, room)));
      this.headBytes += Math.min(upto - p, room);
    }
    if (this.headBytes >= SNIFF || found >= 0) {
      if (!this.sniffOk()) {
        this.mode = NONHTTP;
        this.l.onNonHttp(ev);
        return cap;
      }
    }
    if (found >= 0) {
      this.headDone(false, ev);
      if (this.mode === IDLE) this.end(found, ev);
      return found + 1;
    }
    if (this.headBytes >= MAX_HEAD) {
      // a head this long is not one we will ever finish: keep what we saw
      this.headDone(true, ev, 'too_long');
      this.mode = LOST;
    }
    return cap;
  }

  private sniffOk(): boolean {
    const h = this.head.length === 1 ? (this.head[0] as Buffer) : Buffer.concat(this.head);
    if (this.head.length > 1) this.head = [h];
    const n = Math.min(h.length, SNIFF);
    if (this.requests) {
      // a method token (A-Z) then a space within the first 8 bytes
      for (let i = 0; i < n; i++) {
        const c = h[i] as number;
        if (c === 0x20) return i >= 3;
        if (c < 0x41 || c > 0x5a) return false;
      }
      return n < SNIFF;
    }
    const want = 'HTTP/1.';
    for (let i = 0; i < Math.min(n, want.length); i++) if (h[i] !== want.charCodeAt(i)) return false;
    return true;
  }

  private headDone(truncated: boolean, ev: E | undefined, cut?: HeadCut): void {
    const h = this.head.length === 1 ? (this.head[0] as Buffer) : Buffer.concat(this.head);
    this.head = [];
    const parsed = parseHead(h, 0, h.length, this.requests);
    const f = this.l.onHead(ev, parsed, truncated || !parsed?.complete, cut);
    if (truncated) return;
    switch (f.mode) {
      case 'none':
        this.mode = IDLE;
        break;
      case 'length':
        this.mode = f.length > 0 ? LENGTH : IDLE;
        this.remaining = f.length;
        break;
      case 'chunked':
        this.mode = CHUNKED;
        this.cState = C_SIZE;
        this.chunkSize = 0;
        this.sizeDigits = 0;
        break;
      case 'close':
        this.mode = CLOSE;
        break;
      case 'opaque':
        this.mode = OPAQUE;
        break;
    }
  }

  private feedChunked(b: Buffer, off: number, p: number, cap: number, ev: E | undefined): number {
    while (p < cap) {
      if (this.cState === C_DATA) {
        const take = Math.min(this.chunkSize, cap - p);
        this.chunkSize -= take;
        p += take;
        if (this.chunkSize === 0) {
          this.cState = C_DATA_CRLF;
          this.lineLen = 0;
        }
        continue;
      }
      const c = b[off + p] as number;
      if (this.cState === C_SIZE) {
        if (c === 0x0a) {
          if (this.sizeDigits === 0) return this.lose(cap);
          if (this.chunkSize === 0) {
            this.cState = C_TRAILER;
            this.lineLen = 0;
          } else this.cState = C_DATA;
          this.sizeDigits = 0;
        } else if (this.sizeDigits >= 0) {
          const v = hexVal(c);
          if (v >= 0) {
            this.chunkSize = this.chunkSize * 16 + v;
            this.sizeDigits++;
            if (this.sizeDigits > 12) return this.lose(cap);
          } else if (c === 0x3b || c === 0x0d || c === 0x20 || c === 0x09) {
            if (this.sizeDigits === 0) return this.lose(cap);
            this.sizeDigits = -this.sizeDigits; // extension or CR: ignore up to LF
          } else return this.lose(cap);
        }
        // negative sizeDigits: inside an extension or after CR, skipped up to LF
      } else if (this.cState === C_DATA_CRLF) {
        if (c === 0x0a) {
          this.cState = C_SIZE;
          this.chunkSize = 0;
          this.sizeDigits = 0;
        } else if (c !== 0x0d) return this.lose(cap);
      } else {
        // trailer section: ends with an empty line
        if (c === 0x0a) {
          if (this.lineLen === 0) {
            this.end(p, ev);
            return p + 1;
          }
          this.lineLen = 0;
        } else if (c !== 0x0d) this.lineLen++;
      }
      p++;
    }
    return p;
  }

  private lose(cap: number): number {
    this.mode = LOST;
    this.lostChunked = true;
    return cap;
  }

  /** true when the framing is lost (the message ends at a resync, a close or a quiet period) */
  get lost(): boolean {
    return this.mode === LOST;
  }

  /** `n` bytes were moved after the captured ones, at offsets cap.. of this event */
  private gap(n: number, at: number, ev: E | undefined): void {
    if (n <= 0) return;
    switch (this.mode) {
      case IDLE:
        // a message starts where we cannot see it
        this.bytes = this.evTotal - at;
        this.l.onStart(ev, at);
        this.l.onHead(ev, null, true, 'capture');
        this.mode = LOST;
        return;
      case HEAD:
        this.headDone(true, ev, 'capture');
        this.mode = LOST;
        return;
      case LENGTH:
        if (n < this.remaining) {
          this.remaining -= n;
          return;
        }
        {
          const rest = n - this.remaining;
          const last = at + this.remaining - 1;
          this.remaining = 0;
          this.end(last, ev);
          this.gap(rest, last + 1, ev);
        }
        return;
      case CHUNKED:
        if (this.cState === C_DATA && n < this.chunkSize) {
          this.chunkSize -= n;
          return;
        }
        if (this.cState === C_DATA && n === this.chunkSize) {
          this.chunkSize = 0;
          this.cState = C_DATA_CRLF;
          return;
        }
        this.lose(0);
        return;
      default:
    }
  }
}

const LAST_CHUNK = Buffer.from('\r\n0\r\n\r\n');
function endsWithLastChunk(b: Buffer, off: number, len: number): boolean {
  if (len === 5) return b.compare(LAST_CHUNK, 2, 7, off, off + 5) === 0;
  return len >= 7 && b.compare(LAST_CHUNK, 0, 7, off + len - 7, off + len) === 0;
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}
