// A tiny Jaeger collector for tests: accepts POST /api/traces (application/x-thrift) on 127.0.0.1
// and keeps the batches, decoded with thriftrw and jaeger.thrift (jaeger-thrift-decode.ts).
// Stoppable and restartable on the same port, scriptable to fail or hang particular requests.
import type { IncomingMessage } from 'node:http';
import { HttpReceiver } from './http-receiver.ts';
import { type DecodedBatch, decodeJaegerBatch } from './jaeger-thrift-decode.ts';

export type { HttpResponse } from './http-receiver.ts';

export interface ReceivedBatch {
  contentType: string | undefined;
  headers: IncomingMessage['headers'];
  body: Buffer;
  batch: DecodedBatch;
}

export class JaegerReceiver extends HttpReceiver {
  /** accepted batches only */
  readonly batches: ReceivedBatch[] = [];
  protected readonly path = '/api/traces';

  protected accept(req: IncomingMessage, body: Buffer): number {
    const batch = decodeJaegerBatch(body);
    this.batches.push({ contentType: req.headers['content-type'], headers: req.headers, body, batch });
    return 202; // what jaeger-collector answers
  }
}
