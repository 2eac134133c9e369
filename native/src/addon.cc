// JS surface of the native transport (typed in native/index.d.ts).
#include <malloc.h>
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

// optional string argument i ("" when absent): a netns path, an object name
static std::string OptStr(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : std::string();
}

// cleanupStale(netns?): {ifname, ifindex}[] of interfaces whose strata TC filters were removed
static Napi::Value CleanupStale(const Napi::CallbackInfo& info) {
  NativeError err{};
  std::vector<StaleTc> removed;
  if (!CleanupStaleTc(OptStr(info, 0), &removed, &err)) {
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

static std::string Str(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string").ThrowAsJavaScriptException();
    return std::string();
  }
  return info[i].As<Napi::String>().Utf8Value();
}

static bool Buf(const Napi::CallbackInfo& info, size_t i, Napi::Buffer<uint8_t>* out) {
  if (info.Length() <= i || !info[i].IsBuffer()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a Buffer").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Buffer<uint8_t>>();
  return true;
}

// linkInfo(ifname, netns?): {ifindex, iflink}
static Napi::Value LinkInfoJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string ifname = Str(info, 0);
  if (env.IsExceptionPending()) return env.Undefined();
  int ifindex = 0, iflink = 0;
  NativeError err{};
  if (!LinkInfo(OptStr(info, 1), ifname, &ifindex, &iflink, &err)) {
    ToJsError(env, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", ifindex);
  o.Set("iflink", iflink);
  return o;
}

// listLinks(netns?): [{ifindex, name, kind?, iflink?}], an RTM_GETLINK dump of the netns
static Napi::Value ListLinksJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<LinkEntry> v;
  NativeError err{};
  if (!ListLinks(OptStr(info, 0), &v, &err)) {
    ToJsError(env, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("ifindex", v[i].ifindex);
    o.Set("name", v[i].name);
    if (!v[i].kind.empty()) o.Set("kind", v[i].kind);
    if (v[i].iflink && v[i].iflink != v[i].ifindex) o.Set("iflink", v[i].iflink);
    a.Set(i, o);
  }
  return a;
}

// listObjects(): every embedded object opened (not loaded): no privilege needed
static Napi::Value ListObjectsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<ObjectInfo> v;
  NativeError err{};
  if (!ListObjects(&v, &err)) {
    ToJsError(env, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", v[i].name);
    Napi::Array progs = Napi::Array::New(env, v[i].programs.size());
    for (size_t j = 0; j < v[i].programs.size(); j++) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("name", v[i].programs[j].name);
      p.Set("section", v[i].programs[j].section);
      progs.Set(j, p);
    }
    o.Set("programs", progs);
    Napi::Array maps = Napi::Array::New(env, v[i].maps.size());
    for (size_t j = 0; j < v[i].maps.size(); j++) maps.Set(j, v[i].maps[j]);
    o.Set("maps", maps);
    a.Set(i, o);
  }
  return a;
}

class ProbesWrap : public Napi::ObjectWrap<ProbesWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "Probes",
                       {
                           InstanceMethod<&ProbesWrap::Load>("load"),
                           InstanceMethod<&ProbesWrap::Attach>("attach"),
                           InstanceMethod<&ProbesWrap::AttachTc>("attachTc"),
                           InstanceMethod<&ProbesWrap::DetachTc>("detachTc"),
                           InstanceMethod<&ProbesWrap::Detach>("detach"),
                           InstanceMethod<&ProbesWrap::DetachAsync>("detachAsync"),
                           InstanceMethod<&ProbesWrap::AttachUprobe>("attachUprobe"),
                           InstanceMethod<&ProbesWrap::DetachUprobe>("detachUprobe"),
                           InstanceMethod<&ProbesWrap::MapUpdate>("mapUpdate"),
                           InstanceMethod<&ProbesWrap::MapDelete>("mapDelete"),
                           InstanceMethod<&ProbesWrap::TestRun>("testRun"),
                           InstanceMethod<&ProbesWrap::Loaded>("loaded"),
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
    uint32_t ring_bytes = 16 * 1024 * 1024;
    if (info.Length() > 0 && info[0].IsObject()) ring_bytes = OptU32(info[0].As<Napi::Object>(), "ringBytes", ring_bytes);
    NativeError err{};
    if (!probes_.Init(ring_bytes, &err)) {
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

  // load(object, {knobs?: {name: number|boolean|bigint}, programs?: string[]})
  Napi::Value Load(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = Str(info, 0);
    if (env.IsExceptionPending()) return env.Undefined();
    std::vector<Knob> knobs;
    std::vector<std::string> programs;
    bool some = false;
    if (info.Length() > 1 && info[1].IsObject()) {
      auto o = info[1].As<Napi::Object>();
      if (o.Has("knobs") && o.Get("knobs").IsObject()) {
        auto k = o.Get("knobs").As<Napi::Object>();
        auto names = k.GetPropertyNames();
        for (uint32_t i = 0; i < names.Length(); i++) {
          std::string n = names.Get(i).As<Napi::String>().Utf8Value();
          Napi::Value v = k.Get(n);
          uint64_t val = 0;
          if (v.IsBoolean()) val = v.As<Napi::Boolean>().Value() ? 1 : 0;
          else if (v.IsBigInt()) { bool lossless; val = v.As<Napi::BigInt>().Uint64Value(&lossless); }
          else if (v.IsNumber()) val = (uint64_t)v.As<Napi::Number>().Int64Value();
          else continue;  // undefined: keep the object's default
          knobs.push_back({n, val});
        }
      }
      if (o.Has("programs") && o.Get("programs").IsArray()) {
        auto a = o.Get("programs").As<Napi::Array>();
        some = true;
        for (uint32_t i = 0; i < a.Length(); i++) programs.push_back(a.Get(i).As<Napi::String>().Utf8Value());
      }
    }
    NativeError err{};
    if (!probes_.Load(name, knobs, some ? &programs : nullptr, &err)) return Throw(env, err);
    return env.Undefined();
  }

  Napi::Value Attach(const Napi::CallbackInfo& info) {
    std::string object = Str(info, 0), program = Str(info, 1);
    if (info.Env().IsExceptionPending()) return info.Env().Undefined();
    NativeError err{};
    if (!probes_.Attach(object, program, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  Napi::Value Detach(const Napi::CallbackInfo& info) {
    std::string object = Str(info, 0), program = Str(info, 1);
    if (info.Env().IsExceptionPending()) return info.Env().Undefined();
    NativeError err{};
    if (!probes_.Detach(object, program, &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  // detachAsync(object, programs[]) -> Promise<ms>: the links leave the object's list now (attach()
  // may run again at once; the caller waits for the promise first, or both run for a while) and
  // are destroyed on a libuv pool thread, so the event loop does not wait out the RCU grace periods
  Napi::Value DetachAsync(const Napi::CallbackInfo& info);

  // attachUprobe(object, program, binary, func, pid, retprobe) -> id
  Napi::Value AttachUprobe(const Napi::CallbackInfo& info) {
    std::string object = Str(info, 0), program = Str(info, 1), binary = Str(info, 2), func = Str(info, 3);
    if (info.Env().IsExceptionPending()) return info.Env().Undefined();
    int pid = info.Length() > 4 && info[4].IsNumber() ? info[4].As<Napi::Number>().Int32Value() : -1;
    bool ret = info.Length() > 5 && info[5].IsBoolean() && info[5].As<Napi::Boolean>().Value();
    NativeError err{};
    int id = probes_.AttachUprobe(object, program, binary, func, pid, ret, &err);
    if (!id) return Throw(info.Env(), err);
    return Napi::Number::New(info.Env(), id);
  }

  Napi::Value DetachUprobe(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsNumber()) {
      Napi::TypeError::New(info.Env(), "detachUprobe(id): id must be a number").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    NativeError err{};
    if (!probes_.DetachUprobe(info[0].As<Napi::Number>().Int32Value(), &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  // attachTc(object, ifname, netns?, {ingress?, egress?})
  Napi::Value AttachTc(const Napi::CallbackInfo& info) {
    std::string object = Str(info, 0), ifname = Str(info, 1);
    if (info.Env().IsExceptionPending()) return info.Env().Undefined();
    std::string netns = OptStr(info, 2);
    std::string ingress = "tc_ingress", egress = "tc_egress";
    if (info.Length() > 3 && info[3].IsObject()) {
      auto o = info[3].As<Napi::Object>();
      if (o.Get("ingress").IsString()) ingress = o.Get("ingress").As<Napi::String>().Utf8Value();
      if (o.Get("egress").IsString()) egress = o.Get("egress").As<Napi::String>().Utf8Value();
    }
    NativeError err{};
    int ifindex = 0;
    if (!probes_.AttachTc(object, ifname, netns, ingress, egress, &ifindex, &err)) return Throw(info.Env(), err);
    return Napi::Number::New(info.Env(), ifindex);
  }

  Napi::Value DetachTc(const Napi::CallbackInfo& info) {
    std::string ifname = Str(info, 0);
    if (info.Env().IsExceptionPending()) return info.Env().Undefined();
    NativeError err{};
    if (!probes_.DetachTc(ifname, OptStr(info, 1), &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  // mapUpdate(map, key, value, object?)
  Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
    std::string map = Str(info, 0);
    Napi::Buffer<uint8_t> key, val;
    if (info.Env().IsExceptionPending() || !Buf(info, 1, &key) || !Buf(info, 2, &val)) return info.Env().Undefined();
    NativeError err{};
    if (!probes_.MapUpdate(OptStr(info, 3), map, key.Data(), key.Length(), val.Data(), val.Length(), &err))
      return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  // mapDelete(map, key, object?)
  Napi::Value MapDelete(const Napi::CallbackInfo& info) {
    std::string map = Str(info, 0);
    Napi::Buffer<uint8_t> key;
    if (info.Env().IsExceptionPending() || !Buf(info, 1, &key)) return info.Env().Undefined();
    NativeError err{};
    if (!probes_.MapDelete(OptStr(info, 2), map, key.Data(), key.Length(), &err)) return Throw(info.Env(), err);
    return info.Env().Undefined();
  }

  // testRun(object, program, packet): {retval, records}
  Napi::Value TestRun(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string object = Str(info, 0), program = Str(info, 1);
    Napi::Buffer<uint8_t> pkt;
    if (env.IsExceptionPending() || !Buf(info, 2, &pkt)) return env.Undefined();
    if (pump_.running()) return Throw(env, {EBUSY, "load", object + "/" + program, "the pump is draining the ring buffer: stop() it first"});
    NativeError err{};
    int retval = 0;
    std::vector<uint8_t> records;
    if (!probes_.TestRun(object, program, pkt.Data(), pkt.Length(), &retval, &records, &err)) return Throw(env, err);
    Napi::Object o = Napi::Object::New(env);
    o.Set("retval", Napi::Number::New(env, retval));
    o.Set("records", Napi::Buffer<uint8_t>::Copy(env, records.data(), records.size()));
    return o;
  }

  Napi::Value Loaded(const Napi::CallbackInfo& info) {
    auto v = probes_.Loaded();
    Napi::Array a = Napi::Array::New(info.Env(), v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(i, v[i]);
    return a;
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

  // indexed by enum strata_stat (names: STAT_NAMES in agent/src/events/layout.generated.ts)
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    auto v = probes_.Stats();
    Napi::Array a = Napi::Array::New(info.Env(), v.size());
    for (size_t i = 0; i < v.size(); i++) a.Set(i, Napi::Number::New(info.Env(), (double)v[i]));
    return a;
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
      o.Set("object", v[i].object);
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
      o.Set("object", v[i].object);
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

// Gives the free memory of every malloc arena back to the kernel (glibc malloc_trim: free pages in
// the middle of an arena too, not only its top). glibc keeps freed memory resident: the agent's
// buffers (ring-buffer batches, OTLP request bodies, libbpf's BTF parsing at load) left 100+ MiB
// of free heap counted in RSS. It runs on a libuv pool thread (it walks every arena: 10-30 ms on
// the lab, which the event loop should not wait for). Resolves with the microseconds it took, or
// false where the C library has no malloc_trim.
class TrimWorker : public Napi::AsyncWorker {
 public:
  TrimWorker(Napi::Env env) : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
#ifdef __GLIBC__
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    malloc_trim(0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    us_ = (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3;
#endif
  }
  void OnOK() override {
#ifdef __GLIBC__
    deferred_.Resolve(Napi::Number::New(Env(), us_));
#else
    deferred_.Resolve(Napi::Boolean::New(Env(), false));
#endif
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  double us_ = 0;
};

// Destroys bpf links on a libuv pool thread; resolves with the milliseconds that took.
class DetachWorker : public Napi::AsyncWorker {
 public:
  DetachWorker(Napi::Env env, std::vector<bpf_link*> links)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), links_(std::move(links)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Probes::DestroyLinks(&links_);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms_ = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), ms_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<bpf_link*> links_;
  double ms_ = 0;
};

Napi::Value ProbesWrap::DetachAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string object = Str(info, 0);
  if (env.IsExceptionPending()) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsArray()) {
    Napi::TypeError::New(env, "detachAsync(object, programs): programs must be an array of names").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<bpf_link*> taken;
  for (uint32_t i = 0; i < a.Length(); i++) {
    NativeError err{};
    if (!probes_.TakeLinks(object, a.Get(i).As<Napi::String>().Utf8Value(), &taken, &err)) {
      Probes::DestroyLinks(&taken);
      return Throw(env, err);
    }
  }
  auto* w = new DetachWorker(env, std::move(taken));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

static Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  auto* w = new TrimWorker(info.Env());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Probes", ProbesWrap::Init(env));
  exports.Set("eventsVersion", Napi::Number::New(env, STRATA_EVENTS_VERSION));
  exports.Set("linkInfo", Napi::Function::New<LinkInfoJs>(env, "linkInfo"));
  exports.Set("listLinks", Napi::Function::New<ListLinksJs>(env, "listLinks"));
  exports.Set("listObjects", Napi::Function::New<ListObjectsJs>(env, "listObjects"));
  exports.Set("probeFeatures", Napi::Function::New<ProbeFeaturesJs>(env, "probeFeatures"));
  exports.Set("cleanupStale", Napi::Function::New<CleanupStale>(env, "cleanupStale"));
  exports.Set("clockPair", Napi::Function::New<ClockPair>(env, "clockPair"));
  exports.Set("mallocTrim", Napi::Function::New<MallocTrim>(env, "mallocTrim"));
  return exports;
}

NODE_API_MODULE(strata_native, Init)

}  // namespace strata
