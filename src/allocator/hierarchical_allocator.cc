#include "allocator/hierarchical_allocator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace rz::allocator {
namespace {

using Type = ResourceEntry::Type;

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// The same role grammar as rz::Resources (which keeps its checker private): "*" or a path of
// [A-Za-z0-9_.-] segments, none of them empty, "." or "..".
bool IsValidRole(const std::string& role) {
  if (role == kDefaultRole) {
    return true;
  }
  if (role.empty()) {
    return false;
  }
  size_t start = 0;
  while (true) {
    const size_t slash = role.find('/', start);
    const std::string_view segment = std::string_view(role).substr(
        start, slash == std::string::npos ? std::string::npos : slash - start);
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    for (char c : segment) {
      const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (!alnum && c != '_' && c != '-' && c != '.') {
        return false;
      }
    }
    if (slash == std::string::npos) {
      return true;
    }
    start = slash + 1;
  }
}

bool TestBit(const std::vector<uint64_t>& bits, uint32_t i) {
  return (i >> 6) < bits.size() && ((bits[i >> 6] >> (i & 63)) & 1) != 0;
}

void SetBit(std::vector<uint64_t>& bits, uint32_t i) {
  if ((i >> 6) >= bits.size()) {
    bits.resize((i >> 6) + 1, 0);
  }
  bits[i >> 6] |= uint64_t{1} << (i & 63);
}

void ClearBit(std::vector<uint64_t>& bits, uint32_t i) {
  if ((i >> 6) < bits.size()) {
    bits[i >> 6] &= ~(uint64_t{1} << (i & 63));
  }
}

bool HasReservedEntry(const Resources& resources) {
  for (const ResourceEntry& entry : resources.entries()) {
    if (entry.role != kDefaultRole) {
      return true;
    }
  }
  return false;
}

int64_t ToNanos(absl::Time time) {
  if (time == absl::InfiniteFuture()) {
    return kNever;
  }
  return absl::ToUnixNanos(time);
}

}  // namespace

// What one agent's walk through the role tree carries: the agent, the stage, and whether every
// candidate met so far was blocked in a way that only changes with the agent's version or the
// candidate epoch (a filter covering its whole possible offer, or a failed constraint).
struct HierarchicalAllocator::Visit {
  uint32_t agent = 0;
  Agent* state = nullptr;
  int stage = 2;
  uint32_t quota_role = kNone;  // Stage 1: the role whose guarantee is being met.
  bool all_blocked = true;
  bool offered = false;
  bool tried = false;  // Some pair was probed (Try), so the outcome depends on the agent.
};

void HierarchicalAllocator::RegexDeleter::operator()(regex_t* regex) const {
  regfree(regex);
  delete regex;
}

HierarchicalAllocator::HierarchicalAllocator(AllocatorOptions options) {
  roles_.emplace_back();  // kRoot.
  pseudo_rank_ = AcquireRank(".");
  for (const std::string& name : options.fair_share_excluded) {
    excluded_names_.push_back(name);
    Kind(name);
  }
  for (const Resources& minimum : options.min_allocatable) {
    ScalarVector all;
    SplitScalars(minimum, nullptr, &all);
    global_min_.push_back(std::move(all));
  }
}

HierarchicalAllocator::~HierarchicalAllocator() = default;

// --- Registry and conversions -------------------------------------------------------------------

// A new name takes the midpoint of the gap between its neighbours' ranks (or a fixed step past
// the last one, as ids often arrive in increasing order), so ranks of existing names, and
// hence the sorters, stay as they are. Only when a gap is used up are all names renumbered.
uint64_t HierarchicalAllocator::AcquireRank(const std::string& name) {
  constexpr uint64_t kStep = uint64_t{1} << 32;
  auto [it, inserted] = name_ranks_.try_emplace(name);
  ++it->second.refs;
  if (!inserted) {
    return it->second.rank;
  }
  const bool has_prev = it != name_ranks_.begin();
  const bool has_next = std::next(it) != name_ranks_.end();
  const uint64_t lo = has_prev ? std::prev(it)->second.rank : 0;
  const uint64_t hi = has_next ? std::next(it)->second.rank : std::numeric_limits<uint64_t>::max();
  if (hi - lo < 2) {
    Renumber();
    return it->second.rank;
  }
  if (!has_prev && !has_next) {
    it->second.rank = uint64_t{1} << 63;
  } else if (!has_next) {
    it->second.rank = lo + std::min(kStep, (hi - lo) / 2);
  } else if (!has_prev) {
    it->second.rank = hi - std::min(kStep, (hi - lo) / 2);
  } else {
    it->second.rank = lo + (hi - lo) / 2;
  }
  return it->second.rank;
}

void HierarchicalAllocator::ReleaseRank(const std::string& name) {
  auto it = name_ranks_.find(name);
  if (it != name_ranks_.end() && --it->second.refs == 0) {
    name_ranks_.erase(it);
  }
}

// Reassigns evenly spaced ranks in name order. The order of ranks does not change, so every
// sorter keeps its order: its keys are rewritten in place (rebuilt in the same sequence).
void HierarchicalAllocator::Renumber() {
  const uint64_t step = std::max<uint64_t>(
      1, std::min<uint64_t>(uint64_t{1} << 32,
                            std::numeric_limits<uint64_t>::max() / (name_ranks_.size() + 1)));
  uint64_t next = step;
  for (auto& [name, entry] : name_ranks_) {
    entry.rank = next;
    next += step;
  }
  const auto rank_of = [this](const std::string& name) {
    return name_ranks_.find(name)->second.rank;
  };
  pseudo_rank_ = rank_of(".");
  for (Framework& f : frameworks_) {
    if (f.live) {
      f.rank = rank_of(f.id.value());
    }
  }
  for (size_t i = 1; i < roles_.size(); ++i) {
    roles_[i].rank = rank_of(roles_[i].segment);
  }
  for (uint32_t i = 0; i < pairs_.size(); ++i) {
    Pair& p = pairs_[i];
    if (p.live) {
      p.key.rank = frameworks_[p.framework].rank;
    }
  }
  std::vector<SortKey> keys;
  for (uint32_t i = 0; i < roles_.size(); ++i) {
    RoleNode& node = roles_[i];
    node.key.rank = node.rank;
    node.pseudo_key.rank = pseudo_rank_;
    keys.assign(node.framework_sorter.begin(), node.framework_sorter.end());
    node.framework_sorter.clear();
    for (SortKey& key : keys) {
      key.rank = frameworks_[pairs_[key.id].framework].rank;
      node.framework_sorter.insert(node.framework_sorter.end(), key);
    }
    keys.assign(node.children_sorter.begin(), node.children_sorter.end());
    node.children_sorter.clear();
    for (SortKey& key : keys) {
      key.rank = key.id == kPseudo ? pseudo_rank_ : roles_[key.id].rank;
      node.children_sorter.insert(node.children_sorter.end(), key);
    }
  }
}

uint32_t HierarchicalAllocator::Kind(const std::string& name) {
  auto [it, inserted] = kind_index_.try_emplace(name, static_cast<uint32_t>(kind_names_.size()));
  if (inserted) {
    kind_names_.push_back(name);
    kind_excluded_.push_back(std::find(excluded_names_.begin(), excluded_names_.end(), name) !=
                             excluded_names_.end());
  }
  return it->second;
}

void HierarchicalAllocator::SplitScalars(const Resources& resources, ScalarVector* unres,
                                         ScalarVector* all) {
  for (const ResourceEntry& entry : resources.entries()) {
    if (entry.type != Type::kScalar) {
      continue;
    }
    const uint32_t kind = Kind(entry.name);
    if (all != nullptr) {
      all->Add(kind, entry.scalar);
    }
    if (unres != nullptr && entry.role == kDefaultRole) {
      unres->Add(kind, entry.scalar);
    }
  }
}

Resources HierarchicalAllocator::ToResources(const ScalarVector& scalars) const {
  Resources out;
  for (size_t k = 0; k < scalars.size(); ++k) {
    if (scalars.Get(k) > 0) {
      (void)out.AddScalar(kind_names_[k], scalars.Get(k));
    }
  }
  return out;
}

double HierarchicalAllocator::Share(const ScalarVector& allocated) const {
  double share = 0.0;
  const size_t n = std::min(allocated.size(), inv_total_.size());
  for (size_t k = 0; k < n; ++k) {
    share = std::max(share, static_cast<double>(allocated.Get(k)) * inv_total_[k]);
  }
  return share;
}

