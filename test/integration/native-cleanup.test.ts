// cleanupStale: the TC filters of an agent killed without detaching (SIGKILL) are found by
// strata's fixed handle/priority on every interface of a netns and removed; nobody else's
// filter is touched, and the programs they held are freed.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { loadNative } from '../../agent/src/probes/native.ts';
import { requireKernel, tcFilters } from '../helpers/kernel.ts';
import { waitFor } from '../helpers/otlp-fixture.ts';

const ADDON = fileURLToPath(new URL('../../build/Release/strata_native.node', import.meta.url));

const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const inNs = (ns: string, ...cmd: string[]) => execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8' });

/** BPF program ids the filters of a tc listing point to */
const progIds = (listing: string) => [...listing.matchAll(/\bid (\d+)/g)].map((m) => Number(m[1]));

function progExists(id: number): boolean {
  try {
    execFileSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A child attaches strata's TC programs to ifname in netns and is SIGKILLed: no detach runs. */
async function attachThenKill(netnsPath: string, ifname: string): Promise<void> {
  const code = `
    const { Probes } = require(${JSON.stringify(ADDON)});
    const p = new Probes();
    p.load('veth_tc');
    p.attachTc('veth_tc', ${JSON.stringify(ifname)}, ${JSON.stringify(netnsPath)});
    process.stdout.write('attached\\n');
    setInterval(() => {}, 1 << 30);`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (c, s) => r({ code: c, signal: s })));
  let gone = false;
  void exited.then(() => (gone = true));
  await waitFor(() => out.includes('attached') || gone, 'the child to attach', 20_000);
  assert.ok(out.includes('attached'), `child failed to attach: ${err}`);
  child.kill('SIGKILL');
  assert.equal((await exited).signal, 'SIGKILL');
}

test('cleanupStale removes the TC filters a SIGKILLed agent left, and only those', async (t) => {
  if (!requireKernel(t)) return;
  const ns = `strata-cl${process.pid}`;
  const path = `/run/netns/${ns}`;
  ip('netns', 'add', ns);
  const native = loadNative();
  let probes: InstanceType<typeof native.Probes> | undefined;
  try {
    ip('-n', ns, 'link', 'add', 'cl0', 'type', 'veth', 'peer', 'name', 'cl1');
    ip('-n', ns, 'link', 'add', 'other0', 'type', 'veth', 'peer', 'name', 'other1');
    for (const i of ['cl0', 'cl1', 'other0', 'other1']) ip('-n', ns, 'link', 'set', i, 'up');
    // somebody else's filter on the same hook (classic BPF, pref 1 handle 1): it must stay
    inNs(ns, 'tc', 'qdisc', 'add', 'dev', 'other0', 'clsact');
    inNs(ns, 'tc', 'filter', 'add', 'dev', 'other0', 'ingress', 'prio', '1', 'handle', '1', 'bpf', 'bytecode', '1,6 0 0 0,');
    const foreign = tcFilters(ns, 'other0');

    await attachThenKill(path, 'cl0');
    await attachThenKill(path, 'other0');
    const left = tcFilters(ns, 'cl0');
    assert.match(left, /tc_ingress/, `the killed agent's ingress filter is still there:\n${left}`);
    assert.match(left, /tc_egress/);
    const ids = [...progIds(left), ...progIds(tcFilters(ns, 'other0'))];
    assert.ok(ids.length === 4 && ids.every(progExists), `the leftover filters hold their programs: ${ids.join(', ')}`);

    probes = new native.Probes();
    const ifindex = (name: string) => Number(inNs(ns, 'cat', `/sys/class/net/${name}/ifindex`).trim());
    const removed = probes.cleanupStale(path);
    assert.deepEqual(
      [...removed].sort((a, b) => a.ifname.localeCompare(b.ifname)),
      [
        { ifname: 'cl0', ifindex: ifindex('cl0') },
        { ifname: 'other0', ifindex: ifindex('other0') },
      ],
    );
    assert.equal(tcFilters(ns, 'cl0'), '', 'no filter left on cl0');
    assert.equal(tcFilters(ns, 'other0'), foreign, 'the foreign filter is untouched');
    await waitFor(() => !ids.some(progExists), 'the leftover programs to be freed');
    // nothing left to do: idempotent, also through the module-level function
    assert.deepEqual(native.cleanupStale(path), []);
    assert.throws(() => native.cleanupStale('/run/netns/strata-no-such-netns'), (e: Error & { code?: string }) => e.code === 'ENOENT');
  } finally {
    probes?.close();
    ip('netns', 'del', ns);
  }
});
