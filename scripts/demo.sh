#!/usr/bin/env bash
# The main job: installs what is missing, builds sluice, starts a throwaway
# PostgreSQL and runs the demo against it, then stops the server.
# Until the bot simulation lands the demo is two examples:
#   runtime_hello: work posted from several threads, timers, cancellation;
#   pg_points:     users adding points concurrently through the pool, with
#                  the stored total checked against the accepted updates.
#   scripts/demo.sh [users] [updates-per-user] [pool-size]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
bash scripts/setup.sh
mkdir -p build
build_tree plain -DSLUICE_SANITIZE=
eval "$(scripts/pgtmp.sh start)"
trap 'scripts/pgtmp.sh stop "$SLUICE_PG_DIR"' EXIT
echo "== runtime_hello"
"$root/build/plain/examples/runtime_hello" 4 100000 20
echo "== pg_points (PostgreSQL on 127.0.0.1:$SLUICE_PG_PORT)"
"$root/build/plain/examples/pg_points" "$SLUICE_PG_CONNINFO" "${1:-1000}" "${2:-20}" "${3:-8}"
