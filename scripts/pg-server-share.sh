#!/bin/bash
# pg-server-share.sh: what a close costs the database server alone. On a
# real fleet the clients run on their hosts and PostgreSQL has its machine
# to itself; on this one they share two cores, so fleet-closes measures
# both at once. Here PostgreSQL is pinned to the last CPU and every client
# to the others, and the rounds alternate, side by side in one run:
#   sql-layout   pgbench's close laid out for SQL, as pg-close-ceiling.sh
#                runs it (bench/sql/ceiling-*.sql: open, mark closing,
#                commit of 50 records with their indexes)
#   spillway     bench fleet-closes of this tree (32 clients, 50 files)
#   no-index     the same without the record index rows
#                (bench/patches/no-record-index-rows.patch): not a driver,
#                the bound of what a layout without them could save
#   rec-table    a prototype of the layout for SQL (bench/patches/
#                records-table.patch): each record a row of a table with
#                its six indexes, the index rows not written; it writes
#                only (no reader of the table), which is all a close does
#   one-tx       the bench's close staging its records in the commit's
#                transaction (bench/patches/stage-in-commit.patch): four
#                transactions a cycle instead of five
# VARIANTS="spillway one-tx" runs only those (default: all five).
# Each runs 30 s (fleet-closes' length); the server core's load is
# sampled from 5 s to 25 s in. Its CPU a close is load / rate, which is
# the server's whole cost when its core is the saturated one (load near
# 100 %).
#   [VARIANTS="…"] scripts/pg-server-share.sh [ROUNDS]   (default 2)
set -euo pipefail
secs=30
rounds=${1:-2}
all="sql-layout spillway no-index rec-table one-tx"
variants=${VARIANTS:-$all}
# the patch of bench/patches/ a variant is built with ("": none)
patch_of() {
	case $1 in
	no-index) echo no-record-index-rows ;;
	rec-table) echo records-table ;;
	one-tx) echo stage-in-commit ;;
	esac
}
for v in $variants; do
	case " $all " in
	*" $v "*) ;;
	*) echo "pg-server-share: no variant $v ($all)" >&2; exit 2 ;;
	esac
done
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] && [ -x "$bin/pgbench" ] || { echo "pg-server-share: PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 1; }
ncpu=$(nproc)
[ "$ncpu" -ge 2 ] || { echo "pg-server-share: needs two CPUs or more" >&2; exit 1; }
srv=$((ncpu - 1))
cli=0-$((ncpu - 2))
dir=$(mktemp -d)
chown postgres "$dir"
as() { runuser -u postgres -- "$@"; }
cleanup() {
	as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap cleanup EXIT
as "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
# The options internal/pgtest runs its clusters with; the backends inherit
# the postmaster's CPU.
taskset -c "$srv" runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
	-o "-c listen_addresses='' -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null

echo "pg-server-share: building the bench of this tree and of its variants" >&2
for v in $variants; do
	p=$(patch_of "$v")
	case $v in
	sql-layout) ;;
	spillway) (cd "$here" && go build -o "$dir/bench-spillway" ./bench) ;;
	*)
		mkdir -p "$dir/src/$v"
		(cd "$here" && tar --exclude=.git -cf - .) | tar -C "$dir/src/$v" -xf -
		(cd "$dir/src/$v" && git apply "$here/bench/patches/$p.patch" && go build -o "$dir/bench-$v" ./bench)
		;;
	esac
done
cat "$here/bench/sql/ceiling-open.sql" "$here/bench/sql/ceiling-commit.sql" > "$dir/cycle.sql"

# busy CPU ticks of the server's core
busy() { awk -v c="cpu$srv" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
# sample: the server core's load in percent from 5 s to 25 s of a run
sample() {
	local b0 b1 t0 t1
	sleep 5
	b0=$(busy) t0=$(date +%s.%N)
	sleep 20
	b1=$(busy) t1=$(date +%s.%N)
	awk -v b="$((b1 - b0))" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", 100 * b / ((t1 - t0) * hz) }'
}
report() { # NAME RATE LOAD
	awk -v n="$1" -v r="$2" -v l="$3" 'BEGIN { printf "%-10s %6.0f closes/s  server core %3d %% busy  %5.2f ms of server CPU a close\n", n, r, l, (l / 100) * 1000 / r }'
}
sqlround() {
	local db=ceiling$1 load
	as psql -h "$dir" -U postgres -qc "CREATE DATABASE $db"
	as psql -h "$dir" -U postgres -d $db -q -f "$here/bench/sql/ceiling-schema.sql"
	as psql -h "$dir" -U postgres -d $db -q -f "$here/bench/sql/ceiling-indexes.sql"
	taskset -c "$cli" runuser -u postgres -- "$bin/pgbench" -h "$dir" -U postgres -n -M prepared -c 32 -j 2 -T "$secs" -f "$dir/cycle.sql" $db > "$dir/out" 2>&1 &
	load=$(sample)
	wait $!
	report sql-layout "$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$dir/out")" "$load"
}
benchround() { # NAME
	local rate load
	SPILLWAY_TEST_PG="postgres://postgres@/postgres?host=$dir" taskset -c "$cli" "$dir/bench-$1" --only fleet-closes > "$dir/out" 2>&1 &
	load=$(sample)
	wait $! || { cat "$dir/out" >&2; echo "pg-server-share: the bench of $1 failed" >&2; exit 1; }
	rate=$(sed -n 's/.*fleet-closes: .*: \([0-9]*\)\/s,.*/\1/p' "$dir/out")
	report "$1" "$rate" "$load"
}
for r in $(seq 1 "$rounds"); do
	echo "round $r (server on CPU $srv, clients on CPU $cli)"
	for v in $variants; do
		case $v in
		sql-layout) sqlround "$r" ;;
		*) benchround "$v" ;;
		esac
	done
done
