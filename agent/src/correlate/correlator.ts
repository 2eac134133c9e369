// Stitches socket, packet and net_dev events into exchange records (design.md sections 1 and 3).
// The parts, each in its own module:
// - exchanges.ts: connections keyed by the kernel socket, HTTP/1.x streams on them, exchanges in
//   FIFO order (pipelined responses match their requests in order);
// - hops.ts: observation points of each message (socket write, packets, net_dev, socket read) under
//   the message key (client endpoint, TCP seq of its first byte), and the hops between them;
// - causality.ts: the parent of an exchange on this node (in-process cause, cross-process writer);
// - ids.ts: trace/span ids (the wire parent, else the caller's context, else derived from the
//   message key; a SERVER without context adopts the trace its outbound calls carry);
// - sampling.ts: tail sampling of each local trace, held until its root ends;
// - stitch.ts: across nodes (with or without headers), a local trace called from a peer node's pod waits for
//   that node's agent to say which trace it belongs to (agent/src/peers carries the mappings);
// - clock.ts: monotonic -> wall clock, children kept inside parents.
// Links are resolved when an exchange is emitted, a grace period after it ends, so events of
// other CPUs that arrived late are in. Every table is bounded; evictions, orphans and non-HTTP
// traffic are counted, never thrown. Output: ExchangeRecords (plain data) to an ExchangeSink.
import type { EventHandler, OvsUpcallEvent, PktEvent, SockEvent, StateEvent, TailEvent } from '../events/decode.ts';
import type { ExecutableOf, Topology } from '../k8s/topology.ts';
import { Causality, type CauseRule, finKey } from './causality.ts';
import { type WallClock, measureWallClock } from './clock.ts';
import { extractContext } from './context.ts';
import { type Exchange, Exchanges, ROLE_SERVER } from './exchanges.ts';
import { endKnown, Hops, lastOf, type NetDevEvent } from './hops.ts';
import { OvsCorrelator } from './ovs.ts';
import { type ExchangeIds, adoptIds, deriveSpanId, otherSpan, resolveIds, type TraceContext } from './ids.ts';
import type { CorrelatorOptions } from './options.ts';
import type { ExchangeRecord, ExchangeSink, HopRecord, ObservationPoint } from './records.ts';
import { TailSampling } from './sampling.ts';
import { PeerStitch, type StitchLink, type StitchMapping, type StitchSource, type StitchStats } from './stitch.ts';

export { type WallClock, measureWallClock } from './clock.ts';
export type { NetDevEvent } from './hops.ts';
export type { CorrelatorOptions, SamplingOptions } from './options.ts';
export type { ExchangeRecord, ExchangeSink, HopRecord } from './records.ts';
export type { StitchLink, StitchMapping, StitchOptions, StitchSource, StitchStats } from './stitch.ts';

