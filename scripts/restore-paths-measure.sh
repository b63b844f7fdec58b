#!/bin/bash
# restore-paths-measure.sh [BINARY]: the time of a `recover restore` that
# names 1,500 paths one by one, with three sessions of 1,500 refused files
# each in the recovery area (docs/benchmarks.md, "Restoring many paths
# named one by one"). BINARY defaults to a build of this checkout.
set -euo pipefail
S=${1:-}
W=$(mktemp -d)
trap 'umount -R "$W/root" 2>/dev/null || true; rm -rf "$W"' EXIT
if [ -z "$S" ]; then
	S=$W/spillway
	go build -o "$S" ./cmd/spillway
fi
export SPILLWAY_ROOT=$W/root
mkdir -p "$W/img/etc"
echo hi >"$W/img/etc/hostname"
"$S" image import base "$W/img" >/dev/null
"$S" create docs --image base >/dev/null
"$S" exception add docs '/data/**' --max-file-size 1B --reason measure >/dev/null
for s in 1 2 3; do
	m=$("$S" open docs)
	mkdir -p "$m/data/s$s"
	for i in $(seq 1500); do echo "$i" >"$m/data/s$s/f$i"; done
	"$S" close docs >/dev/null 2>&1
done
mapfile -t paths < <(for i in $(seq 1500); do echo "/data/s3/f$i"; done)
/usr/bin/time -f "recover restore of 1,500 paths named one by one: %e s elapsed, %U s user" \
	"$S" recover restore docs "${paths[@]}" --reason measure --force >/dev/null
