#!/bin/bash
# Run as root: scripts/locks-import-export-measure.sh ./spillway (docs/design.md "Locks").
# Times `open b` beside an import of another image (20,000 small files) and
# beside `persisted export docs / -` whose reader stalls 5 s.
set -e
S=$1
W=$(mktemp -d /tmp/lxmeasure.XXXX)
mkdir -p $W/img/home/user/Documents $W/img/etc $W/big
echo hi > $W/img/etc/hostname
for d in $(seq 40); do
  mkdir $W/big/d$d
  for i in $(seq 500); do echo "file $d $i" > $W/big/d$d/f$i; done
done
export SPILLWAY_ROOT=$W/state SPILLWAY_NO_PROGRESS=1
$S image import base $W/img >/dev/null
for sb in docs b; do
  $S create $sb --image base >/dev/null
  $S exception add $sb '/home/user/Documents/**' --reason m >/dev/null
done
m=$($S open docs); head -c 8000000 /dev/urandom > $m/home/user/Documents/big.bin; $S close docs >/dev/null
now() { date +%s.%N; }
s0=$(now); $S image import big $W/big >/dev/null & ip=$!
sleep 0.5
t0=$(now); $S open b >/dev/null; t1=$(now)
wait $ip; s1=$(now)
$S close b >/dev/null
echo "import of 20,000 files: $(echo "$s1 - $s0" | bc) s; open b beside it: $(echo "$t1 - $t0" | bc) s"
($S persisted export docs / - | (sleep 5; cat >/dev/null)) & ep=$!
sleep 0.5
t0=$(now); $S open b >/dev/null; t1=$(now)
wait $ep
$S close b >/dev/null
echo "open b beside an export whose reader stalls 5 s: $(echo "$t1 - $t0" | bc) s"
t0=$(now); $S open b >/dev/null; t1=$(now); $S close b >/dev/null
echo "open b alone: $(echo "$t1 - $t0" | bc) s"
rm -rf $W
