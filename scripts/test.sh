#!/usr/bin/env bash
# Runs Spillway's whole test suite: formatting, vet, staticcheck, and every
# test (real overlay mounts, badger, busybox rootfs, runc). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

if [ "$(id -u)" != 0 ]; then
	echo "test.sh: run as root (the tests mount overlay filesystems)" >&2
	exit 1
fi
need=()
[ -x /bin/busybox ] || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
# The browser tests of `spillway serve` drive Debian's chromium headless.
command -v chromium >/dev/null || need+=(chromium)
# VM tests (cmd/spillway/testdata/vm): QEMU, erofs, a guest kernel, expect.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.erofs >/dev/null || need+=(erofs-utils)
command -v expect >/dev/null || need+=(expect)
command -v lz4 >/dev/null || need+=(lz4)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql) # internal/pgtest: a throwaway cluster
command -v pgbouncer >/dev/null || need+=(pgbouncer) # TestFleetThroughPgBouncer
command -v systemd-analyze >/dev/null || need+=(systemd) # TestFleetAgentUnitVerifies
ls /boot/vmlinuz-*-cloud-amd64 >/dev/null 2>&1 || need+=(linux-image-cloud-amd64)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# A real Debian image for the end-to-end scripts (testdata/debian), built
# once per machine with mmdebstrap (about 4 minutes) and kept in a cache.
debian_tar="${SPILLWAY_DEBIAN_TAR:-/var/cache/spillway-test/debian-stable-minbase.tar}"
if [ ! -s "$debian_tar" ]; then
	if ! command -v mmdebstrap >/dev/null; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
	fi
	echo "building a Debian image for the tests in $debian_tar"
	mkdir -p "$(dirname "$debian_tar")"
	# Check-Valid-Until off: the mirror here may serve Release files past
	# their validity date.
	mmdebstrap --quiet --format=tar --variant=minbase --include=git,sqlite3,python3,vim-tiny \
		--aptopt='Acquire::Check-Valid-Until "false"' \
		stable "$debian_tar.tmp" "deb http://deb.debian.org/debian stable main"
	mv "$debian_tar.tmp" "$debian_tar"
fi
export SPILLWAY_DEBIAN_TAR="$debian_tar"
# Every tool the tests need is installed above: nothing may skip.
export SPILLWAY_TEST_ALL=1

echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
	echo "gofmt needed on:"; echo "$bad"; exit 1
fi
echo "== go vet"
go vet ./...
echo "== import direction"
bash scripts/check-imports.sh
echo "== bench patches (scripts/pg-server-share.sh applies them)"
for p in bench/patches/*.patch; do
	git apply --check "$p" || { echo "$p no longer applies to this tree: regenerate it (docs/benchmarks.md, \"The server's share of a close\")"; exit 1; }
done
echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "== bench --quick (a smoke run: fails on errors, never on timings)"
go run ./bench --quick
echo "== go test"
go test -count=1 -timeout 40m ./...
