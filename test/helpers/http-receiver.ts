// A scriptable HTTP receiver on 127.0.0.1 for exporter tests: POSTs to one path are decoded by the
// subclass and kept; it can be stopped and started again on the same port (backend down / back),
// and told to fail, or to never answer, particular requests.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** what request n (1-based, counted over restarts) gets: accepted, an HTTP status, or no answer */
export type HttpResponse = 'ok' | 'hang' | number;

export abstract class HttpReceiver {
  readonly errors: string[] = [];
  /** every POST to the path, answered or not */
  calls = 0;
  respond: (n: number) => HttpResponse = () => 'ok';
  port = 0;
  private server: Server | undefined;
  protected abstract readonly path: string;

  get url(): string {
    return `http://127.0.0.1:${this.port}${this.path}`;
  }

  /** decodes and keeps an accepted body; returns the success status to answer */
  protected abstract accept(req: IncomingMessage, body: Buffer): number;

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
      if (req.method !== 'POST' || req.url?.split('?')[0] !== this.path) {
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
      try {
        res.writeHead(this.accept(req, Buffer.concat(chunks))).end();
      } catch (err) {
        this.errors.push(String(err));
        res.writeHead(400).end(String(err));
      }
    });
  }
}
