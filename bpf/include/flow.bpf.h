/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Packet helpers shared by the packet-observing families (veth_tc, net_dev): the TCP/IP header
 * fields an event carries, and the in-kernel aggregation that turns a flow's packets into one
 * event per message. Each family keeps its own flow map; the key says where the packet was seen
 * (device, netns, and a family-specific point where one is needed), so the same flow is aggregated
 * separately on every device.
 */
#ifndef STRATA_FLOW_BPF_H
#define STRATA_FLOW_BPF_H

#include "common.bpf.h"

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

/* what the parsers extract from a packet's headers */
struct l4 {
	struct strata_tuple tu;
	__u32 seq, ack;
	__u32 off; /* end of the TCP header, from the start of the parsed buffer */
	__u16 data_len;
	__u8 flags;
};

struct flow_key {
	__u8 a[16]; /* the lower (addr, port) endpoint */
	__u8 b[16];
	__u16 aport;
	__u16 bport;
	__u32 ifindex;
	__u32 netns; /* 0 where the family attaches in one netns (TC) */
	__u32 point; /* family-specific observation point; 0 where the device alone decides (net_dev) */
};

struct flow_state {
	__u8 last_sender; /* 0: none yet, 1: a, 2: b */
	__u8 shed;        /* the current message was shed by sampling: neither it nor its counts are reported */
	__u8 _pad[2];
	__u32 pkts;  /* data packets of the current message after its first */
	__u32 bytes; /* and their bytes */
};

/* the LRU every family declares: an evicted flow only means its next packet is reported as a
 * message start */
#define STRATA_FLOW_MAP(name)                                                                      \
	struct {                                                                                   \
		__uint(type, BPF_MAP_TYPE_LRU_HASH);                                               \
		__uint(max_entries, 65536);                                                        \
		__type(key, struct flow_key);                                                      \
		__type(value, struct flow_state);                                                  \
	} name SEC(".maps")

/* TCP header fields in host order; th points into memory the caller may read directly */
static __always_inline void l4_from_tcp(struct l4 *p, const struct tcphdr *th)
{
	p->tu.sport = bpf_ntohs(th->source);
	p->tu.dport = bpf_ntohs(th->dest);
	p->seq = bpf_ntohl(th->seq);
	p->ack = bpf_ntohl(th->ack_seq);
	p->flags = ((const __u8 *)th)[13];
}

static __always_inline int ep_cmp(const __u8 *x, __u16 xp, const __u8 *y, __u16 yp)
{
	for (int i = 0; i < 16; i++) {
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	}
	return xp < yp ? -1 : (xp > yp ? 1 : 0);
}

/* fills the endpoint part of k (canonical order); returns the sender: 1 = a, 2 = b */
static __always_inline __u8 flow_key_init(struct flow_key *k, const struct strata_tuple *tu)
{
	if (ep_cmp(tu->saddr, tu->sport, tu->daddr, tu->dport) <= 0) {
		__builtin_memcpy(k->a, tu->saddr, 16);
		__builtin_memcpy(k->b, tu->daddr, 16);
		k->aport = tu->sport;
		k->bport = tu->dport;
		return 1;
	}
	__builtin_memcpy(k->a, tu->daddr, 16);
	__builtin_memcpy(k->b, tu->saddr, 16);
	k->aport = tu->dport;
	k->bport = tu->sport;
	return 2;
}

/*
 * Sampling (common.bpf.h): a message start is reported only when its message is kept. A traced
 * sender recorded its decision under the client endpoint, which is the packet's source for a
 * request and its destination for a response (the server's address may be a Service VIP on one
 * side of a DNAT and the pod on the other; the client's is the same on both).
 */
static __always_inline bool pkt_shed(const struct l4 *p)
{
	__u32 shed = sampling_shed();
	__u8 v;

	if (!shed)
		return false;
	v = msg_decision(p->tu.saddr, p->tu.sport, p->seq);
	if (!v)
		v = msg_decision(p->tu.daddr, p->tu.dport, p->seq);
	if (!v)
		v = root_decision(p->tu.saddr, p->tu.sport, p->seq, shed, false);
	return v == STRATA_DROP;
}

/*
 * The aggregation rule: a data packet from the flow's last sender continues the current message
 * and is only counted (agg_stat); a data packet from the other side starts a message and is
 * emitted with the counts of the previous one; SYN/FIN/RST are always emitted; pure ACKs never.
 * Returns true when the packet becomes an event.
 */
static __always_inline bool flow_should_emit(void *flows, struct flow_key *k, const struct l4 *p,
					     __u8 sender, __u32 agg_stat, __u32 *agg_pkts,
					     __u32 *agg_bytes)
{
	struct flow_state *st, init = {};

	*agg_pkts = 0;
	*agg_bytes = 0;
	st = bpf_map_lookup_elem(flows, k);
	if (!st) {
		bpf_map_update_elem(flows, k, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(flows, k);
		if (!st)
			return false;
	}
	if (p->data_len > 0) {
		if (st->last_sender == sender) {
			__sync_fetch_and_add(&st->pkts, 1);
			__sync_fetch_and_add(&st->bytes, p->data_len);
			stat_inc(agg_stat);
			return false;
		}
		if (!st->shed) {
			*agg_pkts = st->pkts;
			*agg_bytes = st->bytes;
		}
		st->last_sender = sender;
		st->pkts = 0;
		st->bytes = 0;
		st->shed = pkt_shed(p);
		if (st->shed) {
			stat_inc(STRATA_STAT_SHED_EVENTS);
			return false;
		}
		return true;
	}
	return (p->flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0;
}

#endif
