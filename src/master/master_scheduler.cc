// Master: the scheduler API (SUBSCRIBE and the unary calls) and the framework lifecycle.
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
// Schedulers

void Master::Subscribe(const v1::SubscribeRequest& request, const StreamId& stream,
                       EventOutbox outbox) {
  DCHECK(loop_.IsLoopThread());
  const v1::FrameworkInfo& info = request.framework_info();
  auto refuse = [&](const absl::Status& status) {
    LOG(WARNING) << "refusing subscription of framework '" << info.id() << "' (" << info.name()
                 << "): " << status.message();
    v1::Event event;
    event.mutable_error()->set_message(std::string(status.message()));
    outbox->Send(std::move(event));
    outbox->Close(status);
  };
  if (absl::Status status = ValidateFrameworkInfo(info); !status.ok()) {
    refuse(status);
    return;
  }
  absl::StatusOr<allocator::FrameworkOptions> options = ToFrameworkOptions(info, /*active=*/true);
  if (!options.ok()) {
    refuse(options.status());
    return;
  }
  if (!info.id().empty()) {
    for (const v1::FrameworkState& done : completed_frameworks_) {
      if (done.info().id() == info.id()) {
        refuse(absl::NotFoundError(absl::StrCat("framework '", info.id(), "' has been torn down")));
        return;
      }
    }
  }

  Framework* framework = nullptr;
  auto it = info.id().empty() ? frameworks_.end() : frameworks_.find(FrameworkId(info.id()));
  if (it != frameworks_.end()) {
    framework = &it->second;
    if (framework->info.principal() != info.principal()) {
      refuse(absl::PermissionDeniedError(
          absl::StrCat("framework '", info.id(), "' cannot change its principal from '",
                       framework->info.principal(), "' to '", info.principal(), "'")));
      return;
    }
    if (framework->outbox != nullptr) {
      LOG(INFO) << "framework '" << info.id() << "' failed over to stream '" << stream.value()
                << "'";
      v1::Event error;
      error.mutable_error()->set_message("framework failed over");
      SendEvent(*framework, std::move(error));
      framework->outbox->Close(absl::AbortedError("framework failed over"));
      framework_by_stream_.erase(framework->stream);
    }
    framework->info = info;
    // Roles and offer filters may change on failover; allocations in dropped roles stay until
    // their resources come back. A new scheduler instance starts unsuppressed and unfiltered:
    // it cannot know what its predecessor asked for.
    RZ_CHECK_OK(allocator_.UpdateFramework(framework->id, *options));
    RZ_CHECK_OK(allocator_.Revive(framework->id));
  } else {
    const FrameworkId id(info.id().empty() ? NewUuid() : info.id());
    Framework& created = frameworks_[id];
    created.id = id;
    created.info = info;
    created.info.set_id(id.value());
    created.registered_time = loop_.clock().Now();
    RZ_CHECK_OK(allocator_.AddFramework(id, *options));
    framework = &created;
    LOG(INFO) << "framework '" << id.value() << "' (" << info.name() << ") subscribed in roles "
              << absl::StrJoin(options->roles, ", ");
  }

  if (framework->failover_timer.has_value()) {
    loop_.CancelTimer(*framework->failover_timer);
    framework->failover_timer.reset();
  }
  framework->stream = stream;
  framework->outbox = std::move(outbox);
  framework_by_stream_[stream] = framework->id;
  RZ_CHECK_OK(allocator_.SetFrameworkActive(framework->id, true));

  v1::Event event;
  v1::Event::Subscribed* subscribed = event.mutable_subscribed();
  subscribed->set_framework_id(framework->id.value());
  subscribed->set_stream_id(stream.value());
  subscribed->set_heartbeat_interval_seconds(absl::ToDoubleSeconds(options_.heartbeat_interval));
  *subscribed->mutable_master_info() = info_;
  SendEvent(*framework, std::move(event));
  TriggerAllocation();
  PublishSoon();
}

