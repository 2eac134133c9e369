#!/usr/bin/env bash
# The project's VM for other kernels: Debian's own kernels booted with qemu (TCG: no KVM here),
# the agent built on this host run unchanged inside (lab/vm.ts drives it for the tests).
#
#   bash scripts/vm.sh build [KERNEL...]    fetch/build what the VM needs (default: every kernel);
#                                           prints "KERNEL<TAB>release<TAB>cache dir" per kernel
#   bash scripts/vm.sh run KERNEL [--script FILE | -c CMD] [--out DIR] [--timeout S]
#                          [--mem MiB] [--smp N] [--append KERNEL-ARGS]
#                                           boot KERNEL and run the job (sh) in the guest, as root,
#                                           in this checkout (mounted read-only at its host path),
#                                           killed after S seconds (exit code 124) if given; its
#                                           output goes to DIR (default: a new, kept
#                                           /tmp/strata-vm-out.*); with neither --script nor -c:
#                                           a shell on the console
#   bash scripts/vm.sh kernels              the kernel ids
#
# What runs in the guest:
#   rootfs  Debian bookworm (mmdebstrap minbase + openvswitch-switch, iproute2, bpftool, the
#           addon's libbpf1/libelf1/zlib1g, busybox-static, kmod, ethtool), shared read-only over
#           9p under a tmpfs overlay: every boot starts from the same clean tree
#   kernel  Debian's kernel of a suite (its meta package), fetched as .debs with apt-get download through
#           an apt configuration of its own (APT_CONFIG: its own sources, lists and archives; the
#           system's sources and dpkg are untouched), unpacked with dpkg-deb, depmod'ed
#   initrd  busybox + the virtio/9p/overlay modules of that kernel (scripts/vm/init-initramfs.sh),
#           then scripts/vm/init-guest.sh as the guest's PID 1
#   shares  rootfs, the kernel (modules, config), this checkout (read-only), the job's output
#           directory (writable: job.sh in; stdout, stderr, exit-code and whatever the job writes
#           to $STRATA_VM_OUT out); no network card (test traffic stays in namespaces inside)
#   console the serial console on qemu's stdout; panic=-1 + -no-reboot: a panic ends qemu
#
# Cached outside the checkout, each part keyed by what goes into it (a warm `build` is ~0.6 s):
#   $CACHE/vm-apt-<hash>/             the apt configuration, lists and .debs (key: the sources)
#   $CACHE/vm-rootfs-<hash>/rootfs/   (key: the package list and recipe)
#   $CACHE/vm-kernel-<id>-<hash>/     vmlinuz, config, lib/modules/<release>, initrd-<hash>.img
# CACHE is /var/cache/strata (STRATA_CACHE_DIR). Installs on the host, through apt:
# qemu-system-x86, kmod (depmod), cpio, mmdebstrap. Needs root (mmdebstrap, 9p passthrough).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE_ROOT=${STRATA_CACHE_DIR:-/var/cache/strata}

