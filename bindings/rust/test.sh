#!/usr/bin/env bash
# Runs the Rust bindings' tests against the library in $SLUICE_PREFIX (or
# found through pkg-config). No crates from outside the workspace.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo test --offline --quiet 2>&1
