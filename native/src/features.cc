// Feature probes for `strata check`: each program of bpf/features.bpf.c is loaded on its own
// (a fresh object with only that program's autoload on), attached when it has an attach point,
// then detached and freed. Trying is the only reliable answer: a kernel config, a missing
// trampoline, tracefs or a capability each fail differently, and only the kernel knows.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>

#include "strata.h"

namespace strata {

namespace {
struct Feature {
  const char* name;  // what `strata check` reports
  const char* prog;  // program in features.bpf.c
  bool attach;       // false: load only (TC needs an interface)
};

constexpr Feature kFeatures[] = {
    {"tracepoint", "feat_tp_write", true},
    {"tracepoint_sock", "feat_tp_sock", true},
    {"raw_tp", "feat_raw_tp", true},
    {"tp_btf", "feat_tp_btf", true},
    {"kprobe", "feat_kprobe", true},
    {"fentry", "feat_fentry", true},
    {"kprobe_recvmsg", "feat_kprobe_recv", true},
    {"fentry_recvmsg", "feat_fentry_recv", true},
    {"ovs_dp_upcall", "feat_ovs_upcall", true},
    {"ovs_do_execute_action", "feat_ovs_exec", true},
    {"tc", "feat_tc", false},
};

void Fill(FeatureResult* r, int e, const char* stage, const std::string& what) {
  if (e < 0) e = -e;
  if (e == 0) e = EINVAL;
  r->ok = false;
  r->err = e;
  r->stage = stage;
  r->message = what + ": " + ErrnoMessage(e);
}

FeatureResult ProbeOne(const Feature& f) {
  FeatureResult r;
  r.name = f.name;
  LastLibbpfLog();  // drop what earlier calls left, so the log belongs to this probe
  NativeError oerr{};
  bpf_object* obj = OpenEmbedded("features", &oerr);
  if (!obj) {
    Fill(&r, oerr.err, "open", "open features.bpf.o");
    r.log = LastLibbpfLog();
    return r;
  }
  bpf_program* prog = bpf_object__find_program_by_name(obj, f.prog);
  if (!prog) {
    Fill(&r, ENOENT, "open", std::string("program ") + f.prog);
    bpf_object__close(obj);
    return r;
  }
  r.section = bpf_program__section_name(prog);
  // sections start with "?": every program is off unless switched on here
  bpf_program__set_autoload(prog, true);
  int e = bpf_object__load(obj);
  if (e) {
    Fill(&r, e, "load", "load " + r.section);
  } else if (f.attach) {
    bpf_link* l = bpf_program__attach(prog);
    if (!l) {
      Fill(&r, errno, "attach", "attach " + r.section);
    } else {
      r.ok = r.attached = true;
      r.message = "loaded and attached";
      bpf_link__destroy(l);
    }
  } else {
    r.ok = true;
    r.message = "loaded (attached per interface by the agent)";
  }
  r.log = LastLibbpfLog();
  bpf_object__close(obj);
  return r;
}
}  // namespace

std::vector<FeatureResult> ProbeFeatures() {
  InstallLibbpfLogger();
  std::vector<FeatureResult> out;
  for (const auto& f : kFeatures) out.push_back(ProbeOne(f));
  return out;
}

}  // namespace strata