void HierarchicalAllocator::RecomputeTotals() {
  inv_total_.assign(kind_names_.size(), 0.0);
  for (size_t k = 0; k < kind_names_.size(); ++k) {
    const int64_t total = total_.Get(k);
    if (total > 0 && !kind_excluded_[k]) {
      inv_total_[k] = 1.0 / static_cast<double>(total);
    }
  }
}

// --- Roles --------------------------------------------------------------------------------------

uint32_t HierarchicalAllocator::FindRole(const std::string& path) const {
  auto it = role_index_.find(path);
  return it == role_index_.end() ? kNone : it->second;
}

uint32_t HierarchicalAllocator::EnsureRole(const std::string& path) {
  if (uint32_t found = FindRole(path); found != kNone) {
    return found;
  }
  const size_t slash = path.rfind('/');
  const uint32_t parent = slash == std::string::npos ? kRoot : EnsureRole(path.substr(0, slash));
  const uint32_t index = static_cast<uint32_t>(roles_.size());
  RoleNode& node = roles_.emplace_back();
  node.path = path;
  node.segment = slash == std::string::npos ? path : path.substr(slash + 1);
  node.parent = parent;
  node.last_offer_cycle = cycle_;
  roles_[parent].children.emplace(node.segment, index);
  role_index_.emplace(path, index);
  // Roles are never removed, so neither is their segment's rank.
  const uint64_t rank = AcquireRank(roles_[index].segment);
  roles_[index].rank = rank;
  return index;
}

bool HierarchicalAllocator::IsAncestorOrSelf(uint32_t ancestor, uint32_t role) const {
  for (uint32_t n = role; n != kNone; n = roles_[n].parent) {
    if (n == ancestor) {
      return true;
    }
  }
  return false;
}

ScalarVector HierarchicalAllocator::Consumption(uint32_t role) const {
  ScalarVector consumed = roles_[role].alloc_unres;
  consumed += roles_[role].reserved;
  return consumed;
}

int64_t HierarchicalAllocator::Unmet(const RoleNode& node, uint32_t kind) const {
  for (const KindAmount& g : node.guarantee) {
    if (g.kind == kind) {
      return std::max<int64_t>(0, g.amount - node.alloc_unres.Get(kind) - node.reserved.Get(kind));
    }
  }
  return 0;
}

bool HierarchicalAllocator::HasUnmetGuarantee(const RoleNode& node) const {
  for (const KindAmount& g : node.guarantee) {
    if (node.alloc_unres.Get(g.kind) + node.reserved.Get(g.kind) < g.amount) {
      return true;
    }
  }
  return false;
}

// --- Sorters ------------------------------------------------------------------------------------

HierarchicalAllocator::SortKey HierarchicalAllocator::PairKey(uint32_t pair) const {
  const Pair& p = pairs_[pair];
  return SortKey{
      .share = Share(p.alloc), .count = p.count, .rank = frameworks_[p.framework].rank, .id = pair};
}

HierarchicalAllocator::SortKey HierarchicalAllocator::NodeKey(uint32_t node) const {
  const RoleNode& n = roles_[node];
  return SortKey{.share = Share(n.alloc) / n.weight, .count = n.count, .rank = n.rank, .id = node};
}

// A role's own frameworks compete with its child roles as one more child, named "." and
// weighted like the role itself.
HierarchicalAllocator::SortKey HierarchicalAllocator::PseudoKey(uint32_t node) const {
  const RoleNode& n = roles_[node];
  return SortKey{.share = Share(n.own_alloc) / n.weight,
                 .count = n.own_count,
                 .rank = pseudo_rank_,
                 .id = kPseudo};
}

// The new key goes in before the old one leaves, so a sorter of one element (a role with one
// child) does not free and reallocate its node.
void HierarchicalAllocator::Rekey(absl::btree_set<SortKey>& sorter, SortKey* key,
                                  const SortKey& updated) {
  if (!(*key < updated) && !(updated < *key)) {
    return;
  }
  sorter.insert(updated);
  sorter.erase(*key);
  *key = updated;
}

void HierarchicalAllocator::RekeyPair(uint32_t pair) {
  Pair& p = pairs_[pair];
  if (p.candidate) {
    Rekey(roles_[p.role].framework_sorter, &p.key, PairKey(pair));
  }
  RekeyChain(p.role);
}

void HierarchicalAllocator::RekeyChain(uint32_t role) {
  RoleNode& own = roles_[role];
  if (own.own_candidates > 0) {
    Rekey(own.children_sorter, &own.pseudo_key, PseudoKey(role));
  }
  for (uint32_t n = role; n != kRoot; n = roles_[n].parent) {
    RoleNode& node = roles_[n];
    if (node.candidates > 0) {
      Rekey(roles_[node.parent].children_sorter, &node.key, NodeKey(n));
    }
  }
}

// Candidates (active, subscribed, not suppressed, under the outstanding-offer cap) are the only
// pairs in sorters, and a subtree without candidates is not in its parent's sorter, so a walk
// never meets a pair it must skip for those reasons.
void HierarchicalAllocator::SetCandidate(uint32_t pair, bool candidate) {
  Pair& p = pairs_[pair];
  if (p.candidate == candidate) {
    return;
  }
  ++epoch_;
  p.candidate = candidate;
  RoleNode& role = roles_[p.role];
  const int delta = candidate ? 1 : -1;
  if (candidate) {
    p.key = PairKey(pair);
    role.framework_sorter.insert(p.key);
  } else {
    role.framework_sorter.erase(p.key);
  }
  role.own_candidates += delta;
  if (candidate && role.own_candidates == 1) {
    role.pseudo_key = PseudoKey(p.role);
    role.children_sorter.insert(role.pseudo_key);
  } else if (!candidate && role.own_candidates == 0) {
    role.children_sorter.erase(role.pseudo_key);
  }
  for (uint32_t n = p.role; n != kRoot; n = roles_[n].parent) {
    RoleNode& node = roles_[n];
    node.candidates += delta;
    if (candidate && node.candidates == 1) {
      node.key = NodeKey(n);
      roles_[node.parent].children_sorter.insert(node.key);
    } else if (!candidate && node.candidates == 0) {
      roles_[node.parent].children_sorter.erase(node.key);
    }
  }
}

void HierarchicalAllocator::RefreshCandidates(uint32_t framework) {
  const Framework& f = frameworks_[framework];
  const bool capped = f.max_outstanding > 0 && f.outstanding >= f.max_outstanding;
  for (const auto& [role, pair] : f.pairs) {
    const Pair& p = pairs_[pair];
    SetCandidate(pair, f.active && p.subscribed && !p.suppressed && !capped);
  }
}

// Shares are fractions of the cluster total, so when the total changes every key is stale;
// rebuilding once per cycle is cheaper than rekeying on every agent added.
void HierarchicalAllocator::RebuildSorters() {
  RecomputeTotals();
  for (RoleNode& node : roles_) {
    node.children_sorter.clear();
    node.framework_sorter.clear();
  }
  for (uint32_t i = 0; i < pairs_.size(); ++i) {
    Pair& p = pairs_[i];
    if (p.live && p.candidate) {
      p.key = PairKey(i);
      roles_[p.role].framework_sorter.insert(p.key);
    }
  }
  for (uint32_t i = 1; i < roles_.size(); ++i) {
    RoleNode& node = roles_[i];
    if (node.own_candidates > 0) {
      node.pseudo_key = PseudoKey(i);
      node.children_sorter.insert(node.pseudo_key);
    }
    if (node.candidates > 0) {
      node.key = NodeKey(i);
      roles_[node.parent].children_sorter.insert(node.key);
    }
  }
  rekey_all_ = false;
}

// --- Accounting ---------------------------------------------------------------------------------

void HierarchicalAllocator::Account(uint32_t pair, const ScalarVector& unres,
                                    const ScalarVector& all, int sign) {
  ++alloc_version_;
  Pair& p = pairs_[pair];
  RoleNode& own = roles_[p.role];
  if (sign > 0) {
    p.alloc += all;
    own.own_alloc += all;
  } else {
    p.alloc -= all;
    own.own_alloc -= all;
  }
  for (uint32_t n = p.role; n != kRoot; n = roles_[n].parent) {
    RoleNode& node = roles_[n];
    if (sign > 0) {
      node.alloc += all;
      node.alloc_unres += unres;
    } else {
      node.alloc -= all;
      node.alloc_unres -= unres;
    }
  }
}

