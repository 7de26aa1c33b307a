#!/usr/bin/env bash
# The main job: installs what is missing, builds sluice, starts a throwaway
# PostgreSQL and runs the bot simulation against it, then stops the server.
# Every argument goes to bot_sim (see `bot_sim --help`), e.g.
#   scripts/demo.sh --users=1000 --messages=50000 --inflight=128
# Its closing table is printed and its Prometheus text is written to
# build/bot_sim.prom; it exits non-zero if the points stored in the
# database do not equal the messages it accepted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
bash scripts/setup.sh
mkdir -p build
build_tree plain -DSLUICE_SANITIZE=
eval "$(scripts/pgtmp.sh start)"
trap 'scripts/pgtmp.sh stop "$SLUICE_PG_DIR"' EXIT
echo "== bot_sim against PostgreSQL on 127.0.0.1:$SLUICE_PG_PORT"
"$root/build/plain/examples/bot_sim" --conninfo="$SLUICE_PG_CONNINFO" --prom="$root/build/bot_sim.prom" "$@"
