#!/usr/bin/env bash
# Runs the Rust bindings' tests against the library in $SLUICE_PREFIX (or
# found through pkg-config), with a throwaway PostgreSQL for the pool tests
# (SLUICE_PG_CONNINFO). No crates from outside the workspace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target}"
eval "$("$root/scripts/pgtmp.sh" start)"
trap '"$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"' EXIT
cargo test --offline --quiet 2>&1

# End to end: a short bot simulation through the binding (examples/bot_sim.rs)
# against the same server; it checks the database itself and exits 1 on a
# mismatch. Bad input must exit 2 with a message, not run.
prom=$(mktemp)
trap 'rm -f "$prom"; "$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"' EXIT
sim() { cargo run --offline --quiet --example bot_sim -- "$@"; }
out=$(sim --messages=2000 --users=200 --ai-ms=2 --quiet --prom="$prom") || { echo "$out"; echo "bot_sim e2e: FAILED"; exit 1; }
grep -q '^check: 2000 points stored = 2000 messages accepted: OK$' <<<"$out" || { echo "$out"; echo "bot_sim e2e: no check line"; exit 1; }
grep -q '^sluice_' "$prom" || { echo "bot_sim e2e: empty Prometheus file"; exit 1; }
out=$(sim --messages=2000 --users=200 --ai-ms=2 --ai-blocking --ai-fail-percent=100 --quiet --prom="$prom") || { echo "$out"; echo "bot_sim e2e (AI down, blocking): FAILED"; exit 1; }
grep -q '^check: .* OK$' <<<"$out" || { echo "$out"; echo "bot_sim e2e (AI down): no check line"; exit 1; }
grep -q 'by the breaker: [a-z-]*, tripped [1-9]' <<<"$out" || { echo "$out"; echo "bot_sim e2e (AI down): the breaker never tripped"; exit 1; }
rc=0; sim --users=0 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "bot_sim: --users=0 exited $rc, expected 2"; exit 1; }
echo "bot_sim e2e: ok"
