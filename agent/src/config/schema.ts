// The configuration's keys, defaults and rules, declared once. Loading, validation, the
// STRATA_* variable names and `strata agent --help` are all derived from this file.
import { hostname } from 'node:os';
import { parseLabelSelector } from '../k8s/selector.ts';

export interface ConfigShape {
  node: { name: string; netns: string; interfaces: string[] };
  discovery: {
    source: DiscoverySource; podsFile: string | null; kubeconfig: string | null;
    namespaces: string[]; excludeNamespaces: string[]; labelSelector: string; traceProxies: boolean; unknownPods: 'auto' | 'trace' | 'ignore';
    procRoot: string; cgroupRoot: string; podCgroupParent: string; procScanIntervalMs: number; maxProcesses: number; maxPods: number; maxOwners: number;
    resyncS: number; startTimeoutMs: number; backoff: { initialMs: number; maxMs: number }; unmappedVethGraceS: number;
  };
  probes: { sockPayloadBytes: number; pktPayloadBytes: number; ringBufferBytes: number; wakeupBytes: number; syscallAttach: 'auto' | 'tracepoint' | 'raw_tp'; idleDetachS: number; disable: string[] };
  correlator: {
    graceMs: number; idleTimeoutS: number; maxConnections: number; maxMessages: number; proxyComms: string[];
    maxReady: number; lostQuietMs: number; retainS: number; maxHeldTraces: number; routes: string[]; exportInvalid: boolean;
  };
  privacy: { headerAllowList: string[]; redactHeaders: string[] };
  sampling: { ratio: number; slowThresholdMs: number; keepErrors: boolean; respectParentSampled: boolean };
  shedding: { cpuBudget: number; keepRatio: number; minKeepRatio: number; intervalMs: number; windowCpu: number; windowPeriodMs: number; windowDrainMs: number; minOpenShare: number };
  export: {
    otlp: { endpoint: string; protocol: OtlpProtocol; headers: Record<string, string>; timeoutMs: number };
    jaeger: { endpoint: string | null; timeoutMs: number };
    files: { dir: string | null };
    queue: { maxSpans: number; maxBytes: number; shedFrom: number; batchSize: number; delayMs: number; exportTimeoutMs: number; maxConcurrentExports: number };
    maxResources: number;
    retry: { initialBackoffMs: number; maxBackoffMs: number; multiplier: number; jitter: number; maxRetries: number };
  };
  stitch: {
    peersFile: string | null; peersFrom: 'file' | 'kubernetes'; secretFile: string | null; port: number; host: string; holdMs: number; maxHeldTraces: number;
    maxMappings: number; mappingTtlMs: number; flushMs: number; batchMax: number; maxBatchBytes: number; maxPending: number; timeoutMs: number;
  };
  metrics: { port: number; host: string; bpfRunStats: boolean };
  shutdown: { timeoutS: number };
}

export type OtlpProtocol = 'http/protobuf' | 'grpc';
export type DiscoverySource = 'auto' | 'file' | 'kubernetes' | 'none';

export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The validated configuration: deeply frozen, passed around, never mutated. */
export type StrataConfig = DeepReadonly<ConfigShape>;

export const DEFAULT_OTLP_HTTP_ENDPOINT = 'http://localhost:4318/v1/traces';
export const DEFAULT_OTLP_GRPC_ENDPOINT = 'http://localhost:4317';

