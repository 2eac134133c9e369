#!/usr/bin/env bash
# The single-node cluster's binaries, built from Debian bookworm's own `kubernetes` source package
# (upstream v1.20.2 with vendor/) with golang-1.19-go, exactly as ../shared/platform.md recorded
# it working on this machine: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
# kube-proxy, plus a static pause binary (the sandbox image's only file). Installed into a cache
# outside the checkout, keyed by its inputs:
#   /var/cache/strata/k8s-<source version>-<hash of this recipe + Go version>/bin/
# Also installs what the node runs (etcd-server, containerd, runc, containernetworking-plugins)
# and what scripts/image.sh uses (mmdebstrap, umoci, skopeo) through apt, idempotently.
#
#   bash scripts/k8s-build.sh          build if missing; the cache dir is the last line on stdout
#   bash scripts/k8s-build.sh --dir    print the cache dir if it is complete, else exit 1 (no work)
#
# A warm call is a few dpkg/apt-cache look-ups (well under a second). A cold build is ~10 min on 2
# cores (it runs under nice); the Go build cache and the source tree (~2.5 GB) are deleted after a
# successful install (STRATA_K8S_KEEP_WORK=1 keeps them under <cache>/k8s-work).
set -euo pipefail
SCRIPT=$(readlink -f "$0")
CACHE_ROOT=${STRATA_CACHE_DIR:-/var/cache/strata}
SRC_LIST=/etc/apt/sources.list.d/strata-k8s-src.sources

