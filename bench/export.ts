// OTLP export throughput (issue 8, measure 5): how many spans/s the agent's export path turns into
// OTLP/HTTP protobuf requests on one core, and what each costs, variants side by side.
//
//   node bench/export.ts [--capture-dir DIR] [--spans 100000] [--rounds 5] [--no-write]
//                        [--variant name:batch=512,inflight=4[,http=0]] ...
//
// The spans are the agent's own: a ring-buffer capture (test/fixtures/http by default, or a lab
// capture that bench/correlator.ts --capture-dir kept) replayed once through decoder -> correlator
// -> SDK sink, the ReadableSpans collected, then cycled up to --spans. Each variant exports that set
// in batches of `batch` spans with at most `inflight` exports outstanding:
//   http=1 (default): the agent's OTLPTraceExporter (agent/src/export/otlp.ts: the SDK's
//          ProtobufTraceSerializer, keep-alive HTTP, retry policy) to a receiver in a child process
//          (pinned to the last CPU where there are two: its cost is not the exporter's) that reads
//          every body and answers 200;
//   http=0: the serializer alone (ProtobufTraceSerializer.serializeRequest per batch), no socket.
// Rounds run every variant, the order rotating per round. Per variant: spans/s (wall), CPU ns per
// span of this process over the export (serialization, HTTP client, GC), OTLP bytes per span.
// Prints the table and one JSON line; writes bench/results/export-<UTC stamp>.{json,md} unless --no-write.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, release } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '../agent/src/export/otlp.ts';
import { loadFixture } from '../test/helpers/replay.ts';
import { makePipeline } from './pipeline-adapter.ts';
import { fmtRatio, fmtSI, fmtSummary, posInt, ratio, roundOrder, summarize, table } from './stats.ts';

const RESULTS = fileURLToPath(new URL('./results/', import.meta.url));

interface Variant {
  name: string;
  batch: number;
  inflight: number;
  http: boolean;
}

/** `name:batch=512,inflight=4,http=0` */
export function parseVariant(spec: string): Variant {
  const [name, rest = ''] = spec.split(':', 2) as [string, string?];
  if (!name) throw new Error(`--variant ${JSON.stringify(spec)}: a name is needed (name:batch=N,inflight=N,http=0|1)`);
  const v: Variant = { name, batch: 512, inflight: 4, http: true };
  for (const kv of rest.split(',').filter(Boolean)) {
    const [k, val = ''] = kv.split('=', 2) as [string, string?];
    if (k === 'batch') v.batch = posInt('batch', val);
    else if (k === 'inflight') v.inflight = posInt('inflight', val);
    else if (k === 'http') v.http = val !== '0';
    else throw new Error(`--variant ${name}: unknown key ${JSON.stringify(k)} (batch, inflight, http)`);
  }
  return v;
}

/** the capture replayed through the agent's pipeline; the ReadableSpans it exports */
async function agentSpans(captureDir: string | undefined): Promise<ReadableSpan[]> {
  const { batches, meta } = captureDir ? loadFixture('capture', captureDir) : loadFixture('http');
  const spans: ReadableSpan[] = [];
  const collect: SpanExporter = {
    export(s: ReadableSpan[], cb: (r: ExportResult) => void) {
      spans.push(...s);
      cb({ code: ExportResultCode.SUCCESS });
    },
    async shutdown() {},
  };
  const p = makePipeline({ exporter: collect, nodeName: meta.nodeName, meta });
  for (const b of batches) p.decode(b);
  p.drain();
  await p.flush();
  if (spans.length === 0) throw new Error('the capture made no spans');
  return spans;
}

/** a counting OTLP receiver in its own process; resolves with its URL */
async function startReceiver(): Promise<{ url: string; child: ChildProcess }> {
  const script = `
    const http = require('node:http');
    const s = http.createServer((req, res) => { req.on('data', () => {}); req.on('end', () => { res.writeHead(200, { 'content-type': 'application/x-protobuf' }); res.end(); }); });
    s.keepAliveTimeout = 60000;
    s.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: s.address().port }) + '\\n'));`;
  const n = availableParallelism();
  const args = n >= 2 ? ['taskset', '-c', String(n - 1), process.execPath, '-e', script] : [process.execPath, '-e', script];
  const child = spawn(args[0] as string, args.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"port"'));
      if (line) resolve((JSON.parse(line) as { port: number }).port);
    });
    child.on('exit', (code) => reject(new Error(`the receiver exited (${code}) before listening`)));
  });
  return { url: `http://127.0.0.1:${port}/v1/traces`, child };
}

interface RoundResult {
  spansPerSec: number;
  cpuNsPerSpan: number;
  bytesPerSpan: number;
  failed: number;
}

