// One side of bench/prefilter-ab.ts: runs measurement commands (one JSON line each on stdin) with
// the probes of the tree this file sits in, and answers one JSON line each. The driver copies it
// into the other tree (a scratch worktree of the base commit), so each side runs its own objects,
// addon and ProbeSet. It uses only what both trees have (ProbeSet, Decoder, netdevWatch).
import { statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { Decoder } from '../agent/src/events/decode.ts';
import { ProbeSet } from '../agent/src/probes/probe-set.ts';
import { netdevWatch } from '../agent/src/probes/registry.ts';
import { runLoad } from './load-runner.ts';
import { progDeltas } from './stats.ts';

export interface AbCommand {
  /** none: no probes; traced/filtered: sock_syscalls with the sysloop netns traced or not; netdev*: net_dev, sysloop's loopback watched or not */
  probes: 'none' | 'traced' | 'filtered' | 'netdev' | 'netdevWatched';
  loop: 'write' | 'getppid';
  runStats: boolean;
  sysloop: string;
  calls: number;
}

export interface AbResult {
  nsPerCall: number;
  cpuNsPerCall: number;
  events: number;
  filtered: number;
  progs: { name: string; runs: number; nsPerRun: number }[];
}

const emptyHandler = () => ({ onSock() {}, onState() {}, onPkt() {}, onNetDev() {} });
const NODE_NETNS = statSync('/proc/self/ns/net').ino;

type SysloopResult = { medianChunkNsPerCall: number; cpuNsPerCall: number };
const runSysloop = (bin: string, args: string[], onReady: (ino: number) => void) => runLoad<SysloopResult>(bin, args, onReady);

async function run(c: AbCommand): Promise<AbResult> {
  const args = [String(c.calls), c.loop];
  if (c.probes === 'none') {
    const l = await runSysloop(c.sysloop, args, () => {});
    return { nsPerCall: l.medianChunkNsPerCall, cpuNsPerCall: l.cpuNsPerCall, events: 0, filtered: 0, progs: [] };
  }
  const netdev = c.probes === 'netdev' || c.probes === 'netdevWatched';
  const probes = new ProbeSet({ filterNetns: true, syscallAttach: 'tracepoint', wakeupBytes: 256 * 1024 });
  try {
    probes.open(netdev ? 'net_dev' : 'sock_syscalls');
    // as on a node: an uplink is watched (ifindex 2 of this netns), so the watch map is not empty
    if (netdev) netdevWatch(probes, NODE_NETNS, 2);
    if (c.runStats) probes.enableRunStats();
    const decoder = new Decoder(emptyHandler());
    probes.start((b) => decoder.decode(b), { pollMs: 10 });
    let before: ReturnType<ProbeSet['progStats']> = [];
    const l = await runSysloop(c.sysloop, args, (ino) => {
      if (c.probes === 'traced') probes.netnsAdd(ino);
      if (c.probes === 'netdevWatched') netdevWatch(probes, ino, 1); // the sysloop netns's loopback
      if (c.runStats) before = probes.progStats();
    });
    const after = c.runStats ? probes.progStats() : [];
    // let the pump drain what was submitted before the probes close
    for (let i = 0; i < 40 && probes.pumpStats().records + probes.pumpStats().droppedRecords < probes.stats().events; i++) await sleep(25);
    const ks = probes.stats();
    return {
      nsPerCall: l.medianChunkNsPerCall,
      cpuNsPerCall: l.cpuNsPerCall,
      events: ks.events,
      filtered: ks.filtered,
      progs: progDeltas(before, after).map((p) => ({ name: p.name, runs: p.runs, nsPerRun: p.nsPerRun })),
    };
  } finally {
    probes.close();
  }
}

const rl = createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    try {
      process.stdout.write(`${JSON.stringify({ ok: true, result: await run(JSON.parse(line) as AbCommand) })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: (e as Error).message })}\n`);
    }
  });
});
rl.on('close', () => void queue.then(() => process.exit(0)));
process.stdout.write('{"ready":true}\n');
