#!/usr/bin/env bash
# Fails if the shared object defines a dynamic symbol outside sluice_*, or if
# its SONAME is not the expected one.
set -euo pipefail
lib=$1 soname=$2
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^$' | sort -u)
bad=$(printf '%s\n' "$syms" | grep -v -E '^(sluice_|SLUICE_0$)' || true)
count=$(printf '%s\n' "$syms" | grep -c '^sluice_' || true)
if [ -n "$bad" ]; then
  echo "exported symbols outside sluice_*:"; printf '  %s\n' $bad; exit 1
fi
[ "$count" -gt 10 ] || { echo "only $count sluice_ symbols exported"; exit 1; }
got=$(objdump -p "$lib" | awk '$1=="SONAME"{print $2}')
[ "$got" = "$soname" ] || { echo "SONAME is '$got', expected '$soname'"; exit 1; }
echo "ok: $count sluice_* symbols, nothing else; SONAME $got"
