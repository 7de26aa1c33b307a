#!/usr/bin/env bash
# Instructions per monitor record under callgrind: two runs that differ only
# in the number of records; the difference divided by the extra records
# leaves setup out.
set -euo pipefail
bin=${1:-build/bench/bench/bench_monitor}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only=record --records="$1" 2>&1 \
    | awk '/Collected/ {print $4}' | tr -d ,
}
a=$(count 100000); b=$(count 1100000)
echo "monitor record (by id): $(( (b - a) / 1000000 )) instructions/op"
