// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * TC clsact ingress + egress on chosen interfaces (a pod's host-side veth, a node NIC).
 * Observe only: every path returns TC_ACT_UNSPEC so the CNI's own programs and verdicts are
 * untouched. Aggregation happens here: per flow and interface, only the first data packet of
 * each message (a run of data in one direction) and control packets (SYN/FIN/RST) become events;
 * the rest of the message is counted in the flow state and reported with the next event, and
 * where its data ends (and when) in a small tail event at the end of each send and of the message
 * (flow.bpf.h), never one per packet.
 */
#include "flow.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 pkt_payload_cap = 128; /* multiple of 8, <= STRATA_PKT_PAYLOAD_MAX */

#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

STRATA_FLOW_MAP(flows);

struct strata_pkt_event _pkt_event_btf = {};
struct strata_tail_event _tail_event_btf = {};
enum strata_tail_src _tail_src_btf;

/*
 * Ethernet [+ one 802.1Q/802.1ad tag] + IPv4 (options allowed) or IPv6 (no extension headers) +
 * TCP, by direct packet access. Returns -1 for anything else or anything cut short: the caller
 * counts it as PKT_NOT_TCP. Offsets in p are from skb->data.
 */
static __always_inline int parse(struct __sk_buff *skb, struct l4 *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr *th;
	__u32 l3off = sizeof(*eth), l4off, ip_end;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memset(&p->tu, 0, sizeof(p->tu));
	proto = eth->h_proto;
	/* on a real device the tag is usually in skb->vlan_tci already; crafted or untagged-offload
	 * frames carry it inline */
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vh = data + l3off;
		if ((void *)(vh + 1) > end)
			return -1;
		proto = vh->h_vlan_encapsulated_proto;
		l3off += sizeof(*vh);
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l3off;
		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl < 5)
			return -1;
		/* fragments other than the first carry no TCP header */
		if (ip->frag_off & bpf_htons(0x1fff))
			return -1;
		__builtin_memcpy(p->tu.saddr, &ip->saddr, 4);
		__builtin_memcpy(p->tu.daddr, &ip->daddr, 4);
		p->tu.family = AF_INET;
		l4off = l3off + ip->ihl * 4;
		ip_end = l3off + bpf_ntohs(ip->tot_len);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3off;
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return -1; /* extension headers: not parsed (README limits) */
		__builtin_memcpy(p->tu.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tu.daddr, &ip6->daddr, 16);
		p->tu.family = AF_INET6;
		l4off = l3off + sizeof(*ip6);
		ip_end = l4off + bpf_ntohs(ip6->payload_len);
	} else {
		return -1;
	}
	if (l4off > 255)
		return -1;
	th = data + l4off;
	if ((void *)(th + 1) > end || th->doff < 5)
		return -1;
	l4_from_tcp(p, th);
	p->off = l4off + th->doff * 4;
	/*
	 * Where the TCP payload ends: the IP length, which excludes Ethernet padding (a 54-byte ACK
	 * padded to 60 carries no data). GSO/GRO super-packets carry the whole length there too,
	 * except BIG TCP (tot_len 0) and lengths past the skb: then skb->len.
	 */
	if (ip_end <= l4off || ip_end > skb->len)
		ip_end = skb->len;
	p->data_len = ip_end > p->off ? ip_end - p->off : 0;
	return 0;
}

static __always_inline void observe(struct __sk_buff *skb, __u8 dir)
{
	struct flow_key k = {};
	struct strata_pkt_event *e;
	struct tail_info t;
	struct l4 p;
	__u8 sender;
	__u32 agg_pkts, agg_bytes, n;
	int v;

	if (sampling_paused())
		return;
	stat_inc(STRATA_STAT_PKT_SEEN);
	if (parse(skb, &p)) {
		stat_inc(STRATA_STAT_PKT_NOT_TCP);
		return;
	}
	sender = flow_key_init(&k, &p.tu);
	k.ifindex = skb->ifindex;
	v = flow_update(&flows, &k, &p, sender, STRATA_TAIL_TC, dir, STRATA_STAT_PKT_AGGREGATED, &agg_pkts,
			&agg_bytes, &t);
	if (v == FLOW_TAIL)
		tail_submit(&t, k.ifindex, 0, STRATA_TAIL_TC, bpf_ktime_get_ns(), 0, 0);
	if (v != FLOW_EMIT)
		return;

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