void Master::SchedulerStreamClosed(const StreamId& stream) {
  DCHECK(loop_.IsLoopThread());
  auto it = framework_by_stream_.find(stream);
  if (it == framework_by_stream_.end()) {
    return;  // Failed over or torn down already.
  }
  Framework& framework = frameworks_.at(it->second);
  framework_by_stream_.erase(it);
  framework.outbox = nullptr;
  RZ_CHECK_OK(allocator_.SetFrameworkActive(framework.id, false));
  // Its offers go back to the pool; nobody else can use them while they are held.
  std::vector<OfferId> offers(framework.offers.begin(), framework.offers.end());
  for (const OfferId& offer : offers) {
    RemoveOffer(offer, /*rescind=*/false, absl::ZeroDuration());
  }
  const absl::Duration timeout = absl::Seconds(framework.info.failover_timeout_seconds());
  framework.failover_deadline = loop_.clock().Now() + timeout;
  LOG(INFO) << "framework '" << framework.id.value() << "' disconnected; failover timeout "
            << timeout;
  const FrameworkId id = framework.id;
  framework.failover_timer = loop_.PostAfter(timeout, [this, id] { FrameworkFailoverExpired(id); });
  TriggerAllocation();
  PublishSoon();
}

void Master::FrameworkFailoverExpired(const FrameworkId& id) {
  DCHECK(loop_.IsLoopThread());
  auto it = frameworks_.find(id);
  if (it == frameworks_.end() || it->second.outbox != nullptr) {
    return;
  }
  it->second.failover_timer.reset();
  RemoveFramework(it->second, "failover timeout expired");
}

absl::StatusOr<Master::Framework*> Master::FindCaller(const v1::CallHeader& header) {
  auto it = frameworks_.find(FrameworkId(header.framework_id()));
  if (it == frameworks_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown framework '", header.framework_id(), "'"));
  }
  Framework& framework = it->second;
  if (framework.outbox == nullptr || framework.stream.value() != header.stream_id()) {
    return absl::PermissionDeniedError(absl::StrCat("stream '", header.stream_id(),
                                                    "' is not the current stream of framework '",
                                                    header.framework_id(), "'"));
  }
  return &framework;
}

