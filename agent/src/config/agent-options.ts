// Maps the validated configuration onto the agent's constructor options (units converted:
// ms/s -> ns for the correlator; byte knobs renamed to the addon's). Each component gets its
// slice here; none of them has defaults of its own.
import type { AgentOptions } from '../agent.ts';
import { EXIT_CONFIG, STRATA_ERR_CONFIG, StrataError } from '../errors.ts';
import type { CorrelatorOptions } from '../correlate/options.ts';
import type { ExportConfig } from '../export/factory.ts';
import type { BatchOptions } from '../export/sdk-sink.ts';
import type { PodEntry } from '../k8s/pods-file.ts';
import type { AgentDiscoveryOptions } from '../k8s/agent-discovery.ts';
import { readPeersFile, readSecretFile } from '../peers/peers-file.ts';
import type { PeerOptions } from '../peers/peers.ts';
import { defaultConfig, type StrataConfig } from './schema.ts';

export function toExportConfig(c: StrataConfig): ExportConfig {
  const e = c.export;
  // values equal to the defaults are left out: the exporters take those from defaultConfig too
  const d = defaultConfig({}, '').export;
  const out: ExportConfig = {};
  if (e.otlp.endpoint !== 'none') {
    out.otlp = { endpoint: e.otlp.endpoint, protocol: e.otlp.protocol, headers: { ...e.otlp.headers }, timeoutMs: e.otlp.timeoutMs };
  }
  if (e.jaeger.endpoint !== null) {
    out.jaeger = { endpoint: e.jaeger.endpoint };
    if (e.jaeger.timeoutMs !== d.jaeger.timeoutMs) out.jaeger.timeoutMs = e.jaeger.timeoutMs;
  }
  if (e.files.dir !== null) out.files = { dir: e.files.dir };
  const r = e.retry;
  if ((Object.keys(r) as (keyof typeof r)[]).some((k) => r[k] !== d.retry[k])) {
    out.retry = { initialBackoffMillis: r.initialBackoffMs, maxBackoffMillis: r.maxBackoffMs, multiplier: r.multiplier, jitter: r.jitter, maxRetries: r.maxRetries };
  }
  return out;
}

export function toCorrelatorOptions(c: StrataConfig): CorrelatorOptions {
  const k = c.correlator;
  return {
    graceNs: k.graceMs * 1e6,
    idleNs: k.idleTimeoutS * 1e9,
    maxConns: k.maxConnections,
    maxMessages: k.maxMessages,
    maxReady: k.maxReady,
    lostQuietNs: k.lostQuietMs * 1e6,
    retainNs: k.retainS * 1e9,
    proxyComms: [...k.proxyComms],
    headerAllowList: [...c.privacy.headerAllowList],
    redactHeaders: [...c.privacy.redactHeaders],
    sampling: { ...c.sampling },
    maxHeldTraces: k.maxHeldTraces,
    exportInvalid: k.exportInvalid,
    stitch: { holdNs: c.stitch.holdMs * 1e6, maxHeldTraces: c.stitch.maxHeldTraces, maxMappings: c.stitch.maxMappings, mappingTtlNs: c.stitch.mappingTtlMs * 1e6 },
  };
}

/** the batch span processor in front of each exporter */
export function toBatchOptions(c: StrataConfig): BatchOptions {
  const q = c.export.queue;
  return { maxQueueSize: q.maxSpans, maxQueueBytes: q.maxBytes, shedFromFill: q.shedFrom, maxExportBatchSize: q.batchSize, scheduledDelayMillis: q.delayMs, exportTimeoutMillis: q.exportTimeoutMs, maxConcurrentExports: q.maxConcurrentExports };
}

/** discovery.source auto: the pods file when set, else the API server when in a cluster or given a kubeconfig, else none */
export function discoverySourceOf(c: StrataConfig, env: Record<string, string | undefined> = process.env): 'file' | 'kubernetes' | 'none' {
  const d = c.discovery;
  if (d.source !== 'auto') return d.source;
  if (d.podsFile !== null) return 'file';
  if (d.kubeconfig !== null || env.KUBERNETES_SERVICE_HOST) return 'kubernetes';
  return 'none';
}

