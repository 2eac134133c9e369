// A one-node Kubernetes-like data plane in network namespaces (design.md section 5):
// node netns with bridge br0, an external client, an nginx ingress pod and an app pod.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { containerCgroup, inCgroup, labCgroupPids, makeCgroup, newContainerId, removeCgroupDir, removeLabCgroups } from './cgroups.ts';
import type { ClientResult } from './client.ts';
import { type Detached, inNetns, spawnDetachedCmd, waitFor } from './exec.ts';
import { NGINX_BIN, nginxArgs, writeNginxConfig } from './nginx.ts';
import {
  addBridge,
  addNetns,
  BRIDGE,
  addPodLink,
  deleteNetns,
  listLabNetns,
  netnsInode,
  netnsPath,
  netnsPids,
  pidsInNetns,
} from './netns.ts';
import type { PipelineResponse } from './pipeline.ts';
import { readProcRecords, recordProc, startTime, terminate } from './procs.ts';
import type { RawRequest, RawResult } from './raw.ts';

export { inNetns } from './exec.ts';
export type { ClientResult } from './client.ts';
export type { PipelineResponse } from './pipeline.ts';

const LAB_DIR = dirname(fileURLToPath(import.meta.url));
const GATEWAY = '10.244.1.1';
const IPS = { client: '10.244.1.100', ingress: '10.244.1.10', app: '10.244.1.20' } as const;
const APP_PORT = 8080;
/** The app pod's second server: HTTP/1.0, close-delimited bodies (lab/apps/raw10.ts). */
const RAW10_PORT = 8081;
/** ClusterIP of the frontend Service; DNAT to the app pod happens in the ingress pod netns. */
const SERVICE_IP = '10.96.0.10';
const SERVICE_PORT = 80;
export const NFT_BIN = '/usr/sbin/nft';
/** nftables table holding the kube-proxy-style Service DNAT in the ingress netns. */
export const SERVICE_NFT_TABLE = 'strata_svc';
const READY_TIMEOUT_MS = 15_000;

export const DEFAULT_PREFIX = 'strata';
export const defaultStateDir = (prefix: string): string => `/run/strata-lab/${prefix}`;

export interface LabPod {
  name: string;
  namespace: string;
  uid: string;
  /** netns name; the path is netnsPath. */
  netns: string;
  netnsPath: string;
  netnsInode: number;
  ip: string;
  hostVeth: string;
  /** Every container process of the pod (the same pids as `containers`). */
  pids: number[];
  /** id: the container ID its kubelet-style cgroup is named after (kubepods/besteffort/pod<uid>/<id>) */
  containers: LabContainer[];
}

export interface LabContainer {
  name: string;
  pid: number;
  id: string;
  /** its cgroup path (the same in each hierarchy) and cgroup v2 id */
  cgroup: string;
  cgroupId: number;
}

export interface Lab {
  prefix: string;
  stateDir: string;
  nodeName: string;
  nodeNetns: string;
  bridge: string;
  clientNetns: string;
  clientIp: string;
  clientVeth: string;
  pods: { ingress: LabPod; app: LabPod };
  nginxUrl: string;
  appUrl: string;
  /** The HTTP/1.0 close-delimited server in the app pod (nginx proxies /h10/ to it). */
  raw10Url: string;
  /** ClusterIP of the frontend Service (nginx proxies /svc/ to serviceUrl). */
  serviceIp: string;
  /** `http://<serviceIp>:80`: reachable from the ingress pod only (the DNAT rule lives there). */
  serviceUrl: string;
  podsFile: string;
}

/** One entry of pods.json: what the agent's file-based discovery reads instead of the API server. */
export interface PodRecord {
  name: string;
  namespace: string;
  uid: string;
  node: string;
  ip: string;
  netns: string;
  netnsInode: number;
  hostVeth: string;
  containers: { name: string; pid: number; id: string }[];
  labels: Record<string, string>;
}

