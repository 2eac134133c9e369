// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Open vSwitch, kernel datapath (the openvswitch module, datapath_type=system): flow misses.
 *
 * The bridge crossing itself is seen by TC on the OVS ports (veth_tc), as in the userspace
 * datapath. What TC cannot tell is whether the datapath's flow table had a flow for a packet. On a
 * miss the module hands the packet to ovs-vswitchd over netlink (an upcall: ovs_dp_upcall); a
 * handler thread translates it, installs a flow and sends the packet back to be executed
 * (OVS_PACKET_CMD_EXECUTE: ovs_packet_cmd_execute builds a new skb and runs the actions on it).
 * - the upcall: the packet's identity (tuple, TCP seq and ack: the skb does not survive the trip)
 *   is kept with the time it left the kernel;
 * - the return: while a thread is inside ovs_packet_cmd_execute (a kprobe: the module has no
 *   tracepoint there), the first action executed on its packet is looked up among the pending
 *   upcalls; a match is one event: upcall time, return time, the packet.
 * The fast path (a flow hit) runs the action program too; it pays one read of `executing` (no
 * execute in flight: nothing else) and emits nothing.
 * Variant "tracepoint" (kernel >= 6.0): the openvswitch:ovs_dp_upcall and
 * openvswitch:ovs_do_execute_action tracepoints (raw, BTF-free: their arguments are the
 * functions'). Variant "kprobe" (5.10, whose module has no tracepoints): kprobes on ovs_dp_upcall
 * and ovs_execute_actions, the functions those tracepoints sit in.
 */
#include "common.bpf.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* an upcall whose packet has not come back after this long is dropped (the flow was not installed) */
const volatile __u64 ovs_return_window_ns = 1000ULL * 1000 * 1000;

/* the upcalled packet's identity on the wire */
struct pkt_id {
	struct strata_tuple tu;
	__u32 seq;
	__u32 ack;
};

struct pkt_info {
	struct pkt_id id;
	__u16 data_len;
	__u8 tcp_flags;
	__u8 ok;
};

/* upcalls waiting for their packet to come back; LRU: one that never comes back is evicted */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct pkt_id);
	__type(value, __u64);
} ovs_kpending SEC(".maps");

/* threads inside ovs_packet_cmd_execute (value: 1 until its first action ran) */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} ovs_kexec SEC(".maps");

/* executes in flight on the node: 0 lets the fast path return at once */
__s64 executing = 0;

/* Ethernet + IPv4/IPv6 + TCP of a kernel skb, from its mac header (set by the flow key extraction) */
static __always_inline void parse_skb(struct sk_buff *skb, struct pkt_info *p)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 mac = BPF_CORE_READ(skb, mac_header);
	__u8 h[14 + 40];
	struct tcphdr th;
	__u32 l4off, ip_len;
	__u16 proto;

	__builtin_memset(p, 0, sizeof(*p));
	if (mac == (__u16)~0U)
		return;
	if (bpf_probe_read_kernel(h, sizeof(h), head + mac)) {
		stat_inc(STRATA_STAT_READ_ERRORS);
		return;
	}
	proto = ((__u16)h[12] << 8) | h[13];
	if (proto == ETH_P_IP) {
		if (h[14 + 9] != IPPROTO_TCP || (h[14] & 0xf) < 5 || ((h[14 + 6] & 0x1f) | h[14 + 7]))
			return;
		l4off = 14 + (h[14] & 0xf) * 4;
		ip_len = ((__u32)h[14 + 2] << 8 | h[14 + 3]) + 14;
		__builtin_memcpy(p->id.tu.saddr, &h[14 + 12], 4);
		__builtin_memcpy(p->id.tu.daddr, &h[14 + 16], 4);
		p->id.tu.family = AF_INET;
	} else if (proto == ETH_P_IPV6) {
		if (h[14 + 6] != IPPROTO_TCP)
			return;
		l4off = 14 + 40;
		ip_len = ((__u32)h[14 + 4] << 8 | h[14 + 5]) + 14 + 40;
		__builtin_memcpy(p->id.tu.saddr, &h[14 + 8], 16);
		__builtin_memcpy(p->id.tu.daddr, &h[14 + 24], 16);
		p->id.tu.family = AF_INET6;
	} else {
		return;
	}
	if (bpf_probe_read_kernel(&th, sizeof(th), head + mac + l4off)) {
		stat_inc(STRATA_STAT_READ_ERRORS);
		p->id.tu.family = 0;
		return;
	}
	p->id.tu.sport = bpf_ntohs(th.source);
	p->id.tu.dport = bpf_ntohs(th.dest);
	p->id.seq = bpf_ntohl(th.seq);
	p->id.ack = bpf_ntohl(th.ack_seq);
	p->tcp_flags = ((__u8 *)&th)[13];
	if (ip_len > l4off + th.doff * 4)
		p->data_len = ip_len - l4off - th.doff * 4;
	p->ok = 1;
}

