// Open vSwitch (userspace datapath) in a request's tree. The bridge's crossing itself is seen by TC
// on its ports (a pod's host veth is an OVS port): hops.ts makes a 'bridge' hop between two host
// veths; when both are ports of one OVS bridge, that hop is the switch and becomes an 'ovs' hop
// naming the bridge and the in and out ports. ovs-vswitchd's flow misses (bpf/ovs.bpf.c) arrive as
// upcall records carrying the first packet of the batch that missed (tuple + TCP seq: the skb
// changes across the userspace datapath, the packet's identity on the wire does not):
// - a miss on a message's own first packet marks that message's hop;
// - a miss on a packet that carries no data (SYN, SYN-ACK, the handshake's ACK: the usual case,
//   megaflows are installed by a connection's first packets) is charged to the first message the
//   same sender sends on that connection afterwards: the first request pays for its connection's
//   flow setup, in its direction, and the first response for the reverse flow.
import { LRUCache } from 'lru-cache';
import { endpointString, type OvsUpcallEvent } from '../events/decode.ts';
import { reqMsgKey, respMsgKey } from './hops.ts';
import type { Endpoint, HopRecord, ObservationPoint } from './records.ts';

/** an OVS port as ovsdb names it */
export interface OvsPort {
  bridge: string;
  /** OpenFlow port number (-1 when not assigned) */
  ofport: number;
}

/** what the ovs-vswitchd tracker (probes/ovs.ts) tells the correlator */
export interface OvsView {
  /** the ports of one ovs-vswitchd (by interface name), replacing what it said before */
  setPorts(pid: number, ports: ReadonlyMap<string, OvsPort>): void;
  /** that ovs-vswitchd is gone */
  dropProcess(pid: number): void;
}

export interface OvsHop {
  bridge: string;
  inPort: string;
  outPort: string;
  /** the message's packets (or its connection's setup, charged to it) took the slow path */
  upcall: boolean;
  /** time from the batch's read to the flow install, summed over the misses charged */
  upcallNs?: number;
  /** 'message': its own first packet missed; 'handshake': its connection's setup packets did */
  upcallCause?: 'message' | 'handshake';
}

export interface OvsStats {
  upcalls: number;
  /** upcall records whose first packet was not TCP (ARP, ICMP, ...): nothing to attach them to */
  upcallsNotTcp: number;
  /** upcalls marked on a hop span */
  upcallsCharged: number;
  /** upcall records dropped from the bounded tables before any hop claimed them */
  upcallEvictions: number;
  ovsHops: number;
}

interface Miss {
  rxTsNs: number;
  ns: number;
}

/** bounded like the hop tables: a miss needs keeping until its message's exchange is emitted */
const MAX_MISSES = 8192;

export class OvsCorrelator implements OvsView {
  readonly stats: OvsStats = { upcalls: 0, upcallsNotTcp: 0, upcallsCharged: 0, upcallEvictions: 0, ovsHops: 0 };
  /** interface name -> port, merged over every ovs-vswitchd */
  private ports = new Map<string, OvsPort>();
  private readonly byPid = new Map<number, ReadonlyMap<string, OvsPort>>();
  /** misses on a message's first packet, under both readings of the packet (as hops.ts files them) */
  private readonly messages: LRUCache<string, Miss>;
  /** misses on data-less packets, per direction of a connection ("sender>receiver"), not yet charged */
  private readonly setups: LRUCache<string, Miss[]>;

  constructor(max = MAX_MISSES) {
    const disposeAfter = (_v: unknown, _k: string, reason: string) => {
      if (reason === 'evict') this.stats.upcallEvictions++;
    };
    this.messages = new LRUCache<string, Miss>({ max, disposeAfter });
    this.setups = new LRUCache<string, Miss[]>({ max, disposeAfter });
  }

  setPorts(pid: number, ports: ReadonlyMap<string, OvsPort>): void {
    this.byPid.set(pid, ports);
    this.merge();
  }

