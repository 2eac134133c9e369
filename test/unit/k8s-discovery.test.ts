// The attach loop without a kernel: a /proc and a cgroup2 tree made of files in a temporary
// directory (the same files the scan reads on a node), the node's links and linkInfo as a table.
// What is checked: pods found by their kubelet-style cgroups and placed by netns, veth and cgroup;
// the targets applied and removed as pods, selectors and interfaces change; names and service
// names per container; unknown pods; proxies; bounds; failures retried and warned once.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Discovery, type DiscoveryOptions, targetKey } from '../../agent/src/k8s/discovery.ts';
import type { PodMeta } from '../../agent/src/k8s/enrich.ts';
import { type NodeLink, parseMonitorLine } from '../../agent/src/k8s/links.ts';
import { podSelector } from '../../agent/src/k8s/selector.ts';
import type { PodSource, SourceStats } from '../../agent/src/k8s/source.ts';
import { PodTopology } from '../../agent/src/k8s/topology.ts';
import type { TraceTarget } from '../../agent/src/probes/registry.ts';

const NODE_NS = 4026531840;
const root = mkdtempSync(join(tmpdir(), 'sdi-disc-'));
after(() => rmSync(root, { recursive: true, force: true }));
let seq = 0;

const uid = (n: number) => `${String(n).padStart(8, '0')}-aaaa-4bbb-8ccc-${String(n).padStart(12, '0')}`;
const cid = (n: number) => String(n).repeat(64).slice(0, 64);

/** a node: /proc entries and a cgroup2 tree under one temp dir */
class FakeNode {
  readonly proc: string;
  readonly cgroup: string;
  links: NodeLink[] = [{ ifindex: 1, name: 'lo' }, { ifindex: 2, name: 'eth0' }];
  /** `${netns path}|${ifname}` -> linkInfo answer */
  readonly linkInfos = new Map<string, { ifindex: number; iflink: number }>();

  constructor() {
    const dir = join(root, `n${seq++}`);
    this.proc = join(dir, 'proc');
    this.cgroup = join(dir, 'cgroup');
    mkdirSync(this.proc, { recursive: true });
    mkdirSync(this.cgroup, { recursive: true });
  }