export interface LabOptions {
  prefix?: string;
  stateDir?: string;
  /** the pods' UIDs (their kubelet-style cgroups are named after them): an API server's, when the pods are its objects */
  podUids?: { ingress?: string; app?: string };
}

/** Interface names are `v?-<prefix>` and must fit IFNAMSIZ (15); no '-' so prefixes never nest. */
export function checkPrefix(prefix: string): void {
  if (!/^[a-z][a-z0-9]{0,11}$/.test(prefix)) {
    throw new Error(`bad lab prefix ${JSON.stringify(prefix)}: want [a-z][a-z0-9]{0,11}`);
  }
}

export async function labUp(opts: LabOptions = {}): Promise<Lab> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  checkPrefix(prefix);
  const stateDir = opts.stateDir ?? defaultStateDir(prefix);
  await labDown(prefix, { stateDir });
  try {
    return await build(prefix, stateDir, opts.podUids ?? {});
  } catch (e) {
    await labDown(prefix, { stateDir }).catch(() => {});
    throw e;
  }
}

async function build(prefix: string, stateDir: string, podUids: LabOptions['podUids'] & object): Promise<Lab> {
  const logs = join(stateDir, 'logs');
  mkdirSync(logs, { recursive: true });
  const nodeNetns = `${prefix}-node1`;
  const ns = { client: `${prefix}-client`, ingress: `${prefix}-ingress`, app: `${prefix}-app` };
  const veth = { client: `vc-${prefix}`, ingress: `vi-${prefix}`, app: `va-${prefix}` };

  await addNetns(nodeNetns);
  await addBridge(nodeNetns, `${GATEWAY}/24`);
  for (const k of ['client', 'ingress', 'app'] as const) {
    await addNetns(ns[k]);
    await addPodLink({ nodeNs: nodeNetns, podNs: ns[k], hostVeth: veth[k], cidr: `${IPS[k]}/24`, gateway: GATEWAY });
  }

  // kube-proxy style: a nat/output DNAT in the ingress pod rewrites connections to the Service
  // IP before routing, so the veths carry the pod IP while nginx's socket keeps the Service IP.
  await inNetns(ns.ingress, NFT_BIN, ['-f', '-'], { input: serviceNftRules(`${IPS.app}:${APP_PORT}`) }).catch(
    (e: Error) => {
      throw new Error(`installing the Service DNAT in ${ns.ingress} (nftables; scripts/setup.sh installs it): ${e.message}`);
    },
  );

  const appUrl = `http://${IPS.app}:${APP_PORT}`;
  const raw10Url = `http://${IPS.app}:${RAW10_PORT}`;
  const nginxUrl = `http://${IPS.ingress}`;
  const clientNetns = ns.client;
  const uids = { ingress: podUids.ingress ?? randomUUID(), app: podUids.app ?? randomUUID() };
  const containers: Record<string, LabContainer> = {};
  // each process a container of its pod: born in kubepods/besteffort/pod<uid>/<container id>
  const startIn = (name: string, netns: string, cmd: string, args: string[], podUid: string): Detached => {
    const id = newContainerId();
    const cgroup = containerCgroup(prefix, podUid, id);
    const cgroupId = makeCgroup(cgroup);
    const [c, a] = inCgroup(cgroup, 'ip', ['netns', 'exec', netns, cmd, ...args]);
    const d = spawnDetachedCmd(c, a, join(logs, `${name}.log`));
    recordProc(stateDir, { name, pid: d.pid, starttime: startTime(d.pid), netns });
    containers[name] = { name, pid: d.pid, id, cgroup, cgroupId };
    return d;
  };
  // Readiness is checked along the real path: from the client netns, across the bridge.
  const waitReady = (what: string, d: Detached, url: string, logFile: string) =>
    waitFor(`${what} to answer ${url} from ${clientNetns}`, async () => (await httpStatus(clientNetns, url)) === 200, {
      timeoutMs: READY_TIMEOUT_MS,
      abort: () => {
        const st = d.exited();
        return st && `${what} exited (code ${st.code}, signal ${st.signal}); log:\n${tail(logFile)}`;
      },
    });

  const app = startIn('frontend', ns.app, process.execPath, [join(LAB_DIR, 'apps', 'frontend.ts')], uids.app);
  const raw10 = startIn('raw10', ns.app, process.execPath, [join(LAB_DIR, 'apps', 'raw10.ts')], uids.app);
  await Promise.all([
    waitReady('frontend', app, `${appUrl}/healthz`, join(logs, 'frontend.log')),
    waitReady('raw10', raw10, `${raw10Url}/healthz`, join(logs, 'raw10.log')),
  ]);

  const nginxFiles = writeNginxConfig(stateDir, `${IPS.app}:${APP_PORT}`, {
    service: `${SERVICE_IP}:${SERVICE_PORT}`,
    http10: `${IPS.app}:${RAW10_PORT}`,
  });
  const nginx = startIn('nginx', ns.ingress, NGINX_BIN, nginxArgs(nginxFiles), uids.ingress);
  await waitReady('nginx', nginx, `${nginxUrl}/healthz`, nginxFiles.errorLog);
  // The other upstreams, through nginx: the Service IP (DNAT) and the HTTP/1.0 server.
  await Promise.all([
    waitReady('nginx /svc/ (Service DNAT)', nginx, `${nginxUrl}/svc/healthz`, nginxFiles.errorLog),
    waitReady('nginx /h10/', nginx, `${nginxUrl}/h10/healthz`, nginxFiles.errorLog),
  ]);

  const pod = (name: string, namespace: string, k: 'ingress' | 'app', cs: LabContainer[]): LabPod => ({
    name,
    namespace,
    uid: uids[k],
    netns: ns[k],
    netnsPath: netnsPath(ns[k]),
    netnsInode: netnsInode(ns[k]),
    ip: IPS[k],
    hostVeth: veth[k],
    pids: cs.map((c) => c.pid),
    containers: cs,
  });
  const lab: Lab = {
    prefix,
    stateDir,
    nodeName: nodeNetns,
    nodeNetns,
    bridge: BRIDGE,
    clientNetns,
    clientIp: IPS.client,
    clientVeth: veth.client,
    pods: {
      ingress: pod('ingress-nginx', 'ingress-nginx', 'ingress', [{ ...(containers.nginx as LabContainer), name: 'controller' }]),
      app: pod('frontend', 'default', 'app', [containers.frontend as LabContainer, containers.raw10 as LabContainer]),
    },
    nginxUrl,
    appUrl,
    raw10Url,
    serviceIp: SERVICE_IP,
    serviceUrl: `http://${SERVICE_IP}:${SERVICE_PORT}`,
    podsFile: join(stateDir, 'pods.json'),
  };
  writeAtomic(lab.podsFile, podRecords(lab));
  writeAtomic(join(stateDir, 'lab.json'), lab);
  return lab;
}

