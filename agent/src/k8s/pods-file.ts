// File-based pod discovery (the lab's pods.json; in a cluster the API server takes this place).
// Maps a network namespace inode to its pod and a host-side veth to the pod behind it.
import { readFileSync } from 'node:fs';
import type { PodInfo, Topology } from './topology.ts';

export interface PodEntry {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  ip: string;
  netnsInode: number;
  /** the pod's veth on the node; "" for hostNetwork pods */
  hostVeth: string;
  labels?: Record<string, string>;
  /** cgroup v2 ids of the pod's containers: traced whatever the netns */
  cgroupIds?: number[];
  /** the pod uses the node's netns: traced by cgroupIds only, never by netns, no veth */
  hostNetwork?: boolean;
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
    if (typeof o.name !== 'string') throw new PodsFileError(`pods file ${path}: entry ${i} needs a name`);
    if (o.hostNetwork) {
      if (!Array.isArray(o.cgroupIds) || o.cgroupIds.length === 0 || !o.cgroupIds.every((c) => Number.isSafeInteger(c) && c > 0)) {
        throw new PodsFileError(`pods file ${path}: hostNetwork pod ${o.name} needs cgroupIds (cgroup v2 ids of its containers)`);
      }
      return { namespace: 'default', uid: '', node: '', ip: '', netnsInode: 0, hostVeth: '', ...o } as PodEntry;
    }
    if (typeof o.netnsInode !== 'number' || typeof o.hostVeth !== 'string') {
      throw new PodsFileError(`pods file ${path}: entry ${i} needs netnsInode and hostVeth (or hostNetwork with cgroupIds)`);
    }
    return { namespace: 'default', uid: '', node: '', ip: '', ...o } as PodEntry;
  });
}

/** Workload name: app label, else the pod name without its ReplicaSet/pod hash suffixes. */
export function workloadOf(p: { name: string; labels?: Record<string, string> }): string {
  const l = p.labels ?? {};
  return l['app.kubernetes.io/name'] ?? l.app ?? p.name.replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}$/, '');
}

/** An observed interface: on the node (a host veth, an uplink) or inside a pod (its own eth0). */
export interface IfaceInfo {
  name: string;
  pod?: PodInfo;
  side: 'node' | 'pod';
}

export class StaticTopology implements Topology {
  private readonly byNetns = new Map<number, PodInfo>();
  private readonly byVeth = new Map<string, PodInfo>();
  private readonly byCgroup = new Map<number, PodInfo>();
  /** by `${netns inode}:${ifindex}`; ifindex is per netns */
  private readonly ifaces = new Map<string, IfaceInfo>();
  /** inode of the node's netns (where TC attaches); 0 until known */
  private nodeNetns: number;

  readonly nodeName: string;

  constructor(nodeName: string, pods: PodEntry[] = [], nodeNetnsInode = 0) {
    this.nodeName = nodeName;
    this.nodeNetns = nodeNetnsInode;
    for (const p of pods) this.addPod(p);
  }

  /** the node's netns inode: interfaces registered without a netns, or with this one, are the node's */
  setNodeNetns(inode: number): void {
    this.nodeNetns = inode;
  }

  addPod(p: PodEntry): PodInfo {
    const info: PodInfo = { name: p.name, namespace: p.namespace, uid: p.uid, node: p.node || this.nodeName, workload: workloadOf(p) };
    if (!p.hostNetwork) this.byNetns.set(p.netnsInode, info);
    if (p.hostVeth) this.byVeth.set(p.hostVeth, info);
    for (const id of p.cgroupIds ?? []) this.byCgroup.set(id, info);
    return info;
  }

  /**
   * Records an observed interface. netns undefined (or the node's): a node interface, its pod the
   * one behind that host veth. A pod's netns inode: the pod's own interface.
   */
  addInterface(ifindex: number, name: string, netns?: number): void {
    const node = netns === undefined || netns === this.nodeNetns;
    const info: IfaceInfo = node ? { name, pod: this.byVeth.get(name), side: 'node' } : { name, pod: this.podByNetns(netns), side: 'pod' };
    this.ifaces.set(`${node ? this.nodeNetns : netns}:${ifindex}`, info);
  }

  podByNetns(inode: number): PodInfo | undefined {
    return this.byNetns.get(inode);
  }

  podByCgroup(id: number): PodInfo | undefined {
    return this.byCgroup.get(id);
  }

  /** netns undefined: the node's (what TC pkt events mean) */
  iface(ifindex: number, netns?: number): IfaceInfo | undefined {
    return this.ifaces.get(`${netns ?? this.nodeNetns}:${ifindex}`);
  }
}
