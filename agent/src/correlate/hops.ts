// Hops: every place the bytes of one message were seen (socket write, packets on traced interfaces,
// net_dev points, socket read), filed under the message's key, and the spans between consecutive
// points. A message is keyed by (client endpoint, TCP seq of its first byte) and its direction:
// the client endpoint is the same for every observer, and DNAT rewrites only the server side.
import { LRUCache } from 'lru-cache';
import { endpointKeyPrefix, msgKeyPrefix, type NetDevEvent, type PktEvent, type TailEvent, type Tuple } from '../events/decode.ts';
import { FLAGS, NETDEV_POINT, TAIL_SRC } from '../events/layout.generated.ts';
import { LRU_OPTS } from '../lru.ts';
import type { Topology } from '../k8s/topology.ts';
import type { WallClock } from './clock.ts';
import { hopBaseId, nthSpanIdOf } from './ids.ts';
import type { HopRecord, Layer, ObservationPoint } from './records.ts';

export type { NetDevEvent };

/** observation points kept per message: socket write + a few interfaces + socket read */
export const MAX_POINTS = 16;

/** a request: sent by the client endpoint, its first byte at seq (client's sequence space) */
export function reqMsgKey(clientEp: string, seq: number): string {
  return msgKeyPrefix(clientEp, true) + seq;
}

/** a response: sent to the client endpoint, its first byte at seq (server's sequence space) */
export function respMsgKey(clientEp: string, seq: number): string {
  return msgKeyPrefix(clientEp, false) + seq;
}

interface Msg {
  key: string;
  points: ObservationPoint[];
  lastTs: number;
}

export interface HopStats {
  messageEvictions: number;
  /** observation points beyond MAX_POINTS for one message (retransmissions) */
  pointsDropped: number;
  /** data packets on traced interfaces that no traced socket on this node sent or received */
  packetsWithoutConnection: number;
  /** tail events (where a message's data ends at a point) whose first packet is not on file */
  tailsUnmatched: number;
}

type PointClass = 'socket' | 'poddev' | 'veth' | 'nodedev';

function classOf(p: ObservationPoint): PointClass {
  if (p.kind === 'write' || p.kind === 'read') return 'socket';
  if (p.side === 'pod') return 'poddev';
  // a device of the node's netns (TC or net_dev) with a pod behind it is that pod's host-side veth;
  // without one it is the node's own (an uplink)
  return p.pod ? 'veth' : 'nodedev';
}

/**
 * The layer between two consecutive points (design.md): socket and the pod's own device: the pod's
 * network stack (pod); the pod's device and its host-side veth: the veth pair (veth); socket and
 * host veth with nothing observed between: pod; two host-side interfaces: the node's bridge
 * (bridge); a device in the node's netns (uplink), or socket to socket: the node's stack (node).
 */
export function layerBetween(a: ObservationPoint, b: ObservationPoint): Layer {
  const x = classOf(a);
  const y = classOf(b);
  if (x === 'nodedev' || y === 'nodedev') return 'node';
  if (x === 'socket' && y === 'socket') return 'node';
  if (x === 'socket' || y === 'socket') return 'pod';
  if (x === 'veth' && y === 'veth') return 'bridge';
  if (x === 'poddev' && y === 'poddev') return a.pod && a.pod === b.pod ? 'pod' : 'bridge';
  return 'veth';
}

const byTs = (a: ObservationPoint, b: ObservationPoint) => a.tsNs - b.tsNs;

/** in place, stable (equal times keep their order, as Array#sort(byTs) does), without sort's work array: at most MAX_POINTS */
function sortByTs(pts: ObservationPoint[]): void {
  for (let i = 1; i < pts.length; i++) {
    const x = pts[i] as ObservationPoint;
    let j = i - 1;
    for (; j >= 0 && (pts[j] as ObservationPoint).tsNs > x.tsNs; j--) pts[j + 1] = pts[j] as ObservationPoint;
    pts[j + 1] = x;
  }
}

const NO_POINTS: readonly ObservationPoint[] = [];

/** sorted by byTs already (what the stable sort would return unchanged) */
function inOrder(pts: readonly ObservationPoint[]): boolean {
  for (let i = 1; i < pts.length; i++) if ((pts[i] as ObservationPoint).tsNs < (pts[i - 1] as ObservationPoint).tsNs) return false;
  return true;
}

