#!/usr/bin/env bash
# Developer entry point: build rechenzentrum into ./build and either run a local cluster or the
# tests. Works from any directory.
#
#   deploy/dev.sh cluster [rz local flags...]   install deps, build, run `rz local` (Ctrl-C stops)
#   deploy/dev.sh test [ctest args...]          install deps, build, run ctest (its exit status)
#   deploy/dev.sh build                         install deps and build only
#
# Environment: BUILD_DIR (default <repo>/build), JOBS (parallel build and test jobs, default 2),
# BUILD_TYPE (default RelWithDebInfo).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

build_dir="${BUILD_DIR:-$repo_root/build}"
jobs="${JOBS:-2}"
build_type="${BUILD_TYPE:-RelWithDebInfo}"

usage() {
  sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

install_deps() {
  deploy/install-deps.sh
}

# Test-only dependencies beyond install-deps.sh. None yet; when system tests need more (e.g.
# ZooKeeper, chromium, node), install them here so `dev.sh cluster` stays lean.
install_test_deps() {
  :
}

build() {
  cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" >/dev/null
  ninja -C "$build_dir" -j "$jobs"
}

[ $# -ge 1 ] || usage
command="$1"
shift

case "$command" in
  cluster)
    install_deps
    build
    exec "$build_dir/src/cli/rz" local "$@"
    ;;
  test)
    install_deps
    install_test_deps
    build
    status=0
    ctest --test-dir "$build_dir" --output-on-failure -j "$jobs" "$@" || status=$?
    exit "$status"
    ;;
  build)
    install_deps
    build
    ;;
  *)
    usage
    ;;
esac