/** Defaults; node.name comes from NODE_NAME (the Downward API convention) or the hostname. */
export function defaultConfig(env: Record<string, string | undefined> = process.env, host: string = hostname()): ConfigShape {
  return {
    node: { name: env.NODE_NAME?.trim() || host, netns: '', interfaces: [] },
    discovery: {
      source: 'auto', podsFile: null, kubeconfig: null,
      namespaces: [], excludeNamespaces: [], labelSelector: '', traceProxies: true, unknownPods: 'auto',
      procRoot: '/proc', cgroupRoot: '', podCgroupParent: '', procScanIntervalMs: 2000, maxProcesses: 65536, maxPods: 1024, maxOwners: 1024,
      // client-go's reflector backs off 800 ms .. 30 s
      resyncS: 300, startTimeoutMs: 5000, backoff: { initialMs: 800, maxMs: 30_000 }, unmappedVethGraceS: 10,
    },
    probes: { sockPayloadBytes: 256, pktPayloadBytes: 128, ringBufferBytes: 4 * 1024 * 1024, wakeupBytes: 256 * 1024, syscallAttach: 'auto', idleDetachS: 30, disable: [] },
    correlator: {
      graceMs: 100, idleTimeoutS: 30, maxConnections: 65536, maxMessages: 65536, proxyComms: ['nginx', 'envoy', 'haproxy', 'traefik'],
      maxReady: 65536, lostQuietMs: 1000, retainS: 10, maxHeldTraces: 4096, routes: [], exportInvalid: false,
    },
    privacy: {
      headerAllowList: ['x-request-id', 'user-agent', 'content-type'],
      redactHeaders: ['authorization', 'proxy-authorization', 'cookie', 'set-cookie', 'x-api-key'],
    },
    sampling: { ratio: 1.0, slowThresholdMs: 500, keepErrors: true, respectParentSampled: true },
    shedding: { cpuBudget: 0.5, keepRatio: 1, minKeepRatio: 0.001, intervalMs: 250, windowCpu: 0, windowPeriodMs: 10_000, windowDrainMs: 300, minOpenShare: 0.05 },
    export: {
      otlp: { endpoint: DEFAULT_OTLP_HTTP_ENDPOINT, protocol: 'http/protobuf', headers: {}, timeoutMs: 10000 },
      jaeger: { endpoint: null, timeoutMs: 10000 },
      files: { dir: null },
      queue: { maxSpans: 8192, maxBytes: 8 * 1024 * 1024, shedFrom: 0.5, batchSize: 512, delayMs: 500, exportTimeoutMs: 30_000, maxConcurrentExports: 4 },
      maxResources: 256,
      // the policy of the SDK's OTLP/HTTP exporter (otlp-exporter-base RetryingTransport)
      retry: { initialBackoffMs: 1000, maxBackoffMs: 5000, multiplier: 1.5, jitter: 0.2, maxRetries: 5 },
    },
    // a local trace waits for a chain of agents: each link adds the caller's grace (correlator.graceMs) and a flush
    stitch: {
      peersFile: null, peersFrom: 'file', secretFile: null, port: 9465, host: '0.0.0.0', holdMs: 1000, maxHeldTraces: 4096,
      maxMappings: 65536, mappingTtlMs: 5000, flushMs: 50, batchMax: 512, maxBatchBytes: 256 * 1024, maxPending: 8192, timeoutMs: 1000,
    },
    metrics: { port: 9464, host: '0.0.0.0', bpfRunStats: false },
    shutdown: { timeoutS: 10 },
  };
}

/** A leaf of the schema: how to read a value from YAML or from a string, and what is allowed. */
export interface Field {
  readonly kind: 'field';
  /** the allowed values in words, for errors and help: "an integer in 8..512, a multiple of 8" */
  readonly allowed: string;
  readonly help: string;
  /** a typed value (YAML, or a list from repeated flags); undefined = not allowed */
  fromValue(v: unknown): { value: unknown } | undefined;
  /** a string (environment variable, --set, a flag); undefined = not allowed */
  fromString(s: string): { value: unknown } | undefined;
}

export interface Section {
  readonly [key: string]: Section | Field;
}

export function isField(x: Section | Field | undefined): x is Field {
  return typeof x === 'object' && x !== null && (x as { kind?: unknown }).kind === 'field';
}

const ok = (value: unknown) => ({ value });

