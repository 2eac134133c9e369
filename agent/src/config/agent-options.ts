// Maps the validated configuration onto the agent's constructor options (units converted:
// ms/s -> ns for the correlator; byte knobs renamed to the addon's).
import type { AgentOptions } from '../agent.ts';
import type { CorrelatorConfig } from '../correlate/correlator.ts';
import type { ExportConfig } from '../export/factory.ts';
import type { PodEntry } from '../k8s/pods-file.ts';
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

export function toCorrelatorOptions(c: StrataConfig): CorrelatorConfig {
  const k = c.correlator;
  return {
    graceNs: k.graceMs * 1e6,
    idleNs: k.idleTimeoutS * 1e9,
    maxConns: k.maxConnections,
    maxMessages: k.maxMessages,
    proxyComms: [...k.proxyComms],
    headerAllowList: [...c.privacy.headerAllowList],
    redactHeaders: [...c.privacy.redactHeaders],
    sampling: { ...c.sampling },
  };
}

export function toAgentOptions(config: StrataConfig, pods: PodEntry[]): AgentOptions {
  return {
    nodeName: config.node.name,
    pods,
    nodeNetns: config.node.netns,
    interfaces: [...config.node.interfaces],
    export: toExportConfig(config),
    exportQueue: {
      maxQueueSize: config.export.queue.maxSpans,
      maxExportBatchSize: config.export.queue.batchSize,
      scheduledDelayMillis: config.export.queue.delayMs,
    },
    probes: {
      sockPayloadCap: config.probes.sockPayloadBytes,
      pktPayloadCap: config.probes.pktPayloadBytes,
      ringBytes: config.probes.ringBufferBytes,
      wakeupBytes: config.probes.wakeupBytes,
    },
    correlator: toCorrelatorOptions(config),
    metricsPort: config.metrics.port,
    metricsHost: config.metrics.host,
  };
}
