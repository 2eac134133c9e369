// A tiny OTLP/HTTP traces receiver for tests: accepts POST /v1/traces on 127.0.0.1 and keeps the
// requests, decoded with the OTLP protobuf schema. Stoppable and restartable on the same port,
// scriptable to fail or hang particular requests (http-receiver.ts).
import type { IncomingMessage } from 'node:http';
import { HttpReceiver } from './http-receiver.ts';
import { type DecodedResourceSpans, decodeExportTraceServiceRequest } from './otlp-decode.ts';

export type { HttpResponse } from './http-receiver.ts';

export interface ReceivedRequest {
  contentType: string | undefined;
  headers: IncomingMessage['headers'];
  body: Buffer;
  decoded: DecodedResourceSpans[];
}

export class OtlpReceiver extends HttpReceiver {
  /** accepted requests only */
  readonly requests: ReceivedRequest[] = [];
  protected readonly path = '/v1/traces';

  protected accept(req: IncomingMessage, body: Buffer): number {
    const decoded = decodeExportTraceServiceRequest(body);
    this.requests.push({ contentType: req.headers['content-type'], headers: req.headers, body, decoded });
    return 200; // an empty ExportTraceServiceResponse
  }
}
