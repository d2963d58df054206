#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests: a fresh cluster in DIR, listening on
# 127.0.0.1 only, on a free port, with its socket in DIR too.
#
#   scripts/pg_server.sh start DIR   prints the connection URL on its last line
#   scripts/pg_server.sh stop DIR    stops it (fast shutdown); safe to repeat
#
# Exit 77 (with the reason on the last line) when no PostgreSQL server binaries
# are installed (scripts/setup.sh installs Debian's postgresql). As root, the
# server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail

cmd=${1:-}; dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR" >&2; exit 2
fi

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir=$d
done
if [ -z "$bindir" ] && command -v initdb >/dev/null 2>&1; then
  bindir=$(dirname "$(command -v initdb)")
fi
if [ -z "$bindir" ]; then
  echo "PostgreSQL server binaries (initdb, pg_ctl) not installed; run scripts/setup.sh"
  exit 77
fi

as_owner() { # runs a command as the cluster's owner
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
start)
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "no 'postgres' user to run the server as"; exit 77; }
    chown postgres: "$dir"
    chmod 700 "$dir"
    # the owner must be able to reach DIR: open its direct parent (a private
    # temporary directory, typically) for traversal only, nothing above it
    parent=$(dirname "$(readlink -f "$dir")")
    [ "$parent" != "/" ] && [ "$(stat -c %u "$parent")" = 0 ] && chmod o+x "$parent"
    runuser -u postgres -- test -x "$dir" || { echo "PostgreSQL: user postgres cannot reach $dir; put it under /tmp"; exit 1; }
  fi
  as_owner "$bindir/initdb" -D "$dir/data" -U maas --auth=trust -E UTF8 --locale=C.UTF-8 \
    --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; echo "initdb failed"; exit 1; }
  port=""
  for _ in $(seq 1 20); do
    cand=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    # fsync stays on: the tests check durability, not only atomicity
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $cand -k $dir -c max_connections=200 -c shared_buffers=32MB" start >/dev/null 2>&1; then
      port=$cand; break
    fi
  done
  if [ -z "$port" ]; then
    tail -n 20 "$dir/server.log" >&2 || true
    echo "PostgreSQL did not start"; exit 1
  fi
  echo "$port" >"$dir/port"
  "$bindir/psql" -X -q -h 127.0.0.1 -p "$port" -U maas -d postgres -c "CREATE DATABASE maas" >/dev/null
  echo "postgresql://maas@127.0.0.1:$port/maas"
  ;;
stop)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
  fi
  ;;
psql) # psql DIR [args...]: psql on the test database
  shift 2
  exec "$bindir/psql" -X -q -h 127.0.0.1 -p "$(cat "$dir/port")" -U maas -d maas "$@"
  ;;
*)
  echo "usage: $0 start|stop|psql DIR" >&2; exit 2
  ;;
esac
