#include "master/master.h"

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

namespace rz::master {
namespace {

constexpr size_t kMaxRoleLength = 256;

bool IsValidRole(const std::string& role) {
  if (role == kDefaultRole) {
    return true;
  }
  if (role.empty() || role.size() > kMaxRoleLength || role.front() == '/' || role.back() == '/') {
    return false;
  }
  for (const absl::string_view segment : absl::StrSplit(role, '/')) {
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    for (char c : segment) {
      if (!(absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.')) {
        return false;
      }
    }
  }
  return true;
}

absl::Status ValidateFrameworkInfo(const v1::FrameworkInfo& info) {
  absl::btree_set<std::string> seen;
  for (const std::string& role : info.roles()) {
    if (!IsValidRole(role)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid role '", role, "'"));
    }
    if (!seen.insert(role).second) {
      return absl::InvalidArgumentError(absl::StrCat("role '", role, "' is given twice"));
    }
  }
  if (info.max_outstanding_offers() < 0) {
    return absl::InvalidArgumentError("max_outstanding_offers must not be negative");
  }
  if (!(info.failover_timeout_seconds() >= 0) ||
      info.failover_timeout_seconds() > 365.0 * 24 * 3600) {
    return absl::InvalidArgumentError(absl::StrCat("invalid failover_timeout_seconds ",
                                                   info.failover_timeout_seconds(),
                                                   ": must be between 0 and one year"));
  }
  return absl::OkStatus();
}

absl::Duration RefuseFor(const v1::Filters& filters, absl::Duration fallback) {
  if (!filters.has_refuse_seconds()) {
    return fallback;
  }
  const double s = filters.refuse_seconds();
  if (!(s > 0)) {
    return absl::ZeroDuration();
  }
  return absl::Seconds(std::min(s, 365.0 * 24 * 3600));
}

}  // namespace

Master::Master(EventLoop& loop, MasterOptions options, v1::MasterInfo info)
    : loop_(loop),
      options_(options),
      info_(std::move(info)),
      allocator_(options.allocator),
      snapshot_(std::make_shared<v1::State>()),
      roles_snapshot_(std::make_shared<v1::Roles>()) {}

Master::~Master() = default;

void Master::Start(v1::MasterInfo info) {
  DCHECK(loop_.IsLoopThread());
  info_ = std::move(info);
  info_.set_start_time(Seconds(loop_.clock().Now()));
  info_.set_leader(true);
  auto schedule_allocation = [this](auto& self) -> void {
    allocation_timer_ = loop_.PostAfter(options_.allocation_interval, [this, self]() mutable {
      RunAllocation();
      self(self);
    });
  };
  schedule_allocation(schedule_allocation);
  auto schedule_ping = [this](auto& self) -> void {
    ping_timer_ = loop_.PostAfter(options_.agent_ping_interval, [this, self]() mutable {
      PingAgents();
      self(self);
    });
  };
  schedule_ping(schedule_ping);
  auto schedule_heartbeat = [this](auto& self) -> void {
    heartbeat_timer_ = loop_.PostAfter(options_.heartbeat_interval, [this, self]() mutable {
      SendHeartbeats();
      self(self);
    });
  };
  schedule_heartbeat(schedule_heartbeat);
  Publish();
}

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

void Master::SendEvent(Framework& framework, v1::Event event) {
  // Events for a disconnected scheduler are dropped (status updates are resent by agents until
  // acknowledged) and take no sequence number, so numbers seen by schedulers have no gaps.
  if (framework.outbox == nullptr) {
    return;
  }
  event.set_sequence(framework.next_sequence++);
  framework.outbox->Send(std::move(event));
}

void Master::SendHeartbeats() {
  for (auto& [id, framework] : frameworks_) {
    if (framework.outbox != nullptr) {
      v1::Event event;
      event.mutable_heartbeat();
      SendEvent(framework, std::move(event));
    }
  }
}

void Master::SendUpdate(Framework& framework, const v1::TaskStatus& status) {
  v1::Event event;
  *event.mutable_update()->mutable_status() = status;
  SendEvent(framework, std::move(event));
}

v1::TaskStatus Master::MasterStatus(const FrameworkId& framework, const std::string& task_id,
                                    const std::string& agent_id, v1::TaskState state,
                                    v1::TaskStatus::Reason reason,
                                    const std::string& message) const {
  v1::TaskStatus status;
  status.set_task_id(task_id);
  status.set_framework_id(framework.value());
  status.set_agent_id(agent_id);
  status.set_state(state);
  status.set_source(v1::TaskStatus::SOURCE_MASTER);
  status.set_reason(reason);
  status.set_message(message);
  status.set_timestamp(Seconds(loop_.clock().Now()));
  return status;
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

// ---------------------------------------------------------------------------------------------
// Operators

absl::Status Master::UpdateWeights(const v1::UpdateWeightsRequest& request) {
  DCHECK(loop_.IsLoopThread());
  for (const v1::WeightInfo& weight : request.weights()) {
    if (!IsValidRole(weight.role())) {
      return absl::InvalidArgumentError(absl::StrCat("invalid role '", weight.role(), "'"));
    }
    if (!(weight.weight() > 0) || weight.weight() > 1e9) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weight of role '", weight.role(), "' must be in (0, 1e9], not ", weight.weight()));
    }
  }
  for (const v1::WeightInfo& weight : request.weights()) {
    RZ_CHECK_OK(allocator_.SetWeight(weight.role(), weight.weight()));
    LOG(INFO) << "weight of role '" << weight.role() << "' set to " << weight.weight();
  }
  RescindAllOffers();
  return absl::OkStatus();
}

absl::Status Master::UpdateQuota(const v1::UpdateQuotaRequest& request) {
  DCHECK(loop_.IsLoopThread());
  std::vector<std::pair<std::string, allocator::Quota>> quotas;
  for (const v1::QuotaConfig& config : request.quotas()) {
    if (!IsValidRole(config.role()) || config.role() == kDefaultRole) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid role '", config.role(), "' for quota"));
    }
    RZ_ASSIGN_OR_RETURN(allocator::Quota quota, ToQuota(config));
    for (const ResourceEntry& guaranteed : quota.guarantee.entries()) {
      bool limited = std::find(quota.zero_limit.begin(), quota.zero_limit.end(), guaranteed.name) !=
                     quota.zero_limit.end();
      for (const ResourceEntry& limit : quota.limit.entries()) {
        limited = limited || limit.name == guaranteed.name;
      }
      if (limited &&
          quota.guarantee.ScalarFixed(guaranteed.name) > quota.limit.ScalarFixed(guaranteed.name)) {
        return absl::InvalidArgumentError(absl::StrCat("quota of role '", config.role(),
                                                       "': guarantee of '", guaranteed.name,
                                                       "' exceeds its limit"));
      }
    }
    quotas.emplace_back(config.role(), std::move(quota));
  }
  for (const auto& [role, quota] : quotas) {
    RZ_RETURN_IF_ERROR(allocator_.SetQuota(role, quota));
    LOG(INFO) << "quota of role '" << role << "' set: guarantee " << quota.guarantee.ToString()
              << ", limit " << quota.limit.ToString();
  }
  RescindAllOffers();
  return absl::OkStatus();
}

void Master::RescindAllOffers() {
  std::vector<OfferId> offers;
  for (const auto& [id, offer] : offers_) {
    offers.push_back(id);
  }
  for (const OfferId& id : offers) {
    RemoveOffer(id, /*rescind=*/true, absl::ZeroDuration());
  }
  TriggerAllocation();
  PublishSoon();
}

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
  if (!total->Contains(used)) {
    return absl::InvalidArgumentError(
        absl::StrCat("agent '", info.hostname(), "' reports tasks using ", used.ToString(),
                     " which exceeds its resources ", total->ToString()));
  }

