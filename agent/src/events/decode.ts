// Walks a batch of ring-buffer records (concatenated by the native pump) and hands each one to a
// handler through a reused view object: no per-event allocation. Offsets come from
// layout.generated.ts (BTF of the compiled objects), never from hand-kept numbers.
import { CONSTS, EVENT_TYPE, HDR, NETDEV_EVENT, NETDEV_EVENT_SIZES, OVS_UPCALL_EVENT, PKT_EVENT, PKT_EVENT_SIZES, SOCK_EVENT, SOCK_EVENT_SIZES, STATE_EVENT, TAIL_EVENT, TAIL_EVENT_SIZES, TUPLE } from './layout.generated.ts';

// the readers below assume these widths; fail at load, not with garbage, if events.h changes
const EXPECT: [string, number, number][] = [
  ['sock.seq', SOCK_EVENT_SIZES.seq, 4], ['sock.ret', SOCK_EVENT_SIZES.ret, 8], ['sock.sk', SOCK_EVENT_SIZES.sk, 8],
  ['sock.payload_len', SOCK_EVENT_SIZES.payload_len, 2], ['pkt.seq', PKT_EVENT_SIZES.seq, 4], ['pkt.data_len', PKT_EVENT_SIZES.data_len, 2],
  ['netdev.skb', NETDEV_EVENT_SIZES.skb, 8], ['netdev.seq', NETDEV_EVENT_SIZES.seq, 4], ['netdev.data_len', NETDEV_EVENT_SIZES.data_len, 2],
  ['netdev.point', NETDEV_EVENT_SIZES.point, 1], ['tail.queue_ts_ns', TAIL_EVENT_SIZES.queue_ts_ns, 8], ['tail.end_seq', TAIL_EVENT_SIZES.end_seq, 4],
  ['tail.pkts', TAIL_EVENT_SIZES.pkts, 4], ['tail.point', TAIL_EVENT_SIZES.point, 1],
];
for (const [name, got, want] of EXPECT) if (got !== want) throw new Error(`events.h field ${name} is ${got} bytes, decoder reads ${want}`);

export interface Tuple {
  family: number;
  /** offset of the 16-byte source address inside buf */
  saddrOff: number;
  daddrOff: number;
  sport: number;
  dport: number;
}

interface Common {
  buf: Buffer;
  type: number;
  flags: number;
  /** CLOCK_MONOTONIC ns (exact below 2^53 ns, ~104 days of uptime) */
  tsNs: number;
}

export interface SockEvent extends Common {
  enterTsNs: number;
  /** socket identity: low 53 bits of the kernel struct sock address */
  sk: number;
  cgroupId: number;
  ret: number;
  pid: number;
  tid: number;
  netns: number;
  fd: number;
  seq: number;
  op: number;
  dir: number;
  tuple: Tuple;
  commOff: number;
  payloadOff: number;
  payloadLen: number;
}

export interface StateEvent extends Common {
  sk: number;
  pid: number;
  netns: number;
  oldState: number;
  newState: number;
  tuple: Tuple;
}

export interface PktEvent extends Common {
  ifindex: number;
  seq: number;
  ack: number;
  skbLen: number;
  dataLen: number;
  tcpFlags: number;
  dir: number;
  aggPkts: number;
  aggBytes: number;
  tuple: Tuple;
  payloadOff: number;
  payloadLen: number;
}

/** net_dev: a packet at a watched device's rx/queue/xmit point (headers only, no payload) */
export interface NetDevEvent extends Common {
  /** packet identity: low 53 bits of the struct sk_buff address */
  skb: number;
  ifindex: number;
  /** inode of the device's network namespace */
  netns: number;
  /** NETDEV_POINT: RX (netif_receive_skb), QUEUE (net_dev_queue), XMIT (net_dev_xmit) */
  point: number;
  seq: number;
  ack: number;
  skbLen: number;
  /** TCP payload bytes */
  dataLen: number;
  tcpFlags: number;
  aggPkts: number;
  aggBytes: number;
  /** as on the wire: s = sender */
  tuple: Tuple;
}

/**
 * TC/net_dev: where the data of a message longer than one packet ends at one observation point,
 * and when its last packet passed there (tsNs); the message's first packet was a pkt/netdev event.
 */