  /** a process in the kubelet cgroup of pod n, container c (v2 path), in netns ns */
  proc1(pid: number, o: { pod?: number; container?: number; comm?: string; netns?: number; env?: Record<string, string>; path?: string }): void {
    const d = join(this.proc, String(pid));
    mkdirSync(join(d, 'ns'), { recursive: true });
    const path = o.path ?? (o.pod !== undefined ? `/kubepods/besteffort/pod${uid(o.pod)}/${cid(o.container ?? 9)}` : '/system.slice/x.service');
    mkdirSync(join(this.cgroup, path), { recursive: true });
    writeFileSync(join(d, 'cgroup'), `4:pids:${path}\n0::${path}\n`);
    writeFileSync(join(d, 'comm'), `${o.comm ?? 'app'}\n`);
    writeFileSync(join(d, 'environ'), Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}\0`).join(''));
    symlinkSync(`net:[${o.netns ?? NODE_NS}]`, join(d, 'ns', 'net'));
  }

  kill(pid: number): void {
    rmSync(join(this.proc, String(pid)), { recursive: true, force: true });
  }

  /** pod n's sandbox netns: its eth0 (ifindex 3 inside) is the peer of host veth `veth` */
  podNet(pid: number, veth: string, ifindex: number): void {
    this.links.push({ ifindex, name: veth, kind: 'veth', peerIfindex: 3 });
    this.linkInfos.set(`${this.proc}/${pid}/ns/net|eth0`, { ifindex: 3, iflink: ifindex });
  }

  cgroupId(path: string): number {
    return statSync(join(this.cgroup, path)).ino;
  }
}

class FakeSource implements PodSource {
  readonly kind = 'kubernetes';
  readonly authoritative = false;
  metas: PodMeta[] = [];
  isStale = false;
  async start(): Promise<void> {}
  poll(): boolean {
    return false;
  }
  pods(): readonly PodMeta[] {
    return this.metas;
  }
  stale(): boolean {
    return this.isStale;
  }
  stats(): SourceStats {
    return { lists: 1, listErrors: 0, watchErrors: 0, relists: 0 };
  }
  async stop(): Promise<void> {}
}

const meta = (n: number, o: Partial<PodMeta> = {}): PodMeta => ({
  uid: uid(n), name: `pod-${n}`, namespace: 'shop', node: 'n1', labels: {}, annotations: {}, hostNetwork: false, ips: [], containers: [], ...o,
});

function setup(over: Partial<DiscoveryOptions> = {}) {
  const node = new FakeNode();
  const source = new FakeSource();
  const topology = new PodTopology('n1', NODE_NS);
  const applied = new Map<string, TraceTarget>();
  const calls: string[] = [];
  const logs: string[] = [];
  let failOn: string | undefined;
  const d = new Discovery({
    nodeName: 'n1', nodeNetns: '', nodeNetnsInode: NODE_NS, interfaces: [], select: podSelector({ namespaces: [], excludeNamespaces: [], labelSelector: '' }),
    traceProxies: true, proxyComms: ['nginx', 'envoy'], unknownPods: 'ignore', procRoot: node.proc, cgroupRoot: node.cgroup, procScanIntervalMs: 60_000,
    maxProcesses: 1000, maxPods: 100, unmappedVethGraceMs: 10_000, log: (m) => logs.push(m), watchLinks: false,
    linkInfo: (ifname, netns) => {
      const r = node.linkInfos.get(`${netns}|${ifname}`);
      if (!r) throw Object.assign(new Error(`${ifname}@${netns}: no such device`), { code: 'ENODEV' });
      return r;
    },
    listLinks: async () => node.links,
    ...over,
  }, source, topology, (t, on) => {
    const k = targetKey(t);
    if (on && k === failOn) throw new Error(`refused ${k}`);
    calls.push(`${on ? '+' : '-'}${k}`);
    if (on) applied.set(k, t);
    else applied.delete(k);
  });
  const keys = () => [...applied.keys()].sort();
  return { node, source, topology, d, keys, calls, logs, fail: (k: string | undefined) => (failOn = k) };
}

test('a pod known by uid is found by its cgroup: netns, host veth (its eth0\'s peer), own interface; names per container', async () => {
  const s = setup();
  s.node.proc1(100, { pod: 1, container: 1, netns: 4026532001, comm: 'pause' });
  s.node.proc1(101, { pod: 1, container: 2, netns: 4026532001, comm: 'node', env: { OTEL_SERVICE_NAME: 'checkout-api', PATH: '/bin' } });
  s.node.proc1(102, { pod: 1, container: 3, netns: 4026532001, comm: 'sidecar' });
  s.node.podNet(100, 'veth1a2b', 7);
  s.source.metas = [meta(1, {
    labels: { 'app.kubernetes.io/name': 'checkout' }, ips: ['10.244.1.5', 'fd00::5'],
    containers: [{ name: 'api', id: cid(2) }, { name: 'sidecar', id: cid(3) }],
  })];
  await s.d.start();
  assert.deepEqual(s.keys(), ['iface:veth1a2b:7:p', 'netns:4026532001', 'poddev:4026532001:3']);
  const p = s.topology.podByNetns(4026532001);
  assert.equal(p?.name, 'pod-1');
  assert.equal(s.topology.podByVeth('veth1a2b'), p);
  assert.equal(s.topology.podByIp('fd00::5'), p, 'v6 and v4 pod IPs');
  // the container's OTEL_SERVICE_NAME from its process, else the pod's service name; the sandbox is no container
  assert.deepEqual(p?.container?.(101), { name: 'api', serviceName: 'checkout-api' });
  assert.deepEqual(p?.container?.(102), { name: 'sidecar', serviceName: 'checkout' });
  assert.equal(p?.container?.(100), undefined);
  assert.equal(s.d.stats.podsTraced, 1);
  assert.equal(s.d.stats.podsPending, 0);
  await s.d.stop();
});

test('pods come and go: targets and topology follow, level-triggered', async () => {
  const s = setup();
  s.node.proc1(200, { pod: 2, netns: 4026532002 });
  s.node.podNet(200, 'vethb', 8);
  await s.d.start();
  assert.deepEqual(s.keys(), [], 'no pod known: nothing traced (unknownPods ignore)');
  assert.equal(s.d.stats.unknownPods, 0);
  s.source.metas = [meta(2)];
  await s.d.reconcile();
  assert.deepEqual(s.keys(), ['iface:vethb:8:p', 'netns:4026532002', 'poddev:4026532002:3']);
  // the pod goes: the source forgets it, its processes and veth go
  s.source.metas = [];
  s.node.kill(200);
  s.node.links = s.node.links.filter((l) => l.name !== 'vethb');
  await s.d.reconcile();
  assert.deepEqual(s.keys(), []);
  assert.equal(s.topology.podByNetns(4026532002), undefined);
  assert.equal(s.topology.pods().length, 0);
  await s.d.stop();
});

test('selectors leave pods out, unless they run a proxy; a hostNetwork pod is traced by its containers\' cgroups', async () => {
  const s = setup({ select: podSelector({ namespaces: ['shop'], excludeNamespaces: [], labelSelector: 'tier=front' }) });
  s.node.proc1(300, { pod: 3, netns: 4026532003 });
  s.node.podNet(300, 'vethc', 9);
  s.node.proc1(310, { pod: 4, netns: 4026532004, comm: 'nginx' });
  s.node.podNet(310, 'vethd', 10);
  s.node.proc1(320, { pod: 5, container: 1, netns: NODE_NS, comm: 'agent' });
  s.node.proc1(321, { pod: 5, container: 2, netns: NODE_NS, comm: 'agent' });
  s.source.metas = [
    meta(3, { labels: { tier: 'back' } }),
    meta(4, { namespace: 'ingress', labels: {} }),
    meta(5, { labels: { tier: 'front' }, hostNetwork: true }),
  ];
  await s.d.start();
  const cg1 = s.node.cgroupId(`/kubepods/besteffort/pod${uid(5)}/${cid(1)}`);
  const cg2 = s.node.cgroupId(`/kubepods/besteffort/pod${uid(5)}/${cid(2)}`);
  assert.deepEqual(s.keys(), [`cgroup:${cg1}`, `cgroup:${cg2}`, 'iface:vethd:10:p', 'netns:4026532004', 'poddev:4026532004:3'].sort());
  assert.equal(s.topology.podByCgroup(cg2)?.name, 'pod-5');
  // the unselected pod is still named (hop names), just not traced
  assert.equal(s.topology.podByNetns(4026532003)?.name, 'pod-3');
  // labels change: the pod is selected now
  s.source.metas = [meta(3, { labels: { tier: 'front' } }), ...s.source.metas.slice(1)];
  await s.d.reconcile();
  assert.ok(s.keys().includes('netns:4026532003'));
  await s.d.stop();
});

test('traceProxies: a proxy outside any pod is traced by its cgroup, never the root cgroup', async () => {
  const s = setup();
  s.node.proc1(400, { comm: 'nginx', path: '/system.slice/nginx.service' });
  s.node.proc1(401, { comm: 'envoy', path: '/' });
  s.node.proc1(402, { comm: 'bash', path: '/user.slice/session-1.scope' });
  await s.d.start();
  assert.deepEqual(s.keys(), [`cgroup:${s.node.cgroupId('/system.slice/nginx.service')}`]);
  await s.d.stop();
  const off = setup({ traceProxies: false });
  off.node.proc1(400, { comm: 'nginx', path: '/system.slice/nginx.service' });
  await off.d.start();
  assert.deepEqual(off.keys(), []);
  await off.d.stop();
});

test('unknown pods (in /proc, not in the source): traced without names when unknownPods=trace, renamed when the source knows them', async () => {
  const s = setup({ unknownPods: 'trace' });
  s.node.proc1(500, { pod: 6, netns: 4026532006, comm: 'java' });
  s.node.podNet(500, 'vethf', 11);
  s.source.isStale = true;
  await s.d.start();
  assert.deepEqual(s.keys(), ['iface:vethf:11:p', 'netns:4026532006', 'poddev:4026532006:3']);
  const p = s.topology.podByNetns(4026532006);
  assert.deepEqual([p?.unknown, p?.name, p?.uid], [true, '', uid(6)]);
  const unknownRev = p?.rev ?? 0;
  assert.equal(s.d.stats.unknownPods, 1);
  // the API server answers: same targets, the pod has its name now (a new revision)
  s.source.isStale = false;
  s.source.metas = [meta(6, { labels: { 'app.kubernetes.io/instance': 'billing' } })];
  await s.d.reconcile();
  assert.deepEqual(s.keys(), ['iface:vethf:11:p', 'netns:4026532006', 'poddev:4026532006:3']);
  const q = s.topology.podByNetns(4026532006);
  assert.equal(q, p, 'the same object, updated in place: connections already tracked see the names');
  assert.deepEqual([q?.unknown, q?.name, q?.workload], [undefined, 'pod-6', 'billing']);
  assert.ok((q?.rev ?? 0) > unknownRev, 'a new revision: span resources are rebuilt');
  assert.ok(!s.calls.some((c) => c.startsWith('-')), 'nothing detached on the way');
  await s.d.stop();
});

test('discovery.podCgroupParent: pods of another node sharing the kernel (another kubepods parent) are not this node\'s', async () => {
  const s = setup({ unknownPods: 'trace', podCgroupParent: '/nodeA/' });
  s.node.proc1(600, { pod: 7, netns: 4026532007, comm: 'java', path: `/nodeA/kubepods/besteffort/pod${uid(7)}/${cid(1)}` });
  s.node.podNet(600, 'vethg', 12);
  s.node.proc1(610, { pod: 8, netns: 4026532008, comm: 'java', path: `/nodeB/kubepods/besteffort/pod${uid(8)}/${cid(1)}` });
  s.node.podNet(610, 'vethh', 13);
  s.source.isStale = true;
  await s.d.start();
  assert.equal(s.d.stats.unknownPods, 1, 'only the pod under /nodeA/');
  assert.ok(s.keys().includes('netns:4026532007'));
  assert.ok(!s.keys().includes('netns:4026532008'), `node B's pod not traced: ${s.keys().join(' ')}`);
  assert.equal(s.topology.podByNetns(4026532008), undefined);
  await s.d.stop();
  // without the setting, both are pods of this node
  const all = setup({ unknownPods: 'trace' });
  all.node.proc1(600, { pod: 7, netns: 4026532007, comm: 'java', path: `/nodeA/kubepods/besteffort/pod${uid(7)}/${cid(1)}` });
  all.node.proc1(610, { pod: 8, netns: 4026532008, comm: 'java', path: `/nodeB/kubepods/besteffort/pod${uid(8)}/${cid(1)}` });
  all.source.isStale = true;
  await all.d.start();
  assert.equal(all.d.stats.unknownPods, 2);
  await all.d.stop();
});