  const bool new_agent = info.id().empty();
  const AgentId id(new_agent ? NewUuid() : info.id());
  auto existing = agents_.find(id);
  if (existing != agents_.end() && existing->second.outbox != nullptr) {
    // The agent reconnected before its old link was noticed dead.
    LOG(INFO) << "agent '" << id.value() << "' replaces its link '" << existing->second.link.value()
              << "'";
    existing->second.outbox->Close(absl::AbortedError("agent reconnected on another link"));
    AgentDisconnected(existing->second);
  }
  Agent& agent = agents_[id];
  const bool known = agent.id == id;
  agent.id = id;
  agent.info = info;
  agent.info.set_id(id.value());
  agent.total = *total;
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
    task.proto = reported_task;
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

  LOG(INFO) << (new_agent ? "registered" : "reregistered") << " agent '" << id.value() << "' ("
            << info.hostname() << ") with " << agent.total.ToString();
  v1::MasterMessage message;
  v1::MasterMessage::Registered* registered = message.mutable_registered();
  registered->set_agent_id(id.value());
  *registered->mutable_master_info() = info_;
  registered->set_ping_interval_seconds(absl::ToDoubleSeconds(options_.agent_ping_interval));
  SendToAgent(agent, std::move(message));
  TriggerAllocation();
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
  PublishSoon();
}

void Master::HandleUsage(Agent& agent, const v1::AgentMessage::Usage& usage) {
  agent.usage = usage.total();
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
  }
  // Usage is for readers only: no allocation pass, and PublishSoon() coalesces the snapshot
  // with whatever else this loop batch changes.
  PublishSoon();
}

void Master::UpdateTaskState(Task& task, const v1::TaskStatus& status) {
  const bool was_terminal = task.terminal;
  task.proto.set_state(status.state());
  *task.proto.mutable_latest_status() = status;
  if (status.uuid().empty()) {
    // Master-generated updates need no acknowledgement.
    task.proto.set_acknowledged_state(status.state());
  }
  task.terminal = IsTerminal(status.state());
  if (task.terminal && !was_terminal) {
    allocator_.Recover(FrameworkId(task.proto.framework_id()), AgentId(task.proto.agent_id()),
                       task.proto.role(), task.resources, loop_.clock().Now(), absl::ZeroDuration(),
                       /*ends_offer=*/false);
    TriggerAllocation();
  }
}

