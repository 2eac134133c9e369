// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket syscalls of traced processes: who moved which bytes on which TCP connection, when, and
 * at which TCP sequence number. The seq is what lets a write in one netns be matched to the
 * packet on a veth and the read in another netns without any header (design.md section 3).
 */
#include "common.bpf.h"
#include "prefilter.bpf.h"
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* load-time knobs (rodata, frozen before the verifier runs, so it sees them as constants) */
const volatile __u32 sock_payload_cap = 256; /* multiple of 8, <= STRATA_SOCK_PAYLOAD_MAX */
const volatile __u8 filter_netns = 1;        /* 0: trace every netns (tests, debugging) */
const volatile __u8 filter_cgroups = 0;      /* 1: also trace processes of the cgroups in traced_cgroups */

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define SOCK_STREAM 1
#define MSG_PEEK 2
#define EINPROGRESS 115
#define MAX_IOV 4

/* network namespaces (inode numbers) whose processes are traced */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} traced_netns SEC(".maps");

/*
 * cgroup v2 ids (the cgroup directory's inode) whose processes are traced whatever their netns:
 * pods with hostNetwork share the node's netns, so only their cgroup tells them apart.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} traced_cgroups SEC(".maps");

/* prefilters of the two (prefilter.bpf.h): checked first by every socket syscall of every process */
STRATA_PREFILTER_MAP(traced_netns_slots);
STRATA_PREFILTER_MAP(traced_cgroups_slots);

struct inflight {
	__u64 enter_ts;
	__u64 sk;
	__u64 buf;   /* user buffer, iovec array or msghdr, per op */
	__u64 count; /* length or iovcnt */
	__s32 fd;
	__u8 op;
	__u8 peek;
	__u8 after_shed; /* the write starts the first kept message after shed ones */
	__u8 _pad;
};

/* syscall arguments kept from enter to exit, per thread */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct inflight);
} inflight SEC(".maps");

/* iovec gather area: 2x the max so any offset < MAX plus any length < MAX stays in bounds */
struct scratch {
	__u8 buf[2 * STRATA_SOCK_PAYLOAD_MAX];
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

/* keep the event types in BTF so the layout generator sees them */
struct strata_sock_event _sock_event_btf = {};
struct strata_state_event _state_event_btf = {};
enum strata_consts _consts_btf;
enum strata_event_type _event_type_btf;
enum strata_sock_op _sock_op_btf;
enum strata_dir _dir_btf;
enum strata_flags _flags_btf;
enum strata_stat _stat_btf;

static __always_inline bool netns_traced(__u32 inum)
{
	if (!filter_netns)
		return true;
	if (!prefilter_maybe(&traced_netns_slots, prefilter_slot(inum)))
		return false;
	return bpf_map_lookup_elem(&traced_netns, &inum) != NULL;
}

/* the current process: in a traced netns, or (when enabled) in a traced cgroup */
static __always_inline bool task_traced(__u32 netns)
{
	__u64 cg;

	if (netns_traced(netns))
		return true;
	if (!filter_cgroups) /* load-time constant: the lookup below is gone when off */
		return false;
	cg = bpf_get_current_cgroup_id();
	if (!prefilter_maybe(&traced_cgroups_slots, prefilter_slot64(cg)))
		return false;
	return bpf_map_lookup_elem(&traced_cgroups, &cg) != NULL;
}

/*
 * The filter runs on every socket syscall of every process: keep it cheap. A BTF task pointer
 * (5.11+) is read with plain loads; older kernels take three bpf_probe_read_kernel calls. The
 * CO-RE check is a load-time constant, so the verifier never sees the branch a kernel lacks.
 */
static __always_inline __u32 task_netns(void)
{
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *t = bpf_get_current_task_btf();
		return t->nsproxy->net_ns->ns.inum;
	}
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);
}

/* fd -> struct sock of a TCP socket, or NULL. Walks task->files->fdt->fd[fd]. */
static __always_inline struct sock *fd_tcp_sock(int fd)
{
	struct fdtable *fdt;
	struct file **fds;
	struct file *f = NULL;
	struct socket *so;
	struct sock *sk;
	umode_t mode;
	unsigned int max_fds;

	if (fd < 0)
		return NULL;
	/* as in task_netns(): plain loads through a BTF task pointer where the kernel has it */
	if (bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)) {
		struct task_struct *t = bpf_get_current_task_btf();
		fdt = t->files->fdt;
		if (!fdt)
			return NULL;
		max_fds = fdt->max_fds;
		fds = fdt->fd;
	} else {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();
		fdt = BPF_CORE_READ(t, files, fdt);
		if (!fdt)
			return NULL;
		max_fds = BPF_CORE_READ(fdt, max_fds);
		fds = BPF_CORE_READ(fdt, fd);
	}
	if ((unsigned int)fd >= max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return NULL;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	so = BPF_CORE_READ(f, private_data);
	if (!so)
		return NULL;
	sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return NULL;
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return NULL;
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (fam != AF_INET && fam != AF_INET6)
		return NULL;
	return sk;
}

