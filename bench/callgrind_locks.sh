#!/usr/bin/env bash
# Instructions per try-acquire + release pair under callgrind: two runs that
# differ only in the number of pairs; the difference divided by the extra
# pairs leaves setup (runtime, manager, first entry) out.
set -euo pipefail
bin=${1:-build/bench/bench/bench_locks}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only=try --iters="$1" 2>&1 \
    | awk '/Collected/ {print $4}' | tr -d ,
}
a=$(count 100000); b=$(count 1100000)
echo "locks try+release (one key, cached entry): $(( (b - a) / 1000000 )) instructions/op"
