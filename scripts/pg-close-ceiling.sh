#!/bin/bash
# pg-close-ceiling.sh: what PostgreSQL alone sustains on this machine for
# a close laid out for SQL (one row per record, real indexes), with
# pgbench (a C client, prepared statements, no client-side work) and 32
# clients, as fleet-closes runs: the upper bound for any driver.
#   scripts/pg-close-ceiling.sh [SECONDS]   (default 10 per variant)
# Variants, each in a database of its own:
#   cycle        open (lease, session), mark closing, commit of 50 records
#                with the record indexes, current-state rows and change log
#   commit       the commit transaction alone
#   records-only 50 records under a primary key only, the sandbox row and
#                an audit row: no index, no current state, no change log
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
sql=$here/bench/sql
. "$here/scripts/pg-bench-cluster.sh" pg-close-ceiling
cat "$sql/ceiling-open.sql" "$sql/ceiling-commit.sql" > "$dir/cycle.sql"
run() { # NAME SCRIPT INDEXES
	as psql -h "$dir" -U postgres -qc "CREATE DATABASE \"$1\""
	as psql -h "$dir" -U postgres -d "$1" -q -f "$sql/ceiling-schema.sql"
	[ "$3" = no ] || as psql -h "$dir" -U postgres -d "$1" -q -f "$sql/ceiling-indexes.sql"
	local tps
	tps=$(as "$bin/pgbench" -h "$dir" -U postgres -n -M prepared -c 32 -j 2 -T "$secs" -f "$2" "$1" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
	printf '%-13s %6.0f per second (32 clients, %s s)\n' "$1" "$tps" "$secs"
}
run cycle "$dir/cycle.sql" yes
run commit "$sql/ceiling-commit.sql" yes
run records-only "$sql/ceiling-records-only.sql" no
