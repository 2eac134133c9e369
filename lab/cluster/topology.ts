// The cluster lab's topology file (YAML, in the spirit of a kind cluster config): nodes, the pods
// of a HotROD-style app and where they run, the ingress, telemetry and faults. Parsed with `yaml`,
// validated once (unknown keys are errors, so a typo never silently means a default), then
// expanded into a frozen plan with every address assigned. The README's "Cluster lab" section
// documents the format; lab/cluster.yaml is the default.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { LabError, STRATA_ERR_TOPOLOGY } from '../errors.ts';

export const API_VERSION = 'strata.lab/v1alpha1';
export const APP_ROLES = ['frontend', 'customer', 'driver', 'route'] as const;
export type AppRole = (typeof APP_ROLES)[number];
export const RUNTIMES = ['node', 'python'] as const;
/** node: one event loop (Node's http); python: a thread per connection (ThreadingHTTPServer) */
export type Runtime = (typeof RUNTIMES)[number];
export const MODES = ['plain', 'instrumented'] as const;
/** plain: no trace headers at all; instrumented: the OpenTelemetry Node SDK, traceparent propagated */
export type Mode = (typeof MODES)[number];
export const BRIDGES = ['linux', 'ovs'] as const;
export type BridgeKind = (typeof BRIDGES)[number];

export const DEFAULT_NODES = 4;
const MAX_NODES = 64;
const MAX_PODS_PER_NODE = 200;
/** every app listens here; its Service maps port 80 to it */
export const APP_PORT = 8080;
export const SERVICE_PORT = 80;

export interface NodePlan {
  name: string;
  /** 1-based: the n of 10.244.<n>.0/24 */
  index: number;
  bridge: BridgeKind;
  /** eth0 on the fabric */
  ip: string;
  podCidr: string;
  /** the bridge's address, the pods' default gateway */
  gateway: string;
}

export interface PodPlan {
  name: string;
  namespace: string;
  node: string;
  ip: string;
  /** a HotROD role, or `ingress` for the NGINX pod */
  app: AppRole | 'ingress';
  runtime: Runtime | 'nginx';
  mode: Mode;
  /** handler delay before answering, ms (absent: the role's default) */
  delayMs?: number;
  /** driver: how many route calls it makes in parallel */
  fanout?: number;
  /** route: size of the polyline in each answer, bytes */
  routeBytes?: number;
}

export interface ServicePlan {
  /** the app's name in its namespace, as `<namespace>/<app>` in the file */
  name: string;
  namespace: string;
  ip: string;
  port: number;
  targetPort: number;
  /** pod IPs, in file order */
  endpoints: string[];
}

export interface IngressRule {
  /** absent: the default server */
  host?: string;
  /** `<namespace>/<app>` */
  service: string;
}

export interface IngressPlan {
  name: string;
  namespace: string;
  node: string;
  /** the port on the node's eth0 that is DNATed to the ingress pod (kind's hostPort 80) */
  hostPort: number;
  rules: IngressRule[];
  /** set X-Request-ID on upstream requests (ingress-nginx's default) */
  requestId: boolean;
}

export type FaultSpec = RateFault | DelayFault;

/** a tbf rate limit (netem is not in this kernel) on one device's egress */
export interface RateFault {
  kind: 'rate';
  /** `<namespace>/<name>`: the pod's veth pair; or node: the node's uplink */
  pod?: string;
  node?: string;
  /** pod only: eth0 = what the pod sends (its own end), veth = what it receives (the node's end) */
  where: 'eth0' | 'veth';
  /** tc rate, e.g. 1mbit */
  rate: string;
  /** tc burst, e.g. 4kb */
  burst: string;
}

/** the service's handler waits this much longer before answering */
export interface DelayFault {
  kind: 'delay';
  pod: string;
  delayMs: number;
}

export interface TopologyPlan {
  name: string;
  /** the file it came from, if any */
  file?: string;
  nodes: NodePlan[];
  pods: PodPlan[];
  services: ServicePlan[];
  ingress: IngressPlan;
  telemetry: { otlpEndpoint?: string };
  faults: FaultSpec[];
}

