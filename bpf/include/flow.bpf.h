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
#define TCP_PSH 0x08

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
	__u8 point;       /* where the current message is seen (TC: strata_dir; net_dev: strata_netdev_point) */
	__u8 tail_open;   /* its data reaches past the last tail reported: report at its end */
	__u32 pkts;  /* data packets of the current message after its first */
	__u32 bytes; /* and their bytes */
	__u32 seq;     /* the current message's first byte */
	__u32 end_seq; /* just past its last byte seen */
	__u32 window;  /* strata_sampling.window when last seen: an older one missed packets between windows */
	__u64 last_ns; /* when its last data packet was seen */
};

/* the LRU every family declares: an evicted flow means its next packet is reported as a message
 * start and the end of the message it was in is not (STRATA_STAT_FLOW_MISSES counts both) */
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

/* the tuple of a message from the flow key: sender 1 = a, 2 = b */
static __always_inline void tuple_of(struct strata_tuple *tu, const struct flow_key *k, __u8 sender, __u16 family)
{
	if (sender == 1) {
		__builtin_memcpy(tu->saddr, k->a, 16);
		__builtin_memcpy(tu->daddr, k->b, 16);
		tu->sport = k->aport;
		tu->dport = k->bport;
	} else {
		__builtin_memcpy(tu->saddr, k->b, 16);
		__builtin_memcpy(tu->daddr, k->a, 16);
		tu->sport = k->bport;
		tu->dport = k->aport;
	}
	tu->family = family;
	tu->_pad0 = 0;
}

/* what a tail event says, gathered where the packet is seen (net_dev: carried to xmit) */
struct tail_info {
	struct strata_tuple tu;
	__u32 seq, end_seq, pkts;
	__u8 point;
};

static __always_inline void tail_submit(const struct tail_info *t, __u32 ifindex, __u32 netns, __u8 src,
					 __u64 ts, __u64 queue_ts, __u8 final)
{
	struct strata_tail_event *e = event_reserve(sizeof(*e));

	if (!e)
		return;
	hdr_init(&e->hdr, STRATA_EV_TAIL, sizeof(*e), ts);
	e->hdr.flags = STRATA_F_SEQ_VALID;
	e->queue_ts_ns = queue_ts;
	e->ifindex = ifindex;
	e->netns = netns;
	e->seq = t->seq;
	e->end_seq = t->end_seq;
	e->pkts = t->pkts;
	e->src = src;
	e->point = t->point;
	e->final = final;
	e->_pad0 = 0;
	e->tuple = t->tu;
	event_submit(e);
}

static __always_inline void tail_fill(struct tail_info *t, const struct flow_key *k, const struct flow_state *st,
				      __u16 family)
{
	tuple_of(&t->tu, k, st->last_sender, family);
	t->seq = st->seq;
	t->end_seq = st->end_seq;
	t->pkts = st->pkts + 1;
	t->point = st->point;
}

/* the current message ended (the flow turned, FIN, RST): report its end unless already reported */
static __always_inline void flow_close(struct flow_state *st, const struct flow_key *k, __u16 family, __u8 src)
{
	struct tail_info t;

	if (!st->last_sender || st->shed || !st->tail_open)
		return;
	st->tail_open = 0;
	tail_fill(&t, k, st, family);
	tail_submit(&t, k->ifindex, k->netns, src, st->last_ns, 0, 1);
}

enum flow_verdict {
	FLOW_QUIET = 0, /* counted only */
	FLOW_EMIT = 1,  /* a message start or a control packet: an event */
	FLOW_TAIL = 2,  /* a later packet of a message that ends a send (PSH, FIN): report its end so far (*t) */
};

/*
 * The aggregation rule: a data packet from the flow's last sender continues the current message
 * and is only counted (agg_stat), its end and time kept in the flow state; a data packet from the
 * other side starts a message and is emitted with the counts of the previous one; SYN/FIN/RST are
 * always emitted; pure ACKs never. Where a message's data ends at this point reaches user space
 * in tail events: on a later packet with PSH or FIN (FLOW_TAIL: the caller reports it, and on a
 * device's queue point its xmit too), and when the message ends (the flow turns, FIN, RST) with data
 * past the last report (here). The state of one flow is shared by the CPUs that see its packets:
 * counters are atomic, the end is a best effort (the later of two racing packets usually wins).
 */
static __always_inline int flow_update(void *flows, struct flow_key *k, const struct l4 *p, __u8 sender,
				       __u8 src, __u8 point, __u32 agg_stat, __u32 *agg_pkts,
				       __u32 *agg_bytes, struct tail_info *t)
{
	struct flow_state *st, init = {};
	__u32 window;

	*agg_pkts = 0;
	*agg_bytes = 0;
	/*
	 * A pure ACK neither starts, continues nor ends a message: it returns before the flow's
	 * state is looked up (most packets of a keep-alive exchange at a device's receive point are
	 * ACKs, and the lookup is most of what they would cost). A flow first seen through an ACK
	 * gets its state with its first data packet, counted as a flow miss as any flow seen mid-way.
	 */
	if (p->data_len == 0 && !(p->flags & (TCP_SYN | TCP_FIN | TCP_RST)))
		return FLOW_QUIET;
	window = sampling_window();
	st = bpf_map_lookup_elem(flows, k);
	if (!st) {
		if (p->data_len > 0 && !(p->flags & TCP_SYN))
			stat_inc(STRATA_STAT_FLOW_MISSES);
		init.window = window;
		bpf_map_update_elem(flows, k, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(flows, k);
		if (!st)
			return FLOW_QUIET;
	}
	if (st->window != window) {
		/* last seen before the pause between observation windows: its next data starts a message */
		st->window = window;
		st->last_sender = 0;
		st->tail_open = 0;
	}
	if (p->data_len > 0) {
		__u32 end = p->seq + p->data_len;

		if (st->last_sender == sender) {
			__sync_fetch_and_add(&st->pkts, 1);
			__sync_fetch_and_add(&st->bytes, p->data_len);
			stat_inc(agg_stat);
			/* a retransmission of earlier bytes does not move the end back */
			if ((__s32)(end - st->end_seq) >= 0) {
				st->end_seq = end;
				st->last_ns = bpf_ktime_get_ns();
			}
			if (st->shed)
				return FLOW_QUIET;
			if (!(p->flags & (TCP_PSH | TCP_FIN))) {
				st->tail_open = 1;
				return FLOW_QUIET;
			}
			st->tail_open = 0;
			tail_fill(t, k, st, p->tu.family);
			return FLOW_TAIL;
		}
		flow_close(st, k, p->tu.family, src);
		if (!st->shed) {
			*agg_pkts = st->pkts;
			*agg_bytes = st->bytes;
		}
		st->last_sender = sender;
		st->pkts = 0;
		st->bytes = 0;
		st->seq = p->seq;
		st->end_seq = end;
		st->last_ns = bpf_ktime_get_ns();
		st->point = point;
		st->tail_open = 0;
		st->shed = pkt_shed(p);
		if (st->shed) {
			stat_inc(STRATA_STAT_SHED_EVENTS);
			return FLOW_QUIET;
		}
		return FLOW_EMIT;
	}
	if (p->flags & (TCP_FIN | TCP_RST))
		flow_close(st, k, p->tu.family, src);
	return (p->flags & (TCP_SYN | TCP_FIN | TCP_RST)) != 0 ? FLOW_EMIT : FLOW_QUIET;
}

#endif