log() { printf '[vm] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
# shellcheck source=scripts/apt.sh
source scripts/apt.sh

# id, suite, the meta package that picks the version there (the newest when first built)
KERNELS=(
  '5.10 bullseye-security linux-image-amd64'
  '6.1 bookworm-security linux-image-amd64'
  '6.12 bookworm-security linux-image-6.12-amd64'
  '7.x trixie-backports linux-image-amd64'
)
HOST_PKGS=(qemu-system-x86 kmod cpio mmdebstrap)
ROOTFS_PKGS=(openvswitch-switch iproute2 bpftool libbpf1 libelf1 zlib1g libstdc++6 busybox-static kmod
  procps ethtool iputils-ping)
# what the initramfs loads to reach the rootfs (dependencies come from modules.dep)
INITRD_MODULES=(virtio_pci virtio_rng 9pnet_virtio 9p overlay)
INIT_FILES=(scripts/vm/init-initramfs.sh scripts/vm/init-guest.sh)

CLEANUP=()
cleanup() { [ ${#CLEANUP[@]} -eq 0 ] || rm -rf "${CLEANUP[@]}"; }
trap cleanup EXIT

hash12() { sha256sum | cut -c1-12; }
# "suite meta-package" of a kernel id
kernel_recipe() {
  local k
  for k in "${KERNELS[@]}"; do
    if [ "${k%% *}" = "$1" ]; then
      echo "${k#* }"
      return
    fi
  done
  die "unknown kernel '$1' (known: $(kernel_ids | tr '\n' ' '))"
}
kernel_ids() {
  local k
  for k in "${KERNELS[@]}"; do echo "${k%% *}"; done
}

# --- host tools ----------------------------------------------------------------------------------
ensure_host_pkgs() {
  local missing=() p
  for p in "${HOST_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt_retry apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt_retry apt-get update -qq && apt_retry apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
}

# --- an apt of our own, for the kernels of other suites ------------------------------------------
apt_conf() {
  cat <<EOF
Dir::Etc "$APT_DIR/etc";
Dir::State "$APT_DIR/state";
Dir::State::status "$APT_DIR/state/status";
Dir::Cache "$APT_DIR/cache";
APT::Architecture "amd64";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
}
apt_sources() {
  local k suite uri
  for k in "${KERNELS[@]}"; do
    suite=${k#* }
    suite=${suite%% *}
    case "$suite" in *-security) uri=http://deb.debian.org/debian-security ;; *) uri=http://deb.debian.org/debian ;; esac
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n' "$uri" "$suite"
  done
}
APT_DIR="$CACHE_ROOT/vm-apt-$( { apt_sources; declare -f apt_conf; } | hash12)"
vm_apt() { APT_CONFIG="$APT_DIR/apt.conf" "$@"; }
apt_init() {
  [ -f "$APT_DIR/apt.conf" ] && return
  mkdir -p "$APT_DIR"/etc/{sources.list.d,preferences.d,apt.conf.d,trusted.gpg.d} "$APT_DIR"/state/lists/partial \
    "$APT_DIR"/cache/archives/partial
  : >"$APT_DIR/state/status"
  : >"$APT_DIR/etc/sources.list"
  apt_sources >"$APT_DIR/etc/sources.list.d/strata-vm.sources"
  apt_conf >"$APT_DIR/apt.conf.tmp"
  mv "$APT_DIR/apt.conf.tmp" "$APT_DIR/apt.conf"
}
apt_lists_fresh=
apt_update() {
  [ -n "$apt_lists_fresh" ] && return
  log "apt-get update (own lists in $APT_DIR)"
  apt_retry vm_apt apt-get update -qq >&2
  apt_lists_fresh=1
}
# apt-get download in the current directory; lists refreshed once when a package is not found
# (never fetched yet, or a security update replaced it)
apt_download() {
  vm_apt apt-get download -qq "$@" >&2 2>/dev/null && return
  apt_update
  vm_apt apt-get download -qq "$@" >&2
}

# --- the rootfs ----------------------------------------------------------------------------------
build_rootfs() {
  local out=$1
  # merged /usr made by the hook (no usrmerge package, no perl); eatmydata skips dpkg's fsyncs;
  # no docs, man pages or locales
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${ROOTFS_PKGS[*]}")" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    --customize-hook='echo strata-vm >"$1"/etc/hostname' \
    bookworm "$out" 'deb http://deb.debian.org/debian bookworm main' \
    'deb http://deb.debian.org/debian-security bookworm-security main' >&2
}
ROOTFS_KEY=$( { declare -f build_rootfs; echo "${ROOTFS_PKGS[*]}"; } | hash12)
ROOTFS="$CACHE_ROOT/vm-rootfs-$ROOTFS_KEY/rootfs"

# --- a kernel ------------------------------------------------------------------------------------
# the meta package of the suite (linux-image-amd64, linux-image-6.12-amd64) -> linux-image-<abi>-amd64
# (=version); from 7.x that one is a shell depending on linux-binary-*, linux-modules-* and
# linux-base-* of the same ABI
fetch_kernel() {
  local id=$1 suite=$2 metapkg=$3 out=$4 tmp meta image img parts d rel mods
  tmp=$(mktemp -d "$CACHE_ROOT/vm-tmp.XXXXXX")
  CLEANUP+=("$tmp")
  mkdir "$tmp/debs" "$tmp/x"
  (cd "$tmp/debs" && apt_download "$metapkg/$suite")
  meta=$(echo "$tmp/debs/${metapkg}"_*.deb)
  image=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[0-9][^ ]*\) (= \([^)]*\)).*/\1=\2/p')
  [ -n "$image" ] || die "$suite: $metapkg names no kernel image ($(dpkg-deb -f "$meta" Depends))"
  rm "$meta"
  (cd "$tmp/debs" && apt_download "$image")
  img=$(echo "$tmp/debs/${image%%=*}"_*.deb)
  parts=$(dpkg-deb -f "$img" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-\(binary\|modules\|base\)-[0-9][^ ]*\) (= \([^)]*\)).*/\1=\3/p')
  # shellcheck disable=SC2086 # one package per word
  [ -z "$parts" ] || (cd "$tmp/debs" && apt_download $parts)
  for d in "$tmp"/debs/*.deb; do dpkg-deb -x "$d" "$tmp/x"; done
  mkdir -p "$tmp/k/lib/modules"
  mods=$(echo "$tmp"/x/lib/modules/* "$tmp"/x/usr/lib/modules/*)
  for d in $mods; do [ -d "$d" ] && mv "$d" "$tmp/k/lib/modules/"; done
  rel=$(basename "$(echo "$tmp"/k/lib/modules/*)")
  # /boot/vmlinuz-<release> until 6.12; from 7.x in the modules directory
  for f in vmlinuz config; do
    for d in "$tmp/x/boot/$f-$rel" "$tmp/k/lib/modules/$rel/$f" ''; do [ -z "$d" ] || [ -f "$d" ] && break; done
    [ -n "$d" ] || die "$suite: no $f for $rel in $(ls "$tmp"/debs | paste -sd' ')"
    mv "$d" "$tmp/k/$f"
  done
  echo "$rel" >"$tmp/k/release"
  for d in "$tmp"/debs/*.deb; do dpkg-deb -W --showformat='${Package}=${Version}\n' "$d"; done >"$tmp/k/packages"
  # Debian's postinst would run depmod: modprobe in the guest needs modules.dep
  depmod -b "$tmp/k" "$rel"
  mv "$tmp/k" "$out"
  rm -rf "$tmp"
  log "kernel $id: $rel ($(paste -sd, "$out/packages"))"
}

# the modules (and their dependencies, from modules.dep) to insmod, in load order, as
# "name path" lines; a module built into the kernel needs nothing
mod_order() {
  local dir=$1
  shift
  awk -v want="$*" '
    function norm(p, b) { b = p; sub(/.*\//, "", b); sub(/\.ko.*$/, "", b); gsub(/-/, "_", b); return b }
    # modules.dep lists the whole closure of a module; modprobe loads it from the end
    function visit(m, d, k, nd) {
      if (m in seen) return
      seen[m] = 1
      if (m in builtin) return
      if (!(m in path)) { print "module " m ": neither in modules.dep nor built in" > "/dev/stderr"; bad = 1; return }
      nd = split(deps[m], d, " ")
      for (k = nd; k >= 1; k--) visit(norm(d[k]))
      print m, path[m]
    }
    FILENAME ~ /modules\.builtin$/ { builtin[norm($0)] = 1; next }
    { p = $1; sub(/:$/, "", p); n = norm(p); path[n] = p; $1 = ""; deps[n] = $0 }
    END { nw = split(want, w, " "); for (i = 1; i <= nw; i++) visit(w[i]); exit bad }
  ' "$dir/modules.builtin" "$dir/modules.dep"
}

build_initrd() {
  local kdir=$1 out=$2 tmp rel bb m p order
  rel=$(cat "$kdir/release")
  tmp=$(mktemp -d "$CACHE_ROOT/vm-tmp.XXXXXX")
  CLEANUP+=("$tmp")
  mkdir -p "$tmp"/{bin,dev,proc,sys,lib/modules}
  bb=$ROOTFS/usr/bin/busybox
  [ -x "$bb" ] || bb=$ROOTFS/bin/busybox
  [ -x "$bb" ] || die "no busybox in $ROOTFS"
  cp "$bb" "$tmp/bin/busybox"
  : >"$tmp/modules.load"
  order=$(mod_order "$kdir/lib/modules/$rel" "${INITRD_MODULES[@]}")
  # decompressed here: busybox's insmod takes plain .ko files
  while read -r m p; do
    case "$p" in
      *.xz) xz -dc "$kdir/lib/modules/$rel/$p" ;;
      *.zst) zstd -qdc "$kdir/lib/modules/$rel/$p" ;;
      *.gz) gzip -dc "$kdir/lib/modules/$rel/$p" ;;
      *) cat "$kdir/lib/modules/$rel/$p" ;;
    esac >"$tmp/lib/modules/$m.ko"
    echo "$m" >>"$tmp/modules.load"
  done <<<"$order"
  install -m 0755 scripts/vm/init-initramfs.sh "$tmp/init"
  install -m 0755 scripts/vm/init-guest.sh "$tmp/strata-init"
  (cd "$tmp" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -1) >"$out.tmp"
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

kernel_dir() { echo "$CACHE_ROOT/vm-kernel-$1-$( { declare -f fetch_kernel; kernel_recipe "$1"; } | hash12)"; }
INITRD_KEY=$( { declare -f build_initrd mod_order; echo "${INITRD_MODULES[*]} $ROOTFS_KEY"; cat "${INIT_FILES[@]}"; } | hash12)
initrd_path() { echo "$(kernel_dir "$1")/initrd-$INITRD_KEY.img"; }

# keep the newest few of each kind: older ones are other checkouts' recipes or stale
prune() {
  # none yet (a fresh machine): ls fails, which pipefail and set -e would make the build's failure
  { ls -1dt "$CACHE_ROOT"/$1 2>/dev/null || true; } | tail -n +$(($2 + 1)) | xargs -r rm -rf
}

# --- build ---------------------------------------------------------------------------------------
build_ready() {
  local k
  [ -d "$ROOTFS" ] || return 1
  for k in "$@"; do [ -f "$(initrd_path "$k")" ] || return 1; done
}
build() {
  local k kdir start
  [ $# -gt 0 ] || set -- $(kernel_ids)
  for k in "$@"; do kernel_recipe "$k" >/dev/null; done
  if ! build_ready "$@" || ! command -v qemu-system-x86_64 >/dev/null; then
    [ "$(id -u)" = 0 ] || die "building the VM needs root"
    mkdir -p "$CACHE_ROOT"
    exec 9>"$CACHE_ROOT/vm-build.lock"
    flock 9
    ensure_host_pkgs
    if [ ! -d "$ROOTFS" ]; then
      start=$(date +%s)
      log "rootfs: mmdebstrap bookworm minbase + ${ROOTFS_PKGS[*]}"
      mkdir -p "$(dirname "$ROOTFS")"
      CLEANUP+=("$ROOTFS.tmp")
      rm -rf "$ROOTFS.tmp"
      build_rootfs "$ROOTFS.tmp"
      mv "$ROOTFS.tmp" "$ROOTFS"
      log "rootfs built in $(($(date +%s) - start)) s: $(du -sh "$ROOTFS" | cut -f1)"
      prune 'vm-rootfs-????????????' 3
    fi
    for k in "$@"; do
      kdir=$(kernel_dir "$k")
      if [ ! -f "$kdir/release" ]; then
        start=$(date +%s)
        [ -d "$APT_DIR" ] || prune 'vm-apt-????????????' 2
        apt_init
        rm -rf "$kdir"
        # shellcheck disable=SC2046 # suite and meta package
        fetch_kernel "$k" $(kernel_recipe "$k") "$kdir"
        log "kernel $k fetched in $(($(date +%s) - start)) s: $(du -sh "$kdir" | cut -f1)"
        prune "vm-kernel-$k-????????????" 3
      fi
      if [ ! -f "$(initrd_path "$k")" ]; then
        build_initrd "$kdir" "$(initrd_path "$k")"
        find "$kdir" -maxdepth 1 -name 'initrd-*.img' ! -name "initrd-$INITRD_KEY.img" -delete
      fi
    done
  fi
  for k in "$@"; do
    kdir=$(kernel_dir "$k")
    printf '%s\t%s\t%s\n' "$k" "$(cat "$kdir/release")" "$kdir"
  done
}

# --- run -----------------------------------------------------------------------------------------
run() {
  local k=${1:?usage: vm.sh run KERNEL [--script FILE | -c CMD] [--out DIR] [--timeout S] [--mem MiB] [--smp N]}
  shift
  local script= cmd= out= limit=0 mem=2048 smp=1 append= kdir
  while [ $# -gt 0 ]; do
    case "$1" in
      --script) script=$2; shift 2 ;;
      -c) cmd=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      --timeout) limit=$2; shift 2 ;;
      --mem) mem=$2; shift 2 ;;
      --smp) smp=$2; shift 2 ;;
      --append) append=$2; shift 2 ;;
      *) die "run: unknown argument $1" ;;
    esac
  done
  [[ $limit =~ ^[0-9]+$ ]] || die "run: --timeout takes whole seconds (got $limit)"
  build "$k" >/dev/null
  kdir=$(kernel_dir "$k")
  if [ -z "$out" ]; then
    out=$(mktemp -d /tmp/strata-vm-out.XXXXXX)
    log "output in $out"
  fi
  mkdir -p "$out"
  rm -f "$out/job.sh" "$out/exit-code" "$out/stdout" "$out/stderr"
  if [ -n "$script" ]; then
    cp "$script" "$out/job.sh"
  elif [ -n "$cmd" ]; then
    printf '%s\n' "$cmd" >"$out/job.sh"
  fi
  local share=security_model=none,multidevs=remap
  local console=(-display none -serial stdio -monitor none)
  [ -f "$out/job.sh" ] || console=(-nographic -serial mon:stdio)
  # -nodefaults: no network card, no VGA, no disks; panic=-1 with -no-reboot: a panic ends qemu.
  # mitigations=off: page-table isolation and friends cost TCG dearly and test nothing here.
  exec qemu-system-x86_64 -nodefaults -no-user-config -machine pc,accel=tcg -cpu max -smp "$smp" -m "$mem" \
    "${console[@]}" -no-reboot \
    -kernel "$kdir/vmlinuz" -initrd "$(initrd_path "$k")" \
    -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off strata.kernel=$k strata.timeout=$limit strata.project=$ROOT $append" \
    -device virtio-rng-pci \
    -virtfs "local,path=$ROOTFS,mount_tag=rootfs,readonly=on,$share" \
    -virtfs "local,path=$kdir,mount_tag=kernel,readonly=on,$share" \
    -virtfs "local,path=$ROOT,mount_tag=project,readonly=on,$share" \
    -virtfs "local,path=$out,mount_tag=out,$share"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  run) shift; run "$@" ;;
  kernels) kernel_ids ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
