// What tests on the real single-node cluster (lab/k8s/cluster.ts) look at from the host: the
// gate (what is missing, fail under CI), the images, the agent's overlay of manifests/base, a
// container's host pid and a pod's host veth, the BPF programs and maps a process holds (from
// /proc/<pid>/fdinfo: this bpftool 7.1 has no pid column), the TC filters on a host interface,
// capability sets.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { type NodeCluster, debianKubectl, missingForCluster } from '../../lab/k8s/cluster.ts';
import { missingPrerequisites } from './kernel.ts';

const IMAGE_SH = fileURLToPath(new URL('../../scripts/image.sh', import.meta.url));
export const MANIFESTS_BASE = fileURLToPath(new URL('../../manifests/base', import.meta.url));

/** What keeps a full node from running here, or undefined; throws under CI=true (a missing piece fails there). */
export function nodeMissing(): string | undefined {
  const why = missingPrerequisites() ?? missingForCluster('node') ??
    (debianKubectl() ? undefined : "Debian's kubectl 1.20 missing (scripts/setup.sh unpacks kubernetes-client)");
  if (why && process.env.CI === 'true') throw new Error(`prerequisite missing under CI: ${why}`);
  return why;
}

/** Returns true when a full node can run here; skips (fails under CI=true) otherwise, saying why. */
export function requireNode(t: TestContext): boolean {
  const why = nodeMissing();
  if (!why) return true;
  t.skip(why);
  return false;
}

/**
 * scripts/image.sh: the docker-archive of the agent (strata:dev) or of the lab's NGINX
 * (strata-lab/nginx:dev), cached; a cold build takes a few minutes. STRATA_IMAGE_ARCHIVE=path runs
 * the tests with another agent image (e.g. the Dockerfile's, exported with `buildah push IMAGE
 * docker-archive:path:strata:dev`).
 */
export function imageArchive(target: 'agent' | 'nginx' = 'agent'): string {
  if (target === 'agent' && process.env.STRATA_IMAGE_ARCHIVE) return process.env.STRATA_IMAGE_ARCHIVE;
  const out = execFileSync('bash', [IMAGE_SH, target], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20 * 60_000 });
  return out.trim().split('\n').pop() as string;
}

type Yaml = Record<string, unknown>;
const isMap = (v: unknown): v is Yaml => typeof v === 'object' && v !== null && !Array.isArray(v);
/** `over` laid on `base`, maps merged key by key, anything else replaced */
function merged(base: Yaml, over: Yaml): Yaml {
  const out: Yaml = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isMap(b) && isMap(v) ? merged(b, v) : v;
  }
  return out;
}

export interface AgentOverlay {
  /** laid over manifests/base/strata.yaml (maps merged key by key) */
  config: Yaml;
  /** the agent's /metrics, /healthz, /readyz port (hostNetwork: 9464 may be another agent's on this machine) */
  metricsPort: number;
  /** strategic-merge patches of the DaemonSet */
  merge?: Yaml[];
}

/**
 * A kustomize overlay of manifests/base for the sk8 node, written to `dir` (kubectl apply -k dir):
 * the ConfigMap's strata.yaml as the base's with `config` over it, the container port moved to the
 * metrics port (the probes follow it), and the API server's loopback address in the agent's env:
 * this node runs no kube-proxy, so the `kubernetes` Service's ClusterIP, which the kubelet puts in
 * KUBERNETES_SERVICE_HOST, is not routed (a container's own env wins over the kubelet's).
 */
export function writeAgentOverlay(dir: string, c: NodeCluster, o: AgentOverlay): void {
  const base = parse(readFileSync(join(MANIFESTS_BASE, 'strata.yaml'), 'utf8')) as Yaml;
  writeFileSync(join(dir, 'strata.yaml'), stringify(merged(base, o.config)));
  const env = (name: string, value: string) => ({ op: 'add', path: '/spec/template/spec/containers/0/env/-', value: { name, value } });
  writeFileSync(join(dir, 'patch.yaml'), stringify([
    { op: 'replace', path: '/spec/template/spec/containers/0/ports/0/containerPort', value: o.metricsPort },
    env('KUBERNETES_SERVICE_HOST', '127.0.0.1'),
    env('KUBERNETES_SERVICE_PORT', String(c.ports.apiserver)),
  ]));
  const merges = (o.merge ?? []).map((m, i) => {
    writeFileSync(join(dir, `merge-${i}.yaml`), stringify(m));
    return `merge-${i}.yaml`;
  });
  writeFileSync(join(dir, 'kustomization.yaml'), stringify({
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    // `bases:`: kustomize v2.0.3 (Debian's kubectl 1.20) takes only files in `resources:`
    bases: [relative(dir, MANIFESTS_BASE)],
    configMapGenerator: [{ name: 'strata', namespace: 'strata', behavior: 'replace', files: ['strata.yaml'] }],
    patchesJson6902: [{ target: { group: 'apps', version: 'v1', kind: 'DaemonSet', name: 'strata', namespace: 'strata' }, path: 'patch.yaml' }],
    ...(merges.length ? { patchesStrategicMerge: merges } : {}),
  }));
}

/** the agent's /metrics on the node (hostNetwork), '' while it does not answer */
export async function agentMetrics(port: number, host = '127.0.0.1'): Promise<string> {
  try {
    return await (await fetch(`http://${host}:${port}/metrics`)).text();
  } catch {
    return '';
  }
}