async function runVariant(v: Variant, spans: ReadableSpan[], total: number, url: string): Promise<RoundResult> {
  const exporter = v.http ? new OTLPTraceExporter({ url, timeoutMillis: 30_000 }) : undefined;
  let bytes = 0;
  let failed = 0;
  let next = 0;
  let inflight = 0;
  const batchAt = (start: number): ReadableSpan[] => {
    const out: ReadableSpan[] = new Array(Math.min(v.batch, total - start));
    for (let i = 0; i < out.length; i++) out[i] = spans[(start + i) % spans.length] as ReadableSpan;
    return out;
  };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (inflight < v.inflight && next < total) {
        const batch = batchAt(next);
        next += batch.length;
        if (!exporter) {
          bytes += ProtobufTraceSerializer.serializeRequest(batch)?.byteLength ?? 0;
          continue;
        }
        inflight++;
        exporter.export(batch, (r) => {
          inflight--;
          if (r.code !== ExportResultCode.SUCCESS) failed += batch.length;
          if (next >= total && inflight === 0) resolve();
          else pump();
        });
      }
      if (!exporter && next >= total) resolve();
    };
    pump();
  });
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (exporter) {
    // bytes of the same batches, counted outside the timed part
    for (let s = 0; s < total; s += v.batch) bytes += ProtobufTraceSerializer.serializeRequest(batchAt(s))?.byteLength ?? 0;
    await exporter.shutdown();
  }
  return { spansPerSec: total / (wallMs / 1000), cpuNsPerSpan: ((cpu.user + cpu.system) * 1000) / total, bytesPerSpan: bytes / total, failed };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      'capture-dir': { type: 'string' },
      spans: { type: 'string', default: '100000' },
      rounds: { type: 'string', default: '5' },
      variant: { type: 'string', multiple: true },
      'no-write': { type: 'boolean', default: false },
    },
  });
  const total = posInt('--spans', values.spans);
  const rounds = Math.max(1, posInt('--rounds', values.rounds));
  const variants = (values.variant?.length ? values.variant : ['serialize:http=0', 'b512-c1:batch=512,inflight=1', 'b512-c4:batch=512,inflight=4', 'b2048-c4:batch=2048,inflight=4']).map(parseVariant);
  const spans = await agentSpans(values['capture-dir']);
  process.stderr.write(`${spans.length} spans from the capture, cycled to ${total} per variant and round\n`);
  const receiver = await startReceiver();
  const stop = () => receiver.child.kill('SIGKILL');
  process.on('exit', stop);
  try {
    // warm-up: JIT for the serializer and the HTTP client
    await runVariant({ name: 'warm-up', batch: 512, inflight: 4, http: true }, spans, Math.min(total, 20_000), receiver.url);
    const raw = new Map<string, RoundResult[]>(variants.map((v) => [v.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const v of roundOrder(variants, r)) {
        const res = await runVariant(v, spans, total, receiver.url);
        raw.get(v.name)?.push(res);
        process.stderr.write(`round ${r + 1}/${rounds} ${v.name}: ${fmtSI(res.spansPerSec)} spans/s, ${Math.round(res.cpuNsPerSpan)} ns CPU/span${res.failed ? `, ${res.failed} failed` : ''}\n`);
      }
    }
    const first = variants[0] as Variant;
    const rows = variants.map((v) => {
      const rs = raw.get(v.name) ?? [];
      const base = raw.get(first.name) ?? [];
      const rateRatio = summarize(rs.map((x, i) => ratio(x.spansPerSec, base[i]?.spansPerSec ?? Number.NaN)));
      return [
        v.name,
        v.http ? `OTLP/HTTP, batch ${v.batch}, ${v.inflight} in flight` : `serializer only, batch ${v.batch}`,
        fmtSummary(summarize(rs.map((x) => x.spansPerSec)), fmtSI),
        fmtSummary(summarize(rs.map((x) => x.cpuNsPerSpan)), (x) => `${Math.round(x)}`),
        `${Math.round(summarize(rs.map((x) => x.bytesPerSpan)).median)}`,
        v === first ? '1x' : fmtRatio(rateRatio.median),
        `${rs.reduce((a, x) => a + x.failed, 0)}`,
      ];
    });
    const machine = `kernel ${release()}, ${availableParallelism()} CPUs (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}`;
    const md = [
      `# strata OTLP export bench, ${new Date().toISOString()}`,
      '',
      `\`node bench/export.ts ${process.argv.slice(2).join(' ')}\``,
      '',
      `Machine: ${machine}. ${spans.length} distinct spans of the agent (${values['capture-dir'] ? 'lab capture' : 'test/fixtures/http'}), ${total} per variant and round, ${rounds} rounds.`,
      '',
      table(['variant', 'what', 'spans/s (wall), median (min..max)', 'CPU ns/span', 'OTLP B/span', `spans/s vs ${first.name} (paired)`, 'spans failed'], rows),
    ].join('\n');
    process.stdout.write(`${md}\n`);
    const summary = Object.fromEntries(variants.map((v) => [v.name, { spansPerSec: summarize((raw.get(v.name) ?? []).map((x) => x.spansPerSec)), cpuNsPerSpan: summarize((raw.get(v.name) ?? []).map((x) => x.cpuNsPerSpan)) }]));
    process.stdout.write(`${JSON.stringify({ summary })}\n`);
    if (!values['no-write']) {
      const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
      mkdirSync(RESULTS, { recursive: true });
      writeFileSync(join(RESULTS, `export-${stamp}.md`), `${md}\n`);
      writeFileSync(join(RESULTS, `export-${stamp}.json`), `${JSON.stringify({ machine, total, rounds, variants, raw: Object.fromEntries(raw), summary }, null, 2)}\n`);
    }
  } finally {
    stop();
  }
}
