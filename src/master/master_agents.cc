// Master: agent links, registration and reregistration, status updates, usage, liveness.
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
// Agents

void Master::HandleAgentMessage(const StreamId& link, const v1::AgentMessage& message,
                                const AgentOutbox& outbox) {
  DCHECK(loop_.IsLoopThread());
  auto by_link = agent_by_link_.find(link);
  if (by_link == agent_by_link_.end()) {
    if (message.has_usage()) {
      // A report can trail a link the master already dropped; it describes nothing we track.
      VLOG(1) << "ignoring usage on unregistered agent link '" << link.value() << "'";
      return;
    }
    if (admitting_links_.contains(link)) {
      // The agent waits for REGISTERED, which follows the write of its record (H1).
      LOG(WARNING) << "ignoring a message on agent link '" << link.value()
                   << "' before its registration is stored";
      return;
    }
    if (!message.has_register_()) {
      outbox->Close(
          absl::FailedPreconditionError("the first message on an agent link must be a register"));
      return;
    }
    if (absl::Status status = RegisterAgent(link, message.register_(), outbox); !status.ok()) {
      LOG(WARNING) << "refusing agent registration on link '" << link.value()
                   << "': " << status.message();
      outbox->Close(status);
    }
    return;
  }
  Agent& agent = agents_.at(by_link->second);
  switch (message.message_case()) {
    case v1::AgentMessage::kRegister:
      outbox->Close(absl::FailedPreconditionError(
          absl::StrCat("agent '", agent.id.value(), "' is already registered on this link")));
      return;
    case v1::AgentMessage::kStatusUpdate:
      HandleStatusUpdate(agent, message.status_update().status());
      return;
    case v1::AgentMessage::kPong:
      agent.last_pong = loop_.clock().Now();
      return;
    case v1::AgentMessage::kUsage:
      HandleUsage(agent, message.usage());
      return;
    case v1::AgentMessage::MESSAGE_NOT_SET:
      LOG(WARNING) << "agent '" << agent.id.value() << "' sent an empty message";
      return;
  }
}

Master::Framework& Master::EnsureFramework(const v1::FrameworkInfo& info) {
  const FrameworkId id(info.id());
  auto it = frameworks_.find(id);
  if (it != frameworks_.end()) {
    return it->second;
  }
  // Known to an agent but not to this master (it restarted): keep the framework, waiting for
  // its scheduler for the failover timeout.
  Framework& framework = frameworks_[id];
  framework.id = id;
  framework.info = info;
  framework.registered_time = loop_.clock().Now();
  absl::StatusOr<allocator::FrameworkOptions> options = ToFrameworkOptions(info, /*active=*/false);
  if (!options.ok()) {
    // An agent's copy of the info is not to be trusted blindly: keep only roles.
    LOG(WARNING) << "framework '" << id.value()
                 << "' reported by an agent: " << options.status().message();
    framework.info.clear_offer_filters();
    framework.info.set_max_outstanding_offers(0);
    options = ToFrameworkOptions(framework.info, /*active=*/false);
    RZ_CHECK_OK(options.status());  // Roles were validated; nothing else is left to fail.
  }
  RZ_CHECK_OK(allocator_.AddFramework(id, *options));
  const absl::Duration timeout = absl::Seconds(std::max(0.0, info.failover_timeout_seconds()));
  framework.failover_deadline = loop_.clock().Now() + timeout;
  framework.failover_timer = loop_.PostAfter(timeout, [this, id] { FrameworkFailoverExpired(id); });
  PersistFramework(framework);  // Its deadline survives a master restart (H1).
  return framework;
}

void Master::EnsureRole(Framework& framework, const std::string& role) {
  const std::vector<std::string> roles = RolesOf(framework.info);
  if (std::find(roles.begin(), roles.end(), role) != roles.end()) {
    return;
  }
  if (framework.info.roles().empty()) {
    framework.info.add_roles(kDefaultRole);
  }
  framework.info.add_roles(role);
  absl::StatusOr<allocator::FrameworkOptions> options =
      ToFrameworkOptions(framework.info, /*active=*/framework.outbox != nullptr);
  if (options.ok()) {
    RZ_CHECK_OK(allocator_.UpdateFramework(framework.id, *options));
  }
}