/* ::ffff:0:0/96 (RFC 4291 2.5.5.2) */
static __always_inline bool v4_mapped(const struct in6_addr *a)
{
	return a->in6_u.u6_addr32[0] == 0 && a->in6_u.u6_addr32[1] == 0 && a->in6_u.u6_addr32[2] == bpf_htonl(0x0000ffff);
}

static __always_inline void fill_tuple(struct strata_tuple *tu, struct sock *sk)
{
	__u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	tu->family = fam;
	tu->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	tu->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	tu->_pad0 = 0;
	if (fam == AF_INET) {
		/* BPF_CORE_READ_INTO sizes by *dst: read whole fields, then copy */
		__u32 s4 = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 d4 = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memset(tu->saddr, 0, 16);
		__builtin_memset(tu->daddr, 0, 16);
		__builtin_memcpy(tu->saddr, &s4, 4);
		__builtin_memcpy(tu->daddr, &d4, 4);
	} else {
		struct in6_addr s6, d6;
		BPF_CORE_READ_INTO(&s6, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&d6, sk, __sk_common.skc_v6_daddr);
		if (v4_mapped(&d6)) {
			/*
			 * A dual-stack socket (AF_INET6 bound to ::, as Node.js and others listen by
			 * default) with an IPv4 peer: the kernel keeps both its addresses IPv4-mapped
			 * (::ffff:a.b.c.d), while the packets (TC, net_dev) and the peer's own socket
			 * carry IPv4. Reported as the IPv4 tuple, so that the message key and the
			 * sampling hash of a message are the same wherever it is seen.
			 */
			tu->family = AF_INET;
			__builtin_memset(tu->saddr, 0, 16);
			__builtin_memset(tu->daddr, 0, 16);
			__builtin_memcpy(tu->saddr, &s6.in6_u.u6_addr32[3], 4);
			__builtin_memcpy(tu->daddr, &d6.in6_u.u6_addr32[3], 4);
			return;
		}
		__builtin_memcpy(tu->saddr, &s6, 16);
		__builtin_memcpy(tu->daddr, &d6, 16);
	}
}

/*
 * What a socket's events repeat (its tuple and netns), read once per socket instead of with
 * seven probe reads per syscall, and its sampling state. Filled when a connection is accepted or
 * connected (or first seen), dropped at close and when the kernel moves the socket to TCP_CLOSE,
 * so a struct sock address reused for a new socket never inherits an old tuple.
 */
enum { ROLE_SERVER = 1, ROLE_CLIENT = 2 };

struct sk_meta {
	struct strata_tuple tuple;
	__u32 netns;
	__u8 role;     /* ROLE_*: accepted or connected; else guessed from the ports */
	__u8 last_dir; /* direction of the last bytes moved: a turn starts a message */
	__u8 keep_in;  /* strata_keep of the current inbound / outbound message (0: not yet) */
	__u8 keep_out;
	__u8 gap_in;   /* messages were shed in this direction since the last one reported */
	__u8 gap_out;
	__u8 out_after_shed; /* exit from registers: the send being made starts the first kept message after shed ones */
	__u8 _pad[1];
	__u32 window;  /* strata_sampling.window when last seen: an older one missed what happened between */
	__u64 out_enter_ts;  /* exit from registers: when the send being made entered the kernel */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct sk_meta);
} sk_cache SEC(".maps");

/* per thread: the decision of the last request it read (as a server), to pass to the calls it makes */
struct task_keep {
	__u8 keep;
	__u8 _pad[3];
	__u32 gen; /* strata_sampling.gen when decided */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct task_keep);
} task_keep SEC(".maps");

/*
 * per process: decisions of the requests it read, by a hash of their "METHOD target" (what a
 * proxy forwards unchanged), for the calls an event loop makes out of order (the correlator links
 * a proxy's upstream request to its inbound one by the same evidence: correlate/causality.ts)
 */
struct line_key {
	__u32 tgid;
	__u32 line;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct line_key);
	__type(value, struct task_keep);
} line_keep SEC(".maps");

#define LINE_MAX 64
_Static_assert(2 * LINE_MAX <= sizeof(((struct scratch *)0)->buf), "line_hash reads into the scratch area");

/* the first user buffer of a read/write family call: (address, length) */
static __always_inline void first_buf(__u8 op, __u64 buf, __u64 count, __u64 *addr, __u64 *len)
{
	struct iovec v = {};

	*addr = 0;
	*len = 0;
	if (op == STRATA_OP_READ || op == STRATA_OP_RECVFROM || op == STRATA_OP_WRITE || op == STRATA_OP_SENDTO) {
		*addr = buf;
		*len = count;
		return;
	}
	if (op == STRATA_OP_RECVMSG || op == STRATA_OP_SENDMSG) {
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)buf) || m.msg_iovlen < 1)
			return;
		buf = (__u64)m.msg_iov;
	} else if (op != STRATA_OP_READV && op != STRATA_OP_WRITEV) {
		return;
	} else if (count < 1) {
		return;
	}
	if (bpf_probe_read_user(&v, sizeof(v), (void *)buf))
		return;
	*addr = (__u64)v.iov_base;
	*len = v.iov_len;
}

