// Jaeger thrift over HTTP (POST <collector>/api/traces, application/x-thrift, a binary-protocol
// `Batch`) for legacy collectors, built on @opentelemetry/exporter-jaeger (which sends through
// jaeger-client's HTTPSender). Around it:
//  - one Jaeger process per resource: the SDK exporter names the process after the first span it
//    ever sees and sends all later spans under it, and copies resource attributes into every span's
//    tags. Here each distinct resource gets its own SDK exporter (an LRU of `maxProcesses`), whose
//    process carries service.name and the resource attributes as process tags; the spans it is given
//    carry only service.name as resource, so resource attributes are not repeated per span;
//  - calls to one SDK exporter are serialised: it appends to a single thrift batch per sender;
//  - retries with backoff within the export's timeout (retry.ts): the SDK exporter does not retry;
//  - a time limit: jaeger-client's request has none (its `timeout` is not acted upon), so an attempt
//    still running at the deadline fails, and its SDK exporter is shut down (which destroys its
//    sockets) and replaced.
// The exporter (jaeger-client, thriftrw: ~100 ms) is loaded when the first sender is built.
import { createRequire } from 'node:module';
import type { Attributes, AttributeValue } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import type { ExporterConfig, JaegerExporter } from '@opentelemetry/exporter-jaeger';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { errorMessage } from './log.ts';
import { defaultConfig } from '../config/schema.ts';
import { exportWithRetry, isRetryableHttpError, type RetryOptions, retryPolicy, InFlight } from './retry.ts';

const require = createRequire(import.meta.url);
const sdkExporter = () => (require('@opentelemetry/exporter-jaeger') as typeof import('@opentelemetry/exporter-jaeger')).JaegerExporter;

export const DEFAULT_JAEGER_THRIFT_URL = 'http://localhost:14268/api/traces';

export interface JaegerThriftExporterOptions {
  /** collector endpoint, e.g. http://jaeger-collector:14268/api/traces; user:password@ for basic auth */
  endpoint: string;
  /** per export, retries included (default 10 s) */
  timeoutMillis?: number;
  retry?: RetryOptions;
  /** resources (Jaeger processes) with a live sender, least recently used closed first; default 32 */
  maxProcesses?: number;
}

type JaegerSpanInput = Parameters<JaegerExporter['export']>[0][number];

interface Process {
  key: string;
  serviceName: string;
  tags: { key: string; value: string | number | boolean }[];
  /** what the spans handed to the SDK exporter carry as resource: service.name only */
  resource: Resource;
  exporter: JaegerExporter | undefined;
  /** calls to `exporter` run one after the other */
  tail: Promise<unknown>;
  /** out of the LRU: its sender is closed once its last call is done */
  evicted: boolean;
}

function tagValue(v: AttributeValue | undefined): string | number | boolean {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? v : String(v);
}

function resourceKey(attrs: Attributes): string {
  return JSON.stringify(
    Object.keys(attrs)
      .sort()
      .filter((k) => attrs[k] !== undefined)
      .map((k) => [k, attrs[k]]),
  );
}

/** the span as the SDK exporter should see it: same data, resource reduced to service.name */
function spanView(span: ReadableSpan, resource: Resource): ReadableSpan {
  const scope = span.instrumentationScope;
  return {
    name: span.name,
    kind: span.kind,
    spanContext: () => span.spanContext(),
    parentSpanContext: span.parentSpanContext,
    startTime: span.startTime,
    endTime: span.endTime,
    status: span.status,
    attributes: span.attributes,
    links: span.links,
    events: span.events,
    duration: span.duration,
    ended: span.ended,
    resource,
    // the SDK exporter turns an absent version into the tag value "undefined"
    instrumentationScope: { ...scope, version: scope.version ?? '' },
    droppedAttributesCount: span.droppedAttributesCount,
    droppedEventsCount: span.droppedEventsCount,
    droppedLinksCount: span.droppedLinksCount,
  };
}

export class JaegerThriftExporter implements SpanExporter {
  /** the endpoint without credentials */
  readonly endpoint: string;
  private readonly username: string | undefined;
  private readonly password: string | undefined;
  private readonly timeoutMillis: number;
  private readonly policy: Required<RetryOptions>;
  private readonly maxProcesses: number;
  private readonly processes = new Map<string, Process>(); // insertion order = LRU order
  private readonly keys = new WeakMap<Resource, string>();
  private readonly inFlight = new InFlight();
  private stopped = false;
  /** attempts repeated after a retryable failure */
  retries = 0;
  /** SDK exporters (senders) shut down: evicted from the LRU, replaced after an attempt timed out, or at shutdown */
  sendersClosed = 0;

