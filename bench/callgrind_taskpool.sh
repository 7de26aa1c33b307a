#!/usr/bin/env bash
# Instructions per permit try_acquire + release pair under callgrind: two
# runs that differ only in the number of pairs; the difference divided by
# the extra pairs leaves setup (runtime, pool, first record) out.
set -euo pipefail
bin=${1:-build/bench/bench/bench_taskpool}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only=permit --iters="$1" 2>&1 \
    | awk '/Collected/ {print $4}' | tr -d ,
}
a=$(count 100000); b=$(count 1100000)
echo "taskpool try_acquire+release (uncontended): $(( (b - a) / 1000000 )) instructions/pair"