/** which device a point is on ("" never: sockets are undefined, each its own place) */
function deviceOf(p: ObservationPoint): string | undefined {
  if (p.kind === 'write' || p.kind === 'read') return undefined;
  // TC runs in the node's netns: a node-side net_dev point of the same name is the same device
  return p.side === 'pod' ? `p/${p.netns ?? 0}/${p.name}` : `n/${p.name}`;
}

const isQueue = (p: ObservationPoint) => p.kind === 'netdev' && p.dir === NETDEV_POINT.QUEUE;

/** when the message's last byte passed the point, as far as known (else its first) */
export const lastOf = (p: ObservationPoint): number => Math.max(p.tsNs, p.lastTsNs ?? 0);

/**
 * Is the point's last byte known? Sockets: once their exchange finished. Packets: when what was
 * seen there reaches the message's end (msgEnd, from the HTTP parse: seq of its first byte + its
 * bytes; a read that also consumed the FIN reports a seq one too high, so 1 short is the end).
 * Without msgEnd, what the point has is taken as its end.
 */
export function endKnown(p: ObservationPoint, msgEnd: number | undefined): boolean {
  if (p.kind === 'write' || p.kind === 'read') return p.lastTsNs !== undefined;
  if (msgEnd === undefined || p.endSeq === undefined) return true;
  return ((msgEnd - p.endSeq) | 0) <= 1;
}

/**
 * How long the stretch from a to b held the message: the longer of its first byte's trip and its
 * last byte's. A stretch that only adds latency delays both alike; one that limits bandwidth or
 * queues (a tbf, a busy link) lets the first byte through and holds the last: only there does the
 * last byte's trip grow. Downstream of such a stretch the message arrives spread out and leaves
 * as spread out, so its stretches do not grow. The last byte's trip counts only when both ends
 * know their last byte: a guess would move time from one stretch to the next.
 */
export function heldNs(a: ObservationPoint, b: ObservationPoint, msgEnd?: number): number {
  const first = b.tsNs - a.tsNs;
  if (!endKnown(a, msgEnd) || !endKnown(b, msgEnd)) return first;
  return Math.max(first, lastOf(b) - lastOf(a));
}

/** a later seq than s, modulo 2^32 */
const seqAfter = (x: number, s: number) => ((x - s) | 0) > 0;

/** moves a point's last byte to (ts, end) when end is not before what it has; true when the point took it */
function moveEnd(q: ObservationPoint, ts: number, end: number): boolean {
  if (q.endSeq !== undefined && seqAfter(q.endSeq, end)) return true; // an older report, after a newer one
  q.endSeq = end;
  if (ts > (q.lastTsNs ?? q.tsNs)) q.lastTsNs = ts;
  return true;
}

/** the layer of time spent on one device: the pod's own device (pod), a host veth (veth), an uplink (node) */
function deviceLayer(p: ObservationPoint): Layer {
  const c = classOf(p);
  return c === 'poddev' ? 'pod' : c === 'veth' ? 'veth' : 'node';
}

export class Hops {
  readonly stats: HopStats = { messageEvictions: 0, pointsDropped: 0, packetsWithoutConnection: 0, tailsUnmatched: 0 };
  private readonly msgs: LRUCache<string, Msg>;
  private readonly topo: Topology;

  constructor(maxMessages: number, topo: Topology) {
    this.topo = topo;
    this.msgs = new LRUCache<string, Msg>({
      max: maxMessages,
      disposeAfter: (m, k, reason) => {
        if (reason === 'evict') this.stats.messageEvictions++;
        // each packet is filed under a request and a response reading: count it once, from the
        // request reading, when no socket on this node claimed either
        if (k.charCodeAt(0) === 0x3e) {
          for (let i = 0; i < m.points.length; i++) {
            const c = (m.points[i] as ObservationPoint).claim;
            if (c && !c.claimed) this.stats.packetsWithoutConnection++;
          }
        }
      },
    });
  }

  get size(): number {
    return this.msgs.size;
  }

