/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * THE kernel/user contract of strata. Every record in the ring buffer starts with
 * struct strata_hdr; hdr.len is the record's length in bytes (records are variable in length:
 * payload arrays are only as long as what was captured, rounded up to 8).
 *
 * Rules: fixed-width types only, explicit padding, host byte order unless the field name ends
 * in _be. Offsets used by the TypeScript decoder are generated from the BTF of the compiled
 * objects (scripts/gen-layout.ts); a test fails when the checked-in layout drifts.
 * Bump STRATA_EVENTS_VERSION on any incompatible change.
 */
#ifndef STRATA_EVENTS_H
#define STRATA_EVENTS_H

/* BPF programs include vmlinux.h first; user space (C or C++) takes the UAPI types. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Constants are enums, not #defines, so that they reach BTF and the generated decoder. */
enum strata_consts {
	STRATA_EVENTS_VERSION = 1,
	/* compile-time maxima; the run-time capture length is a load-time knob (<= these) */
	STRATA_SOCK_PAYLOAD_MAX = 512,
	STRATA_PKT_PAYLOAD_MAX = 128,
	STRATA_COMM_LEN = 16,
};

enum strata_event_type {
	STRATA_EV_SOCK_DATA = 1,   /* read/write family syscall on a TCP socket */
	STRATA_EV_SOCK_ACCEPT = 2, /* accept/accept4 returned a TCP socket */
	STRATA_EV_SOCK_CONNECT = 3,/* connect on a TCP socket returned 0 or -EINPROGRESS */
	STRATA_EV_SOCK_CLOSE = 4,  /* close of a TCP socket fd */
	STRATA_EV_SOCK_STATE = 5,  /* sock:inet_sock_set_state */
	STRATA_EV_PKT = 6,         /* TC: first data packet of a message, or a control packet */
	STRATA_EV_NETDEV = 7,      /* net_dev: a packet at a device's rx/queue/xmit tracepoint */
	STRATA_EV_TAIL = 8,        /* TC/net_dev: where a message's data seen at one point ends so far */
	STRATA_EV_OVS_UPCALL = 10, /* ovs: a userspace-datapath flow miss installed a flow (bpf/ovs.bpf.c) */
	STRATA_EV_OVS_KUPCALL = 11, /* ovs_kernel: a kernel-datapath packet went to ovs-vswitchd (upcall) and came
				     * back (struct strata_ovs_upcall_event; bpf/ovs_kernel.bpf.c) */
};

/* which packet family a tail event comes from */
enum strata_tail_src {
	STRATA_TAIL_TC = 1,     /* point: enum strata_dir at the interface */
	STRATA_TAIL_NETDEV = 2, /* point: enum strata_netdev_point */
};

/* where in a device's path a net_dev event was seen */
enum strata_netdev_point {
	STRATA_NETDEV_POINT_RX = 1,    /* net:netif_receive_skb: the device handed it to the stack */
	STRATA_NETDEV_POINT_QUEUE = 2, /* net:net_dev_queue: the stack queued it to the device */
	STRATA_NETDEV_POINT_XMIT = 3,  /* net:net_dev_xmit: the driver transmitted it */
};

/* which syscall produced a sock event */
enum strata_sock_op {
	STRATA_OP_READ = 1,
	STRATA_OP_RECVFROM = 2,
	STRATA_OP_RECVMSG = 3,
	STRATA_OP_READV = 4,
	STRATA_OP_WRITE = 5,
	STRATA_OP_SENDTO = 6,
	STRATA_OP_SENDMSG = 7,
	STRATA_OP_WRITEV = 8,
	STRATA_OP_SENDFILE = 9,
	STRATA_OP_ACCEPT = 10,
	STRATA_OP_CONNECT = 11,
	STRATA_OP_CLOSE = 12,
};

enum strata_dir {
	STRATA_DIR_NONE = 0,
	STRATA_DIR_IN = 1,  /* bytes into the process (read) / packet into the device (TC ingress) */
	STRATA_DIR_OUT = 2, /* bytes out of the process (write) / packet out of the device (TC egress) */
};