// Rebuilds the agent's scalar views of `free` (the hot loop never reads `free` itself).
void HierarchicalAllocator::RefreshAgentFree(Agent& agent) {
  if (agent.active) {
    free_unres_active_ -= agent.free_unres;
  }
  agent.free_unres.Clear();
  for (auto& [role, scalars] : agent.free_reserved) {
    scalars.Clear();
  }
  agent.unres_nonscalar_free = false;
  agent.reserved_nonscalar_free = false;
  for (const ResourceEntry& entry : agent.free.entries()) {
    if (entry.role == kDefaultRole) {
      if (entry.type == Type::kScalar) {
        agent.free_unres.Add(Kind(entry.name), entry.scalar);
      } else {
        agent.unres_nonscalar_free = true;
      }
      continue;
    }
    if (entry.type != Type::kScalar) {
      agent.reserved_nonscalar_free = true;
      continue;
    }
    const uint32_t role = EnsureRole(entry.role);
    auto it = std::find_if(agent.free_reserved.begin(), agent.free_reserved.end(),
                           [role](const auto& r) { return r.first == role; });
    if (it == agent.free_reserved.end()) {
      agent.free_reserved.emplace_back(role, ScalarVector());
      it = agent.free_reserved.end() - 1;
    }
    it->second.Add(Kind(entry.name), entry.scalar);
  }
  if (agent.active) {
    free_unres_active_ += agent.free_unres;
  }
  ++agent.version;
}

void HierarchicalAllocator::ReturnToAgent(uint32_t agent, const Resources& resources) {
  Agent& a = agents_[agent];
  a.free += resources;
  RefreshAgentFree(a);
}

// Reservations count toward their role's subtree (consumption) whether allocated or not.
void HierarchicalAllocator::ChangeReserved(Agent& agent, const Resources& resources, int sign) {
  for (const ResourceEntry& entry : resources.entries()) {
    if (entry.role == kDefaultRole || entry.type != Type::kScalar) {
      continue;
    }
    const uint32_t role = EnsureRole(entry.role);
    const uint32_t kind = Kind(entry.name);
    const int64_t amount = sign * entry.scalar;
    ++alloc_version_;
    auto it = std::find_if(agent.reserved.begin(), agent.reserved.end(),
                           [role](const auto& r) { return r.first == role; });
    if (it == agent.reserved.end()) {
      agent.reserved.emplace_back(role, ScalarVector());
      it = agent.reserved.end() - 1;
    }
    it->second.Add(kind, amount);
    for (uint32_t n = role; n != kRoot; n = roles_[n].parent) {
      roles_[n].reserved.Add(kind, amount);
    }
  }
}

uint32_t HierarchicalAllocator::PairOf(uint32_t framework, const std::string& role) const {
  for (const auto& [path, pair] : frameworks_[framework].pairs) {
    if (path == role) {
      return pair;
    }
  }
  return kNone;
}

absl::Status HierarchicalAllocator::FindPairOnAgent(const FrameworkId& framework,
                                                    const AgentId& agent, const std::string& role,
                                                    uint32_t* pair, uint32_t* agent_index) const {
  auto f = framework_index_.find(framework);
  if (f == framework_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  auto a = agent_index_.find(agent);
  if (a == agent_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  *pair = PairOf(f->second, role);
  if (*pair == kNone) {
    return absl::InvalidArgumentError(
        absl::StrCat("framework '", framework.value(), "' is not in role '", role, "'"));
  }
  *agent_index = a->second;
  return absl::OkStatus();
}

void HierarchicalAllocator::EndOutstanding(uint32_t pair, Holding& holding) {
  if (holding.outstanding == 0) {
    return;
  }
  Framework& f = frameworks_[pairs_[pair].framework];
  f.outstanding -= holding.outstanding;
  holding.outstanding = 0;
  RefreshCandidates(pairs_[pair].framework);
}

// Forgets what `pair` holds on `agent` (the caller decides where the resources go).
void HierarchicalAllocator::DropHolding(uint32_t pair, uint32_t agent) {
  Pair& p = pairs_[pair];
  auto it = p.held.find(agent);
  if (it == p.held.end()) {
    return;
  }
  ScalarVector unres;
  ScalarVector all;
  SplitScalars(it->second.resources, &unres, &all);
  Account(pair, unres, all, -1);
  EndOutstanding(pair, it->second);
  p.held.erase(it);
  std::vector<uint32_t>& holders = agents_[agent].holders;
  holders.erase(std::remove(holders.begin(), holders.end(), pair), holders.end());
  RekeyPair(pair);
}

// --- Agents -------------------------------------------------------------------------------------

absl::Status HierarchicalAllocator::AddAgent(const AgentId& agent, const Resources& total,
                                             const Attributes& attributes) {
  if (agent_index_.contains(agent)) {
    return absl::AlreadyExistsError(absl::StrCat("agent '", agent.value(), "' already added"));
  }
  if (total.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("agent '", agent.value(), "' has no resources"));
  }
  uint32_t index;
  if (!free_agents_.empty()) {
    index = free_agents_.back();
    free_agents_.pop_back();
    agents_[index] = Agent();
  } else {
    index = static_cast<uint32_t>(agents_.size());
    agents_.emplace_back();
  }
  Agent& a = agents_[index];
  a.id = agent;
  a.live = true;
  a.total = total;
  a.free = total;
  a.attributes = attributes;
  SplitScalars(total, nullptr, &a.total_scalars);
  ChangeReserved(a, total, +1);
  RefreshAgentFree(a);
  total_ += a.total_scalars;
  agent_index_.emplace(agent, index);
  rekey_all_ = true;
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::RemoveAgent(const AgentId& agent) {
  auto it = agent_index_.find(agent);
  if (it == agent_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  const uint32_t index = it->second;
  Agent& a = agents_[index];
  const std::vector<uint32_t> holders = a.holders;
  for (uint32_t pair : holders) {
    DropHolding(pair, index);
  }
  ChangeReserved(a, a.total, -1);
  if (a.active) {
    free_unres_active_ -= a.free_unres;
  }
  total_ -= a.total_scalars;
  DropAgentFilters(a);
  agent_index_.erase(it);
  a = Agent();
  free_agents_.push_back(index);
  rekey_all_ = true;
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::SetAgentActive(const AgentId& agent, bool active) {
  auto it = agent_index_.find(agent);
  if (it == agent_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  Agent& a = agents_[it->second];
  if (a.active != active) {
    if (active) {
      free_unres_active_ += a.free_unres;
    } else {
      free_unres_active_ -= a.free_unres;
    }
    a.active = active;
    ++a.version;
  }
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::ReserveFree(const AgentId& agent, const Resources& resources,
                                                const std::string& role) {
  auto it = agent_index_.find(agent);
  if (it == agent_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  if (role == kDefaultRole || !IsValidRole(role)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot reserve for role '", role, "'"));
  }
  if (HasReservedEntry(resources)) {
    return absl::InvalidArgumentError(absl::StrCat("reserving '", resources.ToString(),
                                                   "' on agent '", agent.value(),
                                                   "': resources are already reserved"));
  }
  Agent& a = agents_[it->second];
  if (resources.empty() || !a.free.Contains(resources)) {
    return absl::FailedPreconditionError(absl::StrCat("agent '", agent.value(), "' has not '",
                                                      resources.ToString(), "' free to reserve"));
  }
  const Resources reserved = resources.WithRole(role);
  (void)a.free.Subtract(resources);
  a.free += reserved;
  (void)a.total.Subtract(resources);
  a.total += reserved;
  ChangeReserved(a, reserved, +1);
  RefreshAgentFree(a);
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::UnreserveFree(const AgentId& agent, const Resources& reserved) {
  auto it = agent_index_.find(agent);
  if (it == agent_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent.value(), "'"));
  }
  for (const ResourceEntry& entry : reserved.entries()) {
    if (entry.role == kDefaultRole) {
      return absl::InvalidArgumentError(absl::StrCat("unreserving '", reserved.ToString(),
                                                     "' on agent '", agent.value(), "': resource '",
                                                     entry.name, "' is not reserved"));
    }
  }
  Agent& a = agents_[it->second];
  if (reserved.empty() || !a.free.Contains(reserved)) {
    return absl::FailedPreconditionError(absl::StrCat("agent '", agent.value(), "' has not '",
                                                      reserved.ToString(), "' free to unreserve"));
  }
  const Resources unreserved = reserved.WithRole(kDefaultRole);
  (void)a.free.Subtract(reserved);
  a.free += unreserved;
  (void)a.total.Subtract(reserved);
  a.total += unreserved;
  ChangeReserved(a, reserved, -1);
  RefreshAgentFree(a);
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::UpdateAllocation(const FrameworkId& framework,
                                                     const AgentId& agent, const std::string& role,
                                                     const Resources& from, const Resources& to) {
  uint32_t pair = kNone;
  uint32_t agent_index = 0;
  RZ_RETURN_IF_ERROR(FindPairOnAgent(framework, agent, role, &pair, &agent_index));
  for (const ResourceEntry& entry : to.entries()) {
    if (entry.role != kDefaultRole && !IsValidRole(entry.role)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid role '", entry.role, "'"));
    }
  }
  if (from.WithRole(kDefaultRole) != to.WithRole(kDefaultRole)) {
    return absl::InvalidArgumentError(absl::StrCat("updating '", from.ToString(), "' to '",
                                                   to.ToString(), "' would change quantities"));
  }
  Pair& p = pairs_[pair];
  auto held = p.held.find(agent_index);
  if (held == p.held.end() || !held->second.resources.Contains(from)) {
    return absl::FailedPreconditionError(absl::StrCat("framework '", framework.value(),
                                                      "' does not hold '", from.ToString(),
                                                      "' on agent '", agent.value(), "'"));
  }
  Agent& ag = agents_[agent_index];
  ScalarVector unres_from;
  ScalarVector all_from;
  ScalarVector unres_to;
  ScalarVector all_to;
  SplitScalars(from, &unres_from, &all_from);
  SplitScalars(to, &unres_to, &all_to);
  Account(pair, unres_from, all_from, -1);
  Account(pair, unres_to, all_to, +1);
  (void)held->second.resources.Subtract(from);
  held->second.resources += to;
  (void)ag.total.Subtract(from);
  ag.total += to;
  ChangeReserved(ag, from, -1);
  ChangeReserved(ag, to, +1);
  RekeyPair(pair);
  return absl::OkStatus();
}

// --- Frameworks ---------------------------------------------------------------------------------

absl::StatusOr<std::vector<HierarchicalAllocator::CompiledConstraint>>
HierarchicalAllocator::Compile(const FrameworkId& framework,
                               const std::vector<AttributeConstraint>& constraints) {
  std::vector<CompiledConstraint> out;
  for (const AttributeConstraint& c : constraints) {
    if (c.attribute.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("framework '", framework.value(), "': offer constraint names no attribute"));
    }
    CompiledConstraint compiled{.attribute = c.attribute, .op = c.op, .value = c.value};
    if (c.op == AttributeConstraint::Op::kMatches) {
      // POSIX regcomp reports errors by return value (std::regex would throw); anchored so the
      // whole value must match. Compiled once here, never in the allocation loop.
      auto regex = std::unique_ptr<regex_t, RegexDeleter>(new regex_t);
      const std::string anchored = absl::StrCat("^(", c.value, ")$");
      if (regcomp(regex.get(), anchored.c_str(), REG_EXTENDED | REG_NOSUB) != 0) {
        // regcomp failed: there is nothing to regfree.
        delete regex.release();
        return absl::InvalidArgumentError(
            absl::StrCat("framework '", framework.value(), "': offer constraint on attribute '",
                         c.attribute, "' has an invalid pattern '", c.value, "'"));
      }
      compiled.regex = std::move(regex);
    }
    out.push_back(std::move(compiled));
  }
  return out;
}

absl::Status HierarchicalAllocator::ValidateOptions(const FrameworkId& framework,
                                                    const FrameworkOptions& options) {
  if (framework.empty()) {
    return absl::InvalidArgumentError("empty framework id");
  }
  if (options.roles.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("framework '", framework.value(), "' has no roles"));
  }
  for (size_t i = 0; i < options.roles.size(); ++i) {
    const std::string& role = options.roles[i];
    if (!IsValidRole(role)) {
      return absl::InvalidArgumentError(
          absl::StrCat("framework '", framework.value(), "': invalid role '", role, "'"));
    }
    if (std::find(options.roles.begin(), options.roles.begin() + i, role) !=
        options.roles.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("framework '", framework.value(), "': duplicate role '", role, "'"));
    }
  }
  const auto in_roles = [&](const std::string& role) {
    return std::find(options.roles.begin(), options.roles.end(), role) != options.roles.end();
  };
  for (const auto& [role, minimum] : options.min_allocatable) {
    if (!in_roles(role)) {
      return absl::InvalidArgumentError(absl::StrCat("framework '", framework.value(),
                                                     "': minimum allocatable for role '", role,
                                                     "' it is not in"));
    }
  }
  for (const auto& [role, constraints] : options.constraints) {
    if (!in_roles(role)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "framework '", framework.value(), "': constraints for role '", role, "' it is not in"));
    }
  }
  if (options.max_outstanding_offers < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "framework '", framework.value(), "': max_outstanding_offers must not be negative"));
  }
  return absl::OkStatus();
}

