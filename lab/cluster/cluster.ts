// The cluster lab: N nodes from a topology file (topology.ts), networked as network.ts says, the
// HotROD-style app as pods (lab/apps/hotrod.ts and hotrod.py), NGINX as the ingress pod, a client
// outside the cluster, and a collector address for the instrumented pods (relay.ts). Every process
// is a container of its pod in a kubelet-style cgroup (<prefix>.lab/<node>/kubepods/besteffort/
// pod<uid>/<id>) or a node's system process (<prefix>.lab/<node>/system/<name>, OVS); everything
// is named after the prefix, so clusterDown (the one-node lab's labDown: processes recorded, in the
// lab's netns or cgroups; the netns; the cgroups; the state dir) removes it from the prefix alone,
// also after a crash. clusterUp reaps a previous run first and reaps what it built when it fails
// or is aborted. It writes, under the state dir:
//   cluster.json            the machine-readable description (nodes, pod CIDRs, pod -> node, IPs,
//                           veths, Services, ingress, client, collector, faults): loadCluster()
//   nodes/<node>/pods.json  each node's pods in the format agent/src/k8s/pods-file.ts reads
//   pods/<ns>.<name>.json   each app pod's tunables (hotrod.ts re-reads it: the delay fault)
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { containerCgroup, inCgroup, labCgroupParent, makeCgroup, newContainerId } from '../cgroups.ts';
import { LabError, STRATA_ERR_FAULT, STRATA_ERR_LAB_ABORTED, STRATA_ERR_LAB_BUILD, STRATA_ERR_LAB_NOT_UP, STRATA_ERR_LAB_PREREQ, STRATA_ERR_TOPOLOGY } from '../errors.ts';
import { type Detached, spawnDetachedCmd, waitFor } from '../exec.ts';
import { checkPrefix, DEFAULT_PREFIX, defaultStateDir, httpStatus, type LabContainer, type LabPod, labDown, type PodRecord, writeAtomic } from '../lab.ts';
import { addBridge, addNetns, addPodLink, netnsInode, netnsPath } from '../netns.ts';
import { NGINX_BIN, nginxArgs, writeIngressConfig } from '../nginx.ts';
import { recordProc, startTime } from '../procs.ts';
import {
  addFabric, clearRateLimit, CNI_BRIDGE, FABRIC_BRIDGE, hostVethName, installServices, NFT_BIN, plugIntoFabric, POD_MTU, setRateLimit,
  setupNodeOverlay, UPLINK, VXLAN, vxlanMac,
} from './network.ts';
import { ovsMissing, ovsPodFixup, startOvsBridge, type OvsBridge } from './ovs.ts';
import {
  APP_PORT, type BridgeKind, checkFault, checkOtlpEndpoint, FABRIC, type FaultSpec, loadTopology, type Mode, type NodePlan, type PodPlan,
  type Runtime, type ServicePlan, type TopologyPlan,
} from './topology.ts';

const LAB_DIR = fileURLToPath(new URL('..', import.meta.url));
export const DEFAULT_TOPOLOGY = join(LAB_DIR, 'cluster.yaml');
const PYTHON_BIN = '/usr/bin/python3';
const COLLECTOR_PORT = 4318;
const READY_TIMEOUT_MS = 30_000;
const PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface ClusterNode {
  name: string;
  index: number;
  netns: string;
  netnsPath: string;
  netnsInode: number;
  /** eth0 on the fabric */
  ip: string;
  uplink: string;
  podCidr: string;
  gateway: string;
  /** kind: what it is; requested: what the topology asked (ovs falls back to linux without OVS, see note) */
  bridge: { name: string; kind: BridgeKind; requested: BridgeKind; note?: string };
  vxlan: { name: string; vni: number; port: number; mac: string; ip: string };
  /** this node's pods, for one agent per node (--pods-file) */
  podsFile: string;
}

