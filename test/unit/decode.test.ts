import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Decoder, type EventHandler, addrString, endpointString } from '../../agent/src/events/decode.ts';
import { CONSTS, EVENT_TYPE, HDR, PKT_EVENT, SOCK_EVENT, TUPLE } from '../../agent/src/events/layout.generated.ts';
import { Correlator } from '../../agent/src/correlate/correlator.ts';
import { StaticTopology } from '../../agent/src/k8s/pods-file.ts';
import { MemorySink, loadFixture, records } from '../helpers/replay.ts';
import { correlatorOptions } from '../helpers/options.ts';
import { lcg } from '../helpers/rng.ts';

function counting(): EventHandler & { sock: number; pkt: number; state: number } {
  const h = { sock: 0, pkt: 0, state: 0, onSock() { h.sock++; }, onPkt() { h.pkt++; }, onState() { h.state++; }, onNetDev() {} };
  return h;
}

function sockRecord(payload: string): Buffer {
  const len = SOCK_EVENT.payload + Math.ceil(payload.length / 8) * 8;
  const b = Buffer.alloc(len);
  b.writeUInt16LE(EVENT_TYPE.EV_SOCK_DATA, HDR.type);
  b[HDR.version] = CONSTS.EVENTS_VERSION;
  b.writeUInt32LE(len, HDR.len);
  b.writeUInt32LE(123456789, HDR.ts_ns);
  b.writeUInt32LE(0xffff8881, SOCK_EVENT.sk + 4);
  b.writeUInt32LE(0x12345678, SOCK_EVENT.sk);
  b.writeInt32LE(-1, SOCK_EVENT.ret + 4);
  b.writeInt32LE(-11, SOCK_EVENT.ret);
  b.writeUInt32LE(4026531840, SOCK_EVENT.netns);
  b.writeUInt32LE(0xfffffff0, SOCK_EVENT.seq);
  b.set([10, 244, 1, 10], SOCK_EVENT.tuple + TUPLE.saddr);
  b.writeUInt16LE(2, SOCK_EVENT.tuple + TUPLE.family);
  b.writeUInt16LE(payload.length, SOCK_EVENT.payload_len);
  b.write(payload, SOCK_EVENT.payload, 'latin1');
  return b;
}

test('fields are read at the generated offsets', () => {
  let seen = false;
  const d = new Decoder({
    onSock(e) {
      seen = true;
      assert.equal(e.tsNs, 123456789);
      assert.equal(e.sk, (0xffff8881 & 0x1fffff) * 2 ** 32 + 0x12345678);
      assert.equal(e.ret, -11);
      assert.equal(e.netns, 4026531840);
      assert.equal(e.seq, 0xfffffff0);
      assert.equal(addrString(e.buf, e.tuple.saddrOff, e.tuple.family), '10.244.1.10');
      assert.equal(e.buf.toString('latin1', e.payloadOff, e.payloadOff + e.payloadLen), 'GET / HTTP/1.1');
    },
    onPkt() {},
    onState() {},
    onNetDev() {},
  });
  d.decode(sockRecord('GET / HTTP/1.1'));
  assert.ok(seen);
});

