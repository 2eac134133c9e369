// net_dev on the real kernel: in two namespaces of its own (a "pod" and a "node" joined by a
// veth), a TCP exchange crosses the pod-side end, which is the one device registered in the
// kernel's watch map. Its packets arrive at QUEUE/XMIT (out of the pod) and RX (into it) with the
// pod's netns and ifindex, the tuple as on the wire and TCP seq/ack that follow the handshake;
// a second veth between the same namespaces, not registered, yields nothing. Two request/response
// rounds on one connection: each message is reported once at each point (keep-alive connections
// get every message, not just their first).
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { Decoder, type NetDevEvent, type TailEvent, addrString } from '../../agent/src/events/decode.ts';
import { FLAGS, NETDEV_POINT, TAIL_SRC } from '../../agent/src/events/layout.generated.ts';
import { loadNative } from '../../agent/src/probes/native.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { type ProbeSettings, netdevUnwatch, netdevWatch } from '../../agent/src/probes/registry.ts';
import { requireKernel } from '../helpers/kernel.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });

type Ev = Omit<NetDevEvent, 'buf' | 'tuple'> & { saddr: string; daddr: string; sport: number; dport: number };

const SERVER = `
  const net = require('node:net');
  net.createServer((s) => { s.on('data', () => s.write('PONG '.repeat(10))); s.on('end', () => s.end()); })
    .listen(8080, process.argv[1], () => process.stdout.write('ready\\n'));`;
const CLIENT = `
  const net = require('node:net');
  const c = net.connect({ host: process.argv[1], port: 8080 }, () => {
    process.stdout.write(JSON.stringify({ port: c.localPort }) + '\\n');
    c.write('PING '.repeat(20));
  });
  // two request/response rounds on one connection (keep-alive), then close
  let rounds = 0;
  c.on('data', () => (++rounds === 1 ? c.write('PING '.repeat(20)) : c.end()));
  c.on('end', () => c.end());
  c.on('close', () => process.exit(0));`;

/** runs node code inside a netns; resolves with its stdout once `until` matches it */
function inNetns(ns: string, code: string, arg: string, children: ChildProcess[]): { out: () => string; exited: Promise<number | null> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', code, arg], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { out: () => out, exited: new Promise((r) => child.on('exit', (c) => r(c))) };
}

