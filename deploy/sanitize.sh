#!/usr/bin/env bash
# Builds the tests with AddressSanitizer + UndefinedBehaviorSanitizer (into build-asan/) and
# runs the whole suite. Run before calling an issue resolved; CI runs the plain build only,
# to stay inside its time budget.
#
#   deploy/sanitize.sh [ctest args...]
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo_root/build-asan}"
jobs="${JOBS:-2}"

"$repo_root/deploy/install-deps.sh"
cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRZ_SANITIZE=ON >/dev/null
ninja -C "$build_dir" -j "$jobs"
# Leaks in Debian's gRPC/protobuf static initialisers are not ours; everything else fails.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" "$@"
