// From the correlator's records to spans: OpenTelemetry semantic conventions (HTTP, network, URL,
// k8s and process resources), span names of bounded cardinality, service names that colour the
// layers apart in Jaeger, events for the first and last bytes. Every exported string is cleaned
// (no control characters, valid UTF-8) and bounded.
//
// Services: an exchange span is filed under its service name (k8s/enrich.ts: the container's
// OTEL_SERVICE_NAME, the pod's annotation, app.kubernetes.io labels, the top owner, the pod), else the program;
// a hop span under "net:<layer> <node>" (e.g. "net:bridge node-1"), one per layer and node: Jaeger
// colours rows by service, so every layer gets its colour, and hop spans never have children, so
// these services are leaves of the service graph, never links between two workloads.
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { Attributes } from '@opentelemetry/api';
import { LRUCache } from 'lru-cache';
import type { ExchangeRecord, HopRecord, Layer, ObservationPoint, ProcessInfo } from '../correlate/records.ts';
import type { PodInfo } from '../k8s/topology.ts';
import { splitTarget } from '../correlate/http.ts';
import { Routes } from './route.ts';
import { MAX_NAME, MAX_VALUE, clean } from './sanitize.ts';
import type { SpanEvent, SpanRecord, SpanResource } from './types.ts';
import { LRU_OPTS } from '../lru.ts';

export interface SpanMapperOptions {
  /** route patterns for span names (correlator.routes) */
  routes: readonly string[];
  /** distinct resource descriptors kept (export.maxResources) */
  maxResources: number;
}

export const INVALID_REQUEST_NAME = 'HTTP invalid request';

export class SpanMapper {
  private readonly routes: Routes;
  /** one descriptor per process/pod and per layer/node, reused so the sink keys its Resources by identity */
  private readonly resources: LRUCache<string, SpanResource>;
  /** per process as the correlator shares it (one object per connection): no key built per span; rev: the pod's when built */
  private readonly byProcess = new WeakMap<ProcessInfo, { res: SpanResource; rev: number }>();
  private readonly net = new Map<string, Partial<Record<Layer, SpanResource>>>();
  private readonly maxResources: number;
  /** labels of interfaces (pointLabel) by pod, and of the node's own devices: hop spans name them over and over */
  private readonly podLabels = new WeakMap<PodInfo, { workload: string; veth: string | undefined; byDev: Map<string, string> }>();
  private readonly nodeLabels = new Map<string, string>();
  private labelNode = '';
  /** hop span names by their from and to labels (QDISC for a qdisc span), per direction */
  private readonly hopNames = new Map<string, Map<string | symbol, { request: string; response: string }>>();
  /** route of each recent path (paths repeat: the pattern match or id heuristic runs once per path) */
  private readonly routeOf: LRUCache<string, string>;

  constructor(o: SpanMapperOptions) {
    this.routes = new Routes(o.routes);
    this.maxResources = Math.max(1, o.maxResources);
    this.resources = new LRUCache<string, SpanResource>({ max: this.maxResources });
    this.routeOf = new LRUCache<string, string>({ max: 4096 });
  }

  private route(path: string): string {
    let r = this.routeOf.get(path, LRU_OPTS);
    if (r === undefined) {
      r = this.routes.route(path);
      this.routeOf.set(path, r);
    }
    return r;
  }

