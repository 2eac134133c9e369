// What discovery (the pods file, later the Kubernetes API) tells the rest of the agent: which pod a
// network namespace, a cgroup or an interface belongs to. The correlator reads it; the attach loop
// reconciles the kernel filters and TC programs with it.

export interface PodInfo {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  /** workload name: the service name spans are filed under */
  workload: string;
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
