// Allocation pass cost of the skeleton DRF allocator: `agents` agents, `frameworks` frameworks,
// every agent free at the start of each pass (offers are recovered between passes, outside the
// timed region).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "allocator/drf_allocator.h"
#include "benchmark/benchmark.h"

namespace rz::allocator {
namespace {

void BM_AllocatePass(benchmark::State& state) {
  const int agents = static_cast<int>(state.range(0));
  const int frameworks = static_cast<int>(state.range(1));
  DrfAllocator allocator;
  const Resources total = *Resources::Parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]");
  for (int i = 0; i < agents; ++i) {
    (void)allocator.AddAgent(AgentId(absl::StrCat("a", i)), total);
  }
  for (int i = 0; i < frameworks; ++i) {
    (void)allocator.AddFramework(FrameworkId(absl::StrCat("f", i)), absl::StrCat("r", i % 10));
  }
  const absl::Time now = absl::UnixEpoch();
  size_t offers = 0;
  for (auto _ : state) {
    std::vector<Allocation> result = allocator.Allocate(now);
    offers += result.size();
    state.PauseTiming();
    for (const Allocation& a : result) {
      allocator.Recover(a.framework, a.agent, a.resources, now);
    }
    state.ResumeTiming();
  }
  state.counters["offers_per_pass"] =
      benchmark::Counter(static_cast<double>(offers) / static_cast<double>(state.iterations()));
}

BENCHMARK(BM_AllocatePass)
    ->Args({100, 10})
    ->Args({1000, 10})
    ->Args({1000, 100})
    ->Unit(benchmark::kMicrosecond);

void BM_ResourcesContains(benchmark::State& state) {
  const Resources big = *Resources::Parse("cpus:16;mem:65536;disk:100000;ports:[31000-32000]");
  const Resources small = *Resources::Parse("cpus:1;mem:128;ports:[31005-31005]");
  for (auto _ : state) {
    benchmark::DoNotOptimize(big.Contains(small));
  }
}
BENCHMARK(BM_ResourcesContains);

}  // namespace
}  // namespace rz::allocator

BENCHMARK_MAIN();
