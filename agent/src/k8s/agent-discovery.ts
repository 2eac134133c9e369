// The agent's discovery, built from its configuration slice: the source (pods file, API server, or
// the pods the agent was given), the selectors, and the attach loop over them.
import { Discovery, type ApplyTarget } from './discovery.ts';
import { FilePodSource, type PodEntry, StaticPodSource } from './pods-file.ts';
import { type PodSelection, podSelector } from './selector.ts';
import type { PodSource } from './source.ts';
import type { PodTopology } from './topology.ts';

export interface AgentDiscoveryOptions {
  /** resolved from discovery.source (auto already decided) */
  source: 'file' | 'kubernetes' | 'none';
  podsFile: string | null;
  kubeconfig: string | null;
  selection: PodSelection;
  traceProxies: boolean;
  unknownPods: 'trace' | 'ignore';
  procRoot: string;
  cgroupRoot: string;
  podCgroupParent: string;
  procScanIntervalMs: number;
  maxProcesses: number;
  maxPods: number;
  maxOwners: number;
  resyncS: number;
  startTimeoutMs: number;
  backoff: { initialMs: number; maxMs: number };
  unmappedVethGraceMs: number;
}

export interface DiscoveryDeps {
  nodeName: string;
  nodeNetns: string;
  nodeNetnsInode: number;
  interfaces: readonly string[];
  /** the pods the agent was given (read from the pods file already, or a test's list) */
  pods: readonly PodEntry[];
  proxyComms: readonly string[];
  topology: PodTopology;
  linkInfo: (ifname: string, netns: string) => { ifindex: number; iflink: number };
  /** every interface of a netns (native RTM_GETLINK dump) */
  listLinks: (netns: string) => { ifindex: number; name: string; kind?: string; iflink?: number }[];
  apply: ApplyTarget;
  log: (msg: string) => void;
}

export async function createDiscovery(o: AgentDiscoveryOptions, d: DiscoveryDeps): Promise<Discovery> {
  let source: PodSource;
  if (o.source === 'kubernetes') {
    // imported only here: only this source needs the API client
    const { KubePodSource } = await import('./kube.ts');
    source = new KubePodSource({
      nodeName: d.nodeName, kubeconfig: o.kubeconfig, resyncS: o.resyncS, startTimeoutMs: o.startTimeoutMs,
      backoff: o.backoff, maxOwners: o.maxOwners, log: d.log,
    });
  } else if (o.source === 'file' && o.podsFile !== null) {
    source = new FilePodSource(o.podsFile, d.nodeName, d.log, [...d.pods]);
  } else {
    source = new StaticPodSource(d.pods, d.nodeName);
  }
  return new Discovery({
    nodeName: d.nodeName, nodeNetns: d.nodeNetns, nodeNetnsInode: d.nodeNetnsInode, interfaces: d.interfaces,
    select: podSelector(o.selection), traceProxies: o.traceProxies, proxyComms: d.proxyComms, unknownPods: o.unknownPods,
    procRoot: o.procRoot, cgroupRoot: o.cgroupRoot, podCgroupParent: o.podCgroupParent, procScanIntervalMs: o.procScanIntervalMs, maxProcesses: o.maxProcesses,
    maxPods: o.maxPods, unmappedVethGraceMs: o.unmappedVethGraceMs, log: d.log, linkInfo: d.linkInfo,
    listLinks: async () => d.listLinks(d.nodeNetns).map((l) => ({ ifindex: l.ifindex, name: l.name, kind: l.kind, peerIfindex: l.iflink })),
  }, source, d.topology, d.apply);
}

/** Whether the socket filter must look at cgroups (hostNetwork pods, proxies outside pods) at all: a load-time choice. */
export function needsCgroupFilter(o: AgentDiscoveryOptions, pods: readonly PodEntry[]): boolean {
  return o.source === 'kubernetes' || pods.some((p) => p.hostNetwork || (p.cgroupIds?.length ?? 0) > 0);
}