export interface ClusterPod extends LabPod {
  node: string;
  app: PodPlan['app'];
  runtime: Runtime | 'nginx';
  mode: Mode;
  labels: Record<string, string>;
  mtu: number;
  /** app pods: the tunables file hotrod re-reads (delay faults write it) */
  configFile?: string;
}

export interface Cluster {
  kind: 'strata-lab-cluster';
  version: 1;
  name: string;
  prefix: string;
  stateDir: string;
  topologyFile?: string;
  fabric: { netns: string; bridge: string; cidr: string; gateway: string };
  nodes: ClusterNode[];
  pods: ClusterPod[];
  services: ServicePlan[];
  ingress: { pod: string; node: string; nodeIp: string; hostPort: number; url: string; rules: { host?: string; service: string }[] };
  /** the client outside the cluster, on the fabric */
  client: { netns: string; ip: string };
  /** the in-cluster OTLP address the instrumented pods export to, relayed to forwardTo */
  collector?: { netns: string; ip: string; port: number; endpoint: string; forwardTo: string };
  /** the faults in force */
  faults: FaultSpec[];
}

export interface ClusterOptions {
  prefix?: string;
  stateDir?: string;
  /** a topology file, or a plan (planTopology); default lab/cluster.yaml */
  topology?: string | TopologyPlan;
  /** overrides telemetry.otlpEndpoint */
  otlpEndpoint?: string;
  /** aborting reaps what was built and rejects with STRATA_ERR_LAB_ABORTED */
  signal?: AbortSignal;
  /** progress lines */
  log?: (line: string) => void;
  /** called once every node's netns, bridge and overlay are there, before the pods (to start per-node agents meanwhile) */
  onNodes?: (nodes: ClusterNode[]) => void;
}

const netnsName = {
  fabric: (prefix: string) => `${prefix}-fabric`,
  client: (prefix: string) => `${prefix}-client`,
  collector: (prefix: string) => `${prefix}-collector`,
  node: (prefix: string, node: string) => `${prefix}-${node}`,
  // pods have a dot, nodes cannot: the two never collide
  pod: (prefix: string, p: { namespace: string; name: string }) => `${prefix}-${p.namespace}.${p.name}`,
};

const podKey = (p: { namespace: string; name: string }) => `${p.namespace}/${p.name}`;

/** What is missing on this machine for this plan (prerequisites in plain words), OVS aside. */
export function clusterPrerequisites(plan: TopologyPlan): string[] {
  const need: [string, string][] = [
    ['/usr/sbin/ip', 'iproute2 (ip)'],
    ['/usr/sbin/bridge', 'iproute2 (bridge)'],
    ['/usr/sbin/tc', 'iproute2 (tc)'],
    [NFT_BIN, 'nftables (nft)'],
    [NGINX_BIN, 'nginx'],
    ['/usr/bin/curl', 'curl'],
  ];
  if (plan.pods.some((p) => p.runtime === 'python')) need.push([PYTHON_BIN, 'python3 (Debian)']);
  if (plan.nodes.some((n) => n.bridge === 'ovs') && !ovsMissing()) need.push(['/usr/sbin/ethtool', 'ethtool']);
  return need.filter(([path]) => !existsSync(path)).map(([path, what]) => `${what}: ${path} missing`);
}