export const FABRIC = { cidr: '172.18.0.0/24', gateway: '172.18.0.1', client: '172.18.0.100', collector: '172.18.0.200' } as const;
export const CLUSTER_CIDR = '10.244.0.0/16';
export const SERVICE_CIDR = '10.96.0.0/16';
const nodeIp = (index: number) => `172.18.0.${10 + index}`;
const serviceIp = (i: number) => `10.96.0.${10 + i}`;

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** node names end up in interface names (IFNAMSIZ) and netns names */
const NODE_NAME = /^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/;
/** the other namespaces on the fabric are named so */
const RESERVED_NODE_NAMES = ['fabric', 'client', 'collector'];
const HOST = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;
const TC_RATE = /^\d+(\.\d+)?(bit|kbit|mbit|gbit|bps|kbps|mbps)$/;
const TC_SIZE = /^\d+(b|k|kb|m|mb|kbit|mbit)?$/;

/** Reads and validates a topology file. */
export function loadTopology(file: string): TopologyPlan {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new LabError(STRATA_ERR_TOPOLOGY, `topology ${file}: ${(e as Error).message}`);
  }
  return parseTopology(text, file);
}

/** Parses and validates topology YAML; `file` only names it in errors. */
export function parseTopology(text: string, file = '<topology>'): TopologyPlan {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new LabError(STRATA_ERR_TOPOLOGY, `topology ${file}: not valid YAML: ${(e as Error).message}`);
  }
  return planTopology(raw ?? {}, file);
}

