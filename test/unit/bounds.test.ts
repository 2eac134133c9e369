// Bad input and churn: nothing escapes as an exception, and memory and tables stay bounded.
import assert from 'node:assert/strict';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { test } from 'node:test';
import { Correlator } from '../../agent/src/correlate/correlator.ts';
import { HttpStream } from '../../agent/src/correlate/stream.ts';
import { Decoder } from '../../agent/src/events/decode.ts';
import { EVENT_TYPE, HDR, SOCK_EVENT, TUPLE } from '../../agent/src/events/layout.generated.ts';
import type { ExchangeRecord, ExchangeSink } from '../../agent/src/correlate/records.ts';
import { StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { conversation } from '../helpers/conversation.ts';
import { correlatorOptions } from '../helpers/options.ts';
import { loadFixture, records } from '../helpers/replay.ts';
import { lcg } from '../helpers/rng.ts';
import { cut, sockRecord } from '../helpers/synth.ts';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapMiB = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / (1 << 20);
};

class CountingSink implements ExchangeSink {
  n = 0;
  emit(_r: ExchangeRecord): void {
    this.n++;
  }
}

test('fuzz: 1,000,000 random and mutated inputs through decoder, parser and correlator', () => {
  const { batches, meta } = loadFixture('skeleton');
  const B = (s: string) => Buffer.from(s, 'latin1');
  const conv = conversation(
    [{ request: B('POST /f HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc'), response: B('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n') }],
    (d) => cut(d, lcg(3), 9), (d) => [d]);
  const seeds = [...records(batches), ...conv];
  const sink = new CountingSink();
  const correlator = new Correlator(sink, new StaticTopology(meta.nodeName, meta.pods), correlatorOptions({ maxConns: 2048, maxMessages: 4096 }));
  const decoder = new Decoder(correlator);
  const rnd = lcg(12345);
  const parserTarget = { onStart() {}, onHead: () => ({ mode: 'chunked' as const }), onEnd() {}, onNonHttp() {} };
  const before = heapMiB();
  let inputs = 0;
  for (let i = 0; i < 1_000_000; i++, inputs++) {
    const kind = i % 4;
    if (kind === 3) {
      // raw bytes straight into the HTTP stream parser, with a random capture/total split
      const n = Math.floor(rnd() * 64);
      const buf = Buffer.allocUnsafe(n);
      for (let j = 0; j < n; j++) buf[j] = rnd() < 0.5 ? (B('0123456789abcdef\r\n;GET HTTP/1.1 ')[Math.floor(rnd() * 30)] as number) : Math.floor(rnd() * 256);
      const s = new HttpStream(rnd() < 0.5, parserTarget);
      s.feed(buf, 0, n, n + Math.floor(rnd() * 4));
      s.feed(buf, 0, n >> 1, n);
      s.close();
      continue;
    }
    const rec = Buffer.from(seeds[i % seeds.length] as Buffer);
    const flips = 1 + Math.floor(rnd() * 6);
    for (let m = 0; m < flips; m++) rec[Math.floor(rnd() * rec.length)] = Math.floor(rnd() * 256);
    // keep some records well-framed so the deep paths (HTTP state) are reached, not just the header checks
    if (kind === 0) rec.writeUInt32LE(rec.length, HDR.len);
    if (kind === 1) {
      rec.writeUInt16LE(EVENT_TYPE.EV_SOCK_DATA, HDR.type);
      rec.writeUInt32LE(rec.length, HDR.len);
      rec.writeUInt32LE(Math.floor(rnd() * 4096), SOCK_EVENT.sk); // a bounded set of connections
      rec.writeUInt32LE(0, SOCK_EVENT.sk + 4);
    }
    decoder.decode(kind === 2 ? rec.subarray(0, Math.floor(rnd() * rec.length)) : rec);
    if (i % 50_000 === 0) correlator.tick(Number.MAX_SAFE_INTEGER / 4);
  }
  correlator.drain();
  const after = heapMiB();
  assert.equal(inputs, 1_000_000);
  assert.ok(decoder.stats.malformed > 0 && decoder.stats.records > 100_000, JSON.stringify(decoder.stats));
  assert.ok(correlator.stats.conns <= 2048 && correlator.stats.messages <= 4096);
  assert.ok(after - before < 48, `heap grew ${(after - before).toFixed(1)} MiB (before ${before.toFixed(1)}, after ${after.toFixed(1)})`);
});

test('churn: 1,000,000 short connections that never report close leave the tables at their bound', () => {
  const maxConns = 10_000;
  const maxMessages = 20_000;
  const sink = new CountingSink();
  const correlator = new Correlator(sink, new StaticTopology('node-1', []), correlatorOptions({ maxConns, maxMessages }));
  const decoder = new Decoder(correlator);
  const server = { ip: [10, 244, 1, 20] as [number, number, number, number], port: 8080 };
  const peer = { ip: [10, 244, 1, 10] as [number, number, number, number], port: 1 };
  const common = { pid: 200, netns: 42, local: server, remote: peer };
  const accept = sockRecord({ type: EVENT_TYPE.EV_SOCK_ACCEPT, ts: 1, sk: 1, ...common });
  const req = sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: 2, sk: 1, dir: 1, seq: 1, ...common, payload: Buffer.from('GET /churn HTTP/1.1\r\nHost: a\r\n\r\n') });
  const resp = sockRecord({ type: EVENT_TYPE.EV_SOCK_DATA, ts: 3, sk: 1, dir: 2, seq: 1, ...common, payload: Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok') });
  const per = accept.length + req.length + resp.length;
  const CONNS_PER_BATCH = 1000;
  const batch = Buffer.alloc(per * CONNS_PER_BATCH);
  const before = heapMiB();
  let ts = 1e9;
  for (let b = 0; b < 1000; b++) {
    for (let i = 0; i < CONNS_PER_BATCH; i++) {
      const n = b * CONNS_PER_BATCH + i;
      let o = i * per;
      for (const tpl of [accept, req, resp]) {
        tpl.copy(batch, o);
        batch.writeUInt32LE(n + 1, o + SOCK_EVENT.sk); // a new socket per connection
        batch.writeUInt16LE(1024 + (n % 60000), o + SOCK_EVENT.tuple + TUPLE.dport); // the client's port
        batch[o + SOCK_EVENT.tuple + TUPLE.daddr + 2] = (n >> 16) & 0xff;
        batch.writeUInt32LE((n * 7919) >>> 0, o + SOCK_EVENT.seq);
        batch.writeUInt32LE((ts += 1000) % 4294967296, o + HDR.ts_ns);
        batch.writeUInt32LE(Math.floor(ts / 4294967296), o + HDR.ts_ns + 4);
        o += tpl.length;
      }
    }
    decoder.decode(batch);
    correlator.tick(ts);
  }
  correlator.tick(ts + 1e9);
  const after = heapMiB();
  assert.equal(decoder.stats.records, 3_000_000);
  assert.equal(correlator.stats.exchanges, 1_000_000);
  assert.equal(correlator.stats.conns, maxConns);
  assert.equal(correlator.stats.connEvictions, 1_000_000 - maxConns);
  assert.ok(correlator.stats.messages <= maxMessages);
  assert.ok(correlator.stats.messageEvictions > 0);
  assert.equal(sink.n, 1_000_000, 'every exchange still became a span');
  assert.ok(after - before < 64, `heap grew ${(after - before).toFixed(1)} MiB`);
});
