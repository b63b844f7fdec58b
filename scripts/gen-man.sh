#!/usr/bin/env bash
# Regenerates docs/man/spillway.1 from the command definitions
# (cmd/spillway's TestManPageIsCurrent checks it is current).
set -euo pipefail
cd "$(dirname "$0")/.."
SPILLWAY_UPDATE_MAN=1 go test -count=1 -run '^TestManPageIsCurrent$' ./cmd/spillway >/dev/null
echo "wrote docs/man/spillway.1"