/** Validates a topology given as an object (the parsed YAML, or a test's own) and assigns addresses. */
export function planTopology(raw: unknown, file = '<topology>'): TopologyPlan {
  const v: Validator = new Validator(file);
  const top = v.object(raw, '', ['apiVersion', 'kind', 'name', 'nodes', 'pods', 'ingress', 'telemetry', 'faults']);
  if (top.apiVersion !== undefined && top.apiVersion !== API_VERSION) v.fail('apiVersion', `want ${API_VERSION}`);
  if (top.kind !== undefined && top.kind !== 'Cluster') v.fail('kind', 'want Cluster');
  const name = top.name === undefined ? 'cluster' : v.matching(top.name, 'name', NAME, 'a DNS label');

  const nodes = planNodes(v, top.nodes ?? DEFAULT_NODES);
  const nodeByName = new Map(nodes.map((n) => [n.name, n]));
  const nodeRef = (value: unknown, path: string): NodePlan => {
    const n = nodeByName.get(v.string(value, path));
    if (!n) v.fail(path, `no node ${JSON.stringify(value)} (nodes: ${nodes.map((x) => x.name).join(', ')})`);
    return n;
  };
  const nextHost = new Map<string, number>();
  const podIp = (node: NodePlan, path: string): string => {
    const k = (nextHost.get(node.name) ?? 0) + 1;
    if (k > MAX_PODS_PER_NODE) v.fail(path, `more than ${MAX_PODS_PER_NODE} pods on ${node.name}`);
    nextHost.set(node.name, k);
    return `10.244.${node.index}.${9 + k}`;
  };

  const ingRaw = v.object(top.ingress ?? {}, 'ingress', ['name', 'namespace', 'node', 'hostPort', 'rules', 'requestId']);
  const ingNode = ingRaw.node === undefined ? (nodes[0] as NodePlan) : nodeRef(ingRaw.node, 'ingress.node');
  const ingPod: PodPlan = {
    name: ingRaw.name === undefined ? 'ingress-nginx-controller' : v.matching(ingRaw.name, 'ingress.name', NAME, 'a DNS label'),
    namespace: ingRaw.namespace === undefined ? 'ingress-nginx' : v.matching(ingRaw.namespace, 'ingress.namespace', NAME, 'a DNS label'),
    node: ingNode.name,
    ip: podIp(ingNode, 'ingress'),
    app: 'ingress',
    runtime: 'nginx',
    mode: 'plain',
  };

  const pods: PodPlan[] = [ingPod];
  const seen = new Set([`${ingPod.namespace}/${ingPod.name}`]);
  for (const [i, p] of v.array(top.pods ?? [], 'pods').entries()) {
    const path = `pods[${i}]`;
    const o = v.object(p, path, ['name', 'namespace', 'node', 'app', 'runtime', 'mode', 'delayMs', 'fanout', 'routeBytes']);
    const app = v.oneOf(o.app, `${path}.app`, APP_ROLES);
    const namespace = o.namespace === undefined ? 'default' : v.matching(o.namespace, `${path}.namespace`, NAME, 'a DNS label');
    const podName = o.name === undefined ? app : v.matching(o.name, `${path}.name`, NAME, 'a DNS label');
    const key = `${namespace}/${podName}`;
    if (seen.has(key)) v.fail(`${path}.name`, `pod ${key} is defined twice (give each pod of the same app its own name)`);
    seen.add(key);
    const node = nodeRef(o.node, `${path}.node`);
    const runtime = o.runtime === undefined ? 'node' : v.oneOf(o.runtime, `${path}.runtime`, RUNTIMES);
    const mode = o.mode === undefined ? 'plain' : v.oneOf(o.mode, `${path}.mode`, MODES);
    if (runtime === 'python' && mode === 'instrumented') {
      v.fail(`${path}.mode`, 'the python runtime has no OpenTelemetry SDK here: instrumented needs runtime node');
    }
    const pod: PodPlan = { name: podName, namespace, node: node.name, ip: podIp(node, path), app, runtime, mode };
    if (o.delayMs !== undefined) pod.delayMs = v.int(o.delayMs, `${path}.delayMs`, 0, 60_000);
    if (o.fanout !== undefined) {
      if (app !== 'driver') v.fail(`${path}.fanout`, 'only a driver fans out');
      pod.fanout = v.int(o.fanout, `${path}.fanout`, 1, 50);
    }
    if (o.routeBytes !== undefined) {
      if (app !== 'route') v.fail(`${path}.routeBytes`, 'only a route answers with a polyline');
      pod.routeBytes = v.int(o.routeBytes, `${path}.routeBytes`, 0, 1 << 20);
    }
    pods.push(pod);
  }

  // one ClusterIP Service per app and namespace, its endpoints every pod of that app
  const services: ServicePlan[] = [];
  for (const p of pods) {
    if (p.app === 'ingress') continue;
    let s = services.find((x) => x.namespace === p.namespace && x.name === p.app);
    if (!s) {
      s = { name: p.app, namespace: p.namespace, ip: serviceIp(services.length), port: SERVICE_PORT, targetPort: APP_PORT, endpoints: [] };
      services.push(s);
    }
    s.endpoints.push(p.ip);
  }
  for (const ns of new Set(pods.filter((p) => p.app !== 'ingress').map((p) => p.namespace))) {
    const has = new Set(services.filter((s) => s.namespace === ns).map((s) => s.name));
    const needs: [AppRole, AppRole][] = [['frontend', 'customer'], ['frontend', 'driver'], ['driver', 'route']];
    for (const [from, to] of needs) {
      if (has.has(from) && !has.has(to)) v.fail('pods', `namespace ${ns} has a ${from} but no ${to} for it to call`);
    }
  }

  const rules = planRules(v, ingRaw.rules, services);
  const ingress: IngressPlan = {
    name: ingPod.name,
    namespace: ingPod.namespace,
    node: ingPod.node,
    hostPort: ingRaw.hostPort === undefined ? 80 : v.int(ingRaw.hostPort, 'ingress.hostPort', 1, 65535),
    rules,
    requestId: ingRaw.requestId === undefined ? true : v.bool(ingRaw.requestId, 'ingress.requestId'),
  };

  const tel = v.object(top.telemetry ?? {}, 'telemetry', ['otlpEndpoint']);
  const telemetry: TopologyPlan['telemetry'] = {};
  if (tel.otlpEndpoint !== undefined && tel.otlpEndpoint !== '') {
    telemetry.otlpEndpoint = checkOtlpEndpoint(v.string(tel.otlpEndpoint, 'telemetry.otlpEndpoint'), (m) => v.fail('telemetry.otlpEndpoint', m));
  }

  const podKeys = new Set(pods.map((p) => `${p.namespace}/${p.name}`));
  const faults = v.array(top.faults ?? [], 'faults').map((f, i) => checkFault(f, `faults[${i}]`, podKeys, new Set(nodeByName.keys()), v));
  return deepFreeze({ name, file: file === '<topology>' ? undefined : file, nodes, pods, services, ingress, telemetry, faults });
}

