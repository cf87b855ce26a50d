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
  auto refuse = [&](const absl::Status& status) { RefuseSubscription(info, *outbox, status); };
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
  const bool existed = it != frameworks_.end();
  if (it != frameworks_.end()) {
    framework = &it->second;
    if (framework->info.principal() != info.principal()) {
      refuse(absl::PermissionDeniedError(
          absl::StrCat("framework '", info.id(), "' cannot change its principal from '",
                       framework->info.principal(), "' to '", info.principal(), "'")));
      return;
    }
    // A framework recovered from an agent's report (never subscribed to this master) may not
    // know its user yet; one that subscribed here keeps it.
    if (framework->info.user() != info.user() &&
        (!framework->stream.empty() || !framework->info.user().empty())) {
      refuse(absl::PermissionDeniedError(
          absl::StrCat("framework '", info.id(), "' cannot change its user from '",
                       framework->info.user(), "' to '", info.user(), "'")));
      return;
    }
    // Registry (H1): the new info is stored before anything changes; this runs again then.
    if (!FrameworkStored(request, stream, outbox)) {
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
    // Registry (H1): the framework is stored before it exists; this runs again then.
    if (!FrameworkStored(request, stream, outbox)) {
      return;
    }
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
  metrics_.FrameworkCall(framework->id.value(), "SUBSCRIBE");
  if (existed) {
    ReplayMissed(*framework, request.last_sequence());
  }
  TriggerAllocation();
  PublishSoon();
}

void Master::SchedulerStreamClosed(const StreamId& stream) {
  DCHECK(loop_.IsLoopThread());
  auto it = framework_by_stream_.find(stream);
  if (it == framework_by_stream_.end()) {
    if (auto subscribing = subscribing_streams_.find(stream);
        subscribing != subscribing_streams_.end()) {
      subscribing->second = true;  // Handled once its subscription is stored (H1).
    }
    return;  // Failed over or torn down already.
  }
  Framework& framework = frameworks_.at(it->second);
  framework_by_stream_.erase(it);
  framework.outbox = nullptr;
  RZ_CHECK_OK(allocator_.SetFrameworkActive(framework.id, false));
  // Its offers go back to the pool; nobody else can use them while they are held.
  std::vector<OfferId> offers(framework.offers.begin(), framework.offers.end());
  for (const OfferId& offer : offers) {
    NoteRemovedOffer(offer, "was withdrawn when its scheduler disconnected");
    RemoveOffer(offer, /*rescind=*/false, absl::ZeroDuration());
  }
  const absl::Duration timeout = absl::Seconds(framework.info.failover_timeout_seconds());
  framework.failover_deadline = loop_.clock().Now() + timeout;
  LOG(INFO) << "framework '" << framework.id.value() << "' disconnected; failover timeout "
            << timeout;
  const FrameworkId id = framework.id;
  framework.failover_timer = loop_.PostAfter(timeout, [this, id] { FrameworkFailoverExpired(id); });
  PersistFramework(framework);  // The deadline survives a master restart (H1).
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

void Master::Accept(const v1::AcceptRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<std::optional<AcceptedOffers>> taken = TakeAcceptedOffers(request);
  if (!taken.ok() || !taken->has_value()) {
    std::move(done)(taken.status());
    return;
  }
  AcceptedOffers accepted = **std::move(taken);
  if (!accepted.reservations) {
    ApplyAccept(request, std::move(accepted));
    std::move(done)(absl::OkStatus());
    return;
  }
  // RESERVE and UNRESERVE change the agent's record: stored before they (and the launches
  // after them) are applied. The offers are taken meanwhile; their resources stay allocated.
  v1::RegistryAgent record = AgentRecord(agents_.at(accepted.agent));
  record.clear_reserved();
  ToProto(accepted.reserved, record.mutable_reserved());
  RegistryBatch batch;
  batch.PutAgent(record);
  WriteRegistry(std::move(batch), [this, request, accepted = std::move(accepted),
                                   done = std::move(done)](absl::Status stored) mutable {
    auto framework = frameworks_.find(accepted.framework);
    auto agent = agents_.find(accepted.agent);
    absl::Status status = stored;
    if (status.ok() && (agent == agents_.end() || agent->second.outbox == nullptr)) {
      status = absl::UnavailableError(
          absl::StrCat("agent '", accepted.agent.value(),
                       "' disconnected while the ACCEPT's reservations were being stored"));
    } else if (status.ok() && framework == frameworks_.end()) {
      status = absl::NotFoundError(
          absl::StrCat("framework '", accepted.framework.value(), "' was removed meanwhile"));
    }
    if (!status.ok()) {
      LOG(WARNING) << "ACCEPT of framework '" << accepted.framework.value()
                   << "' not applied: " << status.message();
      if (framework != frameworks_.end()) {
        DropAcceptedTasks(framework->second, request, v1::TaskStatus::REASON_AGENT_DISCONNECTED,
                          std::string(status.message()));
      }
      allocator_.Recover(accepted.framework, accepted.agent, accepted.role, accepted.available,
                         loop_.clock().Now(), absl::ZeroDuration());
      if (agent != agents_.end()) {
        PersistAgent(agent->second);  // The reservations as they still are.
      }
      TriggerAllocation();
      std::move(done)(std::move(status));
      return;
    }
    ApplyAccept(request, std::move(accepted));
    // Answered once the agent's record as it is now is stored too (see StoreThenApply).
    PersistAgent(agent->second, [done = std::move(done)](absl::Status) mutable {
      std::move(done)(absl::OkStatus());
    });
  });
}

void Master::DropAcceptedTasks(Framework& framework, const v1::AcceptRequest& request,
                               v1::TaskStatus::Reason reason, const std::string& why) {
  for (const v1::Operation& op : request.operations()) {
    const auto& tasks =
        op.type() == v1::Operation::LAUNCH_GROUP ? op.launch_group().tasks() : op.launch().tasks();
    for (const v1::TaskInfo& task : tasks) {
      SendUpdate(framework, MasterStatus(framework.id, task.task_id(), task.agent_id(),
                                         v1::TASK_DROPPED, reason, why));
    }
  }
}

absl::StatusOr<std::optional<Master::AcceptedOffers>> Master::TakeAcceptedOffers(
    const v1::AcceptRequest& request) {
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  for (int i = 0; i < request.operations_size(); ++i) {
    const v1::Operation::Type type = request.operations(i).type();
    if (type != v1::Operation::LAUNCH && type != v1::Operation::LAUNCH_GROUP &&
        type != v1::Operation::RESERVE && type != v1::Operation::UNRESERVE) {
      return absl::InvalidArgumentError(
          absl::StrCat("operation ", i, " has no valid type (", v1::Operation::Type_Name(type),
                       "); expected LAUNCH, LAUNCH_GROUP, RESERVE or UNRESERVE"));
    }
  }
  auto tasks_of = [](const v1::Operation& op) -> const auto& {
    return op.type() == v1::Operation::LAUNCH_GROUP ? op.launch_group().tasks()
                                                    : op.launch().tasks();
  };
  // An invalid ACCEPT: every task is dropped with `problem` and the offers go back to the pool.
  auto invalid = [&](const std::string& problem, const std::vector<OfferId>& mine) {
    ++counters_.invalid_accepts;
    metrics_.OffersDropped(request.offer_ids_size());
    LOG(WARNING) << "invalid ACCEPT from framework '" << framework->id.value() << "': " << problem;
    DropAcceptedTasks(*framework, request, v1::TaskStatus::REASON_INVALID_OFFERS, problem);
    for (const OfferId& id : mine) {
      NoteRemovedOffer(id, "was returned to the pool by an invalid ACCEPT", /*by_scheduler=*/true);
      RemoveOffer(id, /*rescind=*/false, absl::ZeroDuration());
    }
    TriggerAllocation();
    PublishSoon();
  };

  std::vector<OfferId> mine;
  if (std::string problem = CheckAcceptOffers(*framework, request, mine); !problem.empty()) {
    invalid(absl::StrCat("invalid offers: ", problem), mine);
    return std::nullopt;
  }
  metrics_.OffersAccepted(static_cast<int64_t>(mine.size()));
  const AgentId agent_id = offers_.at(mine.front()).agent;
  const std::string role = offers_.at(mine.front()).role;
  Agent& agent = agents_.at(agent_id);
  Resources available;
  for (const OfferId& id : mine) {
    available += offers_.at(id).resources;
  }

  // RESERVE and UNRESERVE are checked in order, against what the operations before them leave,
  // before anything is applied: a bad one refuses the whole ACCEPT (there may be no task to
  // carry the reason, so the call fails too).
  AcceptedOffers accepted{.framework = framework->id, .agent = agent_id, .role = role};
  {
    Resources left = available;
    Resources reserved = agent.reserved;
    absl::btree_set<std::string> ids;
    for (int i = 0; i < request.operations_size(); ++i) {
      const v1::Operation& op = request.operations(i);
      if (op.type() == v1::Operation::RESERVE || op.type() == v1::Operation::UNRESERVE) {
        absl::Status status =
            ApplyReservation(*framework, agent, role, op, left, reserved, /*apply=*/false);
        if (!status.ok()) {
          const std::string problem = absl::StrCat(
              "operation ", i, " (", v1::Operation::Type_Name(op.type()), "): ", status.message());
          invalid(absl::StrCat("invalid operation: ", problem), mine);
          return absl::Status(status.code(), problem);
        }
        accepted.reservations = true;
        continue;
      }
      // Launches take from what is left as they will when applied (tasks that will fail
      // take nothing; a group takes all or nothing).
      Resources group_left = left;
      bool group_ok = true;
      for (const v1::TaskInfo& task : tasks_of(op)) {
        TaskRejection ignored;
        absl::StatusOr<Resources> uses = CheckTask(*framework, agent, task, group_left, ignored);
        if (uses.ok() && ids.insert(task.task_id()).second) {
          RZ_CHECK_OK(group_left.Subtract(*uses));
          if (op.type() == v1::Operation::LAUNCH) {
            left = group_left;
          }
        } else {
          group_ok = false;
        }
      }
      if (op.type() == v1::Operation::LAUNCH_GROUP && group_ok) {
        left = group_left;
      }
    }
    accepted.reserved = std::move(reserved);
  }

  for (const OfferId& id : mine) {
    Offer& offer = offers_.at(id);
    if (offer.timeout.has_value()) {
      loop_.CancelTimer(*offer.timeout);
    }
    NoteRemovedOffer(id, "was already accepted", /*by_scheduler=*/true);
    framework->offers.erase(id);
    agent.offers.erase(id);
    offers_.erase(id);
    OfferChanged(id);
  }
  accepted.available = std::move(available);
  return accepted;
}

void Master::ApplyAccept(const v1::AcceptRequest& request, AcceptedOffers accepted) {
  Framework* framework = &frameworks_.at(accepted.framework);
  Agent& agent = agents_.at(accepted.agent);
  const AgentId& agent_id = accepted.agent;
  const std::string& role = accepted.role;
  Resources& available = accepted.available;
  for (const v1::Operation& op : request.operations()) {
    switch (op.type()) {
      case v1::Operation::LAUNCH_GROUP:
        LaunchGroup(*framework, agent, role, op.launch_group().tasks(), available);
        break;
      case v1::Operation::LAUNCH:
        for (const v1::TaskInfo& task : op.launch().tasks()) {
          LaunchTask(*framework, agent, role, task, available);
        }
        break;
      default:
        // Checked above; only an allocator disagreeing with the offers could fail it now.
        if (absl::Status status = ApplyReservation(*framework, agent, role, op, available,
                                                   agent.reserved, /*apply=*/true);
            !status.ok()) {
          LOG(ERROR) << "framework '" << framework->id.value()
                     << "': " << v1::Operation::Type_Name(op.type())
                     << " failed: " << status.message();
        }
        break;
    }
  }
  if (accepted.reservations) {
    AgentChanged(agent.id);
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
}

std::string Master::CheckAcceptOffers(const Framework& framework, const v1::AcceptRequest& request,
                                      std::vector<OfferId>& mine) {
  std::string problem;
  absl::btree_set<OfferId> seen;
  for (const std::string& raw : request.offer_ids()) {
    const OfferId id(raw);
    if (!seen.insert(id).second) {
      problem = absl::StrCat("offer '", raw, "' appears more than once");
      continue;
    }
    auto it = offers_.find(id);
    if (it == offers_.end()) {
      auto removed = removed_offers_.find(id);
      if (removed == removed_offers_.end()) {
        problem = absl::StrCat("offer '", raw, "' is unknown");
      } else if (removed->second.framework != framework.id) {
        problem = absl::StrCat("offer '", raw, "' belongs to another framework");
      } else {
        problem = absl::StrCat("offer '", raw, "' ", removed->second.why);
      }
      continue;
    }
    if (it->second.framework != framework.id) {
      problem = absl::StrCat("offer '", raw, "' belongs to another framework");
      continue;
    }
    auto agent = agents_.find(it->second.agent);
    if (agent == agents_.end() || agent->second.outbox == nullptr) {
      problem = absl::StrCat("offer '", raw, "' is stale: agent '", it->second.agent.value(),
                             "' is no longer connected");
      mine.push_back(id);  // Goes back to the pool with the others.
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
        return absl::StrCat("offers '", first.id.value(), "' and '", id.value(),
                            "' are on different agents");
      }
      if (offer.role != first.role) {
        return absl::StrCat("offers '", first.id.value(), "' and '", id.value(),
                            "' are allocated to different roles");
      }
    }
  }
  return problem;
}

absl::Status Master::ApplyReservation(Framework& framework, Agent& agent, const std::string& role,
                                      const v1::Operation& op, Resources& available,
                                      Resources& reserved, bool apply) {
  const bool reserve = op.type() == v1::Operation::RESERVE;
  absl::StatusOr<Resources> resources =
      FromProto(reserve ? op.reserve().resources() : op.unreserve().resources());
  if (!resources.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid resources: ", resources.status().message()));
  }
  if (resources->empty()) {
    return absl::InvalidArgumentError("names no resources");
  }
  for (const ResourceEntry& entry : resources->entries()) {
    if (entry.role == kDefaultRole) {
      return absl::InvalidArgumentError(absl::StrCat(
          "resource '", entry.name, "' carries no reservation role",
          reserve ? " (set reservations to the role to reserve for)" : " (it is not reserved)"));
    }
    if (reserve && entry.role != role) {
      return absl::InvalidArgumentError(
          absl::StrCat("resource '", entry.name, "' is to be reserved for role '", entry.role,
                       "' but the offers are allocated to role '", role, "'"));
    }
  }
  // RESERVE turns unreserved resources of the offers into reserved ones; UNRESERVE the reverse.
  const Resources unreserved = resources->WithRole(kDefaultRole);
  const Resources& from = reserve ? unreserved : *resources;
  const Resources& to = reserve ? *resources : unreserved;
  if (!reserve && !reserved.Contains(*resources)) {
    return absl::FailedPreconditionError(absl::StrCat(
        resources->ToString(), " is not dynamically reserved on agent '", agent.id.value(),
        "' (reserved: ", reserved.empty() ? "nothing" : reserved.ToString(), ")"));
  }
  if (!available.Contains(from)) {
    return absl::FailedPreconditionError(absl::StrCat("the offers do not hold ", from.ToString(),
                                                      " (left: ", available.ToString(), ")"));
  }
  if (apply) {
    RZ_RETURN_IF_ERROR(allocator_.UpdateAllocation(framework.id, agent.id, role, from, to));
    RZ_CHECK_OK(agent.total.Subtract(from));
    agent.total += to;
    LOG(INFO) << "framework '" << framework.id.value() << "' "
              << (reserve ? "reserved " : "unreserved ") << resources->ToString() << " on agent '"
              << agent.id.value() << "'";
  }
  RZ_CHECK_OK(available.Subtract(from));
  available += to;
  if (reserve) {
    reserved += *resources;
  } else {
    RZ_CHECK_OK(reserved.Subtract(*resources));
  }
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
  TaskChanged(key);
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
  if (task.has_kill_policy()) {
    *proto.mutable_kill_policy() = task.kill_policy();  // For drain kills (H4).
  }
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
    NoteRemovedOffer(it->first, "was declined", /*by_scheduler=*/true);
    metrics_.OfferDeclined();
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
  // The task's latest state as the master knows it (TASK_UNREACHABLE keeps its
  // unreachable_time), as a master-sourced update that needs no acknowledgement.
  auto reconciled = [&](const Task& task) {
    v1::TaskStatus status = task.proto.latest_status();
    status.clear_uuid();
    status.set_task_id(task.proto.task_id());
    status.set_framework_id(task.proto.framework_id());
    status.set_agent_id(task.proto.agent_id());
    status.set_state(task.proto.state());
    status.set_source(v1::TaskStatus::SOURCE_MASTER);
    status.set_reason(v1::TaskStatus::REASON_RECONCILIATION);
    if (status.timestamp() == 0) {
      status.set_timestamp(Seconds(loop_.clock().Now()));
    }
    return status;
  };
  if (request.tasks().empty()) {
    // Implicit (SCENARIOS M8): every non-terminal task, and terminal ones whose terminal update
    // is not acknowledged yet.
    for (const TaskId& id : framework->tasks) {
      const Task& task = tasks_.at(TaskKey(framework->id, id));
      if (!task.terminal || task.proto.acknowledged_state() != task.proto.state()) {
        SendUpdate(*framework, reconciled(task));
      }
    }
    return absl::OkStatus();
  }
  // Explicit (SCENARIOS M7).
  for (const v1::ReconcileRequest::TaskRef& ref : request.tasks()) {
    if (ref.task_id().empty()) {
      return absl::InvalidArgumentError("a task to reconcile has no task_id");
    }
  }
  for (const v1::ReconcileRequest::TaskRef& ref : request.tasks()) {
    auto it = tasks_.find(TaskKey(framework->id, TaskId(ref.task_id())));
    if (it != tasks_.end()) {
      SendUpdate(*framework, reconciled(it->second));
      continue;
    }
    ReconcileUnknownTask(*framework, ref.task_id(), ref.agent_id());
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
  metrics_.FrameworkRemoved(id.value());
  frameworks_.erase(id);
  FrameworkChanged(id);
  {
    RegistryBatch batch;  // Completed frameworks are not kept in the registry (H1).
    batch.DeleteFramework(id);
    WriteRegistry(std::move(batch));
  }
  HistoryChanged();
  TriggerAllocation();
  PublishSoon();
}

// ---------------------------------------------------------------------------------------------
// Scheduler API and reservations (H3)

void Master::NoteRemovedOffer(const OfferId& id, std::string why, bool by_scheduler) {
  auto [it, inserted] = removed_offers_.try_emplace(id);
  if (!inserted) {
    return;
  }
  if (auto offer = offers_.find(id); offer != offers_.end()) {
    it->second.framework = offer->second.framework;
  }
  it->second.why = std::move(why);
  it->second.by_scheduler = by_scheduler;
  removed_order_.push_back(id);
  while (removed_order_.size() > kMaxRemovedOffers) {
    removed_offers_.erase(removed_order_.front());
    removed_order_.pop_front();
  }
}

void Master::ReplayMissed(Framework& framework, uint64_t last_sequence) {
  const bool resuming = last_sequence > 0;
  // SUBSCRIBED, just sent, took the latest number: the scheduler cannot have seen it.
  if (last_sequence + 1 >= framework.next_sequence) {
    // More than this master ever sent (it restarted): the scheduler may have missed anything.
    LOG(WARNING) << "framework '" << framework.id.value() << "' resumes after sequence "
                 << last_sequence << " but only " << framework.next_sequence - 2
                 << " were sent before; replaying everything";
    last_sequence = 0;
  }
  int updates = 0;
  int rescinds = 0;
  if (resuming) {
    // Status updates: every unacknowledged one, and every master-generated one it was not
    // delivered (or may have lost after `last_sequence`).
    for (const TaskId& task_id : framework.tasks) {
      Task& task = tasks_.at(TaskKey(framework.id, task_id));
      const v1::TaskStatus& latest = task.proto.latest_status();
      const bool unacknowledged =
          !latest.uuid().empty() && task.proto.acknowledged_state() != task.proto.state();
      const bool missed = task.status_sequence != kNoStatusEvent &&
                          (task.status_sequence == 0 || task.status_sequence > last_sequence);
      if (unacknowledged || missed) {
        const v1::TaskStatus status = latest;
        SendUpdate(framework, status);
        ++updates;
      }
    }
    // Offers it may know of that ended without its knowledge: RESCIND.
    for (auto& [id, sequence] : framework.sent_offers) {
      if (offers_.contains(id)) {
        continue;
      }
      auto removed = removed_offers_.find(id);
      if (removed != removed_offers_.end() &&
          (removed->second.by_scheduler || (removed->second.rescind_sequence != 0 &&
                                            removed->second.rescind_sequence <= last_sequence))) {
        continue;
      }
      v1::Event event;
      event.mutable_rescind()->set_offer_id(id.value());
      const uint64_t rescinded = SendEvent(framework, std::move(event));
      if (removed != removed_offers_.end()) {
        removed->second.rescind_sequence = rescinded;
      }
      ++rescinds;
    }
    // Told now: only outstanding offers need remembering.
    std::erase_if(framework.sent_offers,
                  [this](const auto& sent) { return !offers_.contains(sent.first); });
  }
  // Outstanding offers again: a failed-over instance cannot know them.
  if (!framework.offers.empty()) {
    v1::Event event;
    for (const OfferId& id : framework.offers) {
      *event.mutable_offers()->add_offers() = offers_.at(id).proto;
    }
    const uint64_t sequence = SendEvent(framework, std::move(event));
    for (const OfferId& id : framework.offers) {
      framework.sent_offers.emplace_back(id, sequence);
    }
    while (framework.sent_offers.size() > kMaxSentOffers) {
      framework.sent_offers.pop_front();
    }
  }
  LOG(INFO) << "framework '" << framework.id.value() << "' resubscribed after sequence "
            << last_sequence << ": replayed " << updates << " status updates, " << rescinds
            << " rescinds and " << framework.offers.size() << " outstanding offers";
}

Resources Master::WithReservations(Agent& agent, const Resources& total) {
  if (agent.reserved.empty()) {
    return total;
  }
  Resources result = total;
  if (!result.Subtract(agent.reserved.WithRole(kDefaultRole)).ok()) {
    LOG(WARNING) << "agent '" << agent.id.value() << "' no longer has the resources of its "
                 << "reservations " << agent.reserved.ToString() << "; dropping them";
    agent.reserved = Resources();
    return total;
  }
  return result + agent.reserved;
}

void Master::UpdateFramework(const v1::UpdateFrameworkRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<Framework*> caller = FindCaller(request.header());
  if (!caller.ok()) {
    std::move(done)(caller.status());
    return;
  }
  Framework* framework = *caller;
  v1::FrameworkInfo info = request.framework_info();
  absl::Status status = absl::OkStatus();
  if (!info.id().empty() && info.id() != framework->id.value()) {
    status = absl::InvalidArgumentError(absl::StrCat("framework_info.id '", info.id(),
                                                     "' is not the caller's id '",
                                                     framework->id.value(), "'"));
  } else if (info.principal() != framework->info.principal()) {
    status = absl::PermissionDeniedError(
        absl::StrCat("principal is immutable: framework '", framework->id.value(), "' has '",
                     framework->info.principal(), "', not '", info.principal(), "'"));
  } else if (info.user() != framework->info.user()) {
    status = absl::PermissionDeniedError(
        absl::StrCat("user is immutable: framework '", framework->id.value(), "' has '",
                     framework->info.user(), "', not '", info.user(), "'"));
  } else {
    info.set_id(framework->id.value());
    status = ValidateFrameworkInfo(info);
  }
  absl::StatusOr<allocator::FrameworkOptions> options =
      status.ok() ? ToFrameworkOptions(info, /*active=*/true)
                  : absl::StatusOr<allocator::FrameworkOptions>(status);
  if (!options.ok()) {
    std::move(done)(options.status());
    return;
  }
  // Stored first, applied and answered once durable.
  v1::RegistryFramework record = FrameworkRecord(*framework);
  *record.mutable_info() = info;
  RegistryBatch batch;
  batch.PutFramework(record);
  WriteRegistry(std::move(batch), [this, id = framework->id, stream = request.header().stream_id(),
                                   info = std::move(info), options = *std::move(options),
                                   done = std::move(done)](absl::Status status) mutable {
    if (!status.ok()) {
      LOG(WARNING) << "framework '" << id.value() << "' not updated: " << status.message();
      std::move(done)(status);
      return;
    }
    auto it = frameworks_.find(id);
    if (it == frameworks_.end()) {
      std::move(done)(absl::NotFoundError(
          absl::StrCat("framework '", id.value(), "' was removed while its update was stored")));
      return;
    }
    Framework& framework = it->second;
    if (absl::Status updated = allocator_.UpdateFramework(id, options); !updated.ok()) {
      std::move(done)(updated);
      return;
    }
    framework.info = info;
    // Offers in roles it left go; allocations there stay until their resources come back.
    const std::vector<std::string> roles = RolesOf(info);
    std::vector<OfferId> gone;
    for (const OfferId& offer : framework.offers) {
      if (std::find(roles.begin(), roles.end(), offers_.at(offer).role) == roles.end()) {
        gone.push_back(offer);
      }
    }
    for (const OfferId& offer : gone) {
      NoteRemovedOffer(offer, "was rescinded: the framework left its role");
      RemoveOffer(offer, /*rescind=*/true, absl::ZeroDuration());
    }
    LOG(INFO) << "framework '" << id.value() << "' updated: roles " << absl::StrJoin(roles, ", ");
    FrameworkChanged(id);
    TriggerAllocation();
    PublishSoon();
    std::move(done)(absl::OkStatus());
  });
}

absl::Status Master::Message(const v1::MessageRequest& request) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  if (request.task_id().empty()) {
    return absl::InvalidArgumentError("message names no task_id");
  }
  if (request.data().size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message for task '", request.task_id(), "' has ", request.data().size(),
                     " bytes; at most ", kMaxMessageBytes, " (1 MiB) are allowed"));
  }
  auto task = tasks_.find(TaskKey(framework->id, TaskId(request.task_id())));
  if (task == tasks_.end() || task->second.terminal) {
    return absl::NotFoundError(absl::StrCat("task '", request.task_id(), "' of framework '",
                                            framework->id.value(), "' is unknown or finished"));
  }
  const std::string& agent_id = task->second.proto.agent_id();
  if (!request.agent_id().empty() && request.agent_id() != agent_id) {
    return absl::NotFoundError(absl::StrCat("task '", request.task_id(), "' runs on agent '",
                                            agent_id, "', not on '", request.agent_id(), "'"));
  }
  auto agent = agents_.find(AgentId(agent_id));
  if (agent == agents_.end() || agent->second.outbox == nullptr) {
    return absl::UnavailableError(absl::StrCat("agent '", agent_id, "' of task '",
                                               request.task_id(),
                                               "' is disconnected; the message was not sent"));
  }
  v1::MasterMessage message;
  v1::MasterMessage::FrameworkMessage* out = message.mutable_framework_message();
  out->set_framework_id(framework->id.value());
  out->set_task_id(request.task_id());
  out->set_data(request.data());
  SendToAgent(agent->second, std::move(message));
  return absl::OkStatus();
}

