// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TC clsact ingress + egress on chosen interfaces (a pod's host-side veth, a node NIC).
 * Observe only: every path returns TC_ACT_UNSPEC so the CNI's own programs and verdicts are
 * untouched. Aggregation happens here: per flow and interface, only the first data packet of
 * each message (a run of data in one direction) and control packets (SYN/FIN/RST) become events;
 * the rest of the message is counted in the flow state and reported with the next event.
 */
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 pkt_payload_cap = 128; /* multiple of 8, <= STRATA_PKT_PAYLOAD_MAX */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04

struct flow_key {
	__u8 a[16]; /* the lower (addr, port) endpoint */
	__u8 b[16];
	__u16 aport;
	__u16 bport;
	__u32 ifindex;
};

struct flow_state {
	__u8 last_sender; /* 0: none yet, 1: a, 2: b */
	__u8 _pad[3];
	__u32 pkts;  /* data packets of the current message after its first */
	__u32 bytes; /* and their bytes */
};

/* bounded: an evicted flow only means its next packet is reported as a message start */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct flow_key);
	__type(value, struct flow_state);
} flows SEC(".maps");

struct strata_pkt_event _pkt_event_btf = {};

struct l4 {
	struct strata_tuple tu;
	__u32 seq, ack, off; /* off: TCP payload offset from skb->data */
	__u16 data_len;
	__u8 flags;
};

static __always_inline int parse(struct __sk_buff *skb, struct l4 *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th;
	__u32 l3off = sizeof(*eth), l4off, ip_total;

	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memset(&p->tu, 0, sizeof(p->tu));
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l3off;
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP)
			return -1;
		/* fragments other than the first carry no TCP header */
		if (ip->frag_off & bpf_htons(0x1fff))
			return -1;
		__builtin_memcpy(p->tu.saddr, &ip->saddr, 4);
		__builtin_memcpy(p->tu.daddr, &ip->daddr, 4);
		p->tu.family = AF_INET;
		l4off = l3off + ip->ihl * 4;
		ip_total = bpf_ntohs(ip->tot_len) + l3off;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3off;
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return -1; /* extension headers: not parsed (README limits) */
		__builtin_memcpy(p->tu.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tu.daddr, &ip6->daddr, 16);
		p->tu.family = AF_INET6;
		l4off = l3off + sizeof(*ip6);
		ip_total = bpf_ntohs(ip6->payload_len) + l4off;
	} else {
		return -1;
	}
	if (l4off > 255)
		return -1;
	th = data + l4off;
	if ((void *)(th + 1) > end)
		return -1;
	p->tu.sport = bpf_ntohs(th->source);
	p->tu.dport = bpf_ntohs(th->dest);
	p->seq = bpf_ntohl(th->seq);
	p->ack = bpf_ntohl(th->ack_seq);
	p->flags = ((__u8 *)th)[13];
	p->off = l4off + th->doff * 4;
	/* GSO skbs: tot_len describes the first segment; skb->len the whole super-packet */
	if (skb->len > p->off)
		p->data_len = skb->len - p->off;
	else
		p->data_len = 0;
	(void)ip_total;
	return 0;
}

static __always_inline int ep_cmp(const __u8 *x, __u16 xp, const __u8 *y, __u16 yp)
{
	for (int i = 0; i < 16; i++) {
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	}
	return xp < yp ? -1 : (xp > yp ? 1 : 0);
}

static __always_inline void observe(struct __sk_buff *skb, __u8 dir)
{
	struct flow_state *st, init = {};
	struct flow_key k = {};
	struct strata_pkt_event *e;
	struct l4 p;
	__u8 sender;
	__u32 agg_pkts = 0, agg_bytes = 0, n;

	stat_inc(STRATA_STAT_PKT_SEEN);
	if (parse(skb, &p)) {
		stat_inc(STRATA_STAT_PKT_NOT_TCP);
		return;
	}
	if (ep_cmp(p.tu.saddr, p.tu.sport, p.tu.daddr, p.tu.dport) <= 0) {
		__builtin_memcpy(k.a, p.tu.saddr, 16);
		__builtin_memcpy(k.b, p.tu.daddr, 16);
		k.aport = p.tu.sport;
		k.bport = p.tu.dport;
		sender = 1;
	} else {
		__builtin_memcpy(k.a, p.tu.daddr, 16);
		__builtin_memcpy(k.b, p.tu.saddr, 16);
		k.aport = p.tu.dport;
		k.bport = p.tu.sport;
		sender = 2;
	}
	k.ifindex = skb->ifindex;

	st = bpf_map_lookup_elem(&flows, &k);
	if (!st) {
		bpf_map_update_elem(&flows, &k, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&flows, &k);
		if (!st)
			return;
	}
	if (p.data_len > 0) {
		if (st->last_sender == sender) {
			/* continuation of the current message: count it, emit nothing */
			__sync_fetch_and_add(&st->pkts, 1);
			__sync_fetch_and_add(&st->bytes, p.data_len);
			stat_inc(STRATA_STAT_PKT_AGGREGATED);
			return;
		}
		agg_pkts = st->pkts;
		agg_bytes = st->bytes;
		st->last_sender = sender;
		st->pkts = 0;
		st->bytes = 0;
	} else if (!(p.flags & (TCP_SYN | TCP_FIN | TCP_RST))) {
		return; /* pure ACK / window update */
	}

	e = event_reserve(sizeof(*e) - STRATA_PKT_PAYLOAD_MAX + pkt_payload_cap);
	if (!e)
		return;
	hdr_init(&e->hdr, STRATA_EV_PKT, sizeof(*e) - STRATA_PKT_PAYLOAD_MAX + pkt_payload_cap,
		 bpf_ktime_get_ns());
	e->ifindex = skb->ifindex;
	e->seq = p.seq;
	e->ack = p.ack;
	e->skb_len = skb->len;
	e->data_len = p.data_len;
	e->tcp_flags = p.flags;
	e->dir = dir;
	e->agg_pkts = agg_pkts;
	e->agg_bytes = agg_bytes;
	e->_pad0 = 0;
	e->tuple = p.tu;
	e->payload_len = 0;
	n = p.data_len < pkt_payload_cap ? p.data_len : pkt_payload_cap;
	if (n > 0) {
		/* skb_load_bytes rejects a zero length the verifier cannot exclude: load m + 1 */
		__u32 m = n - 1;
		barrier_var(m);
		m &= STRATA_PKT_PAYLOAD_MAX - 1;
		if (m >= pkt_payload_cap)
			m = pkt_payload_cap - 1;
		if (bpf_skb_load_bytes(skb, p.off, e->payload, m + 1) == 0)
			e->payload_len = m + 1;
		else
			stat_inc(STRATA_STAT_READ_ERRORS);
	}
	if (p.data_len > e->payload_len)
		e->hdr.flags |= STRATA_F_TRUNCATED;
	e->hdr.flags |= STRATA_F_SEQ_VALID;
	event_submit(e);
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	observe(skb, STRATA_DIR_IN);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	observe(skb, STRATA_DIR_OUT);
	return TC_ACT_UNSPEC;
}