  /** the exchange span, then its hop spans */
  map(r: ExchangeRecord, out: (s: SpanRecord) => void): void {
    const server = r.role === 'server';
    const { path, query } = splitTarget(r.target);
    const cleanPath = clean(path, MAX_VALUE);
    const method = r.method === '_OTHER' ? '_OTHER' : clean(r.method, 16);
    const route = this.route(path);
    const a: Attributes = {
      'http.request.method': method,
      'network.protocol.name': 'http',
      'network.transport': 'tcp',
      'network.peer.address': r.remote.ip,
      'network.peer.port': r.remote.port,
      'strata.layer': r.layer,
      'strata.pid': r.process.pid,
      'strata.tid': r.process.tid,
      'strata.netns': r.process.netns,
      'strata.comm': clean(r.process.comm, 16),
      'strata.request.bytes': r.requestBytes,
      'strata.response.bytes': r.responseBytes,
    };
    if (r.layerTimeUs) {
      // the local root: where its time went by layer (correlate/layer-time.ts)
      a['strata.time.app_us'] = r.layerTimeUs.app;
      a['strata.time.proxy_us'] = r.layerTimeUs.proxy;
      a['strata.time.network_us'] = r.layerTimeUs.network;
      a['strata.time.other_us'] = r.layerTimeUs.other;
    }
    if (!r.invalid) {
      a['url.path'] = cleanPath;
      if (query) a['url.query'] = clean(query, MAX_VALUE);
    }
    if (r.version) a['network.protocol.version'] = r.version;
    if (r.status) a['http.response.status_code'] = r.status;
    if (r.incomplete) a['strata.incomplete'] = true;
    if (r.headTruncated) a['strata.request.head_truncated'] = true;
    if (r.upgraded) a['strata.upgraded'] = true;
    if (r.invalid) a['strata.invalid.reason'] = r.invalid;
    if (r.contextFormat) a['strata.context.format'] = r.contextFormat;
    if (r.cause) a['strata.cause'] = r.cause;
    if (r.contextSpanId) a['strata.context.span_id'] = r.contextSpanId;
    if (r.adopted) a['strata.context.adopted'] = true;
    if (r.wireParent) {
      a['strata.wire.parent.trace_id'] = r.wireParent.traceId;
      a['strata.wire.parent.span_id'] = r.wireParent.spanId;
    }
    if (r.stitch) a['strata.stitch'] = r.stitch;
    if (r.stitchPeer !== undefined) a['strata.stitch.peer'] = r.stitchPeer;
    if (r.stitchSkewMs !== undefined) a['strata.stitch.skew_ms'] = r.stitchSkewMs;
    if (r.hopsIncomplete) {
      a['strata.hops.incomplete'] = true;
      a['strata.hops.incomplete_reason'] = r.hopsIncomplete;
    }
    if (server) {
      a['server.address'] = r.local.ip;
      a['server.port'] = r.local.port;
      a['client.address'] = r.remote.ip;
      a['client.port'] = r.remote.port;
      a['url.scheme'] = 'http';
      if (!r.invalid && route) a['http.route'] = route;
      a['strata.from'] = 'socket read';
      a['strata.to'] = 'socket write';
    } else {
      a['server.address'] = r.remote.ip;
      a['server.port'] = r.remote.port;
      if (!r.invalid) a['url.full'] = clean(`http://${hostPort(r.remote.ip, r.remote.port)}${r.target}`, MAX_VALUE);
      a['strata.from'] = 'socket write';
      a['strata.to'] = 'socket read';
    }
    // only allow-listed headers reach the record, secrets already redacted
    for (let i = 0; i < r.headers.length; i++) {
      const hv = r.headers[i] as [string, string];
      const h = hv[0];
      const v = hv[1];
      a[h === 'user-agent' ? 'user_agent.original' : `http.request.header.${h}`] = clean(v, MAX_VALUE);
    }
    const events: SpanEvent[] = [];
    // the first and last bytes of each message, where they are not the span's own edges
    if (r.requestFirst[0] !== r.start[0] || r.requestFirst[1] !== r.start[1]) events.push({ name: 'request first byte', time: r.requestFirst });
    events.push({ name: 'request last byte', time: r.requestLast });
    if (r.responseFirst) events.push({ name: 'response first byte', time: r.responseFirst });
    if (r.responseLast && (r.responseLast[0] !== r.end[0] || r.responseLast[1] !== r.end[1])) events.push({ name: 'response last byte', time: r.responseLast });
    out({
      traceId: r.traceId,
      spanId: r.spanId,
      parentSpanId: r.parentSpanId,
      parentIsRemote: r.parentIsRemote,
      traceFlags: r.traceFlags,
      traceState: r.traceState,
      // {method} {route} (HTTP semconv; "HTTP" for an unknown method), never the raw target
      name: r.invalid ? INVALID_REQUEST_NAME : clean(route ? `${method === '_OTHER' ? 'HTTP' : method} ${route}` : method === '_OTHER' ? 'HTTP' : method, MAX_NAME),
      kind: server ? SpanKind.SERVER : SpanKind.CLIENT,
      start: r.start,
      end: r.end,
      attributes: a,
      status: r.error !== undefined ? { code: SpanStatusCode.ERROR, message: r.error } : undefined,
      events,
      resource: this.processResource(r),
    });
    // consecutive hops share a point: label each point once
    let prev: ObservationPoint | undefined;
    let prevLabel = '';
    for (let i = 0; i < r.hops.length; i++) {
      const h = r.hops[i] as HopRecord;
      const from = h.from === prev ? prevLabel : this.label(h.from, r.node);
      prev = h.to;
      prevLabel = this.label(h.to, r.node);
      out(this.hop(r, h, from, prevLabel, cleanPath, method));
    }
  }