namespace {

// The resources of an operator reservation request and the one role they are reserved for.
absl::StatusOr<std::pair<Resources, std::string>> ReservedResources(
    const google::protobuf::RepeatedPtrField<v1::Resource>& proto) {
  absl::StatusOr<Resources> resources = FromProto(proto);
  if (!resources.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid resources: ", resources.status().message()));
  }
  if (resources->empty()) {
    return absl::InvalidArgumentError("the request names no resources");
  }
  std::string role;
  for (const ResourceEntry& entry : resources->entries()) {
    if (entry.role == kDefaultRole) {
      return absl::InvalidArgumentError(
          absl::StrCat("resource '", entry.name, "' carries no reservation role"));
    }
    if (!role.empty() && entry.role != role) {
      return absl::InvalidArgumentError(absl::StrCat("resources are reserved for two roles ('",
                                                     role, "' and '", entry.role,
                                                     "'); one per call"));
    }
    role = entry.role;
  }
  return std::make_pair(*std::move(resources), role);
}

}  // namespace

absl::StatusOr<Master::Agent*> Master::FindConnectedAgent(const std::string& agent_id) {
  auto it = agents_.find(AgentId(agent_id));
  if (it == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent_id, "'"));
  }
  if (it->second.outbox == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("agent '", agent_id, "' is not connected"));
  }
  return &it->second;
}

