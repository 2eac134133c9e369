// The ovs family on a real Open vSwitch, userspace datapath (this kernel has no openvswitch
// module): a standalone bridge (datapath_type=netdev) in a node netns of its own between two pod
// netns, ovsdb-server and ovs-vswitchd started by the test (no systemd), the agent running as a
// child process. A client pod sends three requests on one keep-alive connection to a server pod:
// - each request's hop chain has an `ovs` hop span between the veth hops, naming the bridge and
//   the in and out ports, under the CLIENT span;
// - the first request on the new connection is marked as an upcall (its connection's SYN missed
//   the datapath flow cache: the fresh datapath has no flow, `dpctl/dump-flows` before/after
//   shows the install) and the later ones are not;
// - ovs-vswitchd stopped mid-run: the agent keeps running and reports the probe detached
//   (strata_probe_attached{probe="ovs"} 0); started again: re-attached, and the new process's
//   empty datapath makes the next connection's first request an upcall again.
// Everything it makes (netns, veths, the bridge's tap devices, processes, the OVS dir with its
// sockets) is removed, also on failure.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type AgentProc, metricValue, startAgent, stopAgent } from '../helpers/agent-proc.ts';
import { gate, missingPrerequisites } from '../helpers/kernel.ts';
import { flattenSpans } from '../helpers/otlp-decode.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';
import { OtlpReceiver } from '../helpers/otlp-receiver.ts';

const OVS = { db: '/usr/sbin/ovsdb-server', vswitchd: '/usr/sbin/ovs-vswitchd', vsctl: '/usr/bin/ovs-vsctl', appctl: '/usr/bin/ovs-appctl', tool: '/usr/bin/ovsdb-tool' };
const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const KIND_INTERNAL = 1;
const KIND_CLIENT = 3;

const SERVER = `
  require('node:http').createServer((q, s) => { q.resume(); q.on('end', () => s.end('ok ' + q.url)); })
    .listen(8080, process.argv[1], () => process.stdout.write('ready\\n'));`;
// sequential requests on one keep-alive connection (one socket), then exit
const CLIENT = `
  const http = require('node:http');
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const [host, ...paths] = process.argv.slice(1);
  (async () => {
    for (const p of paths) {
      await new Promise((res, rej) => http.get({ host, port: 8080, path: p, agent }, (r) => { r.resume(); r.on('end', res); }).on('error', rej));
    }
    agent.destroy();
  })().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });`;

function missing(): string | undefined {
  const why = missingPrerequisites();
  if (why) return why;
  for (const p of [...Object.values(OVS), SCHEMA]) if (!existsSync(p)) return `needs Open vSwitch (${p}; scripts/setup.sh installs openvswitch-switch)`;
  return undefined;
}

const sh = (cmd: string, args: string[], env?: NodeJS.ProcessEnv) => execFileSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, timeout: 30_000 });
const ip = (...args: string[]) => sh('ip', args);
const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

