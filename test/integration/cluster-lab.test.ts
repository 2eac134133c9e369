// Integration test of the cluster lab (lab/cluster/): the default 4-node topology on the real
// kernel (network namespaces, VXLAN, Linux bridges, an OVS userspace-datapath bridge, nftables,
// tbf), the HotROD-style app in its three modes, NGINX, the collector relay, faults, cgroups, and
// that teardown (down, a SIGINT during up, the reaper after a SIGKILL) leaves nothing behind.
// Needs root, nginx, nftables, python3, curl and Open vSwitch: under CI=true their absence fails
// the test, elsewhere it skips (OVS alone: the node falls back to a Linux bridge, and says so).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseProcCgroup } from '../../agent/src/k8s/cgroup.ts';
import { readPodsFile } from '../../agent/src/k8s/pods-file.ts';
import { hierarchies } from '../../lab/cgroups.ts';
import {
  applyFault, clearFaults, type Cluster, type ClusterPod, clientOf, clusterDown, clusterPrerequisites, clusterUp, DEFAULT_TOPOLOGY, loadCluster,
} from '../../lab/cluster/cluster.ts';
import { ovsMissing } from '../../lab/cluster/ovs.ts';
import { loadTopology } from '../../lab/cluster/topology.ts';
import { STRATA_ERR_FAULT } from '../../lab/errors.ts';
import { waitFor } from '../../lab/exec.ts';
import { curlFromClient, defaultStateDir, inNetns, runClient } from '../../lab/lab.ts';
import { isAlive, readProcRecords } from '../../lab/procs.ts';
import type { DecodedSpan } from '../helpers/otlp-decode.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

const ROOT = join(import.meta.dirname, '../..');
const ci = process.env.CI === 'true';

function missingPrerequisite(): string | undefined {
  if (process.getuid?.() !== 0) return 'root is required (network namespaces)';
  const missing = clusterPrerequisites(loadTopology(DEFAULT_TOPOLOGY));
  if (missing.length) return missing.join('; ');
  // OVS: scripts/setup.sh installs it, so under CI it must be there; elsewhere the fallback is tested
  if (ci && ovsMissing()) return ovsMissing();
  return undefined;
}
const missing = missingPrerequisite();
const skip = missing && !ci ? `skipped: ${missing}` : false;
const newPrefix = () => `scl${randomBytes(2).toString('hex')}`;

