// Which pod and container a process belongs to, from its /proc/<pid>/cgroup. The kubelet names a
// pod's cgroup after its UID and the runtime names the container's after its ID, in one of these
// styles (cgroup v1 hierarchies and the v2 unified one alike):
//   cgroupfs driver  /kubepods/besteffort/pod<uid>/<id>            (containerd, Docker)
//                    /kubepods/burstable/pod<uid>/crio-<id>        (CRI-O)
//                    /kubepods/pod<uid>/<id>                       (Guaranteed: no QoS level)
//   systemd driver   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
//                        cri-containerd-<id>.scope | crio-<id>.scope | docker-<id>.scope
// with "_" for "-" in the UID under systemd, any prefix before "kubepods" (--cgroup-root, kind's
// /kubelet.slice/kubelet-kubepods.slice/..., a lab's own parent) and, seen from inside a cgroup
// namespace, a relative "/../.." start. Static pods' UIDs are the 32-hex config hash (the mirror
// pod's kubernetes.io/config.mirror annotation). crio-conmon-<id>.scope is CRI-O's monitor, not
// the container.

export interface CgroupIdentity {
  /** the pod UID as the API server spells it (dashes), or the static pod's config hash */
  podUid?: string;
  /** the container ID (64 hex), the pod sandbox (pause) included */
  containerId?: string;
  runtime?: 'containerd' | 'crio' | 'docker';
  qos?: 'guaranteed' | 'burstable' | 'besteffort';
  /** the cgroup v2 path ("0::" line), undefined on a v1-only host */
  v2Path?: string;
}

const UUID = '[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}';
// pod<uid> as a directory (cgroupfs) or the end of a slice name (systemd: kubepods-<qos>-pod<uid>.slice)
const POD_RE = new RegExp(`(?:^|[/-])pod(${UUID}|[0-9a-f]{32})(?:\\.slice)?(?=/|$)`);
const QOS_RE = /(?:^|[/-])(besteffort|burstable)(?:\.slice)?(?=\/|$)/;
// the container: the path's last component after the pod's
const CONTAINER_RE = /^(?:(cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?$/;

/** The pod and container of one cgroup path, or {} when the path is no pod's. */
export function parseCgroupPath(path: string): Omit<CgroupIdentity, 'v2Path'> {
  const m = POD_RE.exec(path);
  if (!m?.[1]) return {};
  const uid = m[1].replace(/_/g, '-');
  const out: Omit<CgroupIdentity, 'v2Path'> = { podUid: uid };
  const before = path.slice(0, m.index + 1);
  const q = QOS_RE.exec(before);
  // a pod under kubepods directly is Guaranteed (the kubelet has no QoS level cgroup for it)
  out.qos = (q?.[1] as CgroupIdentity['qos']) ?? 'guaranteed';
  const rest = path.slice(m.index + m[0].length).split('/').filter(Boolean);
  // the container is the component right under the pod (runc may add nothing below; systemd
  // may not either); deeper components are the container's own sub-cgroups
  const c = rest[0] !== undefined ? CONTAINER_RE.exec(rest[0]) : null;
  if (c?.[2]) {
    out.containerId = c[2];
    // cgroupfs paths carry no runtime prefix (containerd, Docker): left out rather than guessed
    if (c[1]) out.runtime = c[1] === 'cri-containerd' ? 'containerd' : (c[1] as 'crio' | 'docker');
  }
  return out;
}

/**
 * The contents of /proc/<pid>/cgroup: one "hierarchy:controllers:path" line per hierarchy (v1),
 * "0::path" for the v2 unified one. The first line that names a pod wins; v2 is preferred, as it
 * is the hierarchy whose ids the BPF programs see (bpf_get_current_cgroup_id).
 */
export function parseProcCgroup(text: string): CgroupIdentity {
  let v2Path: string | undefined;
  let found: Omit<CgroupIdentity, 'v2Path'> = {};
  for (const line of text.split('\n')) {
    const a = line.indexOf(':');
    const b = a < 0 ? -1 : line.indexOf(':', a + 1);
    if (b < 0) continue;
    const path = line.slice(b + 1);
    const v2 = line.slice(0, a) === '0' && b === a + 1;
    if (v2) v2Path = path;
    if (!found.podUid || (v2 && !found.containerId)) {
      const id = parseCgroupPath(path);
      if (id.podUid && (!found.podUid || id.containerId)) found = id;
    }
  }
  return v2Path === undefined ? found : { ...found, v2Path };
}

/** The runtime prefix of a container ID in the API's status (containerd://, cri-o://, docker://) stripped. */
export function containerIdFromStatus(id: string | undefined): string | undefined {
  if (!id) return undefined;
  const i = id.indexOf('://');
  return i >= 0 ? id.slice(i + 3) : id;
}