test('ovs (userspace datapath): ovs hop span between the veth hops, upcall on a new connection, vswitchd stop/restart', { timeout: 180_000 }, async (t) => {
  if (!gate(t, missing())) return;
  const P = `sov${Math.random().toString(36).slice(2, 6)}`;
  const ns = { node: `${P}-n`, a: `${P}-a`, b: `${P}-b` };
  const veth = { a: `${P}a`, b: `${P}b` };
  const bridge = `${P}br`;
  const subnet = `10.${78 + Math.floor(Math.random() * 20)}.${Math.floor(Math.random() * 250)}`;
  const addr = { a: `${subnet}.2`, b: `${subnet}.3` };
  const dir = mkdtempSync(join(tmpdir(), `${P}-ovs-`));
  const sock = join(dir, 'db.sock');
  const env = { ...process.env, OVS_RUNDIR: dir, OVS_DBDIR: dir, OVS_LOGDIR: dir };
  const vsctl = (...a: string[]) => sh(OVS.vsctl, [`--db=unix:${sock}`, '--timeout=20', ...a], env);
  const appctl = (...a: string[]) => sh(OVS.appctl, ['-t', join(dir, 'ovs-vswitchd.ctl'), ...a], env);
  const children: ChildProcess[] = [];
  const receiver = new OtlpReceiver();
  let agent: AgentProc | undefined;
  // processes started in a netns: `ip netns exec` execs the program, so the child's pid is the program's
  const inNs = (netns: string, cmd: string, args: string[]): ChildProcess => {
    const c = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let out = '';
    c.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    Object.assign(c, { out: () => out });
    children.push(c);
    return c;
  };
  const output = (c: ChildProcess) => (c as ChildProcess & { out: () => string }).out();
  const startVswitchd = async () => {
    const v = inNs(ns.node, OVS.vswitchd, [`unix:${sock}`, `--unixctl=${join(dir, 'ovs-vswitchd.ctl')}`, `--log-file=${join(dir, 'ovs-vswitchd.log')}`]);
    // the bridge's internal port exists once vswitchd has applied the database
    await waitFor(() => alive(v) && ip('-n', ns.node, 'link').includes(`${bridge}:`) && appctl('dpif/show').includes(veth.b), 'ovs-vswitchd with its ports', 20_000)
      .catch((e: Error) => { throw new Error(`${e.message}: ${output(v)}`); });
    return v;
  };
  const tcpFlows = () => appctl('dpctl/dump-flows').split('\n').filter((l) => l.includes('eth_type(0x0800)')).length;
  const runClient = async (paths: string[]) => {
    const c = inNs(ns.a, process.execPath, ['-e', CLIENT, addr.b, ...paths]);
    const code = await new Promise<number | null>((r) => c.on('exit', (x) => r(x)));
    assert.equal(code, 0, `client: ${output(c)}`);
  };
  const rows = () => receiver.requests.flatMap((r) => flattenSpans(r.decoded)).map((x) => ({ span: x.span, service: String(x.resource['service.name']) }));
  /** the CLIENT span of `path` and the request-direction hops under it, once the ovs hop is there */
  const traceOf = (path: string) => waitFor(() => {
    const client = rows().find((r) => r.span.kind === KIND_CLIENT && r.span.attributes['url.path'] === path);
    if (!client) return undefined;
    const hops = rows().filter((r) => r.span.kind === KIND_INTERNAL && r.span.parentSpanId === client.span.spanId && r.span.attributes['strata.direction'] === 'request')
      .sort((x, y) => Number(x.span.startTimeUnixNano - y.span.startTimeUnixNano));
    return hops.some((h) => h.span.attributes['strata.layer'] === 'ovs') ? { client, hops } : undefined;
  }, `ovs hop span of ${path}`, 20_000);
  const ovsHop = async (path: string) => {
    const { client, hops } = await traceOf(path);
    const i = hops.findIndex((h) => h.span.attributes['strata.layer'] === 'ovs');
    const h = hops[i];
    assert.ok(h);
    const a = h.span.attributes;
    assert.equal(a['strata.ovs.bridge'], bridge);
    assert.equal(a['strata.ovs.in_port'], veth.a);
    assert.equal(a['strata.ovs.out_port'], veth.b);
    assert.equal(h.service, `net:ovs ${P}-node`);
    // between the veth hops: into the in port before it, out of the out port after it, end to end
    const before = hops[i - 1];
    const after = hops[i + 1];
    assert.ok(before && after, `hops around the ovs hop: ${hops.map((x) => x.span.attributes['strata.layer']).join(',')}`);
    assert.equal(before.span.attributes['strata.to'], a['strata.from']);
    assert.equal(after.span.attributes['strata.from'], a['strata.to']);
    assert.ok(['veth', 'pod'].includes(String(before.span.attributes['strata.layer'])), String(before.span.attributes['strata.layer']));
    assert.ok(['veth', 'pod'].includes(String(after.span.attributes['strata.layer'])), String(after.span.attributes['strata.layer']));
    assert.ok(before.span.endTimeUnixNano <= h.span.startTimeUnixNano && h.span.endTimeUnixNano <= after.span.startTimeUnixNano);
    assert.ok(client.span.startTimeUnixNano <= h.span.startTimeUnixNano && h.span.endTimeUnixNano <= client.span.endTimeUnixNano, 'inside its CLIENT span');
    t.diagnostic(`${path}: ovs hop ${Number(h.span.endTimeUnixNano - h.span.startTimeUnixNano) / 1000} us, upcall ${a['strata.ovs.upcall']}${a['strata.ovs.upcall_ns'] !== undefined ? ` (${Number(a['strata.ovs.upcall_ns']) / 1000} us in the upcall, ${a['strata.ovs.upcall_cause']})` : ''}`);
    return a;
  };
  const attachedMetric = async () => metricValue(await (await fetch(`http://127.0.0.1:${agent?.metricsPort}/metrics`)).text(), 'strata_probe_attached', 'probe="ovs"');

  try {
    for (const n of Object.values(ns)) {
      ip('netns', 'add', n);
      ip('-n', n, 'link', 'set', 'lo', 'up');
    }
    for (const k of ['a', 'b'] as const) {
      ip('-n', ns[k], 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', veth[k], 'netns', ns.node);
      ip('-n', ns[k], 'addr', 'add', `${addr[k]}/24`, 'dev', 'eth0');
      ip('-n', ns[k], 'link', 'set', 'eth0', 'up');
      ip('-n', ns.node, 'link', 'set', veth[k], 'up');
      // the userspace datapath does not complete partial checksums: TCP needs tx offload off
      sh('ip', ['netns', 'exec', ns[k], 'ethtool', '-K', 'eth0', 'tx', 'off']);
    }
    sh(OVS.tool, ['create', join(dir, 'conf.db'), SCHEMA]);
    const db = inNs(ns.node, OVS.db, [join(dir, 'conf.db'), `--remote=punix:${sock}`, `--unixctl=${join(dir, 'ovsdb-server.ctl')}`, `--log-file=${join(dir, 'ovsdb-server.log')}`]);
    await waitFor(() => existsSync(sock) || !alive(db), 'ovsdb-server socket', 20_000);
    assert.ok(alive(db), `ovsdb-server: ${output(db)}`);
    vsctl('--no-wait', 'init');
    vsctl('--no-wait', 'add-br', bridge, '--', 'set', 'bridge', bridge, 'datapath_type=netdev', '--', 'add-port', bridge, veth.a, '--', 'add-port', bridge, veth.b);
    let vswitchd = await startVswitchd();
    const server = inNs(ns.b, process.execPath, ['-e', SERVER, addr.b]);
    await waitFor(() => output(server).includes('ready') || !alive(server), 'server', 20_000);
    assert.ok(alive(server), output(server));

    await receiver.start();
    const podsFile = join(dir, 'pods.json');
    const pod = (k: 'a' | 'b', name: string) => ({ name, namespace: 'default', uid: `${P}-${k}`, node: `${P}-node`, ip: addr[k], netnsInode: statSync(`/run/netns/${ns[k]}`).ino, hostVeth: veth[k], labels: { app: name } });
    writeFileSync(podsFile, JSON.stringify([pod('a', 'client'), pod('b', 'server')]));
    agent = await startAgent(['--pods-file', podsFile, '--node-name', `${P}-node`, '--node-netns', `/run/netns/${ns.node}`,
      '--otlp-endpoint', receiver.url, '--traces-dir', dir, '--metrics-port', '0', '--metrics-host', '127.0.0.1']);
    await waitFor(async () => (await attachedMetric()) === 1, 'ovs probe attached', 20_000);
    // TC on both ports before traffic (discovery attaches per pod)
    await waitFor(() => ip('-n', ns.node, 'link', 'show', veth.b).length > 0 && sh('tc', ['-n', ns.node, 'filter', 'show', 'dev', veth.b, 'egress']).includes('bpf'), 'TC on the OVS ports', 20_000);

    // round 1: a fresh datapath has no flows; the connection's SYN misses
    assert.equal(tcpFlows(), 0, 'no IPv4 datapath flow before the first connection');
    await runClient(['/r1/1', '/r1/2', '/r1/3']);
    const flows = appctl('dpctl/dump-flows');
    assert.ok(tcpFlows() >= 2, `the first connection installed its flows: ${flows}`);
    t.diagnostic(`datapath flows after the first connection:\n${flows.trim()}`);
    const first = await ovsHop('/r1/1');
    assert.equal(first['strata.ovs.upcall'], true, 'first request on a new connection: upcall');
    assert.ok(Number(first['strata.ovs.upcall_ns']) > 0);
    assert.equal(first['strata.ovs.upcall_cause'], 'handshake');
    for (const p of ['/r1/2', '/r1/3']) {
      const a = await ovsHop(p);
      assert.equal(a['strata.ovs.upcall'], false, `${p}: later request on the same flow, no upcall`);
      assert.equal(a['strata.ovs.upcall_ns'], undefined);
    }

    // ovs-vswitchd stops mid-run: the agent carries on and reports the probe detached
    vswitchd.kill('SIGTERM');
    await new Promise((r) => (alive(vswitchd) ? vswitchd.on('exit', r) : r(undefined)));
    await waitFor(async () => (await attachedMetric()) === 0, 'ovs probe reported detached', 20_000);
    assert.ok(agent && alive(agent.child), 'the agent keeps running');
    assert.match(agent.stderr(), /ovs-vswitchd \d+ detached: it exited/);

    // ... and attaches again when it comes back; the new datapath starts empty: an upcall again
    vswitchd = await startVswitchd();
    await waitFor(async () => (await attachedMetric()) === 1, 'ovs probe re-attached', 20_000);
    assert.equal(agent.stderr().match(/attached to ovs-vswitchd/g)?.length, 2);
    await runClient(['/r2/1', '/r2/2']);
    assert.equal((await ovsHop('/r2/1'))['strata.ovs.upcall'], true, 'first request after the restart: upcall');
    assert.equal((await ovsHop('/r2/2'))['strata.ovs.upcall'], false);
    const m = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text();
    assert.ok(metricValue(m, 'strata_kernel_ovs_upcalls_total') >= 4, 'SYN and SYN-ACK misses of both connections counted in the kernel');
    assert.ok(metricValue(m, 'strata_ovs_upcalls_charged_total') >= 2);
    assert.ok(metricValue(m, 'strata_ovs_hops_total') >= 5);
  } finally {
    if (agent) await stopAgent(agent, 'SIGTERM');
    for (const c of children) if (alive(c)) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.on('exit', r)) : undefined)));
    // the node netns takes the veths' host ends and the bridge's tap devices with it
    for (const n of Object.values(ns)) {
      try {
        ip('netns', 'del', n);
      } catch {
        // never made
      }
    }
    rmSync(dir, { recursive: true, force: true });
    await receiver.stop();
  }
  // nothing left behind
  assert.deepEqual(readdirSync('/run/netns').filter((n) => n.startsWith(`${P}-`)), []);
  assert.ok(children.every((c) => !alive(c)));
  assert.equal(existsSync(dir), false);
  assert.equal(ip('-o', 'link').split('\n').filter((l) => l.includes(P)).length, 0, 'no interface of the test in the root netns');
});
