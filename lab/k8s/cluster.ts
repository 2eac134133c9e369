// A real single-node Kubernetes on this machine, from the binaries scripts/k8s-build.sh builds out
// of Debian's `kubernetes` source package (../shared/platform.md, "A real Kubernetes API server"
// and "A real Kubernetes node"):
//   startApiServer(): etcd + kube-apiserver on loopback (CA, token auth, Node+RBAC, service-account
//     keys); kubeconfigs for the admin and for named identities; restart and etcd compaction.
//   startNode(): the same plus kube-controller-manager, kube-scheduler, containerd (run directly,
//     the CRI config that works here), kubelet, the CNI bridge + host-local, a node IP on a bridge.
// Everything machine-global is named sk8*: a slot n (0-9) gives ports 27400+10n.. (below the ephemeral range
// 32768-60999, so that no outgoing connection holds one), the bridges
// sk8n<n> (node IP) and sk8c<n> (CNI), the cgroup root /sk8-<n>, the state dir /var/lib/sk8/slot<n>.
// stop() (or `node lab/k8s/cli.ts down`, or the next start after a crash) kills every process,
// removes containers through containerd, unmounts, deletes links, cgroups and the state, and puts
// back every sysctl and host path the kubelet, containerd and the CNI plugins changed (host.ts).
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { run, waitFor } from '../exec.ts';
import { isAlive, readProcRecords, recordProc, startTime, terminate } from '../procs.ts';
import {
  cgroupDirs, cgroupHierarchies, cgroupPids, loadSnapshot, removeCgroupTree, removeTree, restoreHost, saveSnapshot, shareMounts, snapshotHost, unmountUnder,
} from './host.ts';
import { makePki, type Pki } from './pki.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const STATE_ROOT = '/var/lib/sk8';
const LOCK_DIR = '/run/sk8';
export const SLOTS = 10;
const PORT_BASE = 27400;
const ENV_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** the sandbox image k8s-build.sh makes (docker-archive images/pause.tar in its cache dir) */
export const PAUSE_IMAGE = 'sk8.local/pause:3.4.1';

// ---- the binaries ----

