// The instrumented mode of lab/apps/hotrod.ts: the OpenTelemetry Node SDK with the http
// instrumentation, as a user would add it. SERVER and CLIENT spans for every request, W3C
// traceparent read and propagated, spans exported over OTLP/HTTP (protobuf) to
// OTEL_EXPORTER_OTLP_ENDPOINT (the lab relays it to this machine's loopback); without an endpoint
// the spans are made and propagated, not exported. The resource comes from OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES (the lab sets k8s.pod.name, k8s.namespace.name, k8s.node.name).
import { createRequire } from 'node:module';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { defaultResource, detectResources, envDetector } from '@opentelemetry/resources';
import { BatchSpanProcessor, NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

let provider: NodeTracerProvider | undefined;

export function start(): void {
  const exporting = Boolean(process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
  provider = new NodeTracerProvider({
    resource: defaultResource().merge(detectResources({ detectors: [envDetector] })),
    // the batch delay comes from OTEL_BSP_SCHEDULE_DELAY
    spanProcessors: exporting ? [new BatchSpanProcessor(new OTLPTraceExporter())] : [],
  });
  // the context manager (AsyncLocalStorage) and the W3C propagators
  provider.register();
  new HttpInstrumentation({ ignoreIncomingRequestHook: (req) => req.url === '/healthz' });
  // The instrumentation patches `http` when it is required; the app imported it as an ES module
  // (the same object), so require it once here to have it patched before the server starts.
  createRequire(import.meta.url)('node:http');
}

/** exports what is pending; called on SIGTERM */
export async function shutdown(): Promise<void> {
  await provider?.shutdown();
}