absl::Status Master::Accept(const v1::AcceptRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  for (const v1::Operation& op : request.operations()) {
    if (op.type() != v1::Operation::LAUNCH && op.type() != v1::Operation::LAUNCH_GROUP) {
      return absl::UnimplementedError(
          absl::StrCat("operation ", v1::Operation::Type_Name(op.type()),
                       " is not supported yet; only LAUNCH and LAUNCH_GROUP are"));
    }
  }
  auto tasks_of = [](const v1::Operation& op) -> const auto& {
    return op.type() == v1::Operation::LAUNCH_GROUP ? op.launch_group().tasks()
                                                    : op.launch().tasks();
  };

  // Validate the offers as a set; any problem drops every task of the call.
  std::string problem;
  std::vector<OfferId> mine;
  absl::btree_set<OfferId> seen;
  for (const std::string& raw : request.offer_ids()) {
    const OfferId id(raw);
    if (!seen.insert(id).second) {
      problem = absl::StrCat("offer '", raw, "' appears more than once");
      continue;
    }
    auto it = offers_.find(id);
    if (it == offers_.end()) {
      problem = absl::StrCat("offer '", raw, "' is unknown or no longer valid");
      continue;
    }
    if (it->second.framework != framework->id) {
      problem = absl::StrCat("offer '", raw, "' belongs to another framework");
      continue;
    }
    mine.push_back(id);
  }
  if (problem.empty() && mine.empty()) {
    problem = "no offers given";
  }
  if (problem.empty()) {
    const Offer& first = offers_.at(mine.front());
    for (const OfferId& id : mine) {
      const Offer& offer = offers_.at(id);
      if (offer.agent != first.agent) {
        problem = absl::StrCat("offers '", first.id.value(), "' and '", id.value(),
                               "' are on different agents");
        break;
      }
      if (offer.role != first.role) {
        problem = absl::StrCat("offers '", first.id.value(), "' and '", id.value(),
                               "' are allocated to different roles");
        break;
      }
    }
  }

  if (!problem.empty()) {
    ++counters_.invalid_accepts;
    LOG(WARNING) << "invalid ACCEPT from framework '" << framework->id.value() << "': " << problem;
    for (const v1::Operation& op : request.operations()) {
      for (const v1::TaskInfo& task : tasks_of(op)) {
        SendUpdate(*framework, MasterStatus(framework->id, task.task_id(), task.agent_id(),
                                            v1::TASK_DROPPED, v1::TaskStatus::REASON_INVALID_OFFERS,
                                            absl::StrCat("invalid offers: ", problem)));
      }
    }
    for (const OfferId& id : mine) {
      RemoveOffer(id, /*rescind=*/false, absl::ZeroDuration());
    }
    TriggerAllocation();
    PublishSoon();
    return absl::OkStatus();
  }

  const AgentId agent_id = offers_.at(mine.front()).agent;
  const std::string role = offers_.at(mine.front()).role;
  Resources available;
  for (const OfferId& id : mine) {
    Offer& offer = offers_.at(id);
    available += offer.resources;
    if (offer.timeout.has_value()) {
      loop_.CancelTimer(*offer.timeout);
    }
    framework->offers.erase(id);
    agents_.at(agent_id).offers.erase(id);
    offers_.erase(id);
  }
  Agent& agent = agents_.at(agent_id);
  for (const v1::Operation& op : request.operations()) {
    if (op.type() == v1::Operation::LAUNCH_GROUP) {
      LaunchGroup(*framework, agent, role, op.launch_group().tasks(), available);
      continue;
    }
    for (const v1::TaskInfo& task : op.launch().tasks()) {
      LaunchTask(*framework, agent, role, task, available);
    }
  }
  // Either call ends the offer in the allocator's count of outstanding offers.
  if (!available.empty()) {
    allocator_.Recover(framework->id, agent_id, role, available, loop_.clock().Now(),
                       RefuseFor(request.filters(), options_.default_refuse));
  } else {
    allocator_.MarkUsed(framework->id, agent_id, role);
  }
  TriggerAllocation();
  PublishSoon();
  return absl::OkStatus();
}

absl::StatusOr<Resources> Master::CheckTask(const Framework& framework, const Agent& agent,
                                            const v1::TaskInfo& task, const Resources& available,
                                            TaskRejection& rejection) const {
  auto reject = [&](v1::TaskState state, v1::TaskStatus::Reason reason, std::string why) {
    rejection = {state, reason, why};
    return absl::InvalidArgumentError(std::move(why));
  };
  if (task.task_id().empty()) {
    return reject(v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID, "task has no task_id");
  }
  if (tasks_.contains(TaskKey(framework.id, TaskId(task.task_id())))) {
    return reject(v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID,
                  absl::StrCat("task id '", task.task_id(), "' is already in use"));
  }
  if (!task.agent_id().empty() && task.agent_id() != agent.id.value()) {
    return reject(v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID,
                  absl::StrCat("task names agent '", task.agent_id(),
                               "' but the offers are on agent '", agent.id.value(), "'"));
  }
  if (task.command().value().empty()) {
    return reject(v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID, "task has no command");
  }
  absl::StatusOr<Resources> requested = FromProto(task.resources());
  if (!requested.ok()) {
    return reject(v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID,
                  absl::StrCat("invalid resources: ", requested.status().message()));
  }
  if (requested->empty()) {
    return reject(v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID, "task uses no resources");
  }
  if (!available.Contains(*requested)) {
    return reject(v1::TASK_DROPPED, v1::TaskStatus::REASON_INVALID_OFFERS,
                  absl::StrCat("task uses ", requested->ToString(),
                               " which the offers do not hold (left: ", available.ToString(), ")"));
  }
  return requested;
}

