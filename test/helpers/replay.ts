// Replays recorded ring-buffer batches (test/fixtures, captured by scripts/capture-fixture.ts)
// through the real decoder and correlator, with a fixed wall clock and an in-memory sink.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Correlator } from '../../agent/src/correlate/correlator.ts';
import type { ExchangeRecord, ExchangeSink } from '../../agent/src/correlate/records.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { SpanMapper } from '../../agent/src/export/semconv.ts';
import type { SpanRecord } from '../../agent/src/export/types.ts';
import { type PodEntry, StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { type CorrelatorOverrides, correlatorOptions, mapperOptions } from './options.ts';

export interface FixtureMeta {
  nodeName: string;
  pods: PodEntry[];
  ifaces: { ifname: string; ifindex: number }[];
  app: { ip: string; hostVeth: string };
  ingress: { ip: string; hostVeth: string };
  clientVeth: string;
}

/** <dir>/<name>.batches + .meta.json (default dir: test/fixtures), as scripts/capture-fixture.ts writes them */
export function loadFixture(name: string, dir = fileURLToPath(new URL('../fixtures/', import.meta.url))): { batches: Buffer[]; meta: FixtureMeta } {
  const raw = readFileSync(join(dir, `${name}.batches`));
  const batches: Buffer[] = [];
  for (let o = 0; o < raw.length; ) {
    const n = raw.readUInt32LE(o);
    batches.push(raw.subarray(o + 4, o + 4 + n));
    o += 4 + n;
  }
  const meta = JSON.parse(readFileSync(join(dir, `${name}.meta.json`), 'utf8')) as FixtureMeta;
  return { batches, meta };
}

/** Keeps the correlator's records, and the spans export/ makes of them (as the agent would export them). */
export class MemorySink implements ExchangeSink {
  readonly records: ExchangeRecord[] = [];
  readonly spans: SpanRecord[] = [];
  private readonly mapper: SpanMapper;
  constructor(mapper = new SpanMapper(mapperOptions())) {
    this.mapper = mapper;
  }
  emit(r: ExchangeRecord): void {
    this.records.push(r);
    this.mapper.map(r, (s) => this.spans.push(s));
  }
}

/** Splits batches into records (each starts with the common header; len at offset 4). */
export function records(batches: Buffer[]): Buffer[] {
  const out: Buffer[] = [];
  for (const b of batches) {
    for (let o = 0; o + 16 <= b.length; ) {
      const len = b.readUInt32LE(o + 4);
      out.push(b.subarray(o, o + len));
      o += len;
    }
  }
  return out;
}

export function replay(batches: Buffer[], meta: FixtureMeta, opts: CorrelatorOverrides = {}): { sink: MemorySink; correlator: Correlator; decoder: Decoder } {
  const topo = new StaticTopology(meta.nodeName, meta.pods);
  for (const i of meta.ifaces) topo.addInterface(i.ifindex, i.ifname);
  const sink = new MemorySink();
  // fake wall clock: monotonic ns as is, from the epoch
  const correlator = new Correlator(sink, topo, correlatorOptions(opts), (ns) => [Math.floor(ns / 1e9), ns % 1e9]);
  const decoder = new Decoder(correlator);
  for (const b of batches) decoder.decode(b);
  correlator.drain();
  return { sink, correlator, decoder };
}