export interface TailEvent extends Common {
  /** net_dev XMIT: when that last packet was queued; else 0 */
  queueTsNs: number;
  ifindex: number;
  /** net_dev: inode of the device's netns; TC: 0 */
  netns: number;
  /** TCP seq of the message's first byte */
  seq: number;
  /** seq just past the last byte seen */
  endSeq: number;
  pkts: number;
  /** TAIL_SRC: TC (point = DIR) or NETDEV (point = NETDEV_POINT) */
  src: number;
  point: number;
  /** the message ended there (the flow turned, FIN, RST) */
  final: boolean;
  /** as on the wire: s = the message's sender */
  tuple: Tuple;
}

/**
 * ovs: ovs-vswitchd installed a datapath flow while it handled a batch read from a port
 * (bpf/ovs.bpf.c); ovs_kernel (kernel: true): a packet the kernel datapath sent to ovs-vswitchd came
 * back to be executed (bpf/ovs_kernel.bpf.c: batch = nth = 1, rxTsNs = the upcall).
 */
export interface OvsUpcallEvent extends Common {
  /** the kernel datapath's upcall (EV_OVS_KUPCALL) rather than the userspace datapath's flow install */
  kernel: boolean;
  /** recvmmsg returned the batch, or the kernel sent the packet up (tsNs: the flow's creation, or the packet back) */
  rxTsNs: number;
  pid: number;
  tid: number;
  /** packets in the batch; the tuple, seq and flags are its first packet's */
  batch: number;
  /** 1 for the batch's first flow install, 2 for its second, ... */
  nth: number;
  seq: number;
  ack: number;
  tcpFlags: number;
  dataLen: number;
  /** as on the wire: s = sender; family 0 when the first packet was not TCP */
  tuple: Tuple;
}

export interface EventHandler {
  onSock(e: SockEvent): void;
  onState(e: StateEvent): void;
  onPkt(e: PktEvent): void;
  /** optional: a handler without it ignores net_dev events (they are still counted as records) */
  onNetDev(e: NetDevEvent): void;
  /** optional: a handler without it ignores tail events (counted as records) */
  onTail?(e: TailEvent): void;
  /** optional: a handler without it ignores ovs upcall events */
  onOvsUpcall?(e: OvsUpcallEvent): void;
}

export interface DecodeStats {
  records: number;
  batches: number;
  unknownType: number;
  badVersion: number;
  malformed: number;
  /** bytes after a malformed header that could not be walked */
  skippedBytes: number;
}

const newTuple = (): Tuple => ({ family: 0, saddrOff: 0, daddrOff: 0, sport: 0, dport: 0 });

const u64 = (b: Buffer, o: number) => b.readUInt32LE(o + 4) * 4294967296 + b.readUInt32LE(o);
// kernel pointers have their top bits set; the low 53 bits identify the object
const ptr53 = (b: Buffer, o: number) => (b.readUInt32LE(o + 4) & 0x1fffff) * 4294967296 + b.readUInt32LE(o);

function readTuple(b: Buffer, o: number, t: Tuple): void {
  t.saddrOff = o + TUPLE.saddr;
  t.daddrOff = o + TUPLE.daddr;
  t.sport = b.readUInt16LE(o + TUPLE.sport);
  t.dport = b.readUInt16LE(o + TUPLE.dport);
  t.family = b.readUInt16LE(o + TUPLE.family);
}

export class Decoder {
  readonly stats: DecodeStats = { records: 0, batches: 0, unknownType: 0, badVersion: 0, malformed: 0, skippedBytes: 0 };
  private readonly sock: SockEvent;
  private readonly state: StateEvent;
  private readonly pkt: PktEvent;
  private readonly netdev: NetDevEvent;
  private readonly tail: TailEvent;
  private readonly ovs: OvsUpcallEvent;

  private readonly handler: EventHandler;

