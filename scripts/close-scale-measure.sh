#!/bin/bash
# Run as root: scripts/close-scale-measure.sh ./spillway [./spillway-old] [FILES]
# (docs/fleet.md "Isolation and retries"). Persists FILES (default 20,000)
# documents of 1 KiB in one sandbox, then times 7 closes after a one-file
# edit, alternating the binaries given, against the ledger SPILLWAY_STORE
# names (empty: badger in the root). Prints each close and the medians.
set -e
BINS=("$1")
[ -n "$2" ] && [ -x "$2" ] && BINS+=("$2")
N=${3:-20000}
W=$(mktemp -d)
trap 'rm -rf $W' EXIT
mkdir -p $W/img/home/user/Documents $W/img/etc
echo hi > $W/img/etc/hostname
export SPILLWAY_ROOT=$W/state SPILLWAY_NO_PROGRESS=1 SPILLWAY_BLOBS=dir://$W/blobs
S=${BINS[0]}
$S image import base $W/img >/dev/null
$S create docs --image base >/dev/null
$S exception add docs '/home/user/Documents/**' --reason measure --max-files $((N + 10)) --max-bytes 1GiB >/dev/null
m=$($S open docs)
for d in $(seq 0 $(( (N - 1) / 1000 ))); do
  mkdir -p $m/home/user/Documents/d$d
  for i in $(seq 1000); do
    [ $(( d * 1000 + i )) -le $N ] && head -c 1024 /dev/urandom > $m/home/user/Documents/d$d/f$i
  done
done
t0=$(date +%s.%N); $S close docs >/dev/null; t1=$(date +%s.%N)
echo "first close, $N files: $(echo "$t1 - $t0" | bc) s"
declare -A times
for run in $(seq 7); do
  for b in "${BINS[@]}"; do
    m=$($b open docs)
    echo "edit $run $b" > $m/home/user/Documents/d0/f1
    t0=$(date +%s.%N); $b close docs >/dev/null; t1=$(date +%s.%N)
    d=$(echo "$t1 - $t0" | bc)
    times[$b]="${times[$b]} $d"
    echo "run $run $b: one-file close $d s"
  done
done
for b in "${BINS[@]}"; do
  echo "$b: median of 7 one-file closes $(echo ${times[$b]} | tr ' ' '\n' | sort -n | sed -n 4p) s"
done