function podRecords(lab: Lab): PodRecord[] {
  const rec = (p: LabPod, labels: Record<string, string>): PodRecord => ({
    name: p.name,
    namespace: p.namespace,
    uid: p.uid,
    node: lab.nodeName,
    ip: p.ip,
    netns: p.netnsPath,
    netnsInode: p.netnsInode,
    hostVeth: p.hostVeth,
    containers: p.containers.map((c) => ({ name: c.name, pid: c.pid, id: c.id })),
    labels,
  });
  return [
    rec(lab.pods.ingress, {
      'app.kubernetes.io/name': 'ingress-nginx',
      'app.kubernetes.io/component': 'controller',
    }),
    rec(lab.pods.app, { app: 'frontend' }),
  ];
}

/**
 * Tears down everything a lab with this prefix may have left: recorded processes, any process
 * still inside a `<prefix>-*` netns, the namespaces, the state dir. Uses only the prefix and
 * the state dir, so it works after a partial labUp or a crash. Already-gone parts are fine.
 */
export async function labDown(prefix: string, opts: { stateDir?: string } = {}): Promise<void> {
  checkPrefix(prefix);
  const stateDir = opts.stateDir ?? defaultStateDir(prefix);
  const namespaces = listLabNetns(prefix);
  const inNamespaces = pidsInNetns(namespaces).map((pid) => ({ pid }));
  const inCgroups = labCgroupPids(prefix).map((pid) => ({ pid }));
  const survivors = await terminate([...readProcRecords(stateDir), ...inNamespaces, ...inCgroups]);
  const errors: string[] = survivors.length ? [`processes survived SIGKILL: ${survivors.join(' ')}`] : [];
  await Promise.all(namespaces.map((name) => deleteNetns(name).catch((e: Error) => errors.push(e.message))));
  // a cgroup is removable once its last process is reaped: retried briefly
  await waitFor('the lab cgroups removed', () => {
    removeLabCgroups(prefix);
    return true;
  }, { timeoutMs: 5000, intervalMs: 50 }).catch((e: Error) => errors.push(e.message));
  rmSync(stateDir, { recursive: true, force: true });
  if (errors.length) throw new Error(`labDown ${prefix}: ${errors.join('; ')}`);
}

