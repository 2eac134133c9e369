// Loading, attaching and detaching the BPF objects; filter maps; kernel counters.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include <deque>

#include "events.h"
#include "sock.skel.h"
#include "strata.h"
#include "veth_tc.skel.h"

namespace strata {

// strata's TC filters are recognisable by handle and priority, so a restart after SIGKILL
// replaces (BPF_TC_F_REPLACE) or removes its own leftovers and nobody else's.
static constexpr uint32_t kTcHandle = 0x57a7;  // "sta(ta)"
static constexpr uint32_t kTcPriority = 0x57a7;

static std::mutex g_log_mu;
static std::deque<std::string> g_log;

static int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[1024];
  int n = vsnprintf(buf, sizeof(buf), fmt, ap);
  if (n <= 0) return 0;
  std::string s(buf);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  std::lock_guard<std::mutex> lk(g_log_mu);
  g_log.push_back(s);
  while (g_log.size() > 32) g_log.pop_front();
  return 0;
}

void InstallLibbpfLogger() { libbpf_set_print(LibbpfPrint); }

std::vector<std::string> LastLibbpfLog() {
  std::lock_guard<std::mutex> lk(g_log_mu);
  std::vector<std::string> out(g_log.begin(), g_log.end());
  g_log.clear();
  return out;
}

// Kernel-internal errnos reach user space through the bpf syscall (include/linux/errno.h);
// glibc has no name for them.
const char* ErrnoName(int e) {
  if (e < 0) e = -e;
  switch (e) {
    case 512: return "ERESTARTSYS";
    case 524: return "ENOTSUPP";
    default: break;
  }
  const char* n = strerrorname_np(e);
  return n ? n : "EUNKNOWN";
}

std::string ErrnoMessage(int e) {
  if (e < 0) e = -e;
  if (e == 524) return "operation not supported by this kernel";
  return strerror(e);
}

static bool Fail(NativeError* err, int e, const std::string& stage, const std::string& target,
                 const std::string& what) {
  if (e < 0) e = -e;
  if (e == 0) e = EINVAL;
  err->err = e;
  err->stage = stage;
  err->target = target;
  err->message = what + ": " + ErrnoMessage(e);
  return false;
}

// Runs fn inside the network namespace at path (empty: the current one), on this thread only.
template <typename Fn>
static bool InNetns(const std::string& path, NativeError* err, const std::string& target, Fn fn) {
  if (path.empty()) return fn();
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) return Fail(err, errno, "attach", target, "open own netns");
  int ns = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    int e = errno;
    close(self);
    return Fail(err, e, "attach", target, "open netns " + path);
  }
  if (setns(ns, CLONE_NEWNET) < 0) {
    int e = errno;
    close(ns);
    close(self);
    return Fail(err, e, "attach", target, "setns " + path);
  }
  bool ok = fn();
  // failing to return would leave the JS thread in the wrong netns: nothing sane follows
  if (setns(self, CLONE_NEWNET) < 0) abort();
  close(ns);
  close(self);
  return ok;
}

Probes::~Probes() { Close(); }

bool Probes::Open(const Options& o, NativeError* err) {
  InstallLibbpfLogger();
  sock_ = sock_bpf__open();
  if (!sock_) return Fail(err, errno, "open", "sock.bpf.o", "open BPF object");
  sock_->rodata->sock_payload_cap = o.sock_payload_cap;
  sock_->rodata->filter_netns = o.filter_netns ? 1 : 0;
  sock_->rodata->filter_cgroups = o.filter_cgroups ? 1 : 0;
  sock_->rodata->wakeup_bytes = o.wakeup_bytes;
  int e = bpf_map__set_max_entries(sock_->maps.events, o.ring_bytes);
  if (e) return Fail(err, e, "open", "events", "ring buffer size");
  e = sock_bpf__load(sock_);
  if (e) return Fail(err, e, "load", "sock.bpf.o", "load BPF object");

  tc_skel_ = veth_tc_bpf__open();
  if (!tc_skel_) return Fail(err, errno, "open", "veth_tc.bpf.o", "open BPF object");
  tc_skel_->rodata->pkt_payload_cap = o.pkt_payload_cap;
  tc_skel_->rodata->wakeup_bytes = o.wakeup_bytes;
  // one ring buffer and one counter array for every probe family
  e = bpf_map__reuse_fd(tc_skel_->maps.events, bpf_map__fd(sock_->maps.events));
  if (!e) e = bpf_map__reuse_fd(tc_skel_->maps.stats, bpf_map__fd(sock_->maps.stats));
  if (e) return Fail(err, e, "open", "veth_tc.bpf.o", "share maps");
  e = veth_tc_bpf__load(tc_skel_);
  if (e) return Fail(err, e, "load", "veth_tc.bpf.o", "load BPF object");
  return true;
}