static __always_inline void on_upcall(struct sk_buff *skb)
{
	struct pkt_info p;
	__u64 now = bpf_ktime_get_ns();

	stat_inc(STRATA_STAT_OVS_KUPCALLS);
	parse_skb(skb, &p);
	if (!p.ok)
		return; /* not TCP: nothing a request could be charged */
	bpf_map_update_elem(&ovs_kpending, &p.id, &now, BPF_ANY);
}

static __always_inline void on_action(struct sk_buff *skb)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct strata_ovs_upcall_event *e;
	struct pkt_info p;
	__u64 *sent, now;
	__u8 *first;

	if (!executing)
		return; /* the fast path */
	first = bpf_map_lookup_elem(&ovs_kexec, &tid);
	if (!first || !*first)
		return;
	*first = 0; /* one look per execute: its other actions act on the same packet */
	parse_skb(skb, &p);
	if (!p.ok)
		return;
	sent = bpf_map_lookup_elem(&ovs_kpending, &p.id);
	if (!sent)
		return;
	now = bpf_ktime_get_ns();
	if (now - *sent > ovs_return_window_ns) {
		bpf_map_delete_elem(&ovs_kpending, &p.id);
		return;
	}
	stat_inc(STRATA_STAT_OVS_KRETURNS);
	e = event_reserve(sizeof(*e));
	if (e) {
		hdr_init(&e->hdr, STRATA_EV_OVS_KUPCALL, sizeof(*e), now);
		e->rx_ts_ns = *sent;
		e->pid = id >> 32;
		e->tid = tid;
		e->seq = p.id.seq;
		e->ack = p.id.ack;
		e->batch = 1;
		e->tcp_flags = p.tcp_flags;
		e->nth = 1;
		e->data_len = p.data_len;
		e->_pad0 = 0;
		__builtin_memcpy(&e->tuple, &p.id.tu, sizeof(e->tuple));
		event_submit(e);
	}
	bpf_map_delete_elem(&ovs_kpending, &p.id);
}

/* every variant: the packet coming back from ovs-vswitchd (no tracepoint in any kernel) */
SEC("kprobe/ovs_packet_cmd_execute")
int BPF_KPROBE(ovs_kexec_enter)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u8 one = 1;

	bpf_map_update_elem(&ovs_kexec, &tid, &one, BPF_ANY);
	__sync_fetch_and_add(&executing, 1);
	return 0;
}

SEC("kretprobe/ovs_packet_cmd_execute")
int BPF_KRETPROBE(ovs_kexec_exit)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	/* an entry seen by this program's twin: a kretprobe without it (attached mid-call) changes nothing */
	if (bpf_map_delete_elem(&ovs_kexec, &tid) == 0)
		__sync_fetch_and_add(&executing, -1);
	return 0;
}

/* Variant "tracepoint": TP_PROTO(dp, skb, key, upcall_info) and (dp, skb, key, attr, rem) */
SEC("raw_tp/ovs_dp_upcall")
int ovs_kupcall_tp(struct bpf_raw_tracepoint_args *ctx)
{
	on_upcall((struct sk_buff *)ctx->args[1]);
	return 0;
}

SEC("raw_tp/ovs_do_execute_action")
int ovs_kaction_tp(struct bpf_raw_tracepoint_args *ctx)
{
	on_action((struct sk_buff *)ctx->args[1]);
	return 0;
}

/* Variant "kprobe": ovs_dp_upcall(dp, skb, key, upcall_info, cutlen), ovs_execute_actions(dp, skb, acts, key) */
SEC("kprobe/ovs_dp_upcall")
int BPF_KPROBE(ovs_kupcall_kp, void *dp, struct sk_buff *skb)
{
	on_upcall(skb);
	return 0;
}

SEC("kprobe/ovs_execute_actions")
int BPF_KPROBE(ovs_kaction_kp, void *dp, struct sk_buff *skb)
{
	on_action(skb);
	return 0;
}