/** the host pid of a running container's init process (`ctr tasks ls` through the node's ctr) */
export async function containerPid(ctr: (args: string[]) => Promise<string>, containerId: string): Promise<number | undefined> {
  const out = await ctr(['tasks', 'list']);
  for (const line of out.split('\n').slice(1)) {
    const [id, pid, status] = line.trim().split(/\s+/);
    if (id === containerId && status === 'RUNNING') return Number(pid);
  }
  return undefined;
}

/** the node-side veth of the pod a process runs in: the peer of its netns's eth0 (IFLA_LINK, asked there) */
export function hostVethOf(pid: number): string {
  const [eth0] = JSON.parse(execFileSync('nsenter', ['-t', String(pid), '-n', 'ip', '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' })) as { link_index?: number }[];
  const links = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifindex: number; ifname: string }[];
  const veth = links.find((l) => l.ifindex === eth0?.link_index);
  if (!veth) throw new Error(`no node interface is the peer of pid ${pid}'s eth0 (link_index ${eth0?.link_index})`);
  return veth.ifname;
}

export interface BpfHeld {
  progs: number[];
  maps: number[];
}

/** the BPF program and map ids a process holds file descriptors to */
export function bpfHeldBy(pid: number): BpfHeld {
  const progs = new Set<number>();
  const maps = new Set<number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return { progs: [], maps: [] };
  }
  for (const fd of fds) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    // a program fd: prog_id; a link fd: link_id + prog_id; a map fd: map_id
    const p = /^prog_id:\s*(\d+)/m.exec(info);
    const m = /^map_id:\s*(\d+)/m.exec(info);
    if (p) progs.add(Number(p[1]));
    if (m && !p) maps.add(Number(m[1]));
  }
  return { progs: [...progs].sort((a, b) => a - b), maps: [...maps].sort((a, b) => a - b) };
}

export interface ProgInfo {
  id: number;
  name: string;
}

/** every loaded BPF program (bpftool) */
export function loadedProgs(): ProgInfo[] {
  const out = execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return (JSON.parse(out) as { id: number; name?: string }[]).map((p) => ({ id: p.id, name: p.name ?? '' }));
}

export function loadedMapIds(): Set<number> {
  const out = execFileSync('bpftool', ['-j', 'map', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return new Set((JSON.parse(out) as { id: number }[]).map((m) => m.id));
}

export interface TcFilter {
  dir: 'ingress' | 'egress';
  name: string;
  progId: number;
}

/** BPF TC filters on a host interface (node netns), both directions */
export function hostTcFilters(ifname: string): TcFilter[] {
  const out: TcFilter[] = [];
  for (const dir of ['ingress', 'egress'] as const) {
    let text: string;
    try {
      text = execFileSync('tc', ['filter', 'show', 'dev', ifname, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    } catch {
      continue;
    }
    // "filter protocol all pref 1 bpf chain 0 handle 0x1 tc_ingress:[24023] direct-action not_in_hw id 24023 tag ..."
    for (const m of text.matchAll(/ bpf .*?handle \S+ ([^\s:]+)\S* .*?\bid (\d+)/g)) out.push({ dir, name: m[1] as string, progId: Number(m[2]) });
  }
  return out;
}

/** Linux capability numbers (include/uapi/linux/capability.h) */
export const CAP_BITS: Record<string, number> = {
  CHOWN: 0, DAC_OVERRIDE: 1, DAC_READ_SEARCH: 2, FOWNER: 3, FSETID: 4, KILL: 5, SETGID: 6, SETUID: 7, SETPCAP: 8,
  LINUX_IMMUTABLE: 9, NET_BIND_SERVICE: 10, NET_BROADCAST: 11, NET_ADMIN: 12, NET_RAW: 13, IPC_LOCK: 14, IPC_OWNER: 15,
  SYS_MODULE: 16, SYS_RAWIO: 17, SYS_CHROOT: 18, SYS_PTRACE: 19, SYS_PACCT: 20, SYS_ADMIN: 21, SYS_BOOT: 22, SYS_NICE: 23,
  SYS_RESOURCE: 24, SYS_TIME: 25, SYS_TTY_CONFIG: 26, MKNOD: 27, LEASE: 28, AUDIT_WRITE: 29, AUDIT_CONTROL: 30, SETFCAP: 31,
  MAC_OVERRIDE: 32, MAC_ADMIN: 33, SYSLOG: 34, WAKE_ALARM: 35, BLOCK_SUSPEND: 36, AUDIT_READ: 37, PERFMON: 38, BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

export const capMask = (caps: string[]): bigint => caps.reduce((m, c) => {
  const bit = CAP_BITS[c];
  if (bit === undefined) throw new Error(`unknown capability ${c}`);
  return m | (1n << BigInt(bit));
}, 0n);

/** names of the capabilities in a mask */
export const capNames = (mask: bigint): string[] => Object.entries(CAP_BITS).filter(([, b]) => (mask >> BigInt(b)) & 1n).map(([n]) => n);

/** CapEff, CapPrm, CapBnd of a process */
export function procCaps(pid: number): { eff: bigint; prm: bigint; bnd: bigint } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string) => BigInt(`0x${new RegExp(`^${k}:\\s*([0-9a-f]+)`, 'm').exec(status)?.[1] ?? '0'}`);
  return { eff: get('CapEff'), prm: get('CapPrm'), bnd: get('CapBnd') };
}

/** mount options of the process's root (/proc/<pid>/mountinfo, its own mount namespace) */
export function rootMountOptions(pid: number): string[] {
  for (const line of readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f[4] === '/') return (f[5] ?? '').split(',');
  }
  return [];
}
