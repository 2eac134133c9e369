// Transport between the kernel and JS: open/load/attach/detach, maps, ring-buffer pump.
// It copies records into batches; it never parses them (the decoder lives in agent/).
#pragma once
#include <napi.h>

#include <atomic>
#include <mutex>
#include <map>
#include <string>
#include <thread>
#include <vector>

struct bpf_object;
struct ring_buffer;
struct bpf_link;

namespace strata {

// An error from the kernel side: errno name, stage and target, plus libbpf's last log lines.
struct NativeError {
  int err;  // positive errno
  std::string stage, target, message;
};
Napi::Error ToJsError(Napi::Env env, const NativeError& e);
// errno name, including the kernel-internal ones libbpf passes through (ENOTSUPP = 524)
const char* ErrnoName(int e);
std::string ErrnoMessage(int e);
std::vector<std::string> LastLibbpfLog();
void InstallLibbpfLogger();

struct TcAttachment {
  std::string object, ifname, netns;
  int ifindex = 0;
  bool created_hook = false;
};

// One feature probe of `strata check`: a program of bpf/features.bpf.c loaded (and attached)
// on its own.
struct FeatureResult {
  std::string name, section;
  bool ok = false, attached = false;
  int err = 0;  // positive errno, 0 when ok
  std::string stage, message;
  std::vector<std::string> log;
};
std::vector<FeatureResult> ProbeFeatures();

// An interface whose stale strata TC filters (by handle/priority) were removed.
struct StaleTc {
  std::string ifname;
  int ifindex = 0;
};
// Walks every interface of netns (path; "" = ours) and detaches strata's TC filters left by an
// agent that died without detaching (SIGKILL, OOM). Other filters are left alone.
bool CleanupStaleTc(const std::string& netns, std::vector<StaleTc>* removed, NativeError* err);

// ifindex and IFLA_LINK of ifname inside netns (path; "" = ours)
bool LinkInfo(const std::string& netns, const std::string& ifname, int* ifindex, int* iflink, NativeError* err);

// One interface of a netns as an RTM_GETLINK dump gives it.
struct LinkEntry {
  int ifindex = 0;
  std::string name;
  // IFLA_INFO_KIND ("veth", "bridge", ...); empty for devices without one
  std::string kind;
  // IFLA_LINK (a veth's peer ifindex, in the peer's netns); 0 when absent
  int iflink = 0;
};
// Every interface of netns (path; "" = ours): discovery's listing, without spawning iproute2.
bool ListLinks(const std::string& netns, std::vector<LinkEntry>* out, NativeError* err);

struct ProgStat {
  std::string object, name;
  uint32_t id;
  uint64_t run_time_ns, run_cnt;
};

// The BPF objects built into the addon (build/bpf/objects.gen.h), listed without loading.
struct ProgramInfo {
  std::string name, section;
};
struct ObjectInfo {
  std::string name;
  std::vector<ProgramInfo> programs;
  std::vector<std::string> maps;
};
bool ListObjects(std::vector<ObjectInfo>* out, NativeError* err);
// opens (does not load) an object of the generated table by name; nullptr and err on failure
bpf_object* OpenEmbedded(const std::string& name, NativeError* err);

// A load-time constant (`const volatile` in .rodata), set by its name before the verifier runs.
struct Knob {
  std::string name;
  uint64_t value;
};

// The objects loaded by name, sharing one ring buffer (`events`) and one counter array (`stats`)
// that this class creates before any object is opened. It knows no object in particular.
class Probes {
 public:
  ~Probes();
  bool Init(uint32_t ring_bytes, NativeError* err);
  // opens the embedded object `name`, writes the knobs, reuses the shared maps and loads it;
  // with a non-null `programs`, only those programs load (bpf_program__set_autoload)
  bool Load(const std::string& name, const std::vector<Knob>& knobs,
            const std::vector<std::string>* programs, NativeError* err);
  // bpf_program__attach: tracepoint, raw_tp, uprobe... as the program's section says
  bool Attach(const std::string& object, const std::string& program, NativeError* err);
  // destroys the links of one program (found by its kernel id); the program stays loaded, ready
  // to attach again. Not attached: ok, nothing to do.
  bool Detach(const std::string& object, const std::string& program, NativeError* err);
  // the same, except that the links are only taken out of this object's list, into `out`, for the
  // caller to destroy elsewhere (a pool thread: a tracepoint's detach waits for RCU grace periods,
  // ~0.1 s per program on a VM, while the program stops running at the first of them)
  bool TakeLinks(const std::string& object, const std::string& program, std::vector<bpf_link*>* out,
                 NativeError* err);
  // destroys links TakeLinks gave out (any thread: it touches nothing of this object)
  static void DestroyLinks(std::vector<bpf_link*>* links);
  bool AttachTc(const std::string& object, const std::string& ifname, const std::string& netns,
                const std::string& ingress, const std::string& egress, int* ifindex,
                NativeError* err);
  bool DetachTc(const std::string& ifname, const std::string& netns, NativeError* err);
  // a uprobe (or uretprobe) of one loaded program on `func` of the ELF file `binary`, for process
  // `pid` only (-1: every process); returns an id for DetachUprobe (> 0), 0 on failure
  int AttachUprobe(const std::string& object, const std::string& program, const std::string& binary,
                   const std::string& func, int pid, bool retprobe, NativeError* err);
  bool DetachUprobe(int id, NativeError* err);
  // a map by name in any loaded object (object "" ) or in one
  bool MapUpdate(const std::string& object, const std::string& map, const void* key, size_t klen,
                 const void* val, size_t vlen, NativeError* err);
  bool MapDelete(const std::string& object, const std::string& map, const void* key, size_t klen,
                 NativeError* err);
  // BPF_PROG_TEST_RUN of one loaded program on `data`; the ring-buffer records it produced are
  // drained into `records` (the caller makes sure no pump is draining the ring)
  bool TestRun(const std::string& object, const std::string& program, const void* data,
               size_t len, int* retval, std::vector<uint8_t>* records, NativeError* err);
  std::vector<uint64_t> Stats();
  std::vector<ProgStat> ProgStats();
  bool EnableRunStats(NativeError* err);
  int RingFd() const { return ring_fd_; }
  std::vector<std::string> Loaded() const;
  void Close();
  const std::vector<TcAttachment>& tc() const { return tc_; }