async function watchedAndUnwatched(t: TestContext, settings: ProbeSettings): Promise<void> {
  if (!requireKernel(t)) return;
  const p = `nd${Math.random().toString(36).slice(2, 6)}`;
  const pod = `${p}pod`;
  const node = `${p}node`;
  const children: ChildProcess[] = [];
  let probes: ProbeSet | undefined;
  ip('netns', 'add', pod);
  try {
    ip('netns', 'add', node);
    // the watched pair (10.99.1.0/24) and an unwatched one (10.99.2.0/24) between the same namespaces
    ip('-n', pod, 'link', 'add', `${p}w0`, 'type', 'veth', 'peer', 'name', `${p}w1`, 'netns', node);
    ip('-n', pod, 'link', 'add', `${p}u0`, 'type', 'veth', 'peer', 'name', `${p}u1`, 'netns', node);
    for (const [ns, dev, addr] of [[pod, `${p}w0`, '10.99.1.1/24'], [node, `${p}w1`, '10.99.1.2/24'], [pod, `${p}u0`, '10.99.2.1/24'], [node, `${p}u1`, '10.99.2.2/24']] as const) {
      ip('-n', ns, 'addr', 'add', addr, 'dev', dev);
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
    ip('-n', pod, 'link', 'set', 'lo', 'up');
    ip('-n', node, 'link', 'set', 'lo', 'up');
    const podInode = statSync(`/run/netns/${pod}`).ino;
    const nodeInode = statSync(`/run/netns/${node}`).ino;
    // the node-side end's IFLA_LINK: the pod-side end's ifindex, in the pod's netns
    const watched = loadNative().linkInfo(`${p}w1`, `/run/netns/${node}`);
    assert.equal(watched.iflink, Number(ip('netns', 'exec', pod, 'cat', `/sys/class/net/${p}w0/ifindex`).trim()));

    probes = new ProbeSet({ wakeupBytes: 0, ...settings }).open('net_dev');
    // what the agent does for a pod: the peer of its host veth, in the pod's netns
    netdevWatch(probes, podInode, watched.iflink);
    const events: Ev[] = [];
    const decoder = new Decoder({
      onSock: () => assert.fail('sock event'), onState: () => assert.fail('state event'), onPkt: () => assert.fail('pkt event'),
      onNetDev: (e) => {
        const { buf, tuple, ...rest } = e;
        events.push({ ...rest, saddr: addrString(buf, tuple.saddrOff, tuple.family), daddr: addrString(buf, tuple.daddrOff, tuple.family), sport: tuple.sport, dport: tuple.dport });
      },
    });
    probes.start((b) => decoder.decode(b), { pollMs: 5 });

    const exchange = async (server: string) => {
      const srv = inNetns(node, SERVER, server, children);
      await waitFor(() => srv.out().includes('ready'), `server on ${server}`);
      const cli = inNetns(pod, CLIENT, server, children);
      assert.equal(await cli.exited, 0, cli.out());
      return (JSON.parse(cli.out().split('\n')[0] as string) as { port: number }).port;
    };
    const port = await exchange('10.99.1.2');
    const unwatchedPort = await exchange('10.99.2.2');
    const mine = (e: Ev) => (e.sport === port && e.dport === 8080) || (e.sport === 8080 && e.dport === port);
    const at = (point: number, from: 'client' | 'server', pred: (e: Ev) => boolean) =>
      events.find((e) => mine(e) && e.point === point && (from === 'client' ? e.sport === port : e.sport === 8080) && pred(e));
    // FIN of both sides at their points: the exchange is complete in the events
    await waitFor(() => at(NETDEV_POINT.RX, 'server', (e) => (e.tcpFlags & 1) === 1) && at(NETDEV_POINT.XMIT, 'client', (e) => (e.tcpFlags & 1) === 1), 'the FINs of the exchange', 10_000);

    for (const e of events) {
      assert.equal(e.netns, podInode, 'only the watched device: the pod netns');
      assert.equal(e.ifindex, watched.iflink, 'only the watched device: its ifindex');
      assert.notEqual(e.netns, nodeInode);
      assert.equal(e.flags & FLAGS.F_SEQ_VALID, FLAGS.F_SEQ_VALID);
    }
    assert.equal(events.filter((e) => e.sport === unwatchedPort || e.dport === unwatchedPort).length, 0, 'the unwatched veth yields nothing');

    // handshake and data, out of the pod (queue then xmit, same skb) and into it (rx)
    const syn = at(NETDEV_POINT.QUEUE, 'client', (e) => e.tcpFlags === 2);
    const synack = at(NETDEV_POINT.RX, 'server', (e) => e.tcpFlags === 0x12);
    assert.ok(syn && synack, 'SYN queued out of the pod, SYN-ACK received into it');
    assert.equal(synack.ack, (syn.seq + 1) >>> 0);
    const req = at(NETDEV_POINT.QUEUE, 'client', (e) => e.dataLen > 0);
    const reqX = at(NETDEV_POINT.XMIT, 'client', (e) => e.dataLen > 0);
    const resp = at(NETDEV_POINT.RX, 'server', (e) => e.dataLen > 0);
    assert.ok(req && reqX && resp, 'the request at queue and xmit, the response at rx');
    assert.deepEqual([req.saddr, req.daddr, req.sport, req.dport], ['10.99.1.1', '10.99.1.2', port, 8080]);
    assert.deepEqual([resp.saddr, resp.daddr, resp.sport, resp.dport], ['10.99.1.2', '10.99.1.1', 8080, port]);
    assert.equal(req.seq, (syn.seq + 1) >>> 0, 'the first request byte follows the SYN');
    assert.equal(req.dataLen, 100);
    assert.equal(reqX.seq, req.seq);
    assert.equal(reqX.skb, req.skb, 'the same skb from queue to xmit');
    assert.equal(resp.seq, (synack.seq + 1) >>> 0, 'the first response byte follows the SYN-ACK');
    assert.equal(resp.ack, (req.seq + 100) >>> 0);
    assert.equal(resp.dataLen, 50);
    assert.ok(req.tsNs <= reqX.tsNs && reqX.tsNs < resp.tsNs, 'in time order');
    // the second round on the same connection: one event per message and point, at the next seq
    const data = (point: number, from: 'client' | 'server') =>
      events.filter((e) => mine(e) && e.point === point && e.dataLen > 0 && (from === 'client' ? e.sport === port : e.sport === 8080));
    assert.deepEqual(data(NETDEV_POINT.QUEUE, 'client').map((e) => e.seq), [req.seq, (req.seq + 100) >>> 0], 'both requests at queue');
    assert.deepEqual(data(NETDEV_POINT.XMIT, 'client').map((e) => e.seq), [req.seq, (req.seq + 100) >>> 0], 'both requests at xmit');
    assert.deepEqual(data(NETDEV_POINT.RX, 'server').map((e) => e.seq), [resp.seq, (resp.seq + 50) >>> 0], 'both responses at rx');
    assert.ok(probes.stats().netdevSeen >= events.length);

    // unwatched: the kernel stops at the watch lookup (counted synchronously, before the client exits)
    netdevUnwatch(probes, podInode, watched.iflink);
    const seen = probes.stats().netdevSeen;
    await exchange('10.99.1.2');
    assert.equal(probes.stats().netdevSeen, seen, 'no packet of the unwatched device got past the watch map');
  } finally {
    for (const c of children) c.kill('SIGKILL');
    probes?.close();
    for (const ns of [pod, node]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // not created
      }
    }
  }
}

