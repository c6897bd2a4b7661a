#!/bin/sh
# /init.sh of the gm-linuxboot initramfs (rdinit=/init.sh where user-mode
# SYSCALL works; /init is gminit): proc, the workload, power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "init: busybox init.sh up after $(/bin/busybox cut -d" " -f1 /proc/uptime) s, running gmwork"
/bin/gmwork
echo "init: gmwork exited with $?, powering off"
/bin/busybox poweroff -f
