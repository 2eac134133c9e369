// Transport between the kernel and JS: open/load/attach/detach, maps, ring-buffer pump.
// It copies records into batches; it never parses them (the decoder lives in agent/).
#pragma once
#include <napi.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct sock_bpf;
struct veth_tc_bpf;
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
  std::string ifname, netns;
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

struct ProgStat {
  std::string name;
  uint32_t id;
  uint64_t run_time_ns, run_cnt;
};

class Probes {
 public:
  struct Options {
    uint32_t sock_payload_cap = 256, pkt_payload_cap = 128;
    uint64_t wakeup_bytes = 256 * 1024;
    uint32_t ring_bytes = 16 * 1024 * 1024;
    bool filter_netns = true;
    bool filter_cgroups = false;
  };
  ~Probes();
  bool Open(const Options& o, NativeError* err);
  // attach every syscall tracepoint program; returns names that failed (with errors)
  bool AttachSyscalls(NativeError* err);
  bool AttachTc(const std::string& ifname, const std::string& netns, int* ifindex, NativeError* err);
  bool DetachTc(const std::string& ifname, const std::string& netns, NativeError* err);
  bool MapUpdate(const std::string& map, const void* key, size_t klen, const void* val, size_t vlen,
                 NativeError* err);
  bool MapDelete(const std::string& map, const void* key, size_t klen, NativeError* err);
  std::vector<uint64_t> Stats();
  std::vector<ProgStat> ProgStats();
  bool EnableRunStats(NativeError* err);
  int RingFd() const;
  void Close();
  const std::vector<TcAttachment>& tc() const { return tc_; }

 private:
  sock_bpf* sock_ = nullptr;
  veth_tc_bpf* tc_skel_ = nullptr;
  std::vector<bpf_link*> links_;
  std::vector<TcAttachment> tc_;
  int stats_fd_ = -1;
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
