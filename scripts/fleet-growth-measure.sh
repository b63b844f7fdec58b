#!/usr/bin/env bash
# Growth experiment for spillway on the PostgreSQL ledger: do user commands
# get slower as a sandbox accumulates sessions?  Self-contained; as root.
#
#   scripts/fleet-growth-measure.sh pg-start          # private PostgreSQL 15 at /tmp/pgg, port 5499
#   scripts/fleet-growth-measure.sh build             # $SW from this checkout, busybox rootfs
#   scripts/fleet-growth-measure.sh populate few 10   # database growth_few, root /var/tmp/growth-few
#   scripts/fleet-growth-measure.sh populate mid 500
#   scripts/fleet-growth-measure.sh populate many 2000   (~6 min on 2 cores)
#   scripts/fleet-growth-measure.sh measure 7 few mid many   # interleaved rounds, medians, ledger sizes
#   scripts/fleet-growth-measure.sh hist 1000         # one path rewritten N times under --review before, approve timed
#   scripts/fleet-growth-measure.sh roundtrips many   # pg_stat_statements of one reject of a hot path
#   scripts/fleet-growth-measure.sh cleanup           # unmount, drop, stop the cluster, remove everything
set -u
PG=/usr/lib/postgresql/15/bin
SW=${SW:-/tmp/spillway-growth}
REPO=$(cd "$(dirname "$0")/.." && pwd)
pgurl() { echo "postgres://postgres@/$1?host=/tmp/pgg&port=5499"; }
psqlq() { psql -X -q -At "$(pgurl postgres)" -c "$1"; }
sw() { local n=$1; shift; SPILLWAY_HOST_ID=g1 $SW --root /var/tmp/growth-$n --store "$(pgurl growth_$n)" --blobs dir:///var/tmp/growth-blobs-$n "$@"; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

setup() { # NAME [exception flags...]
  local n=$1; shift
  psqlq "DROP DATABASE IF EXISTS growth_$n"; psqlq "CREATE DATABASE growth_$n"
  mkdir -p /var/tmp/growth-$n /var/tmp/growth-blobs-$n
  sw $n fleet init >/dev/null
  sw $n image import base /var/tmp/growth-rootfs >/dev/null
  sw $n create docs --image base >/dev/null
  sw $n exception add docs '/home/user/Documents/**' --reason letters "$@" >/dev/null
}

# one session: rewrite 3..5 of 40 recurrent documents (in d0..d4), a new
# document every 10th session, a scratch file (discarded); approve all
# every 7th session, reject the newest pending record every 11th
session() { # NAME i
  local n=$1 i=$2 r j p
  r=$(sw $n open docs) || return 1
  for j in $(seq 1 $(( 3 + i % 3 ))); do
    p=$(( (i * 7 + j * 13) % 40 ))
    mkdir -p "$r/home/user/Documents/d$((p % 5))"
    printf 'doc %d edited in session %d line %d\n%s\n' $p $i $j "$(head -c 600 /dev/urandom | base64 -w0)" > "$r/home/user/Documents/d$((p % 5))/doc$p.txt"
  done
  if (( i % 10 == 0 )); then echo "new doc $i" > "$r/home/user/Documents/new-$i.txt"; fi
  echo scratch > "$r/tmp/scratch-$i"
  sw $n close docs >/dev/null || return 1
  if (( i % 7 == 0 )); then
    sw $n review approve --all docs --note ok >/dev/null
  elif (( i % 11 == 0 )); then
    local id=$(sw $n review ls docs --json | sed -n 's/.*"id": \([0-9]*\).*/\1/p' | tail -n 1)
    [ -n "$id" ] && sw $n review reject "$id" --reason "not this" >/dev/null
  fi
  return 0
}

populate() { # NAME N
  local n=$1 N=$2 i t0
  setup $n
  : > /var/tmp/growth-pop-$n.log
  for i in $(seq 1 $N); do
    t0=$(date +%s%N)
    session $n $i || { echo "session $i failed" >&2; return 1; }
    echo "$i $(ms $t0)" >> /var/tmp/growth-pop-$n.log
  done
}

measure() { # ROUNDS NAME...
  local R=$1; shift
  local NAMES=("$@") OUT=/var/tmp/growth-times.txt n p r j s root id url
  : > $OUT; : > /var/tmp/growth-failures.txt
  t() { # NAME LABEL cmd...
    local n=$1 l=$2; shift 2; local s=$(date +%s%N)
    "$@" >/dev/null 2>/tmp/growth-err || echo "FAILED: $n $l: $(cat /tmp/growth-err)" | tee -a /var/tmp/growth-failures.txt >&2
    echo "$n $l $(ms $s)" >> $OUT
  }
  declare -A PORT SPID
  p=7790
  for n in "${NAMES[@]}"; do
    p=$((p+1)); PORT[$n]=$p
    ( exec env SPILLWAY_HOST_ID=g1 $SW --root /var/tmp/growth-$n --store "$(pgurl growth_$n)" --blobs dir:///var/tmp/growth-blobs-$n serve --listen 127.0.0.1:$p > /var/tmp/growth-serve-$n.out 2>&1 ) &
    SPID[$n]=$!
  done
  sleep 2
  for n in "${NAMES[@]}"; do
    url=$(grep -o 'http://[^ ]*token=[0-9a-f]*' /var/tmp/growth-serve-$n.out | head -1)
    [ -n "$url" ] || { echo "serve of $n did not start: $(cat /var/tmp/growth-serve-$n.out)" >&2; kill ${SPID[@]}; return 1; }
    rm -f /var/tmp/growth-cookie-$n
    curl -s -c /var/tmp/growth-cookie-$n -o /dev/null "$url"
  done
  for r in $(seq 1 $R); do
    for n in "${NAMES[@]}"; do
      s=$(date +%s%N); root=$(sw $n open docs); echo "$n open $(ms $s)" >> $OUT
      for j in 1 2 3 4 5; do   # five of the recurrent documents
        printf 'measure round %d file %d\n%s\n' $r $j "$(head -c 600 /dev/urandom | base64 -w0)" > "$root/home/user/Documents/d0/doc$((j*5)).txt"
      done
      t $n diff sw $n diff docs
      t $n close sw $n close docs
      id=$(sw $n review ls docs --json | sed -n 's/.*"id": \([0-9]*\).*/\1/p' | tail -n 1)
      t $n review-reject sw $n review reject "$id" --reason "not this"
      t $n review-approve-all sw $n review approve --all docs --note ok
      t $n ls sw $n ls
      t $n persisted-ls sw $n persisted ls docs
      t $n review-ls sw $n review ls docs
      t $n review-ls-limit50 sw $n review ls docs --limit 50
      t $n log-sandbox sw $n log --sandbox docs
      t $n log-sandbox-limit50 sw $n log --sandbox docs --limit 50
      t $n history-hot sw $n persisted history docs /home/user/Documents/d0/doc5.txt
      t $n exception-ls sw $n exception ls docs
      t $n exception-show sw $n exception show ex1
      t $n recover-ls sw $n recover ls docs
      t $n audit-verify sw $n audit verify
      t $n check sw $n check
      t $n gc sw $n gc
      t $n fleet-checkpoint sw $n fleet checkpoint
      t $n serve-queue curl -sf -b /var/tmp/growth-cookie-$n http://127.0.0.1:${PORT[$n]}/queue
      t $n serve-exceptions curl -sf -b /var/tmp/growth-cookie-$n http://127.0.0.1:${PORT[$n]}/exceptions
      t $n serve-index curl -sf -b /var/tmp/growth-cookie-$n http://127.0.0.1:${PORT[$n]}/
    done
  done
  for n in "${NAMES[@]}"; do kill ${SPID[$n]}; done
  wait 2>/dev/null
  python3 - "${NAMES[@]}" <<'PY'
import sys, statistics as st, collections
names = sys.argv[1:]
v = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open('/var/tmp/growth-times.txt'):
    n, l, t = line.split(); v[l][n].append(int(t))
print(f"{'command':20} " + " ".join(f"{n:>6}" for n in names) + f" {names[-1]+'/'+names[0]:>10}   samples ({names[-1]}; {names[0]})")
for l in sorted(v):
    m = [st.median(v[l][n]) for n in names]
    print(f"{l:20} " + " ".join(f"{x:6.0f}" for x in m) + f" {m[-1]/m[0]:10.2f}   {v[l][names[-1]]}; {v[l][names[0]]}")
PY
  echo "failures: $(wc -l < /var/tmp/growth-failures.txt)"
  echo "name|sessions|kv total|kv heap|kv indexes|rows|sum(len k+v)|database"
  for n in "${NAMES[@]}"; do
    psql -X -At "$(pgurl growth_$n)" -c "SELECT '$n', (SELECT count(*) FROM kv WHERE k >= 'n:docs'::bytea AND k < 'n:doct'::bytea), pg_total_relation_size('kv'), pg_relation_size('kv'), pg_indexes_size('kv'), (SELECT count(*) FROM kv), (SELECT sum(length(k)+length(v)) FROM kv), pg_database_size(current_database())"
  done
}

hist() { # N: one document rewritten at every session, --review before, approved each time
  local n=hist N=$1 i r s
  setup $n --review before
  : > /var/tmp/growth-hist.log
  for i in $(seq 1 $N); do
    r=$(sw $n open docs) || return 1
    echo "draft $i $RANDOM" > $r/home/user/Documents/notes.txt
    sw $n close docs >/dev/null || return 1
    s=$(date +%s%N)
    sw $n review approve --all docs --note ok >/dev/null || return 1
    echo "$i $(ms $s)" >> /var/tmp/growth-hist.log
  done
}

roundtrips() { # NAME: statements of one reject of a record of a path with many versions
  local n=$1 r id
  psqlq "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
  r=$(sw $n open docs); echo "rt $RANDOM" > $r/home/user/Documents/d0/doc5.txt; sw $n close docs >/dev/null
  id=$(sw $n review ls docs --json | sed -n 's/.*"id": \([0-9]*\).*/\1/p' | tail -n 1)
  echo "versions of the path: $(sw $n persisted history docs /home/user/Documents/d0/doc5.txt --json | grep -c '"id"')"
  psqlq "SELECT pg_stat_statements_reset()" >/dev/null
  sw $n review reject "$id" --reason roundtrips
  psql -X "$(pgurl postgres)" -c "SELECT calls, round(total_exec_time::numeric,1) AS ms, rows, left(regexp_replace(query,'\s+',' ','g'),100) AS query FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'growth_$n' ORDER BY calls DESC LIMIT 5"
}

case "${1:-}" in
pg-start)
  mkdir -p /tmp/pgg && chown postgres /tmp/pgg
  su postgres -c "$PG/initdb -D /tmp/pgg/data -A trust --no-sync >/tmp/pgg/initdb.log && $PG/pg_ctl -D /tmp/pgg/data -o \"-c listen_addresses='' -k /tmp/pgg -c port=5499 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all\" -l /tmp/pgg/log start"
  sleep 1; psqlq "CREATE EXTENSION IF NOT EXISTS pg_stat_statements";;
build)
  (cd "$REPO" && go build -o $SW ./cmd/spillway && go run ./internal/testrootfs/mkrootfs /var/tmp/growth-rootfs);;
populate) populate "$2" "$3";;
measure) shift; R=$1; shift; measure "$R" "$@";;
hist) hist "${2:-1000}";;
roundtrips) roundtrips "${2:-many}";;
cleanup)
  for m in $(findmnt -rn -o TARGET | grep '^/var/tmp/growth-' | sort -r); do umount "$m"; done
  for d in $(psqlq "SELECT datname FROM pg_database WHERE datname LIKE 'growth_%'"); do psqlq "DROP DATABASE $d"; done
  su postgres -c "$PG/pg_ctl -D /tmp/pgg/data stop -m fast"
  rm -rf /var/tmp/growth-* /tmp/pgg;;
*) sed -n 2,14p "$0"; exit 2;;
esac
