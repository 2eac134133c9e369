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

#endif
