// A tiny Jaeger collector for tests: accepts POST /api/traces (application/x-thrift) on 127.0.0.1
// and keeps the batches, decoded with thriftrw and jaeger.thrift (jaeger-thrift-decode.ts). Can be
// stopped and started again on the same port (backend down / back), and scripted to fail, or to
// never answer, particular requests.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type DecodedBatch, decodeJaegerBatch } from './jaeger-thrift-decode.ts';

export interface ReceivedBatch {
  contentType: string | undefined;
  headers: IncomingMessage['headers'];
  body: Buffer;
  batch: DecodedBatch;
}

/** what request n (1-based, counted over restarts) gets: accepted, an HTTP status, or no answer */
export type HttpResponse = 'ok' | 'hang' | number;

export class JaegerReceiver {
  /** accepted batches only */
  readonly batches: ReceivedBatch[] = [];
  readonly errors: string[] = [];
  /** every POST /api/traces, answered or not */
  calls = 0;
  respond: (n: number) => HttpResponse = () => 'ok';
  port = 0;
  private server: Server | undefined;

  get url(): string {
    return `http://127.0.0.1:${this.port}/api/traces`;
  }

  /** listens on 127.0.0.1 (port 0 the first time, then the same port again) */
  async start(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** stops listening and drops open connections (answered or not), so that the next export fails */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url?.split('?')[0] !== '/api/traces') {
        res.writeHead(404).end();
        return;
      }
      const n = ++this.calls;
      const what = this.respond(n);
      if (what === 'hang') return; // until the client gives up or stop() drops the connection
      if (what !== 'ok') {
        res.writeHead(what).end(`scripted failure of request ${n}`);
        return;
      }
      const body = Buffer.concat(chunks);
      try {
        const batch = decodeJaegerBatch(body);
        this.batches.push({ contentType: req.headers['content-type'], headers: req.headers, body, batch });
        res.writeHead(202).end(); // what jaeger-collector answers
      } catch (err) {
        this.errors.push(String(err));
        res.writeHead(400).end(String(err));
      }
    });
  }
}
