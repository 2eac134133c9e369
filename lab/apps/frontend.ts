// The lab's app pod: a small HTTP service.
//   any path         -> 200 {"service","path","method","bytes","requestId","traceparent"}
//   /status/<code>   -> that status code, same body
//   /slow/<ms>       -> answers after <ms> milliseconds
//   /chunked/<n>     -> 200, Transfer-Encoding: chunked, n res.write() chunks of ~100 bytes
//                       (a setImmediate between writes), then res.end()
//   /big/<bytes>     -> 200, a text/plain body of exactly <bytes> bytes, with Content-Length
// The request body (any size) is always read completely; `bytes` is its length.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const SERVICE = process.env.SERVICE_NAME ?? 'frontend';
const PORT = Number(process.env.PORT ?? 8080);
const CHUNK_BYTES = 100;
const MAX_CHUNKS = 100_000;
const MAX_BIG = 256 * 1024 * 1024;

function header(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return typeof v === 'string' ? v : null;
}

/** Chunk i of n: a ~100-byte line that says where it belongs. */
export function chunkText(path: string, i: number, n: number): string {
  const s = `chunk ${i + 1}/${n} ${path} `;
  return `${s.padEnd(CHUNK_BYTES - 1, '.').slice(0, CHUNK_BYTES - 1)}\n`;
}

/** The /big/<bytes> body: a repeating printable pattern, so truncation or reordering shows. */
export function bigBody(bytes: number): Buffer {
  const pattern = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\n');
  const b = Buffer.allocUnsafe(bytes);
  for (let off = 0; off < bytes; off += pattern.length) pattern.copy(b, off, 0, Math.min(pattern.length, bytes - off));
  return b;
}

function sendChunked(res: ServerResponse, path: string, n: number): void {
  // No Content-Length and several writes: Node frames the body chunked (HTTP/1.1 requests).
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  let i = 0;
  const next = () => {
    if (res.destroyed) return;
    if (i >= n) {
      res.end();
      return;
    }
    res.write(chunkText(path, i++, n));
    setImmediate(next);
  };
  next();
}

function handle(req: IncomingMessage, res: ServerResponse, bytes: number): void {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  const chunkedMatch = /^\/chunked\/(\d+)$/.exec(path);
  if (chunkedMatch) return sendChunked(res, path, Math.min(Number(chunkedMatch[1]), MAX_CHUNKS));
  const bigMatch = /^\/big\/(\d+)$/.exec(path);
  if (bigMatch) {
    const body = bigBody(Math.min(Number(bigMatch[1]), MAX_BIG));
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': body.length });
    res.end(body);
    return;
  }
  const statusMatch = /^\/status\/(\d{3})$/.exec(path);
  const slowMatch = /^\/slow\/(\d+)$/.exec(path);
  const status = statusMatch ? Number(statusMatch[1]) : 200;
  const body = JSON.stringify({
    service: SERVICE,
    path,
    method: req.method,
    bytes,
    requestId: header(req, 'x-request-id'),
    traceparent: header(req, 'traceparent'),
  });
  const send = () => {
    res.writeHead(status, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  };
  if (slowMatch) setTimeout(send, Number(slowMatch[1]));
  else send();
}

if (import.meta.main) {
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    req.on('end', () => handle(req, res, bytes));
  });

  // Longer than nginx's upstream keepalive_timeout (60 s): if the app closed idle upstream
  // connections first, nginx could reuse one just as it closes and answer 502.
  server.keepAliveTimeout = 75_000;
  server.headersTimeout = 80_000;

  server.listen(PORT, '0.0.0.0', () => {
    console.log(`${SERVICE} listening on 0.0.0.0:${PORT} pid ${process.pid}`);
  });

  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}
