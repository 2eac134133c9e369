// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Packets at a device's receive, queue and transmit points (net:netif_receive_skb,
 * net:net_dev_queue, net:net_dev_xmit), on the devices the agent watches in any netns: the
 * node's uplinks and each traced pod's own eth0 (between the pod's socket and its host veth).
 * Attached as raw tracepoints (args[0] is the skb), so no tracefs is needed. Headers only: at
 * these points the payload is often paged, and TC has it anyway (platform.md). Aggregated like
 * veth_tc: per (device, netns, point), the first data packet of each message plus SYN/FIN/RST,
 * and tail events with where each message's data ends (flow.bpf.h).
 */
#include "flow.bpf.h"
#include "prefilter.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct netdev_key {
	__u32 netns;   /* inode of the device's netns */
	__u32 ifindex;
};

/* the devices observed; everything else returns after one lookup */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct netdev_key);
	__type(value, __u8);
} netdev_watch SEC(".maps");

/*
 * Its prefilter (prefilter.bpf.h), by ifindex alone: the netns costs two more kernel reads, and a
 * device of another netns that shares a watched device's ifindex (every pod's eth0 may be 2) only
 * falls through to the exact lookup. Loopbacks and the host ends of untraced pods' veths stop here.
 */
STRATA_PREFILTER_MAP(netdev_watch_slots);

STRATA_FLOW_MAP(nd_flows);

/*
 * What net_dev_queue decided to emit, by skb, for net_dev_xmit: once a driver's ndo_start_xmit
 * returned, the skb may already belong to the peer (veth hands it over) or be freed and reused,
 * so the xmit point never reads the skb: it reports the packet its queue point parsed. Only
 * message starts and the packets that end a send (PSH/FIN) are pending: one map update per
 * message or send, not per packet, so the last packets of a send without PSH have no xmit time.
 */
struct pending {
	struct netdev_key dev; /* the device that queued it: xmit reports it on that device only */
	struct l4 p;
	__u32 agg_pkts;
	__u32 agg_bytes;
	__u32 skb_len;
	__u32 is_tail; /* a later packet of a message ending a send: xmit reports a tail, with queue_ns */
	__u64 queue_ns;
	struct tail_info t;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pending);
} nd_pending SEC(".maps");

struct strata_netdev_event _netdev_event_btf = {};
enum strata_netdev_point _netdev_point_btf;

/*
 * Offsets of the IP header from skb->head. At netif_receive_skb the tracepoint runs before
 * __netif_receive_skb_core resets network_header, but eth_type_trans has already pulled the MAC
 * header: skb->data is the IP header. On the way out (queue, xmit) skb->data is the MAC header
 * and network_header is set by the stack.
 */
static __always_inline int parse(struct sk_buff *skb, __u8 point, struct l4 *p)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *data = BPF_CORE_READ(skb, data);
	__u16 proto = BPF_CORE_READ(skb, protocol);
	__u32 len = BPF_CORE_READ(skb, len);
	__u32 data_off = data - head, nh, th_off, ip_len;
	struct tcphdr th;

	if (point == STRATA_NETDEV_POINT_RX)
		nh = data_off;
	else
		nh = BPF_CORE_READ(skb, network_header);
	if (nh == 0xffff || nh < data_off)
		return -1;
	__builtin_memset(&p->tu, 0, sizeof(p->tu));
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_probe_read_kernel(&ip, sizeof(ip), head + nh))
			return -1;
		if (ip.protocol != IPPROTO_TCP || ip.ihl < 5 || (ip.frag_off & bpf_htons(0x1fff)))
			return -1;
		__builtin_memcpy(p->tu.saddr, &ip.saddr, 4);
		__builtin_memcpy(p->tu.daddr, &ip.daddr, 4);
		p->tu.family = AF_INET;
		th_off = nh + ip.ihl * 4;
		ip_len = bpf_ntohs(ip.tot_len);
		ip_len = ip_len > ip.ihl * 4 ? ip_len - ip.ihl * 4 : 0; /* TCP header + payload */
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh))
			return -1;
		if (ip6.nexthdr != IPPROTO_TCP)
			return -1;
		__builtin_memcpy(p->tu.saddr, &ip6.saddr, 16);
		__builtin_memcpy(p->tu.daddr, &ip6.daddr, 16);
		p->tu.family = AF_INET6;
		th_off = nh + sizeof(ip6);
		ip_len = bpf_ntohs(ip6.payload_len);
	} else {
		return -1;
	}
	if (bpf_probe_read_kernel(&th, sizeof(th), head + th_off) || th.doff < 5)
		return -1;
	l4_from_tcp(p, &th);
	p->off = th_off + th.doff * 4; /* from head */
	{
		/* bytes of the skb from the TCP payload on; the IP length bounds it (padding),
		 * except on GSO/BIG TCP skbs where it may be 0 or describe one segment */
		__u32 end = data_off + len;
		__u32 ip_end = th_off + ip_len;
		if (ip_len && ip_end > p->off && ip_end < end)
			end = ip_end;
		p->data_len = end > p->off ? end - p->off : 0;
	}
	return 0;
}

static __always_inline void emit(__u64 skb, struct netdev_key *wk, __u8 point, struct l4 *p,
				 __u32 agg_pkts, __u32 agg_bytes, __u32 skb_len)
{
	struct strata_netdev_event *e = event_reserve(sizeof(*e));

	if (!e)
		return;
	hdr_init(&e->hdr, STRATA_EV_NETDEV, sizeof(*e), bpf_ktime_get_ns());
	e->hdr.flags = STRATA_F_SEQ_VALID;
	e->skb = skb;
	e->ifindex = wk->ifindex;
	e->netns = wk->netns;
	e->seq = p->seq;
	e->ack = p->ack;
	e->skb_len = skb_len;
	e->data_len = p->data_len;
	e->tcp_flags = p->flags;
	e->point = point;
	e->agg_pkts = agg_pkts;
	e->agg_bytes = agg_bytes;
	e->tuple = p->tu;
	event_submit(e);
}

