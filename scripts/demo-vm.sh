#!/usr/bin/env bash
# The optional VM demo: the same sandbox and close as scripts/demo.sh, but
# the edit runs in a disposable QEMU VM with its own kernel (docs/vm.md).
# Needs root. Installs what is missing with apt-get: qemu-system-x86,
# erofs-utils, busybox-static; the guest kernel is linux-image-cloud-amd64,
# used from /boot when installed, else downloaded and unpacked into the
# state directory by `spillway vm setup --fetch` (the host's boot
# configuration is never touched). State goes to a fresh temporary
# directory, removed at the end unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

. scripts/demo-lib.sh
demo_need_root demo-vm.sh
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v mkfs.erofs >/dev/null || missing+=(erofs-utils)
[ -x /bin/busybox ] || missing+=(busybox-static)
demo_install ${missing[@]+"${missing[@]}"}
demo_workdir spillway-demo-vm

# spillway finds its guest init next to its own binary.
go build -o spillway ./cmd/spillway
CGO_ENABLED=0 go build -o spillway-vminit ./cmd/spillway-vminit
go run ./internal/testrootfs/mkrootfs "$work/rootfs"

step ./spillway image import base "$work/rootfs"
step ./spillway create docs --image base
step ./spillway exception add docs '/home/user/Documents/**' --reason "the letters I write in this sandbox"
step ./spillway vm setup --fetch

echo; echo "# in a VM: write a letter, tamper with /etc/hosts, show the guest's kernel; then close"
start=$(date +%s.%N)
step ./spillway run --vm docs --close -- sh -c 'echo "Dear reviewer, written in a VM." > /home/user/Documents/letter.txt; echo "6.6.6.6 bank.example" >> /etc/hosts; echo "guest kernel: $(uname -r)"'
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "\n# run --vm took %.1f s, open and close included (see \"accel\" above)\n", e - s }'

step ./spillway persisted ls docs
echo; echo "# the next VM sees the letter, and a clean /etc/hosts"
step ./spillway run --vm docs --close -- sh -c 'cat /home/user/Documents/letter.txt; tail -n 1 /etc/hosts'