  private hop(r: ExchangeRecord, h: HopRecord, from: string, to: string, path: string, method: string): SpanRecord {
    const a: Attributes = {
      'strata.layer': h.layer,
      'strata.from': from,
      'strata.to': to,
      'strata.direction': h.direction,
      'strata.message.key': h.messageKey,
      'network.transport': 'tcp',
      'http.request.method': method,
    };
    if (!r.invalid) a['url.path'] = path;
    if (h.qdisc) a['strata.qdisc'] = true;
    if (h.ovs) {
      a['strata.ovs.bridge'] = clean(h.ovs.bridge, 64);
      a['strata.ovs.in_port'] = clean(h.ovs.inPort, 32);
      a['strata.ovs.out_port'] = clean(h.ovs.outPort, 32);
      a['strata.ovs.upcall'] = h.ovs.upcall;
      if (h.ovs.upcallNs !== undefined) a['strata.ovs.upcall_ns'] = h.ovs.upcallNs;
      if (h.ovs.upcallCause) a['strata.ovs.upcall_cause'] = h.ovs.upcallCause;
    }
    const dev = h.to.kind === 'tc' || h.to.kind === 'netdev' ? h.to : h.from.kind === 'tc' || h.from.kind === 'netdev' ? h.from : undefined;
    if (dev) a['network.interface.name'] = clean(dev.name, 32);
    const pod = h.to.pod ?? h.from.pod;
    // the pod whose interface the hop crosses (the node is the resource's k8s.node.name)
    if (pod) {
      if (pod.name) a['k8s.pod.name'] = pod.name;
      if (pod.namespace) a['k8s.namespace.name'] = pod.namespace;
      if (pod.uid) a['k8s.pod.uid'] = pod.uid;
    }
    const netns = h.to.netns ?? h.from.netns;
    if (netns) a['strata.netns'] = netns;
    return {
      traceId: r.traceId,
      spanId: h.spanId,
      parentSpanId: r.spanId,
      traceFlags: r.traceFlags,
      // the pods/nodes joined, in the direction the bytes went: "request ingress-nginx -> frontend veth";
      // time on one device: "response ingress-nginx eth0 qdisc"
      name: this.hopName(h.direction, from, h.qdisc ? undefined : to),
      kind: SpanKind.INTERNAL,
      start: h.start,
      end: h.end,
      attributes: a,
      resource: this.netResource(h.layer, r.node),
    };
  }

  /** pointLabel, memoised for interfaces (a pure function of the pod's workload, the device and the node) */
  private label(p: ObservationPoint, node: string): string {
    if (p.kind === 'write' || p.kind === 'read') return pointLabel(p, node);
    let byDev: Map<string, string>;
    if (p.pod) {
      let e = this.podLabels.get(p.pod);
      if (!e || e.workload !== p.pod.workload) {
        e = { workload: p.pod.workload, veth: undefined, byDev: new Map() };
        this.podLabels.set(p.pod, e);
      }
      if (p.kind === 'tc' || p.side !== 'pod') return (e.veth ??= pointLabel(p, node));
      byDev = e.byDev;
    } else {
      if (node !== this.labelNode) {
        this.labelNode = node;
        this.nodeLabels.clear();
      }
      byDev = this.nodeLabels;
    }
    let l = byDev.get(p.name);
    if (l === undefined) {
      if (byDev.size >= MEMO_INNER) byDev.clear();
      l = pointLabel(p, node);
      byDev.set(p.name, l);
    }
    return l;
  }