bool Probes::AttachSyscalls(NativeError* err) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, sock_->obj) {
    bpf_link* l = bpf_program__attach(prog);
    if (!l) {
      int e = errno;
      return Fail(err, e, "attach", bpf_program__section_name(prog), "attach tracepoint");
    }
    links_.push_back(l);
  }
  return true;
}

bool Probes::AttachTc(const std::string& ifname, const std::string& netns, int* ifindex_out,
                      NativeError* err) {
  TcAttachment a{ifname, netns, 0, false};
  const std::string target = ifname + (netns.empty() ? "" : "@" + netns);
  bool ok = InNetns(netns, err, target, [&]() {
    a.ifindex = if_nametoindex(ifname.c_str());
    if (!a.ifindex) return Fail(err, errno, "attach", target, "interface");
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = a.ifindex,
                .attach_point = (bpf_tc_attach_point)(BPF_TC_INGRESS | BPF_TC_EGRESS));
    int e = bpf_tc_hook_create(&hook);
    if (e && e != -EEXIST) return Fail(err, e, "attach", target, "create clsact qdisc");
    a.created_hook = (e == 0);
    const int fds[2] = {bpf_program__fd(tc_skel_->progs.tc_ingress),
                        bpf_program__fd(tc_skel_->progs.tc_egress)};
    const bpf_tc_attach_point points[2] = {BPF_TC_INGRESS, BPF_TC_EGRESS};
    for (int i = 0; i < 2; i++) {
      hook.attach_point = points[i];
      LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fds[i], .flags = BPF_TC_F_REPLACE,
                  .handle = kTcHandle, .priority = kTcPriority);
      e = bpf_tc_attach(&hook, &opts);
      if (e) {
        int keep = e;
        if (i == 1) {
          hook.attach_point = BPF_TC_INGRESS;
          LIBBPF_OPTS(bpf_tc_opts, d, .handle = kTcHandle, .priority = kTcPriority);
          bpf_tc_detach(&hook, &d);
        }
        if (a.created_hook) {
          hook.attach_point = (bpf_tc_attach_point)(BPF_TC_INGRESS | BPF_TC_EGRESS);
          bpf_tc_hook_destroy(&hook);
        }
        return Fail(err, keep, "attach", target, i ? "attach tc egress" : "attach tc ingress");
      }
    }
    return true;
  });
  if (!ok) return false;
  *ifindex_out = a.ifindex;
  tc_.push_back(a);
  return true;
}

static bool DetachOne(const TcAttachment& a, NativeError* err) {
  const std::string target = a.ifname + (a.netns.empty() ? "" : "@" + a.netns);
  return InNetns(a.netns, err, target, [&]() {
    int ifindex = if_nametoindex(a.ifname.c_str());
    // the interface (or its netns) went away with the pod: its filters went with it
    if (!ifindex || ifindex != a.ifindex) return true;
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex);
    const bpf_tc_attach_point points[2] = {BPF_TC_INGRESS, BPF_TC_EGRESS};
    for (auto p : points) {
      hook.attach_point = p;
      LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
      int e = bpf_tc_detach(&hook, &opts);
      if (e && e != -ENOENT && e != -ENODEV && e != -EINVAL)
        return Fail(err, e, "detach", target, "detach tc");
    }
    if (a.created_hook) {
      hook.attach_point = (bpf_tc_attach_point)(BPF_TC_INGRESS | BPF_TC_EGRESS);
      bpf_tc_hook_destroy(&hook);
    }
    return true;
  });
}

bool Probes::DetachTc(const std::string& ifname, const std::string& netns, NativeError* err) {
  for (size_t i = 0; i < tc_.size(); i++) {
    if (tc_[i].ifname == ifname && tc_[i].netns == netns) {
      TcAttachment a = tc_[i];
      tc_.erase(tc_.begin() + i);
      return DetachOne(a, err);
    }
  }
  return Fail(err, ENOENT, "detach", ifname, "not attached");
}

