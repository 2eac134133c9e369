// File-based pod discovery (the lab's pods.json; in a cluster the API server takes this place).
// Maps a network namespace inode to its pod and a host-side veth to the pod behind it.
import { readFileSync } from 'node:fs';
import type { PodInfo, Topology } from '../correlate/correlator.ts';

export interface PodEntry {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  ip: string;
  netnsInode: number;
  hostVeth: string;
  labels?: Record<string, string>;
  /** cgroup v2 ids of the pod's containers: traced whatever the netns (hostNetwork pods) */
  cgroupIds?: number[];
}

export class PodsFileError extends Error {
  readonly code = 'STRATA_ERR_PODS_FILE';
}

export function readPodsFile(path: string): PodEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new PodsFileError(`pods file ${path}: ${(e as Error).message}`);
  }
  if (!Array.isArray(raw)) throw new PodsFileError(`pods file ${path}: expected a JSON array of pods`);
  return raw.map((p, i) => {
    const o = p as Partial<PodEntry>;
    if (typeof o.name !== 'string' || typeof o.netnsInode !== 'number' || typeof o.hostVeth !== 'string') {
      throw new PodsFileError(`pods file ${path}: entry ${i} needs name, netnsInode and hostVeth`);
    }
    return { namespace: 'default', uid: '', node: '', ip: '', ...o } as PodEntry;
  });
}

/** Workload name: app label, else the pod name without its ReplicaSet/pod hash suffixes. */
export function workloadOf(p: { name: string; labels?: Record<string, string> }): string {
  const l = p.labels ?? {};
  return l['app.kubernetes.io/name'] ?? l.app ?? p.name.replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}$/, '');
}

export class StaticTopology implements Topology {
  private readonly byNetns = new Map<number, PodInfo>();
  private readonly byVeth = new Map<string, PodInfo>();
  private readonly ifaces = new Map<number, { name: string; pod?: PodInfo }>();

  readonly nodeName: string;

  constructor(nodeName: string, pods: PodEntry[] = []) {
    this.nodeName = nodeName;
    for (const p of pods) this.addPod(p);
  }

  addPod(p: PodEntry): PodInfo {
    const info: PodInfo = { name: p.name, namespace: p.namespace, uid: p.uid, node: p.node || this.nodeName, workload: workloadOf(p) };
    this.byNetns.set(p.netnsInode, info);
    this.byVeth.set(p.hostVeth, info);
    return info;
  }

  /** records where a TC program was attached (ifindex is per netns: one node netns per agent) */
  addInterface(ifindex: number, name: string): void {
    this.ifaces.set(ifindex, { name, pod: this.byVeth.get(name) });
  }

  podByNetns(inode: number): PodInfo | undefined {
    return this.byNetns.get(inode);
  }

  iface(ifindex: number): { name: string; pod?: PodInfo } | undefined {
    return this.ifaces.get(ifindex);
  }
}
