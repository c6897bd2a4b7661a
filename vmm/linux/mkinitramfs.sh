#!/bin/sh
# mkinitramfs.sh BUSYBOX GMWORK INIT_SH GMINIT OUT — a newc cpio: /init is
# gminit (freestanding, int $0x80 system calls: see gminit.c for why);
# busybox-static (with the applets init.sh uses), gmwork and init.sh, the
# busybox init for machines whose KVM runs user-mode SYSCALL, are in it
# too (rdinit=/init.sh). Not compressed: under kvm_pvm the kernel's inflate
# runs in the emulator (tens of seconds for a few MB), a copy does not.
# OUT ending in .gz is gzip'd.
set -eu
busybox=$1 gmwork=$2 init=$3 gminit=$4 out=$5
stage=$out.d
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/proc" "$stage/dev" "$stage/sys"
cp "$busybox" "$stage/bin/busybox"
for a in sh mount cut poweroff cat echo; do ln -s busybox "$stage/bin/$a"; done
cp "$gmwork" "$stage/bin/gmwork"
cp "$init" "$stage/init.sh"
cp "$gminit" "$stage/init"
chmod 755 "$stage/init" "$stage/init.sh" "$stage/bin/busybox" "$stage/bin/gmwork"
case $out in
  *.gz) (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$out.tmp" ;;
  *) (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) > "$out.tmp" ;;
esac
mv "$out.tmp" "$out"
rm -rf "$stage"
