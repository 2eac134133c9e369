// HTTP/1.1 pipelining client for the lab, run inside the client netns:
//   node lab/pipeline.ts --host 10.244.1.10 --port 80 --path /a --path /b [--timeout-ms 10000]
// Opens ONE TCP connection, writes every request back to back in ONE write
// (`GET <p> HTTP/1.1\r\nHost: lab\r\n\r\n`, the last with `Connection: close`), reads until the
// server closes (or all responses are in, or the timeout), splits the byte stream into responses
// by their framing (Content-Length, chunked, or close-delimited) and prints one JSON line:
// [{status, path, headers, bodyBytes, body}] in the order the responses arrived.
// `path` is what the response says it answered: the app's JSON `path`, a `path=` line
// (raw10), the path in a /chunked/ line; '' when the body does not tell.
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

export interface PipelineResponse {
  status: number;
  path: string;
  /** Lower-cased header names; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** Length of the de-chunked body. */
  bodyBytes: number;
  /** The body as UTF-8, cut at BODY_PREVIEW characters. */
  body: string;
}

const BODY_PREVIEW = 4096;

/** The pipelined request bytes: GETs back to back, the last one with `Connection: close`. */
export function pipelineRequests(paths: readonly string[], host = 'lab'): string {
  return paths
    .map((p, i) => `GET ${p} HTTP/1.1\r\nHost: ${host}\r\n${i === paths.length - 1 ? 'Connection: close\r\n' : ''}\r\n`)
    .join('');
}

interface Parsed {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Splits a byte stream of HTTP/1.x responses (to GET requests). `closed`: the server has closed,
 * so a response without Content-Length or chunked framing ends at the end of the data.
 * Returns the complete responses and how many bytes they used; a partial tail is left over.
 */
export function splitResponses(buf: Buffer, closed: boolean): { responses: Parsed[]; used: number } {
  const responses: Parsed[] = [];
  let off = 0;
  for (;;) {
    const headEnd = buf.indexOf('\r\n\r\n', off);
    if (headEnd < 0) break;
    const lines = buf.subarray(off, headEnd).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new Error(`bad status line at byte ${off}: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
    const status = Number(m[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) continue;
      const k = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    let pos = headEnd + 4;
    let body: Buffer;
    if ((status >= 100 && status < 200) || status === 204 || status === 304) {
      body = Buffer.alloc(0);
    } else if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
      const dechunked = dechunk(buf, pos);
      if (!dechunked) break;
      body = dechunked.body;
      pos = dechunked.end;
    } else if (headers['content-length'] !== undefined) {
      const len = Number(headers['content-length']);
      if (buf.length < pos + len) break;
      body = buf.subarray(pos, pos + len);
      pos += len;
    } else {
      if (!closed) break;
      body = buf.subarray(pos);
      pos = buf.length;
    }
    off = pos;
    if (status >= 100 && status < 200) continue; // interim response: the final one follows
    responses.push({ status, headers, body });
  }
  return { responses, used: off };
}

/** Decodes a chunked body starting at `pos`; undefined when it is not complete yet. */
function dechunk(buf: Buffer, pos: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  for (;;) {
    const eol = buf.indexOf('\r\n', pos);
    if (eol < 0) return undefined;
    const size = Number.parseInt(buf.subarray(pos, eol).toString('latin1').split(';')[0] ?? '', 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size at byte ${pos}`);
    pos = eol + 2;
    if (size === 0) {
      // trailers, then an empty line
      for (;;) {
        const e = buf.indexOf('\r\n', pos);
        if (e < 0) return undefined;
        const empty = e === pos;
        pos = e + 2;
        if (empty) return { body: Buffer.concat(parts), end: pos };
      }
    }
    if (buf.length < pos + size + 2) return undefined;
    parts.push(buf.subarray(pos, pos + size));
    pos += size + 2;
  }
}

/** The path a lab response says it answered (see the header comment). */
export function reportedPath(body: Buffer): string {
  const text = body.toString('utf8');
  try {
    const j = JSON.parse(text) as { path?: unknown };
    if (typeof j.path === 'string') return j.path;
  } catch {
    // not JSON
  }
  const m = /^path=(\S*)$/m.exec(text) ?? /^chunk \d+\/\d+ (\S+) /m.exec(text);
  return m?.[1] ?? '';
}

export function toResult(r: Parsed): PipelineResponse {
  return {
    status: r.status,
    path: reportedPath(r.body),
    headers: r.headers,
    bodyBytes: r.body.length,
    body: r.body.toString('utf8').slice(0, BODY_PREVIEW),
  };
}

function pipeline(host: string, port: number, paths: string[], timeoutMs: number): Promise<PipelineResponse[]> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let done = false;
    const sock = connect({ host, port });
    const finish = (closed: boolean, err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const data = Buffer.concat(chunks);
      if (err && data.length === 0) return reject(err);
      try {
        resolve(splitResponses(data, closed).responses.map(toResult));
      } catch (e) {
        reject(e);
      }
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.setNoDelay(true);
    sock.on('connect', () => sock.write(pipelineRequests(paths)));
    sock.on('data', (b: Buffer) => {
      chunks.push(b);
      // All answers in: no need to wait for the close (a server may keep the connection).
      const data = Buffer.concat(chunks);
      try {
        if (splitResponses(data, false).responses.length >= paths.length) finish(false);
      } catch {
        // garbage: keep reading until close, the final parse reports it
      }
    });
    sock.on('end', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('error', (e) => finish(true, e));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      host: { type: 'string' },
      port: { type: 'string', default: '80' },
      path: { type: 'string', multiple: true, default: [] },
      'timeout-ms': { type: 'string', default: '10000' },
    },
  });
  if (!values.host) throw new Error('--host is required');
  if (values.path.length === 0) throw new Error('at least one --path is required');
  const results = await pipeline(values.host, Number(values.port), values.path, Number(values['timeout-ms']));
  process.stdout.write(`${JSON.stringify(results)}\n`);
}

if (import.meta.main) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  });
}