test('net_dev: packets of a watched pod interface, at rx/queue/xmit, and none from an unwatched one', (t) => watchedAndUnwatched(t, {}));

// every device of the machine in the watched device's prefilter slot: the exact watch map still decides
test('net_dev: the same with one prefilter slot for every device', (t) => watchedAndUnwatched(t, { prefilterSlots: 1 }));

// A message of many packets: where it ends at each point comes in tail events (PSH at the end of
// a send, and when the flow turns): out of the pod at queue and, with the queue time, at xmit;
// into it at rx. Their end seq is the message's last byte + 1, and time runs first packet -> tail.
const BIG_SERVER = `
  const net = require('node:net');
  net.createServer((s) => { let n = 0; s.on('data', (d) => { n += d.length; if (n === 100000) s.end(Buffer.alloc(200000, 0x62)); }); })
    .listen(8080, process.argv[1], () => process.stdout.write('ready\\n'));`;
const BIG_CLIENT = `
  const net = require('node:net');
  const c = net.connect({ host: process.argv[1], port: 8080 }, () => {
    process.stdout.write(JSON.stringify({ port: c.localPort }) + '\\n');
    c.write(Buffer.alloc(100000, 0x61));
  });
  let n = 0;
  c.on('data', (d) => { n += d.length; if (n === 200000) c.end(); });
  c.on('close', () => process.exit(0));`;