bool Master::FreeUpOnAgent(Agent& agent, const Resources& needed) {
  if (allocator_.Free(agent.id).Contains(needed)) {
    return true;
  }
  // Offered resources are not lost to a reservation change: take the agent's offers back.
  std::vector<OfferId> offers(agent.offers.begin(), agent.offers.end());
  for (const OfferId& id : offers) {
    NoteRemovedOffer(id, "was rescinded: an operator changed its agent's reservations");
    RemoveOffer(id, /*rescind=*/true, absl::ZeroDuration());
  }
  return allocator_.Free(agent.id).Contains(needed);
}

bool Master::CanFreeUpOnAgent(const Agent& agent, const Resources& needed) const {
  Resources reclaimable = allocator_.Free(agent.id);
  for (const OfferId& id : agent.offers) {
    reclaimable += offers_.at(id).resources;
  }
  return reclaimable.Contains(needed);
}

absl::StatusOr<RegistryBatch> Master::FutureReservations(
    const absl::StatusOr<std::pair<Agent*, Resources>>& checked) const {
  if (!checked.ok()) {
    return checked.status();
  }
  return FutureAgentRecord(checked->first, [&](v1::RegistryAgent& record) {
    record.clear_reserved();
    ToProto(checked->second, record.mutable_reserved());
  });
}

