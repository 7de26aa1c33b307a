#!/usr/bin/env bash
# Runs the Python binding's tests against the built library ($SLUICE_LIB)
# and, for the PostgreSQL tests, a throwaway server started here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
eval "$("$root/scripts/pgtmp.sh" start)"
trap '"$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"' EXIT
cd "$here"
PYTHONPATH="$here" python3 -m pytest -q -p no:cacheprovider tests
