// What discovery (the pods file, the Kubernetes API server, /proc) tells the rest of the agent:
// which pod a network namespace, a cgroup or an interface belongs to. The correlator reads it; the
// attach loop (k8s/discovery.ts) keeps it and the kernel filters and TC programs in step with the
// pods as they come and go.

/** One container of a pod, as the spans' resource names it. */
export interface ContainerInfo {
  name: string;
  /** service.name of its spans (the container's OTEL_SERVICE_NAME first: k8s/enrich.ts) */
  serviceName: string;
}

export interface PodInfo {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  /** the pod's service name (k8s/enrich.ts, without a container's own OTEL_SERVICE_NAME); also its label in hop names */
  workload: string;
  /** k8s.* resource attributes beyond pod, namespace and node: the workload (k8s.deployment.name, ...) */
  attributes?: Readonly<Record<string, string>>;
  /** the container a process of this pod runs in, when known */
  container?: (pid: number) => ContainerInfo | undefined;
  /** the pod's IPs (status.podIPs: v4 and v6) */
  ips?: readonly string[];
  /** found in /proc (a kubelet-style cgroup) but unknown to discovery: no name, namespace or labels */
  unknown?: boolean;
  /** bumped when discovery learns more about the pod (resources keyed by it are rebuilt) */
  rev?: number;
}

/** An interface the agent observes: TC on a host-side veth or uplink, or net_dev events. */
export interface IfaceInfo {
  name: string;
  /** the pod behind the interface (host-side veth) or owning it (the pod's own eth0) */
  pod?: PodInfo;
  /** the netns the device lives in: the node's ('node', TC events and uplinks) or the pod's; absent = 'node' */
  side?: 'node' | 'pod';
}

export interface Topology {
  nodeName: string;
  podByNetns(inode: number): PodInfo | undefined;
  /** hostNetwork pods: known by the cgroup of their containers */
  podByCgroup?(id: number): PodInfo | undefined;
  /** `netns`: inode of the device's netns; undefined = the node's (TC events) */
  iface(ifindex: number, netns?: number): IfaceInfo | undefined;
}

/** The program a process runs (not its thread name): from /proc, cached; undefined when unknown. */
export type ExecutableOf = (pid: number) => string | undefined;

/** Where a pod is found: its netns, its host-side veth, the cgroup v2 ids of its containers. */
export interface PodKeys {
  netns?: number;
  veth?: string;
  cgroupIds?: readonly number[];
}

interface Iface extends IfaceInfo {
  side: 'node' | 'pod';
  /** pod side: the pod's netns inode */
  netns?: number;
}

/**
 * The pods of this node and the interfaces observed, by every key the events carry. Lookups are
 * plain map reads (the correlator calls them per connection and per packet); put/drop run when
 * discovery reconciles.
 */
export class PodTopology implements Topology {
  private readonly byNetns = new Map<number, PodInfo>();
  private readonly byVeth = new Map<string, PodInfo>();
  private readonly byCgroup = new Map<number, PodInfo>();
  private readonly byIp = new Map<string, PodInfo>();
  private readonly keysOf = new Map<string, { info: PodInfo; keys: PodKeys }>();
  /** by `${netns inode}:${ifindex}`; ifindex is per netns */
  private readonly ifaces = new Map<string, Iface>();
  /** inode of the node's netns (where TC attaches); 0 until known */
  private nodeNetns: number;

  readonly nodeName: string;

  constructor(nodeName: string, nodeNetnsInode = 0) {
    this.nodeName = nodeName;
    this.nodeNetns = nodeNetnsInode;
  }

  /** the node's netns inode: interfaces registered without a netns, or with this one, are the node's */
  setNodeNetns(inode: number): void {
    this.nodeNetns = inode;
  }

  /** Adds or replaces a pod (by uid; the pods file may have none: then by name) and where it is found. */
  put(info: PodInfo, keys: PodKeys): void {
    const id = podKey(info);
    const old = this.keysOf.get(id);
    if (old) this.unindex(old.info, old.keys);
    this.keysOf.set(id, { info, keys });
    if (keys.netns) this.byNetns.set(keys.netns, info);
    if (keys.veth) this.byVeth.set(keys.veth, info);
    for (const c of keys.cgroupIds ?? []) this.byCgroup.set(c, info);
    for (const ip of info.ips ?? []) this.byIp.set(ip, info);
    for (const i of this.ifaces.values()) {
      if ((i.side === 'node' && keys.veth === i.name) || (i.side === 'pod' && keys.netns !== undefined && i.netns === keys.netns)) i.pod = info;
    }
  }

  /** Forgets a pod (it went away; `key` as podKey() makes it); interfaces it owned keep their names, without the pod. */
  drop(key: string): void {
    const old = this.keysOf.get(key);
    if (!old) return;
    this.keysOf.delete(key);
    this.unindex(old.info, old.keys);
  }

  private unindex(info: PodInfo, keys: PodKeys): void {
    const del = <K>(m: Map<K, PodInfo>, k: K | undefined) => {
      if (k !== undefined && m.get(k) === info) m.delete(k);
    };
    del(this.byNetns, keys.netns);
    del(this.byVeth, keys.veth);
    for (const c of keys.cgroupIds ?? []) del(this.byCgroup, c);
    for (const ip of info.ips ?? []) del(this.byIp, ip);
    for (const i of this.ifaces.values()) if (i.pod === info) i.pod = undefined;
  }

  pods(): PodInfo[] {
    return [...this.keysOf.values()].map((x) => x.info);
  }

  /**
   * Records an observed interface. netns undefined (or the node's): a node interface, its pod the
   * one behind that host veth. A pod's netns inode: the pod's own interface.
   */
  addInterface(ifindex: number, name: string, netns?: number): void {
    const node = netns === undefined || netns === this.nodeNetns;
    const info: Iface = node
      ? { name, pod: this.byVeth.get(name), side: 'node' }
      : { name, pod: this.podByNetns(netns), side: 'pod', netns };
    this.ifaces.set(`${node ? this.nodeNetns : netns}:${ifindex}`, info);
  }

  removeInterface(ifindex: number, netns?: number): void {
    this.ifaces.delete(`${netns ?? this.nodeNetns}:${ifindex}`);
  }

  podByNetns(inode: number): PodInfo | undefined {
    return this.byNetns.get(inode);
  }

  podByCgroup(id: number): PodInfo | undefined {
    return this.byCgroup.get(id);
  }

  podByVeth(name: string): PodInfo | undefined {
    return this.byVeth.get(name);
  }

  podByIp(ip: string): PodInfo | undefined {
    return this.byIp.get(ip);
  }

  /** netns undefined: the node's (what TC pkt events mean) */
  iface(ifindex: number, netns?: number): IfaceInfo | undefined {
    return this.ifaces.get(`${netns ?? this.nodeNetns}:${ifindex}`);
  }
}

/** a pod's identity in the topology: its uid, else (a pods file without uids) namespace/name */
export function podKey(p: { uid: string; namespace: string; name: string }): string {
  return p.uid || `${p.namespace}/${p.name}`;
}
