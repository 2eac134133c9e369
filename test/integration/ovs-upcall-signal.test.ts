// The flow-miss signal of bpf/ovs.bpf.c on a real ovs-vswitchd (userspace datapath), in both
// variants (recvmmsg/sendmmsg from the syscall tracepoints; from libc uprobes, what the agent uses
// without tracefs), without the agent: a standalone bridge between two pod netns, a fresh
// datapath. A first connection's SYN and SYN-ACK each install a megaflow: one upcall record each,
// carrying the packet's tuple and flags; a second connection between the same pods right after
// hits those megaflows (NORMAL matches Ethernet addresses only): no record. Everything made here
// is removed, also on failure.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Decoder, addrString } from '../../agent/src/events/decode.ts';
import { OVS_TRACEPOINTS, OvsTracker } from '../../agent/src/probes/ovs.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { OVS as OVS_FAMILY } from '../../agent/src/probes/registry.ts';
import { gate, missingPrerequisites } from '../helpers/kernel.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const BIN = { db: '/usr/sbin/ovsdb-server', vswitchd: '/usr/sbin/ovs-vswitchd', vsctl: '/usr/bin/ovs-vsctl', appctl: '/usr/bin/ovs-appctl', tool: '/usr/bin/ovsdb-tool' };
const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const SERVER = `require('node:net').createServer((s) => { s.on('data', () => s.end('pong')); }).listen(8080, process.argv[1], () => process.stdout.write('ready\\n'));`;
const CLIENT = `const c = require('node:net').connect(8080, process.argv[1], () => { process.stdout.write(c.localPort + '\\n'); c.write('ping'); });
  c.on('data', () => c.end()); c.on('close', () => process.exit(0));`;

function missing(): string | undefined {
  const why = missingPrerequisites();
  if (why) return why;
  for (const p of [...Object.values(BIN), SCHEMA]) if (!existsSync(p)) return `needs Open vSwitch (${p}; scripts/setup.sh installs openvswitch-switch)`;
  return undefined;
}

const sh = (cmd: string, args: string[], env?: NodeJS.ProcessEnv) => execFileSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, timeout: 30_000 });
const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

