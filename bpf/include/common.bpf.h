/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps and helpers shared by every strata probe family. */
#ifndef STRATA_COMMON_BPF_H
#define STRATA_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "events.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define TC_ACT_UNSPEC (-1)

/*
 * One ring buffer for every probe family: the loader creates it with the first object and
 * reuses its fd in the others (bpf_map__reuse_fd), so user space drains one ring in order.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STRATA_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/*
 * Wake the consumer only when this much data is pending; it also polls every few ms, so a
 * quiet system still drains. Per-event wakeups are what make ring buffers expensive.
 */
const volatile __u64 wakeup_bytes = 256 * 1024;

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline __u64 submit_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									     : BPF_RB_NO_WAKEUP;
}

static __always_inline void *event_reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);
	if (!e)
		stat_inc(STRATA_STAT_RB_DROPS);
	return e;
}

static __always_inline void event_submit(void *e)
{
	stat_inc(STRATA_STAT_EVENTS);
	bpf_ringbuf_submit(e, submit_flags());
}

static __always_inline void hdr_init(struct strata_hdr *h, __u16 type, __u32 len, __u64 ts)
{
	h->type = type;
	h->version = STRATA_EVENTS_VERSION;
	h->flags = 0;
	h->len = len;
	h->ts_ns = ts;
}

/* ---- sampling by message (events.h: strata_sampling, strata_msg_key) ---- */

/* shared by every object like the ring buffer (the loader reuses the first object's map) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct strata_sampling);
} sampling SEC(".maps");

/* decisions of messages traced senders wrote while shedding; a message needs it for a few ms */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct strata_msg_key);
	__type(value, __u8);
} msg_keep SEC(".maps");

/* what user space wrote into the `sampling` map (NULL only if the map is broken) */
static __always_inline struct strata_sampling *sampling_cfg(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&sampling, &zero);
}

/* 0 while everything is kept: the only sampling cost then is this lookup */
static __always_inline __u32 sampling_shed(void)
{
	struct strata_sampling *s = sampling_cfg();
	return s ? s->shed : 0;
}

/* the observation window's number (0 without windows): flow and socket state from an earlier one is stale */
static __always_inline __u32 sampling_window(void)
{
	struct strata_sampling *s = sampling_cfg();
	return s ? s->window : 0;
}

/* between observation windows (user space sets it): the packet families do nothing */
static __always_inline bool sampling_paused(void)
{
	struct strata_sampling *s = sampling_cfg();
	if (!s || !(s->flags & STRATA_SAMPLING_PAUSED))
		return false;
	stat_inc(STRATA_STAT_PAUSED);
	return true;
}

static __always_inline __u32 rd32(const __u8 *p)
{
	__u32 v;
	__builtin_memcpy(&v, p, 4);
	return v;
}

/* the same value on every node for the same message: endpoint and seq, mixed (murmur3 finalizer) */
static __always_inline __u32 msg_hash(const __u8 *addr, __u16 port, __u32 seq)
{
	__u32 h = rd32(addr) ^ (rd32(addr + 4) * 0x9e3779b1u) ^ (rd32(addr + 8) * 0x85ebca6bu) ^
		  (rd32(addr + 12) * 0xc2b2ae35u) ^ ((__u32)port << 16) ^ (seq * 0x27d4eb2fu);
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static __always_inline void msg_key_set(struct strata_msg_key *k, const __u8 *addr, __u16 port, __u32 seq)
{
	__builtin_memcpy(k->addr, addr, 16);
	k->port = port;
	k->_pad0 = 0;
	k->seq = seq;
}

/* what a traced sender decided for (client endpoint, seq), or 0 */
static __always_inline __u8 msg_decision(const __u8 *addr, __u16 port, __u32 seq)
{
	struct strata_msg_key k;
	__u8 *v;

	msg_key_set(&k, addr, port, seq);
	v = bpf_map_lookup_elem(&msg_keep, &k);
	return v ? *v : 0;
}

static __always_inline void msg_record(const __u8 *addr, __u16 port, __u32 seq, __u8 keep)
{
	struct strata_msg_key k;

	msg_key_set(&k, addr, port, seq);
	bpf_map_update_elem(&msg_keep, &k, &keep, BPF_ANY);
}

/*
 * A message nobody on this node decided for: kept unless its hash falls in the shed range. Every
 * observer of the message (packets on each device, the reading process) computes the same; only
 * the socket family counts it, so a shed request is counted once.
 */
static __always_inline __u8 root_decision(const __u8 *addr, __u16 port, __u32 seq, __u32 shed, bool count)
{
	if (msg_hash(addr, port, seq) >= shed)
		return STRATA_KEEP;
	if (count)
		stat_inc(STRATA_STAT_SHED_ROOTS);
	return STRATA_DROP;
}

#endif
