// A small client of the Kubernetes API: GET (JSON) and watch (newline-delimited JSON events), on
// node's http/https with one keep-alive agent of few sockets. What the agent reads (pods of its
// node, their ReplicaSets, Nodes) and no more: no generated models, no auth plugins; the types
// below name only the fields the agent uses (@kubernetes/client-node cost the agent ~57-77 MiB of
// RSS, README "Limits").
//
// Bounded: a GET's body (maxBodyBytes) and a watch's line (maxLineBytes; a line over it, or one
// that is not an event, ends the watch with STRATA_ERR_KUBE_WATCH and is counted); every request
// has an inactivity timeout (no byte for timeoutMs).
import http from 'node:http';
import https from 'node:https';
import { STRATA_ERR_KUBE_API, STRATA_ERR_KUBE_WATCH, StrataError } from '../errors.ts';
import type { KubeConnection } from './api-config.ts';

export interface OwnerReference {
  kind: string;
  name: string;
  controller?: boolean;
}

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
}

export interface KubeObject {
  metadata?: ObjectMeta;
}

export interface KubeList<T> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

export interface KubePod extends KubeObject {
  spec?: {
    nodeName?: string;
    hostNetwork?: boolean;
    containers?: { name: string; env?: { name: string; value?: string }[] }[];
  };
  status?: {
    podIP?: string;
    podIPs?: { ip?: string }[];
    containerStatuses?: { name: string; containerID?: string }[];
  };
}

export interface KubeNode extends KubeObject {
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  status?: { addresses?: { type: string; address: string }[] };
}

export type KubeReplicaSet = KubeObject;

/** the API server's Status (an error's body, an ERROR event's object) */
export interface KubeStatus {
  code?: number;
  reason?: string;
  message?: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
const EVENT_TYPES = new Set<string>(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'ERROR']);

export class KubeApiError extends Error {
  readonly code: string;
  /** the HTTP status, or an ERROR event's code */
  readonly statusCode?: number;
  readonly reason?: string;

  constructor(code: string, message: string, o: { statusCode?: number; reason?: string; cause?: unknown } = {}) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.code = code;
    this.statusCode = o.statusCode;
    this.reason = o.reason;
  }
}

/** 410 Gone: the resourceVersion has expired; list again */
export const isGone = (e: unknown): boolean => e instanceof KubeApiError && e.statusCode === 410;

export interface KubeClientOptions {
  /** sockets to the API server at most (a watch holds one for its life) */
  maxSockets?: number;
  /** no byte received for this long ends a request (a watch: resumed, see WatchEnd 'idle') */
  timeoutMs?: number;
  maxBodyBytes?: number;
  maxLineBytes?: number;
}

export interface KubeClientStats {
  /** watch lines over maxLineBytes, or not a watch event (each ended its watch with an error) */
  badLines: number;
}

/** how a watch ended without an error: the server closed it (timeoutSeconds), no byte for timeoutMs, stop() */
export type WatchEnd = 'closed' | 'idle' | 'stopped';

export interface WatchHandlers {
  /** the server answered 200: events follow */
  onOpen?: () => void;
  onEvent: (type: WatchEventType, object: KubeObject & KubeStatus) => void;
}

export interface WatchRequest {
  /** resolves when the stream ends; rejects with a KubeApiError (HTTP status, network, a bad line, stop(err)) */
  readonly done: Promise<WatchEnd>;
  /** ends the stream: done resolves 'stopped', or rejects with err */
  stop(err?: Error): void;
}

const DEFAULTS = { maxSockets: 4, timeoutMs: 30_000, maxBodyBytes: 128 * 1024 * 1024, maxLineBytes: 16 * 1024 * 1024 };
/** the body of an error answer kept for its message */
const MAX_ERROR_BODY = 64 * 1024;

export class KubeClient {
  readonly stats: KubeClientStats = { badLines: 0 };
  private readonly conn: KubeConnection;
  private readonly o: Required<KubeClientOptions>;
  private readonly agent: http.Agent;
  private readonly mod: typeof http | typeof https;

