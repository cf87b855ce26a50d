// Allocation-cycle cost and memory of the hierarchical allocator on the shapes of the allocator
// issue (bench/README.md). Every agent is `cpus:24;mem:4096;disk:65536;ports:[31000-32000]`.
//
//   fresh      every agent free, every offer accepted: the timed cycle hands out the whole
//              cluster; between cycles (untimed) the offers are marked used and then recovered
//              (their tasks end), so every timed cycle does the same work.
//   decline    every framework has declined every agent with a 1 hour filter; the timed cycle
//              offers nothing (and must find that out quickly).
//   quota      3k roles with one framework each and quota cpus:8;mem:2048, 3k agents.
//   add_agent  10k AddAgent calls with 1k frameworks registered (no cycle).
//   suppress   1k frameworks of which all but 10 are suppressed, 10k agents.
//   memory     live heap bytes of the allocator at 50k agents x 5k frameworks, counted by the
//              global operator new/delete of this binary.
//
// Setup (adding agents and frameworks, declining) is never timed. Each benchmark builds its
// state once, runs a fixed number of cycles timed one by one (manual time), and reports the
// median. After Google Benchmark's own table, main() prints a summary table and one
// `RESULT <name> <value> <unit>` line per figure (DESIGN.md §10).
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "allocator/hierarchical_allocator.h"
#include "benchmark/benchmark.h"
#include "common/ids.h"
#include "common/resources.h"

// --- Heap accounting ----------------------------------------------------------------------------
//
// Every allocation of the process goes through these replacements, so the live byte count
// before and after building an allocator's state is what that state costs (malloc's usable
// size, i.e. what the heap really hands out, not the requested size).