  constructor(handler: EventHandler) {
    this.handler = handler;
    const empty = Buffer.alloc(0);
    this.sock = { buf: empty, type: 0, flags: 0, tsNs: 0, enterTsNs: 0, sk: 0, cgroupId: 0, ret: 0, pid: 0, tid: 0, netns: 0, fd: 0, seq: 0, op: 0, dir: 0, tuple: newTuple(), commOff: 0, payloadOff: 0, payloadLen: 0 };
    this.state = { buf: empty, type: 0, flags: 0, tsNs: 0, sk: 0, pid: 0, netns: 0, oldState: 0, newState: 0, tuple: newTuple() };
    this.pkt = { buf: empty, type: 0, flags: 0, tsNs: 0, ifindex: 0, seq: 0, ack: 0, skbLen: 0, dataLen: 0, tcpFlags: 0, dir: 0, aggPkts: 0, aggBytes: 0, tuple: newTuple(), payloadOff: 0, payloadLen: 0 };
    this.tail = { buf: empty, type: 0, flags: 0, tsNs: 0, queueTsNs: 0, ifindex: 0, netns: 0, seq: 0, endSeq: 0, pkts: 0, src: 0, point: 0, final: false, tuple: newTuple() };
    this.ovs = { buf: empty, type: 0, flags: 0, tsNs: 0, kernel: false, rxTsNs: 0, pid: 0, tid: 0, batch: 0, nth: 0, seq: 0, ack: 0, tcpFlags: 0, dataLen: 0, tuple: newTuple() };
    this.netdev = { buf: empty, type: 0, flags: 0, tsNs: 0, skb: 0, ifindex: 0, netns: 0, point: 0, seq: 0, ack: 0, skbLen: 0, dataLen: 0, tcpFlags: 0, aggPkts: 0, aggBytes: 0, tuple: newTuple() };
  }

  /** Decodes every record of one batch. Never throws on bad input: it counts and stops. */
  decode(b: Buffer): void {
    this.stats.batches++;
    let o = 0;
    while (o + HDR.SIZE <= b.length) {
      const type = b.readUInt16LE(o + HDR.type);
      const len = b.readUInt32LE(o + HDR.len);
      if (len < HDR.SIZE || o + len > b.length || len % 8 !== 0) {
        // a record length we cannot trust: nothing after it can be framed
        this.stats.malformed++;
        this.stats.skippedBytes += b.length - o;
        return;
      }
      this.stats.records++;
      if (b[o + HDR.version] !== CONSTS.EVENTS_VERSION) {
        this.stats.badVersion++;
      } else if (type === EVENT_TYPE.EV_PKT) {
        if (len < PKT_EVENT.payload) this.stats.malformed++;
        else this.handler.onPkt(this.readPkt(b, o, len));
      } else if (type === EVENT_TYPE.EV_NETDEV) {
        if (len < NETDEV_EVENT.SIZE) this.stats.malformed++;
        else this.handler.onNetDev(this.readNetDev(b, o));
      } else if (type === EVENT_TYPE.EV_TAIL) {
        if (len < TAIL_EVENT.SIZE) this.stats.malformed++;
        else this.handler.onTail?.(this.readTail(b, o));
      } else if (type === EVENT_TYPE.EV_OVS_UPCALL || type === EVENT_TYPE.EV_OVS_KUPCALL) {
        if (len < OVS_UPCALL_EVENT.SIZE) this.stats.malformed++;
        else this.handler.onOvsUpcall?.(this.readOvsUpcall(b, o));
      } else if (type === EVENT_TYPE.EV_SOCK_STATE) {
        if (len < STATE_EVENT.SIZE) this.stats.malformed++;
        else this.handler.onState(this.readState(b, o));
      } else if (type >= EVENT_TYPE.EV_SOCK_DATA && type <= EVENT_TYPE.EV_SOCK_CLOSE) {
        if (len < SOCK_EVENT.payload) this.stats.malformed++;
        else this.handler.onSock(this.readSock(b, o, len));
      } else {
        this.stats.unknownType++;
      }
      o += len;
    }
    if (o !== b.length) {
      this.stats.malformed++;
      this.stats.skippedBytes += b.length - o;
    }
  }

  private common(e: Common, b: Buffer, o: number): void {
    e.buf = b;
    e.type = b.readUInt16LE(o + HDR.type);
    e.flags = b[o + HDR.flags];
    e.tsNs = u64(b, o + HDR.ts_ns);
  }

  private readSock(b: Buffer, o: number, len: number): SockEvent {
    const e = this.sock;
    this.common(e, b, o);
    e.enterTsNs = u64(b, o + SOCK_EVENT.enter_ts_ns);
    e.sk = ptr53(b, o + SOCK_EVENT.sk);
    e.cgroupId = u64(b, o + SOCK_EVENT.cgroup_id);
    e.ret = b.readInt32LE(o + SOCK_EVENT.ret + 4) * 4294967296 + b.readUInt32LE(o + SOCK_EVENT.ret);
    e.pid = b.readUInt32LE(o + SOCK_EVENT.pid);
    e.tid = b.readUInt32LE(o + SOCK_EVENT.tid);
    e.netns = b.readUInt32LE(o + SOCK_EVENT.netns);
    e.fd = b.readInt32LE(o + SOCK_EVENT.fd);
    e.seq = b.readUInt32LE(o + SOCK_EVENT.seq);
    e.op = b[o + SOCK_EVENT.op];
    e.dir = b[o + SOCK_EVENT.dir];
    readTuple(b, o + SOCK_EVENT.tuple, e.tuple);
    e.commOff = o + SOCK_EVENT.comm;
    e.payloadOff = o + SOCK_EVENT.payload;
    // never trust a length past the record
    e.payloadLen = Math.min(b.readUInt16LE(o + SOCK_EVENT.payload_len), len - SOCK_EVENT.payload);
    return e;
  }