absl::Status Master::RegisterAgent(const StreamId& link, const v1::AgentMessage::Register& reg,
                                   const AgentOutbox& outbox) {
  const v1::AgentInfo& info = reg.info();
  if (info.hostname().empty()) {
    return absl::InvalidArgumentError("agent registration has no hostname");
  }
  absl::StatusOr<Resources> total = FromProto(info.resources());
  if (!total.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "agent '", info.hostname(), "' has invalid resources: ", total.status().message()));
  }
  if (total->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent '", info.hostname(), "' offers no resources"));
  }
  // Check the reported tasks before changing anything.
  Resources used;
  for (const v1::Task& task : reg.tasks()) {
    if (task.framework_id().empty() || task.task_id().empty()) {
      return absl::InvalidArgumentError("reregistering agent reports a task without ids");
    }
    absl::StatusOr<Resources> resources = FromProto(task.resources());
    if (!resources.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "task '", task.task_id(), "' has invalid resources: ", resources.status().message()));
    }
    if (!IsTerminal(task.state())) {
      used += *resources;
    }
  }
  // Compared without roles: tasks may use dynamic reservations, which the agent's own
  // resources do not carry (the master keeps them, Agent::reserved).
  if (!total->WithRole(kDefaultRole).Contains(used.WithRole(kDefaultRole))) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent '", info.hostname(), "' reports tasks using ", used.ToString(),
                     " which exceeds its resources ", total->ToString()));
  }

  if (std::string why; AgentRefused(info, &why)) {
    return absl::FailedPreconditionError(why);
  }
  // Registry (H1): REGISTERED only once the agent's record is stored; this runs again then,
  // with the id assigned.
  if (!AgentStored(link, reg, outbox)) {
    return absl::OkStatus();
  }

  const bool new_agent = info.id().empty() || registering_new_agent_;
  const AgentId id(info.id().empty() ? NewUuid() : info.id());
  auto existing = agents_.find(id);
  if (existing != agents_.end() && existing->second.outbox != nullptr) {
    // The agent reconnected before its old link was noticed dead.
    LOG(INFO) << "agent '" << id.value() << "' replaces its link '" << existing->second.link.value()
              << "'";
    existing->second.outbox->Close(absl::AbortedError("agent reconnected on another link"));
    AgentDisconnected(existing->second);
  }
  Agent& agent = agents_[id];
  AgentChanged(id);
  const bool known = agent.id == id;
  agent.id = id;
  agent.info = info;
  agent.info.set_id(id.value());
  agent.total = WithReservations(agent, *total);
  agent.link = link;
  agent.outbox = outbox;
  agent.last_pong = loop_.clock().Now();
  if (!known) {
    agent.registered_time = loop_.clock().Now();
  }
  if (agent.reregister_timer.has_value()) {
    loop_.CancelTimer(*agent.reregister_timer);
    agent.reregister_timer.reset();
  }
  agent_by_link_[link] = id;
  RZ_CHECK_OK(allocator_.AddAgent(id, agent.total, ToAttributes(info.attributes())));
  // A deactivated or draining agent stays without offers across reconnects.
  UpdateAgentActive(agent);

  // Reconcile tasks: the agent's report wins for tasks it knows.
  absl::btree_set<TaskKey> reported;
  for (const v1::FrameworkInfo& framework_info : reg.frameworks()) {
    if (!framework_info.id().empty() && ValidateFrameworkInfo(framework_info).ok()) {
      EnsureFramework(framework_info);
    }
  }
  for (const v1::Task& reported_task : reg.tasks()) {
    const TaskKey key(FrameworkId(reported_task.framework_id()), TaskId(reported_task.task_id()));
    reported.insert(key);
    v1::FrameworkInfo framework_info;
    framework_info.set_id(reported_task.framework_id());
    Framework& framework = EnsureFramework(framework_info);
    Task& task = tasks_[key];
    const bool was_unreachable = task.proto.state() == v1::TASK_UNREACHABLE;
    const v1::TaskState acknowledged = task.proto.acknowledged_state();
    const v1::KillPolicy kill_policy = task.proto.kill_policy();
    task.proto = reported_task;
    TaskChanged(key);
    if (!reported_task.has_kill_policy()) {
      task.proto.set_allocated_kill_policy(new v1::KillPolicy(kill_policy));
    }
    task.proto.set_agent_id(id.value());
    task.proto.set_acknowledged_state(
        acknowledged == v1::TASK_STATE_UNSPECIFIED ? reported_task.state() : acknowledged);
    task.resources = *FromProto(reported_task.resources());
    task.terminal = IsTerminal(reported_task.state());
    // The allocation role travels on the task's resources (set at launch).
    std::string role = reported_task.role();
    if (role.empty() && reported_task.resources_size() > 0) {
      role = reported_task.resources(0).allocation_role();
    }
    if (!IsValidRole(role)) {
      role = kDefaultRole;
    }
    task.proto.set_role(role);
    EnsureRole(framework, role);
    framework.tasks.insert(key.second);
    agent.tasks.insert(key);
    if (!task.terminal) {
      if (absl::Status status = allocator_.AddUsed(framework.id, id, role, task.resources);
          !status.ok()) {
        LOG(WARNING) << "agent '" << id.value() << "' task '" << key.second.value()
                     << "': " << status.message();
      }
    }
    if (was_unreachable) {
      v1::TaskStatus status = reported_task.latest_status();
      status.clear_uuid();
      status.set_source(v1::TaskStatus::SOURCE_MASTER);
      status.set_reason(v1::TaskStatus::REASON_RECONCILIATION);
      status.set_message("agent reregistered");
      SendUpdate(framework, status);
    }
  }
  // Tasks the master believes run there but the agent does not know never started or are
  // gone: tell their frameworks and free the resources.
  std::vector<TaskKey> missing;
  for (const TaskKey& key : agent.tasks) {
    if (!reported.contains(key)) {
      missing.push_back(key);
    }
  }
  for (const TaskKey& key : missing) {
    Task& task = tasks_.at(key);
    if (task.terminal) {
      continue;
    }
    v1::TaskStatus status = MasterStatus(key.first, key.second.value(), id.value(),
                                         v1::TASK_DROPPED, v1::TaskStatus::REASON_RECONCILIATION,
                                         "task unknown to the agent at reregistration");
    status.set_source(v1::TaskStatus::SOURCE_AGENT);
    UpdateTaskState(task, status);
    if (auto f = frameworks_.find(key.first); f != frameworks_.end()) {
      SendUpdate(f->second, status);
    }
    CompleteTask(key);
  }
  agent.unreachable = false;
  agent.unreachable_time = absl::Time();
  agent.recovering = false;
  if (agent.drain.has_value() && agent.drain->state() == v1::DrainInfo::DRAINING) {
    KillForDrain(agent);
  }

  LOG(INFO) << (new_agent ? "registered" : "reregistered") << " agent '" << id.value() << "' ("
            << info.hostname() << ") with " << agent.total.ToString();
  v1::MasterMessage message;
  v1::MasterMessage::Registered* registered = message.mutable_registered();
  registered->set_agent_id(id.value());
  *registered->mutable_master_info() = info_;
  registered->set_ping_interval_seconds(absl::ToDoubleSeconds(options_.agent_ping_interval));
  SendToAgent(agent, std::move(message));
  AnswerPendingReconciliation(id);
  UpdateInverseOffers();
  // Posted: a drain with mark_gone may remove the agent, which the caller still refers to.
  loop_.Post([this, id] {
    if (auto it = agents_.find(id); it != agents_.end()) {
      CheckDrained(it->second);
    }
  });
  TriggerAllocation();
  AgentChanged(id);
  PublishSoon();
  return absl::OkStatus();
}

