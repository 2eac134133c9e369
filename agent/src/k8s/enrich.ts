// What a span's resource says about its pod, from what discovery knows of it (the API object or a
// pods-file entry): the workload as the OpenTelemetry k8s semantic conventions name it, and the
// service name in the order users of other eBPF agents know (OBI/Beyla, the OTel operator):
//   1. the container's OTEL_SERVICE_NAME (its spec's env, else the process's environment)
//   2. the annotation resource.opentelemetry.io/service.name
//   3. the label app.kubernetes.io/instance, then 4. app.kubernetes.io/name
//   5. the top owner's name (Deployment over its ReplicaSet, CronJob over its Job, DaemonSet, ...)
//   6. the pod's name

/** What a discovery source knows of one pod of this node. */
export interface PodMeta {
  uid: string;
  name: string;
  namespace: string;
  node: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  hostNetwork: boolean;
  /** status.podIPs (v4 and v6) */
  ips: readonly string[];
  /** the controlling owner, as metadata.ownerReferences names it (kind: ReplicaSet, DaemonSet, ...) */
  owner?: { kind: string; name: string };
  /** the ReplicaSet's own owner when the source looked it up (the Deployment); null: it has none */
  ownerOwner?: { kind: string; name: string } | null;
  containers: readonly PodContainerMeta[];
  // what a pods file may say instead of /proc (the lab knows it when it builds a pod)
  netnsInode?: number;
  hostVeth?: string;
  cgroupIds?: readonly number[];
}

export interface PodContainerMeta {
  name: string;
  /** the runtime's container ID without its scheme (containerd://...), when running */
  id?: string;
  /** a process of it (a pods file may name them; /proc finds the rest by container ID) */
  pid?: number;
  /** OTEL_SERVICE_NAME from its spec (a literal env value) */
  serviceName?: string;
}

/** the kubelet runs a static pod under its config hash, which the mirror pod carries in this annotation */
export const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';
export const SERVICE_NAME_ANNOTATION = 'resource.opentelemetry.io/service.name';

/** The UID a pod's cgroup is named after: the mirror pod's config hash for static pods, else metadata.uid. */
export function cgroupUidOf(p: PodMeta): string {
  return p.annotations[MIRROR_ANNOTATION] || p.uid;
}

export type WorkloadKind = 'deployment' | 'replicaset' | 'daemonset' | 'statefulset' | 'job' | 'cronjob';

// Deployment pods are <deployment>-<pod-template-hash>-<5 chars>, both suffixes drawn from the
// alphabet of the apimachinery's rand.SafeEncodeString (no vowels, no 0/1/3)
const SAFE = '[bcdfghjklmnpqrstvwxz2456789]';
const RS_POD_NAME = new RegExp(`^(.+)-(${SAFE}{5,10})-${SAFE}{5}$`);
// Jobs of a CronJob are <cronjob>-<scheduled time in minutes since the epoch>
const CRONJOB_JOB_NAME = /^(.+)-(\d{8,10})$/;

/**
 * The pod's owners as k8s.*.name attributes, top owner last. A ReplicaSet owned by a Deployment
 * (as looked up, else as its name says: <deployment>-<pod-template-hash>) adds the Deployment; a
 * Job named like a CronJob's adds the CronJob (jobs are not readable with strata's ClusterRole).
 * A pods file without owners: a pod named like a Deployment's is that Deployment's.
 */
export function workloadOf(p: PodMeta): { kind: WorkloadKind; name: string }[] {
  const o = p.owner;
  if (!o) {
    const m = RS_POD_NAME.exec(p.name);
    const hash = p.labels['pod-template-hash'];
    if (m?.[1] && (!hash || hash === m[2])) return [{ kind: 'replicaset', name: `${m[1]}-${m[2]}` }, { kind: 'deployment', name: m[1] }];
    return [];
  }
  switch (o.kind) {
    case 'ReplicaSet': {
      const out: { kind: WorkloadKind; name: string }[] = [{ kind: 'replicaset', name: o.name }];
      if (p.ownerOwner !== undefined) {
        if (p.ownerOwner?.kind === 'Deployment') out.push({ kind: 'deployment', name: p.ownerOwner.name });
        return out;
      }
      const hash = p.labels['pod-template-hash'];
      if (hash && o.name.endsWith(`-${hash}`)) out.push({ kind: 'deployment', name: o.name.slice(0, -hash.length - 1) });
      return out;
    }
    case 'DaemonSet':
      return [{ kind: 'daemonset', name: o.name }];
    case 'StatefulSet':
      return [{ kind: 'statefulset', name: o.name }];
    case 'Job': {
      const m = CRONJOB_JOB_NAME.exec(o.name);
      return m?.[1] ? [{ kind: 'job', name: o.name }, { kind: 'cronjob', name: m[1] }] : [{ kind: 'job', name: o.name }];
    }
    default:
      return [];
  }
}

/** k8s.<kind>.name for every owner (OTel k8s resource semantic conventions) */
export function workloadAttributes(p: PodMeta): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of workloadOf(p)) out[`k8s.${w.kind}.name`] = w.name;
  return out;
}

/** The pod's service name: rules 2 to 6 (rule 1 is the container's, see serviceNameOf). */
export function podServiceName(p: PodMeta): string {
  const fromMeta = p.annotations[SERVICE_NAME_ANNOTATION] || p.labels['app.kubernetes.io/instance'] || p.labels['app.kubernetes.io/name'];
  if (fromMeta) return fromMeta;
  const owners = workloadOf(p);
  return owners[owners.length - 1]?.name || p.name;
}

/** A container's service name: its OTEL_SERVICE_NAME (spec, else the process's environment), else the pod's. */
export function serviceNameOf(p: PodMeta, containerEnv: string | undefined): string {
  return containerEnv || podServiceName(p);
}
