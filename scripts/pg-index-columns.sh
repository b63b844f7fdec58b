#!/bin/bash
# pg-index-columns.sh: what a close's staging transaction costs PostgreSQL
# on the key-value layout, against two layouts of its record index keys,
# with pgbench (32 clients, prepared statements), alternating:
#   rows   today: the record, its six index keys and its current-state
#          version each a row of kv; the change log upserted; the stale
#          versions deleted
#   split  the six index keys in a table of their own, without values
#   cols   the six index keys as columns of the record's row, one partial
#          unique index each
#   scripts/pg-index-columns.sh [SECONDS] [ROUNDS]   (default 20 s, 2 rounds)
# Each run has a fresh database of its own; the variants alternate.
set -euo pipefail
secs=${1:-20}
rounds=${2:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
sql=$here/bench/sql
. "$here/scripts/pg-bench-cluster.sh" pg-index-columns
cp "$sql"/kvstage-*.sql "$dir/"
chmod a+r "$dir"/*.sql
n=0
for round in $(seq "$rounds"); do
	for v in rows split cols; do
		n=$((n + 1))
		db=$v$n
		as psql -h "$dir" -U postgres -qc "CREATE DATABASE $db"
		as psql -h "$dir" -U postgres -d "$db" -q -f "$dir/kvstage-schema-$v.sql"
		as psql -h "$dir" -U postgres -qc CHECKPOINT
		out=$(as "$bin/pgbench" -h "$dir" -U postgres -n -M prepared -c 32 -j 2 -T "$secs" -f "$dir/kvstage-$v.sql" "$db" 2>&1) || { echo "$out" >&2; exit 1; }
		tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
		printf 'round %d  %-5s %6.0f stages per second (32 clients, %s s)\n' "$round" "$v" "$tps" "$secs"
		as psql -h "$dir" -U postgres -qc "DROP DATABASE $db"
	done
done
