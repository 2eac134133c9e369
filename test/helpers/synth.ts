// Builds ring-buffer records the way the BPF programs lay them out (offsets from the generated
// layout), for correlator tests that need traffic shapes a capture did not happen to contain.
import { CONSTS, EVENT_TYPE, FLAGS, HDR, PKT_EVENT, SOCK_EVENT, SOCK_OP, TAIL_EVENT, TAIL_SRC, TUPLE } from '../../agent/src/events/layout.generated.ts';

export interface Endpoint {
  /** 4 bytes: AF_INET; 16: AF_INET6 */
  ip: number[];
  port: number;
}

/** An IPv4 endpoint as a dual-stack (AF_INET6) socket sees it: ::ffff:a.b.c.d */
export function v4Mapped(e: Endpoint): Endpoint {
  return { ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...e.ip], port: e.port };
}

export interface SockSpec {
  type: number;
  ts: number;
  enterTs?: number;
  sk: number;
  pid: number;
  tid?: number;
  netns: number;
  fd?: number;
  local: Endpoint;
  remote: Endpoint;
  dir?: number;
  seq?: number;
  ret?: number;
  payload?: Buffer;
  /** capture at most this many payload bytes (the kernel's cap); default: all */
  cap?: number;
  comm?: string;
  flags?: number;
}

const pad8 = (n: number) => Math.ceil(n / 8) * 8;

export function sockRecord(s: SockSpec): Buffer {
  const payload = s.payload ?? Buffer.alloc(0);
  const n = Math.min(payload.length, s.cap ?? payload.length);
  const len = SOCK_EVENT.payload + pad8(Math.max(n, 8));
  const b = Buffer.alloc(len);
  b.writeUInt16LE(s.type, HDR.type);
  b[HDR.version] = CONSTS.EVENTS_VERSION;
  let flags = s.flags ?? 0;
  if (s.type === EVENT_TYPE.EV_SOCK_DATA && s.seq !== undefined) flags |= FLAGS.F_SEQ_VALID;
  const ret = s.ret ?? payload.length;
  if (ret > n) flags |= FLAGS.F_TRUNCATED;
  b[HDR.flags] = flags;
  b.writeUInt32LE(len, HDR.len);
  writeU64(b, HDR.ts_ns, s.ts);
  writeU64(b, SOCK_EVENT.enter_ts_ns, s.enterTs ?? s.ts);
  writeU64(b, SOCK_EVENT.sk, s.sk);
  writeU64(b, SOCK_EVENT.ret, ret);
  b.writeUInt32LE(s.pid, SOCK_EVENT.pid);
  b.writeUInt32LE(s.tid ?? s.pid, SOCK_EVENT.tid);
  b.writeUInt32LE(s.netns, SOCK_EVENT.netns);
  b.writeInt32LE(s.fd ?? 3, SOCK_EVENT.fd);
  b.writeUInt32LE((s.seq ?? 0) >>> 0, SOCK_EVENT.seq);
  b[SOCK_EVENT.op] = s.dir === 2 ? SOCK_OP.OP_WRITE : SOCK_OP.OP_READ;
  b[SOCK_EVENT.dir] = s.dir ?? 0;
  b.writeUInt16LE(n, SOCK_EVENT.payload_len);
  writeTuple(b, SOCK_EVENT.tuple, s.local, s.remote);
  b.write((s.comm ?? 'app').slice(0, 15), SOCK_EVENT.comm, 'latin1');
  payload.copy(b, SOCK_EVENT.payload, 0, n);
  return b;
}

