#!/usr/bin/env bash
# Runs the Go binding's vet and tests (race detector on) against the
# installed library that pkg-config finds (PKG_CONFIG_PATH, LD_LIBRARY_PATH
# and SLUICE_PREFIX are set by scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")"
go vet ./...
go test -race -count=1 ./...