for (const variant of ['tracepoint', 'uprobe']) {
  test(`ovs upcall signal (${variant}): a new flow's SYN and SYN-ACK are upcalls, the next connection's packets are not`, { timeout: 120_000 }, async (t) => {
    if (!gate(t, missing())) return;
    const P = `sov${Math.random().toString(36).slice(2, 6)}`;
    const ns = { node: `${P}-n`, a: `${P}-a`, b: `${P}-b` };
    const veth = { a: `${P}a`, b: `${P}b` };
    const subnet = `10.${100 + Math.floor(Math.random() * 20)}.${Math.floor(Math.random() * 250)}`;
    const addr = { a: `${subnet}.2`, b: `${subnet}.3` };
    const dir = mkdtempSync(join(tmpdir(), `${P}-ovs-`));
    const sock = join(dir, 'db.sock');
    const env = { ...process.env, OVS_RUNDIR: dir, OVS_DBDIR: dir, OVS_LOGDIR: dir };
    const children: ChildProcess[] = [];
    const inNs = (netns: string, cmd: string, args: string[]) => {
      const c = spawn('ip', ['netns', 'exec', netns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
      let out = '';
      c.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      children.push(c);
      return { c, out: () => out };
    };
    let probes: ProbeSet | undefined;
    let tracker: OvsTracker | undefined;
    try {
      for (const n of Object.values(ns)) sh('ip', ['netns', 'add', n]);
      for (const k of ['a', 'b'] as const) {
        sh('ip', ['-n', ns[k], 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', veth[k], 'netns', ns.node]);
        sh('ip', ['-n', ns[k], 'addr', 'add', `${addr[k]}/24`, 'dev', 'eth0']);
        sh('ip', ['-n', ns[k], 'link', 'set', 'eth0', 'up']);
        sh('ip', ['-n', ns.node, 'link', 'set', veth[k], 'up']);
        sh('ip', ['netns', 'exec', ns[k], 'ethtool', '-K', 'eth0', 'tx', 'off']);
      }
      sh(BIN.tool, ['create', join(dir, 'conf.db'), SCHEMA]);
      const db = inNs(ns.node, BIN.db, [join(dir, 'conf.db'), `--remote=punix:${sock}`, `--unixctl=${join(dir, 'ovsdb-server.ctl')}`, `--log-file=${join(dir, 'ovsdb-server.log')}`]);
      await waitFor(() => existsSync(sock) || !alive(db.c), 'ovsdb-server socket', 20_000);
      const vsctl = (...a: string[]) => sh(BIN.vsctl, [`--db=unix:${sock}`, '--timeout=20', ...a], env);
      vsctl('--no-wait', 'init');
      vsctl('--no-wait', 'add-br', `${P}br`, '--', 'set', 'bridge', `${P}br`, 'datapath_type=netdev', '--', 'add-port', `${P}br`, veth.a, '--', 'add-port', `${P}br`, veth.b);
      const vswitchd = inNs(ns.node, BIN.vswitchd, [`unix:${sock}`, `--unixctl=${join(dir, 'ovs-vswitchd.ctl')}`, `--log-file=${join(dir, 'ovs-vswitchd.log')}`]);
      const appctl = (...a: string[]) => sh(BIN.appctl, ['-t', join(dir, 'ovs-vswitchd.ctl'), ...a], env);
      await waitFor(() => alive(vswitchd.c) && existsSync(join(dir, 'ovs-vswitchd.ctl')) && appctl('dpif/show').includes(veth.b), 'ovs-vswitchd with its ports', 20_000);
      const server = inNs(ns.b, process.execPath, ['-e', SERVER, addr.b]);
      await waitFor(() => server.out().includes('ready') || !alive(server.c), 'server', 20_000);

      // the family's programs of this variant, the tracker following the node netns's ovs-vswitchd
      probes = new ProbeSet({ wakeupBytes: 0 });
      probes.native.load(OVS_FAMILY.object, { programs: OVS_FAMILY.programs.filter((p) => p.variant === undefined || p.variant === variant).map((p) => p.name) });
      if (variant === 'tracepoint') for (const p of OVS_TRACEPOINTS) probes.native.attach(OVS_FAMILY.object, p);
      const seen: { src: string; dst: string; flags: number; ns: number; batch: number }[] = [];
      const decoder = new Decoder({
        onSock: () => {}, onState: () => {}, onPkt: () => {}, onNetDev: () => {},
        onOvsUpcall: (e) => {
          if (e.tuple.family === 0) return; // ARP and friends
          seen.push({ src: `${addrString(e.buf, e.tuple.saddrOff, 2)}:${e.tuple.sport}`, dst: `${addrString(e.buf, e.tuple.daddrOff, 2)}:${e.tuple.dport}`, flags: e.tcpFlags, ns: e.tsNs - e.rxTsNs, batch: e.batch });
        },
      });
      probes.start((b) => decoder.decode(b), { pollMs: 10 });
      tracker = new OvsTracker({ probes, nodeNetnsInode: statSync(`/run/netns/${ns.node}`).ino, log: () => {}, object: OVS_FAMILY.object, variant, attached: () => {} });
      await tracker.poll();
      assert.deepEqual(tracker.pids(), [vswitchd.c.pid]);

      const connect = async () => {
        const c = inNs(ns.a, process.execPath, ['-e', CLIENT, addr.b]);
        const code = await new Promise<number | null>((r) => c.c.on('exit', (x) => r(x)));
        assert.equal(code, 0, c.out());
        return `${addr.a}:${c.out().trim()}`;
      };
      const server8080 = `${addr.b}:8080`;
      const first = await connect();
      const flows = appctl('dpctl/dump-flows');
      const ofFirst = () => seen.filter((s) => (s.src === first && s.dst === server8080) || (s.src === server8080 && s.dst === first));
      await waitFor(() => ofFirst().length >= 2 || undefined, 'the first connection\'s upcall records', 10_000);
      const syn = ofFirst().find((s) => s.src === first);
      const synAck = ofFirst().find((s) => s.src === server8080);
      assert.equal(syn?.flags, 0x02, 'the SYN missed');
      assert.equal(synAck?.flags, 0x12, 'the SYN-ACK missed');
      assert.ok((syn?.ns ?? 0) > 0 && (synAck?.ns ?? 0) > 0);
      t.diagnostic(`${variant}: SYN upcall ${(syn?.ns ?? 0) / 1000} us, SYN-ACK ${(synAck?.ns ?? 0) / 1000} us; flows after: ${flows.trim().split('\n').length}`);

      const second = await connect();
      // a barrier instead of a sleep: flows flushed, a third connection misses again; records come
      // through the ring in order, so once the third's are here the second's would have been too
      // the flush races with the datapath's own flow handling now and then (seen once in a CI run:
      // the connection after it raised no upcall); a later flush and connection close the barrier
      const after: string[] = [];
      for (let attempt = 0; attempt < 3 && !after.some((c) => seen.some((s) => s.src === c)); attempt++) {
        appctl('dpctl/del-flows');
        after.push(await connect());
        await waitFor(() => seen.some((s) => s.src === after.at(-1)) || undefined, 'a connection\'s upcall after the flush', 10_000).catch(() => {
          t.diagnostic(`${variant}: no upcall from ${after.at(-1)} after flush ${attempt + 1}; flows: ${appctl('dpctl/dump-flows').trim().split('\n').length}`);
        });
      }
      assert.ok(after.some((c) => seen.some((s) => s.src === c)), `an upcall from a connection after a flush (${after.join(', ')})`);
      assert.deepEqual(seen.filter((s) => s.src === second || s.dst === second), [], 'the second connection hit the installed megaflows');
    } finally {
      await tracker?.stop();
      probes?.close();
      for (const c of children) if (alive(c)) c.kill('SIGKILL');
      await Promise.all(children.map((c) => (alive(c) ? new Promise((r) => c.on('exit', r)) : undefined)));
      for (const n of Object.values(ns)) {
        try {
          sh('ip', ['netns', 'del', n]);
        } catch {
          // never made
        }
      }
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(readdirSync('/run/netns').filter((n) => n.startsWith(`${P}-`)), []);
    assert.equal(existsSync(dir), false);
  });
}
