// A SpanExporter that keeps the last traces in memory and writes them to a directory, for offline
// viewing: otlp-traces.json (an OTLP/JSON ExportTraceServiceRequest) and jaeger-traces.json (the
// Jaeger query API format, opened by the Jaeger UI's "Upload JSON").
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { toJaegerTraces } from './jaeger-json.ts';
import { defaultWarn, errorMessage, type LogFn, rateLimitedLog } from './log.ts';

export const OTLP_FILE = 'otlp-traces.json';
export const JAEGER_FILE = 'jaeger-traces.json';

export interface FileExporterOptions {
  dir: string;
  /** traces kept (the least recently updated trace goes first); default 10,000 */
  maxTraces?: number;
  /** spans kept per trace; default 10,000 */
  maxSpansPerTrace?: number;
  /** delay between an export() and the write it triggers; default 1000 ms */
  writeDelayMillis?: number;
  log?: LogFn;
  warnIntervalMillis?: number;
}

export interface FileExporterStats {
  tracesHeld: number;
  spansHeld: number;
  tracesDropped: number;
  spansDropped: number;
  writes: number;
  writeFailures: number;
  lastError?: string;
}

let tmpCounter = 0;

async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.${process.pid}.${++tmpCounter}.tmp`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => {});
    throw err;
  }
}

export class TraceFileExporter implements SpanExporter {
  readonly dir: string;
  private readonly traces = new Map<string, ReadableSpan[]>(); // insertion order = least recently updated first
  private readonly maxTraces: number;
  private readonly maxSpansPerTrace: number;
  private readonly writeDelayMillis: number;
  private readonly warn: LogFn;
  private spansHeld = 0;
  private dirty = true; // the first flush writes the files even when there is nothing to show
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly counters = { tracesDropped: 0, spansDropped: 0, writes: 0, writeFailures: 0 };
  private lastError: string | undefined;

  constructor(options: FileExporterOptions) {
    this.dir = options.dir;
    this.maxTraces = Math.max(1, options.maxTraces ?? 10_000);
    this.maxSpansPerTrace = Math.max(1, options.maxSpansPerTrace ?? 10_000);
    this.writeDelayMillis = Math.max(0, options.writeDelayMillis ?? 1000);
    this.warn = rateLimitedLog(options.log ?? defaultWarn, options.warnIntervalMillis ?? 10_000);
  }

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    if (this.stopped) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('TraceFileExporter is shut down') });
      return;
    }
    for (const span of spans) this.add(span);
    this.dirty = true;
    this.scheduleWrite();
    resultCallback({ code: ExportResultCode.SUCCESS });
  }

  private add(span: ReadableSpan): void {
    const traceId = span.spanContext().traceId;
    let list = this.traces.get(traceId);
    if (list) {
      this.traces.delete(traceId); // move to the most recent end
    } else {
      list = [];
      while (this.traces.size >= this.maxTraces) {
        const [oldId, old] = this.traces.entries().next().value as [string, ReadableSpan[]];
        this.traces.delete(oldId);
        this.spansHeld -= old.length;
        this.counters.tracesDropped++;
        this.counters.spansDropped += old.length;
      }
    }
    this.traces.set(traceId, list);
    if (list.length >= this.maxSpansPerTrace) {
      this.counters.spansDropped++;
      return;
    }
    list.push(span);
    this.spansHeld++;
  }

  private scheduleWrite(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.writeNow();
    }, this.writeDelayMillis);
    this.timer.unref();
  }

  /** all spans held, in trace order */
  spans(): ReadableSpan[] {
    const out: ReadableSpan[] = [];
    for (const list of this.traces.values()) out.push(...list);
    return out;
  }

  /** Writes both files if anything changed since the last write. Never rejects (failures are counted). */
  private writeNow(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const spans = this.spans();
      try {
        const otlp = JsonTraceSerializer.serializeRequest(spans) ?? new TextEncoder().encode('{"resourceSpans":[]}');
        const jaeger = JSON.stringify(toJaegerTraces(spans));
        await mkdir(this.dir, { recursive: true });
        await writeAtomic(join(this.dir, OTLP_FILE), otlp);
        await writeAtomic(join(this.dir, JAEGER_FILE), jaeger);
        this.counters.writes++;
      } catch (err) {
        this.dirty = true; // try again on the next write
        this.counters.writeFailures++;
        this.lastError = errorMessage(err);
        this.warn(`strata export: writing traces to ${this.dir} failed: ${this.lastError}`);
      }
    });
    return this.writing;
  }

  forceFlush(): Promise<void> {
    return this.writeNow();
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return this.writing;
    this.stopped = true;
    await this.writeNow();
  }

  stats(): FileExporterStats {
    return {
      tracesHeld: this.traces.size,
      spansHeld: this.spansHeld,
      ...this.counters,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }
}