export function toDiscoveryOptions(c: StrataConfig, env: Record<string, string | undefined> = process.env): AgentDiscoveryOptions {
  const d = c.discovery;
  const source = discoverySourceOf(c, env);
  return {
    source,
    podsFile: d.podsFile,
    kubeconfig: d.kubeconfig,
    selection: { namespaces: [...d.namespaces], excludeNamespaces: [...d.excludeNamespaces], labelSelector: d.labelSelector },
    traceProxies: d.traceProxies,
    unknownPods: d.unknownPods === 'auto' ? (source === 'kubernetes' ? 'trace' : 'ignore') : d.unknownPods,
    procRoot: d.procRoot,
    cgroupRoot: d.cgroupRoot,
    podCgroupParent: d.podCgroupParent,
    procScanIntervalMs: d.procScanIntervalMs,
    maxProcesses: d.maxProcesses,
    maxPods: d.maxPods,
    maxOwners: d.maxOwners,
    resyncS: d.resyncS,
    startTimeoutMs: d.startTimeoutMs,
    backoff: { ...d.backoff },
    unmappedVethGraceMs: d.unmappedVethGraceS * 1000,
  };
}

export function toAgentOptions(config: StrataConfig, pods: PodEntry[]): AgentOptions {
  return {
    discovery: toDiscoveryOptions(config),
    nodeName: config.node.name,
    pods,
    nodeNetns: config.node.netns,
    interfaces: [...config.node.interfaces],
    export: toExportConfig(config),
    exportQueue: toBatchOptions(config),
    maxResources: config.export.maxResources,
    routes: [...config.correlator.routes],
    probes: {
      sockPayloadCap: config.probes.sockPayloadBytes,
      pktPayloadCap: config.probes.pktPayloadBytes,
      ringBytes: config.probes.ringBufferBytes,
      wakeupBytes: config.probes.wakeupBytes,
      syscallAttach: config.probes.syscallAttach,
    },
    correlator: toCorrelatorOptions(config),
    shedding: { ...config.shedding },
    disableFamilies: [...config.probes.disable],
    idleDetachS: config.probes.idleDetachS,
    metricsPort: config.metrics.port,
    metricsHost: config.metrics.host,
    bpfRunStats: config.metrics.bpfRunStats,
    ...(config.stitch.peersFile === null && config.stitch.peersFrom === 'file' ? {} : { stitch: toStitchOptions(config) }),
  };
}

/**
 * The peer channel of cross-node stitching (reads stitch.peersFile or, with
 * stitch.peersFrom=kubernetes, starts with no peers and `fromKubernetes` set; and stitch.secretFile).
 */
export function toStitchOptions(c: StrataConfig): { peers: PeerOptions; port: number; host: string; fromKubernetes?: { kubeconfig: string | null; backoff: { initialMs: number; maxMs: number } } } {
  const t = c.stitch;
  const kube = t.peersFrom === 'kubernetes';
  if (kube && t.peersFile !== null) {
    throw new StrataError(STRATA_ERR_CONFIG, 'stitch.peersFile is set and stitch.peersFrom is kubernetes: the nodes come from one of the two', EXIT_CONFIG);
  }
  return {
    peers: {
      nodeName: c.node.name, peers: kube ? [] : readPeersFile(t.peersFile as string, t.port), secret: readSecretFile(t.secretFile),
      flushMs: t.flushMs, batchMax: t.batchMax, maxBatchBytes: t.maxBatchBytes, maxPending: t.maxPending, timeoutMs: t.timeoutMs,
    },
    port: t.port,
    host: t.host,
    ...(kube ? { fromKubernetes: { kubeconfig: c.discovery.kubeconfig, backoff: { ...c.discovery.backoff } } } : {}),
  };
}