  private readState(b: Buffer, o: number): StateEvent {
    const e = this.state;
    this.common(e, b, o);
    e.sk = ptr53(b, o + STATE_EVENT.sk);
    e.pid = b.readUInt32LE(o + STATE_EVENT.pid);
    e.netns = b.readUInt32LE(o + STATE_EVENT.netns);
    e.oldState = b.readUInt16LE(o + STATE_EVENT.oldstate);
    e.newState = b.readUInt16LE(o + STATE_EVENT.newstate);
    readTuple(b, o + STATE_EVENT.tuple, e.tuple);
    return e;
  }

  private readPkt(b: Buffer, o: number, len: number): PktEvent {
    const e = this.pkt;
    this.common(e, b, o);
    e.ifindex = b.readUInt32LE(o + PKT_EVENT.ifindex);
    e.seq = b.readUInt32LE(o + PKT_EVENT.seq);
    e.ack = b.readUInt32LE(o + PKT_EVENT.ack);
    e.skbLen = b.readUInt32LE(o + PKT_EVENT.skb_len);
    e.dataLen = b.readUInt16LE(o + PKT_EVENT.data_len);
    e.tcpFlags = b[o + PKT_EVENT.tcp_flags];
    e.dir = b[o + PKT_EVENT.dir];
    e.aggPkts = b.readUInt32LE(o + PKT_EVENT.agg_pkts);
    e.aggBytes = b.readUInt32LE(o + PKT_EVENT.agg_bytes);
    readTuple(b, o + PKT_EVENT.tuple, e.tuple);
    e.payloadOff = o + PKT_EVENT.payload;
    e.payloadLen = Math.min(b.readUInt16LE(o + PKT_EVENT.payload_len), len - PKT_EVENT.payload);
    return e;
  }

  private readTail(b: Buffer, o: number): TailEvent {
    const e = this.tail;
    this.common(e, b, o);
    e.queueTsNs = u64(b, o + TAIL_EVENT.queue_ts_ns);
    e.ifindex = b.readUInt32LE(o + TAIL_EVENT.ifindex);
    e.netns = b.readUInt32LE(o + TAIL_EVENT.netns);
    e.seq = b.readUInt32LE(o + TAIL_EVENT.seq);
    e.endSeq = b.readUInt32LE(o + TAIL_EVENT.end_seq);
    e.pkts = b.readUInt32LE(o + TAIL_EVENT.pkts);
    e.src = b[o + TAIL_EVENT.src] as number;
    e.point = b[o + TAIL_EVENT.point] as number;
    e.final = b[o + TAIL_EVENT.final] === 1;
    readTuple(b, o + TAIL_EVENT.tuple, e.tuple);
    return e;
  }

  private readOvsUpcall(b: Buffer, o: number): OvsUpcallEvent {
    const e = this.ovs;
    this.common(e, b, o);
    e.kernel = e.type === EVENT_TYPE.EV_OVS_KUPCALL;
    e.rxTsNs = u64(b, o + OVS_UPCALL_EVENT.rx_ts_ns);
    e.pid = b.readUInt32LE(o + OVS_UPCALL_EVENT.pid);
    e.tid = b.readUInt32LE(o + OVS_UPCALL_EVENT.tid);
    e.seq = b.readUInt32LE(o + OVS_UPCALL_EVENT.seq);
    e.ack = b.readUInt32LE(o + OVS_UPCALL_EVENT.ack);
    e.batch = b.readUInt16LE(o + OVS_UPCALL_EVENT.batch);
    e.tcpFlags = b[o + OVS_UPCALL_EVENT.tcp_flags];
    e.nth = b[o + OVS_UPCALL_EVENT.nth];
    e.dataLen = b.readUInt16LE(o + OVS_UPCALL_EVENT.data_len);
    readTuple(b, o + OVS_UPCALL_EVENT.tuple, e.tuple);
    return e;
  }

