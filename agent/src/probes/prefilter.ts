// The user-space half of the kernel prefilters (bpf/include/prefilter.bpf.h): for each exact
// filter map (traced_netns, traced_cgroups, netdev_watch), an ARRAY of slot counts the programs
// check first. Here each slot's count is kept from the keys added, and every change is written to
// the kernel: a slot goes back to 0 only when no key left hashes to it. ProbeSet adds a key to
// the exact map before its slot and deletes it from the exact map first, so no key is ever in the
// exact map with its slot at 0 (its processes or packets would be dropped by the prefilter).

/** STRATA_PREFILTER_SLOTS: the size of every prefilter array */
export const PREFILTER_SLOTS = 4096;

/** ProbeSettings.prefilterSlots -> the prefilter_mask knob; throws a RangeError on anything but a power of two in 1..4096 */
export function prefilterMask(slots: number | undefined): number {
  const n = slots ?? PREFILTER_SLOTS;
  if (!Number.isInteger(n) || n < 1 || n > PREFILTER_SLOTS || (n & (n - 1)) !== 0) {
    throw new RangeError(`prefilterSlots must be a power of two in 1..${PREFILTER_SLOTS} (got ${slots})`);
  }
  return n - 1;
}

/** prefilter_slot(): the top 12 bits of key * 0x9e3779b1 (mod 2^32), masked */
export function prefilterSlot(key: number, mask: number): number {
  return (Math.imul(key >>> 0, 0x9e3779b1) >>> 20) & mask;
}

/** prefilter_slot64(): a 64-bit key (cgroup id) folded to 32 bits first */
export function prefilterSlot64(key: number | bigint, mask: number): number {
  const k = BigInt(key);
  return prefilterSlot(Number(k & 0xffffffffn) ^ Number((k >> 32n) & 0xffffffffn), mask);
}

/** One prefilter: the keys of its exact map and the count of each slot. */
export class Prefilter {
  readonly counts = new Uint32Array(PREFILTER_SLOTS);
  /** key (as the exact map knows it) -> its slot */
  private readonly keys = new Map<string, number>();

  /** puts one slot's count into the kernel array (throws when it cannot) */
  private readonly write: (slot: number, count: number) => void;

  constructor(write: (slot: number, count: number) => void) {
    this.write = write;
  }

  get size(): number {
    return this.keys.size;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** after the key went into the exact map; a key already there changes nothing */
  add(key: string, slot: number): void {
    if (this.keys.has(key)) return;
    if (!(slot >= 0 && slot < PREFILTER_SLOTS)) throw new RangeError(`prefilter slot ${slot} out of 0..${PREFILTER_SLOTS - 1}`);
    this.write(slot, this.counts[slot] + 1);
    this.counts[slot]++;
    this.keys.set(key, slot);
  }

  /** after the key left the exact map; an unknown key changes nothing */
  delete(key: string): void {
    const slot = this.keys.get(key);
    if (slot === undefined) return;
    this.keys.delete(key);
    this.counts[slot]--;
    this.write(slot, this.counts[slot]);
  }

  /** slots that are not 0 (metrics, tests) */
  usedSlots(): number {
    let n = 0;
    for (const c of this.counts) if (c) n++;
    return n;
  }
}
