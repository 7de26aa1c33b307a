#!/usr/bin/env bash
# Installs every system package sluice needs to build, test and run its demo
# on Debian 12 (run as root). Installs only what is missing; safe to rerun.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config    # toolchain
  libuv1-dev libjemalloc-dev libpq-dev            # what libsluice links
  libcmocka-dev                                   # the C test suite
  postgresql-15 postgresql-client-15              # throwaway test/demo server
  valgrind binutils                               # callgrind figures; nm/objdump
  python3                                         # Python binding (pytest via pip if missing)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi

# The language toolchains for the bindings: the machine image normally has
# current ones; fall back to Debian's if a command is missing.
command -v go > /dev/null || { apt-get install -y -qq golang-go > /dev/null; }
command -v cargo > /dev/null || { apt-get install -y -qq cargo > /dev/null; }
python3 -m pytest --version > /dev/null 2>&1 || python3 -m pip install -q pytest
echo "setup: all packages present"