/*
 * FNV-1a of "METHOD target" (the bytes before the second space), or 0 when there is none. Reads
 * into the per-CPU scratch area: done before any payload is gathered there.
 */
static __always_inline __u32 line_hash(__u64 addr, __u64 len)
{
	__u32 zero = 0, n = len < LINE_MAX ? (__u32)len : LINE_MAX, h = 2166136261u;
	struct scratch *lb = bpf_map_lookup_elem(&scratch, &zero);
	int spaces = 0;

	if (!lb || !addr || n < 8)
		return 0;
	barrier_var(n);
	n &= 2 * LINE_MAX - 1;
	if (bpf_probe_read_user(lb->buf, n, (void *)addr))
		return 0;
	for (int i = 0; i < LINE_MAX; i++) {
		__u8 c;
		if (i >= n)
			break;
		c = lb->buf[i];
		if (c == '\r' || c == '\n')
			return 0;
		if (c == ' ' && ++spaces == 2)
			return h | 1;
		h = (h ^ c) * 16777619u;
	}
	return 0;
}

static __always_inline struct sk_meta *sk_meta_of(struct sock *sk, __u8 refresh_role)
{
	__u64 k = (__u64)sk;
	struct sk_meta *m = refresh_role ? NULL : bpf_map_lookup_elem(&sk_cache, &k);
	struct sk_meta fresh = {};
	__u32 window = sampling_window();

	if (m) {
		/*
		 * Seen last in an earlier observation window: the programs were detached since, and
		 * what the socket moved then was not seen. Its next bytes start a message, marked as
		 * the first after shed ones (a gap on purpose, not a loss); a message that answers
		 * one not seen (a response) is shed with it.
		 */
		if (m->window != window) {
			m->window = window;
			m->last_dir = 0;
			m->keep_in = m->keep_out = STRATA_DROP;
			m->gap_in = m->gap_out = 1;
		}
		return m;
	}
	fresh.window = window;
	fill_tuple(&fresh.tuple, sk);
	fresh.netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	/* a connection older than the agent: the side on the lower port is usually the server */
	fresh.role = refresh_role ? refresh_role
				  : (fresh.tuple.sport < fresh.tuple.dport ? ROLE_SERVER : ROLE_CLIENT);
	bpf_map_update_elem(&sk_cache, &k, &fresh, BPF_ANY);
	return bpf_map_lookup_elem(&sk_cache, &k);
}

/* a shed message opens a gap in its direction; the next kept one closes it and is marked */
static __always_inline __u8 note_gap(__u8 keep, __u8 *gap, __u8 *after_shed)
{
	if (keep == STRATA_DROP) {
		*gap = 1;
	} else if (*gap) {
		*gap = 0;
		*after_shed = 1;
	}
	return keep;
}

/*
 * Outbound bytes: a turn of the socket starts a message, decided before any of it reaches a
 * device (the packet families look the decision up). A response inherits its request's decision;
 * a request inherits that of the request its thread last read, else it is a root. Returns the
 * decision; *after_shed is set on the first kept message after shed ones.
 */
static __always_inline __u8 out_decision(struct sk_meta *m, struct sock *sk, __u8 op, __u64 buf,
					 __u64 count, __u8 *after_shed)
{
	struct strata_sampling *cfg;
	__u8 keep = STRATA_KEEP;

	if (m->last_dir == STRATA_DIR_OUT)
		return m->keep_out;
	cfg = sampling_cfg();
	if (cfg && cfg->shed) {
		__u32 seq = BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
		if (m->role == ROLE_SERVER) {
			keep = m->keep_in ? m->keep_in : STRATA_KEEP;
			msg_record(m->tuple.daddr, m->tuple.dport, seq, keep);
		} else {
			__u64 id = bpf_get_current_pid_tgid();
			struct task_keep *t = bpf_map_lookup_elem(&task_keep, &id);
			bool threaded = (__u32)id != (__u32)(id >> 32);
			keep = 0;
			/* a thread per request: the thread's own request is the cause */
			if (threaded && t && t->gen == cfg->gen)
				keep = t->keep;
			/* an event loop: the request it read with the same method and target */
			if (!keep) {
				__u64 a, l;
				struct line_key lk = {.tgid = id >> 32};
				struct task_keep *pk;
				first_buf(op, buf, count, &a, &l);
				lk.line = line_hash(a, l);
				pk = lk.line ? bpf_map_lookup_elem(&line_keep, &lk) : NULL;
				if (pk && pk->gen == cfg->gen)
					keep = pk->keep;
			}
			if (!keep && t && t->gen == cfg->gen)
				keep = t->keep;
			if (!keep)
				keep = root_decision(m->tuple.saddr, m->tuple.sport, seq, cfg->shed, true);
			msg_record(m->tuple.saddr, m->tuple.sport, seq, keep);
		}
	}
	m->last_dir = STRATA_DIR_OUT;
	m->keep_out = keep;
	return note_gap(keep, &m->gap_out, after_shed);
}