test('net_dev: tail events give where a long message ends out of the pod (queue, xmit) and into it (rx)', async (t) => {
  if (!requireKernel(t)) return;
  const p = `nt${Math.random().toString(36).slice(2, 6)}`;
  const pod = `${p}pod`;
  const node = `${p}node`;
  const children: ChildProcess[] = [];
  let probes: ProbeSet | undefined;
  ip('netns', 'add', pod);
  try {
    ip('netns', 'add', node);
    ip('-n', pod, 'link', 'add', `${p}w0`, 'type', 'veth', 'peer', 'name', `${p}w1`, 'netns', node);
    for (const [ns, dev, addr] of [[pod, `${p}w0`, '10.99.3.1/24'], [node, `${p}w1`, '10.99.3.2/24']] as const) {
      ip('-n', ns, 'addr', 'add', addr, 'dev', dev);
      ip('-n', ns, 'link', 'set', dev, 'up');
    }
    const podInode = statSync(`/run/netns/${pod}`).ino;
    const watched = loadNative().linkInfo(`${p}w1`, `/run/netns/${node}`);
    probes = new ProbeSet({ wakeupBytes: 0 }).open('net_dev');
    netdevWatch(probes, podInode, watched.iflink);
    const firsts: Ev[] = [];
    const tails: (Omit<TailEvent, 'buf' | 'tuple'> & { sport: number })[] = [];
    const decoder = new Decoder({
      onSock: () => assert.fail('sock event'), onState: () => assert.fail('state event'), onPkt: () => assert.fail('pkt event'),
      onNetDev: (e) => {
        const { buf, tuple, ...rest } = e;
        firsts.push({ ...rest, saddr: addrString(buf, tuple.saddrOff, tuple.family), daddr: addrString(buf, tuple.daddrOff, tuple.family), sport: tuple.sport, dport: tuple.dport });
      },
      onTail: (e) => {
        const { buf: _b, tuple, ...rest } = e;
        tails.push({ ...rest, sport: tuple.sport });
      },
    });
    probes.start((b) => decoder.decode(b), { pollMs: 5 });
    const srv = inNetns(node, BIG_SERVER, '10.99.3.2', children);
    await waitFor(() => srv.out().includes('ready'), 'server');
    const cli = inNetns(pod, BIG_CLIENT, '10.99.3.2', children);
    assert.equal(await cli.exited, 0, cli.out());
    const port = (JSON.parse(cli.out().split('\n')[0] as string) as { port: number }).port;
    const first = (point: number, sport: number) => firsts.find((e) => e.point === point && e.sport === sport && e.dataLen > 0);
    const ends = (point: number, sport: number) => tails.filter((e) => e.point === point && e.sport === sport);
    const endOf = (point: number, sport: number, seq: number, bytes: number) => ends(point, sport).find((e) => e.seq === seq && e.endSeq === ((seq + bytes) >>> 0));
    await waitFor(() => {
      const q = first(NETDEV_POINT.QUEUE, port);
      const rx = first(NETDEV_POINT.RX, 8080);
      return q && rx && endOf(NETDEV_POINT.QUEUE, port, q.seq, 100000) && endOf(NETDEV_POINT.XMIT, port, q.seq, 100000) && endOf(NETDEV_POINT.RX, 8080, rx.seq, 200000);
    }, 'the ends of the request (queue, xmit) and of the response (rx)', 10_000);
    const q = first(NETDEV_POINT.QUEUE, port) as Ev;
    const rx = first(NETDEV_POINT.RX, 8080) as Ev;
    for (const e of tails) {
      assert.equal(e.src, TAIL_SRC.TAIL_NETDEV);
      assert.equal(e.netns, podInode);
      assert.equal(e.ifindex, watched.iflink);
      assert.equal(e.flags & FLAGS.F_SEQ_VALID, FLAGS.F_SEQ_VALID);
      assert.ok(e.pkts >= 2, 'tails only for messages of more than one packet');
    }
    const qEnd = endOf(NETDEV_POINT.QUEUE, port, q.seq, 100000) as (typeof tails)[number];
    const xEnd = endOf(NETDEV_POINT.XMIT, port, q.seq, 100000) as (typeof tails)[number];
    const rEnd = endOf(NETDEV_POINT.RX, 8080, rx.seq, 200000) as (typeof tails)[number];
    assert.ok(q.tsNs <= qEnd.tsNs, 'the request: first packet queued before its last');
    assert.ok(xEnd.queueTsNs > 0 && xEnd.queueTsNs <= xEnd.tsNs, 'the xmit tail carries when its packet was queued');
    assert.ok(rx.tsNs <= rEnd.tsNs, 'the response: first packet received before its last');
    // never more than one tail per data packet after each message's first (plus its xmit twin,
    // reported for a queued one)
    const xmits = tails.filter((e) => e.point === NETDEV_POINT.XMIT).length;
    const queued = tails.filter((e) => e.point === NETDEV_POINT.QUEUE && !e.final).length;
    assert.ok(xmits <= queued, `${xmits} xmit tails, ${queued} queue tails at a send's end`);
    assert.ok(tails.length - xmits <= probes.stats().netdevAggregated, `${tails.length - xmits} tails, ${probes.stats().netdevAggregated} packets aggregated`);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    probes?.close();
    for (const ns of [pod, node]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // not created
      }
    }
  }
});
