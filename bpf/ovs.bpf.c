// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Open vSwitch, userspace datapath (datapath_type=netdev): flow misses in ovs-vswitchd.
 * (The points below are libc functions; the recvmmsg/sendmmsg ones are taken from the syscall
 * tracepoints where tracefs allows, see the variants further down.)
 *
 * Packets crossing the bridge are seen by TC on its ports (veth_tc); what TC cannot see is whether
 * ovs-vswitchd found a datapath flow for them or took the slow path. Debian's ovs-vswitchd is
 * stripped and links the OVS libraries statically: no function of its own can be probed. What
 * remains is libc, probed per process (uprobes with a pid filter, so no other process traps):
 * - recvmmsg: a port's receive batch (AF_PACKET ports of netdev-linux read with recvmmsg); at its
 *   return the first packet's headers are copied from the caller's buffers (the mmsghdr array
 *   lives on the caller's stack and is gone by the time the batch is processed);
 * - pthread_mutex_init: the slow path creates one udpif_key (ukey) per installed megaflow and
 *   ukey_create__ initialises its mutex; the fast path (EMC/dpcls hit) initialises none. Seen in
 *   the thread that read the batch, before that batch's output, it marks the batch as an upcall;
 *   revalidator and handler threads initialise mutexes too, but never with a batch pending;
 * - sendmmsg: the batch's output flush: the batch is done.
 * Events are emitted only for upcalls (rare by design of any switch): the fast path costs three
 * program runs per batch and no ring-buffer traffic.
 */
#include "common.bpf.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* a flow install later than this after the batch's read is not attributed to it */
const volatile __u64 ovs_window_ns = 50 * 1000 * 1000;

struct strata_ovs_upcall_event _ovs_upcall_event_btf = {};

/* ovs-vswitchd processes being traced (tgid), written by the agent next to the uprobe pid filter */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} ovs_pids SEC(".maps");

struct rx_batch {
	__u64 msgvec;  /* recvmmsg's mmsghdr array (user pointer), entry to return */
	__u64 rx_ts_ns;
	__u32 seq;
	__u32 ack;
	__u16 batch;   /* 0: no batch pending */
	__u8 tcp_flags;
	__u8 nth;
	__u16 data_len;
	__u16 _pad0;
	struct strata_tuple tu;
};

/* per thread of ovs-vswitchd: the batch it is processing; LRU: threads come and go */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct rx_batch);
} ovs_rx SEC(".maps");

/* the parts of struct mmsghdr / msghdr / iovec read here (x86-64 and arm64 user ABI) */
struct u_iovec {
	__u64 base;
	__u64 len;
};
#define MSGHDR_IOV_OFF 16 /* struct msghdr: name(8) namelen(4)+pad(4) iov(8) */

static __always_inline bool traced(__u32 tgid)
{
	return bpf_map_lookup_elem(&ovs_pids, &tgid) != NULL;
}

/* the first packet of a batch, read from the process's memory: Ethernet + IPv4/IPv6 + TCP */
static __always_inline void parse_first(struct rx_batch *b)
{
	struct u_iovec iov;
	__u64 iovp = 0;
	__u8 h[14 + 40];
	struct tcphdr th;
	__u32 l4off, ip_len;
	__u16 proto;

	__builtin_memset(&b->tu, 0, sizeof(b->tu));
	b->seq = b->ack = 0;
	b->tcp_flags = 0;
	b->data_len = 0;
	if (bpf_probe_read_user(&iovp, sizeof(iovp), (void *)(b->msgvec + MSGHDR_IOV_OFF)) || !iovp ||
	    bpf_probe_read_user(&iov, sizeof(iov), (void *)iovp) || iov.len < sizeof(h) ||
	    bpf_probe_read_user(h, sizeof(h), (void *)iov.base)) {
		stat_inc(STRATA_STAT_READ_ERRORS);
		return;
	}
	proto = ((__u16)h[12] << 8) | h[13];
	if (proto == ETH_P_IP) {
		if (h[14 + 9] != IPPROTO_TCP || (h[14] & 0xf) < 5 || ((h[14 + 6] & 0x1f) | h[14 + 7]))
			return;
		l4off = 14 + (h[14] & 0xf) * 4;
		ip_len = ((__u32)h[14 + 2] << 8 | h[14 + 3]) + 14;
		__builtin_memcpy(b->tu.saddr, &h[14 + 12], 4);
		__builtin_memcpy(b->tu.daddr, &h[14 + 16], 4);
		b->tu.family = AF_INET;
	} else if (proto == ETH_P_IPV6) {
		if (h[14 + 6] != IPPROTO_TCP)
			return;
		l4off = 14 + 40;
		ip_len = ((__u32)h[14 + 4] << 8 | h[14 + 5]) + 14 + 40;
		__builtin_memcpy(b->tu.saddr, &h[14 + 8], 16);
		__builtin_memcpy(b->tu.daddr, &h[14 + 24], 16);
		b->tu.family = AF_INET6;
	} else {
		return;
	}
	if (bpf_probe_read_user(&th, sizeof(th), (void *)(iov.base + l4off))) {
		b->tu.family = 0;
		return;
	}
	b->tu.sport = bpf_ntohs(th.source);
	b->tu.dport = bpf_ntohs(th.dest);
	b->seq = bpf_ntohl(th.seq);
	b->ack = bpf_ntohl(th.ack_seq);
	b->tcp_flags = ((__u8 *)&th)[13];
	if (ip_len > l4off + th.doff * 4)
		b->data_len = ip_len - l4off - th.doff * 4;
}