test('a new veth is traced at once; detached when an unselected pod turns out behind it, or after the grace without one', async () => {
  const s = setup({ unmappedVethGraceMs: 200, select: podSelector({ namespaces: ['shop'], excludeNamespaces: [], labelSelector: '' }) });
  await s.d.start();
  const d = s.d as unknown as { onLink(e: { ifindex: number; name: string; deleted: boolean; at: number }): void };
  // a veth appears (the CNI's ADD): no pod known behind it yet
  s.node.links.push({ ifindex: 20, name: 'vethnew', kind: 'veth' });
  d.onLink({ ifindex: 20, name: 'vethnew', deleted: false, at: performance.now() });
  await s.d.reconcile();
  assert.deepEqual(s.keys(), ['iface:vethnew:20:p']);
  assert.equal(s.d.stats.attachLatency.count, 1, 'event -> attached measured');
  // its pod is in another namespace: not selected, detached
  s.node.proc1(600, { pod: 7, netns: 4026532007 });
  s.node.linkInfos.set(`${s.node.proc}/600/ns/net|eth0`, { ifindex: 3, iflink: 20 });
  s.source.metas = [meta(7, { namespace: 'other' })];
  s.node.proc1(601, {}); // any new process: the scan reads it
  (s.d as unknown as { lastScan: number }).lastScan = 0;
  await s.d.reconcile();
  assert.deepEqual(s.keys(), []);
  // another veth, nobody behind it: kept for the grace, then detached
  s.node.links.push({ ifindex: 21, name: 'vethorphan', kind: 'veth' });
  d.onLink({ ifindex: 21, name: 'vethorphan', deleted: false, at: performance.now() });
  await s.d.reconcile();
  assert.deepEqual(s.keys(), ['iface:vethorphan:21:p']);
  // poll until the grace (200 ms) has passed and a reconcile detached it, with a deadline
  for (const deadline = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 20))) {
    await s.d.reconcile();
    if (s.keys().length === 0 || Date.now() > deadline) break;
  }
  assert.deepEqual(s.keys(), []);
  // not a veth (a bridge): never
  s.node.links.push({ ifindex: 22, name: 'br9', kind: 'bridge' });
  d.onLink({ ifindex: 22, name: 'br9', deleted: false, at: performance.now() });
  await s.d.reconcile();
  assert.deepEqual(s.keys(), []);
  await s.d.stop();
});

