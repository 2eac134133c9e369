// SpanSink in front of the OpenTelemetry SDK's export machinery: each SpanRecord becomes a
// ReadableSpan (readable-span.ts) with exactly the record's ids, parent, times, kind, attributes,
// events and status, and goes to every exporter's own BatchSpanProcessor (bounded, counted).
// Resources are built once per distinct resource (resourceFromAttributes) and cached by content,
// bounded (LRU).
// The options are the sink's slice of the validated configuration: no defaults here.
import { type Context, isValidSpanId, isValidTraceId } from '@opentelemetry/api';
import { type ExportResult, ExportResultCode, type InstrumentationScope } from '@opentelemetry/core';
import { type Resource, resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { LRUCache } from 'lru-cache';
import { defaultWarn, errorMessage, type LogFn, rateLimitedLog } from './log.ts';
import { RecordSpan } from './readable-span.ts';
import type { SpanRecord, SpanResource, SpanSink } from './types.ts';
import { LRU_OPTS } from '../lru.ts';

export interface BatchOptions {
  /** spans held per exporter before new ones are dropped (counted in stats().spansDroppedQueueFull) */
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMillis: number;
  /** one export call may take this long before it counts as failed; also bounds flush() and shutdown() */
  exportTimeoutMillis: number;
  /** export calls in flight at once per exporter (the batch processor starts one at a time) */
  maxConcurrentExports?: number;
  /**
   * estimated heap bytes of the spans one exporter holds (queued or in an export call) before new
   * ones are dropped (counted like a full queue); default: no bound beyond maxQueueSize
   */
  maxQueueBytes?: number;
  /**
   * past this fill of the fullest queue (0..1) whole traces are shed by trace id rather than spans
   * lost at the bound; 1 = never; default 0.5
   */
  shedFromFill?: number;
}

export interface SdkSinkOptions {
  exporters: SpanExporter[];
  batch: BatchOptions;
  /** distinct resources kept built (LRU) */
  maxResources: number;
  /** where warnings go (default: stderr); at most one line per 10 s */
  log?: LogFn;
}

/** the instrumentation scope of every span strata emits */
export const SCOPE: InstrumentationScope = Object.freeze({ name: 'strata' });
/** repeated warnings: one line per this interval, never one per span */
const WARN_INTERVAL_MS = 10_000;

export interface SdkSinkStats {
  /** valid spans emitted: handed to the export pipelines, or counted as dropped when every queue was full */
  spansEmitted: number;
  /** records refused before reaching the SDK: invalid ids, or emitted after shutdown() */
  spansRejected: number;
  /** the resource cache (named after the TracerProviders it replaced): built, evicted, held now */
  providersCreated: number;
  providersEvicted: number;
  providersCached: number;
  /** summed over exporters: a span sent to two exporters counts twice below */
  exportsSucceeded: number;
  exportsFailed: number;
  spansExported: number;
  /**
   * spans of whole traces not exported on purpose, because the export queues were past half full
   * (a backlog from before the kernel's shedding caught up): a share of trace ids, the same for
   * every span of a trace, growing to all of them as the fullest queue nears its bound
   */
  spansShed: number;
  /** spans lost: failed exports + queue overflow */
  spansDropped: number;
  spansDroppedQueueFull: number;
  exporters: ExporterStats[];
}

export interface ExporterStats {
  name: string;
  exportsSucceeded: number;
  exportsFailed: number;
  spansExported: number;
  spansDropped: number;
  spansDroppedQueueFull: number;
  /** spans of whole traces not handed to this exporter on purpose (SdkSpanSinkStats.spansShed) */
  spansShed: number;
  /** spans waiting in this exporter's batch queue */
  queued: number;
  /** estimated heap bytes of the spans this exporter holds: queued and in export calls (spanHeapBytes) */
  heldBytes: number;
  lastError?: string;
  /** how long export calls took (for strata_export_duration_seconds) */
  exportLatencyMs: ExportLatencyStats;
}

/** upper bounds, in ms, of the export latency histogram buckets */
export const EXPORT_LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([1, 5, 10, 50, 100, 500, 1000, 5000]);

/**
 * Wall-clock duration of this exporter's export calls: from the batch processor handing a batch to
 * the exporter until the exporter reports the result, retries inside the exporter included, successes
 * and failures alike (a call that never reports counts with exportTimeoutMillis, as failed).
 * Shaped like a Prometheus histogram: `buckets[i]` is the number of calls that took at most
 * `bucketsMs[i]` ms (cumulative, like `le`); `count` is the +Inf bucket. Divide by 1000 for seconds.
 */
export interface ExportLatencyStats {
  /** EXPORT_LATENCY_BUCKETS_MS */
  bucketsMs: readonly number[];
  /** cumulative: calls with duration <= bucketsMs[i] */
  buckets: number[];
  /** all calls */
  count: number;
  sumMs: number;
  /** duration of the most recent call (0 before the first) */
  lastMs: number;
  /** slowest call so far (0 before the first) */
  maxMs: number;
}

function newLatencyStats(): ExportLatencyStats {
  return { bucketsMs: EXPORT_LATENCY_BUCKETS_MS, buckets: EXPORT_LATENCY_BUCKETS_MS.map(() => 0), count: 0, sumMs: 0, lastMs: 0, maxMs: 0 };
}

function observeLatency(l: ExportLatencyStats, ms: number): void {
  l.count++;
  l.sumMs += ms;
  l.lastMs = ms;
  if (ms > l.maxMs) l.maxMs = ms;
  for (let i = l.bucketsMs.length - 1; i >= 0 && ms <= (l.bucketsMs[i] as number); i--) {
    l.buckets[i] = (l.buckets[i] as number) + 1;
  }
}

/** export queues fuller than this shed whole traces (SdkSpanSink.emit), by default */
const SHED_FROM_FILL = 0.5;

/** a trace id's place in 0..1, from its low 32 bits (the random part of W3C and of strata's ids) */
function traceHash(traceId: string): number {
  return Number.parseInt(traceId.slice(24), 16) / 2 ** 32;
}

/** trace ids of shed traces remembered (SdkSpanSink.shed): a trace's late spans follow its first */
const SHED_TRACES_REMEMBERED = 4096;

/** the BatchSpanProcessor's own export timeout is this much later than the pipeline's */
const BSP_TIMEOUT_MARGIN_MS = 1000;

/**
 * One exporter behind its own BatchSpanProcessor. Wraps the processor to count what the SDK would
 * drop silently (queue overflow) and wraps the exporter to count export results.
 */
class ExportPipeline implements SpanProcessor {
  readonly stats: ExporterStats;
  private readonly bsp: BatchSpanProcessor;
  private readonly exporter: SpanExporter;
  private readonly maxQueueSize: number;
  private readonly maxQueueBytes: number;
  private closed = false;
  /** export calls not finished yet (forceFlush waits for them) */
  private readonly inflight = new Set<Promise<void>>();

  constructor(exporter: SpanExporter, batch: BatchOptions, warn: LogFn) {
    this.exporter = exporter;
    this.maxQueueSize = batch.maxQueueSize;
    this.maxQueueBytes = batch.maxQueueBytes ?? Number.POSITIVE_INFINITY;
    const maxConcurrent = Math.max(1, batch.maxConcurrentExports ?? 1);
    const inflight = this.inflight;
    const stats: ExporterStats = {
      name: exporter.constructor?.name || 'SpanExporter',
      exportsSucceeded: 0,
      exportsFailed: 0,
      spansExported: 0,
      spansDropped: 0,
      spansDroppedQueueFull: 0,
      spansShed: 0,
      queued: 0,
      heldBytes: 0,
      exportLatencyMs: newLatencyStats(),
    };
    this.stats = stats;
    const exportTimeoutMillis = batch.exportTimeoutMillis;
    /** exports waiting for a slot (at most one from the batch loop; a flush hands over all at once) */
    const jobs: (() => void)[] = [];
    let running = 0;
    const pump = () => {
      while (running < maxConcurrent && jobs.length) {
        running++;
        (jobs.shift() as () => void)();
      }
    };
    const start = (spans: ReadableSpan[], resultCallback: (result: ExportResult) => void) => {
      // leaves the queue now (the batch processor's, then ours); its bytes are held until the end
      stats.queued -= spans.length;
      let bytes = 0;
      for (let i = 0; i < spans.length; i++) bytes += (spans[i] as RecordSpan).heapBytes ?? 0;
      const started = performance.now();
      let done = false;
      let settle!: () => void;
      const settled = new Promise<void>((r) => {
        settle = r;
      });
      inflight.add(settled);
      // The BatchSpanProcessor (sdk-trace 2.x) is told every export succeeded, and as soon as it
      // started: the result is counted below, and the processor may hand over its next batch,
      // which waits here for a slot (maxConcurrentExports). Reporting a failure to it is unsafe:
      // on a failed export its flush loop starts the next batch in .finally() and then clears
      // _isExporting in .catch(), with that batch still in flight; through an outage under
      // traffic exports piled up (each holding its batch through its retries) until the SDK's OTLP
      // exporter refused more ("Concurrent export limit reached", 30).
      resultCallback({ code: ExportResultCode.SUCCESS });
      // the BatchSpanProcessor gives up on an export after exportTimeoutMillis without telling
      // anyone: count it then, as failed (a result coming later is ignored)
      const timer = setTimeout(() => {
        finish({ code: ExportResultCode.FAILED, error: new Error(`export timed out after ${exportTimeoutMillis} ms`) });
      }, exportTimeoutMillis);
      timer.unref();
      const finish = (result: ExportResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        observeLatency(stats.exportLatencyMs, performance.now() - started);
        stats.heldBytes -= bytes;
        if (result.code === ExportResultCode.SUCCESS) {
          stats.exportsSucceeded++;
          stats.spansExported += spans.length;
        } else {
          stats.exportsFailed++;
          stats.spansDropped += spans.length;
          stats.lastError = errorMessage(result.error ?? 'export failed');
          warn(`strata export: ${stats.name} failed to export ${spans.length} spans: ${stats.lastError}`);
        }
        inflight.delete(settled);
        settle();
        running--;
        pump();
      };
      try {
        exporter.export(spans, finish);
      } catch (err) {
        finish({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
      }
    };
    const counting: SpanExporter = {
      export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
        jobs.push(() => start(spans, resultCallback));
        pump();
      },
      shutdown: () => exporter.shutdown(),
      forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
    };
    // the BSP's own export timeout rejects (same race as a failure): ours above fires first
    this.bsp = new BatchSpanProcessor(counting, { ...batch, exportTimeoutMillis: exportTimeoutMillis + BSP_TIMEOUT_MARGIN_MS });
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.closed) return;
    if ((span.spanContext().traceFlags & 1) === 0) return; // not sampled: the BSP ignores it too
    if (this.stats.queued >= this.maxQueueSize || this.stats.heldBytes >= this.maxQueueBytes) {
      // the BSP's own bound (counted here, silent there), or the memory bound
      this.stats.spansDroppedQueueFull++;
      this.stats.spansDropped++;
      return;
    }
    this.stats.queued++;
    this.stats.heldBytes += (span as RecordSpan).heapBytes ?? 0;
    this.bsp.onEnd(span);
  }

  /** how close to full, 0..1: the larger of the span and the byte share */
  get fill(): number {
    return Math.max(this.stats.queued / this.maxQueueSize, this.stats.heldBytes / this.maxQueueBytes);
  }

  /** true when onEnd() would drop a sampled span: the queue is at maxQueueSize or maxQueueBytes */
  get full(): boolean {
    return !this.closed && (this.stats.queued >= this.maxQueueSize || this.stats.heldBytes >= this.maxQueueBytes);
  }

  /** a sampled span dropped before it was built, because every pipeline was full */
  dropQueueFull(): void {
    this.stats.spansDroppedQueueFull++;
    this.stats.spansDropped++;
  }

  /** exports what is queued, then lets the exporter finish its own pending work (files, requests) */
  async forceFlush(): Promise<void> {
    if (this.closed) return;
    let failure: unknown;
    try {
      await this.bsp.forceFlush();
    } catch (err) {
      failure = err ?? new Error('flush failed');
    }
    // exports released early (maxConcurrentExports) may still be running; each ends by its timeout
    while (this.inflight.size) await Promise.all([...this.inflight]);
    await this.exporter.forceFlush?.();
    if (failure !== undefined) throw failure;
  }

  shutdown(): Promise<void> {
    this.closed = true;
    return this.bsp.shutdown();
  }
}

/** cache key of a resource: service name + attributes, independent of attribute order */
function computeResourceKey(r: SpanResource): string {
  const keys = Object.keys(r.attributes).sort();
  const parts: unknown[] = [r.serviceName];
  for (const k of keys) {
    const v = r.attributes[k];
    if (v !== undefined) parts.push(k, v);
  }
  return JSON.stringify(parts);
}

export class SdkSpanSink implements SpanSink {
  private readonly pipelines: ExportPipeline[];
  private readonly resources: LRUCache<string, Resource>;
  /** content key of each resource descriptor seen (the mapper reuses its descriptors) */
  private readonly resourceKeys = new WeakMap<SpanResource, string>();
  private readonly warn: LogFn;
  private readonly flushTimeoutMillis: number;
  private readonly shedFrom: number;
  /**
   * the keep bound on trace hashes (1: keep all), taken once per turn of the event loop: every
   * span a turn emits is decided against the same bound, so the spans of a local trace (released
   * together) share one fate while the queue's fill moves under them
   */
  private keepBelow: number | undefined;
  private readonly clearKeepBelow = () => {
    this.keepBelow = undefined;
  };
  /** traces shed lately: a span of one of them emitted in a later turn is shed too */
  private readonly shedTraces = new LRUCache<string, true>({ max: SHED_TRACES_REMEMBERED });
  private shutDown = false;
  private readonly counters = {
    spansEmitted: 0,
    spansShed: 0,
    spansRejected: 0,
    providersCreated: 0,
    providersEvicted: 0,
  };

  constructor(options: SdkSinkOptions) {
    if (!options || !Array.isArray(options.exporters) || options.exporters.length === 0) {
      throw new Error('SdkSpanSink: at least one exporter is required');
    }
    this.flushTimeoutMillis = options.batch.exportTimeoutMillis;
    this.shedFrom = Math.min(1, Math.max(0, options.batch.shedFromFill ?? SHED_FROM_FILL));
    this.warn = rateLimitedLog(options.log ?? defaultWarn, WARN_INTERVAL_MS);
    const batch = { ...options.batch };
    if (batch.maxExportBatchSize > batch.maxQueueSize) batch.maxExportBatchSize = batch.maxQueueSize;
    this.pipelines = options.exporters.map((e) => new ExportPipeline(e, batch, this.warn));
    this.resources = new LRUCache<string, Resource>({
      max: Math.max(1, options.maxResources),
      disposeAfter: (_r, _k, reason) => {
        if (reason === 'evict') this.counters.providersEvicted++;
      },
    });
  }

  emit(span: SpanRecord): void {
    try {
      this.emitUnsafe(span);
    } catch (err) {
      this.counters.spansRejected++;
      this.warn(`strata export: span ${span?.name} dropped: ${errorMessage(err)}`);
    }
  }

  private emitUnsafe(r: SpanRecord): void {
    if (this.shutDown) {
      this.counters.spansRejected++;
      return;
    }
    if (!isValidTraceId(r.traceId) || !isValidSpanId(r.spanId)) {
      throw new Error(`invalid ids trace=${r.traceId} span=${r.spanId}`);
    }
    if (r.parentSpanId !== undefined && !isValidSpanId(r.parentSpanId)) {
      throw new Error(`invalid parent span id ${r.parentSpanId}`);
    }
    if (!isHrTime(r.start) || !isHrTime(r.end)) {
      throw new Error(`invalid times start=${String(r.start)} end=${String(r.end)}`);
    }
    // past half full: whole traces are shed, by trace id, rather than spans lost at random at
    // the bound (the ratio falls from 1 at half full to 0 at full)
    if (this.shedFrom < 1 && this.shed(r.traceId)) {
      this.counters.spansShed++;
      this.counters.spansEmitted++;
      for (const p of this.pipelines) p.stats.spansShed++;
      return;
    }
    // every queue full (the backend down under a burst): count the drop without building a span
    // that onEnd() would throw away; that work is what made the JS thread fall behind the ring
    // buffer during an outage burst
    if (this.pipelines.every((p) => p.full)) {
      if ((r.traceFlags & 1) !== 0) for (const p of this.pipelines) p.dropQueueFull();
      this.counters.spansEmitted++;
      return;
    }
    const span = new RecordSpan(r, this.resourceFor(r.resource), SCOPE);
    for (const p of this.pipelines) p.onEnd(span);
    this.counters.spansEmitted++;
  }

  private resourceFor(resource: SpanResource): Resource {
    let key = this.resourceKeys.get(resource);
    if (key === undefined) {
      key = computeResourceKey(resource);
      this.resourceKeys.set(resource, key);
    }
    const hit = this.resources.get(key, LRU_OPTS);
    if (hit) return hit;
    const built = resourceFromAttributes({ ...resource.attributes, 'service.name': resource.serviceName });
    this.resources.set(key, built);
    this.counters.providersCreated++;
    return built;
  }

  /** how full the fullest exporter's queue is, 0..1 (spans or estimated bytes) */
  /** whether the export queues are too full for this trace (the same answer for all its spans) */
  private shed(traceId: string): boolean {
    if (this.keepBelow === undefined) {
      const fill = this.backlog();
      this.keepBelow = fill > this.shedFrom ? (1 - fill) / (1 - this.shedFrom) : 1;
      queueMicrotask(this.clearKeepBelow);
    }
    if (traceHash(traceId) < this.keepBelow) return this.shedTraces.size > 0 && this.shedTraces.has(traceId);
    this.shedTraces.set(traceId, true);
    return true;
  }

  backlog(): number {
    let f = 0;
    for (const p of this.pipelines) f = Math.max(f, p.fill);
    return f;
  }

  /** Exports everything pending. Never rejects: failures are counted in stats(). */
  async flush(): Promise<void> {
    await Promise.all(this.pipelines.map((p) => this.guard(p.forceFlush(), p.stats.name, 'flush')));
  }

  /** Flushes and shuts the exporters down. Never rejects. Later emit() calls are counted as rejected. */
  async shutdown(): Promise<void> {
    if (this.shutDown) return;
    this.shutDown = true;
    await Promise.all(this.pipelines.map((p) => this.guard(p.shutdown(), p.stats.name, 'shutdown')));
  }

  private async guard(work: Promise<void>, name: string, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.flushTimeoutMillis);
      timer.unref();
    });
    try {
      const r = await Promise.race([work.then(() => 'ok' as const), timeout]);
      if (r === 'timeout') this.warn(`strata export: ${name} ${what} timed out after ${this.flushTimeoutMillis} ms`);
    } catch (err) {
      // failures were counted by the pipeline when the exporter reported them
      this.warn(`strata export: ${name} ${what} failed: ${errorMessage(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  stats(): SdkSinkStats {
    const exporters = this.pipelines.map((p) => ({
      ...p.stats,
      exportLatencyMs: { ...p.stats.exportLatencyMs, buckets: [...p.stats.exportLatencyMs.buckets] },
    }));
    const sum = (f: (s: ExporterStats) => number) => exporters.reduce((a, s) => a + f(s), 0);
    return {
      ...this.counters,
      providersCached: this.resources.size,
      exportsSucceeded: sum((s) => s.exportsSucceeded),
      exportsFailed: sum((s) => s.exportsFailed),
      spansExported: sum((s) => s.spansExported),
      spansDropped: sum((s) => s.spansDropped),
      spansDroppedQueueFull: sum((s) => s.spansDroppedQueueFull),
      exporters,
    };
  }
}

function isHrTime(t: unknown): t is [number, number] {
  return (
    Array.isArray(t) &&
    t.length === 2 &&
    Number.isSafeInteger(t[0]) &&
    t[0] >= 0 &&
    Number.isInteger(t[1]) &&
    t[1] >= 0 &&
    t[1] < 1_000_000_000
  );
}