export interface CorrelatorStats {
  conns: number;
  messages: number;
  connEvictions: number;
  /** connections closed by the agent after idleNs without events */
  idleCloses: number;
  messageEvictions: number;
  clientEvictions: number;
  exchanges: number;
  spansEmitted: number;
  hopSpansEmitted: number;
  nonHttp: number;
  orphanResponses: number;
  incomplete: number;
  malformedContext: number;
  truncatedHeads: number;
  /** observation points beyond MAX_POINTS for one message (retransmissions) */
  pointsDropped: number;
  /** spans and local traces not exported by the sampling decision */
  spansSampledOut: number;
  tracesSampledOut: number;
  tracesKept: number;
  /** local traces decided early because too many were held */
  heldEvictions: number;
  /** exchanges whose request was seen and whose response has not ended */
  pending: number;
  /** data packets on traced interfaces that no traced socket on this node sent or received */
  packetsWithoutConnection: number;
  /** tail events (where a message ends at a point) whose message is not on file (expired, evicted, not traced) */
  tailsUnmatched: number;
  /** messages whose last byte was not reported at one of their packet points: those hop spans end early */
  hopEndsUnknown: number;
  /** span times moved inside their parent (clock offset drift between batches) */
  clockClamps: number;
  /** requests that were not valid HTTP, by reason: junk request line, head never completed, head too long */
  invalidBadRequestLine: number;
  invalidHeadIncomplete: number;
  invalidHeadTooLong: number;
  /** exchanges whose hop chain lacks observation points (marked strata.hops.incomplete) */
  hopsIncomplete: number;
  /** ovs (correlate/ovs.ts): upcall records, those not TCP, those marked on a span, those evicted unclaimed; ovs hop spans */
  ovsUpcalls: number;
  ovsUpcallsNotTcp: number;
  ovsUpcallsCharged: number;
  ovsUpcallEvictions: number;
  ovsHops: number;
  /** socket events whose TCP seq skipped bytes never seen (events lost upstream), and the bytes */
  seqGaps: number;
  seqGapBytes: number;
  /** seq gaps that were requests shed on purpose by the kernel (load shedding), not losses */
  shedGaps: number;
  /** exchanges whose request was kept and response shed (cut by an observation window's edge): not exported, nor their local trace */
  cutExchanges: number;
  /** CLIENT exchanges linked to their in-process cause, by evidence (causality.ts); left unlinked as ambiguous; in a process serving nothing */
  causesLinkedContext: number;
  causesLinkedRequestId: number;
  causesLinkedConnect: number;
  causesLinkedEventLoop: number;
  causesLinkedThread: number;
  causesAmbiguous: number;
  causesNone: number;
  /** threads forgotten by the causality table when full */
  threadEvictions: number;
  /** cross-node stitching (zero without peers): local traces stitched to a peer's trace, given up on, exchanges held now */
  stitched: number;
  stitchTimeouts: number;
  stitchHeldEvictions: number;
  stitchHeld: number;
  stitchHeldTotal: number;
  /** mappings that came before their spans; those that expired unused */
  stitchEarlyMappings: number;
  stitchMappingsExpired: number;
  /** time stitched traces waited for their mapping, summed (ns) */
  stitchWaitNs: number;
  /** mappings published to peers (CLIENT exchanges to another node or a Service) */
  stitchPublished: number;
  /** SERVER exchanges with no incoming trace context that took the trace id their outbound calls carried */
  traceAdopted: number;
  /** outbound calls of such an exchange that carried another trace id than its first one (not adopted) */
  traceAdoptConflicts: number;
}

const PIPELINED = 'pipelined: TC reports only the first data packet of a burst';

export class Correlator implements EventHandler {
  /** converts this batch's monotonic timestamps (the agent sets it per batch) */
  wall: WallClock;
  private readonly opts: CorrelatorOptions;
  private readonly exchanges: Exchanges;
  private readonly hops: Hops;
  /** OVS bridges between the hops, and their flow misses (correlate/ovs.ts) */
  readonly ovs = new OvsCorrelator();
  private readonly causality: Causality;
  private readonly sampling: TailSampling;
  private readonly stitch?: PeerStitch;
  private readonly link?: StitchLink;
  private lastTick = 0;
  private published = 0;
  private readonly topo: Topology;
  private readonly proxyComms: Set<string>;
  private readonly allow: string[];
  private readonly redact: Set<string>;
  /** finished exchanges waiting out their grace period, in order of finishing */
  private readonly ready: Exchange[] = [];
  private lastTs = 0;
  private readonly counts = { idleCloses: 0, spansEmitted: 0, hopSpansEmitted: 0, malformedContext: 0, hopsIncomplete: 0, hopEndsUnknown: 0, adopted: 0, adoptConflicts: 0 };
  private readonly idLookups = {
    parentOf: (ex: Exchange) => this.causality.parentOf(ex),
    roleName: (ex: Exchange) => (ex.role === ROLE_SERVER ? 'server' : 'client'),
    extract: (headers: Map<string, string>) => {
      const x = extractContext(headers);
      if (x.malformed) this.counts.malformedContext++;
      return contextOf(x);
    },
  };

  /** each kept local root, its layerTimeUs set (strata_layer_duration_seconds) */
  onLayerTime?: (root: ExchangeRecord) => void;