test('a veth event attaches at once, before any listing shows it; a listing that does not show it yet keeps it', async () => {
  const s = setup();
  await s.d.start();
  const d = s.d as unknown as { onLink(e: { ifindex: number; name: string; deleted: boolean; at: number; kind?: string }): void };
  d.onLink({ ifindex: 40, name: 'vethfast', deleted: false, at: performance.now(), kind: 'veth' });
  assert.deepEqual(s.keys(), ['iface:vethfast:40:p'], 'applied from the event itself');
  await s.d.reconcile(); // the listing lags: no vethfast in it
  assert.deepEqual(s.keys(), ['iface:vethfast:40:p']);
  assert.ok(!s.calls.includes('-iface:vethfast:40:p'));
  // gone before any listing saw it
  d.onLink({ ifindex: 40, name: 'vethfast', deleted: true, at: performance.now(), kind: 'veth' });
  await s.d.reconcile();
  assert.deepEqual(s.keys(), []);
  // a bridge or an uplink's event attaches nothing by itself
  d.onLink({ ifindex: 41, name: 'br7', deleted: false, at: performance.now(), kind: 'bridge' });
  assert.deepEqual(s.keys(), []);
  await s.d.stop();
});

test('uplinks are targets from the start; a failing target is retried each reconcile and warned about once', async () => {
  const s = setup({ interfaces: ['eth0', 'eth9'] });
  s.fail('iface:eth9:0:u');
  await s.d.start();
  assert.deepEqual(s.keys(), ['iface:eth0:2:u']);
  await s.d.reconcile();
  await s.d.reconcile();
  assert.equal(s.logs.filter((l) => l.includes('refused iface:eth9')).length, 1);
  assert.equal(s.d.stats.applyErrors, 3);
  s.fail(undefined);
  await s.d.reconcile();
  assert.deepEqual(s.keys(), ['iface:eth0:2:u', 'iface:eth9:0:u']);
  await s.d.stop();
});