  private readNetDev(b: Buffer, o: number): NetDevEvent {
    const e = this.netdev;
    this.common(e, b, o);
    e.skb = ptr53(b, o + NETDEV_EVENT.skb);
    e.ifindex = b.readUInt32LE(o + NETDEV_EVENT.ifindex);
    e.netns = b.readUInt32LE(o + NETDEV_EVENT.netns);
    e.point = b[o + NETDEV_EVENT.point];
    e.seq = b.readUInt32LE(o + NETDEV_EVENT.seq);
    e.ack = b.readUInt32LE(o + NETDEV_EVENT.ack);
    e.skbLen = b.readUInt32LE(o + NETDEV_EVENT.skb_len);
    e.dataLen = b.readUInt16LE(o + NETDEV_EVENT.data_len);
    e.tcpFlags = b[o + NETDEV_EVENT.tcp_flags];
    e.aggPkts = b.readUInt32LE(o + NETDEV_EVENT.agg_pkts);
    e.aggBytes = b.readUInt32LE(o + NETDEV_EVENT.agg_bytes);
    readTuple(b, o + NETDEV_EVENT.tuple, e.tuple);
    return e;
  }
}

/**
 * Address at off (16 bytes) as text: dotted IPv4 or RFC 5952-ish IPv6. An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is the IPv4 address: a dual-stack socket (AF_INET6 bound to ::, as
 * Node.js and others listen by default) sees its IPv4 peers so, while the packets on the wire, and
 * the peer's own socket, carry the IPv4 address; message keys must be the same on both ends.
 * Allocates: call rarely.
 */
export function addrString(b: Buffer, off: number, family: number): string {
  if (family === 2) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  if (isV4Mapped(b, off)) return `${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(b.readUInt16BE(off + i).toString(16));
  return parts.join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:{3,}/, '::');
}

// "addr:port" strings of IPv4 endpoints, memoised: every packet and tail event names both ends
// of its connection, and a node's connections reuse few endpoints. A direct-mapped cache (a slot
// per hash, overwritten on collision) of a pure function of the bytes: nothing is lost when a
// slot is overwritten, so there is nothing to count.
const EP_SLOTS = 4096;
const epKeys = new Float64Array(EP_SLOTS).fill(-1);
const epStrs: string[] = new Array<string>(EP_SLOTS).fill('');

/**
 * The start of a message key (correlate/hops.ts reqMsgKey/respMsgKey: the key is this + the seq):
 * '>' a request sent by the client endpoint ep, '<' a response sent to it. Memoised below with each
 * endpoint, so a packet's two keys are one concatenation each.
 */
export const msgKeyPrefix = (ep: string, request: boolean): string => `${request ? '>' : '<'}${ep}/`;

const epReq: string[] = new Array<string>(EP_SLOTS).fill('');
const epResp: string[] = new Array<string>(EP_SLOTS).fill('');

function epSlot(b: Buffer, off: number, port: number): number {
  const a = b.readUInt32BE(off);
  const k = a * 65536 + port;
  const slot = (Math.imul(a ^ (port << 16) ^ port, 0x9e3779b1) >>> 20) & (EP_SLOTS - 1);
  if (epKeys[slot] !== k) {
    const str = `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}:${port}`;
    epKeys[slot] = k;
    epStrs[slot] = str;
    epReq[slot] = msgKeyPrefix(str, true);
    epResp[slot] = msgKeyPrefix(str, false);
  }
  return slot;
}

/** `addr:port` of one end of a tuple (the address as addrString writes it) */
export function endpointString(b: Buffer, off: number, family: number, port: number): string {
  if (family !== 2) return `${addrString(b, off, family)}:${port}`;
  return epStrs[epSlot(b, off, port)] as string;
}

/** msgKeyPrefix(endpointString(...), request) */
export function endpointKeyPrefix(b: Buffer, off: number, family: number, port: number, request: boolean): string {
  if (family !== 2) return msgKeyPrefix(`${addrString(b, off, family)}:${port}`, request);
  const slot = epSlot(b, off, port);
  return (request ? epReq[slot] : epResp[slot]) as string;
}

/** ::ffff:0:0/96 (RFC 4291 2.5.5.2) */
function isV4Mapped(b: Buffer, off: number): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}
