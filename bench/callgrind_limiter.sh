#!/usr/bin/env bash
# Instructions per limiter check on an existing key under callgrind, for
# each algorithm and for the std::mutex + std::unordered_map version beside
# it: two runs that differ only in the number of checks; the difference
# divided by the extra checks leaves setup out. The clock read
# (clock_gettime through the vDSO) is part of every check and is counted.
#   bench/callgrind_limiter.sh [path/to/bench_limiter]
set -euo pipefail
bin=${1:-build/bench/bench/bench_limiter}
count() { # count KIND ITERS
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only="$1" --iters="$2" 2>&1 \
    | awk '/Collected/ {print $4}' | tr -d ,
}
for kind in gcra log window; do
  a=$(count "$kind" 100000); b=$(count "$kind" 1100000)
  ma=$(count "mutex-$kind" 100000); mb=$(count "mutex-$kind" 1100000)
  awk -v k="$kind" -v s=$(( b - a )) -v m=$(( mb - ma )) 'BEGIN {
    printf "%-7s check: sluice %4d instructions/op, std::mutex+unordered_map %4d (ratio %.2fx)\n",
      k, s / 1000000, m / 1000000, m / s }'
done
