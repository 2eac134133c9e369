// Correlator throughput on one core, from ring-buffer batches captured on the real kernel (a lab
// run through NGINX to the app), replayed through decoder + correlator; and heap bytes allocated
// per event. Two sinks side by side, interleaved: counting only (the correlator's own cost) and
// the OpenTelemetry SDK sink (spans built and batched for export, exporter a no-op).
//
//   node bench/correlator.ts [--capture] [--requests 400] [--rounds 5] [--replays 20]
// --capture (root) records a fresh capture into a temp dir; otherwise test/fixtures/skeleton is
// replayed (small). Output: a table, then one JSON line.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { toBatchOptions, toCorrelatorOptions } from '../agent/src/config/agent-options.ts';
import { defaultConfig } from '../agent/src/config/schema.ts';
import { Correlator } from '../agent/src/correlate/correlator.ts';
import type { ExchangeRecord, ExchangeSink } from '../agent/src/correlate/records.ts';
import { Decoder } from '../agent/src/events/decode.ts';
import { EVENT_TYPE, HDR, PKT_EVENT, SOCK_EVENT } from '../agent/src/events/layout.generated.ts';
import { SpanExport } from '../agent/src/export/pipeline.ts';
import { SdkSpanSink } from '../agent/src/export/sdk-sink.ts';
import { SpanMapper } from '../agent/src/export/semconv.ts';
import { StaticTopology } from '../agent/src/k8s/pods-file.ts';
import { loadFixture } from '../test/helpers/replay.ts';
import { summarize } from './stats.ts';

const { values } = parseArgs({
  options: {
    capture: { type: 'boolean', default: false },
    requests: { type: 'string', default: '400' },
    rounds: { type: 'string', default: '5' },
    replays: { type: 'string', default: '20' },
    child: { type: 'string' },
    dir: { type: 'string' },
  },
});

/** the correlator's records mapped onto span records (semantic conventions), counted: no SDK */
class CountSink implements ExchangeSink {
  n = 0;
  private readonly mapper = new SpanMapper({ routes: [], maxResources: 256 });
  private readonly count = () => {
    this.n++;
  };
  emit(r: ExchangeRecord): void {
    this.mapper.map(r, this.count);
  }
}

class NullExporter implements SpanExporter {
  n = 0;
  export(spans: ReadableSpan[], cb: (r: ExportResult) => void): void {
    this.n += spans.length;
    cb({ code: 0 });
  }
  async shutdown(): Promise<void> {}
}

/** The capture replayed `replays` times, each copy shifted in time, socket and TCP sequence space. */
function replaySet(dir: string | undefined, replays: number) {
  const { batches, meta } = dir ? loadFixture('capture', dir) : loadFixture('skeleton');
  const span = lastTs(batches) - firstTs(batches) + 1e9;
  const out: Buffer[] = [];
  let records = 0;
  for (let r = 0; r < replays; r++) {
    for (const b of batches) {
      const c = Buffer.from(b);
      for (let o = 0; o + HDR.SIZE <= c.length; ) {
        const len = c.readUInt32LE(o + HDR.len);
        const type = c.readUInt16LE(o + HDR.type);
        addU64(c, o + HDR.ts_ns, r * span);
        if (type === EVENT_TYPE.EV_PKT) {
          c.writeUInt32LE((c.readUInt32LE(o + PKT_EVENT.seq) + r * 0x100000) >>> 0, o + PKT_EVENT.seq);
        } else if (type >= EVENT_TYPE.EV_SOCK_DATA && type <= EVENT_TYPE.EV_SOCK_CLOSE) {
          addU64(c, o + SOCK_EVENT.enter_ts_ns, r * span);
          c.writeUInt32LE((c.readUInt32LE(o + SOCK_EVENT.sk) ^ (r << 20)) >>> 0, o + SOCK_EVENT.sk);
          c.writeUInt32LE((c.readUInt32LE(o + SOCK_EVENT.seq) + r * 0x100000) >>> 0, o + SOCK_EVENT.seq);
        }
        records++;
        o += len;
      }
      out.push(c);
    }
  }
  return { batches: out, records, meta, endTs: lastTs(out) };
}

function addU64(b: Buffer, o: number, add: number): void {
  const v = b.readUInt32LE(o + 4) * 4294967296 + b.readUInt32LE(o) + add;
  b.writeUInt32LE(v % 4294967296 >>> 0, o);
  b.writeUInt32LE(Math.floor(v / 4294967296) >>> 0, o + 4);
}

function eachTs(batches: Buffer[], f: (ts: number) => void): void {
  for (const b of batches) {
    for (let o = 0; o + HDR.SIZE <= b.length; o += b.readUInt32LE(o + HDR.len)) f(b.readUInt32LE(o + HDR.ts_ns + 4) * 4294967296 + b.readUInt32LE(o + HDR.ts_ns));
  }
}
const firstTs = (bs: Buffer[]) => {
  let m = Number.MAX_SAFE_INTEGER;
  eachTs(bs, (t) => (m = Math.min(m, t)));
  return m;
};
const lastTs = (bs: Buffer[]) => {
  let m = 0;
  eachTs(bs, (t) => (m = Math.max(m, t)));
  return m;
};

