// Ring-buffer pump: a thread drains the BPF ring buffer into batches and hands each batch to JS
// with one thread-safe call. The kernel side wakes us only past a fill threshold; the poll
// timeout bounds latency when traffic is light.
#include <bpf/libbpf.h>
#include <errno.h>

#include <chrono>

#include "strata.h"

namespace strata {

namespace {
struct Batch {
  std::vector<uint8_t>* data;
  uint32_t records;
  std::atomic<uint32_t>* queued;
};
}  // namespace

int Pump::OnRecord(void* ctx, void* data, size_t size) {
  auto* self = static_cast<Pump*>(ctx);
  auto* b = self->batch_;
  const size_t at = b->size();
  b->resize(at + size);
  memcpy(b->data() + at, data, size);
  self->batch_records_++;
  if (b->size() >= self->batch_bytes_) self->Flush();
  return 0;
}

void Pump::Flush() {
  if (!batch_records_) return;
  const uint32_t n = batch_records_;
  batch_records_ = 0;
  // JS is behind: drop the whole batch here, counted, rather than grow without bound
  if (queued_.load() >= max_queued_) {
    counters.dropped_batches++;
    counters.dropped_records += n;
    batch_->clear();
    return;
  }
  auto* b = new Batch{batch_, n, &queued_};
  batch_ = new std::vector<uint8_t>();
  batch_->reserve(batch_bytes_ + 4096);
  queued_++;
  napi_status st = tsfn_.NonBlockingCall(b, [](Napi::Env env, Napi::Function fn, Batch* b) {
    b->queued->fetch_sub(1);
    if (env != nullptr && fn != nullptr) {
      // the batch's own memory becomes the Buffer (no second copy); freed with the Buffer.
      // Where external buffers are forbidden (V8 sandbox) NewOrCopy copies and finalizes now.
      // V8 is told about the bytes it now keeps alive, so that GC pressure follows the batches.
      std::vector<uint8_t>* v = b->data;
      const int64_t bytes = (int64_t)v->size();
      auto buf = Napi::Buffer<uint8_t>::NewOrCopy(
          env, v->data(), v->size(),
          [bytes](Napi::Env e, uint8_t*, std::vector<uint8_t>* d) {
            Napi::MemoryManagement::AdjustExternalMemory(e, -bytes);
            delete d;
          },
          v);
      Napi::MemoryManagement::AdjustExternalMemory(env, bytes);
      b->data = nullptr;
      fn.Call({buf, Napi::Number::New(env, b->records)});
    }
    delete b->data;
    delete b;
  });
  if (st != napi_ok) {
    queued_--;
    counters.dropped_batches++;
    counters.dropped_records += n;
    delete b->data;
    delete b;
    return;
  }
  counters.batches++;
  counters.records += n;
}

void Pump::Run() {
  using clock = std::chrono::steady_clock;
  auto last_flush = clock::now();
  const auto period = std::chrono::milliseconds(poll_ms_);
  while (!stop_.load()) {
    ring_buffer__poll(rb_, poll_ms_);
    // poll returns on timeout without consuming (no wakeup was sent): drain explicitly
    ring_buffer__consume(rb_);
    counters.polls++;
    // under load poll returns at once: hand JS a batch per period (or per batch_bytes, in
    // OnRecord), not one small batch per poll
    const auto now = clock::now();
    if (now - last_flush >= period) {
      Flush();
      last_flush = now;
    }
  }
  ring_buffer__consume(rb_);
  Flush();
}

bool Pump::Start(Napi::Env env, int ring_fd, Napi::Function cb, uint32_t batch_bytes, int poll_ms,
                 uint32_t max_queued, NativeError* err) {
  if (running_) {
    err->err = EBUSY;
    err->stage = "attach";
    err->target = "ring buffer";
    err->message = "pump already running";
    return false;
  }
  batch_bytes_ = batch_bytes;
  poll_ms_ = poll_ms;
  max_queued_ = max_queued;
  rb_ = ring_buffer__new(ring_fd, OnRecord, this, nullptr);
  if (!rb_) {
    err->err = errno ? errno : EINVAL;
    err->stage = "attach";
    err->target = "ring buffer";
    err->message = std::string("ring_buffer__new: ") + strerror(err->err);
    return false;
  }
  batch_ = new std::vector<uint8_t>();
  batch_->reserve(batch_bytes_ + 4096);
  tsfn_ = Napi::ThreadSafeFunction::New(env, cb, "strata-ring-pump", 0, 1);
  stop_ = false;
  running_ = true;
  thread_ = std::thread([this]() { Run(); });
  return true;
}

void Pump::Stop() {
  if (!running_) return;
  stop_ = true;
  thread_.join();
  tsfn_.Release();
  ring_buffer__free(rb_);
  rb_ = nullptr;
  delete batch_;
  batch_ = nullptr;
  running_ = false;
}

}  // namespace strata
