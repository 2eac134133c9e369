#!/bin/busybox sh
# PID 1 of the VM's initramfs (scripts/vm.sh packs it with busybox and the kernel's modules).
# Debian builds virtio and 9p as modules, so they are loaded here, in the order scripts/vm.sh
# resolved from the kernel's modules.dep (/modules.load). Then: the rootfs shared read-only over
# 9p as the lower layer of an overlay on tmpfs (every boot starts from the same clean tree), the
# kernel's own modules and config, the project checkout (read-only, at the host's path), the
# writable output share and the file systems a node has (tracefs, debugfs, bpffs, cgroup2) mounted
# into it, here with busybox from RAM (the same mounts from the rootfs cost ~0.2 s each under TCG:
# every binary is read over 9p), and the guest's init (strata-init) started in it.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "strata-vm: $*" >/dev/console; }
fail() { say "initramfs: $*"; poweroff -f; }

for m in $(cat /modules.load); do insmod "/lib/modules/$m.ko" || fail "insmod $m failed"; done

arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1="*) echo "${a#*=}";; esac; done; }
project=$(arg strata.project)
kver=$(uname -r)
# msize: the 8 KiB default makes every read of a 100 MB node binary thousands of round trips;
# cache=loose only on the read-only shares (nobody changes them while the VM runs)
p9=trans=virtio,version=9p2000.L,msize=262144
ro=$p9,ro,cache=loose

mkdir -p /lower /upper /newroot
mount -t 9p -o "$ro" rootfs /lower || fail "mounting the rootfs share failed"
mount -t tmpfs -o mode=0755 tmpfs /upper || fail "tmpfs"
mkdir -p /upper/data /upper/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work /newroot || fail "overlay failed"

mkdir -p /newroot/mnt/kernel /newroot/mnt/out "/newroot/lib/modules/$kver" /newroot/boot
mount -t 9p -o "$ro" kernel /newroot/mnt/kernel || fail "mounting the kernel share failed"
mount --bind "/newroot/mnt/kernel/lib/modules/$kver" "/newroot/lib/modules/$kver" || fail "no modules for $kver"
# bpftool reads the kernel's config from /boot/config-<release>
cp /newroot/mnt/kernel/config "/newroot/boot/config-$kver"
mount -t 9p -o "$p9" out /newroot/mnt/out || fail "mounting the output share failed"
if [ -n "$project" ]; then
  mkdir -p "/newroot$project"
  mount -t 9p -o "$ro" project "/newroot$project" || fail "mounting the project share failed"
fi
cp /strata-init /newroot/sbin/strata-init

r=/newroot
mount -t proc proc $r/proc
mount -t sysfs sysfs $r/sys
mount -t tmpfs -o mode=0755 tmpfs $r/run
mount -t tmpfs -o mode=1777 tmpfs $r/tmp
mount --move /dev $r/dev
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs tmpfs $r/dev/shm
mount -t tracefs tracefs $r/sys/kernel/tracing
mount -t debugfs debugfs $r/sys/kernel/debug
mount -t bpf bpf $r/sys/fs/bpf
mount -t cgroup2 cgroup2 $r/sys/fs/cgroup
hostname strata-vm
ip link set lo up
umount /proc /sys
exec switch_root /newroot /sbin/strata-init