  constructor(options: JaegerThriftExporterOptions) {
    let url: URL;
    try {
      url = new URL(options?.endpoint ?? '');
    } catch {
      throw new Error(`Jaeger endpoint is not a URL: ${String(options?.endpoint)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`Jaeger endpoint must be http(s): ${url.href}`);
    this.username = url.username ? decodeURIComponent(url.username) : undefined;
    this.password = url.password ? decodeURIComponent(url.password) : undefined;
    url.username = '';
    url.password = '';
    this.endpoint = url.href;
    this.timeoutMillis = options.timeoutMillis ?? defaultConfig({}, '').export.jaeger.timeoutMs;
    this.policy = retryPolicy(options.retry);
    this.maxProcesses = Math.max(1, options.maxProcesses ?? 32);
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('JaegerThriftExporter is shut down') });
      return;
    }
    const groups = new Map<Process, ReadableSpan[]>();
    for (const span of spans) {
      const p = this.processFor(span.resource);
      let list = groups.get(p);
      if (!list) groups.set(p, (list = []));
      list.push(spanView(span, p.resource));
    }
    const done = Promise.all([...groups].map(([p, list]) => this.send(p, list))).then((results) => {
      const failed = results.find((r) => r.code !== ExportResultCode.SUCCESS);
      resultCallback(failed ?? { code: ExportResultCode.SUCCESS });
    });
    this.inFlight.track(done);
  }

  private processFor(resource: Resource): Process {
    let key = this.keys.get(resource);
    if (key === undefined) {
      key = resourceKey(resource.attributes);
      this.keys.set(resource, key);
    }
    const hit = this.processes.get(key);
    if (hit) {
      this.processes.delete(key);
      this.processes.set(key, hit);
      return hit;
    }
    while (this.processes.size >= this.maxProcesses) {
      const oldest = this.processes.values().next().value as Process;
      this.processes.delete(oldest.key);
      oldest.evicted = true;
      this.closeWhenIdle(oldest);
    }
    const attrs = resource.attributes;
    const name = attrs['service.name'];
    const serviceName = typeof name === 'string' && name !== '' ? name : 'unknown_service';
    const p: Process = {
      key,
      serviceName,
      tags: Object.keys(attrs)
        .filter((k) => k !== 'service.name' && attrs[k] !== undefined)
        .map((k) => ({ key: k, value: tagValue(attrs[k]) })),
      resource: resourceFromAttributes({ 'service.name': serviceName }),
      exporter: undefined,
      tail: Promise.resolve(),
      evicted: false,
    };
    this.processes.set(key, p);
    return p;
  }

  private newSdkExporter(p: Process): JaegerExporter {
    // fields beyond ExporterConfig are read by jaeger-client's HTTPSender
    const config: ExporterConfig & { timeoutMs: number } = {
      endpoint: this.endpoint,
      username: this.username,
      password: this.password,
      tags: p.tags,
      // bounds the flush in shutdown(), which has nothing left to send: each export sends its batch
      // before it reports (the timer is not unref'd: keep it short)
      flushTimeout: 100,
      timeoutMs: this.timeoutMillis,
    };
    return new (sdkExporter())(config);
  }

  private send(p: Process, spans: ReadableSpan[]): Promise<ExportResult> {
    const onRetry = () => {
      this.retries++;
    };
    const run = () =>
      exportWithRetry((_remaining, signal) => this.attempt(p, spans, signal), isRetryableHttpError, this.timeoutMillis, this.policy, {
        onRetry,
      }).then((o) => o.result);
    const result = p.tail.then(run, run);
    p.tail = result;
    // spans of one export() can reach a process that a later span of the same call evicted
    if (p.evicted) this.closeWhenIdle(p);
    return result;
  }

  private attempt(p: Process, spans: ReadableSpan[], signal: AbortSignal): Promise<ExportResult> {
    p.exporter ??= this.newSdkExporter(p);
    const exporter = p.exporter;
    return new Promise((resolve) => {
      // timed out: close this sender (its request has no time limit of its own); the next attempt
      // gets a new one
      const onAbort = () => {
        if (p.exporter === exporter) p.exporter = undefined;
        this.close(exporter);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      exporter.export(spans as JaegerSpanInput[], (result) => {
        signal.removeEventListener('abort', onAbort);
        // jaeger-client reports failures as strings
        if (result.code !== ExportResultCode.SUCCESS && !(result.error instanceof Error)) {
          result = { code: result.code, error: new Error(errorMessage(result.error ?? 'Jaeger export failed')) };
        }
        resolve(result);
      });
    });
  }

  private close(exporter: JaegerExporter): void {
    this.sendersClosed++;
    this.inFlight.track(exporter.shutdown().catch(() => {}));
  }

  /** closes an evicted process's sender when no call to it is queued any more */
  private closeWhenIdle(p: Process): void {
    const tail = p.tail;
    const check = () => {
      if (p.tail !== tail || !p.exporter) return;
      const exporter = p.exporter;
      p.exporter = undefined;
      this.close(exporter);
    };
    this.inFlight.track(tail.then(check, check));
  }

  /** waits for the exports in flight (retries included) */
  async forceFlush(): Promise<void> {
    await this.inFlight.drain();
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.forceFlush();
    for (const p of this.processes.values()) {
      if (p.exporter) this.close(p.exporter);
      p.exporter = undefined;
    }
    this.processes.clear();
    await this.forceFlush();
  }
}
