// The user-space half of the filter maps' prefilters (agent/src/probes/prefilter.ts, ProbeSet):
// the slot function is the kernel's (bpf/include/prefilter.bpf.h), a slot counts the keys that
// hash to it and goes back to 0 only when the last of them leaves, and the exact map is written
// before the slot on add and on delete, so that no traced key is ever behind a 0 slot. The kernel
// side of the same is test/integration/prefilter.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PREFILTER_SLOTS, Prefilter, prefilterMask, prefilterSlot, prefilterSlot64 } from '../../agent/src/probes/prefilter.ts';
import { ProbeSet } from '../../agent/src/probes/probe-set.ts';
import { lcg } from '../helpers/rng.ts';

const MASK = PREFILTER_SLOTS - 1;

/** prefilter_slot() in C terms: u32 multiply (mod 2^32), >> 20, & mask */
const cSlot = (key: bigint, mask: number) => Number((((key & 0xffffffffn) * 0x9e3779b1n) & 0xffffffffn) >> 20n) & mask;

test('the slot function is the kernel one: u32 multiply, top 12 bits, masked; 64-bit keys folded', () => {
  const r = lcg(8);
  // netns inodes (from 0xf0000000 on), ifindexes, cgroup ids, and random 32-bit values
  const keys = [0, 1, 2, 0xffffffff, 4026531840, 4026531841, 4026532300, ...Array.from({ length: 2000 }, () => Math.floor(r() * 2 ** 32))];
  for (const k of keys) {
    for (const mask of [MASK, 255, 1, 0]) assert.equal(prefilterSlot(k, mask), cSlot(BigInt(k), mask), `key ${k} mask ${mask}`);
  }
  for (const k of [5n, 0x1_0000_0007n, 0xffff_ffff_ffff_ffffn, 123456789012345n]) {
    assert.equal(prefilterSlot64(k, MASK), cSlot((k & 0xffffffffn) ^ (k >> 32n), MASK));
  }
  assert.equal(prefilterSlot64(77, MASK), prefilterSlot(77, MASK), 'a small cgroup id folds to itself');
  // sequential inodes spread: 4096 consecutive netns inodes use most slots
  const used = new Set(Array.from({ length: PREFILTER_SLOTS }, (_, i) => prefilterSlot(4026531840 + i, MASK)));
  assert.ok(used.size > PREFILTER_SLOTS * 0.6, `${used.size} slots used by ${PREFILTER_SLOTS} consecutive keys`);
});

test('prefilterSlots must be a power of two in 1..4096', () => {
  assert.equal(prefilterMask(undefined), MASK);
  assert.equal(prefilterMask(1), 0);
  assert.equal(prefilterMask(256), 255);
  for (const bad of [0, 3, 4097, 8192, 1.5, -2]) assert.throws(() => prefilterMask(bad), RangeError);
});

test('a slot counts its keys: cleared only when no key left hashes to it', () => {
  const writes: [number, number][] = [];
  const p = new Prefilter((slot, n) => writes.push([slot, n]));
  p.add('a', 7);
  p.add('b', 7);
  p.add('a', 7); // again: no second count
  p.add('c', 9);
  assert.deepEqual(writes, [[7, 1], [7, 2], [9, 1]]);
  p.delete('a');
  assert.deepEqual(writes.at(-1), [7, 1], 'b still hashes to slot 7');
  p.delete('nosuch');
  p.delete('a');
  assert.equal(writes.length, 4, 'unknown keys change nothing');
  p.delete('b');
  assert.deepEqual(writes.at(-1), [7, 0]);
  assert.deepEqual([p.size, p.usedSlots(), p.counts[7], p.counts[9]], [1, 1, 0, 1]);
  assert.throws(() => p.add('d', PREFILTER_SLOTS), RangeError);
});

