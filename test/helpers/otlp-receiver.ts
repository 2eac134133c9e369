// A tiny OTLP/HTTP traces receiver for tests: accepts POST /v1/traces on 127.0.0.1 and keeps the
// decoded requests. Can be stopped and started again on the same port (backend down / back), and
// scripted to fail, or to never answer, particular requests.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type DecodedResourceSpans, decodeExportTraceServiceRequest } from './otlp-decode.ts';

export interface ReceivedRequest {
  contentType: string | undefined;
  headers: IncomingMessage['headers'];
  body: Buffer;
  decoded: DecodedResourceSpans[];
}

/** what request n (1-based, counted over restarts) gets: accepted, an HTTP status, or no answer */
export type HttpResponse = 'ok' | 'hang' | number;

export class OtlpReceiver {
  /** accepted requests only */
  readonly requests: ReceivedRequest[] = [];
  readonly errors: string[] = [];
  /** every POST /v1/traces, answered or not */
  calls = 0;
  respond: (n: number) => HttpResponse = () => 'ok';
  port = 0;
  private server: Server | undefined;

  get url(): string {
    return `http://127.0.0.1:${this.port}/v1/traces`;
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
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      const n = ++this.calls;
      const what = this.respond(n);
      if (what === 'hang') return; // until the client gives up or stop() drops the connection
      if (what !== 'ok') {
        res.writeHead(what).end();
        return;
      }
      const body = Buffer.concat(chunks);
      try {
        const decoded = decodeExportTraceServiceRequest(body);
        this.requests.push({ contentType: req.headers['content-type'], headers: req.headers, body, decoded });
        // an empty ExportTraceServiceResponse
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      } catch (err) {
        this.errors.push(String(err));
        res.writeHead(400).end();
      }
    });
  }
}
