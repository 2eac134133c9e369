// What the correlator hands on: plain data about one HTTP exchange seen on this node and the network
// hops of its messages. No OpenTelemetry types: export/ maps these onto semantic conventions,
// span names and resources.
import type { PodInfo } from '../k8s/topology.ts';
import type { LayerSplit } from './layer-time.ts';
import type { OvsHop } from './ovs.ts';

/** Wall-clock time: [seconds, nanoseconds] since the epoch (an HrTime, without depending on the OTel API). */
export type WallTime = [number, number];

/** where time goes: the exchange's process (proxy or app) or the data path between two points */
export type Layer = 'proxy' | 'app' | 'pod' | 'veth' | 'bridge' | 'ovs' | 'node';

/**
 * Where the bytes of a message were seen:
 * - write/read: a socket syscall of a traced process (in a pod, or a hostNetwork pod);
 * - tc: a TC program on a host-side interface (a pod's veth, or an uplink);
 * - netdev: a net_dev tracepoint on a device, in the pod's netns (its eth0) or the node's.
 */
export interface ObservationPoint {
  kind: 'write' | 'read' | 'tc' | 'netdev';
  /** CLOCK_MONOTONIC ns */
  tsNs: number;
  /** sockets: the workload (or comm) of the process; interfaces: the device name */
  name: string;
  /** interfaces: which netns the device lives in (TC: always the node's) */
  side?: 'node' | 'pod';
  /** tc: DIR_IN/DIR_OUT of the packet at the interface; netdev: NETDEV_POINT */
  dir?: number;
  /** the pod of the socket, the pod behind a host veth, the pod owning its eth0 */
  pod?: PodInfo;
  netns?: number;
  /** packets: shared by the two readings of the packet; set when a socket claims either */
  claim?: { claimed: boolean };
  /** packets: the interface's index (in the node's netns for TC, in `netns` for net_dev) */
  ifindex?: number;
  /**
   * When the message's last byte passed this point: packets, from tail events (a message of one
   * packet: its first); sockets, when the exchange's message ended. Undefined: only the first known.
   */
  lastTsNs?: number;
  /** packets: TCP seq just past the last byte seen here (first packet: seq + its payload) */
  endSeq?: number;
}

export interface HopRecord {
  spanId: string;
  direction: 'request' | 'response';
  layer: Layer;
  from: ObservationPoint;
  to: ObservationPoint;
  start: WallTime;
  end: WallTime;
  /** the message key the points were filed under (client endpoint + seq of the first byte) */
  messageKey: string;
  /** time on one device, from its net_dev queue point to its last point there (its qdisc) */
  qdisc?: true;
  /** layer 'ovs': the Open vSwitch bridge crossed, its ports, and whether it missed its flow cache (correlate/ovs.ts) */
  ovs?: OvsHop;
}

export type InvalidReason = 'bad_request_line' | 'head_incomplete' | 'head_too_long';

export interface ProcessInfo {
  pid: number;
  tid: number;
  /** thread name (15 characters at most) */
  comm: string;
  /** the program (basename of /proc/<pid>/exe), comm when unknown */
  executable: string;
  netns: number;
}

export interface Endpoint {
  ip: string;
  port: number;
}

export interface ExchangeRecord {
  role: 'server' | 'client';
  /** proxy when the process is one of correlator.proxyComms */
  layer: 'proxy' | 'app';
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  /** the parent lives in another process (context from a request header) */
  parentIsRemote: boolean;
  traceFlags: number;
  traceState?: string;
  /** the trace context header format the request carried: w3c, b3, jaeger */
  contextFormat?: string;
  /** the span id the request's trace header names, where strata's parent is another span (strata follows the wire) */
  contextSpanId?: string;
  /** the trace id was adopted from the exchange's outbound calls (no incoming context; the app's SDK started the trace) */
  adopted?: boolean;
  /** with adopted: the CLIENT span that sent the request's bytes, in the trace strata would have given it */
  wireParent?: { traceId: string; spanId: string };
  start: WallTime;
  end: WallTime;
  /** as seen on the wire (latin1, maybe cut); export/ sanitizes and bounds what it exports */
  method: string;
  target: string;
  /** "1.1", "1.0", or "" when the request line was cut */
  version: string;
  status: number;
  requestBytes: number;
  responseBytes: number;
  /** no complete response (reset, timeout, truncated request) */
  incomplete: boolean;
  headTruncated: boolean;
  upgraded: boolean;
  /** a request that is not one: junk after a method, or a head that never completed */
  invalid?: InvalidReason;
  /** why the span failed (5xx/4xx, incomplete), undefined when it did not */
  error?: string;
  /** on a local root called from another node without a header: its trace came from that node's agent, or it waited in vain */
  stitch?: 'peer' | 'timeout';
  /** with stitch 'peer': the caller's node, and our wall clock minus its at its last batch (ms, transfer included; recorded, not corrected) */
  stitchPeer?: string;
  stitchSkewMs?: number;
  /** on a CLIENT: the evidence that linked it to the request it serves, 'ambiguous' (left unlinked), or 'none' (nothing in progress) */
  cause?: string;
  /** the hop chain lacks observation points it should have had, and why */
  hopsIncomplete?: string;
  /** allow-listed request headers, lowercase names, secrets already redacted */
  headers: [string, string][];
  process: ProcessInfo;
  pod?: PodInfo;
  node: string;
  local: Endpoint;
  remote: Endpoint;
  /** first and last byte of each message as this process moved them (response: 0 = none) */
  requestFirst: WallTime;
  requestLast: WallTime;
  responseFirst?: WallTime;
  responseLast?: WallTime;
  /** INTERNAL spans between consecutive observation points of the messages this exchange owns */
  hops: HopRecord[];
  /**
   * on the local root of a trace: how its wall time split between the layers, from the spans this
   * node saw of the trace when the root ended (correlate/layer-time.ts), microseconds
   */
  layerTimeUs?: LayerSplit;
}

/** Where finished, sampled exchanges go (export/ maps them onto spans). */
export interface ExchangeSink {
  emit(r: ExchangeRecord): void;
}
