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