/* Inbound bytes (at exit, once they moved): seq is that of the first byte read. */
static __always_inline __u8 in_decision(struct sk_meta *m, __u32 seq, struct inflight *in, __s64 ret,
					__u8 *after_shed)
{
	struct strata_sampling *cfg;
	__u8 keep = STRATA_KEEP;

	if (m->last_dir == STRATA_DIR_IN)
		return m->keep_in;
	/* the offered load, shed or not: the agent sheds ahead of it (probes/shedding.ts) */
	if (m->role != ROLE_CLIENT)
		stat_inc(STRATA_STAT_REQUESTS);
	cfg = sampling_cfg();
	if (cfg && cfg->shed) {
		if (m->role == ROLE_CLIENT) {
			keep = m->keep_out ? m->keep_out : STRATA_KEEP;
		} else {
			__u64 id = bpf_get_current_pid_tgid(), a, l;
			struct task_keep t = {};
			struct line_key lk = {.tgid = id >> 32};
			keep = msg_decision(m->tuple.daddr, m->tuple.dport, seq);
			if (!keep)
				keep = root_decision(m->tuple.daddr, m->tuple.dport, seq, cfg->shed, true);
			t.keep = keep;
			t.gen = cfg->gen;
			bpf_map_update_elem(&task_keep, &id, &t, BPF_ANY);
			first_buf(in->op, in->buf, (__u64)ret, &a, &l);
			if (in->op == STRATA_OP_READ || in->op == STRATA_OP_RECVFROM)
				l = (__u64)ret;
			lk.line = line_hash(a, l);
			if (lk.line)
				bpf_map_update_elem(&line_keep, &lk, &t, BPF_ANY);
		}
	}
	m->last_dir = STRATA_DIR_IN;
	m->keep_in = keep;
	return note_gap(keep, &m->gap_in, after_shed);
}

static __always_inline __u32 sock_event_size(void)
{
	return sizeof(struct strata_sock_event) - STRATA_SOCK_PAYLOAD_MAX + sock_payload_cap;
}

/* m: the socket's cache entry when the caller has it (NULL: looked up here) */
static __always_inline struct strata_sock_event *sock_event_new(__u8 op, __u64 enter_ts,
								  struct sock *sk, int fd, struct sk_meta *m)
{
	struct strata_sock_event *e = event_reserve(sock_event_size());
	__u64 id = bpf_get_current_pid_tgid();

	if (!e)
		return NULL;
	hdr_init(&e->hdr, 0, sock_event_size(), bpf_ktime_get_ns());
	e->enter_ts_ns = enter_ts;
	e->sk = (__u64)sk;
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ret = 0;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = fd;
	e->seq = 0;
	e->op = op;
	e->dir = STRATA_DIR_NONE;
	e->payload_len = 0;
	/* a new connection: its tuple is final now (connect bound the local port) */
	if (!m)
		m = sk_meta_of(sk, op == STRATA_OP_ACCEPT ? ROLE_SERVER : op == STRATA_OP_CONNECT ? ROLE_CLIENT : 0);
	if (m) {
		e->netns = m->netns;
		e->tuple = m->tuple;
	} else {
		e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
		fill_tuple(&e->tuple, sk);
	}
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* ---- enter: filter, remember arguments ---- */

static __always_inline bool op_is_send(__u8 op)
{
	return op >= STRATA_OP_WRITE && op <= STRATA_OP_SENDFILE;
}

/*
 * Two ways from a syscall's entry to its exit:
 * - the exit reads the syscall's arguments back from the task's saved user registers (raw_tp
 *   gets them as its first argument on every kernel; a tracepoint program through
 *   bpf_task_pt_regs, 5.15+). Nothing is stored per call: a receive has no entry work at all (its
 *   entry programs are not attached), a send's entry makes the sampling decision and leaves its
 *   time in the socket's cache entry. A read that moved no bytes (EAGAIN, the common case for
 *   event loops) returns before any lookup;
 * - older kernels' tracepoint programs keep the arguments in the per-thread `inflight` map from
 *   entry to exit (two locked hash-map operations per call).
 * Which one a tracepoint program uses is decided when the object is loaded (CO-RE), and the
 * registry attaches the receive entries only where the map is needed (probes/registry.ts).
 */
static __always_inline bool exit_has_regs(void)
{
	return bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_task_pt_regs) &&
	       bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf);
}

