// The TC packet parser of bpf/veth_tc.bpf.c, run by the kernel on crafted packets
// (BPF_PROG_TEST_RUN): what each packet becomes, a pkt event (tuple, seq, data length, flags,
// payload) or a counted drop, and the verdict, always TC_ACT_UNSPEC (observe only).
import assert from 'node:assert/strict';
import { before, after, describe, it } from 'node:test';
import { Decoder, type PktEvent, type TailEvent, addrString } from '../../agent/src/events/decode.ts';
import { DIR, FLAGS, STAT_NAMES, TAIL_SRC } from '../../agent/src/events/layout.generated.ts';
import { type Probes, loadNative } from '../../agent/src/probes/native.ts';
import { kernelStats } from '../../agent/src/probes/probe-set.ts';
import { VETH_TC } from '../../agent/src/probes/registry.ts';
import { missingPrerequisites } from '../helpers/kernel.ts';

const TC_ACT_UNSPEC = -1;
const CAP = 128;

// ---- packet crafting ----
type Addr4 = [number, number, number, number];
interface TcpSpec {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags?: number; // FIN=1 SYN=2 RST=4 PSH=8 ACK=16
  options?: Buffer; // multiple of 4
  payload?: Buffer;
  doff?: number; // override (malformed)
}
const ACK = 0x10;
const PSH = 0x08;
const SYN = 0x02;

function tcp(t: TcpSpec): Buffer {
  const opts = t.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h.writeUInt16BE(t.sport, 0);
  h.writeUInt16BE(t.dport, 2);
  h.writeUInt32BE(t.seq ?? 1000, 4);
  h.writeUInt32BE(t.ack ?? 2000, 8);
  h[12] = (t.doff ?? h.length / 4) << 4;
  h[13] = t.flags ?? ACK | PSH;
  h.writeUInt16BE(65535, 14);
  opts.copy(h, 20);
  return Buffer.concat([h, t.payload ?? Buffer.alloc(0)]);
}

function ipv4(src: Addr4, dst: Addr4, l4: Buffer, o: { proto?: number; options?: Buffer; frag?: number; ihl?: number } = {}): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const h = Buffer.alloc(20 + opts.length);
  h[0] = 0x40 | (o.ihl ?? h.length / 4);
  h.writeUInt16BE(h.length + l4.length, 2);
  h.writeUInt16BE(o.frag ?? 0x4000, 6); // DF by default
  h[8] = 64;
  h[9] = o.proto ?? 6;
  h.set(src, 12);
  h.set(dst, 16);
  opts.copy(h, 20);
  return Buffer.concat([h, l4]);
}

function ipv6(src: Buffer, dst: Buffer, l4: Buffer, nexthdr = 6): Buffer {
  const h = Buffer.alloc(40);
  h[0] = 0x60;
  h.writeUInt16BE(l4.length, 4);
  h[6] = nexthdr;
  h[7] = 64;
  src.copy(h, 8);
  dst.copy(h, 24);
  return Buffer.concat([h, l4]);
}

function eth(proto: number, l3: Buffer, vlan?: number): Buffer {
  const h = Buffer.alloc(vlan === undefined ? 14 : 18);
  h.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  if (vlan === undefined) {
    h.writeUInt16BE(proto, 12);
  } else {
    h.writeUInt16BE(0x8100, 12);
    h.writeUInt16BE(vlan, 14);
    h.writeUInt16BE(proto, 16);
  }
  return Buffer.concat([h, l3]);
}

const A: Addr4 = [10, 244, 1, 10];
const B: Addr4 = [10, 244, 1, 20];
const A6 = Buffer.from('fd00000000000000000000000000000a', 'hex');
const B6 = Buffer.from('fd000000000000000000000000000014', 'hex');
const HTTP = Buffer.from('GET /tc HTTP/1.1\r\nHost: x\r\n\r\n');

// ---- running and decoding ----
interface Got {
  retval: number;
  events: (Omit<PktEvent, 'buf' | 'tuple'> & { saddr: string; daddr: string; sport: number; dport: number; family: number; payload: Buffer })[];
  stats: Record<(typeof STAT_NAMES)[number], number>;
}

let probes: Probes | undefined;

