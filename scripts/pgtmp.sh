#!/usr/bin/env bash
# A throwaway PostgreSQL 15 server in a temporary directory, listening on
# 127.0.0.1 (a free port) and on a Unix socket in that directory.
#
#   eval "$(scripts/pgtmp.sh start)"   # exports SLUICE_PG_DIR, SLUICE_PG_PORT,
#                                      # SLUICE_PG_CONNINFO, SLUICE_PG_CTL
#   scripts/pgtmp.sh ctl DIR restart -m fast    # pg_ctl on that cluster
#   scripts/pgtmp.sh stop DIR
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the
# `postgres` system user (created by the Debian package).
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "pgtmp: PostgreSQL server binaries not found (run scripts/setup.sh)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

cmd=${1:-}; shift || true
case "$cmd" in
  start)
    dir=$(mktemp -d /tmp/sluice-pg.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 > "$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    port=$(free_port)
    cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 128MB
log_min_messages = warning
CONF
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start > /dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export SLUICE_PG_DIR='$dir'"
    echo "export SLUICE_PG_PORT='$port'"
    echo "export SLUICE_PG_CONNINFO='host=127.0.0.1 port=$port user=postgres dbname=postgres'"
    echo "export SLUICE_PG_CTL='$(cd "$(dirname "$0")" && pwd)/pgtmp.sh ctl $dir'"
    ;;
  ctl)
    dir=$1; shift
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 "$@" > /dev/null
    ;;
  stop)
    dir=$1
    [ -d "$dir/data" ] && as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop > /dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pgtmp.sh start | ctl DIR PG_CTL_ARGS... | stop DIR" >&2; exit 2 ;;
esac
