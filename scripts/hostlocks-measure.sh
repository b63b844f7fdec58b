#!/bin/bash
# Run as root: scripts/hostlocks-measure.sh ./spillway [N_DISCARDED] [N_PERSISTED] (docs/design.md "Locks").
# Times `open b` while `close a` of N files runs on the same root.
set -e
BIN=$1; N=${2:-200000}; P=${3:-2000}
R=$(mktemp -d /tmp/hlmeasure.XXXX)
export SPILLWAY_ROOT=$R/state SPILLWAY_NO_PROGRESS=1
mkdir -p $R/rootfs/bin $R/rootfs/home/user/Documents $R/rootfs/tmp
cp /bin/busybox $R/rootfs/bin/
$BIN image import base $R/rootfs >/dev/null
for s in a b; do
  $BIN create $s --image base >/dev/null
  $BIN exception add $s '/home/user/Documents/**' --reason docs >/dev/null
done
$BIN open a >/dev/null
M=$R/state/mnt/a
mkdir -p $M/tmp/junk
(cd $M/tmp/junk && seq 1 $N | xargs touch)
(cd $M/home/user/Documents && for i in $(seq 1 $P); do echo "doc $i" > d$i; done)
$BIN open b >/dev/null; $BIN close b >/dev/null
sync
t0=$(date +%s.%N)
$BIN close a >/dev/null 2>&1 &
CP=$!
sleep 0.5
t1=$(date +%s.%N)
$BIN open b >/dev/null
t2=$(date +%s.%N)
wait $CP
t3=$(date +%s.%N)
echo "open b: $(echo "$t2 - $t1" | bc) s (started 0.5 s into close a); close a: $(echo "$t3 - $t0" | bc) s"
$BIN close b >/dev/null
umount -l $R/state/mnt/* 2>/dev/null || true
rm -rf $R