  dropProcess(pid: number): void {
    if (this.byPid.delete(pid)) this.merge();
  }

  private merge(): void {
    const m = new Map<string, OvsPort>();
    for (const ports of this.byPid.values()) for (const [k, v] of ports) m.set(k, v);
    this.ports = m;
  }

  port(ifname: string): OvsPort | undefined {
    return this.ports.get(ifname);
  }

  onUpcall(e: OvsUpcallEvent): void {
    this.stats.upcalls++;
    if (e.tuple.family === 0) {
      this.stats.upcallsNotTcp++;
      return;
    }
    const src = endpointString(e.buf, e.tuple.saddrOff, e.tuple.family, e.tuple.sport);
    const dst = endpointString(e.buf, e.tuple.daddrOff, e.tuple.family, e.tuple.dport);
    const miss: Miss = { rxTsNs: e.rxTsNs, ns: Math.max(0, e.tsNs - e.rxTsNs) };
    if (e.dataLen > 0) {
      this.messages.set(reqMsgKey(src, e.seq), miss);
      this.messages.set(respMsgKey(dst, e.seq), miss);
      return;
    }
    const k = `${src}>${dst}`;
    const list = this.setups.get(k);
    if (list) {
      if (list.length < 8) list.push(miss);
    } else {
      this.setups.set(k, [miss]);
    }
  }

  /**
   * Turns the 'bridge' hops of one exchange's messages that cross an OVS bridge into 'ovs' hops.
   * local/remote: the exchange's connection as its process sees it; server: it is the server's.
   */
  decorate(hops: HopRecord[], local: Endpoint, remote: Endpoint, server: boolean): void {
    if (this.ports.size === 0) return;
    const client = server ? remote : local;
    const srv = server ? local : remote;
    const c = `${client.ip}:${client.port}`;
    const s = `${srv.ip}:${srv.port}`;
    for (const h of hops) {
      // two host veths (bridge), or the bridge's internal port (a device of the node: node) and a veth
      if ((h.layer !== 'bridge' && h.layer !== 'node') || h.qdisc) continue;
      const inPort = this.portOf(h.from);
      const outPort = this.portOf(h.to);
      // one port on both ends is time on that device (its qdisc), not a crossing
      if (!inPort || !outPort || inPort.bridge !== outPort.bridge || h.from.name === h.to.name) continue;
      const o: OvsHop = { bridge: inPort.bridge, inPort: h.from.name, outPort: h.to.name, upcall: false };
      const own = this.messages.get(h.messageKey);
      if (own) {
        this.messages.delete(h.messageKey);
        o.upcall = true;
        o.upcallNs = own.ns;
        o.upcallCause = 'message';
        this.stats.upcallsCharged++;
      }
      // the connection's setup in this message's direction, seen before this message entered the switch
      const dirKey = h.direction === 'request' ? `${c}>${s}` : `${s}>${c}`;
      const setup = this.setups.get(dirKey);
      if (setup) {
        const before = setup.filter((m) => m.rxTsNs <= h.from.tsNs);
        if (before.length) {
          o.upcall = true;
          o.upcallNs = (o.upcallNs ?? 0) + before.reduce((a, m) => a + m.ns, 0);
          o.upcallCause ??= 'handshake';
          this.stats.upcallsCharged += before.length;
          const rest = setup.filter((m) => m.rxTsNs > h.from.tsNs);
          if (rest.length) this.setups.set(dirKey, rest);
          else this.setups.delete(dirKey);
        }
      }
      h.layer = 'ovs';
      h.ovs = o;
      this.stats.ovsHops++;
    }
  }

  /** a host-side interface (TC or net_dev in the node's netns) that is an OVS port */
  private portOf(p: ObservationPoint): OvsPort | undefined {
    if ((p.kind !== 'tc' && p.kind !== 'netdev') || p.side === 'pod') return undefined;
    return this.ports.get(p.name);
  }
}
