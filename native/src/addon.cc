// JS surface of the native transport (typed in native/index.d.ts).
#include <string.h>
#include <time.h>

#include "events.h"
#include "strata.h"

namespace strata {

Napi::Error ToJsError(Napi::Env env, const NativeError& e) {
  Napi::Error err = Napi::Error::New(env, e.stage + " " + e.target + ": " + e.message);
  err.Set("code", Napi::String::New(env, ErrnoName(e.err)));
  err.Set("errno", Napi::Number::New(env, e.err));
  err.Set("stage", Napi::String::New(env, e.stage));
  err.Set("target", Napi::String::New(env, e.target));
  auto lines = LastLibbpfLog();
  Napi::Array log = Napi::Array::New(env, lines.size());
  for (size_t i = 0; i < lines.size(); i++) log.Set(i, Napi::String::New(env, lines[i]));
  err.Set("log", log);
  return err;
}

static Napi::Array StaleToJs(Napi::Env env, const std::vector<StaleTc>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("ifname", v[i].ifname);
    o.Set("ifindex", v[i].ifindex);
    a.Set(i, o);
  }
  return a;
}

static std::string OptNetns(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : std::string();
}

// cleanupStale(netns?): {ifname, ifindex}[] of interfaces whose strata TC filters were removed
static Napi::Value CleanupStale(const Napi::CallbackInfo& info) {
  NativeError err{};
  std::vector<StaleTc> removed;
  if (!CleanupStaleTc(OptNetns(info, 0), &removed, &err)) {
    ToJsError(info.Env(), err).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return StaleToJs(info.Env(), removed);
}

// probeFeatures(): one entry per program of features.bpf.o, loaded and attached on its own
static Napi::Value ProbeFeaturesJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto v = ProbeFeatures();
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    const auto& r = v[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", r.name);
    o.Set("section", r.section);
    o.Set("ok", r.ok);
    o.Set("attached", r.attached);
    o.Set("code", r.ok ? "" : ErrnoName(r.err));
    o.Set("errno", r.err);
    o.Set("stage", r.stage);
    o.Set("message", r.message);
    Napi::Array log = Napi::Array::New(env, r.log.size());
    for (size_t j = 0; j < r.log.size(); j++) log.Set(j, r.log[j]);
    o.Set("log", log);
    a.Set(i, o);
  }
  return a;
}

static uint32_t OptU32(const Napi::Object& o, const char* k, uint32_t def) {
  return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().Uint32Value() : def;
}