namespace {

std::atomic<int64_t> g_live_bytes{0};

void* CountedAlloc(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  g_live_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  return p;
}

void* CountedAlignedAlloc(std::size_t size, std::align_val_t align) {
  const auto alignment = static_cast<std::size_t>(align);
  // aligned_alloc wants a size that is a multiple of the alignment.
  const std::size_t rounded =
      (std::max<std::size_t>(size, 1) + alignment - 1) / alignment * alignment;
  void* p = std::aligned_alloc(alignment, rounded);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  g_live_bytes.fetch_add(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  return p;
}

void CountedFree(void* p) {
  if (p == nullptr) {
    return;
  }
  g_live_bytes.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}

}  // namespace

void* operator new(std::size_t size) { return CountedAlloc(size); }
void* operator new[](std::size_t size) { return CountedAlloc(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return CountedAlloc(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t size, std::align_val_t align) {
  return CountedAlignedAlloc(size, align);
}
void* operator new[](std::size_t size, std::align_val_t align) {
  return CountedAlignedAlloc(size, align);
}
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete(void* p, std::align_val_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::align_val_t) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { CountedFree(p); }

namespace rz::allocator {
namespace {

constexpr char kAgentResources[] = "cpus:24;mem:4096;disk:65536;ports:[31000-32000]";
constexpr absl::Duration kLongFilter = absl::Hours(1);
constexpr double kMiB = 1024.0 * 1024.0;

// --- Results ------------------------------------------------------------------------------------

struct Figure {
  double value = 0;
  std::string unit;
  std::string what;  // For the summary table.
};

// By RESULT name; std::map keeps the summary in a stable order.
std::map<std::string, Figure>& Figures() {
  static auto* figures = new std::map<std::string, Figure>();
  return *figures;
}

void Record(const std::string& name, double value, const std::string& unit,
            const std::string& what) {
  Figures()[name] = Figure{value, unit, what};
}

double Median(std::vector<double> values) {
  if (values.empty()) {
    return 0;
  }
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

double MillisSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// --- Cluster building ---------------------------------------------------------------------------

// Role of framework `i` among `roles` roles: "*" for one role, else a two-level tree of 10
// groups of 10 ("g3/r37").
std::string RoleOf(int i, int roles) {
  if (roles <= 1) {
    return kDefaultRole;
  }
  const int r = i % roles;
  return absl::StrCat("g", r % 10, "/r", r);
}

// Ids and resources are made before the allocator so that the memory figure counts only what
// the allocator itself holds.
struct ClusterSpec {
  std::vector<AgentId> agents;
  std::vector<FrameworkId> frameworks;
  std::vector<std::string> framework_roles;
  Resources agent_total;
};

ClusterSpec MakeSpec(int agents, int frameworks, int roles) {
  ClusterSpec spec;
  spec.agent_total = *Resources::Parse(kAgentResources);
  spec.agents.reserve(agents);
  for (int i = 0; i < agents; ++i) {
    spec.agents.emplace_back(absl::StrCat("agent-", i));
  }
  spec.frameworks.reserve(frameworks);
  for (int i = 0; i < frameworks; ++i) {
    spec.frameworks.emplace_back(absl::StrCat("framework-", i));
    spec.framework_roles.push_back(RoleOf(i, roles));
  }
  return spec;
}

// Adds the frameworks then the agents; false (with the state marked skipped) on any error.
bool Populate(benchmark::State& state, const ClusterSpec& spec, HierarchicalAllocator& allocator) {
  for (size_t i = 0; i < spec.frameworks.size(); ++i) {
    FrameworkOptions options;
    options.roles = {spec.framework_roles[i]};
    absl::Status status = allocator.AddFramework(spec.frameworks[i], std::move(options));
    if (!status.ok()) {
      state.SkipWithError(absl::StrCat("AddFramework: ", status.ToString()).c_str());
      return false;
    }
  }
  for (const AgentId& agent : spec.agents) {
    absl::Status status = allocator.AddAgent(agent, spec.agent_total);
    if (!status.ok()) {
      state.SkipWithError(absl::StrCat("AddAgent: ", status.ToString()).c_str());
      return false;
    }
  }
  return true;
}

void AcceptAll(HierarchicalAllocator& allocator, const std::vector<Allocation>& offers) {
  for (const Allocation& offer : offers) {
    allocator.MarkUsed(offer.framework, offer.agent);
  }
}

void RecoverAll(HierarchicalAllocator& allocator, const std::vector<Allocation>& offers,
                absl::Time now, absl::Duration refuse_for = absl::ZeroDuration()) {
  for (const Allocation& offer : offers) {
    allocator.Recover(offer.framework, offer.agent, offer.role, offer.resources, now, refuse_for);
  }
}

std::string Dims(int a, int b) { return absl::StrCat(a, "x", b); }

// Runs the timed loop shared by the cycle benchmarks: each iteration times one Allocate(),
// then (untimed) accepts every offer and recovers it so that the next cycle starts from the
// same state. Returns the per-cycle times in ms; `offers_per_cycle` gets the last count.
std::vector<double> TimeCycles(benchmark::State& state, HierarchicalAllocator& allocator,
                               absl::Time& now, size_t& offers_per_cycle) {
  std::vector<double> times;
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    const auto start = std::chrono::steady_clock::now();
    std::vector<Allocation> offers = allocator.Allocate(now);
    const double ms = MillisSince(start);
    state.SetIterationTime(ms / 1000.0);
    times.push_back(ms);
    offers_per_cycle = offers.size();
    AcceptAll(allocator, offers);
    RecoverAll(allocator, offers, now);
    now += absl::Seconds(1);
  }
  return times;
}

void ReportCycle(benchmark::State& state, const std::string& name, const std::string& what,
                 const std::vector<double>& times, size_t offers) {
  const double median = Median(times);
  state.counters["median_ms"] = median;
  state.counters["min_ms"] = *std::min_element(times.begin(), times.end());
  state.counters["max_ms"] = *std::max_element(times.begin(), times.end());
  state.counters["offers"] = static_cast<double>(offers);
  Record(name, median, "ms", absl::StrCat(what, " (", offers, " offers/cycle)"));
}

// --- Shape 1: fresh cycle, every offer accepted ----------------------------------------------

void FreshCycle(benchmark::State& state, int agents, int frameworks, int roles) {
  const ClusterSpec spec = MakeSpec(agents, frameworks, roles);
  HierarchicalAllocator allocator;
  if (!Populate(state, spec, allocator)) {
    return;
  }
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  // One untimed warm-up cycle, so lazily built indexes do not land in the first sample.
  {
    std::vector<Allocation> offers = allocator.Allocate(now);
    AcceptAll(allocator, offers);
    RecoverAll(allocator, offers, now);
    now += absl::Seconds(1);
  }
  size_t offers = 0;
  const std::vector<double> times = TimeCycles(state, allocator, now, offers);
  const std::string suffix = roles > 1 ? absl::StrCat(".roles", roles) : "";
  ReportCycle(state,
              absl::StrCat("allocator.fresh.", Dims(agents, frameworks), suffix, ".cycle_ms"),
              absl::StrCat("fresh cycle, ", agents, " agents x ", frameworks, " frameworks, ",
                           roles, roles > 1 ? " roles" : " role"),
              times, offers);
}

// --- Shape 2: everything declined with a long filter -----------------------------------------

void DeclineCycle(benchmark::State& state, int agents, int frameworks) {
  const ClusterSpec spec = MakeSpec(agents, frameworks, 1);
  HierarchicalAllocator allocator;
  if (!Populate(state, spec, allocator)) {
    return;
  }
  // Each cycle hands every agent to some framework that has not refused it yet; declining all
  // of them with a 1 hour filter, after about `frameworks` cycles every pair is filtered.
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  const int64_t bytes_before_filters = g_live_bytes.load();
  const auto setup_start = std::chrono::steady_clock::now();
  int setup_cycles = 0;
  int64_t declined = 0;
  for (;;) {
    std::vector<Allocation> offers = allocator.Allocate(now);
    if (offers.empty()) {
      break;
    }
    declined += static_cast<int64_t>(offers.size());
    RecoverAll(allocator, offers, now, kLongFilter);
    now += absl::Milliseconds(100);
    if (++setup_cycles > 2 * frameworks + 10) {
      state.SkipWithError("declined offers keep coming back");
      return;
    }
  }
  const double filters_mb = static_cast<double>(g_live_bytes.load() - bytes_before_filters) / kMiB;
  const double setup_ms = MillisSince(setup_start);
  if (declined < static_cast<int64_t>(agents) * frameworks) {
    state.SkipWithError(absl::StrCat("only ", declined, " offers declined, expected ",
                                     static_cast<int64_t>(agents) * frameworks)
                            .c_str());
    return;
  }
  size_t offers = 0;
  const std::vector<double> times = TimeCycles(state, allocator, now, offers);
  if (offers != 0) {
    state.SkipWithError("a declined agent was offered again");
    return;
  }
  state.counters["setup_cycles"] = setup_cycles;
  state.counters["filters_mb"] = filters_mb;
  ReportCycle(state, absl::StrCat("allocator.decline.", Dims(agents, frameworks), ".cycle_ms"),
              absl::StrCat("cycle after every framework declined every agent, ", agents,
                           " agents x ", frameworks, " frameworks"),
              times, offers);
  Record(absl::StrCat("allocator.decline.", Dims(agents, frameworks), ".filters_mb"), filters_mb,
         "MB", absl::StrCat("heap growth for ", declined, " declines with a 1 h filter"));
  Record(absl::StrCat("allocator.decline.", Dims(agents, frameworks), ".per_decline_us"),
         setup_ms * 1000.0 / static_cast<double>(declined), "us",
         absl::StrCat("building that state, per declined offer (", setup_cycles,
                      " cycles offering everything + Recover with a filter)"));
}

// --- Shape 3: quota ----------------------------------------------------------------------------

// One framework per role "q<i>"; each role's quota is cpus:8;mem:2048, as a limit and (with
// `guarantee`) also as a guarantee — the latter is Mesos 1.7's quota, which was both at once.
void QuotaCycle(benchmark::State& state, int agents, int roles, bool guarantee) {
  ClusterSpec spec = MakeSpec(agents, roles, 1);
  for (int i = 0; i < roles; ++i) {
    spec.framework_roles[i] = absl::StrCat("q", i);
  }
  HierarchicalAllocator allocator;
  const Resources amount = *Resources::Parse("cpus:8;mem:2048");
  Quota quota;
  quota.limit = amount;
  if (guarantee) {
    quota.guarantee = amount;
  }
  for (int i = 0; i < roles; ++i) {
    absl::Status status = allocator.SetQuota(spec.framework_roles[i], quota);
    if (!status.ok()) {
      state.SkipWithError(absl::StrCat("SetQuota: ", status.ToString()).c_str());
      return;
    }
  }
  if (!Populate(state, spec, allocator)) {
    return;
  }
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  {
    std::vector<Allocation> offers = allocator.Allocate(now);
    AcceptAll(allocator, offers);
    RecoverAll(allocator, offers, now);
    now += absl::Seconds(1);
  }
  size_t offers = 0;
  const std::vector<double> times = TimeCycles(state, allocator, now, offers);
  const std::string dims = absl::StrCat(agents, "x", roles, "x", roles);
  ReportCycle(
      state,
      absl::StrCat("allocator.", guarantee ? "quota." : "quota_limit_only.", dims, ".cycle_ms"),
      absl::StrCat("quota cycle, ", agents, " agents x ", roles, " roles x ", roles,
                   " frameworks, ",
                   guarantee ? "guarantee = limit = cpus:8;mem:2048"
                             : "limit cpus:8;mem:2048, no guarantee"),
      times, offers);
}

// --- Shape 4: adding agents one by one -------------------------------------------------------

void AddAgents(benchmark::State& state, int agents, int frameworks) {
  const ClusterSpec spec = MakeSpec(agents, frameworks, 1);
  ClusterSpec frameworks_only = spec;
  frameworks_only.agents.clear();
  std::vector<double> totals;
  std::vector<double> per_call_us;
  per_call_us.reserve(static_cast<size_t>(agents) * 8);
  // Manual time: only the AddAgent calls count, not building or destroying the allocator.
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    auto allocator = std::make_unique<HierarchicalAllocator>();
    if (!Populate(state, frameworks_only, *allocator)) {
      return;
    }
    double total_ms = 0;
    for (const AgentId& agent : spec.agents) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status status = allocator->AddAgent(agent, spec.agent_total);
      const double ms = MillisSince(start);
      total_ms += ms;
      per_call_us.push_back(ms * 1000.0);
      if (!status.ok()) {
        state.SkipWithError(absl::StrCat("AddAgent: ", status.ToString()).c_str());
        return;
      }
    }
    state.SetIterationTime(total_ms / 1000.0);
    totals.push_back(total_ms);
  }
  std::sort(per_call_us.begin(), per_call_us.end());
  const double p99 = per_call_us[per_call_us.size() * 99 / 100];
  const double total = Median(totals);
  const double mean_us = total * 1000.0 / agents;
  state.counters["median_ms"] = total;
  state.counters["per_agent_us"] = mean_us;
  state.counters["p99_us"] = p99;
  const std::string dims = Dims(agents, frameworks);
  Record(absl::StrCat("allocator.add_agent.", dims, ".total_ms"), total, "ms",
         absl::StrCat(agents, " AddAgent calls, ", frameworks, " frameworks registered"));
  Record(absl::StrCat("allocator.add_agent.", dims, ".per_agent_us"), mean_us, "us",
         "one AddAgent call, mean");
  Record(absl::StrCat("allocator.add_agent.", dims, ".p99_us"), p99, "us",
         "one AddAgent call, 99th percentile");
}

// --- Shape 5: nearly everyone suppressed -----------------------------------------------------

void SuppressCycle(benchmark::State& state, int agents, int frameworks, int unsuppressed) {
  const ClusterSpec spec = MakeSpec(agents, frameworks, 1);
  HierarchicalAllocator allocator;
  if (!Populate(state, spec, allocator)) {
    return;
  }
  for (int i = unsuppressed; i < frameworks; ++i) {
    absl::Status status = allocator.Suppress(spec.frameworks[i]);
    if (!status.ok()) {
      state.SkipWithError(absl::StrCat("Suppress: ", status.ToString()).c_str());
      return;
    }
  }
  absl::Time now = absl::UnixEpoch() + absl::Hours(1);
  {
    std::vector<Allocation> offers = allocator.Allocate(now);
    AcceptAll(allocator, offers);
    RecoverAll(allocator, offers, now);
    now += absl::Seconds(1);
  }
  size_t offers = 0;
  const std::vector<double> times = TimeCycles(state, allocator, now, offers);
  ReportCycle(state, absl::StrCat("allocator.suppress.", Dims(agents, frameworks), ".cycle_ms"),
              absl::StrCat("fresh cycle, ", agents, " agents x ", frameworks,
                           " frameworks, all but ", unsuppressed, " suppressed"),
              times, offers);
}

// --- Memory -------------------------------------------------------------------------------------

void AllocatorMemory(benchmark::State& state, int agents, int frameworks, int roles) {
  const ClusterSpec spec = MakeSpec(agents, frameworks, roles);
  double empty_mb = 0;
  double loaded_mb = 0;
  for (auto _ : state) {  // NOLINT(clang-analyzer-deadcode.DeadStores)
    const int64_t before = g_live_bytes.load();
    auto allocator = std::make_unique<HierarchicalAllocator>();
    if (!Populate(state, spec, *allocator)) {
      return;
    }
    empty_mb = static_cast<double>(g_live_bytes.load() - before) / kMiB;
    const auto start = std::chrono::steady_clock::now();
    {
      std::vector<Allocation> offers = allocator->Allocate(absl::UnixEpoch() + absl::Hours(1));
      state.SetIterationTime(MillisSince(start) / 1000.0);
      state.counters["offers"] = static_cast<double>(offers.size());
      AcceptAll(*allocator, offers);
    }
    // Every agent now allocated to some framework (tasks running): the steady state of a busy
    // cluster, which is what the memory target is about.
    loaded_mb = static_cast<double>(g_live_bytes.load() - before) / kMiB;
    allocator.reset();
  }
  state.counters["empty_mb"] = empty_mb;
  state.counters["loaded_mb"] = loaded_mb;
  const std::string dims = Dims(agents, frameworks);
  Record(absl::StrCat("allocator.memory.", dims, ".mb"), loaded_mb, "MB",
         absl::StrCat("allocator heap, ", agents, " agents x ", frameworks, " frameworks (", roles,
                      " roles), every agent allocated"));
  Record(absl::StrCat("allocator.memory_idle.", dims, ".mb"), empty_mb, "MB",
         "allocator heap, same state before the first cycle");
}

// --- Registration -------------------------------------------------------------------------------

void Register() {
  // Iterations per benchmark: enough for a stable median, few enough that the whole suite runs
  // in a few minutes on one core.
  const auto cycles_for = [](int agents) { return agents >= 50000 ? 7 : agents >= 10000 ? 9 : 15; };
  for (int roles : {1, 100}) {
    for (int agents : {1000, 10000, 50000}) {
      for (int frameworks : {100, 1000, 5000}) {
        benchmark::RegisterBenchmark(
            absl::StrCat("fresh/agents:", agents, "/frameworks:", frameworks, "/roles:", roles)
                .c_str(),
            [=](benchmark::State& state) { FreshCycle(state, agents, frameworks, roles); })
            ->Iterations(cycles_for(agents))
            ->UseManualTime()
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (const auto& shape : {std::pair{1000, 100}, std::pair{1000, 1000}, std::pair{10000, 100},
                            std::pair{10000, 1000}}) {
    const int agents = shape.first;
    const int frameworks = shape.second;
    benchmark::RegisterBenchmark(
        absl::StrCat("decline/agents:", agents, "/frameworks:", frameworks).c_str(),
        [=](benchmark::State& state) { DeclineCycle(state, agents, frameworks); })
        ->Iterations(15)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  for (bool guarantee : {true, false}) {
    benchmark::RegisterBenchmark(
        absl::StrCat(guarantee ? "quota" : "quota_limit_only", "/agents:3000/roles:3000").c_str(),
        [=](benchmark::State& state) { QuotaCycle(state, 3000, 3000, guarantee); })
        ->Iterations(5)
        ->UseManualTime()
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::RegisterBenchmark("add_agent/agents:10000/frameworks:1000",
                               [](benchmark::State& state) { AddAgents(state, 10000, 1000); })
      ->Iterations(5)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(
      "suppress/agents:10000/frameworks:1000/unsuppressed:10",
      [](benchmark::State& state) { SuppressCycle(state, 10000, 1000, 10); })
      ->Iterations(9)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark(
      "memory/agents:50000/frameworks:5000/roles:100",
      [](benchmark::State& state) { AllocatorMemory(state, 50000, 5000, 100); })
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

void PrintResults() {
  std::printf("\n%-58s %12s  %s\n", "figure", "value", "what");
  for (const auto& [name, figure] : Figures()) {
    std::printf("%-58s %9.3f %-2s  %s\n", name.c_str(), figure.value, figure.unit.c_str(),
                figure.what.c_str());
  }
  std::printf("\n");
  for (const auto& [name, figure] : Figures()) {
    std::printf("RESULT %s %.3f %s\n", name.c_str(), figure.value, figure.unit.c_str());
  }
  std::fflush(stdout);
}

}  // namespace
}  // namespace rz::allocator

int main(int argc, char** argv) {
  rz::allocator::Register();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) {
    return 1;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  rz::allocator::PrintResults();
  return 0;
}
