#!/usr/bin/env bash
# Runs the Go binding's vet and tests (race detector on) against the
# installed library that pkg-config finds (PKG_CONFIG_PATH, LD_LIBRARY_PATH
# and SLUICE_PREFIX are set by scripts/test.sh), with a throwaway
# PostgreSQL started here for the pool's tests and stopped on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
eval "$("$root/scripts/pgtmp.sh" start)"
trap '"$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"' EXIT
cd "$here"
go vet ./...
go test -race -count=1 "$@" ./...
