// Master: the immutable snapshots that REST and gRPC reads use.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/random_id.h"
#include "common/resources_proto.h"
#include "common/status_macros.h"
#include "common/task_states.h"
#include "glog/logging.h"
#include "master/allocator_adapter.h"
#include "master/master.h"
#include "master/validation.h"

namespace rz::master {

// ---------------------------------------------------------------------------------------------
// Snapshots

void Master::PublishSoon() {
  if (publish_pending_) {
    return;
  }
  publish_pending_ = true;
  loop_.Post([this] { Publish(); });
}

void Master::Publish() {
  DCHECK(loop_.IsLoopThread());
  publish_pending_ = false;
  auto state = std::make_shared<v1::State>();
  *state->mutable_master() = info_;
  for (const auto& [id, agent] : agents_) {
    v1::AgentState* out = state->add_agents();
    *out->mutable_info() = agent.info;
    out->set_status(agent.outbox != nullptr ? v1::AgentState::REGISTERED
                                            : v1::AgentState::DISCONNECTED);
    ToProto(agent.total, out->mutable_total());
    Resources used;
    for (const TaskKey& key : agent.tasks) {
      const Task& task = tasks_.at(key);
      if (!task.terminal) {
        used += task.resources;
      }
    }
    ToProto(used, out->mutable_used());
    Resources offered;
    for (const OfferId& offer : agent.offers) {
      offered += offers_.at(offer).resources;
    }
    ToProto(offered, out->mutable_offered());
    out->set_registered_time(Seconds(agent.registered_time));
    out->set_task_count(static_cast<int32_t>(agent.tasks.size()));
    *out->mutable_usage() = agent.usage;
  }
  for (const auto& [id, framework] : frameworks_) {
    v1::FrameworkState* out = state->add_frameworks();
    *out->mutable_info() = framework.info;
    out->set_connected(framework.outbox != nullptr);
    Resources used;
    for (const TaskId& task_id : framework.tasks) {
      const Task& task = tasks_.at(TaskKey(id, task_id));
      if (!task.terminal) {
        used += task.resources;
      }
    }
    ToProto(used, out->mutable_used());
    Resources offered;
    for (const OfferId& offer : framework.offers) {
      offered += offers_.at(offer).resources;
    }
    ToProto(offered, out->mutable_offered());
    out->set_registered_time(Seconds(framework.registered_time));
    out->set_task_count(static_cast<int32_t>(framework.tasks.size()));
    if (framework.outbox == nullptr) {
      out->set_failover_deadline(Seconds(framework.failover_deadline));
    }
  }
  for (const v1::FrameworkState& done : completed_frameworks_) {
    *state->add_completed_frameworks() = done;
  }
  for (const auto& [key, task] : tasks_) {
    *state->add_tasks() = task.proto;
  }
  for (const v1::Task& task : completed_tasks_) {
    *state->add_completed_tasks() = task;
  }
  for (const auto& [id, offer] : offers_) {
    *state->add_offers() = offer.proto;
  }
  auto roles = std::make_shared<v1::Roles>();
  absl::flat_hash_map<std::string, Resources> offered_by_role;
  for (const auto& [id, offer] : offers_) {
    offered_by_role[offer.role] += offer.resources;
  }
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
    for (const auto& [role, resources] : offered_by_role) {
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

  auto& counters = *state->mutable_counters();
  counters["allocation_cycles"] = cycle.cycle;
  counters["invalid_accepts"] = counters_.invalid_accepts;
  counters["offers_sent"] = counters_.offers_sent;
  counters["offers_rescinded"] = counters_.offers_rescinded;
  counters["tasks_launched"] = counters_.tasks_launched;
  counters["status_updates"] = counters_.status_updates;
  absl::MutexLock lock(&snapshot_mu_);
  snapshot_ = std::move(state);
  roles_snapshot_ = std::move(roles);
}

std::shared_ptr<const v1::State> Master::snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return snapshot_;
}

std::shared_ptr<const v1::Roles> Master::roles_snapshot() const {
  absl::MutexLock lock(&snapshot_mu_);
  return roles_snapshot_;
}

}  // namespace rz::master