function int(min: number, max: number, help: string, rule: { multipleOf?: number; powerOfTwo?: boolean } = {}): Field {
  const check = (n: number) =>
    Number.isSafeInteger(n) &&
    n >= min &&
    n <= max &&
    (!rule.multipleOf || n % rule.multipleOf === 0) &&
    (!rule.powerOfTwo || (n & (n - 1)) === 0)
      ? ok(n)
      : undefined;
  let allowed = `an integer in ${min}..${max}`;
  if (rule.multipleOf) allowed += `, a multiple of ${rule.multipleOf}`;
  if (rule.powerOfTwo) allowed = `a power of two in ${min}..${max}`;
  return {
    kind: 'field',
    allowed,
    help,
    fromValue: (v) => (typeof v === 'number' ? check(v) : undefined),
    fromString: (s) => (/^\s*\d+\s*$/.test(s) ? check(Number(s)) : undefined),
  };
}

function num(min: number, max: number, help: string): Field {
  const check = (n: number) => (Number.isFinite(n) && n >= min && n <= max ? ok(n) : undefined);
  return {
    kind: 'field',
    allowed: `a number in ${min}..${max}`,
    help,
    fromValue: (v) => (typeof v === 'number' ? check(v) : undefined),
    fromString: (s) => (/^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/.test(s) ? check(Number(s)) : undefined),
  };
}

function bool(help: string): Field {
  const words: Record<string, boolean> = { true: true, false: false, '1': true, '0': false, yes: true, no: false, on: true, off: false };
  return {
    kind: 'field',
    allowed: 'true or false',
    help,
    fromValue: (v) => (typeof v === 'boolean' ? ok(v) : undefined),
    fromString: (s) => {
      const b = words[s.trim().toLowerCase()];
      return b === undefined ? undefined : ok(b);
    },
  };
}

function str(help: string, rule: { allowEmpty?: boolean; nullable?: boolean; maxLen?: number } = {}): Field {
  const check = (s: string) => (s.length > 0 || rule.allowEmpty) && (!rule.maxLen || s.length <= rule.maxLen);
  let allowed = rule.allowEmpty ? 'a string' : 'a non-empty string';
  if (rule.maxLen) allowed += ` of at most ${rule.maxLen} characters`;
  if (rule.nullable) allowed += ', or null';
  return {
    kind: 'field',
    allowed,
    help,
    fromValue: (v) => {
      if (v === null && rule.nullable) return ok(null);
      // YAML reads `name: 12345` as a number; a string was meant
      const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
      return typeof s === 'string' && check(s) ? ok(s) : undefined;
    },
    fromString: (s) => (rule.nullable && (s === '' || s === 'null') ? ok(null) : check(s) ? ok(s) : undefined),
  };
}

function oneOf<T extends string>(values: readonly T[], help: string): Field {
  const check = (v: unknown) => (typeof v === 'string' && (values as readonly string[]).includes(v) ? ok(v) : undefined);
  return { kind: 'field', allowed: `one of ${values.join(', ')}`, help, fromValue: check, fromString: (s) => check(s.trim()) };
}

function url(help: string, rule: { none?: boolean; nullable?: boolean }): Field {
  const check = (s: string) => {
    if (rule.none && s === 'none') return ok(s);
    try {
      const u = new URL(s);
      return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname ? ok(s) : undefined;
    } catch {
      return undefined;
    }
  };
  return {
    kind: 'field',
    allowed: `an http:// or https:// URL${rule.none ? ', or none' : ''}${rule.nullable ? ', or null' : ''}`,
    help,
    fromValue: (v) => (v === null && rule.nullable ? ok(null) : typeof v === 'string' ? check(v) : undefined),
    fromString: (s) => (rule.nullable && (s === '' || s === 'null') ? ok(null) : check(s.trim())),
  };
}

// HTTP header field names (RFC 9110 token), compared lowercase
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;

function list(help: string, item: { what: string; test: (s: string) => boolean; lower?: boolean }): Field {
  const check = (items: unknown[]) => {
    const out: string[] = [];
    for (const x of items) {
      if (typeof x !== 'string') return undefined;
      const s = item.lower ? x.trim().toLowerCase() : x.trim();
      if (!item.test(s)) return undefined;
      if (!out.includes(s)) out.push(s);
    }
    return ok(out);
  };
  return {
    kind: 'field',
    allowed: `a list of ${item.what} (in a variable or flag: comma-separated)`,
    help,
    fromValue: (v) => (Array.isArray(v) ? check(v) : undefined),
    fromString: (s) => check(s.split(',').map((x) => x.trim()).filter((x) => x !== '')),
  };
}