static __always_inline int on_enter(__u8 op, int fd, __u64 buf, __u64 count, __u64 flags, bool regs)
{
	struct inflight in = {};
	struct sk_meta *m = NULL;
	struct sock *sk = NULL;
	__u64 id;

	/* with the registers at exit, only a send has work at entry */
	if (regs && !op_is_send(op))
		return 0;
	if (!task_traced(task_netns())) {
		stat_inc(STRATA_STAT_FILTERED);
		return 0;
	}
	/* accept's fd is the listener, the connection is known only at exit */
	if (op != STRATA_OP_ACCEPT) {
		sk = fd_tcp_sock(fd);
		if (!sk) {
			stat_inc(STRATA_STAT_NOT_TCP);
			return 0;
		}
	}
	/* sampling: a shed outbound message costs no event, no capture and no exit work */
	if (op_is_send(op)) {
		m = sk_meta_of(sk, 0);
		if (m && out_decision(m, sk, op, buf, count, &in.after_shed) == STRATA_DROP) {
			stat_inc(STRATA_STAT_SHED_EVENTS);
			return 0;
		}
	}
	in.enter_ts = bpf_ktime_get_ns();
	if (regs) {
		/* the exit finds the socket again through the fd; two threads writing to one socket
		 * at once would share this time (HTTP/1.x clients and servers do not) */
		if (m) {
			m->out_enter_ts = in.enter_ts;
			m->out_after_shed |= in.after_shed;
		}
		return 0;
	}
	in.sk = (__u64)sk;
	in.buf = buf;
	in.count = count;
	in.fd = fd;
	in.op = op;
	in.peek = (flags & MSG_PEEK) ? 1 : 0;
	id = bpf_get_current_pid_tgid();
	bpf_map_update_elem(&inflight, &id, &in, BPF_ANY);
	return 0;
}

/* ---- exit: emit ---- */

/* Gather up to cap bytes from the user buffer(s) into the event payload. */
static __always_inline void capture(struct strata_sock_event *e, struct inflight *in, __s64 ret)
{
	__u32 zero = 0, want = sock_payload_cap, off = 0, n;
	struct scratch *s;
	__u64 iov = 0, iovcnt = 0;

	if ((__u64)ret < want)
		want = ret;
	if (in->op == STRATA_OP_SENDFILE || want == 0)
		return;
	if (in->op == STRATA_OP_READ || in->op == STRATA_OP_RECVFROM || in->op == STRATA_OP_WRITE ||
	    in->op == STRATA_OP_SENDTO) {
		n = want;
		barrier_var(n);
		n &= STRATA_SOCK_PAYLOAD_MAX - 1;
		if (n > sock_payload_cap)
			n = sock_payload_cap;
		if (bpf_probe_read_user(e->payload, n, (void *)in->buf))
			stat_inc(STRATA_STAT_READ_ERRORS);
		else
			e->payload_len = n;
		goto done;
	}
	if (in->op == STRATA_OP_RECVMSG || in->op == STRATA_OP_SENDMSG) {
		struct user_msghdr m;
		if (bpf_probe_read_user(&m, sizeof(m), (void *)in->buf))
			return;
		iov = (__u64)m.msg_iov;
		iovcnt = m.msg_iovlen;
	} else {
		iov = in->buf;
		iovcnt = in->count;
	}
	s = bpf_map_lookup_elem(&scratch, &zero);
	if (!s)
		return;
	for (int i = 0; i < MAX_IOV; i++) {
		struct iovec v;
		if (i >= iovcnt || off >= want)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(iov + i * sizeof(v))))
			break;
		n = want - off;
		if (v.iov_len < n)
			n = v.iov_len;
		barrier_var(n);
		n &= STRATA_SOCK_PAYLOAD_MAX - 1;
		barrier_var(off);
		off &= STRATA_SOCK_PAYLOAD_MAX - 1;
		if (n && bpf_probe_read_user(&s->buf[off], n, v.iov_base)) {
			stat_inc(STRATA_STAT_READ_ERRORS);
			break;
		}
		off += n;
	}
	n = off;
	barrier_var(n);
	if (n > sock_payload_cap)
		n = sock_payload_cap;
	/* constant-size copy: the verifier checks it against the reserved record once */
	bpf_probe_read_kernel(e->payload, sock_payload_cap, s->buf);
	e->payload_len = n;
done:
	if ((__u64)ret > e->payload_len)
		e->hdr.flags |= STRATA_F_TRUNCATED;
}

/*
 * The exit's work once the call's arguments are known (from the registers or the inflight map):
 * in->op, sk, fd, buf, count, peek, after_shed and (sends) enter_ts.
 */