test('bounds: pods beyond maxPods are not traced (counted); the scan remembers at most maxProcesses', async () => {
  const s = setup({ maxPods: 2, maxProcesses: 3 });
  for (let i = 0; i < 4; i++) {
    s.node.proc1(700 + i, { pod: 10 + i, netns: 4026532100 + i });
    s.node.podNet(700 + i, `vm${i}`, 30 + i);
  }
  s.source.metas = [0, 1, 2, 3].map((i) => meta(10 + i));
  await s.d.start();
  assert.equal(s.d.stats.podsOverLimit, 2);
  assert.equal(s.d.scanner.stats.processes, 3);
  assert.equal(s.d.scanner.stats.overLimit, 1);
  assert.ok(s.d.stats.podsTraced <= 2);
  await s.d.stop();
});

test('the pod\'s eth0: without setns (no CAP_SYS_ADMIN) from the sysfs of its mount namespace; a pair must point both ways', async () => {
  const s = setup();
  s.node.proc1(800, { pod: 20, netns: 4026532020 });
  // linkInfo refuses (EPERM); /proc/800/root/sys/class/net/eth0 answers
  mkdirSync(join(s.node.proc, '800', 'root', 'sys', 'class', 'net', 'eth0'), { recursive: true });
  writeFileSync(join(s.node.proc, '800', 'root', 'sys', 'class', 'net', 'eth0', 'ifindex'), '3\n');
  writeFileSync(join(s.node.proc, '800', 'root', 'sys', 'class', 'net', 'eth0', 'iflink'), '50\n');
  s.node.links.push({ ifindex: 50, name: 'vethsys', kind: 'veth', peerIfindex: 3 });
  // another pod's eth0 names ifindex 51, whose peer is not it (ifindex 9 elsewhere): no veth for it
  s.node.proc1(810, { pod: 21, netns: 4026532021 });
  s.node.linkInfos.set(`${s.node.proc}/810/ns/net|eth0`, { ifindex: 3, iflink: 51 });
  s.node.links.push({ ifindex: 51, name: 'vethother', kind: 'veth', peerIfindex: 9 });
  s.source.metas = [meta(20), meta(21)];
  await s.d.start();
  assert.ok(s.keys().includes('iface:vethsys:50:p'), s.keys().join() + s.logs.join());
  assert.ok(!s.keys().some((k) => k.startsWith('iface:vethother')));
  assert.ok(s.keys().includes('netns:4026532021'), 'its netns is traced all the same');
  assert.equal(s.d.stats.podsPending, 1);
  await s.d.stop();
});

