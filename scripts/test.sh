#!/usr/bin/env bash
# The whole test suite: the C suite plain, under ASan+UBSan and (the
# concurrency tests) under TSan; exported symbols, standalone headers and the
# installed tree; then the Go, Rust and Python bindings against the built
# library. Prints one line per step and a closing "N passed, N failed".
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
bash scripts/setup.sh || exit 1
mkdir -p build

passed=0 failed=0 failures=()
step() { # step NAME COMMAND...: runs and tallies one step, output to a log
  local name=$1; shift
  local log="$root/build/step-$name.log" t0=$SECONDS
  if "$@" > "$log" 2>&1; then
    passed=$((passed + 1)); echo "PASS $name ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "FAIL $name ($((SECONDS - t0)) s), log: $log"
    tail -40 "$log" | sed 's/^/    /'
  fi
}

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

ctest_in() { # ctest_in TREE [ctest args]
  local tree=$1; shift
  (cd "$root/build/$tree" && ctest --output-on-failure --no-tests=error -j 2 "$@")
}

step build-plain build_tree plain -DSLUICE_SANITIZE=
step ctest-plain ctest_in plain
step build-asan build_tree asan -DSLUICE_SANITIZE=address -DSLUICE_BUILD_EXAMPLES=OFF
step ctest-asan-ubsan ctest_in asan
step build-tsan build_tree tsan -DSLUICE_SANITIZE=thread -DSLUICE_BUILD_EXAMPLES=OFF
step ctest-tsan ctest_in tsan -L concurrency

# The bindings load the plain library from an installed tree.
prefix="$root/build/plain/_install"
rm -rf "$prefix"
step install cmake --install "$root/build/plain" --prefix "$prefix"
export SLUICE_PREFIX="$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SLUICE_LIB="$prefix/lib/libsluice.so.0"
for lang in go rust python; do
  if [ -f "bindings/$lang/test.sh" ]; then
    step "binding-$lang" bash "bindings/$lang/test.sh"
  fi
done

echo
[ ${#failures[@]} -eq 0 ] || echo "failed steps: ${failures[*]}"
echo "steps: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
