// HierarchicalAllocator decides which framework is offered which agent's free resources, by
// weighted Dominant Resource Fairness over a tree of roles, honouring quota guarantees and
// limits, reservations, refusal filters, suppression, minimum allocatable sizes and offer
// constraints on agent attributes. It replaces the walking skeleton's DrfAllocator.
//
// Roles form a tree by path ("eng/web" is a child of "eng"; "*" is the default role, a top-level
// leaf). At each level, sibling subtrees are ordered by (dominant share ÷ weight, allocation
// count, name); inside a role, its frameworks by the same rule. Share = max over fair-share
// resource kinds of allocated ÷ cluster total, where allocated includes outstanding offers.
//
// A cycle (Allocate) runs two stages:
//   1. Quota guarantees: roles whose consumption is below their guarantee are offered first,
//      up to the unmet guarantee.
//   2. Fair shares: every remaining eligible (agent, role, framework) triple in DRF order; at
//      most one offer per (agent, role, framework) per cycle. Unreserved resources needed to
//      keep other roles' unmet guarantees satisfiable (headroom) are held back.
// In both stages quota limits are never exceeded (offers are cut to fit) and reserved resources
// go only to the reserving role and its descendants, never counting toward another role's
// quota. Consumption of a role = allocated to its subtree + reservations of its subtree
// (Consumed()).
//
// Thread rule: not thread-safe; the master's event loop makes every call. The allocator performs
// no I/O, starts no threads and never reads a clock: time arrives as `now`.
//
// Data layout (for the figures in bench/README.md): scalar quantities are fixed-point vectors
// indexed by resource kind; per-agent free capacity and per-role/per-framework allocation are
// kept incrementally; sort orders are maintained incrementally; filtered and suppressed
// (agent, framework) pairs are skipped through indexes, not probed one by one.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/resources.h"

namespace rz::allocator {

// A lower bound for an offer: an offer is made only if it holds at least one of these
// quantities in full (e.g. cpus 0.01 OR mem 32). Empty means "anything non-empty".
using MinAllocatable = std::vector<Resources>;

struct AllocatorOptions {
  // Global minimum: by default cpus:0.01 OR mem:32.
  MinAllocatable min_allocatable = {*Resources::Parse("cpus:0.01"), *Resources::Parse("mem:32")};
  // Scalar resource names left out of share computation (e.g. "gpus", so that a framework
  // holding a cluster's only GPU is not starved of CPUs).
  std::vector<std::string> fair_share_excluded;
};

// A requirement on an agent attribute; agents failing any of a framework's constraints for a
// role are never offered to that framework in that role.
struct AttributeConstraint {
  enum class Op { kExists, kNotExists, kEquals, kNotEquals, kMatches };
  std::string attribute;
  Op op = Op::kExists;
  std::string value;  // kEquals/kNotEquals: text; kMatches: an RE2-free ECMAScript regex.
};

// Agent attributes by name, in text form.
using Attributes = absl::flat_hash_map<std::string, std::string>;

struct FrameworkOptions {
  std::vector<std::string> roles;  // At least one; "*" for the default role.
  bool active = true;              // Inactive frameworks keep allocations, get no offers.
  // Per-role minimum allocatable, overriding the global one (may be lower, to take small
  // leftovers).
  absl::flat_hash_map<std::string, MinAllocatable> min_allocatable;
  // Per-role offer constraints.
  absl::flat_hash_map<std::string, std::vector<AttributeConstraint>> constraints;
  // Most outstanding offers at once; 0 = unlimited. Counted by the allocator: an offer counts
  // from Allocate() until its resources are all recovered or marked used (see Recover/Used).
  int max_outstanding_offers = 0;
};

// Quota of one role. Only scalar entries matter; a name absent from `limit` is unlimited.
struct Quota {
  Resources guarantee;
  Resources limit;
};

// One offer the allocator decided to make.
struct Allocation {
  FrameworkId framework;
  AgentId agent;
  std::string role;
  Resources resources;  // Entries keep their reservation role.
};

// What the master exposes per role (and tests check).
struct RoleStats {
  std::string role;
  double weight = 1.0;
  Resources allocated;  // By the role's subtree, offers included.
  Resources reserved;   // Reservations of the role's subtree, on all agents.
  Resources consumed;   // Consumed(role).
  Quota quota;
  // Allocation cycles since the role's subtree last received an offer; 0 if it did in the
  // last cycle. Grows while the role starves.
  int64_t cycles_since_last_offer = 0;
};

struct CycleStats {
  int64_t cycle = 0;        // Cycles run so far.
  int64_t offers = 0;       // Made in the last cycle.
  int64_t agents_considered = 0;
  int64_t active_filters = 0;
};

class HierarchicalAllocator {
 public:
  explicit HierarchicalAllocator(AllocatorOptions options = {});
  ~HierarchicalAllocator();

