#!/usr/bin/env bash
# Builds what a benchmark suite needs and runs it. Every figure ends on a line of its own:
#   RESULT <name> <value> <unit>
#
#   bench/run.sh allocator   allocation pass cost of the allocator
#   bench/run.sh master      end-to-end task launch latency and throughput (in-process cluster)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo_root/build-bench}"
suite="${1:-}"

build() {
  "$repo_root/deploy/install-deps.sh"
  cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$build_dir" "$@"
}

case "$suite" in
  allocator)
    build allocator_bench
    out=$(mktemp)
    "$build_dir/bench/allocator_bench" --benchmark_format=json > "$out"
    python3 - "$out" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
for b in data["benchmarks"]:
    print(f'{b["name"]:40s} {b["real_time"]:12.2f} {b["time_unit"]}')
for b in data["benchmarks"]:
    name = "allocator_" + b["name"].replace("BM_", "").replace("/", "_").lower()
    print(f'RESULT {name} {b["real_time"]:.3f} {b["time_unit"]}')
PY
    rm -f "$out"
    ;;
  master)
    build launch_bench
    "$build_dir/bench/launch_bench" "${@:2}"
    ;;
  *)
    echo "usage: bench/run.sh allocator|master [args]" >&2
    exit 2
    ;;
esac
