#!/usr/bin/env bash
# Compile every bpf/*.bpf.c into a CO-RE object and a libbpf skeleton header.
# Called by binding.gyp (node-gyp); output dir is its only argument.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: build.sh OUTDIR}"
mkdir -p "$out"
CLANG="${CLANG:-clang}"
BPFTOOL="${BPFTOOL:-$(command -v bpftool || echo /usr/sbin/bpftool)}"
arch="$(uname -m)"; case "$arch" in x86_64) tarch=x86 ;; aarch64) tarch=arm64 ;; *) tarch="$arch" ;; esac

# vmlinux.h from the build machine's BTF: CO-RE relocates field offsets at load time, so the
# objects run on other kernels with BTF (5.10 .. 7.x, see README).
if [ ! -s "$out/vmlinux.h" ]; then
  [ -r /sys/kernel/btf/vmlinux ] || { echo "bpf/build.sh: /sys/kernel/btf/vmlinux missing: a kernel with BTF is needed to build" >&2; exit 1; }
  "$BPFTOOL" btf dump file /sys/kernel/btf/vmlinux format c > "$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
for src in "$here"/*.bpf.c; do
  name="$(basename "$src" .bpf.c)"
  "$CLANG" -g -O2 -target bpf -D__TARGET_ARCH_"$tarch" -Wall -Werror \
    -I"$out" -I"$here/include" -c "$src" -o "$out/$name.bpf.o"
  "$BPFTOOL" gen skeleton "$out/$name.bpf.o" name "${name}_bpf" > "$out/$name.skel.h.tmp"
  mv "$out/$name.skel.h.tmp" "$out/$name.skel.h"
done