// REQUIRES: ValidateOptions(options) and every constraint compiles.
void HierarchicalAllocator::ApplyOptions(uint32_t framework, FrameworkOptions options) {
  Framework& f = frameworks_[framework];
  f.active = options.active;
  f.max_outstanding = options.max_outstanding_offers;
  // Roles dropped by an update keep their pair (and what it holds) but leave the sorters.
  for (auto& [path, pair] : f.pairs) {
    Pair& p = pairs_[pair];
    if (p.subscribed &&
        std::find(options.roles.begin(), options.roles.end(), path) == options.roles.end()) {
      p.subscribed = false;
      --roles_[p.role].pairs;
    }
  }
  for (const std::string& role : options.roles) {
    uint32_t pair = kNone;
    for (const auto& [path, p] : f.pairs) {
      if (path == role) {
        pair = p;
      }
    }
    if (pair == kNone) {
      if (!free_pairs_.empty()) {
        pair = free_pairs_.back();
        free_pairs_.pop_back();
        pairs_[pair] = Pair();
      } else {
        pair = static_cast<uint32_t>(pairs_.size());
        pairs_.emplace_back();
      }
      Pair& p = pairs_[pair];
      p.framework = framework;
      p.role = EnsureRole(role);
      p.live = true;
      f.pairs.emplace_back(role, pair);
    }
    Pair& p = pairs_[pair];
    if (!p.subscribed) {
      p.subscribed = true;
      ++roles_[p.role].pairs;
    }
    if (p.has_min) {
      --min_overrides_;
    }
    p.has_min = false;
    p.min.clear();
    if (auto m = options.min_allocatable.find(role); m != options.min_allocatable.end()) {
      p.has_min = true;
      ++min_overrides_;
      for (const Resources& minimum : m->second) {
        ScalarVector all;
        SplitScalars(minimum, nullptr, &all);
        p.min.push_back(std::move(all));
      }
    }
    p.constraints.clear();
    if (auto c = options.constraints.find(role); c != options.constraints.end()) {
      // Compiled before (validation); cannot fail now.
      absl::StatusOr<std::vector<CompiledConstraint>> compiled = Compile(f.id, c->second);
      if (compiled.ok()) {
        p.constraints = *std::move(compiled);
      }
    }
  }
  ++epoch_;  // Constraints may have changed.
  RefreshCandidates(framework);
}

