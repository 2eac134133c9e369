// File-based pod discovery: the lab's pods.json, the demo, hosts without Kubernetes. An entry may
// say where its pod is (netnsInode + hostVeth, or hostNetwork + cgroupIds: used as given) or only
// who it is (uid, name, namespace, labels, containers): then /proc finds its processes by the
// kubelet-style cgroup pod<uid> and the veth behind its netns (k8s/discovery.ts).
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { type PodMeta, podServiceName, workloadAttributes } from './enrich.ts';
import type { PodSource, SourceStats } from './source.ts';
import { type PodInfo, PodTopology } from './topology.ts';

export interface PodEntry {
  name: string;
  namespace: string;
  /** the pod's UID: also the pod<uid> of its kubelet-style cgroup, through which /proc finds it */
  uid: string;
  node: string;
  ip: string;
  /** more IPs (v6 next to v4) */
  ips?: string[];
  /** 0 (or absent, with a uid): found through /proc */
  netnsInode: number;
  /** the pod's veth on the node; "" for hostNetwork pods, or to find it from the pod's netns */
  hostVeth: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  /** the controlling owner (kind: ReplicaSet, DaemonSet, StatefulSet, Job); absent: a Deployment's when the name says so */
  owner?: { kind: string; name: string };
  /** containers: a pid or a container ID ties processes to them; serviceName is its OTEL_SERVICE_NAME */
  containers?: { name: string; pid?: number; id?: string; serviceName?: string }[];
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
    const uid = typeof o.uid === 'string' && o.uid !== '';
    if (o.hostNetwork) {
      const ids = o.cgroupIds;
      if (ids !== undefined && (!Array.isArray(ids) || !ids.every((c) => Number.isSafeInteger(c) && c > 0))) {
        throw new PodsFileError(`pods file ${path}: hostNetwork pod ${o.name}: cgroupIds must be cgroup v2 ids (positive integers)`);
      }
      if (!uid && !ids?.length) {
        throw new PodsFileError(`pods file ${path}: hostNetwork pod ${o.name} needs cgroupIds (cgroup v2 ids of its containers) or a uid (its kubelet-style cgroup)`);
      }
      return { namespace: 'default', uid: '', node: '', ip: '', netnsInode: 0, hostVeth: '', ...o } as PodEntry;
    }
    const placed = typeof o.netnsInode === 'number' && typeof o.hostVeth === 'string';
    if (!placed && !uid) {
      throw new PodsFileError(`pods file ${path}: entry ${i} needs netnsInode and hostVeth, or a uid (found through its kubelet-style cgroup), or hostNetwork with cgroupIds`);
    }
    return { namespace: 'default', uid: '', node: '', ip: '', netnsInode: 0, hostVeth: '', ...o } as PodEntry;
  });
}

/** A pods-file entry as discovery sees every pod. */
export function podMetaOf(p: PodEntry, nodeName: string): PodMeta {
  return {
    uid: p.uid,
    name: p.name,
    namespace: p.namespace,
    node: p.node || nodeName,
    labels: p.labels ?? {},
    annotations: p.annotations ?? {},
    hostNetwork: p.hostNetwork === true,
    ips: [...new Set([p.ip, ...(p.ips ?? [])].filter((x) => x))],
    owner: p.owner,
    containers: (p.containers ?? []).map((c) => ({ name: c.name, id: c.id, pid: c.pid, serviceName: c.serviceName })),
    netnsInode: p.netnsInode || undefined,
    hostVeth: p.hostVeth || undefined,
    cgroupIds: p.cgroupIds,
  };
}

/** A pod as spans name it, from what discovery knows (no process-level detail: that is discovery's). */
export function podInfoOf(m: PodMeta, rev = 0): PodInfo {
  return {
    name: m.name, namespace: m.namespace, uid: m.uid, node: m.node, workload: podServiceName(m),
    attributes: workloadAttributes(m), ips: m.ips, rev,
  };
}

/** Service name of a pods-file entry (rules 2-6 of k8s/enrich.ts). */
export function workloadOf(p: PodEntry): string {
  return podServiceName(podMetaOf(p, ''));
}

/**
 * A topology filled from pods-file entries as given (tests, replays, benchmarks): no /proc, no
 * API server. The agent's own topology is kept by k8s/discovery.ts.
 */