/** OTLP headers: a YAML mapping, or "k1=v1,k2=v2" with URL-encoded values (the OTEL_* format). */
function headerMap(help: string): Field {
  const check = (entries: [string, unknown][]) => {
    const out: Record<string, string> = {};
    for (const [k, v] of entries) {
      const key = k.trim().toLowerCase();
      if (!TOKEN.test(key) || (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')) return undefined;
      out[key] = String(v).trim();
    }
    return ok(out);
  };
  return {
    kind: 'field',
    allowed: 'a mapping of header name to value (in a variable or flag: name=value,name2=value2, values URL-encoded)',
    help,
    fromValue: (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? check(Object.entries(v)) : undefined),
    fromString: (s) => {
      const entries: [string, unknown][] = [];
      for (const part of s.split(',')) {
        if (part.trim() === '') continue;
        const eq = part.indexOf('=');
        if (eq <= 0) return undefined;
        try {
          entries.push([part.slice(0, eq), decodeURIComponent(part.slice(eq + 1))]);
        } catch {
          return undefined;
        }
      }
      return check(entries);
    },
  };
}

// DNS-1123 labels (namespace names)
const k8sNames = { what: 'namespace names (DNS-1123 labels)', test: (s: string) => /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(s) };

function labelSelector(help: string): Field {
  const check = (s: string) => {
    try {
      parseLabelSelector(s);
      return ok(s.trim());
    } catch {
      return undefined;
    }
  };
  return {
    kind: 'field',
    allowed: 'a label selector (k=v, k!=v, k in (a,b), k notin (a,b), k, !k; comma-separated), or ""',
    help,
    fromValue: (v) => (typeof v === 'string' ? check(v) : undefined),
    fromString: check,
  };
}

// Linux interface names and process comms are at most 15 characters (IFNAMSIZ/TASK_COMM_LEN - 1)
const ifname = { what: 'interface names (1..15 characters, no "/" or spaces)', test: (s: string) => /^[^/\s]{1,15}$/.test(s) };

export const SCHEMA = {
  node: {
    name: str('this node\'s name, as Kubernetes knows it'),
    netns: str('netns path holding the node\'s interfaces, e.g. /run/netns/X; "" = the agent\'s own (hostNetwork)', { allowEmpty: true }),
    interfaces: list('extra interfaces of the node to observe (uplink, NIC), besides the pods\' veths', ifname),
  },
  discovery: {
    source: oneOf(['auto', 'file', 'kubernetes', 'none'] as const,
      'where the pods of this node come from: file (discovery.podsFile), kubernetes (the API server), none; auto: file when podsFile is set, else kubernetes when in a cluster (KUBERNETES_SERVICE_HOST) or discovery.kubeconfig is set, else none'),
    podsFile: str('pods of this node as JSON (what the lab writes; re-read when it changes); null = none', { nullable: true }),
    kubeconfig: str('kubeconfig file for the API server; null = in-cluster (the pod\'s service account)', { nullable: true }),
    namespaces: list('trace only pods of these namespaces; [] = every namespace', k8sNames),
    excludeNamespaces: list('never trace pods of these namespaces', k8sNames),
    labelSelector: labelSelector('trace only pods whose labels match (kubectl -l syntax: k=v, k!=v, k in (a,b), k notin (a), k, !k); "" = every pod'),
    traceProxies: bool('also trace pods running a proxy (a process named in correlator.proxyComms) that the selectors leave out, as the proxy layer'),
    unknownPods: oneOf(['auto', 'trace', 'ignore'] as const,
      'pods found in /proc (kubelet cgroups) that discovery does not know, e.g. while the API server is unreachable: trace them (without names) or ignore them; auto: trace with source kubernetes, ignore with a pods file'),
    procRoot: str('the node\'s procfs (hostPID: /proc)'),
    cgroupRoot: str('the node\'s cgroup v2 mount, for hostNetwork pods\' cgroup ids; "" = the first cgroup2 mount in /proc/self/mounts', { allowEmpty: true }),
    podCgroupParent: str('only processes whose cgroup v2 path starts with this are this node\'s pods (nodes sharing one kernel: kind-style nodes in containers, labs: the node\'s own kubelet parent, e.g. /system.slice/docker-<id>.scope/kubelet.slice/); "" = every kubelet-style cgroup on the host', { allowEmpty: true }),
    procScanIntervalMs: int(100, 600_000, 'scan /proc for new processes (and pods, proxies) this often; also on every pod or interface change'),
    maxProcesses: int(64, 1 << 22, 'processes remembered by the /proc scan at most (beyond: not read, counted)'),
    maxPods: int(1, 1 << 16, 'pods of this node kept at most (beyond: not traced, counted)'),
    maxOwners: int(1, 1 << 20, 'ReplicaSets (pod owner -> Deployment) cached at most'),
    resyncS: int(0, 86_400, 'list the pods again this often, replacing the watched state (0 = only after a watch error or 410 Gone)'),
    startTimeoutMs: int(0, 600_000, 'at start, wait this long for the first list of pods before tracing with what /proc shows'),
    backoff: {
      initialMs: int(1, 600_000, 'API server unreachable: first retry after this long (doubled per failure, +-20 % jitter)'),
      maxMs: int(1, 3_600_000, 'retry backoff cap'),
    },
    unmappedVethGraceS: int(0, 3600, 'a new veth is traced at once; detached after this long if no traced pod is found behind it'),
  },
  probes: {
    sockPayloadBytes: int(8, 512, 'payload bytes captured per socket syscall', { multipleOf: 8 }),
    pktPayloadBytes: int(8, 128, 'payload bytes captured per packet event', { multipleOf: 8 }),
    ringBufferBytes: int(4096, 1 << 30, 'size of the kernel->agent ring buffer', { powerOfTwo: true }),
    wakeupBytes: int(0, 1 << 30, 'the kernel wakes the agent only past this many pending bytes (at most probes.ringBufferBytes)'),
    syscallAttach: oneOf(['auto', 'tracepoint', 'raw_tp'] as const, 'socket syscalls through tracepoints (need tracefs) or raw tracepoints; auto: tracepoints when tracefs is there'),
    idleDetachS: int(0, 86_400, 'the socket syscall probes (which every process on the node pays for) attach with the first traced pod and detach this long after the last one left; 0: attached from the start, always'),
    disable: list('optional probe families not to load (veth_tc: TC hops on veths and uplinks; net_dev: device and qdisc points; each costs every packet on the node; ovs: flow misses in ovs-vswitchd, costs its port reads; ovs_kernel: kernel-datapath upcalls, costs each OVS action one read)', {
      what: 'optional probe family names (veth_tc, net_dev, ovs, ovs_kernel)', test: (x) => x === 'veth_tc' || x === 'net_dev' || x === 'ovs' || x === 'ovs_kernel',
    }),
  },
  correlator: {
    graceMs: int(0, 60_000, 'wait this long after an exchange ends before emitting its spans (late events)'),
    idleTimeoutS: int(1, 86_400, 'an exchange without activity for this long is closed as incomplete'),
    maxConnections: int(1, 1 << 24, 'connections tracked at most (least recently used evicted)'),
    maxMessages: int(1, 1 << 24, 'messages tracked at most (least recently used evicted)'),
    proxyComms: list('process names whose server spans are labelled layer=proxy', {
      what: 'process names (1..15 characters)',
      test: (s) => s.length >= 1 && s.length <= 15,
    }),
    maxReady: int(1, 1 << 24, 'finished exchanges waiting for their grace period, at most (beyond: emitted at once)'),
    lostQuietMs: int(1, 600_000, 'a response whose framing was lost ends after this long without bytes'),
    retainS: int(1, 3600, 'emitted exchanges and messages stay findable this long (late events of other CPUs)'),
    maxHeldTraces: int(1, 1 << 20, 'local traces held for the sampling decision until their root ends, at most'),
    routes: list('route patterns for span names, first match wins: /users/{id}/orders ({x}: one segment; a last * matches the rest); unmatched paths have id-like segments replaced by {id}', {
      what: 'paths starting with / (at most 256 characters)',
      test: (s) => s.startsWith('/') && s.length <= 256,
    }),
    exportInvalid: bool('also export junk requests and requests whose head never completed, as error spans named "HTTP invalid request" (always counted)'),
  },
  privacy: {
    headerAllowList: list('request headers copied to span attributes', { what: 'HTTP header names', test: (s) => TOKEN.test(s), lower: true }),
    redactHeaders: list('headers never copied, whatever the allow list says', { what: 'HTTP header names', test: (s) => TOKEN.test(s), lower: true }),
  },
  sampling: {
    ratio: num(0, 1, 'fraction of traces kept (by trace id)'),
    slowThresholdMs: int(0, 86_400_000, 'traces with a span at least this long are kept whatever the ratio'),
    keepErrors: bool('traces with an error (5xx, reset) are kept whatever the ratio'),
    respectParentSampled: bool('follow the caller\'s sampled flag (traceparent) when there is one'),
  },
  shedding: {
    cpuBudget: num(0, 64, 'CPU the agent may use above its own floor (what it costs with no request: strata_agent_cpu_floor_cores), in cores; above it the kernel stops reporting a share of the requests, whole (0 = never shed)'),
    keepRatio: num(0, 1, 'share of requests the kernel reports from the start (whole requests, by a hash of their first bytes\' TCP endpoint and seq); with cpuBudget 0 it stays fixed'),
    minKeepRatio: num(0, 1, 'the share of requests kept never goes below this'),
    intervalMs: int(50, 60_000, 'how often the agent measures its CPU and adjusts the share kept'),
    windowCpu: num(0, 64, 'observation windows: when keeping every request would cost more than cpuBudget, the socket and net_dev probes are attached only part of the time (nothing on the node pays for them in between) and the agent may use this many cores while they are; open cpuBudget / min(demand, windowCpu) of every windowPeriodMs. 0 (or not above cpuBudget): never'),
    windowPeriodMs: int(2000, 600_000, 'observation windows: one window and the pause after it'),
    windowDrainMs: int(0, 60_000, 'observation windows: for this long before a window closes no new request is kept, so those kept end inside it'),
    minOpenShare: num(0.001, 1, 'observation windows: a window is open at least this share of windowPeriodMs'),
  },
  export: {
    otlp: {
      endpoint: url('OTLP traces endpoint (http/protobuf: the full /v1/traces URL); none = no OTLP export', { none: true }),
      protocol: oneOf(['http/protobuf', 'grpc'] as const, 'OTLP transport'),
      headers: headerMap('headers sent with every OTLP request (e.g. authorization)'),
      timeoutMs: int(1, 600_000, 'timeout of one OTLP export, retries included'),
    },
    jaeger: {
      endpoint: url('Jaeger thrift/HTTP collector, e.g. http://jaeger:14268/api/traces; null = none', { nullable: true }),
      timeoutMs: int(1, 600_000, 'timeout of one Jaeger export, retries included'),
    },
    files: {
      dir: str('also write OTLP JSON + Jaeger JSON files into this directory; null = none', { nullable: true }),
    },
    queue: {
      maxSpans: int(1, 1 << 20, 'spans queued for export at most (further spans are dropped and counted)'),
      maxBytes: int(65536, 1 << 30, 'estimated heap bytes of the spans one exporter holds, queued or being exported, at most (further spans are dropped and counted; a lab span is ~1.6 KiB)'),
      shedFrom: num(0.1, 1, 'past this fill of the fullest export queue (share of maxSpans or maxBytes) whole traces are shed by trace id, all of them near full, instead of spans lost at the bound; 1 = never'),
      batchSize: int(1, 1 << 20, 'spans per export request (at most export.queue.maxSpans)'),
      delayMs: int(0, 600_000, 'export a partial batch after this long'),
      exportTimeoutMs: int(1, 600_000, 'the batch processor gives up on one export call after this long (counted as failed)'),
      maxConcurrentExports: int(1, 64, 'export calls in flight at once per exporter (each holds one batch: memory is bounded by this x batchSize)'),
    },
    maxResources: int(1, 1 << 16, 'distinct span resources (process, pod, layer) cached at most (least recently used evicted)'),
    retry: {
      initialBackoffMs: int(0, 600_000, 'OTLP/Jaeger exports: backoff before the first retry (+- export.retry.jitter)'),
      maxBackoffMs: int(0, 600_000, 'backoff cap'),
      multiplier: num(1, 10, 'backoff growth per retry'),
      jitter: num(0, 1, 'relative jitter of each backoff (0.2: 80..120 % of its nominal value)'),
      maxRetries: int(0, 100, 'retries after the first attempt, all within the export\'s timeout'),
    },
  },
  stitch: {
    peersFile: str('cross-node stitching without headers: JSON listing every node (the lab\'s cluster.json, or [{name, podCidr, address}]); null = off', { nullable: true }),
    peersFrom: oneOf(['file', 'kubernetes'] as const, 'where the nodes come from: file = stitch.peersFile (stitching on when it is set); kubernetes = the API server\'s Node objects (pod CIDR, InternalIP:stitch.port; discovery.kubeconfig or in-cluster), stitching on'),
    secretFile: str('file holding the secret shared by every node\'s agent (a mounted Kubernetes Secret); required when stitching is on', { nullable: true }),
    port: int(0, 65535, 'port the peer endpoint listens on (0 = any free port); cluster.json peers are reached on this port'),
    host: str('address the peer endpoint listens on'),
    holdMs: int(1, 600_000, 'a local trace called from another node\'s pod without a header waits this long for that node\'s mapping, then goes out as its own (strata.stitch=timeout)'),
    maxHeldTraces: int(1, 1 << 20, 'local traces waiting for a peer at once, at most (beyond: the oldest gives up)'),
    maxMappings: int(1, 1 << 24, 'mappings that arrived before their spans, kept at most (least recently used evicted)'),
    mappingTtlMs: int(1, 3_600_000, 'such a mapping is forgotten after this long'),
    flushMs: int(1, 60_000, 'each peer\'s mappings are sent at least this often'),
    batchMax: int(1, 65_536, 'or as soon as this many wait'),
    maxBatchBytes: int(1024, 64 * 1024 * 1024, 'largest batch body sent or accepted'),
    maxPending: int(1, 1 << 24, 'mappings waiting per peer, at most (beyond: the oldest are dropped, counted)'),
    timeoutMs: int(1, 600_000, 'a batch a peer has not answered within this long is dropped, counted'),
  },
  metrics: {
    port: int(0, 65535, 'port of /metrics, /healthz, /readyz (0 = any free port)'),
    host: str('address the metrics server listens on'),
    bpfRunStats: bool('turn on the kernel\'s BPF run-time statistics (strata_bpf_runs_total, strata_bpf_run_time_seconds_total): they time every run of every BPF program on the node, ours and others\', which costs each run (bench/README.md); for profiling'),
  },
  shutdown: {
    timeoutS: int(1, 3600, 'on SIGTERM/SIGINT, flush and detach within this long, else exit 1'),
  },
} satisfies Section;

/** Every leaf key as a dotted path, in declaration order. */
export function leafPaths(s: Section = SCHEMA, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(s)) {
    const p = prefix ? `${prefix}.${k}` : k;
    if (isField(v)) out.push(p);
    else out.push(...leafPaths(v, p));
  }
  return out;
}

/** The schema node at a dotted path (a section or a field), or undefined. */
export function schemaAt(path: string): Section | Field | undefined {
  let node: Section | Field | undefined = SCHEMA;
  for (const part of path.split('.')) {
    if (!node || isField(node) || !Object.hasOwn(node, part)) return undefined;
    node = node[part];
  }
  return node;
}

/** STRATA_<SECTION>_<KEY> for a dotted path: export.otlp.endpoint -> STRATA_EXPORT_OTLP_ENDPOINT. */
export function envName(path: string): string {
  return `STRATA_${path
    .split('.')
    .map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase())
    .join('_')}`;
}