export async function clusterUp(opts: ClusterOptions = {}): Promise<Cluster> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  checkPrefix(prefix);
  const stateDir = opts.stateDir ?? defaultStateDir(prefix);
  const plan = typeof opts.topology === 'object' ? opts.topology : loadTopology(opts.topology ?? DEFAULT_TOPOLOGY);
  const missing = clusterPrerequisites(plan);
  if (missing.length) throw new LabError(STRATA_ERR_LAB_PREREQ, `the cluster lab needs (scripts/setup.sh installs them): ${missing.join('; ')}`);
  const otlpEndpoint = opts.otlpEndpoint
    ? checkOtlpEndpoint(opts.otlpEndpoint, (m) => {
      throw new LabError(STRATA_ERR_TOPOLOGY, `otlpEndpoint (overriding telemetry.otlpEndpoint): ${m}`, 'telemetry.otlpEndpoint');
    })
    : plan.telemetry.otlpEndpoint;
  await labDown(prefix, { stateDir });
  try {
    return await new Builder(prefix, stateDir, plan, otlpEndpoint, opts).build();
  } catch (e) {
    await labDown(prefix, { stateDir }).catch((d: Error) => opts.log?.(`reaping after the failure: ${d.message}`));
    if (e instanceof LabError) throw e;
    // a wait cut short by the abort fails with its own words: it was the interruption
    if (opts.signal?.aborted) throw new LabError(STRATA_ERR_LAB_ABORTED, `cluster ${prefix}: interrupted; everything it had built is removed`);
    throw new LabError(STRATA_ERR_LAB_BUILD, `cluster ${prefix}: ${(e as Error).message} (everything it had built is removed)`);
  }
}

/** Removes everything of the cluster (or one-node lab) with this prefix: the reaper. */
export async function clusterDown(prefix: string, opts: { stateDir?: string } = {}): Promise<void> {
  await labDown(prefix, opts);
}

/** The description clusterUp wrote, or undefined when no cluster with this prefix is up. */
export function loadCluster(prefix: string, opts: { stateDir?: string } = {}): Cluster | undefined {
  try {
    const c = JSON.parse(readFileSync(join(opts.stateDir ?? defaultStateDir(prefix), 'cluster.json'), 'utf8')) as Cluster;
    return c.kind === 'strata-lab-cluster' ? c : undefined;
  } catch {
    return undefined;
  }
}

class Builder {
  private readonly logs: string;
  private readonly started = performance.now();
  private readonly nodes = new Map<string, ClusterNode>();
  private readonly ovs = new Map<string, OvsBridge>();
  private readonly podUid = new Map<string, string>();
  private readonly prefix: string;
  private readonly stateDir: string;
  private readonly plan: TopologyPlan;
  private readonly otlpEndpoint: string | undefined;
  private readonly opts: ClusterOptions;

  constructor(prefix: string, stateDir: string, plan: TopologyPlan, otlpEndpoint: string | undefined, opts: ClusterOptions) {
    this.prefix = prefix;
    this.stateDir = stateDir;
    this.plan = plan;
    this.otlpEndpoint = otlpEndpoint;
    this.opts = opts;
    this.logs = join(stateDir, 'logs');
  }

  private checkAbort(what: string): void {
    if (this.opts.signal?.aborted) throw new LabError(STRATA_ERR_LAB_ABORTED, `cluster ${this.prefix}: interrupted before ${what}; everything it had built is removed`);
    if (this.firstFailure !== undefined) throw this.firstFailure;
  }

  /** the first step that failed: parallel steps stop at their next check or wait */
  private firstFailure: unknown;

  /**
   * Runs steps in parallel, like Promise.all, but rejects only once every step has stopped (the
   * others stop early, at their next check, once one failed): the lab must not be reaped while a
   * step is still creating namespaces and processes, which would outlive the reaping. Rejects with
   * the first failure in time, the cause, rather than a step that stopped because of it.
   */
  private async all<T>(steps: Promise<T>[]): Promise<T[]> {
    const rs = await Promise.allSettled(steps.map((p) => p.catch((e: unknown) => {
      this.firstFailure ??= e;
      throw e;
    })));
    if (rs.some((r) => r.status === 'rejected')) throw this.firstFailure;
    return rs.map((r) => (r as PromiseFulfilledResult<T>).value);
  }

  private step(what: string): void {
    this.checkAbort(what);
    this.opts.log?.(`${what} (${((performance.now() - this.started) / 1000).toFixed(1)} s)`);
  }

  private readonly aborted = () => (this.opts.signal?.aborted ? 'interrupted' : this.firstFailure !== undefined ? 'another step failed' : undefined);

