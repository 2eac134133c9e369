// A tiny OTLP/gRPC traces receiver for tests: serves
// opentelemetry.proto.collector.trace.v1.TraceService/Export on 127.0.0.1 with @grpc/grpc-js and
// keeps the requests, decoded with the real OTLP schema (otlp-decode.ts). The request deserializer
// hands over the raw protobuf bytes, so nothing of the exporter under test is used to decode them.
// Can be stopped and started again on the same port (backend down / back), and scripted to fail,
// or to never answer, particular calls.
import * as grpc from '@grpc/grpc-js';
import { type DecodedResourceSpans, decodeExportTraceServiceRequest } from './otlp-decode.ts';

export const TRACE_SERVICE_EXPORT = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

export interface ReceivedGrpcRequest {
  metadata: Record<string, grpc.MetadataValue>;
  body: Buffer;
  decoded: DecodedResourceSpans[];
}

/** what call number n (1-based, counted over restarts) gets: accepted, a gRPC status, or no answer */
export type GrpcResponse = 'ok' | 'hang' | grpc.status;

const identity = (b: Buffer) => b;

const TRACE_SERVICE: grpc.ServiceDefinition = {
  Export: {
    path: TRACE_SERVICE_EXPORT,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
};

export class OtlpGrpcReceiver {
  /** accepted requests only */
  readonly requests: ReceivedGrpcRequest[] = [];
  readonly errors: string[] = [];
  /** every call that reached the handler, answered or not */
  calls = 0;
  respond: (n: number) => GrpcResponse = () => 'ok';
  port = 0;
  private server: grpc.Server | undefined;

  /** http://127.0.0.1:port, the form the OTLP/gRPC exporter takes (http: plaintext) */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** listens on 127.0.0.1 (port 0 the first time, then the same port again) */
  async start(): Promise<void> {
    const server = new grpc.Server();
    server.addService(TRACE_SERVICE, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => this.handle(call, callback),
    });
    this.port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${this.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port)));
    });
    this.server = server;
  }

  /** stops at once: open calls are cancelled and connections dropped, so the next export fails */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.forceShutdown();
  }

  private handle(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void {
    const n = ++this.calls;
    const what = this.respond(n);
    if (what === 'hang') return; // cancelled by the client's deadline or by stop()
    if (what !== 'ok') {
      callback({ code: what, details: `scripted failure of call ${n}` });
      return;
    }
    const body = call.request;
    try {
      const decoded = decodeExportTraceServiceRequest(body);
      this.requests.push({ metadata: call.metadata.getMap(), body, decoded });
      // an empty ExportTraceServiceResponse
      callback(null, Buffer.alloc(0));
    } catch (err) {
      this.errors.push(String(err));
      callback({ code: grpc.status.INVALID_ARGUMENT, details: String(err) });
    }
  }
}