/** a ProbeSet over a fake native transport that logs every map operation */
function fakeProbes(settings = {}, failSlots = false) {
  const ops: string[] = [];
  const probes = Object.assign(Object.create(ProbeSet.prototype) as ProbeSet, {
    settings,
    native: {
      mapUpdate(map: string, key: Buffer, v: Buffer, object?: string) {
        if (failSlots && map.endsWith('_slots')) throw Object.assign(new Error(`map ${map}: no such map`), { code: 'ENOENT' });
        ops.push(`update ${object ?? '*'}/${map} ${map.endsWith('_slots') ? `${key.readUInt32LE(0)}=${v.readUInt32LE(0)}` : key.toString('hex')}`);
      },
      mapDelete(map: string, key: Buffer, object?: string) {
        ops.push(`delete ${object ?? '*'}/${map} ${key.toString('hex')}`);
      },
    },
  });
  return { probes, ops };
}

/** n distinct netns-like inodes that share one slot under mask */
function colliding(n: number, mask: number): number[] {
  const bySlot = new Map<number, number[]>();
  for (let ino = 4026531840; ; ino++) {
    const s = prefilterSlot(ino, mask);
    const l = bySlot.get(s) ?? [];
    l.push(ino);
    bySlot.set(s, l);
    if (l.length === n) return l;
  }
}

test('ProbeSet: a pod added then removed clears its slot unless another traced netns shares it', () => {
  const { probes, ops } = fakeProbes();
  const [a, b] = colliding(2, MASK);
  const slot = prefilterSlot(a, MASK);
  const hex = (v: number) => Buffer.from(Uint32Array.of(v).buffer).toString('hex');
  probes.netnsAdd(a);
  probes.netnsAdd(b);
  probes.netnsDelete(a);
  assert.deepEqual(ops, [
    `update */traced_netns ${hex(a)}`, `update */traced_netns_slots ${slot}=1`,
    `update */traced_netns ${hex(b)}`, `update */traced_netns_slots ${slot}=2`,
    // the exact key goes first, the slot keeps b's count
    `delete */traced_netns ${hex(a)}`, `update */traced_netns_slots ${slot}=1`,
  ]);
  probes.netnsDelete(b);
  assert.deepEqual(ops.slice(-2), [`delete */traced_netns ${hex(b)}`, `update */traced_netns_slots ${slot}=0`]);
  assert.equal(probes.prefilter('traced_netns').usedSlots(), 0);

  // cgroups and devices have their own prefilters, in their own objects
  probes.cgroupAdd(0x1_0000_0007n);
  probes.netdevWatch(4026531840, 2);
  assert.deepEqual(ops.slice(-4), [
    'update */traced_cgroups 0700000001000000', `update */traced_cgroups_slots ${prefilterSlot64(0x1_0000_0007n, MASK)}=1`,
    `update net_dev/netdev_watch ${hex(4026531840)}${hex(2)}`, `update net_dev/netdev_watch_slots ${prefilterSlot(2, MASK)}=1`,
  ]);
  probes.netdevUnwatch(4026531840, 2);
  probes.cgroupDelete(0x1_0000_0007n);
  assert.deepEqual([probes.prefilter('netdev_watch').usedSlots(), probes.prefilter('traced_cgroups').usedSlots()], [0, 0]);
});

test('ProbeSet: prefilterSlots 1 puts every netns in slot 0; a slot that cannot be written takes the exact key back out', () => {
  const one = fakeProbes({ prefilterSlots: 1 });
  one.probes.netnsAdd(4026531840);
  one.probes.netnsAdd(4026532300);
  assert.deepEqual(one.ops.filter((o) => o.includes('_slots')), ['update */traced_netns_slots 0=1', 'update */traced_netns_slots 0=2']);

  const failing = fakeProbes({}, true);
  assert.throws(() => failing.probes.netnsAdd(4026531840), /no such map/);
  assert.deepEqual(failing.ops.map((o) => o.split(' ')[0]), ['update', 'delete'], 'the exact key is removed again');
  assert.equal(failing.probes.prefilter('traced_netns').size, 0);
});
