#!/bin/sh
# PID 1 of the guest (the initramfs mounted what a node has and switched root into the overlay):
# runs the job the host left in the output share (scripts/vm.sh run); its stdout, stderr and exit
# code go back there. Without a job: a shell on the console. Then power off (Debian's minbase has
# no poweroff of its own: busybox's).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8

out=/mnt/out
project=
kernel=
limit=0
for a in $(cat /proc/cmdline); do
  case "$a" in
    strata.project=*) project=${a#*=} ;;
    strata.kernel=*) kernel=${a#*=} ;;
    strata.timeout=*) limit=${a#*=} ;;
  esac
done
export STRATA_VM=1 STRATA_VM_OUT=$out STRATA_VM_KERNEL=$kernel
echo "strata-vm: guest up at $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r)" >/dev/console
cd "${project:-/}"
if [ -f "$out/job.sh" ]; then
  # a deadline of the guest's own: a VM whose host side died still powers off (timeout's 124)
  if [ "$limit" -gt 0 ]; then
    timeout -k 5 "$limit" sh "$out/job.sh" >"$out/stdout" 2>"$out/stderr" </dev/null
  else
    sh "$out/job.sh" >"$out/stdout" 2>"$out/stderr" </dev/null
  fi
  echo $? >"$out/exit-code.tmp"
  mv "$out/exit-code.tmp" "$out/exit-code"
  echo "strata-vm: job exited $(cat "$out/exit-code") at $(cut -d' ' -f1 /proc/uptime) s" >/dev/console
else
  setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'
fi
sync
umount "$out"
busybox poweroff -f