  constructor(sink: ExchangeSink, topo: Topology, opts: CorrelatorOptions, wall: WallClock = measureWallClock(), exe?: ExecutableOf, link?: StitchLink) {
    this.opts = opts;
    this.topo = topo;
    this.wall = wall;
    this.proxyComms = new Set(opts.proxyComms);
    this.allow = opts.headerAllowList.map((h) => h.toLowerCase());
    this.redact = new Set(opts.redactHeaders.map((h) => h.toLowerCase()));
    this.hops = new Hops(opts.maxMessages, topo);
    this.causality = new Causality(opts.maxMessages, opts.maxConns);
    this.sampling = new TailSampling(opts.sampling, opts.maxHeldTraces, sink, (r) => this.onLayerTime?.(r));
    if (link && opts.stitch) {
      this.link = link;
      this.stitch = new PeerStitch(opts.stitch, link, (root, m, held, from) => this.released(root, m, held, from));
    }
    this.exchanges = new Exchanges(opts.maxConns, topo, {
      point: (key, p) => this.hops.file(key, p),
      started: (ex) => {
        this.causality.started(ex);
        if (ex.role !== ROLE_SERVER && ex.cause) this.adoptFrom(ex, ex.cause);
      },
      finished: (ex) => {
        this.causality.finished(ex);
        this.ready.push(ex);
      },
      read: (pid, tid, ex) => this.causality.read(pid, tid, ex),
      connected: (c, pid, tid) => this.causality.connected(c, pid, tid),
    }, exe);
  }

  get stats(): CorrelatorStats {
    const x = this.exchanges.stats;
    const h = this.hops.stats;
    const o = this.ovs.stats;
    const s = this.sampling.stats;
    return {
      conns: this.exchanges.conns.size, messages: this.hops.size, connEvictions: x.connEvictions, idleCloses: this.counts.idleCloses,
      messageEvictions: h.messageEvictions, clientEvictions: this.causality.clientEvictions, exchanges: x.exchanges,
      ...linkedStats(this.causality.stats.linked), causesAmbiguous: this.causality.stats.ambiguous, causesNone: this.causality.stats.none,
      threadEvictions: this.causality.stats.threadEvictions,
      spansEmitted: this.counts.spansEmitted, hopSpansEmitted: this.counts.hopSpansEmitted, nonHttp: x.nonHttp,
      orphanResponses: x.orphanResponses, incomplete: x.incomplete, malformedContext: this.counts.malformedContext,
      truncatedHeads: x.truncatedHeads, pointsDropped: h.pointsDropped, spansSampledOut: s.spansSampledOut,
      tracesSampledOut: s.tracesSampledOut, tracesKept: s.tracesKept, heldEvictions: s.heldEvictions, pending: x.pending,
      packetsWithoutConnection: h.packetsWithoutConnection, tailsUnmatched: h.tailsUnmatched, hopEndsUnknown: this.counts.hopEndsUnknown,
      clockClamps: s.clockClamps,
      invalidBadRequestLine: x.invalidRequests.bad_request_line, invalidHeadIncomplete: x.invalidRequests.head_incomplete,
      invalidHeadTooLong: x.invalidRequests.head_too_long, hopsIncomplete: this.counts.hopsIncomplete,
      seqGaps: x.seqGaps, seqGapBytes: x.seqGapBytes, shedGaps: x.shedGaps, cutExchanges: x.cut,
      ...stitchStats(this.stitch?.stats), stitchPublished: this.published,
      traceAdopted: this.counts.adopted, traceAdoptConflicts: this.counts.adoptConflicts,
      ovsUpcalls: o.upcalls, ovsUpcallsNotTcp: o.upcallsNotTcp, ovsUpcallsCharged: o.upcallsCharged, ovsUpcallEvictions: o.upcallEvictions, ovsHops: o.ovsHops,
    };
  }

  // ---------------------------------------------------------------- events

  onSock(e: SockEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    this.exchanges.onSock(e);
  }

  onState(_e: StateEvent): void {
    // connection lifetime comes from close(); state changes are used by later issues (resets)
  }

  onPkt(e: PktEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    this.hops.onPkt(e);
  }

  onNetDev(e: NetDevEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    this.hops.onNetDev(e);
  }

  onTail(e: TailEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    this.hops.onTail(e);
  }

  onOvsUpcall(e: OvsUpcallEvent): void {
    if (e.tsNs > this.lastTs) this.lastTs = e.tsNs;
    this.ovs.onUpcall(e);
  }

  // ---------------------------------------------------------------- emission