static __always_inline int exit_emit(struct inflight *in, __s64 ret)
{
	struct strata_sock_event *e;
	struct sk_meta *m;
	struct sock *sk = (struct sock *)in->sk;
	__u8 after_shed;
	int fd = in->fd;

	if (in->op == STRATA_OP_ACCEPT) {
		if (ret < 0)
			return 0;
		fd = (int)ret;
		sk = fd_tcp_sock(fd);
		if (!sk)
			return 0;
		e = sock_event_new(STRATA_OP_ACCEPT, in->enter_ts, sk, fd, NULL);
		if (!e)
			return 0;
		e->hdr.type = STRATA_EV_SOCK_ACCEPT;
		e->ret = ret;
		event_submit(e);
		return 0;
	}
	if (in->op == STRATA_OP_CONNECT) {
		if (ret != 0 && ret != -EINPROGRESS)
			return 0;
		e = sock_event_new(STRATA_OP_CONNECT, in->enter_ts, sk, fd, NULL);
		if (!e)
			return 0;
		e->hdr.type = STRATA_EV_SOCK_CONNECT;
		e->ret = ret;
		/* first byte this side will send */
		e->seq = BPF_CORE_READ((struct tcp_sock *)sk, write_seq);
		event_submit(e);
		return 0;
	}
	/* data: errors and EOF carry no bytes (EAGAIN is the common case for event loops) */
	if (ret <= 0)
		return 0;
	after_shed = in->after_shed;
	m = sk_meta_of(sk, 0);
	if (!op_is_send(in->op)) {
		__u32 seq = BPF_CORE_READ((struct tcp_sock *)sk, copied_seq) - (in->peek ? 0 : (__u32)ret);
		if (m && in_decision(m, seq, in, ret, &after_shed) == STRATA_DROP) {
			stat_inc(STRATA_STAT_SHED_EVENTS);
			return 0;
		}
	}
	e = sock_event_new(in->op, in->enter_ts, sk, fd, m);
	if (!e)
		return 0;
	e->hdr.type = STRATA_EV_SOCK_DATA;
	e->ret = ret;
	if (after_shed)
		e->hdr.flags |= STRATA_F_AFTER_SHED;
	if (op_is_send(in->op)) {
		e->dir = STRATA_DIR_OUT;
		/* write_seq is past the bytes just queued: their first byte is ret earlier */
		e->seq = BPF_CORE_READ((struct tcp_sock *)sk, write_seq) - (__u32)ret;
		e->hdr.flags |= STRATA_F_SEQ_VALID;
	} else {
		e->dir = STRATA_DIR_IN;
		if (in->peek) {
			e->hdr.flags |= STRATA_F_PEEK;
		} else {
			e->seq = BPF_CORE_READ((struct tcp_sock *)sk, copied_seq) - (__u32)ret;
			e->hdr.flags |= STRATA_F_SEQ_VALID;
		}
	}
	capture(e, in, ret);
	event_submit(e);
	return 0;
}

/* exit, older kernels' tracepoints: the arguments were kept in `inflight` at entry */
static __always_inline int on_exit(__s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *in = bpf_map_lookup_elem(&inflight, &id);

	if (!in)
		return 0;
	exit_emit(in, ret);
	bpf_map_delete_elem(&inflight, &id);
	return 0;
}

/*
 * exit with the task's user registers: the arguments are still in them (x86_64: di, si, dx, r10;
 * arm64: x0..x3 as saved at entry, orig_x0 for the first). The same argument positions as the
 * ENTER() lines below. regs NULL (tracepoints): found here, once the call passed the filter.
 */
static __always_inline int on_exit_regs(__u8 op, struct pt_regs *regs, __s64 ret)
{
	struct inflight in = {};
	__u64 a1, a2, a3;
	struct sk_meta *m;
	struct sock *sk = NULL;
	int fd;

	/* no bytes moved, no connection made: before any lookup */
	if (op == STRATA_OP_CONNECT ? (ret != 0 && ret != -EINPROGRESS) : ret <= 0)
		return 0;
	if (!task_traced(task_netns())) {
		/* sends were counted at entry */
		if (!op_is_send(op))
			stat_inc(STRATA_STAT_FILTERED);
		return 0;
	}
	if (!regs)
		regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);
	if (op != STRATA_OP_ACCEPT) {
		sk = fd_tcp_sock(fd);
		if (!sk) {
			if (!op_is_send(op))
				stat_inc(STRATA_STAT_NOT_TCP);
			return 0;
		}
	}
	a1 = PT_REGS_PARM2_CORE_SYSCALL(regs);
	a2 = PT_REGS_PARM3_CORE_SYSCALL(regs);
	a3 = PT_REGS_PARM4_CORE_SYSCALL(regs);
	in.sk = (__u64)sk;
	in.fd = fd;
	in.op = op;
	in.enter_ts = bpf_ktime_get_ns(); /* receives, accept, connect: their time is the exit's */
	switch (op) {
	case STRATA_OP_READ:
	case STRATA_OP_READV:
	case STRATA_OP_WRITE:
	case STRATA_OP_WRITEV:
		in.buf = a1, in.count = a2;
		break;
	case STRATA_OP_RECVFROM:
	case STRATA_OP_SENDTO:
		in.buf = a1, in.count = a2, in.peek = (a3 & MSG_PEEK) ? 1 : 0;
		break;
	case STRATA_OP_RECVMSG:
	case STRATA_OP_SENDMSG:
		in.buf = a1, in.peek = (a2 & MSG_PEEK) ? 1 : 0;
		break;
	case STRATA_OP_SENDFILE:
		in.count = a3;
		break;
	default: /* accept, accept4, connect */
		break;
	}
	if (op_is_send(op)) {
		/* the entry decided (and left its time); a shed message or a socket the entry did
		 * not see (the probes attached mid-call) has nothing to report */
		__u64 k = (__u64)sk;
		m = bpf_map_lookup_elem(&sk_cache, &k);
		if (!m || m->last_dir != STRATA_DIR_OUT || m->keep_out == STRATA_DROP)
			return 0;
		if (m->out_enter_ts)
			in.enter_ts = m->out_enter_ts;
		in.after_shed = m->out_after_shed;
		m->out_after_shed = 0;
	}
	return exit_emit(&in, ret);
}