function planNodes(v: Validator, raw: unknown): NodePlan[] {
  const list: unknown[] = typeof raw === 'number' ? Array.from({ length: v.int(raw, 'nodes', 1, MAX_NODES) }, () => ({})) : v.array(raw, 'nodes');
  if (list.length === 0) v.fail('nodes', 'at least one node');
  if (list.length > MAX_NODES) v.fail('nodes', `at most ${MAX_NODES} nodes`);
  const names = new Set<string>();
  return list.map((n, i) => {
    const o = v.object(n ?? {}, `nodes[${i}]`, ['name', 'bridge']);
    const name = o.name === undefined ? `node-${i + 1}` : v.matching(o.name, `nodes[${i}].name`, NODE_NAME, 'a DNS label of at most 15 characters');
    if (names.has(name)) v.fail(`nodes[${i}].name`, `node ${name} is defined twice`);
    if (RESERVED_NODE_NAMES.includes(name)) v.fail(`nodes[${i}].name`, `${name} is the lab's own (reserved: ${RESERVED_NODE_NAMES.join(', ')})`);
    names.add(name);
    const index = i + 1;
    return {
      name,
      index,
      bridge: o.bridge === undefined ? 'linux' : v.oneOf(o.bridge, `nodes[${i}].bridge`, BRIDGES),
      ip: nodeIp(index),
      podCidr: `10.244.${index}.0/24`,
      gateway: `10.244.${index}.1`,
    };
  });
}

function planRules(v: Validator, raw: unknown, services: ServicePlan[]): IngressRule[] {
  const frontends = services.filter((s) => s.name === 'frontend');
  if (raw === undefined) {
    // no rules: the first namespace's frontend is the default server
    return frontends[0] ? [{ service: `${frontends[0].namespace}/frontend` }] : [];
  }
  const hosts = new Set<string | undefined>();
  return v.array(raw, 'ingress.rules').map((r, i) => {
    const path = `ingress.rules[${i}]`;
    const o = v.object(r, path, ['host', 'service']);
    const host = o.host === undefined ? undefined : v.matching(o.host, `${path}.host`, HOST, 'a host name');
    if (hosts.has(host)) v.fail(`${path}.host`, host ? `host ${host} has two rules` : 'two rules without a host (only one default)');
    hosts.add(host);
    const service = v.string(o.service, `${path}.service`);
    const [ns, name] = service.split('/');
    if (!services.some((s) => s.namespace === ns && s.name === name)) {
      v.fail(`${path}.service`, `no service ${service} (services: ${services.map((s) => `${s.namespace}/${s.name}`).join(', ') || 'none'})`);
    }
    return host === undefined ? { service } : { host, service };
  });
}

/** An OTLP base URL (as OTEL_EXPORTER_OTLP_ENDPOINT) on this machine's loopback: the lab relays pods to it. */
export function checkOtlpEndpoint(url: string, fail: (m: string) => never): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    fail(`${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'http:') fail('only http:// (OTLP/HTTP) is relayed');
  if (!/^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(u.hostname)) {
    fail(`${u.hostname} is not a loopback address: the lab relays pod traffic only to this machine's loopback`);
  }
  if (u.pathname !== '/' && u.pathname !== '') fail('give the base URL (the SDK appends /v1/traces), without a path');
  return `http://${u.host}`;
}