class ProbesWrap : public Napi::ObjectWrap<ProbesWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Probes",
                       {
                           InstanceMethod<&ProbesWrap::AttachSyscalls>("attachSyscalls"),
                           InstanceMethod<&ProbesWrap::AttachTc>("attachTc"),
                           InstanceMethod<&ProbesWrap::DetachTc>("detachTc"),
                           InstanceMethod<&ProbesWrap::NetnsAdd>("netnsAdd"),
                           InstanceMethod<&ProbesWrap::NetnsDelete>("netnsDelete"),
                           InstanceMethod<&ProbesWrap::CgroupAdd>("cgroupAdd"),
                           InstanceMethod<&ProbesWrap::CgroupDelete>("cgroupDelete"),
                           InstanceMethod<&ProbesWrap::Start>("start"),
                           InstanceMethod<&ProbesWrap::Stop>("stop"),
                           InstanceMethod<&ProbesWrap::Stats>("stats"),
                           InstanceMethod<&ProbesWrap::PumpStats>("pumpStats"),
                           InstanceMethod<&ProbesWrap::EnableRunStats>("enableRunStats"),
                           InstanceMethod<&ProbesWrap::ProgStats>("progStats"),
                           InstanceMethod<&ProbesWrap::Attachments>("attachments"),
                           InstanceMethod<&ProbesWrap::CleanupStale>("cleanupStale"),
                           InstanceMethod<&ProbesWrap::Close>("close"),
                       });
  }

  ProbesWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProbesWrap>(info) {
    Napi::Env env = info.Env();
    Probes::Options o;
    if (info.Length() > 0 && info[0].IsObject()) {
      auto opt = info[0].As<Napi::Object>();
      o.sock_payload_cap = OptU32(opt, "sockPayloadCap", o.sock_payload_cap);
      o.pkt_payload_cap = OptU32(opt, "pktPayloadCap", o.pkt_payload_cap);
      o.wakeup_bytes = OptU32(opt, "wakeupBytes", (uint32_t)o.wakeup_bytes);
      o.ring_bytes = OptU32(opt, "ringBytes", o.ring_bytes);
      if (opt.Has("filterNetns")) o.filter_netns = opt.Get("filterNetns").ToBoolean();
      if (opt.Has("filterCgroups")) o.filter_cgroups = opt.Get("filterCgroups").ToBoolean();
    }
    NativeError err{};
    if (o.sock_payload_cap % 8 || o.sock_payload_cap > STRATA_SOCK_PAYLOAD_MAX ||
        o.pkt_payload_cap % 8 || o.pkt_payload_cap > STRATA_PKT_PAYLOAD_MAX ||
        o.pkt_payload_cap == 0) {
      err = {EINVAL, "open", "options", "payload caps must be multiples of 8 within the maxima"};
      ToJsError(env, err).ThrowAsJavaScriptException();
      return;
    }
    if (!probes_.Open(o, &err)) {
      probes_.Close();
      ToJsError(env, err).ThrowAsJavaScriptException();
    }
  }

  ~ProbesWrap() {
    pump_.Stop();
    probes_.Close();
  }

 private:
  Napi::Value Throw(Napi::Env env, const NativeError& e) {
    ToJsError(env, e).ThrowAsJavaScriptException();
    return env.Undefined();
  }

  Napi::Value AttachSyscalls(const Napi::CallbackInfo& info) {
    NativeError err{};
    if (!probes_.AttachSyscalls(&err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value AttachTc(const Napi::CallbackInfo& info) {
    NativeError err{};
    std::string ifname = info[0].As<Napi::String>();
    std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
    int ifindex = 0;
    if (!probes_.AttachTc(ifname, netns, &ifindex, &err)) return Throw(info.Env(), err);
    return Napi::Number::New(info.Env(), ifindex);
  }

  Napi::Value DetachTc(const Napi::CallbackInfo& info) {
    NativeError err{};
    std::string ifname = info[0].As<Napi::String>();
    std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : std::string();
    if (!probes_.DetachTc(ifname, netns, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value NetnsAdd(const Napi::CallbackInfo& info) {
    NativeError err{};
    uint32_t inum = info[0].As<Napi::Number>().Uint32Value();
    uint8_t one = 1;
    if (!probes_.MapUpdate("traced_netns", &inum, 4, &one, 1, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  // cgroup ids are u64 inode numbers: taken as a JS number (exact below 2^53) or a BigInt
  static uint64_t CgroupId(const Napi::Value& v) {
    if (v.IsBigInt()) {
      bool lossless = true;
      return v.As<Napi::BigInt>().Uint64Value(&lossless);
    }
    return (uint64_t)v.As<Napi::Number>().Int64Value();
  }

  Napi::Value CgroupAdd(const Napi::CallbackInfo& info) {
    NativeError err{};
    uint64_t id = CgroupId(info[0]);
    uint8_t one = 1;
    if (!probes_.MapUpdate("traced_cgroups", &id, 8, &one, 1, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value CgroupDelete(const Napi::CallbackInfo& info) {
    NativeError err{};
    uint64_t id = CgroupId(info[0]);
    if (!probes_.MapDelete("traced_cgroups", &id, 8, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value NetnsDelete(const Napi::CallbackInfo& info) {
    NativeError err{};
    uint32_t inum = info[0].As<Napi::Number>().Uint32Value();
    if (!probes_.MapDelete("traced_netns", &inum, 4, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    NativeError err{};
    auto cb = info[0].As<Napi::Function>();
    Napi::Object o = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>()
                                                             : Napi::Object::New(info.Env());
    if (!pump_.Start(info.Env(), probes_.RingFd(), cb, OptU32(o, "batchBytes", 1 << 20),
                     (int)OptU32(o, "pollMs", 10), OptU32(o, "maxQueued", 64), &err))
      return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    pump_.Stop();
    return info.Env().Undefined();
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    static const char* names[STRATA_STAT_MAX] = {"events",        "rbDrops",   "filtered",
                                                 "notTcp",        "pktSeen",   "pktAggregated",
                                                 "pktNotTcp",     "readErrors"};
    auto v = probes_.Stats();
    Napi::Object o = Napi::Object::New(info.Env());
    for (int i = 0; i < STRATA_STAT_MAX; i++) o.Set(names[i], Napi::Number::New(info.Env(), (double)v[i]));
    return o;
  }

  Napi::Value PumpStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("records", Napi::Number::New(env, (double)pump_.counters.records.load()));
    o.Set("batches", Napi::Number::New(env, (double)pump_.counters.batches.load()));
    o.Set("droppedBatches", Napi::Number::New(env, (double)pump_.counters.dropped_batches.load()));
    o.Set("droppedRecords", Napi::Number::New(env, (double)pump_.counters.dropped_records.load()));
    o.Set("polls", Napi::Number::New(env, (double)pump_.counters.polls.load()));
    return o;
  }

  Napi::Value EnableRunStats(const Napi::CallbackInfo& info) {
    NativeError err{};
    if (!probes_.EnableRunStats(&err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value ProgStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto v = probes_.ProgStats();
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("name", v[i].name);
      o.Set("id", v[i].id);
      o.Set("runTimeNs", Napi::Number::New(env, (double)v[i].run_time_ns));
      o.Set("runCnt", Napi::Number::New(env, (double)v[i].run_cnt));
      a.Set(i, o);
    }
    return a;
  }

  Napi::Value Attachments(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto& v = probes_.tc();
    Napi::Array a = Napi::Array::New(env, v.size());
    for (size_t i = 0; i < v.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("ifname", v[i].ifname);
      o.Set("netns", v[i].netns);
      o.Set("ifindex", v[i].ifindex);
      a.Set(i, o);
    }
    return a;
  }

  Napi::Value CleanupStale(const Napi::CallbackInfo& info) { return strata::CleanupStale(info); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    pump_.Stop();
    probes_.Close();
    return info.Env().Undefined();
  }

  Probes probes_;
  Pump pump_;
};

// CLOCK_REALTIME and CLOCK_MONOTONIC read back to back (BPF timestamps are CLOCK_MONOTONIC): the
// offset between them, in ns, exactly enough to convert a batch's timestamps to wall clock.
static Napi::Value ClockPair(const Napi::CallbackInfo& info) {
  struct timespec mono1, real, mono2;
  clock_gettime(CLOCK_MONOTONIC, &mono1);
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_MONOTONIC, &mono2);
  const int64_t mono = ((int64_t)mono1.tv_sec * 1000000000 + mono1.tv_nsec + (int64_t)mono2.tv_sec * 1000000000 + mono2.tv_nsec) / 2;
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("realtimeNs", Napi::BigInt::New(info.Env(), (int64_t)real.tv_sec * 1000000000 + real.tv_nsec));
  o.Set("monotonicNs", Napi::BigInt::New(info.Env(), mono));
  return o;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Probes", ProbesWrap::Init(env));
  exports.Set("eventsVersion", Napi::Number::New(env, STRATA_EVENTS_VERSION));
  exports.Set("probeFeatures", Napi::Function::New<ProbeFeaturesJs>(env, "probeFeatures"));
  exports.Set("cleanupStale", Napi::Function::New<CleanupStale>(env, "cleanupStale"));
  exports.Set("clockPair", Napi::Function::New<ClockPair>(env, "clockPair"));
  return exports;
}

NODE_API_MODULE(strata_native, Init)

}  // namespace strata
