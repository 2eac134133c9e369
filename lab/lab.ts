// A one-node Kubernetes-like data plane in network namespaces (design.md section 5):
// node netns with bridge br0, an external client, an nginx ingress pod and an app pod.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ClientResult } from './client.ts';
import { type Detached, inNetns, spawnDetached, waitFor } from './exec.ts';
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
} from './netns.ts';
import { readProcRecords, recordProc, startTime, terminate } from './procs.ts';

export { inNetns } from './exec.ts';
export type { ClientResult } from './client.ts';

const LAB_DIR = dirname(fileURLToPath(import.meta.url));
const GATEWAY = '10.244.1.1';
const IPS = { client: '10.244.1.100', ingress: '10.244.1.10', app: '10.244.1.20' } as const;
const APP_PORT = 8080;
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
  pids: number[];
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
  containers: { name: string; pid: number }[];
  labels: Record<string, string>;
}

export interface LabOptions {
  prefix?: string;
  stateDir?: string;
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
    return await build(prefix, stateDir);
  } catch (e) {
    await labDown(prefix, { stateDir }).catch(() => {});
    throw e;
  }
}

async function build(prefix: string, stateDir: string): Promise<Lab> {
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

  const appUrl = `http://${IPS.app}:${APP_PORT}`;
  const nginxUrl = `http://${IPS.ingress}`;
  const clientNetns = ns.client;
  const startIn = (name: string, netns: string, cmd: string, args: string[]): Detached => {
    const d = spawnDetached(netns, cmd, args, join(logs, `${name}.log`));
    recordProc(stateDir, { name, pid: d.pid, starttime: startTime(d.pid), netns });
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

  const app = startIn('frontend', ns.app, process.execPath, [join(LAB_DIR, 'apps', 'frontend.ts')]);
  await waitReady('frontend', app, `${appUrl}/healthz`, join(logs, 'frontend.log'));

  const nginxFiles = writeNginxConfig(stateDir, `${IPS.app}:${APP_PORT}`);
  const nginx = startIn('nginx', ns.ingress, NGINX_BIN, nginxArgs(nginxFiles));
  await waitReady('nginx', nginx, `${nginxUrl}/healthz`, nginxFiles.errorLog);

  const pod = (name: string, namespace: string, k: 'ingress' | 'app', pid: number): LabPod => ({
    name,
    namespace,
    uid: randomUUID(),
    netns: ns[k],
    netnsPath: netnsPath(ns[k]),
    netnsInode: netnsInode(ns[k]),
    ip: IPS[k],
    hostVeth: veth[k],
    pids: [pid],
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
      ingress: pod('ingress-nginx', 'ingress-nginx', 'ingress', nginx.pid),
      app: pod('frontend', 'default', 'app', app.pid),
    },
    nginxUrl,
    appUrl,
    podsFile: join(stateDir, 'pods.json'),
  };
  writeAtomic(lab.podsFile, podRecords(lab));
  writeAtomic(join(stateDir, 'lab.json'), lab);
  return lab;
}

function podRecords(lab: Lab): PodRecord[] {
  const rec = (p: LabPod, container: string, labels: Record<string, string>): PodRecord => ({
    name: p.name,
    namespace: p.namespace,
    uid: p.uid,
    node: lab.nodeName,
    ip: p.ip,
    netns: p.netnsPath,
    netnsInode: p.netnsInode,
    hostVeth: p.hostVeth,
    containers: p.pids.map((pid) => ({ name: container, pid })),
    labels,
  });
  return [
    rec(lab.pods.ingress, 'controller', {
      'app.kubernetes.io/name': 'ingress-nginx',
      'app.kubernetes.io/component': 'controller',
    }),
    rec(lab.pods.app, 'frontend', { app: 'frontend' }),
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
  const inNamespaces = (await Promise.all(namespaces.map(netnsPids))).flat().map((pid) => ({ pid }));
  const survivors = await terminate([...readProcRecords(stateDir), ...inNamespaces]);
  const errors: string[] = survivors.length ? [`processes survived SIGKILL: ${survivors.join(' ')}`] : [];
  for (const name of namespaces) {
    await deleteNetns(name).catch((e: Error) => errors.push(e.message));
  }
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
export async function runClient(lab: Lab, o: ClientOptions): Promise<ClientResult[]> {
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
  lab: Lab,
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

async function httpStatus(netns: string, url: string): Promise<number> {
  const out = await inNetns(netns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', url]);
  return Number(out);
}

function writeAtomic(file: string, value: unknown): void {
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
