// Master: publication of the immutable snapshots that REST and gRPC reads use (snapshot.h).
//
// Publish() runs once per loop batch that changed something. It rebuilds the views of the
// entities marked dirty (TaskChanged, AgentChanged, ...), keeps the used and offered sums by
// agent, framework and role incrementally from the tasks' and offers' shares, and publishes a
// MasterSnapshot that shares every unchanged view and chunk with the previous one.
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/resources_proto.h"
#include "glog/logging.h"
#include "master/allocator_adapter.h"
#include "master/master.h"
#include "master/validation.h"

namespace rz::master {
namespace {

void Add(Resources& sum, const Resources& resources) { sum += resources; }

void Take(Resources& sum, const Resources& resources) {
  if (absl::Status status = sum.Subtract(resources); !status.ok()) {
    // Cannot happen while every share added is taken back once; recover rather than crash.
    LOG(DFATAL) << "snapshot sums out of step: " << status.message();
    sum = Resources();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Dirty tracking

void Master::PublishSoon() {
  if (publish_pending_) {
    return;
  }
  publish_pending_ = true;
  loop_.Post([this] { Publish(); });
}

void Master::TaskChanged(const TaskKey& key) {
  builder_.dirty_tasks.insert(key);
  PublishSoon();
}

void Master::AgentChanged(const AgentId& id) {
  builder_.dirty_agents.insert(id);
  PublishSoon();
}

void Master::FrameworkChanged(const FrameworkId& id) {
  builder_.dirty_frameworks.insert(id);
  PublishSoon();
}

void Master::OfferChanged(const OfferId& id) {
  builder_.dirty_offers.insert(id);
  PublishSoon();
}

void Master::HistoryChanged() {
  builder_.history_dirty = true;
  PublishSoon();
}

void Master::MarkAllDirty() {
  builder_.all_dirty = true;
  PublishSoon();
}

void Master::AddSnapshotObserver(std::function<void(const SnapshotDelta&)> observer) {
  DCHECK(loop_.IsLoopThread());
  builder_.observers.push_back(std::move(observer));
}

// ---------------------------------------------------------------------------------------------
// What each entity shows

void Master::FillAgentState(const Agent& agent, v1::AgentState* out) const {
  *out->mutable_info() = agent.info;
  out->set_status(agent.outbox != nullptr ? v1::AgentState::REGISTERED
                                          : v1::AgentState::DISCONNECTED);
  ToProto(agent.total, out->mutable_total());
  out->set_registered_time(Seconds(agent.registered_time));
  *out->mutable_usage() = agent.usage;
  ToProto(agent.reserved, out->mutable_reserved());  // H3: dynamic reservations.
  for (v1::Resource& resource : *out->mutable_reserved()) {
    for (v1::ReservationInfo& reservation : *resource.mutable_reservations()) {
      reservation.set_type(v1::ReservationInfo::DYNAMIC);
    }
  }
  FillAgentLifecycle(agent, out);  // H4: unreachable, drain, deactivated, unavailability.
}

void Master::FillFrameworkState(const Framework& framework, v1::FrameworkState* out) const {
  *out->mutable_info() = framework.info;
  out->set_connected(framework.outbox != nullptr);
  out->set_registered_time(Seconds(framework.registered_time));
  if (framework.outbox == nullptr) {
    out->set_failover_deadline(Seconds(framework.failover_deadline));
  }
}

void Master::FillStateExtras(v1::State* out) const {
  FillLifecycleState(out);  // H4: gone agents, maintenance schedule and status.
}

// ---------------------------------------------------------------------------------------------
// Publication

void Master::Publish() {
  DCHECK(loop_.IsLoopThread());
  const auto start = std::chrono::steady_clock::now();
  publish_pending_ = false;
  SnapshotBuilder& b = builder_;
  SnapshotDelta delta;

  if (b.all_dirty) {
    b.all_dirty = false;
    b.history_dirty = true;
    for (const auto& [id, agent] : agents_) {
      b.dirty_agents.insert(id);
    }
    b.agents.ForEach([&](const auto& entry) { b.dirty_agents.insert(entry.first); });
    for (const auto& [id, framework] : frameworks_) {
      b.dirty_frameworks.insert(id);
    }
    b.frameworks.ForEach([&](const auto& entry) { b.dirty_frameworks.insert(entry.first); });
    for (const auto& [key, task] : tasks_) {
      b.dirty_tasks.insert(key);
    }
    b.tasks.ForEach([&](const auto& entry) { b.dirty_tasks.insert(entry.first); });
    for (const auto& [id, offer] : offers_) {
      b.dirty_offers.insert(id);
    }
    b.offers.ForEach([&](const auto& entry) { b.dirty_offers.insert(entry.first); });
  }

  // Offers: an offer never changes while it exists, so only creation and removal matter.
  for (const OfferId& id : b.dirty_offers) {
    if (auto share = b.offer_shares.find(id); share != b.offer_shares.end()) {
      Take(b.agent_offered[share->second.agent], share->second.resources);
      Take(b.framework_offered[share->second.framework], share->second.resources);
      Take(b.role_offered[share->second.role], share->second.resources);
      b.dirty_agents.insert(share->second.agent);
      b.dirty_frameworks.insert(share->second.framework);
      b.offer_shares.erase(share);
    }
    auto live = offers_.find(id);
    if (live == offers_.end()) {
      b.offers.Erase(id);
      continue;
    }
    const Offer& offer = live->second;
    Add(b.agent_offered[offer.agent], offer.resources);
    Add(b.framework_offered[offer.framework], offer.resources);
    Add(b.role_offered[offer.role], offer.resources);
    b.dirty_agents.insert(offer.agent);
    b.dirty_frameworks.insert(offer.framework);
    b.offer_shares[id] = {offer.agent, offer.framework, offer.role, offer.resources};
    b.offers.Set(id, std::make_shared<OfferView>(offer.proto));
  }

  // Tasks.
  for (const TaskKey& key : b.dirty_tasks) {
    TaskViewPtr before = b.tasks.Find(key);
    if (auto share = b.task_shares.find(key); share != b.task_shares.end()) {
      Take(b.agent_used[share->second.agent], share->second.resources);
      Take(b.framework_used[share->second.framework], share->second.resources);
      b.task_shares.erase(share);
    }
    if (before != nullptr) {
      --b.tasks_by_state[v1::TaskState_Name(before->proto().state())];
      b.dirty_agents.insert(AgentId(before->proto().agent_id()));
      b.dirty_frameworks.insert(key.first);
    }
    auto live = tasks_.find(key);
    if (live == tasks_.end()) {
      if (before != nullptr) {
        b.tasks.Erase(key);
        b.tasks_by_agent.Erase(AgentTaskKey(AgentId(before->proto().agent_id()), key));
        delta.tasks.emplace_back(std::move(before), nullptr);
      }
      continue;
    }
    const Task& task = live->second;
    const AgentId agent(task.proto.agent_id());
    auto after = std::make_shared<const TaskView>(task.proto);
    ++b.tasks_by_state[v1::TaskState_Name(task.proto.state())];
    b.dirty_agents.insert(agent);
    b.dirty_frameworks.insert(key.first);
    if (!task.terminal) {
      Add(b.agent_used[agent], task.resources);
      Add(b.framework_used[key.first], task.resources);
      b.task_shares[key] = {agent, key.first, task.proto.role(), task.resources};
    }
    if (before != nullptr && before->proto().agent_id() != task.proto.agent_id()) {
      b.tasks_by_agent.Erase(AgentTaskKey(AgentId(before->proto().agent_id()), key));
    }
    b.tasks.Set(key, after);
    b.tasks_by_agent.Set(AgentTaskKey(agent, key), after);
    delta.tasks.emplace_back(std::move(before), std::move(after));
  }

  // Agents.
  for (const AgentId& id : b.dirty_agents) {
    AgentViewPtr before = b.agents.Find(id);
    auto live = agents_.find(id);
    if (live == agents_.end()) {
      if (before != nullptr) {
        b.agents.Erase(id);
        delta.agents.emplace_back(std::move(before), nullptr);
      }
      // Sums of a removed agent are empty once its tasks and offers are gone.
      if (auto used = b.agent_used.find(id); used != b.agent_used.end() && used->second.empty()) {
        b.agent_used.erase(used);
      }
      if (auto offered = b.agent_offered.find(id);
          offered != b.agent_offered.end() && offered->second.empty()) {
        b.agent_offered.erase(offered);
      }
      continue;
    }
    const Agent& agent = live->second;
    v1::AgentState state;
    FillAgentState(agent, &state);
    state.clear_used();
    state.clear_offered();
    if (auto used = b.agent_used.find(id); used != b.agent_used.end()) {
      ToProto(used->second, state.mutable_used());
    }
    if (auto offered = b.agent_offered.find(id); offered != b.agent_offered.end()) {
      ToProto(offered->second, state.mutable_offered());
    }
    state.set_task_count(static_cast<int32_t>(agent.tasks.size()));
    auto after = std::make_shared<const AgentView>(std::move(state));
    b.agents.Set(id, after);
    delta.agents.emplace_back(std::move(before), std::move(after));
  }

  // Frameworks: few, so every live one is rebuilt and compared; a framework whose state did not
  // change keeps its view (and cached JSON) even if nobody marked it.
  for (const auto& [id, framework] : frameworks_) {
    b.dirty_frameworks.insert(id);
  }
  for (const FrameworkId& id : b.dirty_frameworks) {
    FrameworkViewPtr before = b.frameworks.Find(id);
    auto live = frameworks_.find(id);
    if (live == frameworks_.end()) {
      if (before != nullptr) {
        b.frameworks.Erase(id);
        delta.frameworks.emplace_back(std::move(before), nullptr);
      }
      if (auto used = b.framework_used.find(id);
          used != b.framework_used.end() && used->second.empty()) {
        b.framework_used.erase(used);
      }
      if (auto offered = b.framework_offered.find(id);
          offered != b.framework_offered.end() && offered->second.empty()) {
        b.framework_offered.erase(offered);
      }
      continue;
    }
    const Framework& framework = live->second;
    v1::FrameworkState state;
    FillFrameworkState(framework, &state);
    state.clear_used();
    state.clear_offered();
    if (auto used = b.framework_used.find(id); used != b.framework_used.end()) {
      ToProto(used->second, state.mutable_used());
    }
    if (auto offered = b.framework_offered.find(id); offered != b.framework_offered.end()) {
      ToProto(offered->second, state.mutable_offered());
    }
    state.set_task_count(static_cast<int32_t>(framework.tasks.size()));
    if (before != nullptr && before->proto().SerializeAsString() == state.SerializeAsString()) {
      continue;
    }
    auto after = std::make_shared<const FrameworkView>(std::move(state));
    b.frameworks.Set(id, after);
    delta.frameworks.emplace_back(std::move(before), std::move(after));
  }

  // Histories. completed_tasks_ only grows at the back and shrinks at the front, so the views
  // kept are those whose tasks are still at the front of it; new views are made for the rest.
  if (b.history_dirty) {
    b.history_dirty = false;
    const std::vector<TaskViewPtr>& old = *b.completed_tasks;
    auto same = [](const TaskView& view, const v1::Task& task) {
      return view.proto().task_id() == task.task_id() &&
             view.proto().framework_id() == task.framework_id() &&
             view.proto().state() == task.state();
    };
    size_t first = 0;
    if (!completed_tasks_.empty()) {
      while (first < old.size() && !same(*old[first], completed_tasks_.front())) {
        ++first;
      }
    } else {
      first = old.size();
    }
    size_t kept = old.size() - first;
    if (kept > completed_tasks_.size()) {
      kept = 0;
    }
    for (size_t i = 0; i < kept; ++i) {
      if (!same(*old[first + i], completed_tasks_[i])) {
        kept = 0;  // Not the expected shape: rebuild all.
        break;
      }
    }
    auto tasks = std::make_shared<std::vector<TaskViewPtr>>();
    tasks->reserve(completed_tasks_.size());
    for (size_t i = 0; i < completed_tasks_.size(); ++i) {
      tasks->push_back(i < kept ? old[first + i]
                                : std::make_shared<const TaskView>(completed_tasks_[i]));
    }
    b.completed_tasks = std::move(tasks);
    auto frameworks = std::make_shared<std::vector<FrameworkViewPtr>>();
    for (const v1::FrameworkState& done : completed_frameworks_) {
      frameworks->push_back(std::make_shared<const FrameworkView>(done));
    }
    b.completed_frameworks = std::move(frameworks);
  }

  b.dirty_offers.clear();
  b.dirty_tasks.clear();
  b.dirty_agents.clear();
  b.dirty_frameworks.clear();
  b.agents.Freeze();
  b.frameworks.Freeze();
  b.tasks.Freeze();
  b.tasks_by_agent.Freeze();
  b.offers.Freeze();

  // Roles: a few per cluster, rebuilt each time from the allocator and the incremental sums.
  auto roles = std::make_shared<v1::Roles>();
  absl::flat_hash_map<std::string, std::vector<std::string>> frameworks_by_role;
  for (const auto& [id, framework] : frameworks_) {
    for (const std::string& role : RolesOf(framework.info)) {
      frameworks_by_role[role].push_back(id.value());
    }
  }
  for (const allocator::RoleStats& stats : allocator_.Roles()) {
    v1::RoleInfo* info = roles->add_roles();
    ToRoleInfo(stats, info);
    // Offers of the role's subtree.
    Resources offered;
    for (const auto& [role, resources] : b.role_offered) {
      if (role == stats.role || absl::StartsWith(role, absl::StrCat(stats.role, "/"))) {
        offered += resources;
      }
    }
    ToProto(offered, info->mutable_offered());
    if (auto f = frameworks_by_role.find(stats.role); f != frameworks_by_role.end()) {
      for (const std::string& framework : f->second) {
        info->add_frameworks(framework);
      }
    }
  }
  const allocator::CycleStats& cycle = allocator_.last_cycle();
  roles->set_allocation_cycles(cycle.cycle);
  roles->set_last_cycle_ms(absl::ToDoubleMilliseconds(last_cycle_duration_));
  roles->set_active_filters(cycle.active_filters);

  auto extras = std::make_shared<v1::State>();
  FillStateExtras(extras.get());
  auto& counters = *extras->mutable_counters();
  counters["allocation_cycles"] = cycle.cycle;
  counters["invalid_accepts"] = counters_.invalid_accepts;
  counters["offers_sent"] = counters_.offers_sent;
  counters["offers_rescinded"] = counters_.offers_rescinded;
  counters["tasks_launched"] = counters_.tasks_launched;
  counters["status_updates"] = counters_.status_updates;

  auto next = std::make_shared<MasterSnapshot>();
  next->master = info_;
  next->agents = b.agents;
  next->frameworks = b.frameworks;
  next->tasks = b.tasks;
  next->tasks_by_agent = b.tasks_by_agent;
  next->offers = b.offers;
  next->completed_tasks = b.completed_tasks;
  next->completed_frameworks = b.completed_frameworks;
  for (const auto& [state, count] : b.tasks_by_state) {
    if (count != 0) {
      next->tasks_by_state[state] = count;
    }
  }
  next->counters.insert(counters.begin(), counters.end());
  next->extras = std::move(extras);
  next->roles = std::move(roles);
  next->publish_duration = absl::FromChrono(std::chrono::steady_clock::now() - start);
  {
    absl::MutexLock lock(&snapshot_mu_);
    state_ = std::move(next);
  }
  if (!b.observers.empty() &&
      (!delta.tasks.empty() || !delta.agents.empty() || !delta.frameworks.empty())) {
    for (const auto& observer : b.observers) {
      observer(delta);
    }
  }
}

std::shared_ptr<const MasterSnapshot> Master::state() const {
  absl::MutexLock lock(&snapshot_mu_);
  return state_;
}

std::shared_ptr<const v1::State> Master::snapshot() const { return state()->AsState(); }

std::shared_ptr<const v1::Roles> Master::roles_snapshot() const { return state()->roles; }

}  // namespace rz::master
