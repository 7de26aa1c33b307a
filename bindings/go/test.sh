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
# End to end: the bot simulation through the binding against the same
# server; it exits non-zero if the points stored do not match the messages.
prom=$(mktemp "${TMPDIR:-/tmp}/botsim.XXXXXX.prom")
trap 'rm -f "$prom"; "$root/scripts/pgtmp.sh" stop "$SLUICE_PG_DIR"' EXIT
if ! out=$(go run ./cmd/botsim --messages=2000 --users=200 --ai-ms=2 --quiet --prom="$prom" 2>&1); then
  printf '%s\n' "$out"
  echo "botsim e2e: FAILED" >&2
  exit 1
fi
echo "botsim e2e: OK"

