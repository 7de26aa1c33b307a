#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds examples/ as a
# separate project against it, once through pkg-config and once through
# find_package(sluice), and runs what it built.
set -euo pipefail
build=$1 examples=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log"
for f in include/sluice.h include/sluice/version.h lib/pkgconfig/sluice.pc \
         lib/cmake/sluice/sluiceConfig.cmake lib/libsluice.a; do
  [ -e "$tmp/prefix/$f" ] || { echo "missing after install: $f"; exit 1; }
done
ls "$tmp/prefix"/lib/libsluice.so.* > /dev/null
for how in pkgconfig cmake; do
  cmake -S "$examples" -B "$tmp/ex-$how" -G Ninja -DSLUICE_FIND="$how" \
    -DCMAKE_PREFIX_PATH="$tmp/prefix" > "$tmp/cfg-$how.log" \
    || { cat "$tmp/cfg-$how.log"; exit 1; }
  cmake --build "$tmp/ex-$how" > "$tmp/build-$how.log" \
    || { cat "$tmp/build-$how.log"; exit 1; }
  # Programs that need no database; the others are built and run by the demo.
  for exe in "$tmp/ex-$how"/bin/runtime_hello "$tmp/ex-$how"/bin/embed_uv "$tmp/ex-$how"/bin/retry_example "$tmp/ex-$how"/bin/locks_example "$tmp/ex-$how"/bin/limiter_example "$tmp/ex-$how"/bin/taskpool_example; do
    LD_LIBRARY_PATH="$tmp/prefix/lib" "$exe" > "$tmp/run.log" \
      || { echo "FAIL: $exe ($how)"; cat "$tmp/run.log"; exit 1; }
    echo "ok: $(basename "$exe") built through $how and ran"
  done
done