  /** Emits what is ready; closes idle exchanges. Call periodically with CLOCK_MONOTONIC ns. */
  tick(nowNs: number): void {
    this.lastTick = nowNs;
    this.counts.idleCloses += this.exchanges.expire(nowNs - this.opts.idleNs, nowNs - this.opts.lostQuietNs);
    let n = 0;
    for (; n < this.ready.length; n++) {
      const ex = this.ready[n] as Exchange;
      const end = Math.max(ex.respEnd, ex.reqEnd);
      // wait out the grace period, unless the queue is full or the end lies in the future
      // (a corrupt timestamp must not hold back everything behind it)
      const waiting = end > nowNs - this.opts.graceNs && end < nowNs + 1e9;
      if (waiting && this.ready.length - n <= this.opts.maxReady) break;
      this.emit(ex, nowNs);
    }
    if (n) this.ready.splice(0, n);
    this.stitch?.expire(nowNs);
    this.causality.expire(nowNs - this.opts.retainNs);
    this.hops.expire(nowNs - this.opts.retainNs);
  }

  /** Emits everything regardless of grace (shutdown). */
  drain(): void {
    this.exchanges.closeAll();
    for (const ex of this.ready) this.emit(ex, this.lastTs);
    this.ready.length = 0;
    this.stitch?.drain();
    this.sampling.drain();
    this.hops.clear();
    this.causality.clear();
  }

  private ids(ex: Exchange): ExchangeIds {
    return resolveIds(ex, this.idLookups);
  }

  /** Mappings from a peer's agent (already authenticated): held local traces join their traces. */
  onPeerMappings(ms: readonly StitchMapping[], nowNs: number = this.lastTick, from?: StitchSource): void {
    this.stitch?.onMappings(ms, nowNs, from);
  }

  /**
   * A CLIENT exchange started: when its cause (a SERVER of the same process) received no trace
   * context and this call carries one, the app's SDK started a trace there; the cause adopts the
   * first such context (ids.ts resolveIds), later calls naming another trace are counted.
   */
  private adoptFrom(ex: Exchange, cause: Exchange): void {
    if (cause.ids || cause.role !== ROLE_SERVER) return;
    const x = contextOf(extractContext(ex.headers));
    if (!x || contextOf(extractContext(cause.headers))) return;
    if (!cause.adopt) {
      cause.adopt = x;
      this.counts.adopted++;
    } else if (cause.adopt.traceId !== x.traceId) this.counts.adoptConflicts++;
  }

  /**
   * A local trace waited for its peer: it joins the peer's trace under the CLIENT span that sent
   * its bytes (whatever trace header the request carried: strata follows the wire), adopts the
   * trace of its outbound calls (the wire parent recorded), or goes out as its own (marked).
   */
  private released(root: Exchange, m: StitchMapping | undefined, held: Exchange[], from?: StitchSource): void {
    if (from) root.stitchFrom = from;
    if (m) {
      const spanId = deriveSpanId('server', root.reqKey);
      const x = this.idLookups.extract(root.headers);
      if (!x && root.adopt) root.ids = adoptIds(spanId, root.adopt, { traceId: m.traceId, spanId: m.parentSpanId });
      else root.ids = { traceId: m.traceId, spanId, parentSpanId: m.parentSpanId, remote: true, flags: m.flags, traceState: x?.traceState, contextSpanId: otherSpan(x, m.parentSpanId) };
    }
    for (const ex of held) this.emitNow(ex, this.lastTick);
  }

  /** an exchange not to be exported, nor the local trace it roots: invalid (unless asked for) or cut (counted either way) */
  private unexported(ex: Exchange): boolean {
    return ex.cut === true || (ex.invalid !== undefined && !this.opts.exportInvalid);
  }

  private emit(ex: Exchange, nowNs: number): void {
    if (this.stitch && !this.unexported(ex) && this.stitch.hold(ex, this.causality.localRoot(ex), nowNs)) return;
    this.emitNow(ex, nowNs);
  }