/** Validates one fault (from the file or the CLI). */
export function checkFault(raw: unknown, path: string, pods: ReadonlySet<string>, nodes: ReadonlySet<string>, v: Validator = new Validator('<fault>')): FaultSpec {
  const o = v.object(raw, path, ['pod', 'node', 'where', 'rate', 'burst', 'delayMs']);
  const pod = o.pod === undefined ? undefined : v.string(o.pod, `${path}.pod`);
  const node = o.node === undefined ? undefined : v.string(o.node, `${path}.node`);
  if ((pod === undefined) === (node === undefined)) v.fail(path, 'name exactly one of pod (namespace/name) or node');
  if (pod !== undefined && !pods.has(pod)) v.fail(`${path}.pod`, `no pod ${pod} (pods: ${[...pods].join(', ')})`);
  if (node !== undefined && !nodes.has(node)) v.fail(`${path}.node`, `no node ${node} (nodes: ${[...nodes].join(', ')})`);
  if (o.delayMs !== undefined) {
    if (o.rate !== undefined || o.burst !== undefined || o.where !== undefined) v.fail(path, 'a fault is either a rate limit (rate, burst, where) or a delay (delayMs), not both');
    if (pod === undefined) v.fail(`${path}.delayMs`, "a handler delay needs a pod (a node has no handler)");
    return { kind: 'delay', pod, delayMs: v.int(o.delayMs, `${path}.delayMs`, 0, 60_000) };
  }
  if (o.rate === undefined) v.fail(path, 'give rate (a tbf rate limit, e.g. 1mbit) or delayMs (a handler delay)');
  const rate = v.matching(o.rate, `${path}.rate`, TC_RATE, 'a tc rate such as 512kbit or 2mbit');
  const burst = o.burst === undefined ? '4kb' : v.matching(String(o.burst), `${path}.burst`, TC_SIZE, 'a tc size such as 4kb');
  const where = o.where === undefined ? 'eth0' : v.oneOf(o.where, `${path}.where`, ['eth0', 'veth'] as const);
  if (node !== undefined && o.where !== undefined) v.fail(`${path}.where`, "a node's fault is on its uplink (eth0): where is for pods");
  return node !== undefined ? { kind: 'rate', node, where, rate, burst } : { kind: 'rate', pod, where, rate, burst };
}

/** Field-by-field validation with the path of the offending field in every error. */
class Validator {
  private readonly file: string;
  constructor(file: string) {
    this.file = file;
  }

  fail(path: string, message: string): never {
    throw new LabError(STRATA_ERR_TOPOLOGY, `topology ${this.file}: ${path || '(top level)'}: ${message}`, path);
  }

  object(x: unknown, path: string, keys: readonly string[]): Record<string, unknown> {
    if (typeof x !== 'object' || x === null || Array.isArray(x)) this.fail(path, `expected a mapping, got ${describe(x)}`);
    for (const k of Object.keys(x)) {
      if (!keys.includes(k)) this.fail(path ? `${path}.${k}` : k, `unknown field (known: ${keys.join(', ')})`);
    }
    return x as Record<string, unknown>;
  }

  array(x: unknown, path: string): unknown[] {
    if (!Array.isArray(x)) this.fail(path, `expected a list, got ${describe(x)}`);
    return x;
  }

  string(x: unknown, path: string): string {
    if (typeof x !== 'string' || x === '') this.fail(path, `expected a non-empty string, got ${describe(x)}`);
    return x;
  }

  matching(x: unknown, path: string, re: RegExp, what: string): string {
    const s = this.string(x, path);
    if (!re.test(s)) this.fail(path, `${JSON.stringify(s)} is not ${what}`);
    return s;
  }

  oneOf<T extends string>(x: unknown, path: string, allowed: readonly T[]): T {
    if (!allowed.includes(x as T)) this.fail(path, `expected one of ${allowed.join(', ')}, got ${describe(x)}`);
    return x as T;
  }

  int(x: unknown, path: string, min: number, max: number): number {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) this.fail(path, `expected an integer in [${min}, ${max}], got ${describe(x)}`);
    return x;
  }

  bool(x: unknown, path: string): boolean {
    if (typeof x !== 'boolean') this.fail(path, `expected true or false, got ${describe(x)}`);
    return x;
  }
}

function describe(x: unknown): string {
  if (x === null || x === undefined) return 'nothing';
  if (Array.isArray(x)) return 'a list';
  if (typeof x === 'object') return 'a mapping';
  return `${typeof x} ${JSON.stringify(x)}`;
}

function deepFreeze<T>(x: T): T {
  if (typeof x === 'object' && x !== null) {
    for (const v of Object.values(x)) deepFreeze(v);
    Object.freeze(x);
  }
  return x;
}