 private:
  struct Object {
    std::string name;
    bpf_object* obj;
  };
  bpf_object* Find(const std::string& object) const;
  std::vector<Object> objects_;
  std::vector<bpf_link*> links_;
  std::vector<TcAttachment> tc_;
  std::map<int, bpf_link*> uprobes_;
  int next_uprobe_ = 1;
  int ring_fd_ = -1, counters_fd_ = -1, stats_fd_ = -1;
};

// Drains the ring buffer on its own thread; hands batches to JS (one call per batch).
class Pump {
 public:
  struct Counters {
    std::atomic<uint64_t> records{0}, batches{0}, dropped_batches{0}, dropped_records{0},
        polls{0};
  };
  bool Start(Napi::Env env, int ring_fd, Napi::Function cb, uint32_t batch_bytes, int poll_ms,
             uint32_t max_queued, NativeError* err);
  void Stop();
  bool running() const { return running_; }
  Counters counters;

 private:
  static int OnRecord(void* ctx, void* data, size_t size);
  void Run();
  void Flush();
  ring_buffer* rb_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool running_ = false;
  Napi::ThreadSafeFunction tsfn_;
  std::vector<uint8_t>* batch_ = nullptr;
  uint32_t batch_records_ = 0, batch_bytes_ = 1 << 20;
  int poll_ms_ = 10;
  std::atomic<uint32_t> queued_{0};
  uint32_t max_queued_ = 64;
};

}  // namespace strata