  /** adds an observation point; a message seen more often than MAX_POINTS (retransmissions, loops) keeps its first ones */
  file(key: string, p: ObservationPoint): void {
    let m = this.msgs.get(key, LRU_OPTS);
    if (!m) {
      m = { key, points: [], lastTs: p.tsNs };
      this.msgs.set(key, m, LRU_OPTS);
    }
    m.lastTs = p.tsNs;
    const pts = m.points;
    if (!p.claim) {
      for (let i = 0; i < pts.length; i++) {
        const c = (pts[i] as ObservationPoint).claim;
        if (c) c.claimed = true;
      }
    } else if (!p.claim.claimed) {
      // a socket of this node already has it
      for (let i = 0; i < pts.length; i++) {
        if (!(pts[i] as ObservationPoint).claim) {
          p.claim.claimed = true;
          break;
        }
      }
    }
    if (m.points.length < MAX_POINTS) m.points.push(p);
    else this.stats.pointsDropped++;
  }

  /** a TC observation on a host-side interface (node netns) */
  onPkt(e: PktEvent): void {
    if (e.dataLen === 0 || !(e.flags & FLAGS.F_SEQ_VALID)) return;
    const iface = this.topo.iface(e.ifindex);
    const name = iface?.name ?? `if${e.ifindex}`;
    this.fileBoth(e.buf, e.tuple, e.seq, {
      kind: 'tc', tsNs: e.tsNs, name, side: 'node', dir: e.dir, pod: iface?.pod, claim: { claimed: false }, ifindex: e.ifindex, endSeq: (e.seq + e.dataLen) >>> 0,
    });
  }

  /** a net_dev observation on a device, in a pod's netns or the node's */
  onNetDev(e: NetDevEvent): void {
    if (e.dataLen === 0 || !(e.flags & FLAGS.F_SEQ_VALID)) return;
    const iface = this.topo.iface(e.ifindex, e.netns);
    const name = iface?.name ?? `if${e.ifindex}`;
    this.fileBoth(e.buf, e.tuple, e.seq, {
      kind: 'netdev', tsNs: e.tsNs, name, side: iface?.side ?? 'node', dir: e.point, pod: iface?.pod, netns: e.netns, claim: { claimed: false },
      ifindex: e.ifindex, endSeq: (e.seq + e.dataLen) >>> 0,
    });
  }

  /**
   * Where a message's data ends at one point (TC direction on an interface, net_dev point on a
   * device), and when its last packet passed: moves that point's last byte. An xmit tail also
   * says when its packet was queued: the device's queue point's last byte.
   */
  onTail(e: TailEvent): void {
    if (!(e.flags & FLAGS.F_SEQ_VALID)) return;
    const t = e.tuple;
    const m = this.msgs.get(endpointKeyPrefix(e.buf, t.saddrOff, t.family, t.sport, true) + e.seq, LRU_OPTS) ??
      this.msgs.get(endpointKeyPrefix(e.buf, t.daddrOff, t.family, t.dport, false) + e.seq, LRU_OPTS);
    const tc = e.src === TAIL_SRC.TAIL_TC;
    let hit = false;
    const pts = m ? m.points : NO_POINTS;
    for (let i = 0; i < pts.length; i++) {
      const q = pts[i] as ObservationPoint;
      if (q.ifindex !== e.ifindex || q.kind !== (tc ? 'tc' : 'netdev') || (!tc && q.netns !== e.netns)) continue;
      if (q.dir === e.point) hit = moveEnd(q, e.tsNs, e.endSeq) || hit;
      else if (!tc && e.point === NETDEV_POINT.XMIT && q.dir === NETDEV_POINT.QUEUE && e.queueTsNs) moveEnd(q, e.queueTsNs, e.endSeq);
    }
    if (!hit) this.stats.tailsUnmatched++;
    // get() made it the most recent: its time follows, so expire() still walks in time order
    if (m && e.tsNs > m.lastTs) m.lastTs = e.tsNs;
  }

  /**
   * Which end is the client is unknown on the wire: file the point under both readings (sender as
   * the client: a request; receiver as the client: a response); the reading nobody claims expires.
   */
  private fileBoth(buf: Buffer, t: Tuple, seq: number, pt: ObservationPoint): void {
    // reqMsgKey(sender, seq) and respMsgKey(receiver, seq), their prefixes memoised with the endpoints
    this.file(endpointKeyPrefix(buf, t.saddrOff, t.family, t.sport, true) + seq, pt);
    this.file(endpointKeyPrefix(buf, t.daddrOff, t.family, t.dport, false) + seq, pt);
  }