v1::TaskInfo Master::RecordTask(Framework& framework, Agent& agent, const std::string& role,
                                v1::TaskInfo task, const Resources& requested,
                                const std::string& group_id) {
  const TaskKey key(framework.id, TaskId(task.task_id()));
  task.set_agent_id(agent.id.value());
  for (v1::Resource& resource : *task.mutable_resources()) {
    resource.set_allocation_role(role);
  }
  Task& entry = tasks_[key];
  entry.resources = requested;
  v1::Task& proto = entry.proto;
  proto.set_task_id(task.task_id());
  proto.set_name(task.name());
  proto.set_framework_id(framework.id.value());
  proto.set_agent_id(agent.id.value());
  proto.set_state(v1::TASK_STAGING);
  proto.set_role(role);
  proto.set_user(task.command().user().empty() ? framework.info.user() : task.command().user());
  *proto.mutable_resources() = task.resources();
  *proto.mutable_command() = task.command();
  *proto.mutable_labels() = task.labels();
  proto.set_group_id(group_id);
  *proto.mutable_latest_status() =
      MasterStatus(framework.id, task.task_id(), agent.id.value(), v1::TASK_STAGING,
                   v1::TaskStatus::REASON_UNSPECIFIED, "");
  proto.set_acknowledged_state(v1::TASK_STAGING);
  framework.tasks.insert(key.second);
  agent.tasks.insert(key);
  ++counters_.tasks_launched;
  return task;
}

void Master::LaunchTask(Framework& framework, Agent& agent, const std::string& role,
                        v1::TaskInfo task, Resources& available) {
  TaskRejection rejection;
  absl::StatusOr<Resources> requested = CheckTask(framework, agent, task, available, rejection);
  if (!requested.ok()) {
    LOG(WARNING) << "framework '" << framework.id.value() << "' task '" << task.task_id()
                 << "': " << rejection.message;
    SendUpdate(framework, MasterStatus(framework.id, task.task_id(), agent.id.value(),
                                       rejection.state, rejection.reason, rejection.message));
    return;
  }
  RZ_CHECK_OK(available.Subtract(*requested));
  v1::MasterMessage message;
  v1::MasterMessage::RunTask* run = message.mutable_run_task();
  *run->mutable_framework() = framework.info;
  *run->mutable_task() =
      RecordTask(framework, agent, role, std::move(task), *requested, /*group_id=*/"");
  SendToAgent(agent, std::move(message));
}

void Master::LaunchGroup(Framework& framework, Agent& agent, const std::string& role,
                         const google::protobuf::RepeatedPtrField<v1::TaskInfo>& tasks,
                         Resources& available) {
  // Check every member against what the members before it leave.
  std::optional<TaskRejection> problem;
  std::vector<Resources> requested;
  Resources left = available;
  absl::btree_set<std::string> ids;
  if (tasks.empty()) {
    LOG(WARNING) << "framework '" << framework.id.value() << "' sent an empty task group";
    return;
  }
  for (const v1::TaskInfo& task : tasks) {
    TaskRejection rejection;
    absl::StatusOr<Resources> uses = CheckTask(framework, agent, task, left, rejection);
    if (uses.ok() && !ids.insert(task.task_id()).second) {
      uses = absl::InvalidArgumentError("duplicate");
      rejection = {v1::TASK_ERROR, v1::TaskStatus::REASON_TASK_INVALID,
                   absl::StrCat("task id '", task.task_id(), "' appears twice in the group")};
    }
    if (!uses.ok()) {
      problem = rejection;
      problem->message =
          absl::StrCat("task group member '", task.task_id(), "': ", rejection.message);
      break;
    }
    RZ_CHECK_OK(left.Subtract(*uses));
    requested.push_back(*std::move(uses));
  }
  if (problem.has_value()) {
    LOG(WARNING) << "framework '" << framework.id.value() << "': " << problem->message;
    for (const v1::TaskInfo& task : tasks) {
      SendUpdate(framework, MasterStatus(framework.id, task.task_id(), agent.id.value(),
                                         problem->state, problem->reason, problem->message));
    }
    return;
  }
  available = left;
  const std::string group_id = tasks.begin()->task_id();
  v1::MasterMessage message;
  v1::MasterMessage::RunTaskGroup* run = message.mutable_run_task_group();
  *run->mutable_framework() = framework.info;
  int index = 0;
  for (const v1::TaskInfo& task : tasks) {
    *run->add_tasks() = RecordTask(framework, agent, role, task, requested[index++], group_id);
  }
  SendToAgent(agent, std::move(message));
}