function run(pkt: Buffer, program = 'tc_ingress'): Got {
  const p = probes as Probes;
  const before = kernelStats(p.stats());
  const { retval, records } = p.testRun(VETH_TC.object, program, pkt);
  const after = kernelStats(p.stats());
  const events: Got['events'] = [];
  new Decoder({
    onSock: () => assert.fail('a sock event from TC'),
    onState: () => assert.fail('a state event from TC'),
    onNetDev: () => assert.fail('a net_dev event from TC'),
    onPkt: (e) => {
      const { buf, tuple, ...rest } = e;
      events.push({
        ...rest, saddr: addrString(buf, tuple.saddrOff, tuple.family), daddr: addrString(buf, tuple.daddrOff, tuple.family),
        sport: tuple.sport, dport: tuple.dport, family: tuple.family, payload: Buffer.from(buf.subarray(e.payloadOff, e.payloadOff + e.payloadLen)),
      });
    },
  }).decode(records);
  const stats = Object.fromEntries(STAT_NAMES.map((n) => [n, after[n] - before[n]])) as Got['stats'];
  return { retval, events, stats };
}

/** one event, nothing counted as dropped */
function one(g: Got): Got['events'][number] {
  assert.equal(g.retval, TC_ACT_UNSPEC, 'observe only: TC_ACT_UNSPEC');
  assert.equal(g.stats.pktSeen, 1);
  assert.equal(g.stats.pktNotTcp, 0);
  assert.equal(g.events.length, 1, `one event, got ${g.events.length}`);
  return g.events[0] as Got['events'][number];
}

/** no event, counted as not TCP */
function dropped(g: Got): void {
  assert.equal(g.retval, TC_ACT_UNSPEC, 'observe only: TC_ACT_UNSPEC');
  assert.equal(g.events.length, 0);
  assert.equal(g.stats.pktSeen, 1);
  assert.equal(g.stats.pktNotTcp, 1);
}

const skip = missingPrerequisites();

