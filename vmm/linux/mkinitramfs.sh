#!/bin/sh
# mkinitramfs.sh BUSYBOX GMWORK INIT OUT — a gzip'd newc cpio of busybox
# (with the applets init uses), the workload and init.
set -eu
busybox=$1 gmwork=$2 init=$3 out=$4
stage=$out.d
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/proc" "$stage/dev" "$stage/sys"
cp "$busybox" "$stage/bin/busybox"
for a in sh mount cut poweroff cat echo; do ln -s busybox "$stage/bin/$a"; done
cp "$gmwork" "$stage/bin/gmwork"
cp "$init" "$stage/init"
chmod 755 "$stage/init" "$stage/bin/busybox" "$stage/bin/gmwork"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 > "$out.tmp"
mv "$out.tmp" "$out"
rm -rf "$stage"