test('addresses: IPv4, IPv6, and IPv4-mapped IPv6 as the IPv4 address it carries', () => {
  const at = (bytes: number[]) => Buffer.from([...bytes, ...Array(16 - bytes.length).fill(0)]);
  assert.equal(addrString(at([10, 244, 1, 10]), 0, 2), '10.244.1.10');
  assert.equal(addrString(at([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 236, 0, 3]), 0, 10), '10.236.0.3');
  assert.equal(addrString(at([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 0, 10), 'fd00::1');
  assert.equal(addrString(at([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 0, 10), '::1');
  // not mapped: ::ffff:0:0:1 style prefixes elsewhere, and the IPv4-compatible ::a.b.c.d (deprecated) stay IPv6
  assert.equal(addrString(at([0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 10, 0, 0, 1]), 0, 10), '::ffff:0:a00:1');
  assert.equal(addrString(at([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1]), 0, 10), '::a00:1');
});

test('endpointString: the same "addr:port" as addrString for every address, memoised or not', () => {
  const rnd = lcg(7);
  const b = Buffer.alloc(16);
  // many more endpoints than the memo has slots, each asked twice in a row and again later:
  // collisions overwrite slots, and a slot must never answer for another endpoint
  const seen: { addr: number[]; port: number; want: string }[] = [];
  for (let i = 0; i < 20_000; i++) {
    const addr = [10, 244, Math.floor(rnd() * 4), Math.floor(rnd() * 256)];
    const port = Math.floor(rnd() * 65536);
    b.set(addr, 0);
    const want = `${addrString(b, 0, 2)}:${port}`;
    assert.equal(endpointString(b, 0, 2, port), want);
    assert.equal(endpointString(b, 0, 2, port), want);
    seen.push({ addr, port, want });
  }
  for (const x of seen.filter((_, i) => i % 97 === 0)) {
    b.set(x.addr, 0);
    assert.equal(endpointString(b, 0, 2, x.port), x.want);
  }
  // the same four bytes under IPv6 are not an IPv4 endpoint
  const v6 = Buffer.from('fd000000000000000000000000000001', 'hex');
  assert.equal(endpointString(v6, 0, 10, 443), 'fd00::1:443');
  const mapped = Buffer.from('00000000000000000000ffff0af4010a', 'hex');
  assert.equal(endpointString(mapped, 0, 10, 80), '10.244.1.10:80');
});

test('unknown types, other versions and broken lengths are counted, not thrown', () => {
  const h = counting();
  const d = new Decoder(h);
  const unknown = sockRecord('x');
  unknown.writeUInt16LE(99, HDR.type);
  const old = sockRecord('x');
  old[HDR.version] = 0;
  const lying = sockRecord('x');
  lying.writeUInt16LE(400, SOCK_EVENT.payload_len); // longer than the record
  d.decode(Buffer.concat([unknown, old, lying]));
  assert.equal(d.stats.unknownType, 1);
  assert.equal(d.stats.badVersion, 1);
  assert.equal(h.sock, 1); // the lying one is decoded with its payload clamped to the record
  const broken = sockRecord('x');
  broken.writeUInt32LE(3, HDR.len);
  d.decode(Buffer.concat([broken, sockRecord('y')]));
  assert.equal(d.stats.malformed, 1);
  assert.ok(d.stats.skippedBytes > 0);
  const short = Buffer.alloc(PKT_EVENT.payload - 8);
  short.writeUInt16LE(EVENT_TYPE.EV_PKT, HDR.type);
  short[HDR.version] = CONSTS.EVENTS_VERSION;
  short.writeUInt32LE(short.length, HDR.len);
  d.decode(short);
  assert.equal(d.stats.malformed, 2);
  assert.equal(h.pkt, 0);
});

test('random and mutated batches never throw, through decoder and correlator', () => {
  const { batches, meta } = loadFixture('skeleton');
  const recs = records(batches);
  const topo = new StaticTopology(meta.nodeName, meta.pods);
  const correlator = new Correlator(new MemorySink(), topo, correlatorOptions({ maxConns: 64, maxMessages: 64 }));
  const d = new Decoder(correlator);
  const rnd = lcg(1);
  for (let i = 0; i < 20000; i++) {
    const base = Buffer.from(recs[i % recs.length] as Buffer);
    for (let m = 0; m < 4; m++) base[Math.floor(rnd() * base.length)] = Math.floor(rnd() * 256);
    d.decode(i % 3 === 0 ? base.subarray(0, Math.floor(rnd() * base.length)) : base);
  }
  for (let i = 0; i < 2000; i++) d.decode(Buffer.from(Array.from({ length: Math.floor(rnd() * 700) }, () => Math.floor(rnd() * 256))));
  correlator.drain();
  assert.ok(d.stats.malformed > 0);
  assert.ok(d.stats.records > 0);
  assert.ok(correlator.stats.conns <= 64 && correlator.stats.messages <= 64);
});