  constructor(conn: KubeConnection, o: KubeClientOptions = {}) {
    this.conn = conn;
    this.o = { ...DEFAULTS, ...o };
    const tls = conn.server.protocol === 'https:';
    this.mod = tls ? https : http;
    const common = { keepAlive: true, maxSockets: this.o.maxSockets, maxFreeSockets: 2 };
    this.agent = tls
      ? new https.Agent({ ...common, ca: conn.ca, cert: conn.cert, key: conn.key, rejectUnauthorized: !conn.insecure, servername: conn.serverName })
      : new http.Agent(common);
  }

  private url(path: string, query: Record<string, string | undefined> = {}): URL {
    const u = new URL(this.conn.server.href);
    u.pathname = u.pathname.replace(/\/$/, '') + path;
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, v);
    return u;
  }

  private request(url: URL): http.ClientRequest {
    const token = this.conn.token();
    return this.mod.request(url, {
      agent: this.agent, method: 'GET',
      headers: { accept: 'application/json', 'user-agent': 'strata-agent', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
  }

  /** GET path as JSON; a non-2xx answer rejects with its status and the Status' message */
  get<T>(path: string, query?: Record<string, string | undefined>, signal?: AbortSignal): Promise<T> {
    const url = this.url(path, query);
    const what = `GET ${url.pathname}`;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      let req: http.ClientRequest | undefined;
      const onAbort = () => fail(new KubeApiError(STRATA_ERR_KUBE_API, `${what}: aborted`));
      const fail = (e: unknown) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(e instanceof KubeApiError || e instanceof StrataError ? e : networkError(what, e));
        req?.destroy();
      };
      const succeed = (v: T) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      try {
        req = this.request(url);
      } catch (e) {
        fail(e);
        return;
      }
      const r = req;
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      r.setTimeout(this.o.timeoutMs, () => fail(new KubeApiError(STRATA_ERR_KUBE_API, `${what}: no answer for ${this.o.timeoutMs} ms`)));
      r.on('error', fail);
      r.on('response', (res) => {
        const ok = res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300;
        const cap = ok ? this.o.maxBodyBytes : MAX_ERROR_BODY;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > cap) {
            if (ok) fail(new KubeApiError(STRATA_ERR_KUBE_API, `${what}: the answer is larger than ${cap} bytes`));
            return;
          }
          chunks.push(c);
        });
        res.on('error', fail);
        res.on('close', () => {
          if (!res.complete) fail(new Error('the connection closed mid-answer'));
        });
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          if (!ok) {
            fail(statusError(what, res.statusCode ?? 0, body));
            return;
          }
          let v: T;
          try {
            v = JSON.parse(body) as T;
          } catch (e) {
            fail(new KubeApiError(STRATA_ERR_KUBE_API, `${what}: the answer is not JSON (${(e as Error).message})`, { statusCode: res.statusCode }));
            return;
          }
          succeed(v);
        });
      });
      r.end();
    });
  }

  /**
   * Watches path (watch=1 and query added): each line of the stream an event. A line may arrive in
   * any number of chunks, split anywhere (mid-UTF-8 too: lines are cut on the newline byte, which
   * no multi-byte UTF-8 sequence contains, and decoded whole).
   */
  watch(path: string, query: Record<string, string | undefined>, h: WatchHandlers): WatchRequest {
    const url = this.url(path, { ...query, watch: '1' });
    const what = `watch ${url.pathname}`;
    let settle: (end: WatchEnd | Error) => void = () => {};
    const done = new Promise<WatchEnd>((resolve, reject) => {
      let settled = false;
      settle = (end) => {
        if (settled) return;
        settled = true;
        if (end instanceof Error) reject(end);
        else resolve(end);
      };
    });
    let req: http.ClientRequest | undefined;
    const finish = (end: WatchEnd | Error) => {
      settle(end);
      req?.destroy();
    };
    try {
      req = this.request(url);
    } catch (e) {
      settle(e as Error);
      return { done, stop: () => {} };
    }
    const r = req;
    let idle = false;
    r.setTimeout(this.o.timeoutMs, () => {
      idle = true;
      finish('idle');
    });
    r.on('error', (e) => finish(idle ? 'idle' : networkError(what, e)));
    r.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= MAX_ERROR_BODY) chunks.push(c);
        });
        res.on('end', () => finish(statusError(what, status, Buffer.concat(chunks).toString('utf8'))));
        res.on('error', (e) => finish(networkError(what, e)));
        return;
      }
      h.onOpen?.();
      const lines = new LineBuffer(this.o.maxLineBytes);
      const bad = (msg: string) => {
        this.stats.badLines++;
        finish(new KubeApiError(STRATA_ERR_KUBE_WATCH, `${what}: ${msg}`));
      };
      const line = (buf: Buffer): boolean => {
        if (buf.length === 0 || (buf.length === 1 && buf[0] === 0x0d)) return true;
        let ev: unknown;
        try {
          ev = JSON.parse(buf.toString('utf8'));
        } catch {
          bad(`a line is not JSON (${buf.length} bytes)`);
          return false;
        }
        const e = ev as { type?: unknown; object?: unknown };
        if (typeof e?.type !== 'string' || !EVENT_TYPES.has(e.type) || typeof e.object !== 'object' || e.object === null) {
          bad(`a line is not a watch event (type ${JSON.stringify(e?.type)})`);
          return false;
        }
        h.onEvent(e.type as WatchEventType, e.object as KubeObject & KubeStatus);
        // an event handler may have stopped the watch
        return !r.destroyed;
      };
      res.on('data', (chunk: Buffer) => {
        if (!lines.push(chunk, line)) {
          if (!r.destroyed) bad(`a line is longer than ${this.o.maxLineBytes} bytes`);
        }
      });
      res.on('end', () => finish('closed'));
      res.on('error', (e) => finish(idle ? 'idle' : networkError(what, e)));
      // a connection reset mid-stream: 'aborted', then close without 'end'
      res.on('close', () => finish(res.complete ? 'closed' : networkError(what, new Error('the connection closed mid-stream'))));
    });
    r.end();
    return {
      done,
      stop: (err?: Error) => finish(err ?? 'stopped'),
    };
  }

  /** closes every socket */
  close(): void {
    this.agent.destroy();
  }
}

