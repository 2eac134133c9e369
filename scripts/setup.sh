#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 machine (as root): Debian packages, tracefs, npm deps,
# native addon + BPF objects. Used by both README commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# openvswitch-switch: the cluster lab's OVS node (userspace datapath; its service is never started:
# lab/cluster/ovs.ts runs ovsdb-server and ovs-vswitchd itself, inside the node's netns)
APT_PKGS=(clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make g++ python3
  iproute2 ethtool iputils-ping curl nginx nftables procps prometheus kubernetes-client
  wrk hey iperf3 util-linux openvswitch-switch)

log() { printf '[setup] %s\n' "$*"; }

source scripts/apt.sh

# kubernetes-client is Debian's kubectl 1.20 (kustomize v2.0.3): test/unit/manifests.test.ts renders
# manifests/ with it. When /usr/bin/kubectl is someone else's (another package, e.g. the Google
# Cloud SDK's "kubectl", or a file dpkg knows nothing of), dpkg would refuse to overwrite it or
# silently replace it: the Debian package is unpacked under /var/cache/strata instead, where the
# test looks first.
DEBIAN_KUBECTL_DIR=/var/cache/strata/kubernetes-client
kubectl_owner=$(dpkg-query -S /usr/bin/kubectl 2>/dev/null | cut -d: -f1 || true)
if [ -e /usr/bin/kubectl ] && [ "$kubectl_owner" != kubernetes-client ]; then
  APT_PKGS=("${APT_PKGS[@]/kubernetes-client}")
  if [ ! -x "$DEBIAN_KUBECTL_DIR/usr/bin/kubectl" ]; then
    log "/usr/bin/kubectl belongs to ${kubectl_owner:-no package}: unpacking Debian's kubernetes-client into $DEBIAN_KUBECTL_DIR"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    (cd "$tmp" && { apt-get download -qq kubernetes-client 2>/dev/null || { apt_retry apt-get update -qq && apt_retry apt-get download -qq kubernetes-client; }; })
    mkdir -p "$DEBIAN_KUBECTL_DIR"
    dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$DEBIAN_KUBECTL_DIR"
    rm -rf "$tmp"
  fi
fi

missing=()
for p in "${APT_PKGS[@]}"; do
  [ -n "$p" ] || continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  apt_retry apt-get update -qq
  apt_retry apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  log "Debian packages present"
fi

# Tracepoint attach needs tracefs (or debugfs); mount it when absent.
if [ ! -e /sys/kernel/tracing/events ]; then
  if mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null; then
    log "mounted tracefs at /sys/kernel/tracing"
  else
    log "warning: could not mount tracefs; tracepoint probes will not attach"
  fi
fi
# BPF filesystem is not required today, but mount it like a node would have it.
if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi

# npm deps (devDependency `node` pins Node 24 for every npm script); `npm ci` also builds the
# addon and the BPF objects through the package's install script.
addon=build/Release/strata_native.node
if [ ! -f node_modules/.strata-installed ] || [ package-lock.json -nt node_modules/.strata-installed ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
  touch node_modules/.strata-installed
elif [ ! -f "$addon" ] || [ -n "$(find bpf native binding.gyp -newer "$addon" -type f 2>/dev/null | head -1)" ]; then
  log "building native addon and BPF objects"
  npm run --silent build >/dev/null
fi
[ -f "$addon" ] || { log "error: $addon was not built"; exit 1; }

# The real single-node Kubernetes (test/integration/k8s-*.test.ts, lab/k8s/): its binaries from
# Debian's kubernetes source package, the agent's image and the lab's NGINX image. All are cached
# outside the checkout (/var/cache/strata), keyed by their inputs: a warm call is a no-op (~1 s
# together); a cold k8s build takes ~10 min on 2 cores, a cold image ~1-3 min each. A failure here
# does not stop the other tests: the k8s tests then fail under CI=true, saying what is missing.
if ! bash scripts/k8s-build.sh >/dev/null; then
  log "warning: scripts/k8s-build.sh failed: the real-cluster tests cannot run"
fi
for target in agent nginx; do
  if ! bash scripts/image.sh "$target" >/dev/null; then
    log "warning: scripts/image.sh $target failed: the real-cluster tests cannot run"
  fi
done
log "ready: $(npm exec --silent -- node -v)"
