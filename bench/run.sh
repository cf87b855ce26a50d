#!/usr/bin/env bash
# Builds what a benchmark suite needs and runs it. Every figure ends on a line of its own:
#   RESULT <name> <value> <unit>
#
#   bench/run.sh allocator   allocation cycle cost and memory of the hierarchical allocator
#   bench/run.sh master      end-to-end task launch latency and throughput (in-process cluster),
#                            then /state-summary, /tasks pages and /state at 10k agents, 100k tasks
#   bench/run.sh agent       one agent's RUN_TASK -> TASK_RUNNING latency, launch rate and RSS
#                            with real cgroups (needs root; falls back to no isolation, loudly)
#   bench/run.sh ha          kill -9 of the leading master (3 rz-master processes, a 3-server
#                            ZooKeeper ensemble): time to the new leader's first offer, and until
#                            1,000 and 10,000 simulated agents have reregistered
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
  ha)
    # Real ZooKeeper servers and rz-master processes on loopback; the simulated agents and the
    # scheduler live in ha_bench. Extra arguments go to it, e.g. --agents=1000 --runs=3
    # --zk_servers=1 (see bench/README.md).
    build ha_bench rz-master
    "$build_dir/bench/ha_bench" --master_binary="$build_dir/src/master/rz-master" "${@:2}"
    ;;
  *)
    echo "usage: bench/run.sh allocator|master|agent|ha [args]" >&2
    exit 2
    ;;
esac