/* the bodies, shared by the tracepoint and the uprobe variants */
static __always_inline void rx_enter(__u64 msgvec)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct rx_batch *b, init = {};

	if (!traced(id >> 32))
		return;
	/* a new read: whatever was pending is done (an update per read costs twice a lookup: the
	 * thread's entry is created once and rewritten in place) */
	b = bpf_map_lookup_elem(&ovs_rx, &tid);
	if (b) {
		b->msgvec = msgvec;
		b->batch = 0;
		return;
	}
	init.msgvec = msgvec;
	bpf_map_update_elem(&ovs_rx, &tid, &init, BPF_ANY);
}

static __always_inline void rx_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct rx_batch *b;

	if (!traced(id >> 32))
		return;
	b = bpf_map_lookup_elem(&ovs_rx, &tid);
	if (!b)
		return;
	if (ret <= 0) {
		b->batch = 0;
		return;
	}
	b->batch = ret > 0xffff ? 0xffff : ret;
	b->rx_ts_ns = bpf_ktime_get_ns();
	b->nth = 0;
	parse_first(b);
}

static __always_inline void tx_enter(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct rx_batch *b;

	if (!traced(id >> 32))
		return;
	b = bpf_map_lookup_elem(&ovs_rx, &tid);
	if (b)
		b->batch = 0;
}

/*
 * Variant "tracepoint": the recvmmsg/sendmmsg syscall tracepoints. They fire for every process
 * on the node but cost a map lookup there; a uprobe costs a trap (and a uretprobe two) on each
 * of ovs-vswitchd's port polls, most of which find nothing: measured, the uprobes doubled
 * ovs-vswitchd's CPU per request (README, "Open vSwitch").
 */
SEC("tracepoint/syscalls/sys_enter_recvmmsg")
int ovs_rx_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	rx_enter((__u64)ctx->args[1]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int ovs_rx_exit_tp(struct trace_event_raw_sys_exit *ctx)
{
	rx_exit(ctx->ret);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int ovs_tx_enter_tp(struct trace_event_raw_sys_enter *ctx)
{
	tx_enter();
	return 0;
}

/* Variant "uprobe" (no tracefs): the same points as libc uprobes, per process. */
SEC("uprobe")
int BPF_KPROBE(ovs_rx_enter, int fd, void *msgvec)
{
	rx_enter((__u64)msgvec);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(ovs_rx_exit, int ret)
{
	rx_exit(ret);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ovs_tx_enter)
{
	tx_enter();
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ovs_flow_new)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct strata_ovs_upcall_event *e;
	struct rx_batch *b;
	__u64 now;

	if (!traced(id >> 32))
		return 0;
	b = bpf_map_lookup_elem(&ovs_rx, &tid);
	if (!b || !b->batch)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - b->rx_ts_ns > ovs_window_ns) {
		b->batch = 0;
		return 0;
	}
	if (b->nth < 255)
		b->nth++;
	stat_inc(STRATA_STAT_OVS_UPCALLS);
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	hdr_init(&e->hdr, STRATA_EV_OVS_UPCALL, sizeof(*e), now);
	e->rx_ts_ns = b->rx_ts_ns;
	e->pid = id >> 32;
	e->tid = tid;
	e->seq = b->seq;
	e->ack = b->ack;
	e->batch = b->batch;
	e->tcp_flags = b->tcp_flags;
	e->nth = b->nth;
	e->data_len = b->data_len;
	e->_pad0 = 0;
	__builtin_memcpy(&e->tuple, &b->tu, sizeof(e->tuple));
	event_submit(e);
	return 0;
}