#define ENTER(name, op, fdarg, bufarg, cntarg, flagarg)                                    \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                        \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)                            \
	{                                                                                  \
		return on_enter(op, (int)ctx->args[fdarg], bufarg < 0 ? 0 : ctx->args[bufarg], \
				cntarg < 0 ? 0 : ctx->args[cntarg],                         \
				flagarg < 0 ? 0 : ctx->args[flagarg], exit_has_regs());     \
	}
#define EXIT(name, op)                                                                     \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                         \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                              \
	{                                                                                  \
		__s64 ret = ctx->ret; /* one load: the verifier refuses a ctx pointer moved */ \
		if (exit_has_regs())                                                       \
			return on_exit_regs(op, NULL, ret);                                \
		return on_exit(ret);                                                       \
	}

/* args: read(fd, buf, count); recvfrom(fd, buf, len, flags, ...); recvmsg(fd, msg, flags) */
ENTER(read, STRATA_OP_READ, 0, 1, 2, -1)
EXIT(read, STRATA_OP_READ)
ENTER(recvfrom, STRATA_OP_RECVFROM, 0, 1, 2, 3)
EXIT(recvfrom, STRATA_OP_RECVFROM)
ENTER(recvmsg, STRATA_OP_RECVMSG, 0, 1, -1, 2)
EXIT(recvmsg, STRATA_OP_RECVMSG)
ENTER(readv, STRATA_OP_READV, 0, 1, 2, -1)
EXIT(readv, STRATA_OP_READV)
ENTER(write, STRATA_OP_WRITE, 0, 1, 2, -1)
EXIT(write, STRATA_OP_WRITE)
ENTER(sendto, STRATA_OP_SENDTO, 0, 1, 2, 3)
EXIT(sendto, STRATA_OP_SENDTO)
ENTER(sendmsg, STRATA_OP_SENDMSG, 0, 1, -1, 2)
EXIT(sendmsg, STRATA_OP_SENDMSG)
ENTER(writev, STRATA_OP_WRITEV, 0, 1, 2, -1)
EXIT(writev, STRATA_OP_WRITEV)
/* sendfile(out_fd, in_fd, offset, count): the socket is out_fd */
ENTER(sendfile64, STRATA_OP_SENDFILE, 0, -1, 3, -1)
EXIT(sendfile64, STRATA_OP_SENDFILE)
ENTER(accept, STRATA_OP_ACCEPT, 0, -1, -1, -1)
EXIT(accept, STRATA_OP_ACCEPT)
ENTER(accept4, STRATA_OP_ACCEPT, 0, -1, -1, -1)
EXIT(accept4, STRATA_OP_ACCEPT)
ENTER(connect, STRATA_OP_CONNECT, 0, -1, -1, -1)
EXIT(connect, STRATA_OP_CONNECT)

/* close: the socket still exists at entry; nothing is needed from the exit */
static __always_inline int on_close(int fd)
{
	struct strata_sock_event *e;
	struct sock *sk;
	__u64 now;

	if (!task_traced(task_netns()))
		return 0;
	sk = fd_tcp_sock(fd);
	if (!sk)
		return 0;
	now = bpf_ktime_get_ns();
	e = sock_event_new(STRATA_OP_CLOSE, now, sk, fd, NULL);
	if (!e)
		return 0;
	e->hdr.type = STRATA_EV_SOCK_CLOSE;
	event_submit(e);
	{
		__u64 k = (__u64)sk;
		bpf_map_delete_elem(&sk_cache, &k);
	}
	return 0;
}

/* TCP state changes (connection reset, FIN, established), filtered by the socket's netns */
static __always_inline int on_state(struct sock *sk, int oldstate, int newstate)
{
	struct strata_state_event *e;
	__u32 inum;

	inum = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	if (!netns_traced(inum))
		return 0;
	e = event_reserve(sizeof(*e));
	if (!e)
		return 0;
	hdr_init(&e->hdr, STRATA_EV_SOCK_STATE, sizeof(*e), bpf_ktime_get_ns());
	e->sk = (__u64)sk;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->netns = inum;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->_pad0 = 0;
	fill_tuple(&e->tuple, sk);
	event_submit(e);
	if (newstate == TCP_CLOSE) {
		__u64 k = (__u64)sk;
		bpf_map_delete_elem(&sk_cache, &k);
	}
	return 0;
}

