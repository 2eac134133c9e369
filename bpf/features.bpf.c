// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Feature probes for `strata check`: one trivial program per attach mechanism the agent uses or
 * may fall back to. The "?" section prefix turns autoload off, so the loader can load exactly
 * one program at a time (bpf_program__set_autoload) and a kernel lacking one mechanism (no
 * kprobes, no BPF trampolines) fails that program alone, not the whole object. Every program
 * does nothing: the point is whether the kernel accepts the program type and the attachment.
 * No maps, so probing creates nothing else in the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* every feature probe is this empty program: what is tested is the kernel accepting its type at
 * load and its attach point at attach; the body never reads ctx, so one signature fits all */
#define FEATURE(name, section)      \
	SEC(section)                \
	int name(void *ctx)         \
	{                           \
		return 0;           \
	}

/* the socket syscall tracepoints: what the agent needs (perf_event + tracefs id lookup) */
FEATURE(feat_tp_write, "?tracepoint/syscalls/sys_enter_write")
/* TCP state changes: required too (sock.bpf.c attaches it with the syscalls) */
FEATURE(feat_tp_sock, "?tracepoint/sock/inet_sock_set_state")
/* raw tracepoint by name: works without tracefs, the fallback when it cannot be mounted */
FEATURE(feat_raw_tp, "?raw_tp/sys_enter")
/* BTF-typed raw tracepoint (5.5+): the same without tracefs, with typed arguments */
FEATURE(feat_tp_btf, "?tp_btf/sys_enter")
/* kprobe: needs CONFIG_KPROBES (kprobe PMU or tracefs kprobe_events) */
FEATURE(feat_kprobe, "?kprobe/tcp_sendmsg")
/* fentry: needs BPF trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and arch support) */
FEATURE(feat_fentry, "?fentry/tcp_sendmsg")
/* the same two on the receive side: the socket family could take its data from
 * tcp_sendmsg/tcp_recvmsg instead of 26 syscall tracepoints (issue 8), where both directions attach */
FEATURE(feat_kprobe_recv, "?kprobe/tcp_recvmsg")
FEATURE(feat_fentry_recv, "?fentry/tcp_recvmsg")
/* the kernel Open vSwitch datapath's tracepoints: they exist only while the openvswitch module is
 * loaded, and only in kernels that have them (Debian's 5.10 module has none) */
FEATURE(feat_ovs_upcall, "?tracepoint/openvswitch/ovs_dp_upcall")
FEATURE(feat_ovs_exec, "?tracepoint/openvswitch/ovs_do_execute_action")

/* TC classifier: loaded only; attaching needs an interface (the agent does that per veth) */
SEC("?tc")
int feat_tc(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC: observe only */
}