/**
 * Cuts a byte stream into lines at '\n', whatever the chunk boundaries (a multi-byte UTF-8
 * sequence never contains the newline byte, so a line is decoded whole). A line longer than
 * maxBytes is refused before it is held.
 */
export class LineBuffer {
  private readonly maxBytes: number;
  private readonly parts: Buffer[] = [];
  private pending = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** bytes of the line begun and not finished */
  get held(): number {
    return this.pending;
  }

  /**
   * Calls onLine for each complete line (without its '\n'); false from onLine stops. false: stopped
   * by onLine, or a line is over maxBytes (nothing more can be pushed).
   */
  push(chunk: Buffer, onLine: (line: Buffer) => boolean): boolean {
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) break;
      const piece = chunk.subarray(from, nl);
      if (this.pending + piece.length > this.maxBytes) return false;
      let whole = piece;
      if (this.parts.length > 0) {
        this.parts.push(piece);
        whole = Buffer.concat(this.parts, this.pending + piece.length);
        this.parts.length = 0;
        this.pending = 0;
      }
      if (!onLine(whole)) return false;
      from = nl + 1;
    }
    const rest = chunk.length - from;
    if (rest === 0) return true;
    if (this.pending + rest > this.maxBytes) return false;
    // copied: the chunk's memory is the socket's, held only until the line is complete
    this.parts.push(Buffer.from(chunk.subarray(from)));
    this.pending += rest;
    return true;
  }
}

function networkError(what: string, e: unknown): KubeApiError {
  if (e instanceof KubeApiError) return e;
  const err = e as NodeJS.ErrnoException;
  return new KubeApiError(STRATA_ERR_KUBE_API, `${what}: ${err?.message ?? String(e)}`, { cause: e });
}

function statusError(what: string, status: number, body: string): KubeApiError {
  let s: KubeStatus | undefined;
  try {
    s = JSON.parse(body) as KubeStatus;
  } catch {
    s = undefined;
  }
  const text = s?.message ?? (body.trim().split('\n')[0]?.slice(0, 200) || http.STATUS_CODES[status] || '');
  return new KubeApiError(STRATA_ERR_KUBE_API, `${what}: HTTP ${status}${text ? ` ${text}` : ''}`, { statusCode: status, reason: s?.reason });
}