/* ---- variant 1: tracepoints (need tracefs for their ids) ---- */

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	return on_close((int)ctx->args[0]);
}

SEC("tracepoint/sock/inet_sock_set_state")
int sock_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	return on_state((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate);
}

/*
 * ---- variant 2: raw tracepoints (no tracefs), chosen by the loader when tracefs is absent ----
 * sys_enter/sys_exit fire for every syscall of every task: the syscall number is checked first,
 * so the cost for other syscalls is one switch. The arguments are read from the task's user
 * pt_regs (PT_REGS_PARM*_CORE_SYSCALL: di, si, dx, r10 on x86_64). 32-bit compat syscalls have
 * other numbers and are not traced by this variant.
 */
#if defined(__TARGET_ARCH_x86)
enum { NR_read = 0, NR_write = 1, NR_close = 3, NR_readv = 19, NR_writev = 20, NR_sendfile = 40,
       NR_connect = 42, NR_accept = 43, NR_sendto = 44, NR_recvfrom = 45, NR_sendmsg = 46,
       NR_recvmsg = 47, NR_accept4 = 288 };
#define REGS_SYSCALL_NR(regs) BPF_CORE_READ(regs, orig_ax)
#elif defined(__TARGET_ARCH_arm64)
enum { NR_read = 63, NR_write = 64, NR_close = 57, NR_readv = 65, NR_writev = 66, NR_sendfile = 71,
       NR_connect = 203, NR_accept = 202, NR_sendto = 206, NR_recvfrom = 207, NR_sendmsg = 211,
       NR_recvmsg = 212, NR_accept4 = 242 };
#define REGS_SYSCALL_NR(regs) BPF_CORE_READ(regs, syscallno)
#else
#error "syscall numbers for the raw_tp variant: add this architecture"
#endif

/* the op of a traced syscall, 0 for every other one */
static __always_inline __u8 nr_op(long nr)
{
	switch (nr) {
	case NR_read: return STRATA_OP_READ;
	case NR_recvfrom: return STRATA_OP_RECVFROM;
	case NR_recvmsg: return STRATA_OP_RECVMSG;
	case NR_readv: return STRATA_OP_READV;
	case NR_write: return STRATA_OP_WRITE;
	case NR_sendto: return STRATA_OP_SENDTO;
	case NR_sendmsg: return STRATA_OP_SENDMSG;
	case NR_writev: return STRATA_OP_WRITEV;
	case NR_sendfile: return STRATA_OP_SENDFILE;
	case NR_accept: return STRATA_OP_ACCEPT;
	case NR_accept4: return STRATA_OP_ACCEPT;
	case NR_connect: return STRATA_OP_CONNECT;
	case NR_close: return STRATA_OP_CLOSE;
	default: return 0;
	}
}

SEC("raw_tp/sys_enter")
int raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__u8 op = nr_op((long)ctx->args[1]);
	__u64 a1, a2, a3, buf, count, flags;
	int fd;

	if (!op)
		return 0;
	fd = (int)PT_REGS_PARM1_CORE_SYSCALL(regs);
	if (op == STRATA_OP_CLOSE)
		return on_close(fd);
	a1 = PT_REGS_PARM2_CORE_SYSCALL(regs);
	a2 = PT_REGS_PARM3_CORE_SYSCALL(regs);
	a3 = PT_REGS_PARM4_CORE_SYSCALL(regs);
	/* the same argument positions as the tracepoint variant's ENTER() lines above; one
	 * on_enter() call site keeps the program as small as one tracepoint program */
	buf = 0, count = 0, flags = 0;
	switch (op) {
	case STRATA_OP_READ:
	case STRATA_OP_READV:
	case STRATA_OP_WRITE:
	case STRATA_OP_WRITEV:
		buf = a1, count = a2;
		break;
	case STRATA_OP_RECVFROM:
	case STRATA_OP_SENDTO:
		buf = a1, count = a2, flags = a3;
		break;
	case STRATA_OP_RECVMSG:
	case STRATA_OP_SENDMSG:
		buf = a1, flags = a2;
		break;
	case STRATA_OP_SENDFILE:
		count = a3;
		break;
	default: /* accept, accept4, connect */
		break;
	}
	return on_enter(op, fd, buf, count, flags, true);
}

SEC("raw_tp/sys_exit")
int raw_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__s64 ret = (__s64)ctx->args[1];
	__u8 op;

	/* every op needs ret >= 0 but connect's -EINPROGRESS: a failed call of any syscall
	 * returns before the syscall number is read (a helper call) */
	if (ret < 0 && ret != -EINPROGRESS)
		return 0;
	op = nr_op(REGS_SYSCALL_NR(regs));
	if (!op || op == STRATA_OP_CLOSE)
		return 0;
	return on_exit_regs(op, regs, ret);
}

SEC("raw_tp/inet_sock_set_state")
int raw_sock_state(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return on_state(sk, (int)ctx->args[1], (int)ctx->args[2]);
}
