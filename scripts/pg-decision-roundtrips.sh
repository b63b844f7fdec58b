#!/bin/bash
# Point reads and statements of one review decision on a path with N versions,
# on the PostgreSQL ledger, for two spillway binaries side by side:
#   OLD=/tmp/sw-old NEW=/tmp/sw-new PGHOST=/tmp/pgs scripts/pg-decision-roundtrips.sh 300
# PGHOST: the socket directory of a running PostgreSQL loaded with
# pg_stat_statements (shared_preload_libraries); as root.
set -u
: "${OLD:?} ${NEW:?} ${PGHOST:?}"
N=${1:?usage: OLD=bin NEW=bin PGHOST=dir $0 N}
U="postgres://postgres@/hot?host=$PGHOST"
psql -X -q -h $PGHOST -U postgres -c "DROP DATABASE IF EXISTS hot" -c "CREATE DATABASE hot" postgres
W=/var/tmp/hot; rm -rf $W; mkdir -p $W/img/home/user/Documents $W/img/etc; echo hi > $W/img/etc/hostname
sw() { local b=$1; shift; SPILLWAY_HOST_ID=hot $b --root $W/state --store "$U" --blobs dir://$W/blobs "$@"; }
sw $NEW fleet init >/dev/null 2>&1
sw $NEW image import base $W/img >/dev/null
sw $NEW create docs --image base >/dev/null
sw $NEW exception add docs '/home/user/Documents/**' --reason letters --review before >/dev/null
for i in $(seq 1 $N); do
  r=$(sw $NEW open docs); echo "draft $i $RANDOM" > $r/home/user/Documents/notes.txt
  sw $NEW close docs >/dev/null; sw $NEW review approve --all docs --note ok >/dev/null
done
for b in $OLD $NEW $OLD $NEW; do
  r=$(sw $b open docs); echo "draft x $RANDOM" > $r/home/user/Documents/notes.txt; sw $b close docs >/dev/null
  psql -X -q -h $PGHOST -U postgres -c "SELECT pg_stat_statements_reset()" postgres >/dev/null
  s=$(date +%s%N); sw $b review approve --all docs --note ok >/dev/null; e=$(( ($(date +%s%N)-s)/1000000 ))
  n=$(psql -X -At -h $PGHOST -U postgres -c "SELECT coalesce(sum(calls),0) FROM pg_stat_statements s JOIN pg_database d ON d.oid=s.dbid WHERE d.datname='hot' AND query LIKE 'SELECT v FROM kv WHERE k = \$1'" postgres)
  a=$(psql -X -At -h $PGHOST -U postgres -c "SELECT coalesce(sum(calls),0) FROM pg_stat_statements s JOIN pg_database d ON d.oid=s.dbid WHERE d.datname='hot'" postgres)
  echo "$(basename $b): approve of a path with $(( N + 1 )) versions: ${e} ms, $n point reads, $a statements"
done
for m in $(findmnt -rn -o TARGET | grep "^$W" | sort -r); do umount $m; done; rm -rf $W