/** The Lab written by labUp, or undefined if that lab is not up. */
export function loadLab(prefix: string, opts: { stateDir?: string } = {}): Lab | undefined {
  try {
    return JSON.parse(readFileSync(join(opts.stateDir ?? defaultStateDir(prefix), 'lab.json'), 'utf8')) as Lab;
  } catch {
    return undefined;
  }
}

export interface ClientOptions {
  paths: string[];
  /** Defaults to the ingress (lab.nginxUrl). */
  url?: string;
  concurrency?: number;
  keepalive?: boolean;
  headers?: Record<string, string>;
  /** Headers per request: an array aligned with paths, or an object keyed by path. */
  perPathHeaders?: Record<string, string>[] | Record<string, Record<string, string>>;
  timeoutMs?: number;
}

/** Runs lab/client.ts in the client netns and returns its results, in the order of paths. */
export async function runClient(lab: Pick<Lab, 'stateDir' | 'clientNetns' | 'nginxUrl'>, o: ClientOptions): Promise<ClientResult[]> {
  const args = [
    join(LAB_DIR, 'client.ts'),
    '--url',
    o.url ?? lab.nginxUrl,
    '--paths',
    o.paths.join(','),
    '--concurrency',
    String(o.concurrency ?? 1),
  ];
  if (o.keepalive) args.push('--keepalive');
  for (const [k, v] of Object.entries(o.headers ?? {})) args.push('--header', `${k}: ${v}`);
  let headerFile: string | undefined;
  if (o.perPathHeaders) {
    headerFile = join(lab.stateDir, `client-headers-${randomUUID()}.json`);
    writeFileSync(headerFile, JSON.stringify(o.perPathHeaders));
    args.push('--per-path-header-file', headerFile);
  }
  try {
    const out = await inNetns(lab.clientNetns, process.execPath, args, { timeoutMs: o.timeoutMs ?? 120_000 });
    return JSON.parse(out) as ClientResult[];
  } finally {
    if (headerFile) rmSync(headerFile, { force: true });
  }
}

/** curl from the client netns. Non-2xx statuses resolve; connection failures reject. */
export async function curlFromClient(
  lab: Pick<Lab, 'clientNetns'>,
  url: string,
  extraArgs: string[] = [],
): Promise<{ status: number; body: string }> {
  const out = await inNetns(lab.clientNetns, 'curl', [
    '-sS',
    '--max-time',
    '10',
    '-w',
    '\n%{http_code}',
    ...extraArgs,
    url,
  ]);
  const nl = out.lastIndexOf('\n');
  return { status: Number(out.slice(nl + 1)), body: out.slice(0, nl) };
}