describe('TC parser (BPF_PROG_TEST_RUN on crafted packets)', { skip: process.env.CI === 'true' ? false : skip }, () => {
  before(() => {
    if (skip) throw new Error(`prerequisite missing under CI: ${skip}`);
    probes = new (loadNative().Probes)({ ringBytes: 1 << 20 });
    probes.load(VETH_TC.object, { knobs: VETH_TC.knobs({ pktPayloadCap: CAP, wakeupBytes: 0 }) });
  });
  after(() => probes?.close());

  it('IPv4: tuple, seq/ack, data length, flags, payload, direction', () => {
    const e = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40001, dport: 8080, seq: 0xfffffff0, ack: 77, payload: HTTP }))), 'tc_egress'));
    assert.deepEqual([e.saddr, e.sport, e.daddr, e.dport, e.family], ['10.244.1.10', 40001, '10.244.1.20', 8080, 2]);
    assert.equal(e.seq, 0xfffffff0);
    assert.equal(e.ack, 77);
    assert.equal(e.dataLen, HTTP.length);
    assert.equal(e.tcpFlags, ACK | PSH);
    assert.equal(e.dir, DIR.DIR_OUT);
    assert.equal(e.flags & FLAGS.F_SEQ_VALID, FLAGS.F_SEQ_VALID);
    assert.equal(e.flags & FLAGS.F_TRUNCATED, 0);
    assert.deepEqual(e.payload, HTTP);
    assert.equal(e.ifindex, 1, 'BPF_PROG_TEST_RUN runs on the loopback device');
  });

  it('IPv6', () => {
    const e = one(run(eth(0x86dd, ipv6(A6, B6, tcp({ sport: 40002, dport: 8080, seq: 5, payload: HTTP })))));
    assert.deepEqual([e.saddr, e.daddr, e.family, e.sport, e.dport], ['fd00::a', 'fd00::14', 10, 40002, 8080]);
    assert.equal(e.seq, 5);
    assert.equal(e.dir, DIR.DIR_IN);
    assert.deepEqual(e.payload, HTTP);
  });

  it('TCP options: the payload starts after them', () => {
    const ts = Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamps
    const e = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40003, dport: 8080, options: ts, payload: HTTP })))));
    assert.equal(e.dataLen, HTTP.length);
    assert.deepEqual(e.payload, HTTP);
  });

  it('IPv4 options: the TCP header is found after them', () => {
    const e = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40004, dport: 8080, seq: 9, payload: HTTP }), { options: Buffer.from([1, 1, 1, 0]) }))));
    assert.deepEqual([e.sport, e.dport, e.seq, e.dataLen], [40004, 8080, 9, HTTP.length]);
    assert.deepEqual(e.payload, HTTP);
  });

  it('an 802.1Q-tagged frame is parsed through its tag', () => {
    const e = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40005, dport: 8080, payload: HTTP })), 42)));
    assert.deepEqual([e.saddr, e.sport, e.dataLen], ['10.244.1.10', 40005, HTTP.length]);
    assert.deepEqual(e.payload, HTTP);
  });

  it('IP fragments: the first carries the TCP header, the others are not TCP to us', () => {
    const first = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40006, dport: 8080, payload: HTTP }), { frag: 0x2000 /* MF */ }))));
    assert.equal(first.sport, 40006);
    dropped(run(eth(0x0800, ipv4(A, B, HTTP, { frag: 0x2000 | 3 /* offset 24 */ }))));
  });

  it('SYN without data is an event; a pure ACK padded to 60 bytes is none (the padding is no data)', () => {
    const syn = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40007, dport: 8080, flags: SYN, seq: 100 })))));
    assert.deepEqual([syn.tcpFlags, syn.dataLen, syn.payload.length], [SYN, 0, 0]);
    const ack = eth(0x0800, ipv4(B, A, tcp({ sport: 8080, dport: 40007, flags: ACK })));
    assert.equal(ack.length, 54);
    const g = run(Buffer.concat([ack, Buffer.alloc(6)]));
    assert.equal(g.retval, TC_ACT_UNSPEC);
    assert.deepEqual([g.events.length, g.stats.pktSeen, g.stats.pktNotTcp], [0, 1, 0]);
  });

  it('aggregation: one event per message per direction, the rest counted and reported with the next', () => {
    const data = (from: Addr4, to: Addr4, sport: number, dport: number, seq: number, n: number) =>
      eth(0x0800, ipv4(from, to, tcp({ sport, dport, seq, payload: Buffer.alloc(n, 0x61) })));
    const first = one(run(data(A, B, 40008, 8080, 1, 100)));
    assert.deepEqual([first.aggPkts, first.aggBytes], [0, 0]);
    const cont = run(data(A, B, 40008, 8080, 101, 50));
    assert.deepEqual([cont.events.length, cont.stats.pktAggregated], [0, 1], 'the continuation is counted, not emitted');
    const reply = one(run(data(B, A, 8080, 40008, 7, 10), 'tc_egress'));
    assert.deepEqual([reply.aggPkts, reply.aggBytes, reply.sport], [1, 50, 8080], 'the reply carries the counts of the request');
  });

  it('tails: where a message ends, at the end of each send (PSH) and when the flow turns, never per packet', () => {
    const p = probes as Probes;
    const send = (from: Addr4, to: Addr4, sport: number, dport: number, seq: number, n: number, flags: number) => {
      const { retval, records } = p.testRun(VETH_TC.object, 'tc_ingress', eth(0x0800, ipv4(from, to, tcp({ sport, dport, seq, flags, payload: Buffer.alloc(n, 0x61) }))));
      assert.equal(retval, TC_ACT_UNSPEC);
      const pkts: PktEvent['seq'][] = [];
      const tails: (Omit<TailEvent, 'buf' | 'tuple'> & { sport: number; dport: number })[] = [];
      new Decoder({
        onSock: () => assert.fail(), onState: () => assert.fail(), onNetDev: () => assert.fail(),
        onPkt: (e) => pkts.push(e.seq),
        onTail: (e) => {
          const { buf: _b, tuple, ...rest } = e;
          tails.push({ ...rest, sport: tuple.sport, dport: tuple.dport });
        },
      }).decode(records);
      return { pkts, tails };
    };
    const first = send(A, B, 40020, 8080, 1000, 100, ACK);
    assert.deepEqual([first.pkts, first.tails.length], [[1000], 0], 'the first packet is the message start, no tail');
    const mid = send(A, B, 40020, 8080, 1100, 100, ACK);
    assert.deepEqual([mid.pkts.length, mid.tails.length], [0, 0], 'a packet in the middle of a send: nothing');
    const push = send(A, B, 40020, 8080, 1200, 100, ACK | PSH);
    assert.equal(push.pkts.length, 0);
    assert.equal(push.tails.length, 1, 'the end of a send: one tail');
    const t = push.tails[0] as (typeof push.tails)[number];
    assert.deepEqual([t.seq, t.endSeq, t.pkts, t.src, t.point, t.final, t.sport, t.dport, t.queueTsNs], [1000, 1300, 3, TAIL_SRC.TAIL_TC, DIR.DIR_IN, false, 40020, 8080, 0]);
    // more data without PSH, then the other side answers: the first message's end, final
    assert.equal(send(A, B, 40020, 8080, 1300, 50, ACK).tails.length, 0);
    const turn = send(B, A, 8080, 40020, 7000, 10, ACK | PSH);
    assert.deepEqual(turn.pkts, [7000], 'the answer starts a message');
    assert.equal(turn.tails.length, 1, 'and ends the first one');
    const f = turn.tails[0] as (typeof turn.tails)[number];
    assert.deepEqual([f.seq, f.endSeq, f.pkts, f.final, f.sport, f.dport], [1000, 1350, 4, true, 40020, 8080]);
    assert.ok(f.tsNs > t.tsNs, 'the final tail carries the time of the message\'s last packet');
    // the answer was one packet, its end already known: a FIN closes it without a tail
    const fin = send(B, A, 8080, 40020, 7010, 0, ACK | 0x01);
    assert.deepEqual([fin.pkts, fin.tails.length], [[7010], 0]);
    // a message still open when its sender resets the connection: the RST reports its end
    send(A, B, 40021, 8080, 500, 100, ACK);
    send(A, B, 40021, 8080, 600, 100, ACK);
    const rst = send(A, B, 40021, 8080, 700, 0, 0x04);
    assert.deepEqual(rst.pkts, [700], 'the RST is an event');
    assert.deepEqual(rst.tails.map((e) => [e.seq, e.endSeq, e.pkts, e.final]), [[500, 700, 2, true]], 'and ends the open message');
  });

  it('payload beyond the capture cap is cut and flagged', () => {
    const big = Buffer.alloc(300, 0x62);
    const e = one(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40009, dport: 8080, payload: big })))));
    assert.equal(e.dataLen, 300);
    assert.equal(e.payloadLen, CAP);
    assert.equal(e.flags & FLAGS.F_TRUNCATED, FLAGS.F_TRUNCATED);
    assert.deepEqual(e.payload, big.subarray(0, CAP));
  });

  it('short headers are counted, never read past the packet', () => {
    // the test harness itself refuses IPv4/IPv6 frames shorter than their IP header (it pulls
    // it), so cut L3 headers go behind a VLAN tag, which it does not look into
    const full = eth(0x0800, ipv4(A, B, tcp({ sport: 40010, dport: 8080, payload: HTTP })));
    dropped(run(Buffer.concat([full.subarray(0, 12), Buffer.from([0x12, 0x34])]))); // Ethernet only, unknown type
    dropped(run(eth(0x0800, Buffer.alloc(0), 42).subarray(0, 16))); // half a VLAN tag
    dropped(run(eth(0x0800, ipv4(A, B, Buffer.alloc(0)), 42).subarray(0, 18 + 10))); // half an IPv4 header
    dropped(run(eth(0x86dd, ipv6(A6, B6, Buffer.alloc(0)), 42).subarray(0, 18 + 30))); // half an IPv6 header
    dropped(run(full.subarray(0, 14 + 20 + 12))); // half a TCP header
    dropped(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40010, dport: 8080 })), 42).subarray(0, 18 + 20 + 19))); // TCP header one byte short
  });

  it('malformed headers and other protocols are counted as not TCP', () => {
    dropped(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40011, dport: 8080, payload: HTTP }), { ihl: 3 })))); // IHL < 5
    dropped(run(eth(0x0800, ipv4(A, B, tcp({ sport: 40012, dport: 8080, payload: HTTP, doff: 2 }))))); // doff < 5
    dropped(run(eth(0x0800, ipv4(A, B, Buffer.alloc(16), { proto: 17 })))); // UDP
    dropped(run(eth(0x86dd, ipv6(A6, B6, Buffer.alloc(16), 0)))); // IPv6 hop-by-hop header first
    dropped(run(eth(0x0806, Buffer.alloc(28)))); // ARP
  });
});