  private emitNow(ex: Exchange, nowNs: number): void {
    ex.emittedAt = nowNs;
    if (this.unexported(ex)) {
      // a cut one was seen in half: its local root (dropped when it ends) goes with it
      if (ex.cut) {
        const root = this.causality.localRoot(ex);
        if (root !== ex && root.keep === undefined) root.cut = true;
      }
      ex.keep = false;
      this.sampling.discard(ex);
      return;
    }
    const ids = this.ids(ex);
    const c = ex.conn;
    const server = ex.role === ROLE_SERVER;
    // the exchange owns the hops of its messages unless a traced client on this node does
    const ownsHops = !server || !this.causality.parentOf(ex);
    const hops: HopRecord[] = [];
    let start = ex.reqStart;
    let end = ex.respEnd || ex.reqEnd;
    let hopsIncomplete: string | undefined;
    if (ownsHops) {
      // the reader's seq is one too high when its read also consumed the FIN: SERVERs read requests, CLIENTs responses
      const reqPts = this.hops.points(ex.reqKey, server && ex.reqSeq >= 0 ? finKey(ex.reqKey, ex.reqSeq) : undefined);
      const respPts = ex.respKey ? this.hops.points(ex.respKey, !server && ex.respSeq >= 0 ? finKey(ex.respKey, ex.respSeq) : undefined) : [];
      // a SERVER span that owns its inbound hops starts where they start, so they nest inside it
      for (let k = 0; k < reqPts.length + respPts.length; k++) {
        const p = (k < reqPts.length ? reqPts[k] : respPts[k - reqPts.length]) as ObservationPoint;
        if (p.tsNs < start) start = p.tsNs;
        if (lastOf(p) > end) end = lastOf(p);
      }
      if (endUnknown(reqPts, ex.reqSeq, ex.reqBytes)) this.counts.hopEndsUnknown++;
      if (ex.respKey && endUnknown(respPts, ex.respSeq, ex.respBytes)) this.counts.hopEndsUnknown++;
      this.hops.build(reqPts, ex.reqKey, 'request', this.wall, hops, msgEnd(ex.reqSeq, ex.reqBytes));
      if (ex.respKey) this.hops.build(respPts, ex.respKey, 'response', this.wall, hops, msgEnd(ex.respSeq, ex.respBytes));
      this.ovs.decorate(hops, c.local, c.remote, server);
      hopsIncomplete = this.chainGap(ex, reqPts, respPts);
    }
    const headers: [string, string][] = [];
    for (const h of this.allow) {
      const v = ex.headers.get(h);
      if (v !== undefined) headers.push([h, this.redact.has(h) ? '[REDACTED]' : v]);
    }
    const failed = ex.invalid !== undefined || ex.incomplete || ex.status >= (server ? 500 : 400);
    const rec: ExchangeRecord = {
      role: server ? 'server' : 'client',
      layer: this.proxyComms.has(c.comm) ? 'proxy' : 'app',
      traceId: ids.traceId,
      spanId: ids.spanId,
      parentSpanId: ids.parentSpanId,
      parentIsRemote: ids.remote,
      traceFlags: ids.flags,
      traceState: ids.traceState,
      contextFormat: ids.format,
      contextSpanId: ids.contextSpanId,
      adopted: ids.adopted,
      wireParent: ids.wireParent,
      start: this.wall(start),
      end: this.wall(end),
      method: ex.method,
      target: ex.target,
      version: ex.version.startsWith('HTTP/') ? ex.version.slice(5) : '',
      status: ex.status,
      requestBytes: ex.reqBytes,
      responseBytes: ex.respBytes,
      incomplete: ex.incomplete,
      headTruncated: ex.reqTruncated,
      upgraded: ex.upgraded,
      invalid: ex.invalid,
      error: !failed ? undefined : ex.invalid ? `invalid request: ${ex.invalid}` : ex.incomplete ? 'incomplete exchange' : `HTTP ${ex.status}`,
      hopsIncomplete,
      cause: server ? undefined : ex.causeRule,
      stitch: ex.stitch === 'peer' || ex.stitch === 'timeout' ? ex.stitch : undefined,
      stitchPeer: ex.stitch === 'peer' ? ex.stitchFrom?.node : undefined,
      stitchSkewMs: ex.stitch === 'peer' ? ex.stitchFrom?.skewMs : undefined,
      headers,
      process: c.process,
      pod: c.pod,
      node: this.topo.nodeName,
      local: c.local,
      remote: c.remote,
      requestFirst: this.wall(ex.reqStart),
      requestLast: this.wall(ex.reqEnd),
      responseFirst: ex.respStart ? this.wall(ex.respStart) : undefined,
      responseLast: ex.respEnd ? this.wall(ex.respEnd) : undefined,
      hops,
    };
    this.counts.spansEmitted++;
    this.counts.hopSpansEmitted += hops.length;
    const root = this.causality.localRoot(ex);
    if (this.link && !server) {
      // the callee's node (found by its pod CIDR, or every peer for a Service VIP) learns the trace of this request
      this.published++;
      this.link.publish(c.remoteIp, { key: ex.reqKey, traceId: ids.traceId, parentSpanId: ids.spanId, flags: this.sampling.provisional(root) ? 1 : 0 });
    }
    this.sampling.route(ex, root, rec);
  }

