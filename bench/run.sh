#!/usr/bin/env bash
# Builds what a benchmark suite needs and runs it. Every figure ends on a line of its own:
#   RESULT <name> <value> <unit>
#
#   bench/run.sh allocator   allocation cycle cost and memory of the hierarchical allocator
#   bench/run.sh master      end-to-end task launch latency and throughput (in-process cluster),
#                            then /state-summary, /tasks pages and /state at 10k agents, 100k tasks
#   bench/run.sh agent       one agent's RUN_TASK -> TASK_RUNNING latency, launch rate and RSS
#                            with real cgroups (needs root; falls back to no isolation, loudly)
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
    # One core (the machine has two, shared): the figures are per-core costs. The binary prints
    # Google Benchmark's table, a summary table, then the RESULT lines. Extra arguments go to
    # it, e.g. --benchmark_filter=decline.
    build allocator_bench
    taskset -c 1 "$build_dir/bench/allocator_bench" "${@:2}"
    ;;
  master)
    # End-to-end launch figures, then the read API at 10,000 agents and 100,000 tasks
    # (master_state_bench; its RESULT lines come last). Extra arguments go to launch_bench;
    # MASTER_STATE_ARGS to master_state_bench (e.g. "--agents=1000").
    build launch_bench master_state_bench
    "$build_dir/bench/launch_bench" "${@:2}"
    # shellcheck disable=SC2086
    "$build_dir/bench/master_state_bench" ${MASTER_STATE_ARGS:-}
    ;;
  agent)
    # The in-process agent with a fake master connection; extra arguments go to the binary,
    # e.g. --latency_tasks=100.
    build agent_bench rz-containerizer-init
    "$build_dir/bench/agent_bench" "${@:2}"
    ;;
  *)
    echo "usage: bench/run.sh allocator|master|agent [args]" >&2
    exit 2
    ;;
esac