  async build(): Promise<Cluster> {
    const { prefix, plan } = this;
    mkdirSync(this.logs, { recursive: true });
    this.step(`fabric and ${plan.nodes.length} nodes`);
    const fabricNs = netnsName.fabric(prefix);
    await addNetns(fabricNs);
    await addFabric(fabricNs);
    await this.all(plan.nodes.map((n) => this.addNode(n, fabricNs)));
    this.opts.onNodes?.(plan.nodes.map((n) => this.nodes.get(n.name) as ClusterNode));
    const clientNs = netnsName.client(prefix);
    await addNetns(clientNs);
    await plugIntoFabric(fabricNs, clientNs, 'client', FABRIC.client);
    const collector = this.otlpEndpoint ? await this.addCollector(fabricNs, this.otlpEndpoint) : undefined;

    // each pod as soon as its network is there: runtimes start while other pods are still wired
    this.step(`${plan.pods.length} pods: namespaces, veths, Service DNAT, containers`);
    const ingressPlan = plan.pods.find((p) => p.app === 'ingress') as PodPlan;
    const ingressNode = this.nodes.get(ingressPlan.node) as ClusterNode;
    const ingressUrl = `http://${ingressNode.ip}:${plan.ingress.hostPort}`;
    const containers = new Map<string, LabContainer>();
    const pods = await this.all(plan.pods.map(async (p) => {
      const net = await this.addPodNetwork(p);
      this.checkAbort(`${podKey(p)}'s container`);
      const c = p.app === 'ingress' ? await this.startIngress(p, ingressUrl, clientNs) : await this.startApp(p, collector?.endpoint);
      containers.set(podKey(p), c);
      return net;
    }));

    const clusterPods = plan.pods.map((p, i) => this.clusterPod(p, pods[i] as PodNet, containers.get(podKey(p)) as LabContainer));
    const cluster: Cluster = {
      kind: 'strata-lab-cluster',
      version: 1,
      name: plan.name,
      prefix,
      stateDir: this.stateDir,
      topologyFile: plan.file,
      fabric: { netns: fabricNs, bridge: FABRIC_BRIDGE, cidr: FABRIC.cidr, gateway: FABRIC.gateway },
      nodes: plan.nodes.map((n) => this.nodes.get(n.name) as ClusterNode),
      pods: clusterPods,
      services: plan.services.map((s) => ({ ...s, endpoints: [...s.endpoints] })),
      ingress: {
        pod: podKey(ingressPlan), node: ingressNode.name, nodeIp: ingressNode.ip, hostPort: plan.ingress.hostPort, url: ingressUrl,
        rules: plan.ingress.rules.map((r) => ({ ...r })),
      },
      client: { netns: clientNs, ip: FABRIC.client },
      collector,
      faults: [],
    };
    if (plan.faults.length) this.step(`${plan.faults.length} faults`);
    for (const f of plan.faults) await applyFault(cluster, f, { save: false });
    writeDescription(cluster);
    this.opts.log?.(`cluster ${prefix} up: ${cluster.nodes.length} nodes, ${cluster.pods.length} pods (${((performance.now() - this.started) / 1000).toFixed(1)} s)`);
    return cluster;
  }