  /**
   * Is the hop chain of this exchange's messages shorter than it should be? Pipelined requests
   * after the first carry no packet points (the TC aggregation reports the first data packet of a
   * burst); a direction observed hop by hop while the other shows nothing is a gap too.
   */
  private chainGap(ex: Exchange, req: ObservationPoint[], resp: ObservationPoint[]): string | undefined {
    const c = ex.conn;
    const hasResp = ex.respKey !== undefined;
    // places, not points: a retransmission seen twice on one interface is not a longer chain
    const nReq = distinctPlaces(req);
    const nResp = distinctPlaces(resp);
    let why: string | undefined;
    if (nReq < c.maxReqPlaces || (hasResp && nResp < c.maxRespPlaces)) {
      why = ex.pipelined ? PIPELINED : 'fewer observation points than earlier messages of this connection';
    } else if (hasResp && nReq >= 2 && nResp < 2) {
      why = 'response path not observed';
    } else if (hasResp && nResp >= 2 && nReq < 2) {
      why = ex.pipelined ? PIPELINED : 'request path not observed';
    }
    if (nReq > c.maxReqPlaces) c.maxReqPlaces = nReq;
    if (nResp > c.maxRespPlaces) c.maxRespPlaces = nResp;
    if (why) this.counts.hopsIncomplete++;
    return why;
  }
}

/** seq just past a message's last byte, when the parse knows where it starts and how long it is */
function msgEnd(seq: number, bytes: number): number | undefined {
  return seq >= 0 && bytes > 0 ? (seq + bytes) >>> 0 : undefined;
}

/** a packet point of the message did not report its last byte: its hop spans use the first byte's time */
function endUnknown(pts: ObservationPoint[], seq: number, bytes: number): boolean {
  const end = msgEnd(seq, bytes);
  return end !== undefined && pts.some((p) => p.kind !== 'write' && p.kind !== 'read' && !endKnown(p, end));
}

/** how many different places (socket, interface and direction, device and netns) saw the message */
function distinctPlaces(pts: ObservationPoint[]): number {
  let n = 0;
  for (let i = 0; i < pts.length; i++) {
    const p = pts[i] as ObservationPoint;
    let seen = false;
    for (let j = 0; j < i && !seen; j++) {
      const q = pts[j] as ObservationPoint;
      seen = q.kind === p.kind && q.name === p.name && q.dir === p.dir && q.netns === p.netns;
    }
    if (!seen) n++;
  }
  return n;
}

function linkedStats(l: Record<CauseRule, number>) {
  return {
    causesLinkedContext: l.context, causesLinkedRequestId: l.request_id, causesLinkedConnect: l.connect,
    causesLinkedEventLoop: l.event_loop, causesLinkedThread: l.thread,
  };
}

function contextOf(x: ReturnType<typeof extractContext>): TraceContext | undefined {
  return x.ctx ? { traceId: x.ctx.traceId, spanId: x.ctx.spanId, traceFlags: x.ctx.traceFlags, traceState: x.ctx.traceState?.serialize(), format: x.format } : undefined;
}

function stitchStats(s: StitchStats | undefined) {
  return {
    stitched: s?.stitched ?? 0, stitchTimeouts: s?.timeouts ?? 0, stitchHeldEvictions: s?.heldEvictions ?? 0, stitchHeld: s?.heldNow ?? 0,
    stitchHeldTotal: s?.heldTotal ?? 0, stitchEarlyMappings: s?.early ?? 0, stitchMappingsExpired: s?.mappingsExpired ?? 0,
    stitchWaitNs: s?.waitNsTotal ?? 0,
  };
}