/** scripts/k8s-build.sh's cache dir when it is complete (no build), else undefined */
export function k8sBinDir(): string | undefined {
  try {
    const out = execFileSync('bash', [join(ROOT, 'scripts/k8s-build.sh'), '--dir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 30_000 });
    const dir = out.trim().split('\n').pop();
    return dir && existsSync(join(dir, '.complete')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

const DEBIAN_KUBECTL_CACHE = '/var/cache/strata/kubernetes-client/usr/bin/kubectl';

/** Debian's kubectl 1.20 (kubernetes-client): unpacked by scripts/setup.sh, or /usr/bin/kubectl when Debian's */
export function debianKubectl(): string | undefined {
  if (process.env.STRATA_KUBECTL) return process.env.STRATA_KUBECTL;
  if (existsSync(DEBIAN_KUBECTL_CACHE)) return DEBIAN_KUBECTL_CACHE;
  try {
    const owner = execFileSync('dpkg-query', ['-S', '/usr/bin/kubectl'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    if (owner.startsWith('kubernetes-client:')) return '/usr/bin/kubectl';
  } catch {
    // not a Debian file
  }
  return undefined;
}

/** what is missing on this machine for startApiServer / startNode (undefined = nothing) */
export function missingForCluster(kind: 'apiserver' | 'node'): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  const bin = k8sBinDir();
  if (!bin) return 'the cluster binaries are not built (bash scripts/k8s-build.sh; scripts/setup.sh runs it)';
  for (const b of ['/usr/bin/etcd', '/usr/bin/openssl']) if (!existsSync(b)) return `needs ${b} (apt etcd-server, openssl)`;
  if (kind === 'node') {
    for (const b of ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/containerd-shim-runc-v2', '/usr/sbin/runc', '/usr/lib/cni/bridge', '/usr/lib/cni/host-local']) {
      if (!existsSync(b)) return `needs ${b} (apt containerd runc containernetworking-plugins; scripts/k8s-build.sh installs them)`;
    }
    if (!existsSync(join(bin, 'images/pause.tar'))) return `no pause image in ${bin}/images (rerun scripts/k8s-build.sh)`;
  }
  return undefined;
}

// ---- slots: ports, names, locks ----

export interface Ports {
  apiserver: number;
  etcdClient: number;
  etcdPeer: number;
  kubelet: number;
  kubeletHealthz: number;
  /** free for the caller (an agent's metrics port, a receiver) */
  spare: number[];
}

export const portsOf = (slot: number): Ports => {
  const b = PORT_BASE + slot * 10;
  return { apiserver: b, etcdClient: b + 1, etcdPeer: b + 2, kubelet: b + 3, kubeletHealthz: b + 4, spare: [b + 5, b + 6, b + 7, b + 8, b + 9] };
};

export interface NetPlan {
  nodeBridge: string;
  nodeIP: string;
  nodeCidr: string;
  cniBridge: string;
  podSubnet: string;
  podGateway: string;
  serviceRange: string;
  firstServiceIP: string;
}

export const netOf = (slot: number): NetPlan => ({
  nodeBridge: `sk8n${slot}`,
  nodeIP: `10.236.${2 * slot + 1}.1`,
  nodeCidr: `10.236.${2 * slot + 1}.1/24`,
  cniBridge: `sk8c${slot}`,
  podSubnet: `10.236.${2 * slot}.0/24`,
  podGateway: `10.236.${2 * slot}.1`,
  serviceRange: `10.236.${100 + slot}.0/24`,
  firstServiceIP: `10.236.${100 + slot}.1`,
});

const stateDirOf = (slot: number) => join(STATE_ROOT, `slot${slot}`);
const etcdDirOf = (slot: number) => `/dev/shm/sk8-slot${slot}-etcd`;
const cgroupRootOf = (slot: number) => `sk8-${slot}`;
const slotLock = (slot: number) => join(LOCK_DIR, `slot${slot}.json`);
const NODE_LOCK = join(LOCK_DIR, 'node.json');

interface LockRecord {
  /** the process the cluster lives and dies with; 0 = started by the CLI, only `down` removes it */
  pid: number;
  starttime: number;
  slot: number;
}

function readLock(file: string): LockRecord | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LockRecord;
  } catch {
    return undefined;
  }
}

const lockOwnerAlive = (l: LockRecord) => l.pid === 0 || isAlive(l.pid, l.starttime);

function tryLock(file: string, rec: LockRecord): boolean {
  mkdirSync(LOCK_DIR, { recursive: true });
  try {
    writeFileSync(file, JSON.stringify(rec), { flag: 'wx' });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return false;
  }
}

function owner(persistent: boolean, slot: number): LockRecord {
  return persistent ? { pid: 0, starttime: 0, slot } : { pid: process.pid, starttime: startTime(process.pid), slot };
}

/** tears down every slot whose owner process is gone (a test that crashed or was killed) */
export async function sweepStale(log: (s: string) => void = () => {}): Promise<void> {
  for (let slot = 0; slot < SLOTS; slot++) {
    const l = readLock(slotLock(slot));
    const orphanState = !l && existsSync(stateDirOf(slot));
    if ((l && !lockOwnerAlive(l)) || orphanState) {
      log(`sk8 slot ${slot}: owner ${l ? `pid ${l.pid}` : '(none)'} is gone: tearing it down`);
      const problems = await down(slot, { owner: l });
      if (problems.length) log(`sk8 slot ${slot}: ${problems.join('; ')}`);
    }
  }
  const n = readLock(NODE_LOCK);
  if (n && !lockOwnerAlive(n) && !existsSync(slotLock(n.slot))) rmSync(NODE_LOCK, { force: true });
}

async function takeSlot(persistent: boolean, want?: number): Promise<LockRecord> {
  for (let slot = 0; slot < SLOTS; slot++) {
    if (want !== undefined && slot !== want) continue;
    const rec = owner(persistent, slot);
    if (tryLock(slotLock(slot), rec)) {
      if (!persistent) startReaper(rec);
      return rec;
    }
  }
  throw new Error(want === undefined ? `all ${SLOTS} sk8 slots are taken (${LOCK_DIR})` : `sk8 slot ${want} is taken (${slotLock(want)})`);
}

/**
 * A detached watchdog (`cli.ts reap`) for a test's slot: when the owner dies without stop() (a
 * killed test runner, a timeout), it tears the slot down, host restore included.
 */
function startReaper(rec: LockRecord): void {
  const child = spawn(process.execPath, [join(ROOT, 'lab/k8s/cli.ts'), 'reap', '--slot', String(rec.slot), '--pid', String(rec.pid), '--starttime', String(rec.starttime)], {
    detached: true, stdio: 'ignore', env: { PATH: ENV_PATH },
  });
  child.on('error', () => {});
  child.unref();
}

/** the reaper's loop: returns when the slot is released by its owner, or after tearing it down */
export async function reap(slot: number, pid: number, starttime: number): Promise<void> {
  const same = (l: LockRecord | undefined) => l !== undefined && l.pid === pid && l.starttime === starttime;
  for (;;) {
    if (!same(readLock(slotLock(slot)))) return;
    if (!isAlive(pid, starttime)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  // the owner may have died inside stop(): down() is safe to run twice
  await down(slot, { owner: { pid, starttime, slot } });
}

// ---- processes ----

interface Spawned {
  name: string;
  pid: number;
  starttime: number;
  exited: () => string | undefined;
}

function spawnLogged(stateDir: string, name: string, cmd: string, args: string[], env: Record<string, string> = {}): Spawned {
  const logFile = join(stateDir, 'logs', `${name}.log`);
  mkdirSync(join(stateDir, 'logs'), { recursive: true });
  const fd = openSync(logFile, 'a');
  try {
    const child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: stateDir,
      env: { PATH: ENV_PATH, HOME: stateDir, ...env },
    });
    if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
    let status: string | undefined;
    child.on('exit', (code, signal) => (status = `${name} exited (${code ?? signal}); log: ${logFile}`));
    child.on('error', (e) => (status = `${name}: ${e.message}`));
    child.unref();
    const starttime = startTime(child.pid);
    recordProc(stateDir, { name, pid: child.pid, starttime, netns: '' });
    return { name, pid: child.pid, starttime, exited: () => status };
  } finally {
    closeSync(fd);
  }
}

export function logTail(stateDir: string, name: string, lines = 20): string {
  try {
    return readFileSync(join(stateDir, 'logs', `${name}.log`), 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// ---- HTTP ----

export interface HttpResult {
  status: number;
  body: string;
}

function httpsCall(url: string, ca: Buffer, token: string | undefined, method = 'GET', body?: string, timeoutMs = 5000): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, {
      method, ca, timeout: timeoutMs,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' } : {}) },
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

function httpCall(url: string, method = 'GET', body?: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, timeout: 5000, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (data += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

// ---- identities and kubeconfigs ----

export interface Identity {
  /** the kubeconfig's name (kubeconfigs[name], tokens[name]) */
  name: string;
  /** the user name the API server authenticates (RBAC subjects match it) */
  user: string;
  groups?: string[];
}

/** the user a ServiceAccount's token authenticates as: RBAC bindings to the ServiceAccount apply */
export function serviceAccountIdentity(namespace: string, name: string, as = `${namespace}-${name}`): Identity {
  return { name: as, user: `system:serviceaccount:${namespace}:${name}`, groups: ['system:serviceaccounts', `system:serviceaccounts:${namespace}`] };
}

function kubeconfig(server: string, ca: string, user: string, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'sk8', cluster: { server, 'certificate-authority': ca } }],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'sk8', context: { cluster: 'sk8', user } }],
    'current-context': 'sk8',
  });
}

// ---- the API server ----

export interface ApiServerOptions {
  /** extra token identities: a kubeconfig each (kubeconfigs[identity.name]) */
  identities?: Identity[];
  /** the API server's watch cache (default on). Off: every watch goes to etcd, so a compaction
   *  makes any older resourceVersion 410 Gone at once; on, only after restartApiServer() */
  watchCache?: boolean;
  /** a slot (0-9) instead of the first free one */
  slot?: number;
  /** lives until `cli.ts down` rather than with this process */
  persistent?: boolean;
  log?: (s: string) => void;
}

export interface Timings {
  [what: string]: number;
}

export interface ApiCluster {
  slot: number;
  stateDir: string;
  ports: Ports;
  /** https://127.0.0.1:<port> */
  server: string;
  caCert: string;
  /** admin (system:masters) and every identity asked for (node: kubelet, controller-manager, scheduler) */
  kubeconfigs: Record<string, string>;
  tokens: Record<string, string>;
  etcdUrl: string;
  timings: Timings;
  /** Debian's kubectl with kubeconfigs[identity] (default admin); rejects on a non-zero exit */
  kubectl(args: string[], opts?: { identity?: string; input?: string; timeoutMs?: number }): Promise<string>;
  /** a request to the API server as identity (default admin) */
  api(method: string, path: string, body?: unknown, identity?: string): Promise<HttpResult>;
  /** stops kube-apiserver (etcd stays): clients see connection refused */
  stopApiServer(): Promise<void>;
  /** starts it again with the same flags and waits for /readyz */
  startApiServer(): Promise<void>;
  restartApiServer(): Promise<{ downMs: number; upMs: number }>;
  /** compacts etcd at its current revision (physical); returns that revision */
  compactEtcd(): Promise<number>;
  /** tears everything down; returns what could not be cleaned up (empty = all of it) */
  stop(): Promise<string[]>;
}

interface Meta {
  slot: number;
  kind: 'apiserver' | 'node';
  binDir: string;
  apiserverArgs: string[];
}

const META = 'meta.json';

async function startEtcd(stateDir: string, slot: number, ports: Ports, timings: Timings): Promise<Spawned> {
  const dataDir = etcdDirOf(slot);
  rmSync(dataDir, { recursive: true, force: true });
  const t0 = performance.now();
  const etcd = spawnLogged(stateDir, 'etcd', '/usr/bin/etcd', [
    '--name', 'sk8', '--data-dir', dataDir,
    '--listen-client-urls', `http://127.0.0.1:${ports.etcdClient}`, '--advertise-client-urls', `http://127.0.0.1:${ports.etcdClient}`,
    '--listen-peer-urls', `http://127.0.0.1:${ports.etcdPeer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${ports.etcdPeer}`,
    '--initial-cluster', `sk8=http://127.0.0.1:${ports.etcdPeer}`, '--initial-cluster-state', 'new',
    '--listen-metrics-urls', '', '--log-level', 'warn', '--logger', 'zap',
  ]);
  await waitFor('etcd /health', async () => (await httpCall(`http://127.0.0.1:${ports.etcdClient}/health`)).body.includes('"true"'),
    { timeoutMs: 20_000, intervalMs: 100, abort: () => etcd.exited() && `${etcd.exited()}\n${logTail(stateDir, 'etcd')}` });
  timings.etcdReadyMs = Math.round(performance.now() - t0);
  return etcd;
}

function apiserverArgs(pki: Pki, tokensFile: string, ports: Ports, net: NetPlan, node: boolean, watchCache: boolean): string[] {
  return [
    `--etcd-servers=http://127.0.0.1:${ports.etcdClient}`,
    '--bind-address=127.0.0.1', `--secure-port=${ports.apiserver}`, '--insecure-port=0',
    // with endpoint-reconciler none the address is only what the default Service would point at
    `--advertise-address=${node ? net.nodeIP : '127.0.0.1'}`,
    `--tls-cert-file=${pki.serverCert}`, `--tls-private-key-file=${pki.serverKey}`,
    `--client-ca-file=${pki.caCert}`, `--token-auth-file=${tokensFile}`,
    '--authorization-mode=Node,RBAC',
    // ServiceAccount admission needs the controller-manager's token controller: node only
    '--enable-admission-plugins=NodeRestriction' + (node ? ',ServiceAccount' : ''),
    ...(node ? [] : ['--disable-admission-plugins=ServiceAccount']),
    '--endpoint-reconciler-type=none',
    `--service-account-key-file=${pki.saPub}`, `--service-account-signing-key-file=${pki.saKey}`,
    '--service-account-issuer=https://kubernetes.default.svc', '--api-audiences=https://kubernetes.default.svc',
    `--service-cluster-ip-range=${net.serviceRange}`,
    '--allow-privileged=true',
    `--kubelet-client-certificate=${pki.kubeletClientCert}`, `--kubelet-client-key=${pki.kubeletClientKey}`,
    '--kubelet-preferred-address-types=InternalIP',
    `--watch-cache=${watchCache}`,
    '--profiling=false', '--v=1',
  ];
}

async function waitApiReady(stateDir: string, server: string, ca: Buffer, token: string, proc: Spawned, timeoutMs = 60_000): Promise<void> {
  await waitFor('kube-apiserver /readyz', async () => (await httpsCall(`${server}/readyz`, ca, token)).status === 200,
    { timeoutMs, intervalMs: 100, abort: () => proc.exited() && `${proc.exited()}\n${logTail(stateDir, 'kube-apiserver')}` });
}

interface Internal {
  cluster: ApiCluster;
  pki: Pki;
  binDir: string;
  net: NetPlan;
}

async function startControlPlane(kind: 'apiserver' | 'node', opts: ApiServerOptions, extraIdentities: (slot: number) => Identity[], onSlot: (slot: number) => void = () => {}): Promise<Internal> {
  const log = opts.log ?? (() => {});
  const miss = missingForCluster(kind);
  if (miss) throw new Error(`cannot start the sk8 ${kind}: ${miss}`);
  const binDir = k8sBinDir() as string;
  await sweepStale(log);
  const mine = await takeSlot(opts.persistent ?? false, opts.slot);
  const slot = mine.slot;
  onSlot(slot);
  const stateDir = stateDirOf(slot);
  const ports = portsOf(slot);
  const net = netOf(slot);
  const timings: Timings = {};
  const t0 = performance.now();
  try {
    removeTree(stateDir);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const pki = await makePki(join(stateDir, 'pki'), {
      ips: ['127.0.0.1', net.nodeIP, net.firstServiceIP],
      dns: ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local'],
    });
    const server = `https://127.0.0.1:${ports.apiserver}`;
    const identities: Identity[] = [{ name: 'admin', user: 'sk8-admin', groups: ['system:masters'] }, ...extraIdentities(slot), ...(opts.identities ?? [])];
    const tokens: Record<string, string> = {};
    const kubeconfigs: Record<string, string> = {};
    const lines: string[] = [];
    for (const [i, id] of identities.entries()) {
      if (tokens[id.name]) throw new Error(`identity ${id.name} given twice`);
      const token = randomBytes(24).toString('hex');
      tokens[id.name] = token;
      lines.push(`${token},${id.user},sk8-uid-${i},"${(id.groups ?? []).join(',')}"`);
      const file = join(pki.dir, `${id.name}.kubeconfig`);
      writeFileSync(file, kubeconfig(server, pki.caCert, id.user, token), { mode: 0o600 });
      kubeconfigs[id.name] = file;
    }
    const tokensFile = join(pki.dir, 'tokens.csv');
    writeFileSync(tokensFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    const args = apiserverArgs(pki, tokensFile, ports, net, kind === 'node', opts.watchCache ?? true);
    const meta: Meta = { slot, kind, binDir, apiserverArgs: args };
    writeFileSync(join(stateDir, META), JSON.stringify(meta, null, 2));

    await startEtcd(stateDir, slot, ports, timings);
    const ca = readFileSync(pki.caCert);
    let apiserver: Spawned | undefined;
    const startApi = async () => {
      const t = performance.now();
      apiserver = spawnLogged(stateDir, 'kube-apiserver', join(binDir, 'bin/kube-apiserver'), args);
      await waitApiReady(stateDir, server, ca, tokens.admin as string, apiserver);
      return Math.round(performance.now() - t);
    };
    timings.apiserverReadyMs = await startApi();
    const stopApi = async () => {
      if (!apiserver) return;
      const left = await terminate([apiserver]);
      if (left.length) throw new Error(`kube-apiserver (pid ${apiserver.pid}) survived SIGKILL`);
      apiserver = undefined;
    };
    const kubectlBin = debianKubectl();
    const cluster: ApiCluster = {
      slot, stateDir, ports, server, caCert: pki.caCert, kubeconfigs, tokens, etcdUrl: `http://127.0.0.1:${ports.etcdClient}`, timings,
      kubectl: async (a, o = {}) => {
        if (!kubectlBin) throw new Error("Debian's kubectl not found (scripts/setup.sh unpacks kubernetes-client)");
        const kc = kubeconfigs[o.identity ?? 'admin'];
        if (!kc) throw new Error(`no identity ${o.identity}`);
        return run(kubectlBin, ['--kubeconfig', kc, ...a], { input: o.input, timeoutMs: o.timeoutMs ?? 60_000 });
      },
      api: async (method, path, body, identity = 'admin') => {
        const token = tokens[identity];
        if (!token) throw new Error(`no identity ${identity}`);
        return httpsCall(`${server}${path}`, ca, token, method, body === undefined ? undefined : JSON.stringify(body));
      },
      stopApiServer: stopApi,
      startApiServer: async () => {
        if (apiserver && !apiserver.exited()) return;
        await startApi();
      },
      restartApiServer: async () => {
        const t = performance.now();
        await stopApi();
        const downMs = Math.round(performance.now() - t);
        const upMs = await startApi();
        return { downMs, upMs };
      },
      compactEtcd: async () => {
        const etcd = `http://127.0.0.1:${ports.etcdClient}`;
        // any range answers with the store's current revision in its header
        const r = await httpCall(`${etcd}/v3/kv/range`, 'POST', JSON.stringify({ key: Buffer.from('/registry/').toString('base64'), limit: 1 }));
        const revision = Number((JSON.parse(r.body) as { header?: { revision?: string } }).header?.revision);
        if (!Number.isFinite(revision)) throw new Error(`etcd range: ${r.status} ${r.body}`);
        const c = await httpCall(`${etcd}/v3/kv/compaction`, 'POST', JSON.stringify({ revision: String(revision), physical: true }));
        if (c.status !== 200) throw new Error(`etcd compaction: ${c.status} ${c.body}`);
        return revision;
      },
      // a second stop() must not tear down whoever took the slot since
      stop: () => downIfMine(mine),
    };
    timings.controlPlaneMs = Math.round(performance.now() - t0);
    return { cluster, pki, binDir, net };
  } catch (e) {
    const problems = await downIfMine(mine);
    if (problems.length) log(`teardown after a failed start: ${problems.join('; ')}`);
    throw e;
  }
}

/** etcd + kube-apiserver on loopback (no kubelet: pods are API objects whose status you patch) */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiCluster> {
  return (await startControlPlane('apiserver', opts, () => [])).cluster;
}

// ---- the node ----

export interface NodeOptions extends ApiServerOptions {
  /** how long to wait for another sk8 node (one per machine: kubelet paths are global) */
  nodeLockTimeoutMs?: number;
}

export interface NodeCluster extends ApiCluster {
  nodeName: string;
  net: NetPlan;
  containerdSocket: string;
  /** the kubelet's cgroup root (pods under <hierarchy>/<cgroupRoot>/kubepods/...) */
  cgroupRoot: string;
  /** `ctr -n k8s.io` against this node's containerd */
  ctr(args: string[], timeoutMs?: number): Promise<string>;
  /** imports a docker-archive (or OCI archive) into the node's containerd (k8s.io namespace) */
  importImage(archive: string): Promise<void>;
}

function containerdConfig(stateDir: string): string {
  const c = join(stateDir, 'containerd');
  return `version = 2
root = "${c}/root"
state = "${c}/state"
# plugins that would write under /opt or probe for filesystems this node does not use
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "${c}/containerd.sock"
[ttrpc]
  address = "${c}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "${c}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # this VM gives no process CAP_SYS_RESOURCE: a negative oom_score_adj fails and runc dies
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc, not crun: crun refuses this machine's hybrid cgroup layout
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${stateDir}/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
`;
}

function cniConflist(stateDir: string, net: NetPlan): string {
  return JSON.stringify({
    cniVersion: '0.4.0',
    name: 'sk8',
    plugins: [{
      type: 'bridge',
      bridge: net.cniBridge,
      isGateway: true,
      // pod traffic stays on the bridge subnet: no masquerade, no default route
      ipMasq: false,
      hairpinMode: true,
      ipam: { type: 'host-local', dataDir: join(stateDir, 'cni/ipam'), ranges: [[{ subnet: net.podSubnet, gateway: net.podGateway }]], routes: [] },
    }],
  }, null, 2);
}

function kubeletConfig(pki: Pki, ports: Ports, net: NetPlan, slot: number): string {
  return stringify({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: net.nodeIP,
    port: ports.kubelet,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: ports.kubeletHealthz,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: pki.caCert } },
    authorization: { mode: 'Webhook' },
    cgroupDriver: 'cgroupfs',
    cgroupRoot: `/${cgroupRootOf(slot)}`,
    failSwapOn: false,
    makeIPTablesUtilChains: false,
    clusterDomain: 'cluster.local',
    // a test machine's disk must not evict the pods under test
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    serializeImagePulls: false,
    nodeStatusUpdateFrequency: '4s',
    fileCheckFrequency: '5s',
    syncFrequency: '10s',
  });
}

async function nodeLock(timeoutMs: number, rec: LockRecord, log: (s: string) => void): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    if (tryLock(NODE_LOCK, rec)) return;
    const held = readLock(NODE_LOCK);
    if (held && !lockOwnerAlive(held)) {
      const same = (l: LockRecord | undefined) => l !== undefined && l.pid === held.pid && l.starttime === held.starttime;
      // its slot, if it got one and nobody took it over since
      if (held.slot >= 0 && same(readLock(slotLock(held.slot)))) await down(held.slot, { owner: readLock(slotLock(held.slot)) });
      if (same(readLock(NODE_LOCK))) rmSync(NODE_LOCK, { force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`another sk8 node runs (slot ${held?.slot}, pid ${held?.pid}); waited ${timeoutMs} ms`);
    if (!said) log(`waiting for sk8 node of slot ${held?.slot} (pid ${held?.pid}) to stop: one kubelet per machine`);
    said = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const nodeNameOf = (slot: number) => `sk8-node${slot}`;
const containerdSocketOf = (stateDir: string) => join(stateDir, 'containerd/containerd.sock');

/** cgroup v1 cpuset children start with empty cpus/mems: a process cannot join until they are set */
function makeCgroupRoot(name: string): void {
  for (const h of cgroupHierarchies()) {
    const dir = join(h, name);
    mkdirSync(dir, { recursive: true });
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const own = join(dir, f);
      if (existsSync(own) && readFileSync(own, 'utf8').trim() === '') writeFileSync(own, readFileSync(join(h, f), 'utf8').trim());
    }
  }
}

async function ctrAt(socket: string, args: string[], timeoutMs = 120_000): Promise<string> {
  return run('/usr/bin/ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], { timeoutMs });
}

function ipQuiet(args: string[]): boolean {
  try {
    execFileSync('ip', args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`);

async function nodeUp(cp: Internal, slot: number, log: (s: string) => void): Promise<NodeCluster> {
  const { cluster, pki, binDir, net } = cp;
  const { stateDir, ports, timings } = cluster;
  const t0 = performance.now();
  const nodeName = nodeNameOf(slot);
  // before anything of the node touches the host
  saveSnapshot(join(stateDir, 'host-snapshot.json'), snapshotHost());
  shareMounts();

  makeCgroupRoot(cgroupRootOf(slot));
  // the node's IP lives on a bridge of its own (the kubelet rejects a loopback node IP)
  for (const l of [net.nodeBridge, net.cniBridge]) if (linkExists(l)) ipQuiet(['link', 'del', l]);
  await run('ip', ['link', 'add', net.nodeBridge, 'type', 'bridge']);
  await run('ip', ['addr', 'add', net.nodeCidr, 'dev', net.nodeBridge]);
  await run('ip', ['link', 'set', net.nodeBridge, 'up']);

  mkdirSync(join(stateDir, 'cni/net.d'), { recursive: true });
  writeFileSync(join(stateDir, 'cni/net.d/10-sk8.conflist'), cniConflist(stateDir, net));
  mkdirSync(join(stateDir, 'containerd'), { recursive: true });
  writeFileSync(join(stateDir, 'containerd/config.toml'), containerdConfig(stateDir));
  const socket = containerdSocketOf(stateDir);
  let t = performance.now();
  const containerd = spawnLogged(stateDir, 'containerd', '/usr/bin/containerd', ['--config', join(stateDir, 'containerd/config.toml'), '--log-level', 'warn']);
  await waitFor('containerd', async () => (await ctrAt(socket, ['version'], 5000)).includes('Server'),
    { timeoutMs: 30_000, intervalMs: 100, abort: () => containerd.exited() && `${containerd.exited()}\n${logTail(stateDir, 'containerd')}` });
  timings.containerdReadyMs = Math.round(performance.now() - t);
  t = performance.now();
  await ctrAt(socket, ['images', 'import', join(binDir, 'images/pause.tar')]);
  timings.pauseImportMs = Math.round(performance.now() - t);

  const kc = cluster.kubeconfigs;
  const cm = spawnLogged(stateDir, 'kube-controller-manager', join(binDir, 'bin/kube-controller-manager'), [
    `--kubeconfig=${kc['kube-controller-manager']}`, '--leader-elect=false', '--port=0', '--secure-port=0', '--bind-address=127.0.0.1',
    `--service-account-private-key-file=${pki.saKey}`, `--root-ca-file=${pki.caCert}`, '--use-service-account-credentials=true',
    `--service-cluster-ip-range=${net.serviceRange}`, '--controllers=*,-nodeipam,-cloud-node-lifecycle,-service,-route',
    '--v=1',
  ]);
  const sched = spawnLogged(stateDir, 'kube-scheduler', join(binDir, 'bin/kube-scheduler'), [
    `--kubeconfig=${kc['kube-scheduler']}`, '--leader-elect=false', '--port=0', '--secure-port=0', '--bind-address=127.0.0.1', '--v=1',
  ]);

  const kubeletDir = join(stateDir, 'kubelet');
  mkdirSync(kubeletDir, { recursive: true });
  writeFileSync(join(stateDir, 'kubelet-config.yaml'), kubeletConfig(pki, ports, net, slot));
  t = performance.now();
  const kubelet = spawnLogged(stateDir, 'kubelet', join(binDir, 'bin/kubelet'), [
    `--config=${join(stateDir, 'kubelet-config.yaml')}`, `--kubeconfig=${kc.kubelet}`,
    '--container-runtime=remote', `--container-runtime-endpoint=unix://${socket}`,
    `--hostname-override=${nodeName}`, `--node-ip=${net.nodeIP}`,
    `--root-dir=${kubeletDir}`, `--cert-dir=${join(kubeletDir, 'pki')}`,
    // not a config field in 1.20
    `--volume-plugin-dir=${join(stateDir, 'volume-plugins')}`,
    '--v=1',
  ], {
    // its built-in AWS credential provider would contact 169.254.169.254 at start otherwise
    AWS_EC2_METADATA_DISABLED: 'true',
  });
  const abort = () => {
    for (const p of [containerd, cm, sched, kubelet]) {
      const why = p.exited();
      if (why) return `${why}\n${logTail(stateDir, p.name)}`;
    }
    return undefined;
  };
  await waitFor(`node ${nodeName} Ready`, async () => {
    const r = await cluster.api('GET', `/api/v1/nodes/${nodeName}`);
    if (r.status !== 200) return false;
    const n = JSON.parse(r.body) as { status?: { conditions?: { type: string; status: string }[] } };
    return n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  }, { timeoutMs: 90_000, intervalMs: 250, abort });
  timings.kubeletReadyMs = Math.round(performance.now() - t);
  timings.nodeMs = Math.round(performance.now() - t0);
  log(`sk8 node ${nodeName} Ready (slot ${slot}): ${JSON.stringify(timings)}`);

  return {
    ...cluster,
    nodeName,
    net,
    containerdSocket: socket,
    cgroupRoot: cgroupRootOf(slot),
    ctr: (args, timeoutMs) => ctrAt(socket, args, timeoutMs),
    importImage: async (archive) => {
      await ctrAt(socket, ['images', 'import', archive], 300_000);
    },
  };
}

/** the full node: control plane + containerd + kubelet; resolves when the Node is Ready */
export async function startNode(opts: NodeOptions = {}): Promise<NodeCluster> {
  const log = opts.log ?? (() => {});
  const miss = missingForCluster('node');
  if (miss) throw new Error(`cannot start the sk8 node: ${miss}`);
  await sweepStale(log);
  const lockRec = owner(opts.persistent ?? false, -1);
  await nodeLock(opts.nodeLockTimeoutMs ?? 15 * 60_000, lockRec, log);
  let slot = -1;
  try {
    const cp = await startControlPlane('node', opts, (s) => [
      { name: 'kubelet', user: `system:node:${nodeNameOf(s)}`, groups: ['system:nodes'] },
      { name: 'kube-controller-manager', user: 'system:kube-controller-manager' },
      { name: 'kube-scheduler', user: 'system:kube-scheduler' },
    ], (s) => {
      slot = s;
      writeFileSync(NODE_LOCK, JSON.stringify({ ...lockRec, slot: s }));
    });
    return await nodeUp(cp, slot, log);
  } catch (e) {
    // startControlPlane tore its slot down already when it failed itself
    const held = slot >= 0 ? readLock(slotLock(slot)) : undefined;
    if (held && held.pid === lockRec.pid && held.starttime === lockRec.starttime) {
      const problems = await down(slot, { owner: held });
      if (problems.length) log(`teardown after a failed start: ${problems.join('; ')}`);
    }
    const nl = readLock(NODE_LOCK);
    if (nl && nl.pid === lockRec.pid && nl.starttime === lockRec.starttime) rmSync(NODE_LOCK, { force: true });
    throw e;
  }
}

// ---- teardown ----

/** pids of containerd shims serving this state dir's containerd (they outlive containerd) */
function shimPids(stateDir: string): number[] {
  const sock = containerdSocketOf(stateDir);
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const exe = readlinkSync(`/proc/${d}/exe`);
      if (!exe.includes('containerd-shim')) continue;
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(sock)) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

async function killCgroupTree(dirs: string[]): Promise<number[]> {
  const pidsNow = () => [...new Set(dirs.flatMap((d) => cgroupPids(d)))];
  for (let round = 0; round < 50; round++) {
    const pids = pidsNow();
    if (pids.length === 0) return [];
    for (const p of pids) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return pidsNow();
}

const sameOwner = (a: LockRecord | undefined, b: LockRecord | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.pid === b.pid && a.starttime === b.starttime);

/**
 * Tears a slot down from what its state dir and the host say, whoever started it (this process,
 * a crashed test, the CLI). Returns what could not be cleaned up. One teardown per slot at a
 * time (a claim file: a test's reaper and another test's sweep may find the same dead owner);
 * with `expect`, only while the slot lock is still that owner's (undefined: no lock at all), so a
 * late teardown never touches whoever took the slot since.
 */
export async function down(slot: number, expect?: { owner: LockRecord | undefined }): Promise<string[]> {
  const claim = join(LOCK_DIR, `slot${slot}.down`);
  const me: LockRecord = { pid: process.pid, starttime: startTime(process.pid), slot };
  for (;;) {
    if (tryLock(claim, me)) break;
    const held = readLock(claim);
    if (held && !isAlive(held.pid, held.starttime)) {
      if (sameOwner(readLock(claim), held)) rmSync(claim, { force: true });
      continue;
    }
    // another process is tearing this slot down: its result stands
    await waitFor(`the teardown of sk8 slot ${slot} by pid ${held?.pid}`, () => !sameOwner(readLock(claim), held), { timeoutMs: 5 * 60_000, intervalMs: 200 })
      .catch(() => {});
    return [];
  }
  try {
    if (expect && !sameOwner(readLock(slotLock(slot)), expect.owner)) return [];
    return await teardown(slot);
  } finally {
    rmSync(claim, { force: true });
  }
}

async function teardown(slot: number): Promise<string[]> {
  const problems: string[] = [];
  const stateDir = stateDirOf(slot);
  const net = netOf(slot);
  const recs = readProcRecords(stateDir);
  const named = (...names: string[]) => recs.filter((r) => names.includes(r.name));
  const stopProcs = async (list: readonly { pid: number; starttime?: number }[]) => {
    const left = await terminate(list);
    if (left.length) problems.push(`processes survived SIGKILL: ${left.join(', ')}`);
  };
  // nothing may restart containers while they go
  await stopProcs(named('kubelet', 'kube-scheduler', 'kube-controller-manager'));

  const cgroups = cgroupDirs(cgroupRootOf(slot));
  const left = await killCgroupTree(cgroups);
  if (left.length) problems.push(`pod processes survived SIGKILL: ${left.join(', ')}`);
  const socket = containerdSocketOf(stateDir);
  const containerd = named('containerd').filter((r) => isAlive(r.pid, r.starttime));
  if (containerd.length && existsSync(socket)) {
    // through containerd: the task (runc state, rootfs mount) and the container (snapshot) go
    try {
      const ids = (await ctrAt(socket, ['containers', 'list', '--quiet'], 30_000)).split('\n').filter(Boolean);
      for (const id of ids) {
        await ctrAt(socket, ['tasks', 'delete', '--force', id], 30_000).catch(() => '');
        await ctrAt(socket, ['containers', 'delete', id], 30_000).catch((e: Error) => problems.push(`ctr containers delete ${id}: ${e.message}`));
      }
    } catch (e) {
      problems.push(`listing containers: ${(e as Error).message}`);
    }
  }
  await stopProcs(named('containerd'));
  await stopProcs(shimPids(stateDir).map((pid) => ({ pid })));
  await stopProcs(recs.filter((r) => !['kubelet', 'kube-scheduler', 'kube-controller-manager', 'containerd'].includes(r.name)));

  // pod network namespaces (bind mounts under the state dir), rootfs overlays, kubelet volumes
  const mounted = unmountUnder(stateDir);
  if (mounted.length) problems.push(`still mounted: ${mounted.join(', ')}`);
  const snap = loadSnapshot(join(stateDir, 'host-snapshot.json'));
  if (snap) problems.push(...restoreHost(snap));

  try {
    const slaves = JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'master', net.cniBridge], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }) || '[]') as { ifname: string }[];
    for (const s of slaves) ipQuiet(['link', 'del', s.ifname]);
  } catch {
    // no such bridge
  }
  for (const l of [net.cniBridge, net.nodeBridge]) {
    if (linkExists(l) && !ipQuiet(['link', 'del', l])) problems.push(`could not delete link ${l}`);
  }
  // veths of pods (their netns went with the unmounts above): none may stay on this node's subnet
  try {
    const addrs = JSON.parse(execFileSync('ip', ['-j', 'addr', 'show'], { encoding: 'utf8' }) || '[]') as { ifname: string; addr_info?: { local?: string }[] }[];
    const prefix = net.podSubnet.split('.').slice(0, 3).join('.') + '.';
    for (const a of addrs) if (a.addr_info?.some((i) => i.local?.startsWith(prefix))) problems.push(`link ${a.ifname} still holds an address in ${net.podSubnet}`);
  } catch {
    // ip -j unavailable: skip the check
  }
  for (const d of cgroups) {
    const still = removeCgroupTree(d);
    if (still.length) problems.push(`cgroups left: ${still.slice(0, 5).join(', ')}${still.length > 5 ? ` (+${still.length - 5})` : ''}`);
  }
  if (mounted.length === 0) {
    try {
      removeTree(stateDir);
    } catch (e) {
      problems.push(`${stateDir}: ${(e as Error).message}`);
    }
  }
  rmSync(etcdDirOf(slot), { recursive: true, force: true });
  for (const left of [stateDir, etcdDirOf(slot), ...cgroups]) if (existsSync(left)) problems.push(`${left} is still there`);
  for (const l of [net.cniBridge, net.nodeBridge]) if (linkExists(l)) problems.push(`link ${l} is still there`);
  const nl = readLock(NODE_LOCK);
  if (nl && nl.slot === slot) rmSync(NODE_LOCK, { force: true });
  rmSync(slotLock(slot), { force: true });
  return problems;
}

/** down(slot) while the slot is still this owner's (else it is gone already, or someone else's) */
function downIfMine(rec: LockRecord): Promise<string[]> {
  return down(rec.slot, { owner: rec });
}

/** the slots in use, with their owner (pid 0: started by the CLI) */
export function slotsInUse(): LockRecord[] {
  const out: LockRecord[] = [];
  for (let slot = 0; slot < SLOTS; slot++) {
    const l = readLock(slotLock(slot));
    if (l) out.push(l);
  }
  return out;
}