/* event flags (hdr.flags) */
enum strata_flags {
	STRATA_F_TRUNCATED = 0x01, /* payload capture shorter than the bytes moved */
	STRATA_F_SEQ_VALID = 0x02, /* seq holds the TCP sequence number of the first byte */
	STRATA_F_PEEK = 0x04,      /* MSG_PEEK read: bytes were not consumed */
	STRATA_F_AFTER_SHED = 0x08,/* first event of a message that follows messages the kernel shed
				    * on this socket and direction (sampling): the seq gap is not a loss */
};

/*
 * In-kernel sampling (load shedding) by message. User space writes struct strata_sampling into
 * the `sampling` array map; every family reads it. A message whose cause is not known on this
 * node (a root: a request from an untraced client) is kept when hash(sender endpoint, seq) >=
 * shed; a message a traced process sends because of another (a proxy's upstream request, a
 * response) inherits that message's decision, and the sender records it in `msg_keep` under
 * (client endpoint, seq of its first byte) for the packet families and the reader to follow.
 */
enum strata_keep {
	STRATA_KEEP = 1,
	STRATA_DROP = 2,
};

enum strata_sampling_flags {
	/* between observation windows: the packet families return at once, counting
	 * STRATA_STAT_PAUSED (the socket family is detached then) */
	STRATA_SAMPLING_PAUSED = 1,
};

struct strata_sampling {
	__u32 shed;  /* root messages hashing below this are dropped: 0 keeps all */
	__u32 gen;   /* bumped by user space when shedding starts: older per-thread decisions are void */
	enum strata_sampling_flags flags; /* a set of STRATA_SAMPLING_*: observation windows (shedding by time) */
	__u32 window; /* bumped by user space as every observation window opens: a socket last seen in
		       * an earlier one starts afresh (its next bytes start a message, after a gap) */
};

struct strata_msg_key {
	__u8 addr[16]; /* the connection's client endpoint (the side that connected) */
	__u16 port;    /* host order */
	__u16 _pad0;
	__u32 seq;     /* TCP seq of the message's first byte */
};

struct strata_hdr {
	__u16 type;
	__u8 version;
	__u8 flags;
	__u32 len;    /* whole record, bytes */
	__u64 ts_ns;  /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
};

/* Addresses: IPv4 in the first 4 bytes of the 16 (network order), IPv6 in all 16. */
struct strata_tuple {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport; /* host order */
	__u16 dport; /* host order */
	__u16 family; /* AF_INET=2 / AF_INET6=10 */
	__u16 _pad0;
};

struct strata_sock_event {
	struct strata_hdr hdr;
	__u64 enter_ts_ns; /* syscall entry; hdr.ts_ns is exit */
	__u64 sk;          /* struct sock address: connection identity while it lives */
	__u64 cgroup_id;
	__s64 ret;         /* syscall return: bytes, new fd, or -errno */
	__u32 pid;         /* tgid */
	__u32 tid;
	__u32 netns;       /* network namespace inode of the socket */
	__s32 fd;
	__u32 seq;         /* TCP seq of first byte moved (STRATA_F_SEQ_VALID) */
	__u8 op;           /* enum strata_sock_op */
	__u8 dir;          /* enum strata_dir */
	__u16 payload_len; /* bytes captured in payload[] */
	struct strata_tuple tuple; /* local = s*, remote = d* */
	char comm[STRATA_COMM_LEN];
	__u8 payload[STRATA_SOCK_PAYLOAD_MAX];
};

struct strata_state_event {
	struct strata_hdr hdr;
	__u64 sk;
	__u32 pid;      /* current task: may be softirq context, not the owner */
	__u32 netns;
	__u16 oldstate; /* TCP_* */
	__u16 newstate;
	__u32 _pad0;
	struct strata_tuple tuple;
};