  private async addNode(n: NodePlan, fabricNs: string): Promise<void> {
    const netns = netnsName.node(this.prefix, n.name);
    await addNetns(netns);
    await plugIntoFabric(fabricNs, netns, n.name, n.ip);
    const noOvs = n.bridge === 'ovs' ? ovsMissing() : undefined;
    const kind: BridgeKind = n.bridge === 'ovs' && !noOvs ? 'ovs' : 'linux';
    if (noOvs) this.opts.log?.(`${n.name}: bridge ovs requested, Linux bridge used: ${noOvs}`);
    if (kind === 'ovs') {
      this.ovs.set(n.name, await startOvsBridge({
        node: n.name, netns, dir: join(this.stateDir, 'ovs', n.name), bridge: CNI_BRIDGE, cidr: `${n.gateway}/24`,
        start: (name, ns, cmd, args, env) => this.spawn(name, ns, join(labCgroupParent(this.prefix), n.name, 'system', name), cmd, args, env),
      }));
    } else {
      await addBridge(netns, `${n.gateway}/24`, CNI_BRIDGE);
    }
    const ingress = this.plan.ingress.node === n.name ? this.plan.pods.find((p) => p.app === 'ingress') : undefined;
    await setupNodeOverlay(netns, n, this.plan.nodes, this.prefix, ingress && { port: this.plan.ingress.hostPort, target: `${ingress.ip}:80` });
    const podsFile = join(this.stateDir, 'nodes', n.name, 'pods.json');
    this.nodes.set(n.name, {
      name: n.name, index: n.index, netns, netnsPath: netnsPath(netns), netnsInode: netnsInode(netns), ip: n.ip, uplink: UPLINK,
      podCidr: n.podCidr, gateway: n.gateway,
      bridge: { name: CNI_BRIDGE, kind, requested: n.bridge, ...(noOvs ? { note: noOvs } : {}) },
      vxlan: { name: VXLAN.name, vni: VXLAN.vni, port: VXLAN.port, mac: vxlanMac(n.index), ip: `10.244.${n.index}.0` },
      podsFile,
    });
  }

  private async addCollector(fabricNs: string, forwardTo: string): Promise<NonNullable<Cluster['collector']>> {
    const netns = netnsName.collector(this.prefix);
    await addNetns(netns);
    await plugIntoFabric(fabricNs, netns, 'collector', FABRIC.collector);
    const to = new URL(forwardTo);
    const relay = join(LAB_DIR, 'cluster', 'relay.ts');
    const d = this.spawn('collector-relay', undefined, join(labCgroupParent(this.prefix), 'system', 'collector-relay'), process.execPath, [
      relay, '--netns', netns, '--port', String(COLLECTOR_PORT), '--to', `${to.hostname}:${to.port || 80}`,
    ], {});
    const log = join(this.logs, 'collector-relay.log');
    await waitFor('the collector relay to listen', () => readText(log).includes('relay: '), {
      timeoutMs: READY_TIMEOUT_MS,
      abort: () => this.aborted() ?? (d.exited() ? `the relay exited; log:\n${readText(log).slice(-2000)}` : undefined),
    });
    return { netns, ip: FABRIC.collector, port: COLLECTOR_PORT, endpoint: `http://${FABRIC.collector}:${COLLECTOR_PORT}`, forwardTo };
  }

  private async addPodNetwork(p: PodPlan): Promise<PodNet> {
    const node = this.nodes.get(p.node) as ClusterNode;
    const netns = netnsName.pod(this.prefix, p);
    // the UID is drawn with the pod's network: its veth is named after it
    const uid = randomUUID();
    this.podUid.set(podKey(p), uid);
    const hostVeth = hostVethName(uid);
    await addNetns(netns);
    const ovs = this.ovs.get(p.node);
    await addPodLink({
      nodeNs: node.netns, podNs: netns, hostVeth, cidr: `${p.ip}/24`, gateway: node.gateway, bridge: CNI_BRIDGE, mtu: POD_MTU, attach: ovs?.addPort,
    });
    if (ovs) await ovsPodFixup(netns);
    // the ingress proxies to endpoints (as ingress-nginx does); apps reach each other by Service VIP
    if (p.app !== 'ingress') await installServices(netns, this.prefix, this.plan.services);
    return { netns, uid, hostVeth };
  }