bool CleanupStaleTc(const std::string& netns, std::vector<StaleTc>* removed, NativeError* err) {
  const std::string target = netns.empty() ? "own netns" : netns;
  return InNetns(netns, err, target, [&]() {
    struct if_nameindex* ifs = if_nameindex();
    if (!ifs) return Fail(err, errno, "detach", target, "list interfaces");
    bool ok = true;
    for (struct if_nameindex* i = ifs; ok && i->if_index; i++) {
      bool found = false;
      const bpf_tc_attach_point points[2] = {BPF_TC_INGRESS, BPF_TC_EGRESS};
      for (auto p : points) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)i->if_index, .attach_point = p);
        // query first: no clsact qdisc or no filter of ours is the common case, not an error
        LIBBPF_OPTS(bpf_tc_opts, q, .handle = kTcHandle, .priority = kTcPriority);
        if (bpf_tc_query(&hook, &q)) continue;
        LIBBPF_OPTS(bpf_tc_opts, d, .handle = kTcHandle, .priority = kTcPriority);
        int e = bpf_tc_detach(&hook, &d);
        if (e && e != -ENOENT) {
          ok = Fail(err, e, "detach", std::string(i->if_name) + "@" + target, "detach stale tc filter");
          break;
        }
        found = true;
      }
      // the clsact qdisc stays: another tool may have filters on it, and an empty one is inert
      if (found) removed->push_back({i->if_name, (int)i->if_index});
    }
    if_freenameindex(ifs);
    return ok;
  });
}

static bpf_map* FindMap(sock_bpf* s, veth_tc_bpf* t, const std::string& name) {
  bpf_map* m = s ? bpf_object__find_map_by_name(s->obj, name.c_str()) : nullptr;
  if (!m && t) m = bpf_object__find_map_by_name(t->obj, name.c_str());
  return m;
}

bool Probes::MapUpdate(const std::string& name, const void* key, size_t klen, const void* val,
                       size_t vlen, NativeError* err) {
  bpf_map* m = FindMap(sock_, tc_skel_, name);
  if (!m) return Fail(err, ENOENT, "map", name, "no such map");
  int e = bpf_map__update_elem(m, key, klen, val, vlen, BPF_ANY);
  if (e) return Fail(err, e, "map", name, "update");
  return true;
}

bool Probes::MapDelete(const std::string& name, const void* key, size_t klen, NativeError* err) {
  bpf_map* m = FindMap(sock_, tc_skel_, name);
  if (!m) return Fail(err, ENOENT, "map", name, "no such map");
  int e = bpf_map__delete_elem(m, key, klen, 0);
  if (e && e != -ENOENT) return Fail(err, e, "map", name, "delete");
  return true;
}

std::vector<uint64_t> Probes::Stats() {
  std::vector<uint64_t> out(STRATA_STAT_MAX, 0);
  if (!sock_) return out;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> vals(ncpu);
  int fd = bpf_map__fd(sock_->maps.stats);
  for (uint32_t k = 0; k < STRATA_STAT_MAX; k++) {
    if (bpf_map_lookup_elem(fd, &k, vals.data())) continue;
    for (int c = 0; c < ncpu; c++) out[k] += vals[c];
  }
  return out;
}

bool Probes::EnableRunStats(NativeError* err) {
  if (stats_fd_ >= 0) return true;
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) return Fail(err, errno, "attach", "bpf_stats", "enable BPF run-time statistics");
  stats_fd_ = fd;
  return true;
}

std::vector<ProgStat> Probes::ProgStats() {
  std::vector<ProgStat> out;
  bpf_object* objs[2] = {sock_ ? sock_->obj : nullptr, tc_skel_ ? tc_skel_->obj : nullptr};
  for (auto obj : objs) {
    if (!obj) continue;
    bpf_program* prog;
    bpf_object__for_each_program(prog, obj) {
      bpf_prog_info info = {};
      uint32_t len = sizeof(info);
      int fd = bpf_program__fd(prog);
      if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len)) continue;
      out.push_back({bpf_program__name(prog), info.id, info.run_time_ns, info.run_cnt});
    }
  }
  return out;
}

int Probes::RingFd() const { return sock_ ? bpf_map__fd(sock_->maps.events) : -1; }

void Probes::Close() {
  for (auto l : links_) bpf_link__destroy(l);
  links_.clear();
  NativeError ignored;
  for (auto& a : tc_) DetachOne(a, &ignored);
  tc_.clear();
  if (tc_skel_) veth_tc_bpf__destroy(tc_skel_);
  tc_skel_ = nullptr;
  if (sock_) sock_bpf__destroy(sock_);
  sock_ = nullptr;
  if (stats_fd_ >= 0) close(stats_fd_);
  stats_fd_ = -1;
}

}  // namespace strata
