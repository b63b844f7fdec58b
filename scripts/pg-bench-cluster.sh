# pg-bench-cluster.sh, sourced by the pgbench scripts: starts a throwaway
# PostgreSQL cluster with the options internal/pgtest runs its clusters
# with (unix socket in $dir, fsync off), stopped and removed at exit.
# Sets: bin (PostgreSQL's programs), dir (socket and data), as (runs a
# command as the postgres user). $1 names the calling script in errors.
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] && [ -x "$bin/pgbench" ] || { echo "$1: PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 1; }
dir=$(mktemp -d)
chown postgres "$dir"
as() { runuser -u postgres -- "$@"; }
as "$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-c listen_addresses='' -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
trap 'as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null; rm -rf "$dir"' EXIT