void Master::HandleStatusUpdate(Agent& agent, const v1::TaskStatus& incoming) {
  ++counters_.status_updates;
  v1::TaskStatus status = incoming;
  status.set_agent_id(agent.id.value());
  auto framework_it = frameworks_.find(FrameworkId(status.framework_id()));
  if (framework_it == frameworks_.end()) {
    LOG(WARNING) << "dropping status update for task '" << status.task_id()
                 << "' of unknown framework '" << status.framework_id() << "' from agent '"
                 << agent.id.value() << "'";
    return;
  }
  Framework& framework = framework_it->second;
  const TaskKey key(framework.id, TaskId(status.task_id()));
  auto task_it = tasks_.find(key);
  if (task_it != tasks_.end()) {
    UpdateTaskState(task_it->second, status);
  }
  SendUpdate(framework, status);
  if (agent.drain.has_value() && IsTerminal(status.state())) {
    CheckDrained(agent);  // Last use of `agent`: mark_gone may remove it.
  }
  PublishSoon();
}

void Master::HandleUsage(Agent& agent, const v1::AgentMessage::Usage& usage) {
  agent.usage = usage.total();
  AgentChanged(agent.id);
  for (const v1::AgentMessage::Usage::TaskUsage& entry : usage.tasks()) {
    const TaskKey key(FrameworkId(entry.framework_id()), TaskId(entry.task_id()));
    // Only a task this agent runs may be described by its report; anything else is a task the
    // master already forgot (or never knew), and the next report will no longer mention it.
    auto task = tasks_.find(key);
    if (task == tasks_.end() || !agent.tasks.contains(key)) {
      VLOG(1) << "ignoring usage of unknown task '" << entry.task_id() << "' of framework '"
              << entry.framework_id() << "' from agent '" << agent.id.value() << "'";
      continue;
    }
    *task->second.proto.mutable_statistics() = entry.statistics();
    TaskChanged(key);
  }
  // Usage is for readers only: no allocation pass, and PublishSoon() coalesces the snapshot
  // with whatever else this loop batch changes.
  PublishSoon();
}

