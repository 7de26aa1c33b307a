#!/usr/bin/env bash
# Runs the PostgreSQL pool benchmarks against a throwaway server, with
# pgbench beside them at the same concurrency, in the same run.
#   bench/pg_bench.sh [--seconds=5] [--clients="1 4 16"] [--scale=10]
#                     [--bench=PATH] [--select-only]
# --bench runs another build's bench_pg (say, before and after a change);
# --select-only stops after the point selects.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
seconds=5 clients="1 4 16" scale=10 bench="" select_only=0
for a in "$@"; do
  case "$a" in
    --seconds=*) seconds=${a#*=} ;; --clients=*) clients=${a#*=} ;; --scale=*) scale=${a#*=} ;;
    --bench=*) bench=${a#*=} ;; --select-only) select_only=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
if [ -z "$bench" ]; then
  bench="$root/build/bench/bench/bench_pg"
  [ -x "$bench" ] || { cmake -S "$root" -B "$root/build/bench" -G Ninja -DSLUICE_BUILD_BENCH=ON -DSLUICE_BUILD_TESTS=OFF > /dev/null && cmake --build "$root/build/bench" -j2 > /dev/null; }
fi
[ -x "$bench" ] || { echo "no bench_pg at $bench" >&2; exit 2; }
eval "$("$root/scripts/pgtmp.sh" start)"
trap '"$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"' EXIT
pgbench -i -s "$scale" -q "$SLUICE_PG_CONNINFO" > /dev/null 2>&1
echo "PostgreSQL $(psql "$SLUICE_PG_CONNINFO" -Atc 'show server_version'), pgbench scale $scale, $(nproc) cores"
out=$(mktemp)
trap '"$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"; rm -f "$out"' EXIT
for c in $clients; do
  # pgbench's own CPU (user + sys, connecting included) beside ours: on a
  # shared machine the ratio of throughputs is noisy, CPU per query less so.
  TIMEFORMAT='%U %S'
  { time pgbench -S -M prepared -c "$c" -j "$(( c < 2 ? 1 : 2 ))" -T "$seconds" -n "$SLUICE_PG_CONNINFO" \
      > "$out" 2>/dev/null; } 2> "$out.time"
  tps=$(awk '/^tps/ {print int($3); exit}' "$out")
  pg_cpu=$(awk -v n="$(awk '/actually processed/ {print $NF; exit}' "$out")" '{printf "%.1f", ($1 + $2) * 1e6 / n}' "$out.time")
  rm -f "$out.time"
  line=$("$bench" --mode=select --inflight="$c" --seconds="$seconds" --scale="$scale")
  ours=$(echo "$line" | awk '{print int($4)}')
  echo "$line"
  echo "pgbench -S -M prepared -c $c: $tps tps, client CPU $pg_cpu us/query; sluice/pgbench = $(awk -v a="$ours" -v b="$tps" 'BEGIN{printf "%.2f", a/b}')"
done
[ "$select_only" = 1 ] && exit 0
"$bench" --mode=pipeline --batch=16 --batches=300
"$bench" --mode=acquire --iters=200000
for callers in 8 32; do
  "$bench" --mode=overload --pool=2 --callers="$callers" --query-ms=50 --deadline-ms=500 --seconds="$seconds"
done
