# Shared by the scripts: paths and the configure/build step.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

# build_tree NAME [cmake args...]: configure and build $root/build/NAME.
build_tree() {
  local name=$1; shift
  cmake -S "$root" -B "$root/build/$name" -G Ninja "$@" > "$root/build/$name.configure.log" 2>&1 \
    || { cat "$root/build/$name.configure.log"; return 1; }
  cmake --build "$root/build/$name" -j "$jobs" > "$root/build/$name.build.log" 2>&1 \
    || { tail -50 "$root/build/$name.build.log"; return 1; }
}
