#!/usr/bin/env bash
# Builds the root Dockerfile on this machine, which has no Docker engine and no registry access:
# buildah (Debian's) with its storage under /var/lib/sk8-buildah, and the Dockerfile's base images
# (debian:bookworm, debian:bookworm-slim) made locally from scripts/image.sh's mmdebstrap rootfs,
# so nothing is pulled. The result is exported as a docker-archive tagged strata:dev; run the
# real-cluster test with it:
#   STRATA_IMAGE_ARCHIVE=$(bash scripts/dockerfile-check.sh) CI=true node --test test/integration/k8s-rollout.test.ts
# Not part of .ci/run (~4-5 min cold: the builder installs clang and npm, npm ci downloads the
# dependencies). The host's CA bundle is mounted for the RUN steps and npm is pointed at it, so npm
# works behind a TLS-intercepting proxy (as on this machine); elsewhere that changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE_ROOT=${STRATA_CACHE_DIR:-/var/cache/strata}
STORE=(--root /var/lib/sk8-buildah --runroot /run/sk8-buildah --storage-driver vfs)
log() { printf '[dockerfile] %s\n' "$*" >&2; }

command -v buildah >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah >&2
# the rootfs scripts/image.sh caches (it builds it when missing)
bash scripts/image.sh >/dev/null
base=$(ls -t "$CACHE_ROOT"/image-base-*/rootfs.tar | head -1)

if ! buildah "${STORE[@]}" inspect --type image docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
  log "local debian:bookworm and debian:bookworm-slim from $base"
  ctr=$(buildah "${STORE[@]}" from scratch)
  buildah "${STORE[@]}" add "$ctr" "$base" / >/dev/null
  buildah "${STORE[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah "${STORE[@]}" commit -q "$ctr" docker.io/library/debian:bookworm >/dev/null
  buildah "${STORE[@]}" tag docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim
  buildah "${STORE[@]}" rm "$ctr" >/dev/null
fi

tmp=$(mktemp -d)
# buildah's vfs storage grows to ~7 GB over this build: removed afterwards unless
# STRATA_BUILDAH_KEEP=1 (then a rerun reuses the builder's layers)
cleanup() {
  rm -rf "$tmp"
  if [ "${STRATA_BUILDAH_KEEP:-0}" != 1 ]; then
    buildah "${STORE[@]}" rm --all >/dev/null 2>&1 || true
    buildah "${STORE[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf /var/lib/sk8-buildah /run/sk8-buildah
  fi
}
trap cleanup EXIT
printf 'cafile=/host-ca.crt\n' >"$tmp/npmrc"
start=$(date +%s)
log "buildah bud (Dockerfile)"
nice -n 10 buildah "${STORE[@]}" bud --pull-never --isolation chroot --network host --layers \
  -v "$tmp/npmrc:/root/.npmrc:ro" -v /etc/ssl/certs/ca-certificates.crt:/host-ca.crt:ro \
  -t localhost/strata:dockerfile . >&2
out="$CACHE_ROOT/dockerfile/strata.tar"
mkdir -p "$(dirname "$out")"
rm -f "$out"
buildah "${STORE[@]}" push -q localhost/strata:dockerfile "docker-archive:$out:strata:dev"
log "built in $(( $(date +%s) - start )) s: $(du -h "$out" | cut -f1)"
echo "$out"
