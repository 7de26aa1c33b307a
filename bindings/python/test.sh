#!/usr/bin/env bash
# Runs the Python binding's tests against the built library ($SLUICE_LIB)
# and, for the PostgreSQL tests, a throwaway server started here; then a
# short run of the bot simulation port as an end-to-end test (it checks the
# database against its own counts and exits non-zero on a mismatch).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
eval "$("$root/scripts/pgtmp.sh" start)"
out=$(mktemp -d /tmp/sluice-py-e2e.XXXXXX)
trap '"$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"; rm -rf "$out"' EXIT
cd "$here"
# End to end first, so pytest's summary stays the last line.
if ! python3 examples/bot_sim.py --messages=2000 --users=200 --ai-ms=2 --quiet \
    --prom="$out/bot_sim.prom" >"$out/bot_sim.log" 2>&1; then
  cat "$out/bot_sim.log"
  echo "bot_sim.py end-to-end run FAILED" >&2
  exit 1
fi
grep -q 'op="message"' "$out/bot_sim.prom" || { echo "bot_sim.py wrote no Prometheus series" >&2; exit 1; }
grep '^check:' "$out/bot_sim.log"
PYTHONPATH="$here" python3 -m pytest -q -p no:cacheprovider tests