absl::Status Master::Decline(const v1::DeclineRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  const absl::Duration refuse = RefuseFor(request.filters(), options_.default_refuse);
  for (const std::string& raw : request.offer_ids()) {
    auto it = offers_.find(OfferId(raw));
    // An offer may have been rescinded while the decline was in flight: not an error.
    if (it == offers_.end() || it->second.framework != framework->id) {
      continue;
    }
    RemoveOffer(it->first, /*rescind=*/false, refuse);
  }
  TriggerAllocation();
  PublishSoon();
  return absl::OkStatus();
}

absl::Status Master::Revive(const v1::ReviveRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  RZ_RETURN_IF_ERROR(allocator_.Revive(
      framework->id, std::vector<std::string>(request.roles().begin(), request.roles().end())));
  TriggerAllocation();
  return absl::OkStatus();
}

absl::Status Master::Suppress(const v1::SuppressRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  return allocator_.Suppress(
      framework->id, std::vector<std::string>(request.roles().begin(), request.roles().end()));
}

absl::Status Master::Kill(const v1::KillRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  if (request.task_id().empty()) {
    return absl::InvalidArgumentError("kill names no task_id");
  }
  auto it = tasks_.find(TaskKey(framework->id, TaskId(request.task_id())));
  if (it == tasks_.end() || it->second.terminal) {
    // Answer like a reconciliation so the scheduler learns the task's fate.
    SendUpdate(*framework, MasterStatus(framework->id, request.task_id(), request.agent_id(),
                                        v1::TASK_UNKNOWN, v1::TaskStatus::REASON_RECONCILIATION,
                                        absl::StrCat("task '", request.task_id(), "' is unknown")));
    return absl::OkStatus();
  }
  Agent& agent = agents_.at(AgentId(it->second.proto.agent_id()));
  v1::MasterMessage message;
  v1::MasterMessage::KillTask* kill = message.mutable_kill_task();
  kill->set_framework_id(framework->id.value());
  kill->set_task_id(request.task_id());
  *kill->mutable_kill_policy() = request.kill_policy();
  SendToAgent(agent, std::move(message));
  return absl::OkStatus();
}

absl::Status Master::Acknowledge(const v1::AcknowledgeRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  if (request.uuid().empty()) {
    return absl::InvalidArgumentError("acknowledgement carries no uuid");
  }
  auto agent_it = agents_.find(AgentId(request.agent_id()));
  if (agent_it == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", request.agent_id(), "'"));
  }
  const TaskKey key(framework->id, TaskId(request.task_id()));
  auto task_it = tasks_.find(key);
  if (task_it != tasks_.end() && task_it->second.proto.latest_status().uuid() == request.uuid()) {
    task_it->second.proto.set_acknowledged_state(task_it->second.proto.state());
  }
  v1::MasterMessage message;
  v1::MasterMessage::Acknowledge* ack = message.mutable_acknowledge();
  ack->set_framework_id(framework->id.value());
  ack->set_task_id(request.task_id());
  ack->set_uuid(request.uuid());
  SendToAgent(agent_it->second, std::move(message));
  if (task_it != tasks_.end() && task_it->second.terminal &&
      task_it->second.proto.acknowledged_state() == task_it->second.proto.state()) {
    CompleteTask(key);
  }
  PublishSoon();
  return absl::OkStatus();
}