/** The ruleset for the ingress netns: `ip daddr <serviceIp> tcp dport 80 dnat to <target>`. */
function serviceNftRules(target: string): string {
  return `table ip ${SERVICE_NFT_TABLE} {
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr ${SERVICE_IP} tcp dport ${SERVICE_PORT} dnat to ${target}
  }
}
`;
}

/**
 * HTTP/1.1 pipelining from the client netns (lab/pipeline.ts): ONE connection, every
 * `GET <path>` written back to back in one write (the last with `Connection: close`), the
 * responses split by their framing. Resolves with the responses in the order they arrived;
 * `path` is the path each response says it answered (the app's JSON body carries it).
 * `url` is an origin such as lab.nginxUrl.
 */
export async function pipelineFromClient(
  lab: Lab,
  url: string,
  paths: string[],
  opts: { timeoutMs?: number } = {},
): Promise<PipelineResponse[]> {
  const u = new URL(url);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const args = [join(LAB_DIR, 'pipeline.ts'), '--host', u.hostname, '--port', u.port || '80'];
  args.push('--timeout-ms', String(timeoutMs));
  for (const p of paths) args.push('--path', p);
  const out = await inNetns(lab.clientNetns, process.execPath, args, { timeoutMs: timeoutMs + 10_000 });
  return JSON.parse(out) as PipelineResponse[];
}

export interface RawOptions {
  /** Pause between writes (traffic shaping: the peer sees the request arrive in pieces). */
  delayMs?: number;
  /** Half-close (FIN) the sending side after the last chunk. */
  half?: boolean;
  /** Stop reading after this long if the server has not closed; default 5000. */
  timeoutMs?: number;
}

/**
 * Raw TCP from the client netns (lab/raw.ts): connects to host:port, sends each chunk as its
 * own write, and resolves with every byte received until the server closes, resets, or
 * opts.timeoutMs passes (what arrived by then). Rejects only when it cannot connect.
 */
export async function rawFromClient(
  lab: Lab,
  host: string,
  port: number,
  chunks: (string | Buffer)[],
  opts: RawOptions = {},
): Promise<Buffer> {
  return (await rawExchangeFromClient(lab, host, port, chunks, opts)).data;
}

/** rawFromClient, also telling how the exchange ended. */
export async function rawExchangeFromClient(
  lab: Lab,
  host: string,
  port: number,
  chunks: (string | Buffer)[],
  opts: RawOptions = {},
): Promise<{ data: Buffer; closed: boolean; reset: boolean; timedOut: boolean }> {
  const req: RawRequest = {
    host,
    port,
    chunks: chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c).toString('base64')),
    delayMs: opts.delayMs,
    half: opts.half,
    timeoutMs: opts.timeoutMs ?? 5000,
  };
  const budget = (req.timeoutMs ?? 5000) + (opts.delayMs ?? 0) * chunks.length + 10_000;
  const out = await inNetns(lab.clientNetns, process.execPath, [join(LAB_DIR, 'raw.ts')], {
    input: JSON.stringify(req),
    timeoutMs: budget,
  });
  const r = JSON.parse(out) as RawResult;
  return { data: Buffer.from(r.received, 'base64'), closed: r.closed, reset: r.reset, timedOut: r.timedOut };
}