const ipJson = <T>(ns: string, ...args: string[]): T => JSON.parse(execFileSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8' })) as T;
const labNetns = (prefix: string) => readdirSafe('/run/netns').filter((n) => n.startsWith(`${prefix}-`));
function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** exists and is not a zombie (a reparented zombie waits for a reaper; it runs nothing) */
const running = (pid: number) => isAlive(pid);

/** every running process whose cgroup or command line belongs to the lab with this prefix */
function labProcesses(prefix: string, stateDir: string): string[] {
  const found: string[] = [];
  for (const d of readdirSafe('/proc')) {
    if (!/^\d+$/.test(d) || !running(Number(d))) continue;
    try {
      const cg = readFileSync(`/proc/${d}/cgroup`, 'utf8');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cg.includes(`/${prefix}.lab/`) || cmd.includes(stateDir)) found.push(`${d} ${cmd.slice(0, 120)}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/** Nothing of the lab with this prefix is left: netns, links and nft tables in the root netns, cgroups, processes, state. */
function assertNothingLeft(prefix: string, stateDir: string, pids: number[]): void {
  assert.deepEqual(labNetns(prefix), [], 'no netns of the lab remains');
  const rootLinks = (JSON.parse(execFileSync('ip', ['-j', 'link'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.includes(prefix));
  assert.deepEqual(rootLinks, [], 'no link of the lab in the root netns');
  assert.doesNotMatch(execFileSync('/usr/sbin/nft', ['list', 'tables'], { encoding: 'utf8' }), new RegExp(`${prefix}_`), 'no nft table of the lab in the root netns');
  for (const h of hierarchies().all) assert.equal(existsSync(join(h, `${prefix}.lab`)), false, `the lab's cgroups removed from ${h}`);
  assert.deepEqual(pids.filter(running), [], 'no recorded process of the lab runs');
  assert.deepEqual(labProcesses(prefix, stateDir), [], 'no process in the lab cgroups or running from its state dir');
  assert.equal(existsSync(stateDir), false, 'state dir removed');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const podOf = (c: Cluster, key: string) => c.pods.find((p) => `${p.namespace}/${p.name}` === key) as ClusterPod;

interface Dispatch {
  customer: { id: string; name: string; location: string };
  driver: { id: string; location: string; etaS: number };
  routes: number;
  served: { frontend: string; customer: string; driver: string; route: string[] };
  traceparents: { frontend: string | null; customer: string | null; driver: string | null; route: (string | null)[] };
}

async function dispatch(c: Cluster, host: string, customer: string, headers: string[] = []): Promise<Dispatch> {
  const r = await curlFromClient(clientOf(c), `${c.ingress.url}/dispatch?customer=${customer}`, ['-H', `Host: ${host}`, ...headers.flatMap((h) => ['-H', h])]);
  assert.equal(r.status, 200, `dispatch via ${host}: ${r.body}`);
  return JSON.parse(r.body) as Dispatch;
}

/** client-side latency of n sequential dispatches on one keep-alive connection, ms */
async function latencies(c: Cluster, host: string, n: number): Promise<number[]> {
  const res = await runClient(clientOf(c), { paths: Array.from({ length: n }, () => '/dispatch?customer=303'), headers: { Host: host }, keepalive: true });
  for (const r of res) assert.equal(r.status, 200, `${host}: ${r.error ?? r.status}`);
  return res.map((r) => r.ms);
}

describe('cluster lab: the default 4-node topology (VXLAN, OVS, Services, ingress, HotROD in three modes)', { skip }, () => {
  const prefix = newPrefix();
  const stateDir = defaultStateDir(prefix);
  const receiver = new OtlpReceiver();
  let c: Cluster;
  let upMs = 0;

  before(async () => {
    if (missing) throw new Error(`CI=true but ${missing}`);
    await receiver.start();
    const t0 = performance.now();
    c = await clusterUp({ prefix, otlpEndpoint: `http://127.0.0.1:${receiver.port}` });
    upMs = performance.now() - t0;
    console.log(`# clusterUp ${prefix}: ${Math.round(upMs)} ms (4 nodes, ${c.pods.length} pods)`);
  });
  after(async () => {
    await clusterDown(prefix);
    await receiver.stop();
  });

  it('describes what it built: nodes, pod CIDRs, VXLAN, bridges (node-3 OVS), pods -> nodes, per-node pods files', async () => {
    assert.deepEqual(loadCluster(prefix), JSON.parse(JSON.stringify(c)), 'cluster.json is the description clusterUp returned');
    assert.deepEqual(c.nodes.map((n) => [n.name, n.ip, n.podCidr, n.bridge.requested]), [
      ['node-1', '172.18.0.11', '10.244.1.0/24', 'linux'],
      ['node-2', '172.18.0.12', '10.244.2.0/24', 'linux'],
      ['node-3', '172.18.0.13', '10.244.3.0/24', 'ovs'],
      ['node-4', '172.18.0.14', '10.244.4.0/24', 'linux'],
    ]);
    for (const n of c.nodes) {
      const [vx] = ipJson<{ mtu: number; address: string; linkinfo: { info_kind: string; info_data: { id: number; port: number; local: string; learning: boolean } } }[]>(n.netns, '-d', 'link', 'show', 'flannel.1');
      assert.equal(vx?.linkinfo.info_kind, 'vxlan', `${n.name}: flannel.1 is VXLAN`);
      assert.deepEqual([vx?.linkinfo.info_data.id, vx?.linkinfo.info_data.port, vx?.linkinfo.info_data.local, vx?.linkinfo.info_data.learning, vx?.address, vx?.mtu],
        [1, 8472, n.ip, false, n.vxlan.mac, 1450]);
      const routes = ipJson<{ dst: string; gateway?: string; dev: string }[]>(n.netns, 'route', 'show');
      for (const m of c.nodes.filter((x) => x.name !== n.name)) {
        assert.ok(routes.some((r) => r.dst === m.podCidr && r.gateway === m.vxlan.ip && r.dev === 'flannel.1'), `${n.name} routes ${m.podCidr} via flannel.1`);
      }
      // the bridge: a Linux bridge, or the OVS bridge's internal port (a tap) when OVS runs
      const [br] = ipJson<{ linkinfo?: { info_kind: string } }[]>(n.netns, '-d', 'link', 'show', 'cni0');
      const ovsNode = n.name === 'node-3' && (ci || !ovsMissing());
      assert.equal(n.bridge.kind, ovsNode ? 'ovs' : 'linux', `${n.name} bridge ${n.bridge.note ?? ''}`);
      assert.equal(br?.linkinfo?.info_kind, ovsNode ? 'tun' : 'bridge', `${n.name}: cni0`);

      const entries = readPodsFile(n.podsFile);
      const mine = c.pods.filter((p) => p.node === n.name);
      assert.deepEqual(entries.map((e) => `${e.namespace}/${e.name}`).sort(), mine.map((p) => `${p.namespace}/${p.name}`).sort(), `${n.podsFile} lists ${n.name}'s pods`);
      for (const e of entries) {
        const pod = podOf(c, `${e.namespace}/${e.name}`);
        assert.deepEqual([e.node, e.uid, e.ip, e.hostVeth], [n.name, pod.uid, pod.ip, pod.hostVeth]);
        assert.equal(e.netnsInode, Number(execFileSync('stat', ['-L', '-c', '%i', pod.netnsPath], { encoding: 'utf8' })));
        const [veth] = ipJson<{ ifname: string; mtu: number; master?: string }[]>(n.netns, 'link', 'show', e.hostVeth);
        assert.equal(veth?.mtu, 1450);
        if (!ovsNode) assert.equal(veth?.master, 'cni0', `${e.hostVeth} is a port of ${n.name}'s bridge`);
      }
      if (ovsNode) {
        const sock = join(stateDir, 'ovs', n.name, 'db.sock');
        const ports = execFileSync('ovs-vsctl', [`--db=unix:${sock}`, 'list-ports', 'cni0'], { encoding: 'utf8' }).split('\n').filter(Boolean).sort();
        assert.deepEqual(ports, mine.map((p) => p.hostVeth).sort(), "node-3's pods are ports of its OVS bridge");
        assert.equal(execFileSync('ovs-vsctl', [`--db=unix:${sock}`, 'get', 'bridge', 'cni0', 'datapath_type'], { encoding: 'utf8' }).trim(), 'netdev');
      }
    }
    assert.equal(c.ingress.url, 'http://172.18.0.11:80');
    assert.deepEqual(c.client, { netns: `${prefix}-client`, ip: '172.18.0.100' });
  });

  it('connects every node to every other through the VXLAN overlay (pod -> pod, ICMP and TCP)', async () => {
    const one = c.nodes.map((n) => c.pods.find((p) => p.node === n.name) as ClusterPod);
    const tx = (node: string) => ipJson<{ stats64: { tx: { packets: number } } }[]>(`${prefix}-${node}`, '-s', 'link', 'show', 'flannel.1')[0]?.stats64.tx.packets ?? 0;
    const before = Object.fromEntries(c.nodes.map((n) => [n.name, tx(n.name)]));
    await Promise.all(one.flatMap((a) => one.filter((b) => b !== a).map((b) => inNetns(a.netns, 'ping', ['-c', '1', '-W', '5', b.ip]))));
    for (const n of c.nodes) assert.ok(tx(n.name) >= before[n.name] + 3, `${n.name} sent its pings through flannel.1`);
    // TCP across nodes, into the OVS node: hotrod/frontend (node-2) -> hotrod/customer (node-3)
    const customer = podOf(c, 'hotrod/customer');
    const out = await inNetns(podOf(c, 'hotrod/frontend').netns, 'curl', ['-sS', '--max-time', '10', `http://${customer.ip}:8080/customer?id=101`]);
    assert.equal(JSON.parse(out).pod, 'hotrod/customer');
  });

  it('DNATs Service VIPs in the calling pod as kube-proxy rewrites them: the caller keeps the VIP, the server sees the caller', async () => {
    const frontend = podOf(c, 'hotrod/frontend');
    const customer = podOf(c, 'hotrod/customer');
    const svc = c.services.find((s) => s.namespace === 'hotrod' && s.name === 'customer');
    assert.ok(svc);
    assert.deepEqual(svc.endpoints, [customer.ip]);
    const out = await inNetns(frontend.netns, 'curl', ['-sS', '--max-time', '10', `http://${svc.ip}/customer?id=202`]);
    assert.equal(JSON.parse(out).name, 'Harbor Lights Books');
    assert.match(await inNetns(frontend.netns, '/usr/sbin/nft', ['list', 'ruleset']), new RegExp(`ip daddr ${svc.ip.replaceAll('.', '\\.')} tcp dport 80 dnat to ${customer.ip.replaceAll('.', '\\.')}:8080`));
    // after a dispatch, frontend's kept-alive connection to customer: its socket names the VIP,
    // customer's names frontend's pod IP (no SNAT: the client endpoint survives the Service)
    await dispatch(c, 'hotrod.lab', '101');
    assert.match(await inNetns(frontend.netns, 'ss', ['-Htn', 'state', 'established']), new RegExp(`${svc.ip.replaceAll('.', '\\.')}:80\\b`));
    assert.match(await inNetns(customer.netns, 'ss', ['-Htn', 'state', 'established']), new RegExp(`${customer.ip.replaceAll('.', '\\.')}:8080\\s+${frontend.ip.replaceAll('.', '\\.')}:\\d+`));
  });

  it('dispatches through NGINX with the same fan-out answer on Node, Python and the instrumented app; plain sends no trace header', async () => {
    const hosts = { hotrod: 'hotrod.lab', 'hotrod-py': 'py.hotrod.lab', 'hotrod-otel': 'otel.hotrod.lab' } as const;
    const answers: Dispatch[] = [];
    for (const [ns, host] of Object.entries(hosts)) {
      const d = await dispatch(c, host, '303');
      answers.push(d);
      assert.deepEqual(d.customer, { id: '303', name: 'Juniper Tea House', location: '571,330' });
      assert.equal(d.routes, 5, `${ns}: driver called route 5 times`);
      assert.deepEqual(d.served, { frontend: `${ns}/frontend`, customer: `${ns}/customer`, driver: `${ns}/driver`, route: Array(5).fill(`${ns}/route`) });
      const nodes = new Set([d.served.frontend, d.served.customer, d.served.driver, d.served.route[0] as string].map((k) => podOf(c, k).node));
      assert.ok(nodes.size >= 3, `${ns}: the request crossed ${[...nodes].join(', ')}`);
      if (ns !== 'hotrod-otel') {
        assert.deepEqual(d.traceparents, { frontend: null, customer: null, driver: null, route: Array(5).fill(null) }, `${ns} sends no trace header`);
      }
    }
    // the same result whatever the runtime: candidates and ETAs are computed alike
    assert.deepEqual(answers[1]?.driver, answers[0]?.driver);
    assert.deepEqual(answers[2]?.driver, answers[0]?.driver);
    assert.equal(answers[0]?.driver.id, 'T715905C');
    assert.equal((await curlFromClient(clientOf(c), `${c.ingress.url}/dispatch?customer=999`, ['-H', 'Host: py.hotrod.lab'])).status, 404);
    // a client's traceparent reaches the plain frontend (NGINX forwards it) and stops there
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const d = await dispatch(c, 'hotrod.lab', '101', [`traceparent: ${tp}`]);
    assert.deepEqual(d.traceparents, { frontend: tp, customer: null, driver: null, route: Array(5).fill(null) });
  });

  it("the instrumented pods propagate traceparent and export their own spans, through the collector relay, as one tree", async () => {
    const traceId = randomBytes(16).toString('hex');
    const parent = randomBytes(8).toString('hex');
    const d = await dispatch(c, 'otel.hotrod.lab', '404', [`traceparent: 00-${traceId}-${parent}-01`]);
    for (const tp of [d.traceparents.customer, d.traceparents.driver, ...d.traceparents.route]) assert.match(tp ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    type Row = { span: DecodedSpan; resource: Record<string, unknown> };
    const rows = (): Row[] => receiver.requests.flatMap((r) => r.decoded.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans.map((span) => ({ span, resource: rs.resource })))))
      .filter((r) => r.span.traceId === traceId);
    // frontend, customer, driver and 5 route SERVER spans; frontend's 2 and driver's 5 CLIENT spans
    await waitFor('the instrumented spans at the OTLP receiver', () => rows().length >= 15, { timeoutMs: 30_000, intervalMs: 100 });
    const all = rows();
    assert.equal(all.length, 15, all.map((r) => `${r.resource['service.name']} ${r.span.kind} ${r.span.name}`).join('\n'));
    const SERVER = 2;
    const CLIENT = 3;
    const of = (service: string, kind: number) => all.filter((r) => r.resource['service.name'] === service && r.span.kind === kind).map((r) => r.span);
    const byId = new Map(all.map((r) => [r.span.spanId, r]));
    const [fe] = of('frontend', SERVER);
    assert.equal(fe?.parentSpanId, parent, "frontend's SERVER span is the client's child");
    for (const [svc, n] of [['customer', 1], ['driver', 1], ['route', 5]] as const) {
      const servers = of(svc, SERVER);
      assert.equal(servers.length, n, `${svc} SERVER spans`);
      for (const s of servers) {
        const caller = byId.get(s.parentSpanId);
        assert.equal(caller?.span.kind, CLIENT, `${svc}'s SERVER span is the child of a CLIENT span`);
        assert.equal(caller?.resource['service.name'], svc === 'route' ? 'driver' : 'frontend');
      }
    }
    assert.equal(new Set(of('route', SERVER).map((s) => s.parentSpanId)).size, 5, 'each route call its own CLIENT span');
    for (const cl of of('driver', CLIENT)) assert.equal(cl.parentSpanId, of('driver', SERVER)[0]?.spanId, "driver's calls are children of its SERVER span");
    // the traceparent each route received names the CLIENT span that sent it
    assert.deepEqual(new Set(d.traceparents.route.map((tp) => tp?.split('-')[2])), new Set(of('driver', CLIENT).map((s) => s.spanId)));
    for (const r of all) {
      const pod = podOf(c, `hotrod-otel/${r.resource['service.name']}`);
      assert.deepEqual([r.resource['k8s.pod.name'], r.resource['k8s.namespace.name'], r.resource['k8s.node.name'], r.resource['k8s.pod.uid']], [pod.name, 'hotrod-otel', pod.node, pod.uid]);
    }
    assert.ok(!receiver.requests.some((r) => r.decoded.some((rs) => String(rs.resource['k8s.namespace.name']).startsWith('hotrod') && rs.resource['k8s.namespace.name'] !== 'hotrod-otel')), 'plain pods export nothing');
  });

  it('a tbf rate limit on one pod slows that hop (the other stack not), a handler delay slows its service, a node uplink takes tbf', async (t) => {
    const N = 9;
    await latencies(c, 'hotrod.lab', 3); // warm the connections
    await latencies(c, 'py.hotrod.lab', 3);
    const base = { node: median(await latencies(c, 'hotrod.lab', N)), py: median(await latencies(c, 'py.hotrod.lab', N)) };
    // 5 route answers of ~2.3 KB leave hotrod/route's eth0: at 512 kbit past a 4 KB burst, ~120 ms more
    await applyFault(c, { pod: 'hotrod/route', rate: '512kbit', burst: '4kb' });
    assert.match(await inNetns(podOf(c, 'hotrod/route').netns, 'tc', ['qdisc', 'show', 'dev', 'eth0']), /qdisc tbf .* rate 512Kbit/);
    const slow = { node: median(await latencies(c, 'hotrod.lab', N)), py: median(await latencies(c, 'py.hotrod.lab', N)) };
    await clearFaults(c);
    assert.doesNotMatch(await inNetns(podOf(c, 'hotrod/route').netns, 'tc', ['qdisc', 'show', 'dev', 'eth0']), /tbf/);
    const ratio = { node: slow.node / base.node, py: slow.py / base.py };
    t.diagnostic(`median dispatch ms: hotrod ${base.node.toFixed(1)} -> ${slow.node.toFixed(1)} (x${ratio.node.toFixed(2)}), hotrod-py ${base.py.toFixed(1)} -> ${slow.py.toFixed(1)} (x${ratio.py.toFixed(2)})`);
    assert.ok(ratio.node >= 2, `the rate-limited hop slows hotrod's dispatch at least 2x (measured x${ratio.node.toFixed(2)}; ~x3-4 expected)`);
    assert.ok(ratio.py <= ratio.node / 1.5, `hotrod-py, whose route is not limited, slows far less (x${ratio.py.toFixed(2)} vs x${ratio.node.toFixed(2)})`);

    // a handler delay: the customer answers 200 ms later, so does every dispatch through it
    await applyFault(c, { pod: 'hotrod-py/customer', delayMs: 200 });
    const delayed = median(await latencies(c, 'py.hotrod.lab', 5));
    await clearFaults(c, { pod: 'hotrod-py/customer' });
    const after = median(await latencies(c, 'py.hotrod.lab', 5));
    t.diagnostic(`hotrod-py with a 200 ms customer delay: ${delayed.toFixed(1)} ms, lifted: ${after.toFixed(1)} ms`);
    // against the quickest of the undelayed medians (hotrod-py's route is not limited above): one
    // batch on a loaded machine ran at 114 ms where the next ran at 83
    const undelayed = Math.min(base.py, slow.py, after);
    assert.ok(delayed >= undelayed + 180, `the delayed dispatch takes the 200 ms more (${delayed.toFixed(1)} vs ${undelayed.toFixed(1)}; undelayed medians ${base.py.toFixed(1)}, ${slow.py.toFixed(1)}, ${after.toFixed(1)})`);
    assert.ok(after < delayed - 100, 'lifted at the next request');

    await applyFault(c, { node: 'node-2', rate: '10mbit' });
    assert.match(await inNetns(`${prefix}-node-2`, 'tc', ['qdisc', 'show', 'dev', 'eth0']), /qdisc tbf .* rate 10Mbit/);
    assert.deepEqual(loadCluster(prefix)?.faults, [{ kind: 'rate', node: 'node-2', where: 'eth0', rate: '10mbit', burst: '4kb' }], 'faults in force are in cluster.json');
    await clearFaults(c);
    assert.doesNotMatch(await inNetns(`${prefix}-node-2`, 'tc', ['qdisc', 'show', 'dev', 'eth0']), /tbf/);
    await assert.rejects(applyFault(c, { pod: 'ingress-nginx/ingress-nginx-controller', delayMs: 5 }), { code: STRATA_ERR_FAULT });
  });

  it('runs every pod process in a kubelet-style cgroup of its node, as the agent parses them', () => {
    for (const p of c.pods) {
      for (const k of p.containers) {
        const pids = [k.pid, ...childrenOf(k.pid)]; // nginx's worker too
        for (const pid of pids) {
          const text = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
          assert.match(text, new RegExp(`^0::/${prefix}\\.lab/${p.node}/kubepods/besteffort/pod${p.uid}/${k.id}$`, 'm'), `${p.namespace}/${p.name} pid ${pid}`);
          const id = parseProcCgroup(text);
          assert.deepEqual([id.podUid, id.containerId], [p.uid, k.id]);
        }
      }
    }
    const ovs = readProcRecords(stateDir).filter((r) => r.name.startsWith('node-3-ovs'));
    if (c.nodes[2]?.bridge.kind === 'ovs') {
      assert.deepEqual(ovs.map((r) => r.name).sort(), ['node-3-ovs-vswitchd', 'node-3-ovsdb-server']);
      for (const r of ovs) assert.match(readFileSync(`/proc/${r.pid}/cgroup`, 'utf8'), new RegExp(`^0::/${prefix}\\.lab/node-3/system/${r.name}$`, 'm'));
    }
  });

  it(`down removes every netns, link, cgroup, nft table and process (up and down timed)`, async (t) => {
    const pids = [...readProcRecords(stateDir).map((r) => r.pid), ...c.pods.flatMap((p) => p.pids.flatMap((pid) => [pid, ...childrenOf(pid)]))];
    assert.ok(pids.length >= 13 && pids.every(running));
    const t0 = performance.now();
    await clusterDown(prefix);
    const downMs = performance.now() - t0;
    t.diagnostic(`4 nodes, ${c.pods.length} pods: up ${Math.round(upMs)} ms, down ${Math.round(downMs)} ms`);
    assertNothingLeft(prefix, stateDir, pids);
  });
});

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

describe('cluster lab: an interrupted or crashed up leaves nothing behind', { skip }, () => {
  // small, but with every kind of process (OVS, Node, Python, the relay, nginx) and a Service
  // with two endpoints (its DNAT picks one at random: nft must take that rule in every pod)
  const topology = `
nodes: [{ name: node-1 }, { name: node-2, bridge: ovs }]
pods:
  - { namespace: t, app: frontend, node: node-1, mode: instrumented }
  - { namespace: t, app: customer, node: node-2, runtime: python }
  - { namespace: t, app: driver, node: node-2 }
  - { namespace: t, app: route, name: route-1, node: node-1, runtime: python }
  - { namespace: t, app: route, name: route-2, node: node-2 }
telemetry: { otlpEndpoint: "http://127.0.0.1:9" }
`;
  const dir = mkdtempSync(join(tmpdir(), 'scl-topology-'));
  const file = join(dir, 'cluster.yaml');
  writeFileSync(file, topology);
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** `cluster up` as a child, until the state dir records the processes `ready` wants */
  async function upUntil(prefix: string, ready: (names: string[]) => boolean) {
    const child = spawn(process.execPath, [join(ROOT, 'lab/cli.ts'), 'cluster', 'up', '--prefix', prefix, '--topology', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code, sig) => resolve(code ?? (sig ? -1 : null))));
    let gone = false;
    void exited.then(() => (gone = true));
    await waitFor(`processes recorded by cluster up ${prefix}`, () => ready(readProcRecords(defaultStateDir(prefix)).map((r) => r.name)), {
      timeoutMs: 60_000,
      intervalMs: 10,
      abort: () => (gone ? `cluster up exited first: ${stderr}` : undefined),
    });
    return { child, exited, stderr: () => stderr };
  }

  it('SIGINT during up: it stops, removes everything it built and exits 130', async () => {
    const prefix = newPrefix();
    const up = await upUntil(prefix, (names) => names.length >= 4);
    const pids = readProcRecords(defaultStateDir(prefix)).map((r) => r.pid);
    up.child.kill('SIGINT');
    assert.equal(await up.exited, 130, up.stderr());
    assert.match(up.stderr(), /SIGINT: stopping and removing what was built/);
    assertNothingLeft(prefix, defaultStateDir(prefix), pids);
  });

  it('a pod that dies before it is ready fails up with STRATA_ERR_LAB_BUILD naming it, and up removes what it built', async () => {
    const prefix = newPrefix();
    // the instrumented frontend loads the OpenTelemetry SDK for hundreds of ms before it listens
    const up = await upUntil(prefix, (names) => names.includes('t.frontend'));
    const rec = readProcRecords(defaultStateDir(prefix)).find((r) => r.name === 't.frontend');
    process.kill(rec?.pid as number, 'SIGKILL');
    assert.equal(await up.exited, 1);
    assert.match(up.stderr(), /STRATA_ERR_LAB_BUILD: cluster scl[0-9a-f]+: gave up waiting for t\/frontend to log that it listens .*exited \(code null, signal SIGKILL\)/);
    assert.match(up.stderr(), /everything it had built is removed/);
    assertNothingLeft(prefix, defaultStateDir(prefix), [rec?.pid as number]);
  });

  it('SIGKILL during up: the reaper (cluster down) removes what it left', async () => {
    const prefix = newPrefix();
    const up = await upUntil(prefix, (names) => names.length >= 5);
    up.child.kill('SIGKILL');
    await up.exited;
    const pids = readProcRecords(defaultStateDir(prefix)).map((r) => r.pid);
    assert.ok(labNetns(prefix).length > 0 && pids.some(running), 'the crash left namespaces and processes');
    const down = spawn(process.execPath, [join(ROOT, 'lab/cli.ts'), 'cluster', 'down', '--prefix', prefix], { stdio: 'ignore' });
    assert.equal(await new Promise((resolve) => down.on('exit', resolve)), 0);
    assertNothingLeft(prefix, defaultStateDir(prefix), pids);
  });
});
