// One side of bench/correlator.ts, in its own process: loads the span pipeline of the tree at
// --root (its bench/pipeline-adapter.ts, else the pre-redesign chain built from its modules), replays
// a prepared set of ring-buffer batches through it, and exports every span the real way: serialized
// to OTLP protobuf (the SDK's ProtobufTraceSerializer), bytes counted, nothing sent.
//   --mode time:  events/s and CPU per event over the set (after a warm-up on the warm-up set)
//   --mode digest: the sha256 of every OTLP request body, in order (two trees export the same bytes)
//   --mode alloc: heap bytes allocated per event (run with --expose-gc and a young generation big
//                 enough that no GC runs; gcDuring > 0 makes the figure a lower bound)
// Prints one JSON line.
import { createHash, type Hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { loadLegacyModules, legacyMakePipeline, type MakePipeline, type PipelineOptions } from './legacy-pipeline.ts';

/** what the export path costs up to the wire: the OTLP request body, built and measured */
export class ProtobufCountingExporter implements SpanExporter {
  spans = 0;
  bytes = 0;
  requests = 0;
  /** --mode digest: every request body hashed, to show that two trees export the same bytes */
  hash?: Hash;
  export(spans: ReadableSpan[], cb: (r: ExportResult) => void): void {
    const body = ProtobufTraceSerializer.serializeRequest(spans);
    this.requests++;
    this.spans += spans.length;
    this.bytes += body?.byteLength ?? 0;
    if (body) this.hash?.update(body);
    cb({ code: ExportResultCode.SUCCESS });
  }
  async shutdown(): Promise<void> {}
}

/** A prepared set: batches with the tick (monotonic ns of the newest event so far) after each. */
export interface ReplaySetFile {
  batches: Buffer[];
  ticks: number[];
  records: number;
}

/** [u32 records][u32 count] then per batch [f64 tick][u32 len][bytes] */
export function encodeSet(batches: Buffer[], ticks: number[], records: number): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  head.writeUInt32LE(records, 0);
  head.writeUInt32LE(batches.length, 4);
  parts.push(head);
  batches.forEach((b, i) => {
    const h = Buffer.alloc(12);
    h.writeDoubleLE(ticks[i] as number, 0);
    h.writeUInt32LE(b.length, 8);
    parts.push(h, b);
  });
  return Buffer.concat(parts);
}

export function decodeSet(raw: Buffer): ReplaySetFile {
  const records = raw.readUInt32LE(0);
  const n = raw.readUInt32LE(4);
  const batches: Buffer[] = [];
  const ticks: number[] = [];
  let o = 8;
  for (let i = 0; i < n; i++) {
    ticks.push(raw.readDoubleLE(o));
    const len = raw.readUInt32LE(o + 8);
    batches.push(raw.subarray(o + 12, o + 12 + len));
    o += 12 + len;
  }
  return { batches, ticks, records };
}

/** the tree's own adapter when it has one, else the pre-redesign chain from its modules */
export async function loadMakePipeline(root: string): Promise<{ make: MakePipeline; adapter: 'tree' | 'fallback' }> {
  const file = join(root, 'bench', 'pipeline-adapter.ts');
  if (existsSync(file)) {
    const mod = (await import(pathToFileURL(resolve(file)).href)) as { makePipeline?: MakePipeline };
    if (typeof mod.makePipeline !== 'function') throw new Error(`${file} does not export makePipeline`);
    return { make: mod.makePipeline, adapter: 'tree' };
  }
  return { make: legacyMakePipeline(await loadLegacyModules(root)), adapter: 'fallback' };
}

async function replay(make: MakePipeline, set: ReplaySetFile, opts: Omit<PipelineOptions, 'exporter'>, hash?: Hash) {
  const exporter = new ProtobufCountingExporter();
  exporter.hash = hash;
  const p = await make({ ...opts, exporter });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < set.batches.length; i++) {
    p.decode(set.batches[i] as Buffer);
    p.tick(set.ticks[i] as number);
    // one event-loop turn per batch, as the agent gets between ring-buffer batches: the batch
    // processor's export chain (promise callbacks) and timers run
    await yieldTurn();
  }
  p.drain();
  await p.flush();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, exporter };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      root: { type: 'string' },
      mode: { type: 'string', default: 'time' },
      set: { type: 'string' },
      warmup: { type: 'string' },
      meta: { type: 'string' },
    },
  });
  if (!values.root || !values.set || !values.meta) throw new Error('usage: correlator-worker.ts --root DIR --set FILE --meta FILE [--warmup FILE] [--mode time|alloc|digest]');
  const meta = JSON.parse(readFileSync(values.meta, 'utf8')) as PipelineOptions['meta'] & { nodeName: string };
  const { make, adapter } = await loadMakePipeline(values.root);
  const set = decodeSet(readFileSync(values.set));
  const opts = { nodeName: meta.nodeName, meta };
  if (values.warmup) await replay(make, decodeSet(readFileSync(values.warmup)), opts); // JIT
  let out: Record<string, unknown>;
  if (values.mode === 'alloc') {
    const gc = (globalThis as unknown as { gc?: () => void }).gc;
    if (!gc) throw new Error('--mode alloc needs node --expose-gc');
    gc();
    await yieldTurn();
    // GCs that started during the run (entries arrive late: the forced one above may come after)
    let gcs = 0;
    const runStart = performance.now();
    const obs = new PerformanceObserver((l) => (gcs += l.getEntries().filter((e) => e.startTime >= runStart).length));
    obs.observe({ entryTypes: ['gc'] });
    const h0 = process.memoryUsage().heapUsed;
    const r = await replay(make, set, opts);
    const h1 = process.memoryUsage().heapUsed;
    await new Promise((r) => setTimeout(r, 50)); // GC entries of the run are delivered
    obs.disconnect();
    out = { bytesPerEvent: (h1 - h0) / set.records, gcDuring: gcs, spans: r.exporter.spans };
  } else if (values.mode === 'digest') {
    const r = await replay(make, set, opts, createHash('sha256'));
    out = { spans: r.exporter.spans, otlpBytes: r.exporter.bytes, requests: r.exporter.requests, sha256: r.exporter.hash?.digest('hex') };
  } else {
    const r = await replay(make, set, opts);
    out = {
      eventsPerSec: set.records / (r.wallMs / 1000),
      cpuNsPerEvent: (r.cpuMs * 1e6) / set.records,
      spans: r.exporter.spans,
      otlpBytes: r.exporter.bytes,
      requests: r.exporter.requests,
    };
  }
  process.stdout.write(`${JSON.stringify({ adapter, records: set.records, ...out })}\n`);
}