static __always_inline bool watched(struct net_device *dev, struct netdev_key *wk)
{
	if (!dev)
		return false;
	wk->ifindex = BPF_CORE_READ(dev, ifindex);
	if (!prefilter_maybe(&netdev_watch_slots, prefilter_slot(wk->ifindex)))
		return false;
	wk->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	return bpf_map_lookup_elem(&netdev_watch, wk) != NULL;
}

/* rx and queue: the skb is alive and skb->dev is the device */
static __always_inline int observe(struct sk_buff *skb, __u8 point)
{
	struct netdev_key wk;
	struct flow_key k = {};
	struct tail_info t;
	struct l4 p;
	__u32 agg_pkts, agg_bytes, len;
	__u8 sender;
	__u64 key = (__u64)skb;
	int v;

	if (!watched(BPF_CORE_READ(skb, dev), &wk) || sampling_paused())
		return 0;
	stat_inc(STRATA_STAT_NETDEV_SEEN);
	if (parse(skb, point, &p))
		return 0; /* not TCP (ARP, ICMP, ...): counted as seen only */
	sender = flow_key_init(&k, &p.tu);
	k.ifindex = wk.ifindex;
	k.netns = wk.netns;
	/*
	 * One flow state per device, shared by rx and queue: a device sees a connection's outbound
	 * messages at queue and its inbound ones at rx, and only the turn from one sender to the
	 * other starts a message. Keyed per point, each state would see one sender forever and
	 * report only a keep-alive connection's first message.
	 */
	k.point = 0;
	v = flow_update(&nd_flows, &k, &p, sender, STRATA_TAIL_NETDEV, point, STRATA_STAT_NETDEV_AGGREGATED,
			&agg_pkts, &agg_bytes, &t);
	if (v == FLOW_TAIL) {
		__u64 now = bpf_ktime_get_ns();
		/*
		 * Reported at once, and on a queue point once more when its driver sends it: a qdisc
		 * may hold it (that is the point), drop it, or segment it (tbf splits a GSO packet
		 * larger than its burst: the driver then sends other skbs, and the xmit is not seen).
		 */
		tail_submit(&t, wk.ifindex, wk.netns, STRATA_TAIL_NETDEV, now, 0, 0);
		if (point == STRATA_NETDEV_POINT_QUEUE) {
			struct pending pd = { .dev = wk, .is_tail = 1, .queue_ns = now, .t = t };
			bpf_map_update_elem(&nd_pending, &key, &pd, BPF_ANY);
		}
		return 0;
	}
	if (v != FLOW_EMIT)
		return 0;
	len = BPF_CORE_READ(skb, len);
	if (point == STRATA_NETDEV_POINT_QUEUE) {
		struct pending pd = { .dev = wk, .p = p, .agg_pkts = agg_pkts, .agg_bytes = agg_bytes, .skb_len = len };
		bpf_map_update_elem(&nd_pending, &key, &pd, BPF_ANY);
	}
	emit((__u64)skb, &wk, point, &p, agg_pkts, agg_bytes, len);
	return 0;
}

/* raw tracepoints: args[0] is the skb (net_dev_xmit: skb, rc, dev, len) */
SEC("raw_tp/netif_receive_skb")
int nd_rx(struct bpf_raw_tracepoint_args *ctx)
{
	return observe((struct sk_buff *)ctx->args[0], STRATA_NETDEV_POINT_RX);
}

SEC("raw_tp/net_dev_queue")
int nd_queue(struct bpf_raw_tracepoint_args *ctx)
{
	return observe((struct sk_buff *)ctx->args[0], STRATA_NETDEV_POINT_QUEUE);
}

SEC("raw_tp/net_dev_xmit")
int nd_xmit(struct bpf_raw_tracepoint_args *ctx)
{
	struct net_device *dev = (struct net_device *)ctx->args[2];
	__u64 key = ctx->args[0];
	struct netdev_key wk;
	struct pending *pd;

	/* rc != 0 (NETDEV_TX_BUSY): the driver did not take it; it is retried, keep it pending */
	if (ctx->args[1] != 0)
		return 0;
	/*
	 * Every packet of every device passes here. The device comes from the argument (skb->dev
	 * may already be the veth peer): watched() stops an unwatched one at its ifindex's
	 * prefilter slot (one kernel read, no lookup). The watch map goes before the pending
	 * lookup: its buckets are few and hot, where a lookup by skb address lands in a cold
	 * bucket of a 16384-entry map (measured: bench/README.md, "Prefilters").
	 */
	if (!watched(dev, &wk))
		return 0;
	pd = bpf_map_lookup_elem(&nd_pending, &key);
	/*
	 * Reported on the device that queued it only: an skb address is reused, and a stacked
	 * device (vlan) sends the same skb through its lower device before its own xmit fires.
	 */
	if (!pd || pd->dev.ifindex != wk.ifindex || pd->dev.netns != wk.netns)
		return 0; /* aggregated at queue, queued before the watch began, or another device's */
	if (pd->is_tail) {
		pd->t.point = STRATA_NETDEV_POINT_XMIT;
		tail_submit(&pd->t, wk.ifindex, wk.netns, STRATA_TAIL_NETDEV, bpf_ktime_get_ns(), pd->queue_ns, 0);
	} else {
		emit(key, &wk, STRATA_NETDEV_POINT_XMIT, &pd->p, pd->agg_pkts, pd->agg_bytes, pd->skb_len);
	}
	bpf_map_delete_elem(&nd_pending, &key);
	return 0;
}
