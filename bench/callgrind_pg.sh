#!/usr/bin/env bash
# Client instructions per prepared point select under callgrind (all threads
# of the client process; the server is another process): two runs that
# differ only in the number of queries, so setup, connecting and the warm-up
# cancel out. Needs $SLUICE_PG_CONNINFO with pgbench -i data (scale 10).
#   bench/callgrind_pg.sh [bench_pg] [inflight]
set -euo pipefail
bin=${1:-build/bench/bench/bench_pg}
inflight=${2:-16}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --mode=select \
    --inflight="$inflight" --queries="$1" 2>&1 | awk '/Collected/ {print $4}' | tr -d ,
}
a=$(count 20000); b=$(count 120000)
echo "prepared point select, $inflight in flight: $(( (b - a) / 100000 )) client instructions/query"