void Master::AgentLinkClosed(const StreamId& link) {
  DCHECK(loop_.IsLoopThread());
  auto it = agent_by_link_.find(link);
  if (it == agent_by_link_.end()) {
    if (auto admitting = admitting_links_.find(link); admitting != admitting_links_.end()) {
      admitting->second = true;  // Not admitted once its record is stored (H1).
    }
    return;
  }
  Agent& agent = agents_.at(it->second);
  if (agent.link == link && agent.outbox != nullptr) {
    AgentDisconnected(agent);
  }
  agent_by_link_.erase(link);
}

void Master::AgentDisconnected(Agent& agent) {
  LOG(INFO) << "agent '" << agent.id.value() << "' (" << agent.info.hostname() << ") disconnected";
  agent.outbox = nullptr;
  std::vector<OfferId> offers(agent.offers.begin(), agent.offers.end());
  for (const OfferId& offer : offers) {
    NoteRemovedOffer(offer, "is stale: its agent disconnected (it may have reregistered since)");
    RemoveOffer(offer, /*rescind=*/true, absl::ZeroDuration());
  }
  (void)allocator_.RemoveAgent(agent.id);
  const AgentId id = agent.id;
  agent.reregister_timer = loop_.PostAfter(options_.agent_reregister_timeout,
                                           [this, id] { AgentReregisterExpired(id); });
  AgentChanged(id);
}

void Master::AgentReregisterExpired(const AgentId& id) {
  DCHECK(loop_.IsLoopThread());
  auto it = agents_.find(id);
  if (it == agents_.end() || it->second.outbox != nullptr) {
    return;
  }
  Agent& agent = it->second;
  agent.reregister_timer.reset();
  agent.unreachable = true;
  agent.unreachable_time = loop_.clock().Now();
  agent.recovering = false;
  PersistAgent(agent);  // UNREACHABLE survives a master restart (H1).
  LOG(WARNING) << "agent '" << id.value() << "' did not come back; its tasks are unreachable";
  const absl::Time now = loop_.clock().Now();
  for (const TaskKey& key : agent.tasks) {
    Task& task = tasks_.at(key);
    if (task.terminal) {
      continue;
    }
    v1::TaskStatus status =
        MasterStatus(key.first, key.second.value(), id.value(), v1::TASK_UNREACHABLE,
                     v1::TaskStatus::REASON_AGENT_REMOVED, "agent is unreachable");
    status.set_unreachable_time(Seconds(now));
    task.proto.set_state(v1::TASK_UNREACHABLE);
    *task.proto.mutable_latest_status() = status;
    if (auto f = frameworks_.find(key.first); f != frameworks_.end()) {
      SendUpdate(f->second, status);
    }
    TaskChanged(key);
  }
  AgentChanged(id);
  AnswerPendingReconciliation(id);
  PruneUnreachableAgents();
  PublishSoon();
}

void Master::PingAgents() {
  const absl::Time now = loop_.clock().Now();
  std::vector<AgentId> silent;
  for (auto& [id, agent] : agents_) {
    if (agent.outbox == nullptr) {
      continue;
    }
    if (now - agent.last_pong > options_.agent_ping_timeout) {
      silent.push_back(id);
      continue;
    }
    v1::MasterMessage ping;
    ping.mutable_ping()->set_nonce(static_cast<uint64_t>(absl::ToUnixMillis(now)));
    agent.outbox->Send(std::move(ping));
  }
  for (const AgentId& id : silent) {
    Agent& agent = agents_.at(id);
    LOG(WARNING) << "agent '" << id.value() << "' answered no ping for "
                 << options_.agent_ping_timeout;
    agent.outbox->Close(absl::DeadlineExceededError("agent answered no pings"));
    agent_by_link_.erase(agent.link);
    AgentDisconnected(agent);
  }
}

}  // namespace rz::master
