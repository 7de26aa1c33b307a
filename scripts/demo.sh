#!/usr/bin/env bash
# The main job: installs what is missing, builds sluice and runs the demo.
# Until the bot simulation lands, the demo is examples/runtime_hello: work
# posted from several threads, timers, cancellation and the runtime figures.
#   scripts/demo.sh [threads] [posts-per-thread] [timer-ms]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
bash scripts/setup.sh
mkdir -p build
build_tree plain -DSLUICE_SANITIZE=
"$root/build/plain/examples/runtime_hello" "${1:-4}" "${2:-100000}" "${3:-20}"