log() { printf '[k8s-build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

# Build tools and the node's runtime. containerd and etcd are run directly by the cluster helper
# (test/helpers/k8s-cluster.ts); no systemd here, so installing them starts nothing.
PKGS=(golang-1.19-go golang-github-modern-go-reflect2-dev rsync make gcc libc6-dev dpkg-dev
  etcd-server containerd runc containernetworking-plugins mmdebstrap umoci skopeo)

ensure_packages() {
  local missing=() p st
  # one dpkg-query for the lot: the warm path must stay fast
  st=$(dpkg-query -W -f='${Package} ${Status}\n' "${PKGS[@]}" 2>/dev/null || true)
  for p in "${PKGS[@]}"; do
    grep -q "^$p install ok installed$" <<<"$st" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt_retry apt-get update -qq
    apt_retry apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

# The deb-src entry lives in its own file, so the system's sources stay as they were.
ensure_deb_src() {
  if [ ! -f "$SRC_LIST" ]; then
    log "adding deb-src for bookworm main in $SRC_LIST"
    cat >"$SRC_LIST" <<'EOF'
# added by strata scripts/k8s-build.sh: Debian's kubernetes source package (deb-src only)
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_retry apt-get update -qq
  fi
}

source_version() {
  local v
  v=$(apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -1)
  if [ -z "$v" ]; then
    apt_retry apt-get update -qq
    v=$(apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -1)
  fi
  [ -n "$v" ] || die "apt-cache showsrc kubernetes found nothing (is $SRC_LIST there and apt-get update done?)"
  printf '%s' "$v"
}

# Inputs: the source package's version, the recipe (build_recipe as bash prints it back:
# comments do not count), the binaries' list, the Go toolchain's version.
cache_dir() {
  local ver go key
  ver=$(source_version)
  go=$(dpkg-query -W -f='${Version}' golang-1.19-go 2>/dev/null || echo none)
  key=$( { declare -f build_recipe; echo "${BINS[*]}"; echo "$go"; } | sha256sum | cut -c1-12)
  # '+' and '~' are fine in a path; ':' (an epoch) is not wanted
  printf '%s/k8s-%s-%s' "$CACHE_ROOT" "${ver//:/_}" "$key"
}

build_recipe() {
  local VER=$1 DIR=$2
  WORK="$CACHE_ROOT/k8s-work"
  start=$(date +%s)
  log "cold build of kubernetes $VER into $DIR (~10 min on 2 cores)"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  chmod 755 "$WORK"   # apt-get source downloads as _apt when it can
  (cd "$WORK" && apt_retry apt-get source -qq "kubernetes=$VER" >&2)
  TREE=$(find "$WORK" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
  [ -n "$TREE" ] || die "apt-get source kubernetes left no tree in $WORK"

  # The vendored reflect2 v1.0.1 reads runtime internals that moved in Go 1.18: every JSON request
  # body then panics in the API server. Debian's 1.0.2 is the fixed one.
  rm -rf "$TREE/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$TREE/vendor/github.com/modern-go/reflect2"
  rm -f "$TREE/vendor/github.com/modern-go/reflect2/go.mod"

  export PATH=/usr/lib/go-1.19/bin:$PATH
  export GO111MODULE=off        # the tree's hack/ scripts build in GOPATH mode; module mode fails
  export CGO_ENABLED=0
  export HOME="$WORK/home"      # go env and the tree's scripts want a writable HOME
  mkdir -p "$HOME"
  cd "$TREE"
  # pkg/generated/openapi/zz_generated.openapi.go is not in the tarball; the other generated files
  # are. `make gen_openapi` builds openapi-gen from the tree and writes it (needs rsync).
  log "make gen_openapi"
  nice -n 10 make gen_openapi >&2
  # hack/make-rules/build.sh: GOPATH under _output/, tags selinux,notest, -s -w, version from the
  # values `git archive` substituted into hack/lib/version.sh (v1.20.2).
  log "building ${BINS[*]}"
  nice -n 10 hack/make-rules/build.sh "${BINS[@]/#/cmd/}" >&2

  # pause: the sandbox image's entrypoint, static so the image needs no libc.
  nice -n 10 gcc -Os -Wall -static -DVERSION=v3.4.1-strata -o _output/pause build/pause/linux/pause.c
  strip _output/pause

  TMP="$DIR.tmp.$$"
  rm -rf "$TMP"
  mkdir -p "$TMP/bin"
  for b in "${BINS[@]}"; do
    install -m 0755 "_output/local/go/bin/$b" "$TMP/bin/$b" 2>/dev/null ||
      install -m 0755 "_output/bin/$b" "$TMP/bin/$b"
  done
  install -m 0755 _output/pause "$TMP/bin/pause"
  {
    echo "source=kubernetes $VER"
    echo "go=$(go version)"
    echo "built=$(date -u +%FT%TZ) in $(( $(date +%s) - start )) s"
    "$TMP/bin/kube-apiserver" --version
  } >"$TMP/BUILDINFO"
  touch "$TMP/.complete"
  rm -rf "$DIR"
  mv "$TMP" "$DIR"
}

# The sandbox ("pause") image: the static pause binary as the only file, packed with umoci and
# turned into a docker-archive with skopeo (no registry, no Docker); the cluster helper imports it
# with `ctr -n k8s.io images import` and names it in containerd's CRI config (sandbox_image).
# Keyed apart from the binaries (images/pause.key) so a change here does not rebuild Kubernetes.
PAUSE_REF=sk8.local/pause:3.4.1
build_pause_image() {
  local DIR=$1 tmp
  tmp=$(mktemp -d)
  umoci init --layout "$tmp/oci" >&2
  umoci new --image "$tmp/oci:pause" >&2
  umoci unpack --image "$tmp/oci:pause" "$tmp/bundle" >&2
  install -m 0755 "$DIR/bin/pause" "$tmp/bundle/rootfs/pause"
  umoci repack --image "$tmp/oci:pause" "$tmp/bundle" >&2
  umoci config --image "$tmp/oci:pause" --os linux --architecture amd64 \
    --config.entrypoint /pause --config.user 65535:65535 --history.created_by "strata k8s-build.sh" >&2
  umoci gc --layout "$tmp/oci" >&2
  mkdir -p "$DIR/images"
  rm -f "$DIR/images/pause.tar"
  skopeo copy -q "oci:$tmp/oci:pause" "docker-archive:$DIR/images/pause.tar:$PAUSE_REF" >&2
  rm -rf "$tmp"
}
pause_key() { declare -f build_pause_image | sha256sum | cut -c1-12; echo "$PAUSE_REF"; }

BINS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

complete() { [ -f "$1/.complete" ] && [ "$(cat "$1/images/pause.key" 2>/dev/null)" = "$(pause_key)" ]; }

# The warm path without apt-cache, dpkg-query or hashing: a memo of the last answer, valid while
# this script, the dpkg database and the apt source lists are unchanged (their mtimes and sizes).
MEMO="$CACHE_ROOT/k8s-build.memo"
stamp() { stat -c '%n %Y %s' "$SCRIPT" /var/lib/dpkg/status /var/lib/apt/lists/*_source_Sources* 2>/dev/null | tr '\n' ' '; }
if [ -f "$MEMO" ]; then
  { IFS= read -r memo_stamp; IFS= read -r memo_dir; } <"$MEMO" || true
  if [ "${memo_stamp:-}" = "$(stamp)" ] && [ -f "${memo_dir:-/nonexistent}/.complete" ] && [ -f "$memo_dir/images/pause.tar" ]; then
    echo "$memo_dir"
    exit 0
  fi
fi
remember() { printf '%s\n%s\n' "$(stamp)" "$1" >"$MEMO.tmp" && mv "$MEMO.tmp" "$MEMO"; }

if [ "${1:-}" = "--dir" ]; then
  dir=$(cache_dir)
  complete "$dir" || exit 1
  remember "$dir"
  echo "$dir"
  exit 0
fi

ensure_packages
ensure_deb_src
DIR=$(cache_dir)
if complete "$DIR"; then
  remember "$DIR"
  echo "$DIR"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/k8s-build.lock"
log "waiting for the build lock ($CACHE_ROOT/k8s-build.lock)"
flock 9
if complete "$DIR"; then echo "$DIR"; exit 0; fi   # built by whoever held the lock

if [ ! -f "$DIR/.complete" ]; then
  VER=$(source_version)
  build_recipe "$VER" "$DIR"
  cd /
  [ "${STRATA_K8S_KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"
  log "built in $(( $(date +%s) - start )) s: $(du -sh "$DIR" | cut -f1) in $DIR"
fi
log "pause image $PAUSE_REF"
build_pause_image "$DIR"
pause_key >"$DIR/images/pause.key"
remember "$DIR"
echo "$DIR"