export function pktRecord(p: { ts: number; ifindex: number; src: Endpoint; dst: Endpoint; seq: number; dataLen: number; dir: number; payload?: Buffer }): Buffer {
  const payload = p.payload ?? Buffer.alloc(0);
  const n = Math.min(payload.length, 128);
  const len = PKT_EVENT.payload + pad8(Math.max(n, 8));
  const b = Buffer.alloc(len);
  b.writeUInt16LE(EVENT_TYPE.EV_PKT, HDR.type);
  b[HDR.version] = CONSTS.EVENTS_VERSION;
  b[HDR.flags] = FLAGS.F_SEQ_VALID;
  b.writeUInt32LE(len, HDR.len);
  writeU64(b, HDR.ts_ns, p.ts);
  b.writeUInt32LE(p.ifindex, PKT_EVENT.ifindex);
  b.writeUInt32LE(p.seq >>> 0, PKT_EVENT.seq);
  b.writeUInt16LE(p.dataLen, PKT_EVENT.data_len);
  b[PKT_EVENT.dir] = p.dir;
  b.writeUInt16LE(n, PKT_EVENT.payload_len);
  writeTuple(b, PKT_EVENT.tuple, p.src, p.dst);
  payload.copy(b, PKT_EVENT.payload, 0, n);
  return b;
}

/** a tail event: where a message (first byte at seq) ends at a TC or net_dev point, and when its last packet passed */
export function tailRecord(t: {
  ts: number; ifindex: number; netns?: number; src: Endpoint; dst: Endpoint; seq: number; endSeq: number; pkts?: number;
  netdev?: boolean; point: number; queueTs?: number; final?: boolean;
}): Buffer {
  const b = Buffer.alloc(TAIL_EVENT.SIZE);
  b.writeUInt16LE(EVENT_TYPE.EV_TAIL, HDR.type);
  b[HDR.version] = CONSTS.EVENTS_VERSION;
  b[HDR.flags] = FLAGS.F_SEQ_VALID;
  b.writeUInt32LE(TAIL_EVENT.SIZE, HDR.len);
  writeU64(b, HDR.ts_ns, t.ts);
  writeU64(b, TAIL_EVENT.queue_ts_ns, t.queueTs ?? 0);
  b.writeUInt32LE(t.ifindex, TAIL_EVENT.ifindex);
  b.writeUInt32LE(t.netns ?? 0, TAIL_EVENT.netns);
  b.writeUInt32LE(t.seq >>> 0, TAIL_EVENT.seq);
  b.writeUInt32LE(t.endSeq >>> 0, TAIL_EVENT.end_seq);
  b.writeUInt32LE(t.pkts ?? 2, TAIL_EVENT.pkts);
  b[TAIL_EVENT.src] = t.netdev ? TAIL_SRC.TAIL_NETDEV : TAIL_SRC.TAIL_TC;
  b[TAIL_EVENT.point] = t.point;
  b[TAIL_EVENT.final] = t.final ? 1 : 0;
  writeTuple(b, TAIL_EVENT.tuple, t.src, t.dst);
  return b;
}

function writeU64(b: Buffer, o: number, v: number): void {
  b.writeUInt32LE(v % 4294967296 >>> 0, o);
  b.writeUInt32LE(Math.floor(v / 4294967296) >>> 0, o + 4);
}

function writeTuple(b: Buffer, o: number, s: Endpoint, d: Endpoint): void {
  b.set(s.ip, o + TUPLE.saddr);
  b.set(d.ip, o + TUPLE.daddr);
  b.writeUInt16LE(s.port, o + TUPLE.sport);
  b.writeUInt16LE(d.port, o + TUPLE.dport);
  if (s.ip.length !== d.ip.length) throw new Error('a tuple of one address family');
  b.writeUInt16LE(s.ip.length === 16 ? 10 : 2, o + TUPLE.family);
}

/** Cuts `data` into consecutive segments of random length in [1, max]. */
export function cut(data: Buffer, rnd: () => number, max = data.length): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < data.length; ) {
    const n = Math.max(1, Math.min(data.length - o, 1 + Math.floor(rnd() * max)));
    out.push(data.subarray(o, o + n));
    o += n;
  }
  return out;
}
