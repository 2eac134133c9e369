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
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* the socket syscall tracepoints: what the agent needs (perf_event + tracefs id lookup) */
SEC("?tracepoint/syscalls/sys_enter_write")
int feat_tp_write(void *ctx)
{
	return 0;
}

/* TCP state changes: required too (sock.bpf.c attaches it with the syscalls) */
SEC("?tracepoint/sock/inet_sock_set_state")
int feat_tp_sock(void *ctx)
{
	return 0;
}

/* raw tracepoint by name: works without tracefs, the fallback when it cannot be mounted */
SEC("?raw_tp/sys_enter")
int feat_raw_tp(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

/* BTF-typed raw tracepoint (5.5+): the same without tracefs, with typed arguments */
SEC("?tp_btf/sys_enter")
int BPF_PROG(feat_tp_btf, struct pt_regs *regs, long id)
{
	return 0;
}

/* kprobe: needs CONFIG_KPROBES (kprobe PMU or tracefs kprobe_events) */
SEC("?kprobe/tcp_sendmsg")
int BPF_KPROBE(feat_kprobe)
{
	return 0;
}

/* fentry: needs BPF trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS and arch support) */
SEC("?fentry/tcp_sendmsg")
int BPF_PROG(feat_fentry)
{
	return 0;
}

/* the same two on the receive side: the socket family could take its data from
 * tcp_sendmsg/tcp_recvmsg instead of 26 syscall tracepoints (issue 8), where both directions attach */
SEC("?kprobe/tcp_recvmsg")
int BPF_KPROBE(feat_kprobe_recv)
{
	return 0;
}

SEC("?fentry/tcp_recvmsg")
int BPF_PROG(feat_fentry_recv)
{
	return 0;
}

/* the kernel Open vSwitch datapath's tracepoints: they exist only while the openvswitch module is
 * loaded, and only in kernels that have them (Debian's 5.10 module has none) */
SEC("?tracepoint/openvswitch/ovs_dp_upcall")
int feat_ovs_upcall(void *ctx)
{
	return 0;
}

SEC("?tracepoint/openvswitch/ovs_do_execute_action")
int feat_ovs_exec(void *ctx)
{
	return 0;
}

/* TC classifier: loaded only; attaching needs an interface (the agent does that per veth) */
SEC("?tc")
int feat_tc(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC: observe only */
}