absl::Status Master::Reconcile(const v1::ReconcileRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  auto reconciled = [&](const Task& task) {
    v1::TaskStatus status = task.proto.latest_status();
    status.clear_uuid();
    status.set_source(v1::TaskStatus::SOURCE_MASTER);
    status.set_reason(v1::TaskStatus::REASON_RECONCILIATION);
    return status;
  };
  if (request.tasks().empty()) {
    for (const TaskId& id : framework->tasks) {
      const Task& task = tasks_.at(TaskKey(framework->id, id));
      if (!task.terminal || task.proto.acknowledged_state() != task.proto.state()) {
        SendUpdate(*framework, reconciled(task));
      }
    }
    return absl::OkStatus();
  }
  for (const v1::ReconcileRequest::TaskRef& ref : request.tasks()) {
    auto it = tasks_.find(TaskKey(framework->id, TaskId(ref.task_id())));
    if (it != tasks_.end()) {
      SendUpdate(*framework, reconciled(it->second));
      continue;
    }
    const bool agent_known = !ref.agent_id().empty() && agents_.contains(AgentId(ref.agent_id()));
    SendUpdate(*framework, MasterStatus(framework->id, ref.task_id(), ref.agent_id(),
                                        agent_known ? v1::TASK_GONE : v1::TASK_UNKNOWN,
                                        v1::TaskStatus::REASON_RECONCILIATION,
                                        absl::StrCat("task '", ref.task_id(), "' is not known")));
  }
  return absl::OkStatus();
}

absl::Status Master::Teardown(const v1::TeardownRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  RemoveFramework(*framework, "torn down by its scheduler");
  return absl::OkStatus();
}

void Master::RemoveFramework(Framework& framework, const std::string& why) {
  LOG(INFO) << "removing framework '" << framework.id.value() << "': " << why;
  const FrameworkId id = framework.id;
  std::vector<OfferId> offers(framework.offers.begin(), framework.offers.end());
  for (const OfferId& offer : offers) {
    RemoveOffer(offer, /*rescind=*/false, absl::ZeroDuration());
  }
  // Agents kill the framework's tasks; the master forgets them now.
  absl::btree_set<AgentId> hosting;
  for (const TaskId& task_id : framework.tasks) {
    const TaskKey key(id, task_id);
    Task& task = tasks_.at(key);
    hosting.insert(AgentId(task.proto.agent_id()));
  }
  for (const AgentId& agent_id : hosting) {
    auto agent = agents_.find(agent_id);
    if (agent == agents_.end()) {
      continue;
    }
    v1::MasterMessage message;
    message.mutable_shutdown_framework()->set_framework_id(id.value());
    SendToAgent(agent->second, std::move(message));
  }
  std::vector<TaskId> task_ids(framework.tasks.begin(), framework.tasks.end());
  for (const TaskId& task_id : task_ids) {
    Task& task = tasks_.at(TaskKey(id, task_id));
    if (!task.terminal) {
      v1::TaskStatus status = MasterStatus(
          id, task_id.value(), task.proto.agent_id(), v1::TASK_KILLED,
          v1::TaskStatus::REASON_FRAMEWORK_REMOVED, absl::StrCat("framework removed: ", why));
      UpdateTaskState(task, status);
    }
    CompleteTask(TaskKey(id, task_id));
  }
  if (framework.failover_timer.has_value()) {
    loop_.CancelTimer(*framework.failover_timer);
  }
  if (framework.outbox != nullptr) {
    v1::Event event;
    event.mutable_error()->set_message(absl::StrCat("framework removed: ", why));
    SendEvent(framework, std::move(event));
    framework.outbox->Close(absl::OkStatus());
    framework_by_stream_.erase(framework.stream);
  }
  (void)allocator_.RemoveFramework(id);

  v1::FrameworkState done;
  *done.mutable_info() = framework.info;
  done.set_registered_time(Seconds(framework.registered_time));
  completed_frameworks_.push_back(std::move(done));
  while (completed_frameworks_.size() > options_.max_completed_frameworks) {
    completed_frameworks_.pop_front();
  }
  frameworks_.erase(id);
  TriggerAllocation();
  PublishSoon();
}

}  // namespace rz::master