function runOnce(set: ReturnType<typeof replaySet>, sinkKind: 'count' | 'sdk') {
  const topo = new StaticTopology(set.meta.nodeName, set.meta.pods);
  for (const i of set.meta.ifaces) topo.addInterface(i.ifindex, i.ifname);
  const exporter = new NullExporter();
  const config = defaultConfig();
  const sink = sinkKind === 'count'
    ? new CountSink()
    : new SpanExport(new SdkSpanSink({ exporters: [exporter], batch: { ...toBatchOptions(config), maxQueueSize: 1 << 20, scheduledDelayMillis: 60_000 }, maxResources: 256 }), { routes: [], maxResources: 256 });
  const correlator = new Correlator(sink, topo, toCorrelatorOptions(config), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  const decoder = new Decoder(correlator);
  const t0 = process.cpuUsage();
  const w0 = performance.now();
  for (const b of set.batches) {
    decoder.decode(b);
    correlator.tick(correlator['lastTs' as keyof Correlator] as unknown as number);
  }
  correlator.drain();
  const wall = performance.now() - w0;
  const cpu = process.cpuUsage(t0);
  const spans = correlator.stats.spansEmitted + correlator.stats.hopSpansEmitted;
  return { events: decoder.stats.records, wallMs: wall, cpuMs: (cpu.user + cpu.system) / 1000, spans };
}

if (values.child) {
  // child mode: allocation per event, with a young generation big enough that no GC runs
  const set = replaySet(values.dir, Number(values.replays));
  let gcs = 0;
  new PerformanceObserver((l) => (gcs += l.getEntries().length)).observe({ entryTypes: ['gc'] });
  runOnce(replaySet(values.dir, 1), values.child as 'count' | 'sdk'); // warm up
  (globalThis as unknown as { gc: () => void }).gc();
  await new Promise((r) => setImmediate(r));
  gcs = 0;
  const h0 = process.memoryUsage().heapUsed;
  const r = runOnce(set, values.child as 'count' | 'sdk');
  const h1 = process.memoryUsage().heapUsed;
  await new Promise((res) => setImmediate(res));
  process.stdout.write(`${JSON.stringify({ bytesPerEvent: (h1 - h0) / r.events, events: r.events, gcDuring: gcs })}\n`);
  process.exit(0);
}

let dir = values.dir;
let tmp: string | undefined;
if (values.capture) {
  const { captureLab } = await import('../scripts/capture-fixture.ts');
  tmp = mkdtempSync(join(tmpdir(), 'strata-bench-capture-'));
  const c = await captureLab(tmp, 'capture', Number(values.requests));
  process.stderr.write(`captured ${c.records} records in ${c.batches} batches (${c.spans} exchange spans) from the lab\n`);
  dir = tmp;
}
try {
  const replays = Number(values.replays);
  const set = replaySet(dir, replays);
  process.stderr.write(`replaying ${set.records} records (${replays} shifted copies of the capture)\n`);
  runOnce(replaySet(dir, 2), 'count'); // warm-up: JIT
  const res: Record<'count' | 'sdk', { eventsPerSec: number[]; cpuNsPerEvent: number[]; spans: number }> = {
    count: { eventsPerSec: [], cpuNsPerEvent: [], spans: 0 },
    sdk: { eventsPerSec: [], cpuNsPerEvent: [], spans: 0 },
  };
  for (let round = 0; round < Number(values.rounds); round++) {
    const order: ('count' | 'sdk')[] = round % 2 ? ['sdk', 'count'] : ['count', 'sdk'];
    for (const k of order) {
      const r = runOnce(set, k);
      res[k].eventsPerSec.push(r.events / (r.wallMs / 1000));
      res[k].cpuNsPerEvent.push((r.cpuMs * 1e6) / r.events);
      res[k].spans = r.spans;
    }
  }
  const alloc = (k: string) => {
    const out = spawnSync(process.execPath, ['--expose-gc', '--max-semi-space-size=512', fileURLToPath(import.meta.url), '--child', k, '--replays', String(Math.min(replays, 5)), ...(dir ? ['--dir', dir] : [])], { encoding: 'utf8' });
    return JSON.parse(out.stdout.trim().split('\n').pop() ?? '{}') as { bytesPerEvent: number; gcDuring: number };
  };
  const allocCount = alloc('count');
  const allocSdk = alloc('sdk');
  const fmt = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : `${(n / 1e3).toFixed(0)} k`);
  const c = summarize(res.count.eventsPerSec);
  const s = summarize(res.sdk.eventsPerSec);
  console.log(`\nCorrelator throughput, one core: ${set.records} captured events replayed, ${values.rounds} rounds interleaved, median (min..max)`);
  console.log(`sink                           events/s                    CPU ns/event   spans/run   heap bytes allocated/event`);
  console.log(`correlator only (count)        ${fmt(c.median)} (${fmt(c.min)}..${fmt(c.max)})`.padEnd(60) + `${summarize(res.count.cpuNsPerEvent).median.toFixed(0).padStart(8)}   ${String(res.count.spans).padStart(9)}   ${allocCount.bytesPerEvent.toFixed(0)}${allocCount.gcDuring ? ' (GC ran: lower bound)' : ''}`);
  console.log(`+ OpenTelemetry SDK sink       ${fmt(s.median)} (${fmt(s.min)}..${fmt(s.max)})`.padEnd(60) + `${summarize(res.sdk.cpuNsPerEvent).median.toFixed(0).padStart(8)}   ${String(res.sdk.spans).padStart(9)}   ${allocSdk.bytesPerEvent.toFixed(0)}${allocSdk.gcDuring ? ' (GC ran: lower bound)' : ''}`);
  console.log(`ratio sdk/count (events/s)     ${(s.median / c.median).toFixed(3)}x`);
  console.log(JSON.stringify({ bench: 'correlator', records: set.records, rounds: Number(values.rounds), count: { ...res.count, alloc: allocCount }, sdk: { ...res.sdk, alloc: allocSdk } }));
} finally {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}