  /** a process in a netns (or the root netns), in a cgroup, with a clean environment, logged and recorded */
  private spawn(name: string, netns: string | undefined, cgroup: string, cmd: string, args: string[], env: Record<string, string>): Detached & { cgroupId: number } {
    const cgroupId = makeCgroup(cgroup);
    const envArgs = ['-i', `PATH=${PATH_ENV}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    const inner = netns ? ['ip', 'netns', 'exec', netns, 'env', ...envArgs, cmd, ...args] : ['env', ...envArgs, cmd, ...args];
    const [c, a] = inCgroup(cgroup, inner[0] as string, inner.slice(1));
    const d = spawnDetachedCmd(c, a, join(this.logs, `${name}.log`));
    recordProc(this.stateDir, { name, pid: d.pid, starttime: startTime(d.pid), netns: netns ?? '' });
    return { ...d, cgroupId };
  }

  private startContainer(p: PodPlan, uid: string, name: string, cmd: string, args: string[], env: Record<string, string>): { container: LabContainer; d: Detached } {
    const id = newContainerId();
    const cgroup = containerCgroup(this.prefix, uid, id, p.node);
    const d = this.spawn(`${p.namespace}.${p.name}`, netnsName.pod(this.prefix, p), cgroup, cmd, args, env);
    return { container: { name, pid: d.pid, id, cgroup, cgroupId: d.cgroupId }, d };
  }

  private async startApp(p: PodPlan, collectorEndpoint: string | undefined): Promise<LabContainer> {
    const uid = this.uidOf(p);
    const configFile = podConfigFile(this.stateDir, p);
    writeAtomic(configFile, tunablesOf(p, 0));
    const env: Record<string, string> = {
      HOTROD_ROLE: p.app,
      HOTROD_PORT: String(APP_PORT),
      HOTROD_POD: podKey(p),
      HOTROD_MODE: p.mode,
      HOTROD_CONFIG: configFile,
      // as the kubelet injects the Services of the pod's namespace
      ...Object.fromEntries(this.plan.services.filter((s) => s.namespace === p.namespace).flatMap((s) => [
        [`${s.name.toUpperCase()}_SERVICE_HOST`, s.ip],
        [`${s.name.toUpperCase()}_SERVICE_PORT`, String(s.port)],
      ])),
    };
    if (p.mode === 'instrumented') {
      Object.assign(env, {
        OTEL_SERVICE_NAME: p.app,
        OTEL_RESOURCE_ATTRIBUTES: `k8s.pod.name=${p.name},k8s.namespace.name=${p.namespace},k8s.node.name=${p.node},k8s.pod.uid=${uid}`,
        OTEL_BSP_SCHEDULE_DELAY: '200',
      });
      if (collectorEndpoint) env.OTEL_EXPORTER_OTLP_ENDPOINT = collectorEndpoint;
    }
    const [cmd, args] = p.runtime === 'python'
      ? [PYTHON_BIN, [join(LAB_DIR, 'apps', 'hotrod.py')]]
      : [process.execPath, [join(LAB_DIR, 'apps', 'hotrod.ts')]];
    const { container, d } = this.startContainer(p, uid, p.app, cmd, args, env);
    // readiness as the kubelet probes it: from the node
    const node = this.nodes.get(p.node) as ClusterNode;
    const url = `http://${p.ip}:${APP_PORT}/healthz`;
    const log = join(this.logs, `${p.namespace}.${p.name}.log`);
    const wait = { timeoutMs: READY_TIMEOUT_MS, abort: () => this.aborted() ?? exitedWithLog(d, log) };
    // its log says when it listens (a cheap poll while a dozen runtimes start on two cores), then one probe
    await waitFor(`${podKey(p)} to log that it listens (${log})`, () => readText(log).includes('listening on'), wait);
    await waitFor(`${podKey(p)} to answer ${url} from ${node.name}`, async () => (await httpStatus(node.netns, url)) === 200, { ...wait, intervalMs: 100 });
    return container;
  }

  private async startIngress(p: PodPlan, url: string, clientNs: string): Promise<LabContainer> {
    const servers = this.plan.ingress.rules.map((r) => {
      const [ns, app] = r.service.split('/');
      const s = this.plan.services.find((x) => x.namespace === ns && x.name === app) as ServicePlan;
      return { host: r.host, endpoints: s.endpoints.map((e) => `${e}:${s.targetPort}`) };
    });
    const files = writeIngressConfig(this.stateDir, servers, { port: 80, requestId: this.plan.ingress.requestId });
    const { container, d } = this.startContainer(p, this.uidOf(p), 'controller', NGINX_BIN, nginxArgs(files), {});
    // ready along the real path: from the client, through the node's hostPort DNAT
    await waitFor(`the ingress to answer ${url}/healthz from the client`, async () => (await httpStatus(clientNs, `${url}/healthz`)) > 0, {
      timeoutMs: READY_TIMEOUT_MS,
      intervalMs: 100,
      abort: () => this.aborted() ?? exitedWithLog(d, files.errorLog),
    });
    return container;
  }

  private uidOf(p: PodPlan): string {
    return this.podUid.get(podKey(p)) as string;
  }

  private clusterPod(p: PodPlan, net: PodNet, c: LabContainer): ClusterPod {
    const labels: Record<string, string> = p.app === 'ingress'
      ? { 'app.kubernetes.io/name': 'ingress-nginx', 'app.kubernetes.io/component': 'controller' }
      : { app: p.app, 'app.kubernetes.io/name': p.app, 'app.kubernetes.io/part-of': this.plan.name };
    return {
      name: p.name, namespace: p.namespace, uid: net.uid, netns: net.netns, netnsPath: netnsPath(net.netns), netnsInode: netnsInode(net.netns), ip: p.ip,
      hostVeth: net.hostVeth, pids: [c.pid], containers: [c], node: p.node, app: p.app, runtime: p.runtime, mode: p.mode, labels, mtu: POD_MTU,
      ...(p.app === 'ingress' ? {} : { configFile: podConfigFile(this.stateDir, p) }),
    };
  }
}

interface PodNet {
  netns: string;
  uid: string;
  hostVeth: string;
}

function exitedWithLog(d: Detached, log: string): string | undefined {
  const st = d.exited();
  return st && `exited (code ${st.code}, signal ${st.signal}); log:\n${readText(log).slice(-2000)}`;
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

const podConfigFile = (stateDir: string, p: { namespace: string; name: string }) => join(stateDir, 'pods', `${p.namespace}.${p.name}.json`);

/** what hotrod reads from its config file: the topology's tunables and a fault's extra delay */
function tunablesOf(p: Pick<PodPlan, 'delayMs' | 'fanout' | 'routeBytes'>, extraDelayMs: number): Record<string, number> {
  const t: Record<string, number> = { extraDelayMs };
  if (p.delayMs !== undefined) t.delayMs = p.delayMs;
  if (p.fanout !== undefined) t.fanout = p.fanout;
  if (p.routeBytes !== undefined) t.routeBytes = p.routeBytes;
  return t;
}

/** Writes cluster.json and every node's pods file. */
function writeDescription(c: Cluster): void {
  for (const n of c.nodes) writeAtomic(n.podsFile, c.pods.filter((p) => p.node === n.name).map((p) => podRecord(p)));
  writeAtomic(join(c.stateDir, 'cluster.json'), c);
}

/** A pod as agent/src/k8s/pods-file.ts reads it (the one-node lab's PodRecord, plus the SDK's service name). */
function podRecord(p: ClusterPod): PodRecord {
  return {
    name: p.name, namespace: p.namespace, uid: p.uid, node: p.node, ip: p.ip, netns: p.netnsPath, netnsInode: p.netnsInode, hostVeth: p.hostVeth,
    containers: p.containers.map((c) => ({ name: c.name, pid: c.pid, id: c.id, ...(p.mode === 'instrumented' ? { serviceName: p.app } : {}) })),
    labels: p.labels,
  };
}

// ---- faults ----

const faultTarget = (f: FaultSpec) => (f.kind === 'rate' && f.node ? `node/${f.node}` : `pod/${f.pod}${f.kind === 'rate' ? `/${f.where}` : '/handler'}`);

/**
 * Puts a fault in force on a running cluster (replacing one on the same target): a tbf rate limit
 * on a pod's eth0 (what it sends), its host veth (what it receives) or a node's uplink; or a
 * handler delay (the pod's hotrod re-reads its config file at its next request).
 */
export async function applyFault(c: Cluster, raw: unknown, o: { save?: boolean } = {}): Promise<FaultSpec> {
  const f = checkFault(raw, 'fault', new Set(c.pods.map(podKey)), new Set(c.nodes.map((n) => n.name)));
  const pod = f.pod === undefined ? undefined : (c.pods.find((p) => podKey(p) === f.pod) as ClusterPod);
  if (f.kind === 'delay') {
    if (!pod?.configFile) throw new LabError(STRATA_ERR_FAULT, `fault: ${f.pod} has no handler to delay (only app pods do)`);
    writeAtomic(pod.configFile, { ...JSON.parse(readFileSync(pod.configFile, 'utf8')), extraDelayMs: f.delayMs });
  } else {
    const [netns, dev] = rateDevice(c, f, pod);
    await setRateLimit(netns, dev, f.rate, f.burst);
  }
  c.faults = [...c.faults.filter((x) => faultTarget(x) !== faultTarget(f)), f];
  if (o.save !== false) writeAtomic(join(c.stateDir, 'cluster.json'), c);
  return f;
}

/** Lifts every fault in force (or those on one pod or node). */
export async function clearFaults(c: Cluster, on?: { pod?: string; node?: string }): Promise<FaultSpec[]> {
  const lifted = c.faults.filter((f) => !on || (on.pod !== undefined && f.pod === on.pod) || (on.node !== undefined && f.kind === 'rate' && f.node === on.node));
  for (const f of lifted) {
    const pod = f.pod === undefined ? undefined : c.pods.find((p) => podKey(p) === f.pod);
    if (f.kind === 'delay') {
      if (pod?.configFile) writeAtomic(pod.configFile, { ...JSON.parse(readFileSync(pod.configFile, 'utf8')), extraDelayMs: 0 });
    } else {
      const [netns, dev] = rateDevice(c, f, pod);
      await clearRateLimit(netns, dev);
    }
  }
  c.faults = c.faults.filter((f) => !lifted.includes(f));
  writeAtomic(join(c.stateDir, 'cluster.json'), c);
  return lifted;
}

function rateDevice(c: Cluster, f: Extract<FaultSpec, { kind: 'rate' }>, pod: ClusterPod | undefined): [string, string] {
  if (f.node !== undefined) return [(c.nodes.find((n) => n.name === f.node) as ClusterNode).netns, UPLINK];
  if (!pod) throw new LabError(STRATA_ERR_FAULT, 'fault: no pod');
  if (f.where === 'eth0') return [pod.netns, 'eth0'];
  return [(c.nodes.find((n) => n.name === pod.node) as ClusterNode).netns, pod.hostVeth];
}

/** The cluster with this prefix, or STRATA_ERR_LAB_NOT_UP. */
export function requireCluster(prefix: string, opts: { stateDir?: string } = {}): Cluster {
  const c = loadCluster(prefix, opts);
  if (!c) throw new LabError(STRATA_ERR_LAB_NOT_UP, `no cluster with prefix ${prefix} is up (${join(opts.stateDir ?? defaultStateDir(prefix), 'cluster.json')} missing): node lab/cli.ts cluster up --prefix ${prefix}`);
  return c;
}

/** The cluster's client as the one-node lab's client helpers take it (runClient, curlFromClient): requests go to the ingress. */
export const clientOf = (c: Cluster): { stateDir: string; clientNetns: string; nginxUrl: string } => ({
  stateDir: c.stateDir,
  clientNetns: c.client.netns,
  nginxUrl: c.ingress.url,
});