absl::Status HierarchicalAllocator::AddFramework(const FrameworkId& framework,
                                                 FrameworkOptions options) {
  if (framework_index_.contains(framework)) {
    return absl::AlreadyExistsError(
        absl::StrCat("framework '", framework.value(), "' already added"));
  }
  if (absl::Status status = ValidateOptions(framework, options); !status.ok()) {
    return status;
  }
  for (const auto& [role, constraints] : options.constraints) {
    if (auto compiled = Compile(framework, constraints); !compiled.ok()) {
      return compiled.status();
    }
  }
  uint32_t index;
  if (!free_frameworks_.empty()) {
    index = free_frameworks_.back();
    free_frameworks_.pop_back();
    frameworks_[index] = Framework();
  } else {
    index = static_cast<uint32_t>(frameworks_.size());
    frameworks_.emplace_back();
  }
  frameworks_[index].id = framework;
  frameworks_[index].live = true;
  const uint64_t rank = AcquireRank(framework.value());
  frameworks_[index].rank = rank;
  framework_index_.emplace(framework, index);
  ApplyOptions(index, std::move(options));
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::UpdateFramework(const FrameworkId& framework,
                                                    FrameworkOptions options) {
  auto it = framework_index_.find(framework);
  if (it == framework_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  if (absl::Status status = ValidateOptions(framework, options); !status.ok()) {
    return status;
  }
  for (const auto& [role, constraints] : options.constraints) {
    if (auto compiled = Compile(framework, constraints); !compiled.ok()) {
      return compiled.status();
    }
  }
  ApplyOptions(it->second, std::move(options));
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::RemoveFramework(const FrameworkId& framework) {
  auto it = framework_index_.find(framework);
  if (it == framework_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  const uint32_t index = it->second;
  Framework& f = frameworks_[index];
  f.active = false;
  RefreshCandidates(index);
  for (const auto& [path, pair] : f.pairs) {
    Pair& p = pairs_[pair];
    std::vector<std::pair<uint32_t, Resources>> held;
    for (const auto& [agent, holding] : p.held) {
      held.emplace_back(agent, holding.resources);
    }
    for (const auto& [agent, resources] : held) {
      DropHolding(pair, agent);
      ReturnToAgent(agent, resources);
    }
    ClearPairFilters(pair);
    if (p.subscribed) {
      --roles_[p.role].pairs;
    }
    if (p.has_min) {
      --min_overrides_;
    }
    p = Pair();
    free_pairs_.push_back(pair);
  }
  framework_index_.erase(it);
  ReleaseRank(f.id.value());
  f = Framework();
  free_frameworks_.push_back(index);
  ++epoch_;
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::SetFrameworkActive(const FrameworkId& framework, bool active) {
  auto it = framework_index_.find(framework);
  if (it == framework_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  frameworks_[it->second].active = active;
  RefreshCandidates(it->second);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint32_t>> HierarchicalAllocator::PairsFor(
    const FrameworkId& framework, const std::vector<std::string>& roles) {
  auto it = framework_index_.find(framework);
  if (it == framework_index_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", framework.value(), "'"));
  }
  std::vector<uint32_t> out;
  const Framework& f = frameworks_[it->second];
  for (const auto& [path, pair] : f.pairs) {
    if (pairs_[pair].subscribed &&
        (roles.empty() || std::find(roles.begin(), roles.end(), path) != roles.end())) {
      out.push_back(pair);
    }
  }
  for (const std::string& role : roles) {
    const bool known = std::any_of(f.pairs.begin(), f.pairs.end(), [&](const auto& entry) {
      return entry.first == role && pairs_[entry.second].subscribed;
    });
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("framework '", framework.value(), "' is not in role '", role, "'"));
    }
  }
  return out;
}

absl::Status HierarchicalAllocator::AddUsed(const FrameworkId& framework, const AgentId& agent,
                                            const std::string& role, const Resources& resources) {
  uint32_t pair = kNone;
  uint32_t agent_index = 0;
  RZ_RETURN_IF_ERROR(FindPairOnAgent(framework, agent, role, &pair, &agent_index));
  Agent& ag = agents_[agent_index];
  if (!ag.free.Contains(resources)) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent '", agent.value(), "' has not '", resources.ToString(), "' free"));
  }
  (void)ag.free.Subtract(resources);
  RefreshAgentFree(ag);
  Pair& p = pairs_[pair];
  auto [held, inserted] = p.held.try_emplace(agent_index);
  held->second.resources += resources;
  if (inserted) {
    ag.holders.push_back(pair);
  }
  ScalarVector unres;
  ScalarVector all;
  SplitScalars(resources, &unres, &all);
  Account(pair, unres, all, +1);
  RekeyPair(pair);
  return absl::OkStatus();
}

void HierarchicalAllocator::MarkUsed(const FrameworkId& framework, const AgentId& agent,
                                     const std::string& role) {
  auto f = framework_index_.find(framework);
  auto a = agent_index_.find(agent);
  if (f == framework_index_.end() || a == agent_index_.end()) {
    return;
  }
  for (const auto& [path, pair] : frameworks_[f->second].pairs) {
    if (!role.empty() && path != role) {
      continue;
    }
    auto held = pairs_[pair].held.find(a->second);
    if (held != pairs_[pair].held.end()) {
      EndOutstanding(pair, held->second);
    }
  }
}

void HierarchicalAllocator::Recover(const FrameworkId& framework, const AgentId& agent,
                                    const std::string& role, const Resources& resources,
                                    absl::Time now, absl::Duration refuse_for, bool ends_offer) {
  // Only what the framework holds on the agent in `role` can come back: a recover for a
  // framework or agent removed meanwhile (which freed everything already) is a no-op.
  auto f = framework_index_.find(framework);
  auto a = agent_index_.find(agent);
  if (f == framework_index_.end() || a == agent_index_.end()) {
    return;
  }
  const uint32_t pair = PairOf(f->second, role);
  if (pair == kNone) {
    return;
  }
  Pair& p = pairs_[pair];
  auto held = p.held.find(a->second);
  if (held == p.held.end() || !held->second.resources.Contains(resources)) {
    return;
  }
  (void)held->second.resources.Subtract(resources);
  ScalarVector unres;
  ScalarVector all;
  SplitScalars(resources, &unres, &all);
  Account(pair, unres, all, -1);
  if (ends_offer) {
    EndOutstanding(pair, held->second);
  }
  if (held->second.resources.empty()) {
    EndOutstanding(pair, held->second);  // Nothing left that an offer could hold.
    p.held.erase(held);
    std::vector<uint32_t>& holders = agents_[a->second].holders;
    holders.erase(std::remove(holders.begin(), holders.end(), pair), holders.end());
  }
  ReturnToAgent(a->second, resources);
  RekeyPair(pair);
  if (refuse_for > absl::ZeroDuration() && !resources.empty()) {
    AddFilter(a->second, pair, resources, now + refuse_for);
  }
}

absl::Status HierarchicalAllocator::Suppress(const FrameworkId& framework,
                                             const std::vector<std::string>& roles) {
  absl::StatusOr<std::vector<uint32_t>> pairs = PairsFor(framework, roles);
  if (!pairs.ok()) {
    return pairs.status();
  }
  for (uint32_t pair : *pairs) {
    pairs_[pair].suppressed = true;
  }
  RefreshCandidates(framework_index_.at(framework));
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::Revive(const FrameworkId& framework,
                                           const std::vector<std::string>& roles) {
  absl::StatusOr<std::vector<uint32_t>> pairs = PairsFor(framework, roles);
  if (!pairs.ok()) {
    return pairs.status();
  }
  for (uint32_t pair : *pairs) {
    pairs_[pair].suppressed = false;
    ClearPairFilters(pair);
  }
  RefreshCandidates(framework_index_.at(framework));
  return absl::OkStatus();
}

bool HierarchicalAllocator::ConstraintsHold(const Pair& pair, const Agent& agent) const {
  using Op = AttributeConstraint::Op;
  for (const CompiledConstraint& c : pair.constraints) {
    auto it = agent.attributes.find(c.attribute);
    const bool exists = it != agent.attributes.end();
    switch (c.op) {
      case Op::kExists:
        if (!exists) {
          return false;
        }
        break;
      case Op::kNotExists:
        if (exists) {
          return false;
        }
        break;
      case Op::kEquals:
        if (!exists || it->second != c.value) {
          return false;
        }
        break;
      case Op::kNotEquals:
        // An agent without the attribute does not equal the value.
        if (exists && it->second == c.value) {
          return false;
        }
        break;
      case Op::kMatches:
        if (!exists || regexec(c.regex.get(), it->second.c_str(), 0, nullptr, 0) != 0) {
          return false;
        }
        break;
    }
  }
  return true;
}

// --- Roles --------------------------------------------------------------------------------------

absl::Status HierarchicalAllocator::SetWeight(const std::string& role, double weight) {
  if (role.empty() || !IsValidRole(role)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid role '", role, "'"));
  }
  if (!(weight > 0.0) || !std::isfinite(weight)) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight of role '", role, "' must be positive, not ", weight));
  }
  const uint32_t node = EnsureRole(role);
  roles_[node].weight = weight;
  roles_[node].weight_set = true;
  RekeyChain(node);
  return absl::OkStatus();
}

absl::Status HierarchicalAllocator::SetQuota(const std::string& role, const Quota& quota) {
  if (role == kDefaultRole || !IsValidRole(role)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot set quota on role '", role, "'"));
  }
  for (const Resources* part : {&quota.guarantee, &quota.limit}) {
    for (const ResourceEntry& entry : part->entries()) {
      if (entry.type != Type::kScalar || entry.scalar < 0) {
        return absl::InvalidArgumentError(absl::StrCat("quota of role '", role, "': resource '",
                                                       entry.name, "' must be a quantity"));
      }
    }
  }
  for (const ResourceEntry& entry : quota.guarantee.entries()) {
    const bool zero = std::find(quota.zero_limit.begin(), quota.zero_limit.end(), entry.name) !=
                      quota.zero_limit.end();
    const int64_t limit = quota.limit.ScalarFixed(entry.name);
    if (zero || (limit > 0 && quota.guarantee.ScalarFixed(entry.name) > limit)) {
      return absl::InvalidArgumentError(absl::StrCat("quota of role '", role, "': guarantee of '",
                                                     entry.name, "' exceeds its limit"));
    }
  }
  for (const std::string& name : quota.zero_limit) {
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("quota of role '", role, "': empty resource name in zero_limit"));
    }
  }
  const uint32_t node = EnsureRole(role);
  RoleNode& n = roles_[node];
  n.quota = quota;
  n.guarantee.clear();
  n.limit.clear();
  ScalarVector guarantee;
  ScalarVector limit;
  SplitScalars(quota.guarantee, nullptr, &guarantee);
  SplitScalars(quota.limit, nullptr, &limit);
  for (size_t k = 0; k < guarantee.size(); ++k) {
    if (guarantee.Get(k) > 0) {
      n.guarantee.push_back({static_cast<uint32_t>(k), guarantee.Get(k)});
    }
  }
  for (size_t k = 0; k < limit.size(); ++k) {
    if (limit.Get(k) > 0) {
      n.limit.push_back({static_cast<uint32_t>(k), limit.Get(k)});
    }
  }
  for (const std::string& name : quota.zero_limit) {
    n.limit.push_back({Kind(name), 0});
  }
  n.has_quota = !n.guarantee.empty() || !n.limit.empty();
  ++epoch_;  // Limits change what pairs can take.
  return absl::OkStatus();
}

// --- Filters ------------------------------------------------------------------------------------

// Identical refusals (a whole agent of a common shape) share one stored copy: with a filter per
// (framework, agent) the cluster may hold millions.
uint32_t HierarchicalAllocator::Intern(const Resources& refused) {
  std::string key = refused.ToString();
  auto it = refused_index_.find(key);
  if (it != refused_index_.end()) {
    ++refused_[it->second].refs;
    return it->second;
  }
  uint32_t index;
  if (!free_refused_.empty()) {
    index = free_refused_.back();
    free_refused_.pop_back();
  } else {
    index = static_cast<uint32_t>(refused_.size());
    refused_.emplace_back();
  }
  refused_[index] = Refused{.resources = refused, .key = key, .refs = 1};
  refused_index_.emplace(std::move(key), index);
  return index;
}

void HierarchicalAllocator::Release(uint32_t refused) {
  if (--refused_[refused].refs == 0) {
    refused_index_.erase(refused_[refused].key);
    refused_[refused] = Refused();
    free_refused_.push_back(refused);
  }
}

// The most `role` could be offered out of `free`: unreserved entries plus reservations of the
// role and its ancestors.
Resources HierarchicalAllocator::MaxOffer(const Resources& free, uint32_t role) const {
  if (!HasReservedEntry(free)) {
    return free;
  }
  Resources out;
  for (const ResourceEntry& entry : free.entries()) {
    if (entry.role == kDefaultRole) {
      (void)out.Add(entry);
      continue;
    }
    const uint32_t reserved_for = FindRole(entry.role);
    if (reserved_for != kNone && IsAncestorOrSelf(reserved_for, role)) {
      (void)out.Add(entry);
    }
  }
  return out;
}

bool HierarchicalAllocator::FilterBlocks(const AgentFilters& filters, uint32_t pair,
                                         const Resources& offer) const {
  auto [begin, end] = filters.by_pair.equal_range(pair);
  for (auto it = begin; it != end; ++it) {
    if (refused_[it->second.refused].resources.Contains(offer)) {
      return true;
    }
  }
  return false;
}

void HierarchicalAllocator::AddFilter(uint32_t agent, uint32_t pair, const Resources& refused,
                                      absl::Time expiry) {
  Agent& a = agents_[agent];
  if (a.filters == nullptr) {
    a.filters = std::make_unique<AgentFilters>();
    a.filters->min_expiry_ns = kNever;
  }
  AgentFilters& f = *a.filters;
  const uint32_t id = Intern(refused);
  // Created after cycle `cycle_`: the filter blocks cycle `cycle_ + 1` whatever the time.
  f.by_pair.emplace(
      pair, FilterRecord{.refused = id, .created_cycle = cycle_, .expiry_ns = ToNanos(expiry)});
  f.min_expiry_ns = std::min(f.min_expiry_ns, ToNanos(expiry));
  SetBit(f.has_bits, pair);
  // `blocked_bits` describe the snapshot; the new filter's bit is computed against it too, so
  // the bits stay valid without a full recompute (which would cost O(filters on the agent)).
  if (f.snapshot_valid &&
      refused_[id].resources.Contains(MaxOffer(f.snapshot, pairs_[pair].role))) {
    SetBit(f.blocked_bits, pair);
  }
  ++active_filters_;
}

void HierarchicalAllocator::ClearPairFilters(uint32_t pair) {
  for (Agent& a : agents_) {
    if (!a.live || a.filters == nullptr || !TestBit(a.filters->has_bits, pair)) {
      continue;
    }
    AgentFilters& f = *a.filters;
    auto [begin, end] = f.by_pair.equal_range(pair);
    for (auto it = begin; it != end; ++it) {
      Release(it->second.refused);
      --active_filters_;
    }
    f.by_pair.erase(begin, end);
    ClearBit(f.has_bits, pair);
    ClearBit(f.blocked_bits, pair);
    ++a.version;
  }
}

void HierarchicalAllocator::DropAgentFilters(Agent& agent) {
  if (agent.filters == nullptr) {
    return;
  }
  for (const auto& [pair, record] : agent.filters->by_pair) {
    Release(record.refused);
    --active_filters_;
  }
  agent.filters.reset();
}

void HierarchicalAllocator::RecomputeBlocked(Agent& agent) {
  AgentFilters& f = *agent.filters;
  std::fill(f.blocked_bits.begin(), f.blocked_bits.end(), 0);
  f.snapshot = agent.free;
  f.snapshot_valid = true;
  const bool reserved = HasReservedEntry(agent.free);
  uint32_t last_pair = kNone;
  Resources max_offer;
  for (const auto& [pair, record] : f.by_pair) {
    if (TestBit(f.blocked_bits, pair)) {
      continue;
    }
    if (reserved && pair != last_pair) {
      max_offer = MaxOffer(agent.free, pairs_[pair].role);
      last_pair = pair;
    }
    if (refused_[record.refused].resources.Contains(reserved ? max_offer : agent.free)) {
      SetBit(f.blocked_bits, pair);
    }
  }
}

// --- The cycle ----------------------------------------------------------------------------------

bool HierarchicalAllocator::Exhausted(const Agent& agent) const {
  if (agent.unres_nonscalar_free || agent.reserved_nonscalar_free ||
      agent.free_unres.AnyPositive()) {
    return false;
  }
  return std::none_of(agent.free_reserved.begin(), agent.free_reserved.end(),
                      [](const auto& r) { return r.second.AnyPositive(); });
}

// What `pair` would be offered on the visited agent, cut to quota limits, to the unmet
// guarantee (stage 1) or to leave other roles' unmet guarantees satisfiable (stage 2). Returns
// false if that is nothing.
bool HierarchicalAllocator::Plan(uint32_t pair, const Visit& visit, OfferPlan* plan) const {
  const Pair& p = pairs_[pair];
  const Agent& a = *visit.state;
  plan->unres = a.free_unres;
  plan->total = ScalarVector();
  plan->reserved = false;
  for (const auto& [role, scalars] : a.free_reserved) {
    if (scalars.AnyPositive() && IsAncestorOrSelf(role, p.role)) {
      plan->total += scalars;
      plan->reserved = true;
    }
  }
  if (a.reserved_nonscalar_free) {
    for (const ResourceEntry& entry : a.free.entries()) {
      if (entry.role != kDefaultRole && entry.type != Type::kScalar) {
        const uint32_t role = FindRole(entry.role);
        if (role != kNone && IsAncestorOrSelf(role, p.role)) {
          plan->reserved = true;
        }
      }
    }
  }
  plan->nonscalar = a.unres_nonscalar_free;

  if (visit.stage == 1) {
    // Unreserved kinds the guarantee names go up to the unmet amount. The rest (kinds without
    // a guarantee, ports) come along only if the role gets something toward its guarantee or
    // a reservation, as in Mesos: quota cannot be set on them, and an offer of them alone
    // would not help the guarantee.
    const RoleNode& q = roles_[visit.quota_role];
    bool toward_guarantee = false;
    for (const KindAmount& g : q.guarantee) {
      const int64_t take = std::min(plan->unres.Get(g.kind), Unmet(q, g.kind));
      if (take > 0) {
        toward_guarantee = true;
      }
      if (g.kind < plan->unres.size()) {
        plan->unres.Set(g.kind, std::max<int64_t>(0, take));
      }
    }
    if (!toward_guarantee && !plan->reserved) {
      return false;
    }
  } else if (!required_headroom_.IsZero()) {
    // Hold back enough unreserved resources for the unmet guarantees of roles outside this
    // pair's chain (its own chain's unmet guarantee is what this offer would meet).
    for (size_t k = 0; k < required_headroom_.size(); ++k) {
      int64_t holdback = required_headroom_.Get(k);
      if (holdback <= 0) {
        continue;
      }
      for (uint32_t n = p.role; n != kRoot; n = roles_[n].parent) {
        if (!roles_[n].guarantee.empty()) {
          holdback -= Unmet(roles_[n], static_cast<uint32_t>(k));
        }
      }
      const int64_t surplus = free_unres_active_.Get(k) - std::max<int64_t>(0, holdback);
      if (k < plan->unres.size()) {
        plan->unres.Set(k, std::clamp<int64_t>(surplus, 0, plan->unres.Get(k)));
      }
    }
  }
  // Limits of the role and every ancestor; reserved resources are already counted in the
  // consumption (as reservations), so only unreserved ones are cut.
  for (uint32_t n = p.role; n != kRoot; n = roles_[n].parent) {
    const RoleNode& node = roles_[n];
    for (const KindAmount& l : node.limit) {
      if (l.kind >= plan->unres.size()) {
        continue;
      }
      const int64_t room = l.amount - node.alloc_unres.Get(l.kind) - node.reserved.Get(l.kind);
      plan->unres.Set(l.kind, std::clamp<int64_t>(room, 0, plan->unres.Get(l.kind)));
    }
  }
  plan->total += plan->unres;
  if (!plan->total.AnyPositive()) {
    // Non-scalars alone (ports without cpus or mem) are offered only with something else, or
    // in stage 2 when the agent has nothing else.
    if (visit.stage == 1 || !(plan->nonscalar || plan->reserved)) {
      return false;
    }
  }
  return true;
}

bool HierarchicalAllocator::Allocatable(const Pair& pair, const OfferPlan& plan) const {
  const std::vector<ScalarVector>& minimum = pair.has_min ? pair.min : global_min_;
  if (minimum.empty()) {
    return plan.total.AnyPositive() || plan.nonscalar || plan.reserved;
  }
  for (const ScalarVector& m : minimum) {
    if (m.AllLessEqual(plan.total)) {
      return true;
    }
  }
  return false;
}

// Common case: the whole free pool, nothing reserved, nothing cut.
bool HierarchicalAllocator::WholeOffer(const Agent& agent, const OfferPlan& plan) {
  return !plan.reserved && agent.free_reserved.empty() && !agent.reserved_nonscalar_free &&
         plan.unres == agent.free_unres;
}

Resources HierarchicalAllocator::BuildOffer(const Agent& agent, uint32_t role,
                                            const OfferPlan& plan) {
  if (WholeOffer(agent, plan)) {
    return agent.free;
  }
  Resources offer;
  for (const ResourceEntry& entry : agent.free.entries()) {
    if (entry.role == kDefaultRole) {
      if (entry.type != Type::kScalar) {
        if (plan.nonscalar) {
          (void)offer.Add(entry);
        }
        continue;
      }
      const int64_t amount = std::min(entry.scalar, plan.unres.Get(Kind(entry.name)));
      if (amount > 0) {
        (void)offer.AddScalar(entry.name, amount);
      }
      continue;
    }
    const uint32_t reserved_for = FindRole(entry.role);
    if (reserved_for != kNone && IsAncestorOrSelf(reserved_for, role)) {
      (void)offer.Add(entry);
    }
  }
  return offer;
}

void HierarchicalAllocator::Offer(uint32_t pair, Visit& visit, const OfferPlan& plan) {
  Pair& p = pairs_[pair];
  Agent& a = *visit.state;
  Resources offer;
  if (WholeOffer(a, plan)) {
    // The agent's free pool becomes the offer: moved, not copied.
    offer = std::exchange(a.free, Resources());
  } else {
    offer = BuildOffer(a, p.role, plan);
    (void)a.free.Subtract(offer);
  }
  RefreshAgentFree(a);
  // The plan's vectors are exactly the offer's scalars (unreserved, and all).
  const ScalarVector& unres = plan.unres;
  const ScalarVector& all = plan.total;
  // Meeting a guarantee lowers the headroom other roles must leave.
  if (!required_headroom_.IsZero()) {
    for (uint32_t n = p.role; n != kRoot; n = roles_[n].parent) {
      const RoleNode& node = roles_[n];
      for (const KindAmount& g : node.guarantee) {
        const int64_t before = Unmet(node, g.kind);
        const int64_t after =
            std::max<int64_t>(0, before - unres.Get(g.kind));  // Reservations already counted.
        required_headroom_.Add(g.kind, after - before);
      }
    }
  }
  Account(pair, unres, all, +1);

  auto [held, inserted] = p.held.try_emplace(visit.agent);
  Holding& holding = held->second;
  if (inserted) {
    holding.resources = offer;
    a.holders.push_back(pair);
  } else {
    holding.resources += offer;
  }

  if (holding.offer_cycle != cycle_) {
    holding.offer_cycle = cycle_;
    holding.offer_index = result_.size();
    ++holding.outstanding;
    ++frameworks_[p.framework].outstanding;
    ++p.count;
    roles_[p.role].own_count++;
    for (uint32_t n = p.role; n != kRoot; n = roles_[n].parent) {
      ++roles_[n].count;
      roles_[n].last_offer_cycle = cycle_;
    }
    result_.push_back(Allocation{.framework = frameworks_[p.framework].id,
                                 .agent = a.id,
                                 .role = roles_[p.role].path,
                                 .resources = std::move(offer)});
  } else {
    // The same (agent, role, framework) got more in stage 2 than in stage 1: one offer.
    result_[holding.offer_index].resources += offer;
  }
  touched_.push_back(pair);
  visit.offered = true;
}

// Probes one candidate pair. Returns false when the agent has nothing left to offer.
bool HierarchicalAllocator::Try(uint32_t pair, Visit& visit) {
  Agent& a = *visit.state;
  const Pair& p = pairs_[pair];
  visit.tried = true;
  const AgentFilters* filters = a.filters.get();
  const bool filtered = filters != nullptr && TestBit(filters->has_bits, pair);
  if (filtered && TestBit(filters->blocked_bits, pair)) {
    return true;  // A filter holds everything this pair could get here.
  }
  if (!p.constraints.empty() && !ConstraintsHold(p, a)) {
    return true;
  }
  visit.all_blocked = false;
  const Framework& f = frameworks_[p.framework];
  if (f.max_outstanding > 0 && f.outstanding >= f.max_outstanding) {
    return true;
  }
  OfferPlan plan;
  if (!Plan(pair, visit, &plan) || !Allocatable(p, plan)) {
    return true;
  }
  if (filtered && FilterBlocks(*filters, pair, BuildOffer(a, p.role, plan))) {
    return true;
  }
  Offer(pair, visit, plan);
  return !Exhausted(a);
}

// True if, for every minimum allocatable, some kind it needs is limited at `node` to less than
// it asks for: by the room left under the limit, or by what the agent has free (an offer of
// that kind is cut to both). Then no unreserved offer to the subtree can pass the minimum, and
// the walk skips the whole subtree instead of planning an offer for each of its frameworks.
// REQUIRES: the agent has no reservations (an offer could then hold reserved scalars too).
bool HierarchicalAllocator::LimitedOut(uint32_t node, const Agent& agent) const {
  const RoleNode& n = roles_[node];
  if (n.limit.empty() || min_overrides_ > 0 || global_min_.empty()) {
    return false;
  }
  for (const ScalarVector& m : global_min_) {
    bool dead = false;
    for (const KindAmount& l : n.limit) {
      const int64_t need = m.Get(l.kind);
      if (need <= 0) {
        continue;
      }
      const int64_t room = l.amount - n.alloc_unres.Get(l.kind) - n.reserved.Get(l.kind);
      if (std::min(room, agent.free_unres.Get(l.kind)) < need) {
        dead = true;
        break;
      }
    }
    if (!dead) {
      return false;
    }
  }
  return true;
}

bool HierarchicalAllocator::Walk(uint32_t node, Visit& visit) {
  const bool reserved_here =
      !visit.state->free_reserved.empty() || visit.state->reserved_nonscalar_free;
  for (const SortKey& key : roles_[node].children_sorter) {
    if (!reserved_here && LimitedOut(key.id == kPseudo ? node : key.id, *visit.state)) {
      visit.all_blocked = false;
      continue;
    }
    if (key.id == kPseudo) {
      for (const SortKey& pair : roles_[node].framework_sorter) {
        if (!Try(pair.id, visit)) {
          return false;
        }
      }
    } else if (!Walk(key.id, visit)) {
      return false;
    }
  }
  return true;
}

// Sorter keys of pairs that got offers change only after the agent is done, so one agent's
// walk sees one consistent order (and never meets a pair twice).
void HierarchicalAllocator::FinishAgent() {
  for (uint32_t pair : touched_) {
    RekeyPair(pair);
    RefreshCandidates(pairs_[pair].framework);
  }
  touched_.clear();
}

// A filter is dead once it has lived through the cycle after its creation and its expiry has
// passed. Only agents whose earliest expiry has passed are swept, so long filters cost nothing
// per cycle. The blocked bits are recomputed only when the agent has more free than they were
// computed for: they stay valid while free only shrinks (a subset of a blocked offer is
// blocked too).
void HierarchicalAllocator::PrepareAgent(Agent& agent, int64_t now_ns) {
  if (agent.filters == nullptr) {
    return;
  }
  AgentFilters& f = *agent.filters;
  if (now_ns >= f.min_expiry_ns) {
    int64_t next = kNever;
    bool removed = false;
    for (auto it = f.by_pair.begin(); it != f.by_pair.end();) {
      const FilterRecord& r = it->second;
      if (cycle_ >= r.created_cycle + 2 && now_ns >= r.expiry_ns) {
        Release(r.refused);
        --active_filters_;
        it = f.by_pair.erase(it);
        removed = true;
      } else {
        next = std::min(next, r.expiry_ns);
        ++it;
      }
    }
    f.min_expiry_ns = next;
    if (removed) {
      ++agent.version;
      if (f.by_pair.empty()) {
        agent.filters.reset();
        return;
      }
      std::fill(f.has_bits.begin(), f.has_bits.end(), 0);
      for (const auto& [pair, record] : f.by_pair) {
        SetBit(f.has_bits, pair);
      }
      f.snapshot_valid = false;
    }
  }
  if (!f.snapshot_valid || !f.snapshot.Contains(agent.free)) {
    RecomputeBlocked(agent);
  }
}

std::vector<Allocation> HierarchicalAllocator::Allocate(absl::Time now) {
  ++cycle_;
  if (rekey_all_) {
    RebuildSorters();
  }
  const int64_t now_ns = ToNanos(now);
  // `result_` was moved out by the last cycle; a cycle usually makes about as many offers as
  // the one before, so reserve that much instead of growing (and moving) 16 times.
  result_.clear();
  result_.reserve(last_offers_);
  last_cycle_ = CycleStats{.cycle = cycle_};

  const auto skippable = [&](const Agent& a) {
    return a.skip_version == a.version && a.skip_epoch == epoch_;
  };
  const bool any_min_override = min_overrides_ > 0;
  const auto worth_visiting = [&](const Agent& a) {
    if (!a.active || Exhausted(a)) {
      return false;
    }
    if (any_min_override || global_min_.empty()) {
      return true;
    }
    // Nothing here reaches the global minimum and no pair has a lower one: skip in O(kinds).
    ScalarVector all = a.free_unres;
    for (const auto& [role, scalars] : a.free_reserved) {
      all += scalars;
    }
    return std::any_of(global_min_.begin(), global_min_.end(),
                       [&](const ScalarVector& m) { return m.AllLessEqual(all); });
  };

  // Stage 1: quota guarantees, roles in DRF order, each only up to its unmet guarantee.
  std::vector<std::pair<SortKey, uint32_t>> quota_roles;
  for (uint32_t i = 1; i < roles_.size(); ++i) {
    const RoleNode& n = roles_[i];
    if (n.candidates > 0 && !n.guarantee.empty() && HasUnmetGuarantee(n)) {
      quota_roles.emplace_back(NodeKey(i), i);
    }
  }
  std::sort(quota_roles.begin(), quota_roles.end());
  required_headroom_ = ScalarVector();
  if (!quota_roles.empty()) {
    size_t first_unmet = 0;
    for (const auto& [id, index] : agent_index_) {
      Agent& a = agents_[index];
      if (!worth_visiting(a)) {
        continue;
      }
      PrepareAgent(a, now_ns);
      if (skippable(a)) {
        continue;
      }
      Visit visit{.agent = index, .state = &a, .stage = 1};
      while (first_unmet < quota_roles.size() &&
             !HasUnmetGuarantee(roles_[quota_roles[first_unmet].second])) {
        ++first_unmet;
      }
      for (size_t i = first_unmet; i < quota_roles.size(); ++i) {
        const uint32_t q = quota_roles[i].second;
        if (roles_[q].candidates == 0 || !HasUnmetGuarantee(roles_[q])) {
          continue;
        }
        visit.quota_role = q;
        if (!Walk(q, visit)) {
          break;
        }
      }
      FinishAgent();
    }
  }

  // Stage 2: fair shares, holding back the headroom that unmet guarantees still need.
  limited_walk_.valid = false;
  for (uint32_t i = 1; i < roles_.size(); ++i) {
    const RoleNode& n = roles_[i];
    for (const KindAmount& g : n.guarantee) {
      required_headroom_.Add(g.kind, Unmet(n, g.kind));
    }
  }
  for (const auto& [id, index] : agent_index_) {
    Agent& a = agents_[index];
    if (!worth_visiting(a)) {
      continue;
    }
    ++last_cycle_.agents_considered;
    PrepareAgent(a, now_ns);
    if (skippable(a)) {
      continue;
    }
    Visit visit{.agent = index, .state = &a, .stage = 2};
    const bool reserved_here = !a.free_reserved.empty() || a.reserved_nonscalar_free;
    bool walked_all = true;
    if (!reserved_here && limited_walk_.valid && limited_walk_.epoch == epoch_ &&
        limited_walk_.version == alloc_version_ && limited_walk_.free_unres == a.free_unres) {
      // The last walk of an agent without reservations, with the same free resources, met only
      // subtrees whose limits leave no room, and neither the candidates nor any allocation
      // changed since: this walk would do the same, so skip it (with thousands of limited
      // roles it costs milliseconds).
      visit.all_blocked = limited_walk_.all_blocked;
    } else {
      walked_all = Walk(kRoot, visit);
      if (!reserved_here && !visit.tried) {
        limited_walk_ = {.valid = true,
                         .all_blocked = visit.all_blocked,
                         .epoch = epoch_,
                         .version = alloc_version_,
                         .free_unres = a.free_unres};
      }
    }
    FinishAgent();
    if (walked_all && visit.all_blocked && !visit.offered) {
      // Every candidate is blocked by a filter holding its whole possible offer or by a
      // constraint: until the agent or the candidate set changes, later cycles skip it.
      a.skip_version = a.version;
      a.skip_epoch = epoch_;
    }
  }
  required_headroom_ = ScalarVector();
  last_cycle_.offers = static_cast<int64_t>(result_.size());
  last_offers_ = result_.size();
  last_cycle_.active_filters = active_filters_;
  return std::move(result_);
}

// --- Observability ------------------------------------------------------------------------------

Resources HierarchicalAllocator::Consumed(const std::string& role) const {
  const uint32_t node = FindRole(role);
  return node == kNone ? Resources() : ToResources(Consumption(node));
}

std::vector<RoleStats> HierarchicalAllocator::Roles() const {
  std::vector<RoleStats> out;
  for (uint32_t i = 1; i < roles_.size(); ++i) {
    const RoleNode& n = roles_[i];
    if (n.pairs == 0 && !n.weight_set && !n.has_quota && n.reserved.IsZero() && n.alloc.IsZero()) {
      continue;
    }
    out.push_back(RoleStats{.role = n.path,
                            .weight = n.weight,
                            .allocated = ToResources(n.alloc),
                            .reserved = ToResources(n.reserved),
                            .consumed = ToResources(Consumption(i)),
                            .quota = n.quota,
                            .cycles_since_last_offer = cycle_ - n.last_offer_cycle});
  }
  std::sort(out.begin(), out.end(),
            [](const RoleStats& a, const RoleStats& b) { return a.role < b.role; });
  return out;
}

const CycleStats& HierarchicalAllocator::last_cycle() const { return last_cycle_; }

Resources HierarchicalAllocator::Free(const AgentId& agent) const {
  auto it = agent_index_.find(agent);
  return it == agent_index_.end() ? Resources() : agents_[it->second].free;
}

Resources HierarchicalAllocator::Allocated(const FrameworkId& framework) const {
  auto it = framework_index_.find(framework);
  if (it == framework_index_.end()) {
    return Resources();
  }
  Resources out;
  for (const auto& [path, pair] : frameworks_[it->second].pairs) {
    for (const auto& [agent, holding] : pairs_[pair].held) {
      out += holding.resources;
    }
  }
  return out;
}

}  // namespace rz::allocator
