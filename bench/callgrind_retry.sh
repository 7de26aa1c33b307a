#!/usr/bin/env bash
# Instructions per operation under callgrind, for the retry and breaker
# primitives and the plain call they wrap: two runs that differ only in the
# number of operations; the difference divided by the extra operations
# leaves setup and teardown out.
#   bash bench/callgrind_retry.sh [path/to/bench_retry]
set -euo pipefail
bin=${1:-build/bench/bench/bench_retry}
count() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" --only="$1" --iters="$2" 2>&1 \
    | awk '/Collected/ {print $4}' | tr -d ,
}
for what in plain session async breaker; do
  a=$(count "$what" 20000); b=$(count "$what" 220000)
  case $what in
    plain) label="plain call of the attempt" ;;
    session) label="retry session, first attempt succeeds" ;;
    async) label="retry async run, first attempt succeeds" ;;
    breaker) label="breaker allow+record" ;;
  esac
  echo "$label: $(( (b - a) / 200000 )) instructions/op"
done
