// net_dev records (struct strata_netdev_event) through the decoder: every field where the
// generated layout says, the skb identity cut to 53 bits like the other kernel pointers, and a
// short record counted as malformed, not read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Decoder, type NetDevEvent, addrString } from '../../agent/src/events/decode.ts';
import { CONSTS, EVENT_TYPE, FLAGS, HDR, NETDEV_EVENT, NETDEV_POINT, TUPLE } from '../../agent/src/events/layout.generated.ts';

function netdevRecord(point: number): Buffer {
  const b = Buffer.alloc(NETDEV_EVENT.SIZE);
  b.writeUInt16LE(EVENT_TYPE.EV_NETDEV, HDR.type);
  b[HDR.version] = CONSTS.EVENTS_VERSION;
  b[HDR.flags] = FLAGS.F_SEQ_VALID;
  b.writeUInt32LE(NETDEV_EVENT.SIZE, HDR.len);
  b.writeUInt32LE(987654321, HDR.ts_ns);
  b.writeUInt32LE(0xffff8881, NETDEV_EVENT.skb + 4);
  b.writeUInt32LE(0x0badf00d, NETDEV_EVENT.skb);
  b.writeUInt32LE(7, NETDEV_EVENT.ifindex);
  b.writeUInt32LE(4026532177, NETDEV_EVENT.netns);
  b.writeUInt32LE(0xfffffff0, NETDEV_EVENT.seq);
  b.writeUInt32LE(42, NETDEV_EVENT.ack);
  b.writeUInt32LE(1514, NETDEV_EVENT.skb_len);
  b.writeUInt16LE(1448, NETDEV_EVENT.data_len);
  b[NETDEV_EVENT.tcp_flags] = 0x18;
  b[NETDEV_EVENT.point] = point;
  b.writeUInt32LE(3, NETDEV_EVENT.agg_pkts);
  b.writeUInt32LE(4000, NETDEV_EVENT.agg_bytes);
  b.set([10, 244, 1, 10], NETDEV_EVENT.tuple + TUPLE.saddr);
  b.set([10, 244, 1, 20], NETDEV_EVENT.tuple + TUPLE.daddr);
  b.writeUInt16LE(40000, NETDEV_EVENT.tuple + TUPLE.sport);
  b.writeUInt16LE(8080, NETDEV_EVENT.tuple + TUPLE.dport);
  b.writeUInt16LE(2, NETDEV_EVENT.tuple + TUPLE.family);
  return b;
}

test('net_dev records decode field by field, one reused view per record', () => {
  const got: (Omit<NetDevEvent, 'buf' | 'tuple'> & { src: string; dst: string; sport: number; dport: number })[] = [];
  const d = new Decoder({
    onSock: () => assert.fail('sock'), onState: () => assert.fail('state'), onPkt: () => assert.fail('pkt'),
    onNetDev: (e) => {
      const { buf, tuple, ...rest } = e;
      got.push({ ...rest, src: addrString(buf, tuple.saddrOff, tuple.family), dst: addrString(buf, tuple.daddrOff, tuple.family), sport: tuple.sport, dport: tuple.dport });
    },
  });
  d.decode(Buffer.concat([netdevRecord(NETDEV_POINT.QUEUE), netdevRecord(NETDEV_POINT.XMIT)]));
  assert.equal(got.length, 2);
  assert.deepEqual(got[0], {
    type: EVENT_TYPE.EV_NETDEV, flags: FLAGS.F_SEQ_VALID, tsNs: 987654321, skb: (0xffff8881 & 0x1fffff) * 2 ** 32 + 0x0badf00d,
    ifindex: 7, netns: 4026532177, point: NETDEV_POINT.QUEUE, seq: 0xfffffff0, ack: 42, skbLen: 1514, dataLen: 1448, tcpFlags: 0x18,
    aggPkts: 3, aggBytes: 4000, src: '10.244.1.10', dst: '10.244.1.20', sport: 40000, dport: 8080,
  });
  assert.equal(got[1]?.point, NETDEV_POINT.XMIT);
  assert.deepEqual(d.stats, { records: 2, batches: 1, unknownType: 0, badVersion: 0, malformed: 0, skippedBytes: 0 });
});

test('a net_dev record shorter than its struct is malformed; a whole one is read', () => {
  const short = netdevRecord(NETDEV_POINT.RX).subarray(0, NETDEV_EVENT.SIZE - 8);
  short.writeUInt32LE(short.length, HDR.len);
  const d = new Decoder({ onSock() {}, onState() {}, onPkt() {}, onNetDev: () => assert.fail('read a short record') });
  d.decode(Buffer.from(short));
  assert.equal(d.stats.malformed, 1);
  let read = 0;
  const whole = new Decoder({ onSock() {}, onState() {}, onPkt() {}, onNetDev: () => void read++ });
  whole.decode(netdevRecord(NETDEV_POINT.RX));
  assert.deepEqual([whole.stats.records, whole.stats.malformed, whole.stats.unknownType, read], [1, 0, 0, 1]);
});
