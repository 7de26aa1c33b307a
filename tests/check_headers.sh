#!/usr/bin/env bash
# Compiles every public header alone, as strict C99 and as C++, so each one
# carries its own includes and stays clean C.
set -euo pipefail
cc=$1 cxx=$2 inc=$3 geninc=$4
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
n=0
for h in $(cd "$inc" && find . -name '*.h' | sed 's|^\./||' | sort); do
  # <uv.h> itself needs POSIX types (pthread_rwlock_t) that strict C99
  # hides, so the adapter header is checked as a POSIX program would use it.
  posix=""
  [ "$h" = sluice/uv.h ] && posix="-D_POSIX_C_SOURCE=200809L"
  printf '#include <%s>\nint sluice_header_check_%d;\n' "$h" "$n" > "$tmp/t.c"
  cp "$tmp/t.c" "$tmp/t.cc"
  "$cc" -std=c99 -pedantic -Wall -Wextra -Werror $posix -I"$inc" -I"$geninc" -c "$tmp/t.c" -o "$tmp/t.o" \
    || { echo "FAIL (C99): $h"; exit 1; }
  "$cxx" -std=c++11 -pedantic -Wall -Wextra -Werror -I"$inc" -I"$geninc" -c "$tmp/t.cc" -o "$tmp/t.o" \
    || { echo "FAIL (C++): $h"; exit 1; }
  n=$((n + 1))
done
[ "$n" -ge 4 ] || { echo "found only $n headers"; exit 1; }
echo "ok: $n headers compile alone as C99 -pedantic -Werror and as C++"