  /** a hop span's name (to undefined: time in a device's qdisc), memoised by its labels */
  private hopName(direction: HopRecord['direction'], from: string, to: string | undefined): string {
    let byTo = this.hopNames.get(from);
    if (!byTo) {
      if (this.hopNames.size >= MEMO_OUTER) this.hopNames.clear();
      byTo = new Map();
      this.hopNames.set(from, byTo);
    }
    const k = to ?? QDISC;
    let names = byTo.get(k);
    if (!names) {
      if (byTo.size >= MEMO_INNER) byTo.clear();
      names = { request: '', response: '' };
      byTo.set(k, names);
    }
    return names[direction] || (names[direction] = clean(to === undefined ? `${direction} ${from} qdisc` : `${direction} ${from} -> ${to}`, MAX_NAME));
  }

  private processResource(r: ExchangeRecord): SpanResource {
    const p = r.process;
    const rev = r.pod?.rev ?? 0;
    const hit = this.byProcess.get(p);
    if (hit && hit.rev === rev) return hit.res;
    let res: SpanResource | undefined;
    // rev: discovery learnt more about the pod (the API server came back): a new resource
    const key = `p/${p.pid}/${r.pod?.uid ?? ''}/${rev}/${p.executable}`;
    res = this.resources.get(key);
    if (!res) {
      const exe = clean(p.executable, 64);
      const attrs: Attributes = { 'k8s.node.name': r.node, 'process.pid': p.pid, 'process.executable.name': exe };
      let serviceName = exe;
      const pod = r.pod;
      if (pod) {
        // k8s semantic conventions; what is unknown is left out, never empty (a pod only /proc knows has a uid alone)
        if (pod.name) attrs['k8s.pod.name'] = pod.name;
        if (pod.namespace) attrs['k8s.namespace.name'] = pod.namespace;
        if (pod.uid) attrs['k8s.pod.uid'] = pod.uid;
        const c = pod.container?.(p.pid);
        if (c?.name) attrs['k8s.container.name'] = c.name;
        // the workload: k8s.deployment.name (via the ReplicaSet), k8s.daemonset.name, ...
        for (const [k, v] of Object.entries(pod.attributes ?? {})) attrs[k] = v;
        serviceName = c?.serviceName || (pod.unknown ? exe : pod.workload);
      }
      res = { serviceName, attributes: attrs };
      this.resources.set(key, res);
    }
    this.byProcess.set(p, { res, rev });
    return res;
  }

  private netResource(layer: Layer, node: string): SpanResource {
    let perNode = this.net.get(node);
    if (!perNode) {
      if (this.net.size >= this.maxResources) this.net.clear();
      perNode = {};
      this.net.set(node, perNode);
    }
    let res = perNode[layer];
    if (!res) {
      res = { serviceName: `net:${layer} ${node}`, attributes: { 'k8s.node.name': node, 'strata.layer': layer } };
      perNode[layer] = res;
    }
    return res;
  }
}

/**
 * An observation point in words: a socket is its workload; a host-side veth is "<pod> veth"; the
 * pod's own device "<pod> <dev>"; a node device (uplink) "<node> <dev>".
 */
export function pointLabel(p: ObservationPoint, node: string): string {
  // a socket's name may be a thread name or program, which a process chooses: cleaned like the rest
  if (p.kind === 'write' || p.kind === 'read') return clean(p.name, MAX_LABEL);
  if (p.pod) return clean(p.kind === 'tc' || p.side !== 'pod' ? `${p.pod.workload} veth` : `${p.pod.workload} ${p.name}`, MAX_LABEL);
  return clean(`${node} ${p.name}`, MAX_LABEL);
}

const MAX_LABEL = 60;

// the memos above hold what pure functions return: a table at its bound is emptied and refilled,
// nothing is lost (so nothing is counted)
const MEMO_OUTER = 1024;
const MEMO_INNER = 256;
const QDISC = Symbol('qdisc');

function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