  /**
   * The points of a message in time order. A read that also consumed the peer's FIN reports a seq
   * one too high (tcp_recvmsg advances copied_seq past the FIN): a close-delimited (HTTP/1.0)
   * response read at once with its FIN. When the key finds nothing but the reader's own point,
   * the points filed one sequence number lower (the writer's, the packets') are the same message.
   */
  points(key: string, finKey?: string): ObservationPoint[] {
    const m = this.msgs.get(key, LRU_OPTS);
    const pts = m ? m.points : [];
    if (finKey && pts.length < 2) {
      const alt = this.msgs.get(finKey, LRU_OPTS);
      if (alt && alt.points.length > 0) {
        for (const q of alt.points) if (q.claim) q.claim.claimed = true;
        return [...pts, ...alt.points].sort(byTs);
      }
    }
    // the message's own array, put in time order where it is not (callers only read it; every
    // other user of a message's points is indifferent to their order)
    if (!inOrder(pts)) sortByTs(pts);
    return pts;
  }

  /**
   * INTERNAL spans between consecutive places, ids derived from the message key. Points on one
   * device (TC and net_dev on a host veth or uplink; net_dev queue and xmit on a pod's eth0) are one
   * place: the hop into it ends at its first point, the hop out of it starts at its last. A place
   * whose points include a net_dev queue (the device took the packet) and a later one (the driver
   * sent it) gets a span of its own: time in the device's queueing discipline (a tbf rate limit
   * shows there). Arrival points on one device (netif_receive_skb, TC ingress) are microseconds
   * apart and get none: the hop out starts at the first. Each span starts at its first point's
   * first byte and lasts heldNs (the longer of the first and the last byte's trip; msgEnd, the seq
   * past the message's last byte when the parse knows it, says which points know their last
   * byte). Ids derive from the message key and this node's name: another node's agent sees the
   * same key but other devices.
   */
  build(pts: ObservationPoint[], key: string, direction: HopRecord['direction'], wall: WallClock, out: HopRecord[], msgEnd?: number): void {
    if (pts.length < 2) return;
    const base = hopBaseId(this.topo.nodeName, key);
    const head = base.slice(0, 8);
    const low = Number.parseInt(base.slice(8), 16);
    let n = 0;
    const push = (a: ObservationPoint, b: ObservationPoint, layer: Layer, qdisc: boolean) => {
      const held = Math.max(0, heldNs(a, b, msgEnd));
      // a stretch that held the last byte longer than the first (a queue, a rate limit) is placed
      // where it held it: from the last byte at a to the last byte at b. Placed at the first byte,
      // two such stretches in a row (a socket kept back by TCP, then a qdisc) would overlap, and
      // the later one's time would lie under no hop on the timeline (layer-time.ts: app, not network)
      const startNs = held > b.tsNs - a.tsNs && endKnown(a, msgEnd) && endKnown(b, msgEnd) ? Math.max(a.tsNs, lastOf(b) - held) : a.tsNs;
      const h: HopRecord = { spanId: nthSpanIdOf(head, low, n++), direction, layer, from: a, to: b, start: wall(startNs), end: wall(startNs + held), messageKey: key };
      if (qdisc) h.qdisc = true;
      out.push(h);
    };
    let prevOut: ObservationPoint | undefined;
    for (let i = 0; i < pts.length; ) {
      const first = pts[i] as ObservationPoint;
      const dev = deviceOf(first);
      let j = i + 1;
      while (j < pts.length && dev !== undefined && deviceOf(pts[j] as ObservationPoint) === dev) j++;
      const last = pts[j - 1] as ObservationPoint;
      if (prevOut) push(prevOut, first, layerBetween(prevOut, first), false);
      let queued = -1;
      for (let k = i; k < j - 1 && queued < 0; k++) if (isQueue(pts[k] as ObservationPoint)) queued = k;
      if (queued >= 0) {
        push(first, last, deviceLayer(first), true);
        prevOut = last;
      } else {
        prevOut = first;
      }
      i = j;
    }
  }

  /** forgets messages not touched since `before` */
  expire(before: number): void {
    const old: string[] = [];
    for (const [k, m] of this.msgs.rentries() as Generator<[string, Msg]>) {
      if (m.lastTs > before) break;
      old.push(k);
    }
    for (const k of old) this.msgs.delete(k);
  }

  clear(): void {
    this.msgs.clear();
  }
}
