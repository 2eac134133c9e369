#!/bin/sh
# PID 1 of the guest (the initramfs switched root into the overlay): the mounts a node has
# (tracefs, debugfs, bpffs, cgroup2), loopback up, then the job the host left in the output share
# (scripts/vm.sh run): its stdout, stderr and exit code go back there. Without a job: a shell on
# the console. Then power off (Debian's minbase has no poweroff of its own: busybox's).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tracefs tracefs /sys/kernel/tracing
mount -t debugfs debugfs /sys/kernel/debug
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
hostname strata-vm
ip link set lo up

out=/mnt/out
project=
for a in $(cat /proc/cmdline); do case "$a" in strata.project=*) project=${a#*=};; strata.kernel=*) kernel=${a#*=};; esac; done
export STRATA_VM=1 STRATA_VM_OUT=$out STRATA_VM_KERNEL=$kernel
echo "strata-vm: guest up at $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r)" >/dev/console
cd "${project:-/}"
if [ -f "$out/job.sh" ]; then
  sh "$out/job.sh" >"$out/stdout" 2>"$out/stderr" </dev/null
  echo $? >"$out/exit-code.tmp"
  mv "$out/exit-code.tmp" "$out/exit-code"
  echo "strata-vm: job exited $(cat "$out/exit-code") at $(cut -d' ' -f1 /proc/uptime) s" >/dev/console
else
  setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1'
fi
sync
umount "$out"
busybox poweroff -f
