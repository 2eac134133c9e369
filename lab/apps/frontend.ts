// The lab's app pod: a small HTTP service.
//   any path      -> 200 {"service","path","method","bytes","requestId","traceparent"}
//   /status/<code> -> that status code, same body
//   /slow/<ms>     -> answers after <ms> milliseconds
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

const SERVICE = process.env.SERVICE_NAME ?? 'frontend';
const PORT = Number(process.env.PORT ?? 8080);

function header(req: IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  return typeof v === 'string' ? v : null;
}

function handle(req: IncomingMessage, res: ServerResponse, bytes: number): void {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
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