/** The HTTP status of a GET from inside a netns (curl, 1 s); 0 when nothing answered. */
export async function httpStatus(netns: string, url: string): Promise<number> {
  const out = await inNetns(netns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', url]);
  return Number(out);
}

/** JSON written to a temp file and renamed over `file` (readers never see half of it) */
export function writeAtomic(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

function tail(file: string, bytes = 2000): string {
  try {
    return readFileSync(file, 'utf8').slice(-bytes);
  } catch {
    return '(no log)';
  }
}

export interface ExtraPodSpec {
  /** also its netns name (<prefix>-<name>); [a-z0-9]+ */
  name: string;
  namespace?: string;
  /** one letter, unique in the lab: the host veth is v<letter>-<prefix> (c, i, a are taken) */
  vethLetter: string;
  /** last octet of its IP on the node's bridge (10.244.1.<n>): 10, 20, 100 are taken */
  ipOctet: number;
  /** its containers: the lab's frontend app on a port, with an environment */
  containers: { name: string; port?: number; env?: Record<string, string> }[];
  /** called right before the veth pair is created (tests time what follows from there) */
  beforeLink?: () => void;
}

/**
 * A pod added to a running lab as the kubelet and the CNI would: its netns, a veth pair on the
 * node's bridge (the host side appears in the node's netns), then each container's process in its
 * kubelet-style cgroup. Resolves once every container answers on its port from the client netns.
 */
export async function addLabPod(lab: Lab, spec: ExtraPodSpec): Promise<LabPod> {
  if (!/^[a-z0-9]+$/.test(spec.name) || !/^[d-z]$/.test(spec.vethLetter)) throw new Error(`bad extra pod ${spec.name}/${spec.vethLetter}`);
  const netns = `${lab.prefix}-${spec.name}`;
  const hostVeth = `v${spec.vethLetter}-${lab.prefix}`;
  const ip = `10.244.1.${spec.ipOctet}`;
  const uid = randomUUID();
  await addNetns(netns);
  spec.beforeLink?.();
  await addPodLink({ nodeNs: lab.nodeNetns, podNs: netns, hostVeth, cidr: `${ip}/24`, gateway: GATEWAY });
  const logs = join(lab.stateDir, 'logs');
  mkdirSync(logs, { recursive: true });
  const containers: LabContainer[] = [];
  for (const c of spec.containers) {
    const id = newContainerId();
    const cgroup = containerCgroup(lab.prefix, uid, id);
    const cgroupId = makeCgroup(cgroup);
    const env = Object.entries({ SERVICE_NAME: c.name, PORT: String(c.port ?? APP_PORT), ...c.env }).map(([k, v]) => `${k}=${v}`);
    const [cmd, args] = inCgroup(cgroup, 'ip', ['netns', 'exec', netns, 'env', ...env, process.execPath, join(LAB_DIR, 'apps', 'frontend.ts')]);
    const d = spawnDetachedCmd(cmd, args, join(logs, `${spec.name}-${c.name}.log`));
    recordProc(lab.stateDir, { name: `${spec.name}-${c.name}`, pid: d.pid, starttime: startTime(d.pid), netns });
    containers.push({ name: c.name, pid: d.pid, id, cgroup, cgroupId });
    const url = `http://${ip}:${c.port ?? APP_PORT}/healthz`;
    await waitFor(`${spec.name}/${c.name} to answer ${url}`, async () => (await httpStatus(lab.clientNetns, url)) === 200, {
      timeoutMs: READY_TIMEOUT_MS,
      abort: () => {
        const st = d.exited();
        return st && `exited (code ${st.code}, signal ${st.signal})`;
      },
    });
  }
  return {
    name: spec.name, namespace: spec.namespace ?? 'default', uid, netns, netnsPath: netnsPath(netns), netnsInode: netnsInode(netns), ip, hostVeth,
    pids: containers.map((c) => c.pid), containers,
  };
}

/** Deletes a pod added by addLabPod: its processes, then its netns (the veth pair goes with it), then its cgroups. */
export async function removeLabPod(lab: Lab, pod: LabPod): Promise<void> {
  const survivors = await terminate([...pod.containers.map((c) => ({ pid: c.pid })), ...(await netnsPids(pod.netns)).map((pid) => ({ pid }))]);
  if (survivors.length) throw new Error(`pod ${pod.name}: processes survived SIGKILL: ${survivors.join(' ')}`);
  await deleteNetns(pod.netns);
  const parent = pod.containers[0]?.cgroup.replace(/\/[^/]+$/, '');
  await waitFor(`pod ${pod.name}'s cgroups removed`, () => {
    for (const c of pod.containers) removeCgroupDir(c.cgroup);
    if (parent) removeCgroupDir(parent);
    return true;
  }, { timeoutMs: 5000, intervalMs: 20 });
}