absl::StatusOr<std::pair<Master::Agent*, Resources>> Master::CheckReserve(
    const v1::ReserveResourcesRequest& request) {
  RZ_ASSIGN_OR_RETURN(Agent * agent, FindConnectedAgent(request.agent_id()));
  RZ_ASSIGN_OR_RETURN(auto reservation, ReservedResources(request.resources()));
  const Resources unreserved = reservation.first.WithRole(kDefaultRole);
  if (!CanFreeUpOnAgent(*agent, unreserved)) {
    const Resources free = allocator_.Free(agent->id);
    return absl::FailedPreconditionError(
        absl::StrCat(unreserved.ToString(), " is not free on agent '", agent->id.value(),
                     "' (free: ", free.empty() ? "nothing" : free.ToString(), ")"));
  }
  Resources after = agent->reserved;
  after += reservation.first;
  return std::make_pair(agent, std::move(after));
}

void Master::ReserveResources(const v1::ReserveResourcesRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<std::pair<Agent*, Resources>> checked = CheckReserve(request);
  StoreThenApplyToAgent(
      request.agent_id(), FutureReservations(checked),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(auto checked, CheckReserve(request));
        Agent& agent = *checked.first;
        RZ_ASSIGN_OR_RETURN(auto reservation, ReservedResources(request.resources()));
        const auto& [resources, role] = reservation;
        const Resources unreserved = resources.WithRole(kDefaultRole);
        if (!FreeUpOnAgent(agent, unreserved)) {
          return absl::FailedPreconditionError(absl::StrCat(
              unreserved.ToString(), " is no longer free on agent '", agent.id.value(), "'"));
        }
        RZ_RETURN_IF_ERROR(allocator_.ReserveFree(agent.id, unreserved, role));
        RZ_CHECK_OK(agent.total.Subtract(unreserved));
        agent.total += resources;
        agent.reserved += resources;
        LOG(INFO) << "operator reserved " << resources.ToString() << " on agent '"
                  << agent.id.value() << "'";
        AgentChanged(agent.id);
        TriggerAllocation();
        PublishSoon();
        return absl::OkStatus();
      },
      std::move(done));
}