test('a hostNetwork pod whose processes have no cgroup v2 id is not traced, with one warning', async () => {
  const s = setup();
  s.node.proc1(900, { pod: 30, netns: NODE_NS, path: `/../../pod${uid(30)}/${cid(1)}` });
  s.source.metas = [meta(30, { hostNetwork: true })];
  await s.d.start();
  await s.d.reconcile();
  assert.deepEqual(s.keys(), []);
  assert.equal(s.logs.filter((l) => /hostNetwork pod shop\/pod-30 is not traced/.test(l)).length, 1, s.logs.join());
  await s.d.stop();
});

test('ip -d -o monitor link lines: index, name, kind, peer; deletions', () => {
  const add = '7: vethab12@if2: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether ea:b8:ef:a0:67:2a brd ff:ff:ff:ff:ff:ff link-netnsid 0 promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \\    veth numtxqueues 2 numrxqueues 2 gso_max_size 65536';
  assert.deepEqual(parseMonitorLine(add, 5), { ifindex: 7, name: 'vethab12', deleted: false, at: 5, kind: 'veth', peerIfindex: 2 });
  const br = '3: br0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN group default \\    link/ether 16:7a:0c:47:b6:4c brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \\    bridge forward_delay 1500 hello_time 200';
  assert.equal(parseMonitorLine(br, 0)?.kind, 'bridge');
  const nic = '2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP group default \\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 9000 numtxqueues 1 numrxqueues 1';
  assert.equal(parseMonitorLine(nic, 0)?.kind, undefined);
  assert.deepEqual(parseMonitorLine('Deleted 7: vethab12@NONE: <BROADCAST,MULTICAST> mtu 1500', 1), { ifindex: 7, name: 'vethab12', deleted: true, at: 1 });
  assert.equal(parseMonitorLine('garbage', 0), undefined);
});

test('the agent\'s own pod (the DaemonSet\'s) is never traced', async () => {
  const s = setup({ selfPid: 950, unknownPods: 'trace' });
  await s.d.stop();
  const node = s.node;
  node.proc1(950, { pod: 40, netns: 4026532040, comm: 'node' });
  node.podNet(950, 'vethself', 60);
  node.proc1(960, { pod: 41, netns: 4026532041 });
  node.podNet(960, 'vethother', 61);
  const d = new Discovery({ ...(s.d as unknown as { o: DiscoveryOptions }).o, selfPid: 950 }, s.source, s.topology, () => {});
  assert.equal(d.selfPod, uid(40));
  s.source.metas = [meta(40), meta(41)];
  await d.start();
  assert.deepEqual(d.targets().map(targetKey).sort(), ['iface:vethother:61:p', 'netns:4026532041', 'poddev:4026532041:3']);
  await d.stop();
});

test('a single-container pod whose status has no container ID yet: its processes are that container', async () => {
  const s = setup();
  s.node.proc1(970, { pod: 50, container: 1, netns: 4026532050, comm: 'pause' });
  s.node.proc1(971, { pod: 50, container: 2, netns: 4026532050, comm: 'java', env: { OTEL_SERVICE_NAME: 'orders' } });
  s.node.podNet(970, 'vethsingle', 70);
  s.source.metas = [meta(50, { containers: [{ name: 'app' }] })];
  await s.d.start();
  const p = s.topology.podByNetns(4026532050);
  assert.deepEqual(p?.container?.(971), { name: 'app', serviceName: 'orders' });
  assert.equal(p?.container?.(970), undefined, 'the sandbox is no container');
  // the status arrives: by ID from then on
  s.source.metas = [meta(50, { containers: [{ name: 'app', id: cid(2) }] })];
  await s.d.reconcile();
  assert.equal(s.topology.podByNetns(4026532050)?.container?.(971)?.name, 'app');
  await s.d.stop();
});