export class StaticTopology extends PodTopology {
  constructor(nodeName: string, pods: PodEntry[] = [], nodeNetnsInode = 0) {
    super(nodeName, nodeNetnsInode);
    for (const p of pods) this.addPod(p);
  }

  addPod(p: PodEntry): PodInfo {
    const info = podInfoOf(podMetaOf(p, this.nodeName));
    this.put(info, { netns: p.hostNetwork ? undefined : p.netnsInode || undefined, veth: p.hostVeth || undefined, cgroupIds: p.cgroupIds });
    return info;
  }
}

/**
 * The pods file as a discovery source: read at start (an unreadable file then is a configuration
 * error), and again whenever it changes (a directory watch, and its mtime at every reconcile). A
 * file that turns unreadable later keeps the last good pods (counted, one warning).
 */
export class FilePodSource implements PodSource {
  readonly kind = 'file';
  /** the file is the whole truth: pods only /proc shows are not this agent's */
  readonly authoritative = true;
  private entries: PodEntry[];
  private metas: PodMeta[];
  private watcher?: FSWatcher;
  private mtimeMs = 0;
  private size = -1;
  private readonly st: SourceStats = { lists: 1, listErrors: 0, watchErrors: 0, relists: 0 };
  private onChange: () => void = () => {};
  private readonly path: string;
  private readonly nodeName: string;
  private readonly log: (m: string) => void;
  private warned = false;

  constructor(path: string, nodeName: string, log: (m: string) => void, entries?: PodEntry[]) {
    this.path = path;
    this.nodeName = nodeName;
    this.log = log;
    this.entries = entries ?? readPodsFile(path);
    this.metas = this.entries.map((e) => podMetaOf(e, nodeName));
    this.stamp();
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    try {
      // the directory: writers replace the file (rename), which a watch on the file itself misses
      this.watcher = watch(dirname(this.path), (_ev, f) => {
        if (f === null || f === basename(this.path)) this.poll();
      });
      this.watcher.on('error', () => {});
    } catch {
      // no inotify here: poll() at every reconcile still sees changes
    }
  }

  /** Re-reads the file when its mtime or size changed; true when the pods changed. */
  poll(): boolean {
    let st: { mtimeMs: number; size: number };
    try {
      st = statSync(this.path);
    } catch {
      return false;
    }
    if (st.mtimeMs === this.mtimeMs && st.size === this.size) return false;
    try {
      const entries = readPodsFile(this.path);
      this.entries = entries;
      this.metas = entries.map((e) => podMetaOf(e, this.nodeName));
      this.mtimeMs = st.mtimeMs;
      this.size = st.size;
      this.st.lists++;
      this.warned = false;
      this.onChange();
      return true;
    } catch (e) {
      // half-written by a writer that does not rename: the next change event or poll reads it again
      this.st.listErrors++;
      if (!this.warned) this.log(`strata: warning: ${(e as Error).message}; keeping the last pods read`);
      this.warned = true;
      return false;
    }
  }

  private stamp(): void {
    try {
      const st = statSync(this.path);
      this.mtimeMs = st.mtimeMs;
      this.size = st.size;
    } catch {
      // read from memory (tests): no file to watch
    }
  }

  pods(): readonly PodMeta[] {
    return this.metas;
  }

  stale(): boolean {
    return false;
  }

  stats(): SourceStats {
    return this.st;
  }

  async stop(): Promise<void> {
    this.watcher?.close();
  }
}

/** Pods given once, never changing (the Agent constructed with a list: tests). */
export class StaticPodSource implements PodSource {
  readonly kind = 'static';
  readonly authoritative = true;
  private readonly metas: PodMeta[];

  constructor(entries: readonly PodEntry[], nodeName: string) {
    this.metas = entries.map((e) => podMetaOf(e, nodeName));
  }

  async start(): Promise<void> {}

  poll(): boolean {
    return false;
  }

  pods(): readonly PodMeta[] {
    return this.metas;
  }

  stale(): boolean {
    return false;
  }

  stats(): SourceStats {
    return { lists: 1, listErrors: 0, watchErrors: 0, relists: 0 };
  }

  async stop(): Promise<void> {}
}

export type { IfaceInfo } from './topology.ts';
