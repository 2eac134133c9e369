/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Prefilters in front of the exact filter maps that every process or packet of the node checks
 * (sock: traced_netns, traced_cgroups; net_dev: netdev_watch). A prefilter is an ARRAY of slot
 * counts: user space keeps, in each slot, how many keys of the exact map hash to it
 * (agent/src/probes/prefilter.ts, the same slot function). A zero slot means the key is certainly
 * not in the exact map; a non-zero one falls through to the exact lookup. The verifier inlines
 * an ARRAY lookup (no helper call, no hashing, no lock), where a HASH lookup is a helper call that
 * hashes the key and walks a bucket: the untraced majority pays a multiply and one load.
 */
#ifndef STRATA_PREFILTER_BPF_H
#define STRATA_PREFILTER_BPF_H

#define STRATA_PREFILTER_SLOTS 4096

/* load-time knob: slots used - 1 (a power of two minus one, < STRATA_PREFILTER_SLOTS); tests set
 * 0 to put every key in one slot, so that traced and untraced keys share it */
const volatile __u32 prefilter_mask = STRATA_PREFILTER_SLOTS - 1;

#define STRATA_PREFILTER_MAP(name)                          \
	struct {                                            \
		__uint(type, BPF_MAP_TYPE_ARRAY);           \
		__uint(max_entries, STRATA_PREFILTER_SLOTS); \
		__type(key, __u32);                         \
		__type(value, __u32);                       \
	} name SEC(".maps")

/* Fibonacci hashing: the top 12 bits of key * 2^32/phi; netns inodes, cgroup ids and ifindexes
 * are allocated nearly in sequence, and this spreads any stride among them */
static __always_inline __u32 prefilter_slot(__u32 key)
{
	return ((key * 0x9e3779b1u) >> 20) & prefilter_mask;
}

/* 64-bit keys (cgroup ids) fold to 32 bits first */
static __always_inline __u32 prefilter_slot64(__u64 key)
{
	return prefilter_slot((__u32)key ^ (__u32)(key >> 32));
}

/* false: the key is certainly not in the exact map */
static __always_inline bool prefilter_maybe(void *map, __u32 slot)
{
	__u32 *n = bpf_map_lookup_elem(map, &slot);
	return n && *n;
}

#endif
