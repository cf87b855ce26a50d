#include "allocator/drf_allocator.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rz::allocator {
namespace {

// The dominant share is the largest fraction of any cluster-wide scalar resource held by
// `allocated`. Resources with no capacity are skipped so an empty cluster cannot divide by 0.
double ComputeShare(const Resources& allocated, const Resources& total) {
  double share = 0.0;
  for (const ResourceEntry& entry : allocated.entries()) {
    if (entry.type != ResourceEntry::Type::kScalar) {
      continue;
    }
    const int64_t capacity = total.ScalarFixed(entry.name);
    if (capacity <= 0) {
      continue;
    }
    share = std::max(share, static_cast<double>(allocated.ScalarFixed(entry.name)) /
                                static_cast<double>(capacity));
  }
  return share;
}

}  // namespace

DrfAllocator::DrfAllocator(AllocatorOptions options) : options_(options) {}

absl::Status DrfAllocator::AddAgent(const AgentId& agent, const Resources& total) {
  if (agents_.contains(agent)) {
    return absl::AlreadyExistsError(absl::StrCat("agent '", agent.value(), "' already added"));
  }
  agents_.emplace(agent, AgentEntry{.total = total, .free = total});
  cluster_total_ += total;
  return absl::OkStatus();
}

absl::Status DrfAllocator::RemoveAgent(const AgentId& agent) {
  auto it = agents_.find(agent);
  if (it == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  (void)cluster_total_.Subtract(it->second.total);
  for (auto& [id, framework] : frameworks_) {
    framework.filters.erase(agent);
    if (auto held = framework.allocated_on.find(agent); held != framework.allocated_on.end()) {
      (void)framework.allocated.Subtract(held->second);
      framework.allocated_on.erase(held);
    }
  }
  agents_.erase(it);
  return absl::OkStatus();
}

absl::Status DrfAllocator::AddFramework(const FrameworkId& framework, const std::string& role) {
  if (frameworks_.contains(framework)) {
    return absl::AlreadyExistsError(
        absl::StrCat("framework '", framework.value(), "' already added"));
  }
  frameworks_.emplace(framework, FrameworkEntry{.role = role.empty() ? kDefaultRole : role});
  return absl::OkStatus();
}

absl::Status DrfAllocator::RemoveFramework(const FrameworkId& framework) {
  auto it = frameworks_.find(framework);
  if (it == frameworks_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  for (const auto& [agent, held] : it->second.allocated_on) {
    if (auto a = agents_.find(agent); a != agents_.end()) {
      a->second.free += held;
    }
  }
  frameworks_.erase(it);
  return absl::OkStatus();
}

absl::Status DrfAllocator::SetFrameworkActive(const FrameworkId& framework, bool active) {
  auto it = frameworks_.find(framework);
  if (it == frameworks_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  it->second.active = active;
  return absl::OkStatus();
}

absl::Status DrfAllocator::AddUsed(const FrameworkId& framework, const AgentId& agent,
                                   const Resources& resources) {
  auto f = frameworks_.find(framework);
  if (f == frameworks_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  auto a = agents_.find(agent);
  if (a == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  if (absl::Status status = a->second.free.Subtract(resources); !status.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "agent '", agent.value(), "' has not ", resources.ToString(), " free: ", status.message()));
  }
  f->second.allocated += resources;
  f->second.allocated_on[agent] += resources;
  return absl::OkStatus();
}

void DrfAllocator::Recover(const FrameworkId& framework, const AgentId& agent,
                           const Resources& resources, absl::Time now,
                           absl::Duration refuse_for) {
  // Only what the framework holds on the agent can come back: a recover for a framework or
  // agent removed meanwhile (which freed everything already) is a no-op.
  auto f = frameworks_.find(framework);
  if (f == frameworks_.end()) {
    return;
  }
  auto held = f->second.allocated_on.find(agent);
  if (held == f->second.allocated_on.end() || !held->second.Subtract(resources).ok()) {
    return;
  }
  if (held->second.empty()) {
    f->second.allocated_on.erase(held);
  }
  (void)f->second.allocated.Subtract(resources);
  auto a = agents_.find(agent);
  if (a == agents_.end()) {
    return;
  }
  a->second.free += resources;
  if (refuse_for > absl::ZeroDuration()) {
    f->second.filters[agent].push_back(Filter{.refused = resources, .expires = now + refuse_for});
  }
}

absl::Status DrfAllocator::Suppress(const FrameworkId& framework) {
  auto it = frameworks_.find(framework);
  if (it == frameworks_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  it->second.suppressed = true;
  return absl::OkStatus();
}

absl::Status DrfAllocator::Revive(const FrameworkId& framework) {
  auto it = frameworks_.find(framework);
  if (it == frameworks_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  it->second.suppressed = false;
  it->second.filters.clear();
  return absl::OkStatus();
}

bool DrfAllocator::IsAllocatable(const Resources& resources) const {
  return resources.ScalarFixed("cpus") >= ToFixed(options_.min_allocatable_cpus) ||
         resources.ScalarFixed("mem") >= ToFixed(options_.min_allocatable_mem);
}

bool DrfAllocator::IsFiltered(FrameworkEntry& framework, const AgentId& agent,
                              const Resources& offer, absl::Time now) const {
  auto it = framework.filters.find(agent);
  if (it == framework.filters.end()) {
    return false;
  }
  std::vector<Filter>& filters = it->second;
  filters.erase(std::remove_if(filters.begin(), filters.end(),
                               [now](const Filter& f) { return f.expires <= now; }),
                filters.end());
  for (const Filter& f : filters) {
    if (f.refused.Contains(offer)) {
      return true;
    }
  }
  return false;
}

std::vector<Allocation> DrfAllocator::Allocate(absl::Time now) {
  std::vector<Allocation> result;
  for (auto& [agent_id, agent] : agents_) {
    // Candidates in DRF order: lowest share, then fewest allocations, then id.
    std::vector<std::tuple<double, int64_t, FrameworkId>> order;
    for (const auto& [id, framework] : frameworks_) {
      if (framework.active && !framework.suppressed) {
        order.emplace_back(ComputeShare(framework.allocated, cluster_total_),
                           framework.allocation_count, id);
      }
    }
    std::sort(order.begin(), order.end());
    for (const auto& [share, count, framework_id] : order) {
      FrameworkEntry& framework = frameworks_.at(framework_id);
      Resources offer = agent.free.ReservedFor(kDefaultRole);
      if (framework.role != kDefaultRole) {
        offer += agent.free.ReservedFor(framework.role);
      }
      if (!IsAllocatable(offer) || IsFiltered(framework, agent_id, offer, now)) {
        continue;
      }
      (void)agent.free.Subtract(offer);
      framework.allocated += offer;
      framework.allocated_on[agent_id] += offer;
      ++framework.allocation_count;
      result.push_back(Allocation{.framework = framework_id,
                                  .agent = agent_id,
                                  .role = framework.role,
                                  .resources = std::move(offer)});
      break;  // Whole-agent offers: one framework per agent per pass.
    }
  }
  return result;
}

Resources DrfAllocator::Free(const AgentId& agent) const {
  auto it = agents_.find(agent);
  return it == agents_.end() ? Resources() : it->second.free;
}

Resources DrfAllocator::Allocated(const FrameworkId& framework) const {
  auto it = frameworks_.find(framework);
  return it == frameworks_.end() ? Resources() : it->second.allocated;
}

double DrfAllocator::DominantShare(const FrameworkId& framework) const {
  auto it = frameworks_.find(framework);
  return it == frameworks_.end() ? 0.0 : ComputeShare(it->second.allocated, cluster_total_);
}

}  // namespace rz::allocator