  HierarchicalAllocator(const HierarchicalAllocator&) = delete;
  HierarchicalAllocator& operator=(const HierarchicalAllocator&) = delete;

  // --- Agents ----------------------------------------------------------------------------------

  // Adds an agent with capacity `total` (statically reserved entries carry their role), all of
  // it free. AlreadyExists if known; InvalidArgument for an empty total.
  absl::Status AddAgent(const AgentId& agent, const Resources& total,
                        const Attributes& attributes = {});
  // Forgets an agent; what frameworks held there leaves their allocation. NotFound if unknown.
  absl::Status RemoveAgent(const AgentId& agent);
  // A deactivated (or draining) agent keeps its allocations but is never offered. NotFound.
  absl::Status SetAgentActive(const AgentId& agent, bool active);

  // Dynamic reservation of free resources on an agent (an operator RESERVE): `resources` are
  // unreserved free resources that become reserved for `role`; UNRESERVE is the reverse
  // (`resources` carry the role). FailedPrecondition if not free there; NotFound if unknown.
  absl::Status ReserveFree(const AgentId& agent, const Resources& resources,
                           const std::string& role);
  absl::Status UnreserveFree(const AgentId& agent, const Resources& reserved);

  // A RESERVE/UNRESERVE operation on offered resources: `from` (held by `framework` on
  // `agent` in `role`) is replaced by `to` (same quantities, other reservation). The agent's
  // total changes accordingly. FailedPrecondition if `framework` does not hold `from`.
  absl::Status UpdateAllocation(const FrameworkId& framework, const AgentId& agent,
                                const std::string& role, const Resources& from,
                                const Resources& to);

  // --- Frameworks ------------------------------------------------------------------------------

  // AlreadyExists if known; InvalidArgument for no roles or an invalid role.
  absl::Status AddFramework(const FrameworkId& framework, FrameworkOptions options);
  // Replaces the options (roles may change; allocations in removed roles are kept until
  // recovered). NotFound if unknown.
  absl::Status UpdateFramework(const FrameworkId& framework, FrameworkOptions options);
  // Forgets a framework; whatever it held becomes free. NotFound if unknown.
  absl::Status RemoveFramework(const FrameworkId& framework);
  absl::Status SetFrameworkActive(const FrameworkId& framework, bool active);

  // Counts `resources` on `agent` as allocated to `framework` in `role` (tasks found at agent
  // reregistration). NotFound for unknown ids; FailedPrecondition if not that much is free.
  absl::Status AddUsed(const FrameworkId& framework, const AgentId& agent,
                       const std::string& role, const Resources& resources);

  // Offered resources now used by tasks: they stay allocated but no longer count toward the
  // framework's outstanding offers. Unknown ids are ignored.
  void MarkUsed(const FrameworkId& framework, const AgentId& agent);

  // Returns `resources` (held by `framework` on `agent` in `role`) to the free pool. If
  // `refuse_for` is positive they are not offered to `framework` in `role` again before
  // max(now + refuse_for, the next cycle): a filter blocks only offers that are a subset of
  // what was refused. Only what the framework holds can be recovered; anything else is
  // ignored, so this never fails. Also ends the framework's outstanding offer on `agent`.
  void Recover(const FrameworkId& framework, const AgentId& agent, const std::string& role,
               const Resources& resources, absl::Time now,
               absl::Duration refuse_for = absl::ZeroDuration());

  // Suppress stops offers to `framework` in `roles` (empty: all its roles) until Revive, which
  // also clears the filters of those roles. NotFound if unknown; InvalidArgument for a role
  // the framework is not in.
  absl::Status Suppress(const FrameworkId& framework, const std::vector<std::string>& roles = {});
  absl::Status Revive(const FrameworkId& framework, const std::vector<std::string>& roles = {});

  // --- Roles -----------------------------------------------------------------------------------

  // Weight of a role path (> 0; default 1). InvalidArgument for a bad role or weight.
  absl::Status SetWeight(const std::string& role, double weight);
  // Quota of a role; an empty Quota removes it. InvalidArgument if a guarantee exceeds its
  // limit, a quantity is negative, or the role is "*".
  absl::Status SetQuota(const std::string& role, const Quota& quota);

  // --- Allocation ------------------------------------------------------------------------------

  // Runs one allocation cycle. Offered resources count as allocated until recovered.
  std::vector<Allocation> Allocate(absl::Time now);

  // --- Observability ---------------------------------------------------------------------------

  // allocated + reserved of `role`'s subtree (the quantity quota applies to).
  Resources Consumed(const std::string& role) const;
  // Every role that has frameworks, weights, quota, reservations or allocations, sorted by
  // name.
  std::vector<RoleStats> Roles() const;
  const CycleStats& last_cycle() const;
  Resources Free(const AgentId& agent) const;
  Resources Allocated(const FrameworkId& framework) const;

 private:
  // Implementation-defined members (no pimpl; see STYLE.md).
};

}  // namespace rz::allocator