absl::StatusOr<std::pair<Master::Agent*, Resources>> Master::CheckUnreserve(
    const v1::UnreserveResourcesRequest& request) {
  RZ_ASSIGN_OR_RETURN(Agent * agent, FindConnectedAgent(request.agent_id()));
  RZ_ASSIGN_OR_RETURN(auto reservation, ReservedResources(request.resources()));
  const Resources& resources = reservation.first;
  if (!agent->reserved.Contains(resources)) {
    return absl::FailedPreconditionError(absl::StrCat(
        resources.ToString(), " is not dynamically reserved on agent '", agent->id.value(),
        "' (reserved: ", agent->reserved.empty() ? "nothing" : agent->reserved.ToString(), ")"));
  }
  if (!CanFreeUpOnAgent(*agent, resources)) {
    return absl::FailedPreconditionError(absl::StrCat(resources.ToString(), " on agent '",
                                                      agent->id.value(), "' is in use by tasks"));
  }
  Resources after = agent->reserved;
  RZ_CHECK_OK(after.Subtract(resources));
  return std::make_pair(agent, std::move(after));
}

void Master::UnreserveResources(const v1::UnreserveResourcesRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<std::pair<Agent*, Resources>> checked = CheckUnreserve(request);
  StoreThenApplyToAgent(
      request.agent_id(), FutureReservations(checked),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(auto checked, CheckUnreserve(request));
        Agent& agent = *checked.first;
        RZ_ASSIGN_OR_RETURN(auto reservation, ReservedResources(request.resources()));
        const Resources& resources = reservation.first;
        if (!FreeUpOnAgent(agent, resources)) {
          return absl::FailedPreconditionError(absl::StrCat(
              resources.ToString(), " on agent '", agent.id.value(), "' is in use by tasks"));
        }
        RZ_RETURN_IF_ERROR(allocator_.UnreserveFree(agent.id, resources));
        RZ_CHECK_OK(agent.total.Subtract(resources));
        agent.total += resources.WithRole(kDefaultRole);
        RZ_CHECK_OK(agent.reserved.Subtract(resources));
        LOG(INFO) << "operator unreserved " << resources.ToString() << " on agent '"
                  << agent.id.value() << "'";
        AgentChanged(agent.id);
        TriggerAllocation();
        PublishSoon();
        return absl::OkStatus();
      },
      std::move(done));
}

}  // namespace rz::master
