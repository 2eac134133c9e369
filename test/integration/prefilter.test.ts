// The socket filter's prefilter on the real kernel (bpf/include/prefilter.bpf.h): with one slot
// for every netns, traced and untraced processes share it, and the exact traced_netns map alone
// tells them apart; removing one traced netns leaves the slot set for another, removing the last
// clears it in the kernel. With the default 4096 slots, a traced netns's slot is the one user
// space computed (the only one set), and a process in it is traced.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { type TestContext, test } from 'node:test';
import { Decoder } from '../../agent/src/events/decode.ts';
import { PREFILTER_SLOTS, prefilterSlot } from '../../agent/src/probes/prefilter.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { requireKernel } from '../helpers/kernel.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

// a process that talks HTTP to itself over loopback, forever (until killed)
const CHATTER = `
  const net = require('node:net');
  const srv = net.createServer((s) => s.on('data', () => s.write('HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\n\\r\\n'))).listen(0, '127.0.0.1', () => {
    const c = net.connect(srv.address().port, '127.0.0.1', () => setInterval(() => c.write('GET /pf HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'), 5));
    c.on('data', () => {});
  });`;

const OWN_NETNS = statSync('/proc/self/ns/net').ino;

/** a chatter in a netns of its own (unshare -n, loopback up); resolves with its netns inode */
async function chatter(children: ChildProcess[]): Promise<{ pid: number; netns: number }> {
  const c = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec "${process.execPath}" -e "$0"`, CHATTER], { stdio: 'ignore' });
  children.push(c);
  const pid = c.pid ?? -1;
  let netns = 0;
  await waitFor(() => {
    try {
      netns = statSync(`/proc/${pid}/ns/net`).ino;
    } catch {
      return false;
    }
    return netns !== OWN_NETNS;
  }, `chatter ${pid} in a netns of its own`, 10_000);
  return { pid, netns };
}

const bpftool = (...args: string[]) => JSON.parse(execFileSync('bpftool', ['-j', ...args], { encoding: 'utf8' }));

/** this ProbeSet's kernel prefilter array of traced_netns (found by its programs' map ids), slot -> count */
function kernelSlots(probes: ProbeSet): Map<number, number> {
  const ids = new Set<number>();
  for (const p of probes.progStats()) for (const m of bpftool('prog', 'show', 'id', String(p.id)).map_ids ?? []) ids.add(m);
  // kernel map names are cut at 15 characters
  const map = [...ids].map((id) => bpftool('map', 'show', 'id', String(id))).find((m) => m.name === 'traced_netns_slots'.slice(0, 15));
  assert.ok(map, 'the traced_netns_slots map of these probes');
  const out = new Map<number, number>();
  for (const e of bpftool('map', 'dump', 'id', String(map.id))) {
    const k = Buffer.from(e.key.map((x: string) => Number(x))).readUInt32LE(0);
    const v = Buffer.from(e.value.map((x: string) => Number(x))).readUInt32LE(0);
    if (v) out.set(k, v);
  }
  return out;
}

function start(t: TestContext, settings: { prefilterSlots?: number }) {
  const probes = new ProbeSet({ filterNetns: true, syscallAttach: 'tracepoint', ...settings });
  const byPid = new Map<number, number>();
  const children: ChildProcess[] = [];
  t.after(() => {
    for (const c of children) c.kill('SIGKILL');
    probes.close();
  });
  probes.open('sock_syscalls');
  const decoder = new Decoder({ onSock: (e) => byPid.set(e.pid, (byPid.get(e.pid) ?? 0) + 1), onPkt() {}, onState() {}, onNetDev() {} });
  probes.start((b) => decoder.decode(b), { pollMs: 10 });
  return { probes, children, count: (pid: number) => byPid.get(pid) ?? 0 };
}

test('one prefilter slot shared by traced and untraced netns: only the traced ones get through, until the last leaves', async (t) => {
  if (!requireKernel(t)) return;
  const { probes, children, count } = start(t, { prefilterSlots: 1 });
  const [a, b, c] = [await chatter(children), await chatter(children), await chatter(children)];
  probes.netnsAdd(a.netns);
  probes.netnsAdd(c.netns);
  assert.deepEqual([...kernelSlots(probes)], [[0, 2]], 'both traced netns counted in the one slot');
  await waitFor(() => count(a.pid) >= 20 && count(c.pid) >= 20, 'events from both traced netns', 15_000);
  // b shares the slot and chatted all along: the exact map stopped every one of its calls
  assert.equal(count(b.pid), 0, 'the untraced netns in the same slot');
  const filtered = probes.stats().filtered;
  assert.ok(filtered > 0);

  // a leaves: the slot stays set for c, which is still traced; a's calls stop
  probes.netnsDelete(a.netns);
  assert.deepEqual([...kernelSlots(probes)], [[0, 1]]);
  let from = count(c.pid);
  await waitFor(() => count(c.pid) >= from + 20, 'events from c after a left', 15_000);
  const aAfter = count(a.pid);
  from = count(c.pid);
  await waitFor(() => count(c.pid) >= from + 20, 'more events from c', 15_000);
  assert.equal(count(a.pid), aAfter, 'no event from a once it left');
  assert.equal(count(b.pid), 0);

  // the last one leaves: the slot is 0 in the kernel, and every call is filtered
  probes.netnsDelete(c.netns);
  assert.deepEqual([...kernelSlots(probes)], []);
  const f0 = probes.stats().filtered;
  await waitFor(() => probes.stats().filtered >= f0 + 100, 'calls filtered with no traced netns', 15_000);
});

test('default slots: the slot user space computes is the one the kernel checks', async (t) => {
  if (!requireKernel(t)) return;
  const { probes, children, count } = start(t, {});
  const [a, b] = [await chatter(children), await chatter(children)];
  probes.netnsAdd(a.netns);
  assert.deepEqual([...kernelSlots(probes)], [[prefilterSlot(a.netns, PREFILTER_SLOTS - 1), 1]]);
  await waitFor(() => count(a.pid) >= 20, 'events from the traced netns', 15_000);
  assert.equal(count(b.pid), 0);
  probes.netnsDelete(a.netns);
  assert.deepEqual([...kernelSlots(probes)], []);
});
