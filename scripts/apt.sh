# shellcheck shell=bash
# Sourced by scripts/setup.sh and scripts/k8s-build.sh (each defines log): apt-get with retries.
apt_retry() {
  # another process (unattended-upgrades, a parallel job) may hold the dpkg lock for a while
  local i
  for i in $(seq 1 60); do
    if DEBIAN_FRONTEND=noninteractive "$@"; then return 0; fi
    log "apt busy or failed (try $i), retrying in 5 s"
    sleep 5
  done
  return 1
}
