// DrfAllocator decides which framework is offered which agent's free resources, ordering
// frameworks by dominant share (allocated ÷ cluster total, the largest over resource kinds).
//
// This is the walking-skeleton allocator: flat DRF over frameworks, whole-agent offers, decline
// filters, suppress/revive and a minimum allocatable size. Hierarchical roles with weights,
// quota, reservations and the scale-oriented data structures replace its internals behind this
// same interface (see README.md).
//
// Thread rule: not thread-safe; the master's event loop makes every call. The allocator
// performs no I/O, starts no threads and never reads a clock: time arrives as `now`.
#pragma once

#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/resources.h"

namespace rz::allocator {

struct AllocatorOptions {
  // Smallest offer worth making: at least this many cpus OR this much mem (MB).
  double min_allocatable_cpus = 0.01;
  double min_allocatable_mem = 32;
};

// One offer the allocator decided to make.
struct Allocation {
  FrameworkId framework;
  AgentId agent;
  std::string role;
  Resources resources;
};

class DrfAllocator {
 public:
  explicit DrfAllocator(AllocatorOptions options = {});

  DrfAllocator(const DrfAllocator&) = delete;
  DrfAllocator& operator=(const DrfAllocator&) = delete;

  // Adds an agent whose whole capacity is `total`, all of it free (AddUsed() then accounts for
  // tasks it already runs). Returns AlreadyExists if `agent` is known.
  absl::Status AddAgent(const AgentId& agent, const Resources& total);
  // Forgets an agent; what frameworks held on it leaves their allocation. Returns NotFound if
  // unknown.
  absl::Status RemoveAgent(const AgentId& agent);

  // Adds a framework in `role` ("*" if empty). Returns AlreadyExists if known.
  absl::Status AddFramework(const FrameworkId& framework, const std::string& role);
  // Forgets a framework; whatever it held on agents becomes free. NotFound if unknown.
  absl::Status RemoveFramework(const FrameworkId& framework);
  // An inactive framework (its scheduler is disconnected) keeps its allocation but gets no
  // offers. NotFound if unknown.
  absl::Status SetFrameworkActive(const FrameworkId& framework, bool active);

  // Counts `resources` on `agent` as allocated to `framework` (e.g. tasks found at agent
  // reregistration). NotFound for an unknown agent or framework; FailedPrecondition if the
  // agent has not that much free.
  absl::Status AddUsed(const FrameworkId& framework, const AgentId& agent,
                       const Resources& resources);

  // Returns `resources` on `agent` to the free pool. If `refuse_for` is positive, they are not
  // offered to `framework` again before `now + refuse_for` (a filter blocks only offers that
  // are a subset of what was refused). Only what `framework` holds on `agent` can be
  // recovered; anything else (the agent or framework was removed meanwhile, which freed it
  // already) is ignored, so this never fails.
  void Recover(const FrameworkId& framework, const AgentId& agent, const Resources& resources,
               absl::Time now, absl::Duration refuse_for = absl::ZeroDuration());

  // Suppress stops offers to `framework` until Revive, which also clears its filters.
  absl::Status Suppress(const FrameworkId& framework);
  absl::Status Revive(const FrameworkId& framework);

  // Runs one allocation pass. Offered resources count as allocated until recovered.
  std::vector<Allocation> Allocate(absl::Time now);

  // Introspection for the master's state and for tests.
  Resources Free(const AgentId& agent) const;
  Resources Allocated(const FrameworkId& framework) const;
  double DominantShare(const FrameworkId& framework) const;

 private:
  struct Filter {
    Resources refused;
    absl::Time expires;
  };
  struct AgentEntry {
    Resources total;
    Resources free;
  };
  struct FrameworkEntry {
    std::string role;
    bool active = true;
    bool suppressed = false;
    Resources allocated;        // Over all agents.
    absl::flat_hash_map<AgentId, Resources> allocated_on;  // Per agent; sums to `allocated`.
    int64_t allocation_count = 0;
    absl::flat_hash_map<AgentId, std::vector<Filter>> filters;
  };

  bool IsAllocatable(const Resources& resources) const;
  bool IsFiltered(FrameworkEntry& framework, const AgentId& agent, const Resources& offer,
                  absl::Time now) const;

  const AllocatorOptions options_;
  // Ordered maps so that a given state always allocates the same way.
  absl::btree_map<AgentId, AgentEntry> agents_;
  absl::btree_map<FrameworkId, FrameworkEntry> frameworks_;
  Resources cluster_total_;
};

}  // namespace rz::allocator