void Master::CompleteTask(const TaskKey& key) {
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    return;
  }
  if (auto f = frameworks_.find(key.first); f != frameworks_.end()) {
    f->second.tasks.erase(key.second);
  }
  if (auto a = agents_.find(AgentId(it->second.proto.agent_id())); a != agents_.end()) {
    a->second.tasks.erase(key);
  }
  completed_tasks_.push_back(std::move(it->second.proto));
  while (completed_tasks_.size() > options_.max_completed_tasks) {
    completed_tasks_.pop_front();
  }
  tasks_.erase(it);
  PublishSoon();
}

void Master::AgentLinkClosed(const StreamId& link) {
  DCHECK(loop_.IsLoopThread());
  auto it = agent_by_link_.find(link);
  if (it == agent_by_link_.end()) {
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
    RemoveOffer(offer, /*rescind=*/true, absl::ZeroDuration());
  }
  (void)allocator_.RemoveAgent(agent.id);
  const AgentId id = agent.id;
  agent.reregister_timer = loop_.PostAfter(options_.agent_reregister_timeout,
                                           [this, id] { AgentReregisterExpired(id); });
  PublishSoon();
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
  }
  PublishSoon();
}

void Master::SendToAgent(Agent& agent, v1::MasterMessage message) {
  if (agent.outbox != nullptr) {
    agent.outbox->Send(std::move(message));
  }
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

// ---------------------------------------------------------------------------------------------
// Offers

void Master::TriggerAllocation() {
  if (allocation_pending_) {
    return;
  }
  allocation_pending_ = true;
  loop_.Post([this] { RunAllocation(); });
}

void Master::RunAllocation() {
  DCHECK(loop_.IsLoopThread());
  allocation_pending_ = false;
  const absl::Time start = loop_.clock().Now();
  std::vector<allocator::Allocation> allocations = allocator_.Allocate(start);
  last_cycle_duration_ = loop_.clock().Now() - start;
  PublishSoon();
  if (allocations.empty()) {
    return;
  }
  absl::btree_map<FrameworkId, v1::Event> events;
  for (allocator::Allocation& allocation : allocations) {
    Framework& framework = frameworks_.at(allocation.framework);
    Agent& agent = agents_.at(allocation.agent);
    const OfferId id(NewUuid());
    Offer& offer = offers_[id];
    offer.id = id;
    offer.framework = allocation.framework;
    offer.agent = allocation.agent;
    offer.role = allocation.role;
    offer.resources = std::move(allocation.resources);
    v1::Offer& proto = offer.proto;
    proto.set_id(id.value());
    proto.set_framework_id(framework.id.value());
    proto.set_agent_id(agent.id.value());
    proto.set_hostname(agent.info.hostname());
    proto.set_agent_http_address(agent.info.http_address());
    proto.set_role(offer.role);
    ToProto(offer.resources, proto.mutable_resources());
    for (v1::Resource& resource : *proto.mutable_resources()) {
      resource.set_allocation_role(offer.role);
    }
    *proto.mutable_attributes() = agent.info.attributes();
    if (options_.offer_timeout > absl::ZeroDuration()) {
      offer.timeout = loop_.PostAfter(options_.offer_timeout, [this, id] {
        if (offers_.contains(id)) {
          LOG(INFO) << "offer '" << id.value() << "' timed out";
          offers_.at(id).timeout.reset();
          RemoveOffer(id, /*rescind=*/true, absl::ZeroDuration());
          TriggerAllocation();
        }
      });
    }
    framework.offers.insert(id);
    agent.offers.insert(id);
    *events[framework.id].mutable_offers()->add_offers() = proto;
    ++counters_.offers_sent;
  }
  for (auto& [framework_id, event] : events) {
    SendEvent(frameworks_.at(framework_id), std::move(event));
  }
  PublishSoon();
}

void Master::RemoveOffer(const OfferId& id, bool rescind, absl::Duration refuse) {
  auto it = offers_.find(id);
  if (it == offers_.end()) {
    return;
  }
  Offer& offer = it->second;
  if (offer.timeout.has_value()) {
    loop_.CancelTimer(*offer.timeout);
  }
  auto framework = frameworks_.find(offer.framework);
  if (framework != frameworks_.end()) {
    framework->second.offers.erase(id);
    if (rescind) {
      ++counters_.offers_rescinded;
      v1::Event event;
      event.mutable_rescind()->set_offer_id(id.value());
      SendEvent(framework->second, std::move(event));
    }
  }
  if (auto agent = agents_.find(offer.agent); agent != agents_.end()) {
    agent->second.offers.erase(id);
  }
  allocator_.Recover(offer.framework, offer.agent, offer.role, offer.resources, loop_.clock().Now(),
                     refuse);
  offers_.erase(it);
  PublishSoon();
}

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