struct strata_pkt_event {
	struct strata_hdr hdr;
	__u32 ifindex;     /* in the netns the loader attached in (the agent knows which) */
	__u32 seq;         /* TCP sequence number (host order) */
	__u32 ack;
	__u32 skb_len;
	__u16 data_len;    /* TCP payload bytes in this packet */
	__u8 tcp_flags;    /* FIN=1 SYN=2 RST=4 PSH=8 ACK=16 */
	__u8 dir;          /* enum strata_dir, relative to the device */
	__u32 agg_pkts;    /* data packets of the previous message in this direction, counted in the kernel */
	__u32 agg_bytes;
	__u16 payload_len; /* captured bytes in payload[] */
	__u16 _pad0;
	struct strata_tuple tuple; /* as on the wire: s = sender */
	__u8 payload[STRATA_PKT_PAYLOAD_MAX];
};

/*
 * net_dev: a packet seen at a device's receive, queue or transmit tracepoint, in any netns.
 * Headers only (the payload is usually paged there): payload comes from TC.
 */
struct strata_netdev_event {
	struct strata_hdr hdr;
	__u64 skb;         /* struct sk_buff address: follows a packet across veth -> bridge -> veth */
	__u32 ifindex;     /* in the netns below */
	__u32 netns;       /* inode of the device's network namespace */
	__u32 seq;         /* TCP sequence number (host order) */
	__u32 ack;
	__u32 skb_len;
	__u16 data_len;    /* TCP payload bytes in this packet */
	__u8 tcp_flags;    /* FIN=1 SYN=2 RST=4 PSH=8 ACK=16 */
	__u8 point;        /* enum strata_netdev_point */
	__u32 agg_pkts;    /* as strata_pkt_event, per (device, point) */
	__u32 agg_bytes;
	struct strata_tuple tuple; /* as on the wire: s = sender */
};

/*
 * The end of a message at one observation point (TC direction on an interface, net_dev point on
 * a device), for messages longer than one data packet: the first packet is a pkt/netdev event;
 * later ones only update the flow's state in the kernel, and this record reports where the data
 * seen there ends and when its last packet passed. Sent on a data packet with PSH or FIN (the end
 * of a send call: usually the end of a message) and once more, `final`, when the message ends at
 * that point (the flow turns, FIN, RST) with data past the last report. Keyed like the message:
 * tuple as on the wire and seq of its first byte.
 */
struct strata_tail_event {
	struct strata_hdr hdr; /* ts_ns: when the last data packet seen was there */
	__u64 queue_ts_ns;     /* net_dev XMIT: when that packet was queued (net_dev_queue); else 0 */
	__u32 ifindex;
	__u32 netns;           /* net_dev: inode of the device's netns; TC: 0 */
	__u32 seq;             /* TCP seq of the message's first byte at this point */
	__u32 end_seq;         /* seq just past the last byte seen there */
	__u32 pkts;            /* data packets of the message seen there so far, the first included */
	__u8 src;              /* enum strata_tail_src */
	__u8 point;            /* TC: enum strata_dir; net_dev: enum strata_netdev_point */
	__u8 final;            /* 1: the message ended there (flow turned, FIN, RST) */
	__u8 _pad0;
	struct strata_tuple tuple; /* as on the wire: s = the message's sender */
};

/*
 * ovs: ovs-vswitchd (userspace datapath) created a datapath flow while it handled a batch of
 * packets it had just read from a port: the batch took the slow path (upcall -> flow install).
 * hdr.ts_ns is the flow's creation; the tuple/seq are those of the batch's first packet.
 */
/*
 * STRATA_EV_OVS_UPCALL (userspace datapath) as described per field; STRATA_EV_OVS_KUPCALL (kernel
 * datapath) uses the same layout: rx_ts_ns = the ovs_dp_upcall (the packet left the kernel),
 * hdr.ts_ns = the packet came back to be executed; pid/tid = the ovs-vswitchd thread that sent it
 * back; batch = nth = 1; the tuple, seq, ack, flags and data_len are the upcalled packet's.
 */
