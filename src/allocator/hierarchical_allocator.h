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

#include <regex.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "allocator/scalar_vector.h"
#include "allocator/stable_vector.h"
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
  // kEquals/kNotEquals: text; kMatches: a POSIX extended regex (regcomp REG_EXTENDED, no
  // exceptions) that must match the whole value.
  std::string value;
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
  // Scalar names limited to 0 (Resources drops zero amounts, so `limit` cannot say it).
  std::vector<std::string> zero_limit;
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
  int64_t cycle = 0;   // Cycles run so far.
  int64_t offers = 0;  // Made in the last cycle.
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
  absl::Status AddUsed(const FrameworkId& framework, const AgentId& agent, const std::string& role,
                       const Resources& resources);

  // Offered resources now used by tasks: they stay allocated but no longer count toward the
  // framework's outstanding offers on `agent` in `role` (every role when empty). Unknown ids
  // are ignored.
  void MarkUsed(const FrameworkId& framework, const AgentId& agent, const std::string& role = "");

  // Returns `resources` (held by `framework` on `agent` in `role`) to the free pool. If
  // `refuse_for` is positive they are not offered to `framework` in `role` again before
  // max(now + refuse_for, the next cycle): a filter blocks only offers that are a subset of
  // what was refused. Only what the framework holds can be recovered; anything else is
  // ignored, so this never fails. With `ends_offer` (resources of a declined, rescinded or
  // partly used offer) it also ends the framework's outstanding offer on `agent` in `role`;
  // resources of a finished task pass false.
  void Recover(const FrameworkId& framework, const AgentId& agent, const std::string& role,
               const Resources& resources, absl::Time now,
               absl::Duration refuse_for = absl::ZeroDuration(), bool ends_offer = true);

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
  static constexpr uint32_t kNone = 0xffffffffu;
  static constexpr uint32_t kRoot = 0;        // The role tree's root node (not a role).
  static constexpr uint32_t kPseudo = kNone;  // Sorter id of a role's own frameworks.

  // Position in a sorter: (share ÷ weight, allocation count, name). `id` is a role node, a
  // pair or kPseudo. The name is compared through its rank (see `name_ranks_`), which orders
  // like the string: ties on share and count are common (every framework of a fresh cluster),
  // and a string compare per btree step dominated the cycle.
  struct SortKey {
    double share = 0.0;
    int64_t count = 0;
    uint64_t rank = 0;
    uint32_t id = 0;
    friend bool operator<(const SortKey& a, const SortKey& b) {
      if (a.share != b.share) {
        return a.share < b.share;
      }
      if (a.count != b.count) {
        return a.count < b.count;
      }
      if (a.rank != b.rank) {
        return a.rank < b.rank;
      }
      return a.id < b.id;
    }
  };

  // A name's place in the tie-break order and how many frameworks or roles use it.
  struct NameRank {
    uint64_t rank = 0;
    int64_t refs = 0;
  };

  struct KindAmount {
    uint32_t kind;
    int64_t amount;
  };

  struct RoleNode {
    std::string path;     // "" for the root.
    std::string segment;  // Last path segment; sorts siblings.
    uint64_t rank = 0;    // Of `segment`.
    uint32_t parent = kNone;
    absl::flat_hash_map<std::string, uint32_t> children;  // By segment.
    double weight = 1.0;
    bool weight_set = false;
    bool has_quota = false;
    Quota quota;
    std::vector<KindAmount> guarantee;  // By kind, quantities.
    std::vector<KindAmount> limit;      // Kinds absent are unlimited.
    ScalarVector alloc;        // Subtree: everything allocated, offers included (the share).
    ScalarVector alloc_unres;  // Subtree: the unreserved part of `alloc`.
    ScalarVector own_alloc;    // The role's own frameworks (its pseudo-child's share).
    ScalarVector reserved;     // Subtree: reservations on all agents.
    int64_t count = 0;         // Subtree allocation count.
    int64_t own_count = 0;
    int32_t candidates = 0;  // Candidate pairs in the subtree.
    int32_t own_candidates = 0;
    int32_t pairs = 0;  // Subscribed pairs of this role, in any state.
    // Children with candidates, plus the pseudo-child when own_candidates > 0.
    absl::btree_set<SortKey> children_sorter;
    absl::btree_set<SortKey> framework_sorter;  // Own candidate pairs.
    SortKey key;         // In the parent's children_sorter while candidates > 0.
    SortKey pseudo_key;  // In children_sorter while own_candidates > 0.
    int64_t last_offer_cycle = 0;
  };

  struct RegexDeleter {
    void operator()(regex_t* regex) const;
  };
  struct CompiledConstraint {
    std::string attribute;
    AttributeConstraint::Op op = AttributeConstraint::Op::kExists;
    std::string value;
    std::unique_ptr<regex_t, RegexDeleter> regex;  // kMatches only.
  };

  struct Holding {
    Resources resources;
    int32_t outstanding = 0;  // Offers not yet recovered or marked used.
    // The cycle that last offered here and that offer's index in `result_`: stage-1 and
    // stage-2 offers to the same (agent, role, framework) merge into one Allocation.
    int64_t offer_cycle = 0;
    size_t offer_index = 0;
  };

  // A (framework, role) pair: the unit that sorters order and offers go to.
  struct Pair {
    uint32_t framework = kNone;
    uint32_t role = kNone;
    bool live = false;
    bool subscribed = false;  // The role is among the framework's current roles.
    bool suppressed = false;
    bool candidate = false;  // In its role's framework_sorter.
    ScalarVector alloc;
    int64_t count = 0;
    SortKey key;
    absl::flat_hash_map<uint32_t, Holding> held;  // By agent.
    bool has_min = false;
    std::vector<ScalarVector> min;
    std::vector<CompiledConstraint> constraints;
  };

  struct Framework {
    FrameworkId id;
    uint64_t rank = 0;  // Of `id`.
    bool live = false;
    bool active = true;
    int max_outstanding = 0;
    int outstanding = 0;
    std::vector<std::pair<std::string, uint32_t>> pairs;  // Role path → pair.
  };

  struct FilterRecord {
    uint32_t refused;  // Into refused_.
    int64_t created_cycle;
    int64_t expiry_ns;  // Unix nanoseconds.
  };
  struct AgentFilters {
    absl::btree_multimap<uint32_t, FilterRecord> by_pair;
    std::vector<uint64_t> has_bits;      // Pair has a filter here.
    std::vector<uint64_t> blocked_bits;  // A filter holds the pair's whole offer from `snapshot`.
    Resources snapshot;                  // Free resources `blocked_bits` were computed for.
    bool snapshot_valid = false;
    int64_t min_expiry_ns = 0;
  };

  struct Agent {
    AgentId id;
    bool live = false;
    bool active = true;
    Resources total;
    Resources free;
    Attributes attributes;
    ScalarVector total_scalars;
    ScalarVector free_unres;
    std::vector<std::pair<uint32_t, ScalarVector>> free_reserved;  // Role node → free scalars.
    std::vector<std::pair<uint32_t, ScalarVector>> reserved;       // Role node → reserved.
    bool unres_nonscalar_free = false;
    bool reserved_nonscalar_free = false;
    std::vector<uint32_t> holders;  // Pairs holding something here.
    uint64_t version = 1;           // Bumped whenever what a cycle could offer here changes.
    uint64_t skip_version = 0;      // `version`/`epoch_` when every candidate was blocked.
    uint64_t skip_epoch = 0;
    std::unique_ptr<AgentFilters> filters;
  };

  struct Refused {
    Resources resources;
    std::string key;
    int64_t refs = 0;
  };

  struct OfferPlan {
    ScalarVector unres;  // Unreserved scalars to take (cut to limits and headroom).
    ScalarVector total;  // `unres` plus the reserved scalars taken.
    bool reserved = false;
    bool nonscalar = false;
  };

  struct Visit;  // One agent's walk in a cycle (defined in the .cc).

  // Registry and conversions.
  uint64_t AcquireRank(const std::string& name);
  void ReleaseRank(const std::string& name);
  void Renumber();
  uint32_t Kind(const std::string& name);
  void SplitScalars(const Resources& resources, ScalarVector* unres, ScalarVector* all);
  Resources ToResources(const ScalarVector& scalars) const;
  double Share(const ScalarVector& allocated) const;
  void RecomputeTotals();

  // Roles.
  uint32_t FindRole(const std::string& path) const;
  uint32_t EnsureRole(const std::string& path);
  bool IsAncestorOrSelf(uint32_t ancestor, uint32_t role) const;
  ScalarVector Consumption(uint32_t role) const;
  int64_t Unmet(const RoleNode& node, uint32_t kind) const;
  bool HasUnmetGuarantee(const RoleNode& node) const;

  // Sorters.
  SortKey PairKey(uint32_t pair) const;
  SortKey NodeKey(uint32_t node) const;
  SortKey PseudoKey(uint32_t node) const;
  // Moves `*key` to `updated` in `sorter` (nothing to do if they compare equal).
  static void Rekey(absl::btree_set<SortKey>& sorter, SortKey* key, const SortKey& updated);
  void RekeyPair(uint32_t pair);
  void RekeyChain(uint32_t role);
  void SetCandidate(uint32_t pair, bool candidate);
  void RefreshCandidates(uint32_t framework);
  void RebuildSorters();

  // Accounting.
  void Account(uint32_t pair, const ScalarVector& unres, const ScalarVector& all, int sign);
  void RefreshAgentFree(Agent& agent);
  void ReturnToAgent(uint32_t agent, const Resources& resources);
  void ChangeReserved(Agent& agent, const Resources& resources, int sign);
  void EndOutstanding(uint32_t pair, Holding& holding);
  // The (framework, role) pair of `framework` in `role`, or kNone.
  uint32_t PairOf(uint32_t framework, const std::string& role) const;
  // The pair of `framework` in `role` and the index of `agent`: NotFound for an unknown id,
  // InvalidArgument when the framework is not in `role`.
  absl::Status FindPairOnAgent(const FrameworkId& framework, const AgentId& agent,
                               const std::string& role, uint32_t* pair,
                               uint32_t* agent_index) const;
  void DropHolding(uint32_t pair, uint32_t agent);

  // Frameworks.
  absl::Status ValidateOptions(const FrameworkId& framework, const FrameworkOptions& options);
  absl::StatusOr<std::vector<CompiledConstraint>> Compile(
      const FrameworkId& framework, const std::vector<AttributeConstraint>& constraints);
  void ApplyOptions(uint32_t framework, FrameworkOptions options);
  absl::StatusOr<std::vector<uint32_t>> PairsFor(const FrameworkId& framework,
                                                 const std::vector<std::string>& roles);
  bool ConstraintsHold(const Pair& pair, const Agent& agent) const;

  // Filters.
  uint32_t Intern(const Resources& refused);
  void Release(uint32_t refused);
  void AddFilter(uint32_t agent, uint32_t pair, const Resources& refused, absl::Time expiry);
  void ClearPairFilters(uint32_t pair);
  void DropAgentFilters(Agent& agent);
  void RecomputeBlocked(Agent& agent);
  Resources MaxOffer(const Resources& free, uint32_t role) const;
  bool FilterBlocks(const AgentFilters& filters, uint32_t pair, const Resources& offer) const;

  // The cycle.
  void PrepareAgent(Agent& agent, int64_t now_ns);
  bool LimitedOut(uint32_t node, const Agent& agent) const;
  bool Walk(uint32_t node, Visit& visit);
  bool Try(uint32_t pair, Visit& visit);
  bool Plan(uint32_t pair, const Visit& visit, OfferPlan* plan) const;
  bool Allocatable(const Pair& pair, const OfferPlan& plan) const;
  static bool WholeOffer(const Agent& agent, const OfferPlan& plan);
  Resources BuildOffer(const Agent& agent, uint32_t role, const OfferPlan& plan);
  void Offer(uint32_t pair, Visit& visit, const OfferPlan& plan);
  void FinishAgent();
  bool Exhausted(const Agent& agent) const;

  // Every framework id and role path segment, plus "." (a role's own frameworks), with ranks
  // increasing in string order and spaced so that a new name usually fits between its
  // neighbours; when it does not, Renumber() spreads them out again.
  absl::btree_map<std::string, NameRank> name_ranks_;
  uint64_t pseudo_rank_ = 0;
  std::vector<ScalarVector> global_min_;
  std::vector<bool> kind_excluded_;
  absl::flat_hash_map<std::string, uint32_t> kind_index_;
  std::vector<std::string> kind_names_;
  std::vector<std::string> excluded_names_;

  StableVector<RoleNode> roles_;
  absl::flat_hash_map<std::string, uint32_t> role_index_;
  StableVector<Pair> pairs_;
  std::vector<uint32_t> free_pairs_;
  StableVector<Framework> frameworks_;
  std::vector<uint32_t> free_frameworks_;
  absl::flat_hash_map<FrameworkId, uint32_t> framework_index_;
  StableVector<Agent> agents_;
  std::vector<uint32_t> free_agents_;
  absl::btree_map<AgentId, uint32_t> agent_index_;  // Ordered: cycles visit agents by id.
  std::vector<Refused> refused_;
  std::vector<uint32_t> free_refused_;
  absl::flat_hash_map<std::string, uint32_t> refused_index_;

  ScalarVector total_;              // All agents' capacity.
  std::vector<double> inv_total_;   // 1 / total per fair-share kind; 0 when excluded or empty.
  ScalarVector free_unres_active_;  // Unreserved free on active agents (available headroom).
  ScalarVector required_headroom_;  // Sum of unmet guarantees, during stage 2.
  bool rekey_all_ = false;
  // Bumped whenever a role's allocation or reservations change (what LimitedOut reads).
  uint64_t alloc_version_ = 0;
  // A stage-2 walk that probed no pair (every subtree limited out), and the state it saw.
  struct LimitedWalk {
    bool valid = false;
    bool all_blocked = false;
    uint64_t epoch = 0;
    uint64_t version = 0;
    ScalarVector free_unres;  // The agent's.
  } limited_walk_;
  uint64_t epoch_ = 1;         // Bumped whenever the set of candidate pairs changes.
  int32_t min_overrides_ = 0;  // Pairs with their own minimum allocatable.
  int64_t cycle_ = 0;
  int64_t active_filters_ = 0;
  CycleStats last_cycle_;

  // Per-cycle scratch, kept to reuse its capacity.
  std::vector<Allocation> result_;
  size_t last_offers_ = 0;  // Offers of the last cycle: the next result's initial capacity.
  std::vector<uint32_t> touched_;
};

}  // namespace rz::allocator
