#!/usr/bin/env bash
# Checks the import direction of Spillway's packages (docs/design.md,
# "Package map"):
#
#   cmd/*        → persist, sandboxrun (and its peers), internal/*
#   sandboxrun   → persist, store/snapshot/exceptions, internal/*, its peers
#   persist/...  → store, snapshot, exceptions, internal/*
#   store        → exceptions (it stores the rules), internal/*
#   snapshot, exceptions → internal/* only
#   internal/*   → internal/* only
#
# Nothing imports upward: nothing imports cmd; persist never imports
# sandboxrun. A package not named below sits at sandboxrun's level (new
# orchestration packages such as vm or serve): list it here when it needs
# other rules. Only non-test imports are checked.
#
# Usage: scripts/check-imports.sh [LISTING]
# LISTING, for the tests, is a file of lines "PKG IMPORT...", as
# `go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...` prints them;
# without it the script runs go list itself. Exit 1 names each offending
# import.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

mod=github.com/spillway/spillway

# layer prints the layer of a package path relative to the module.
layer() {
	case "$1" in
	cmd/*) echo cmd ;;
	bench | bench/*) echo tool ;;
	persist | persist/*) echo persist ;;
	store | store/*) echo store ;;
	snapshot | snapshot/*) echo snapshot ;;
	exceptions | exceptions/*) echo exceptions ;;
	internal/*) echo internal ;;
	*) echo sandboxrun ;; # sandboxrun and other orchestration packages
	esac
}

# allowed says whether a package of layer $1 may import one of layer $2.
allowed() {
	case "$1:$2" in
	*:internal) return 0 ;;
	tool:cmd) return 1 ;;
	tool:*) return 0 ;;
	cmd:persist | cmd:sandboxrun) return 0 ;;
	sandboxrun:persist | sandboxrun:sandboxrun | sandboxrun:store | sandboxrun:snapshot | sandboxrun:exceptions) return 0 ;;
	persist:persist | persist:store | persist:snapshot | persist:exceptions) return 0 ;;
	store:store | store:exceptions | snapshot:snapshot | exceptions:exceptions) return 0 ;;
	esac
	return 1
}

if [ $# -gt 0 ]; then
	listing=$(cat "$1")
else
	listing=$(go list -f '{{.ImportPath}} {{join .Imports " "}}' ./...)
fi

bad=0
while read -r pkg imports; do
	[ -n "$pkg" ] || continue
	p=${pkg#"$mod"/}
	for imp in $imports; do
		case "$imp" in
		"$mod"/*) ;;
		*) continue ;; # standard library and other modules
		esac
		i=${imp#"$mod"/}
		from=$(layer "$p")
		to=$(layer "$i")
		if ! allowed "$from" "$to"; then
			echo "check-imports: $p imports $i: $from must not import $to (see docs/design.md, Package map)" >&2
			bad=1
		fi
	done
done <<<"$listing"
if [ "$bad" != 0 ]; then
	exit 1
fi
echo "check-imports: import direction ok"