struct strata_ovs_upcall_event {
	struct strata_hdr hdr;
	__u64 rx_ts_ns;    /* recvmmsg/recvmsg returned the batch to ovs-vswitchd */
	__u32 pid;         /* ovs-vswitchd (tgid) */
	__u32 tid;         /* the thread that polled the port and ran the upcall */
	__u32 seq;         /* TCP sequence number (host order) of the batch's first packet */
	__u32 ack;
	__u16 batch;       /* packets in the batch */
	__u8 tcp_flags;    /* FIN=1 SYN=2 RST=4 PSH=8 ACK=16 */
	__u8 nth;          /* 1 for the batch's first flow install, 2 for its second, ... */
	__u16 data_len;    /* TCP payload bytes of the first packet */
	__u16 _pad0;
	struct strata_tuple tuple; /* the first packet as on the wire: s = sender (family 0: not TCP) */
};

/* per-CPU counters, index into the `stats` map */
enum strata_stat {
	STRATA_STAT_EVENTS = 0,        /* records submitted */
	STRATA_STAT_RB_DROPS = 1,      /* ring buffer full: record lost */
	STRATA_STAT_FILTERED = 2,      /* syscalls rejected by the netns/cgroup filter */
	STRATA_STAT_NOT_TCP = 3,       /* fd was not a TCP socket */
	STRATA_STAT_PKT_SEEN = 4,      /* packets seen by TC */
	STRATA_STAT_PKT_AGGREGATED = 5,/* data packets counted, not emitted */
	STRATA_STAT_PKT_NOT_TCP = 6,   /* packets that were not TCP over IPv4/IPv6 */
	STRATA_STAT_READ_ERRORS = 7,   /* bpf_probe_read failures */
	STRATA_STAT_NETDEV_SEEN = 8,   /* packets seen by net_dev on a watched device */
	STRATA_STAT_NETDEV_AGGREGATED = 9, /* net_dev data packets counted, not emitted */
	STRATA_STAT_SHED_EVENTS = 10,  /* events not emitted: their message was shed by sampling */
	STRATA_STAT_SHED_ROOTS = 11,   /* root messages (new requests) shed by sampling */
	STRATA_STAT_REQUESTS = 12,     /* requests read by traced servers (kept or shed): the load */
	STRATA_STAT_FLOW_MISSES = 13,  /* data packets (not SYN) that found no flow state: the flow is older
					* than the probe, or its state was evicted from the LRU map */
	STRATA_STAT_OVS_UPCALLS = 14,  /* ovs: flow installs seen in ovs-vswitchd after a port read */
	STRATA_STAT_OVS_KUPCALLS = 15, /* ovs_kernel: packets the kernel datapath sent to userspace (flow misses) */
	STRATA_STAT_OVS_KRETURNS = 16, /* ovs_kernel: upcalled packets seen coming back (OVS_PACKET_CMD_EXECUTE) */
	STRATA_STAT_PAUSED = 17,       /* packets TC and net_dev passed over between observation windows */
	STRATA_STAT_MAX = 18,
};

/* after the structs, in every language this header is compiled as */
#ifdef __cplusplus
#define STRATA_STATIC_ASSERT static_assert
#else
#define STRATA_STATIC_ASSERT _Static_assert
#endif
STRATA_STATIC_ASSERT(sizeof(struct strata_hdr) == 16, "strata_hdr layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_tuple) == 40, "strata_tuple layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_sock_event) == 128 + STRATA_SOCK_PAYLOAD_MAX, "sock event layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_state_event) == 80, "state event layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_pkt_event) == 88 + STRATA_PKT_PAYLOAD_MAX, "pkt event layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_netdev_event) == 96, "netdev event layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_tail_event) == 88, "tail event layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_msg_key) == 24, "msg key layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_ovs_upcall_event) == 88, "ovs upcall event layout");
STRATA_STATIC_ASSERT(sizeof(struct strata_sampling) == 16, "sampling layout");
#undef STRATA_STATIC_ASSERT

#endif
