// Master: what it keeps in the registry, and its recovery from it at start (DESIGN.md §6).
//
// A change that a caller asked for (a subscription, an agent's admission, weights, quota) is
// stored first and applied and answered in the write's completion; until then the state machine
// is unchanged, and further calls about the same framework wait (framework_writes_). Operator
// actions on agents and maintenance, and reservations, go through StoreThenApply. A change
// that is a fact (a stream closed, a timer fired, an agent fell silent) is applied at once and
// its record written after, fire-and-forget: a failure is logged, and the next write of that
// record repairs it.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/random_id.h"
#include "common/resources_proto.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "master/allocator_adapter.h"
#include "master/master.h"
#include "master/validation.h"

namespace rz::master {
namespace {

absl::Time FromSeconds(double seconds) { return absl::UnixEpoch() + absl::Seconds(seconds); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Records

v1::RegistryAgent Master::AgentRecord(const Agent& agent) const {
  v1::RegistryAgent record;
  *record.mutable_info() = agent.info;
  record.mutable_info()->set_id(agent.id.value());
  record.set_state(agent.unreachable ? v1::RegistryAgent::UNREACHABLE
                                     : v1::RegistryAgent::ADMITTED);
  record.set_registered_time(Seconds(agent.registered_time));
  if (agent.unreachable) {
    record.set_unreachable_time(Seconds(agent.unreachable_time));
  }
  record.set_deactivated(agent.deactivated);
  if (agent.drain.has_value()) {
    *record.mutable_drain() = *agent.drain;
  }
  ToProto(agent.reserved, record.mutable_reserved());
  return record;
}

v1::RegistryFramework Master::FrameworkRecord(const Framework& framework) const {
  v1::RegistryFramework record;
  *record.mutable_info() = framework.info;
  record.mutable_info()->set_id(framework.id.value());
  record.set_registered_time(Seconds(framework.registered_time));
  if (framework.outbox == nullptr) {
    record.set_disconnected(true);
    record.set_failover_deadline(Seconds(framework.failover_deadline));
  }
  return record;
}

void Master::WriteRegistry(RegistryBatch batch, Registry::Done done) {
  if (done == nullptr) {
    done = [keys = batch.Keys()](absl::Status status) {
      if (!status.ok()) {
        LOG(ERROR) << "registry records " << keys << " are not stored: " << status.message();
      }
    };
  }
  registry_.Write(std::move(batch), std::move(done));
}

void Master::PersistAgent(const Agent& agent, Registry::Done done) {
  RegistryBatch batch;
  batch.PutAgent(AgentRecord(agent));
  WriteRegistry(std::move(batch), std::move(done));
}

void Master::PersistFramework(const Framework& framework, Registry::Done done) {
  RegistryBatch batch;
  batch.PutFramework(FrameworkRecord(framework));
  WriteRegistry(std::move(batch), std::move(done));
}

v1::RegistryAgent Master::GoneAgentRecord(const AgentId& id, const v1::AgentInfo& info,
                                          absl::Time gone_time) const {
  v1::RegistryAgent record;
  *record.mutable_info() = info;
  record.mutable_info()->set_id(id.value());
  record.set_state(v1::RegistryAgent::GONE);
  record.set_gone_time(Seconds(gone_time));
  return record;
}

void Master::PersistGoneAgent(const AgentId& id, const v1::AgentInfo& info, absl::Time gone_time,
                              Registry::Done done) {
  RegistryBatch batch;
  batch.PutAgent(GoneAgentRecord(id, info, gone_time));
  WriteRegistry(std::move(batch), std::move(done));
}

void Master::UnpersistAgent(const AgentId& id) {
  RegistryBatch batch;
  batch.DeleteAgent(id);
  WriteRegistry(std::move(batch));
}

v1::RegistryMaintenance Master::MaintenanceRecord(
    const v1::MaintenanceSchedule& schedule,
    const absl::btree_set<std::pair<std::string, std::string>>& down) {
  v1::RegistryMaintenance record;
  *record.mutable_schedule() = schedule;
  for (const auto& [hostname, ip] : down) {
    v1::MachineId* machine = record.add_down_machines();
    machine->set_hostname(hostname);
    machine->set_ip(ip);
  }
  return record;
}

RegistryBatch Master::MaintenanceBatch() const {
  RegistryBatch batch;
  batch.PutMaintenance(MaintenanceRecord(maintenance_, down_machines_));
  return batch;
}

void Master::PersistMaintenance(Registry::Done done) {
  WriteRegistry(MaintenanceBatch(), std::move(done));
}

// ---------------------------------------------------------------------------------------------
// Agents that do not come back after a recovery

void Master::EndRecovery() {
  DCHECK(loop_.IsLoopThread());
  std::vector<AgentId> missing;
  for (const auto& [id, agent] : agents_) {
    if (agent.recovering && agent.outbox == nullptr) {
      missing.push_back(id);
    }
  }
  if (missing.empty()) {
    return;
  }
  const double fraction =
      static_cast<double>(missing.size()) / static_cast<double>(recovered_agents_);
  if (fraction > options_.recovery_agent_removal_limit) {
    // A partition (or a ZooKeeper ensemble that lost its data) looks like this; marking them
    // all unreachable would tell every framework its tasks are lost. They stay recovering:
    // they come back by reregistering, or an operator marks them gone.
    LOG(ERROR) << "REFUSING to mark " << missing.size() << " of " << recovered_agents_
               << " recovered agents unreachable: " << static_cast<int>(fraction * 100)
               << "% did not reregister within " << options_.agent_reregister_timeout
               << ", more than --recovery_agent_removal_limit="
               << options_.recovery_agent_removal_limit;
    metrics_.SetRecoveryRemovalsRefused(static_cast<int64_t>(missing.size()));
    return;
  }
  LOG(WARNING) << missing.size() << " of " << recovered_agents_
               << " recovered agents did not reregister in time; marking them unreachable";
  removal_queue_.insert(removal_queue_.end(), missing.begin(), missing.end());
  RemoveQueuedAgents();
}

void Master::RemoveQueuedAgents() {
  const size_t batch = options_.agent_removals_per_period == 0
                           ? removal_queue_.size()
                           : std::min(removal_queue_.size(), options_.agent_removals_per_period);
  for (size_t i = 0; i < batch; ++i) {
    const AgentId id = removal_queue_.front();
    removal_queue_.pop_front();
    AgentReregisterExpired(id);  // A no-op for an agent that came back meanwhile.
  }
  if (!removal_queue_.empty()) {
    loop_.PostAfter(options_.agent_removal_period, [this] { RemoveQueuedAgents(); });
  }
}

// ---------------------------------------------------------------------------------------------
// Operator actions: stored, then applied

absl::StatusOr<RegistryBatch> Master::FutureAgentRecord(
    absl::StatusOr<Agent*> agent, absl::FunctionRef<void(v1::RegistryAgent&)> change) const {
  if (!agent.ok()) {
    return agent.status();
  }
  v1::RegistryAgent record = AgentRecord(**agent);
  change(record);
  RegistryBatch batch;
  batch.PutAgent(record);
  return batch;
}

void Master::StoreThenApply(absl::StatusOr<RegistryBatch> future,
                            absl::AnyInvocable<absl::Status() &&> apply,
                            absl::AnyInvocable<RegistryBatch() &&> current, Completion done) {
  if (!future.ok()) {
    std::move(done)(future.status());
    return;
  }
  // Stored before it is applied: a master that fails now comes back with the change or, if the
  // write failed, without it and without having applied it. The records as they are after it
  // are stored again before the answer, because a fact about the same records (an agent became
  // unreachable meanwhile, say) may have been written in between from the state before.
  WriteRegistry(*std::move(future), [this, apply = std::move(apply), current = std::move(current),
                                     done = std::move(done)](absl::Status stored) mutable {
    if (!stored.ok()) {
      LOG(WARNING) << "operator action not applied: " << stored.message();
      std::move(done)(std::move(stored));
      return;
    }
    // Checked again: the state may have changed while the write was in flight. A refusal now
    // leaves the stored record ahead of the state, which the second write puts right.
    absl::Status applied = std::move(apply)();
    RegistryBatch after = std::move(current)();
    if (after.empty()) {
      std::move(done)(std::move(applied));
      return;
    }
    std::string keys = after.Keys();
    WriteRegistry(std::move(after), [applied = std::move(applied), keys = std::move(keys),
                                     done = std::move(done)](absl::Status status) mutable {
      if (!status.ok()) {
        LOG(ERROR) << "registry records " << keys << " are not stored: " << status.message();
      }
      std::move(done)(std::move(applied));
    });
  });
}

void Master::StoreThenApplyToAgent(const std::string& agent_id,
                                   absl::StatusOr<RegistryBatch> future,
                                   absl::AnyInvocable<absl::Status() &&> apply, Completion done) {
  StoreThenApply(
      std::move(future), std::move(apply),
      [this, id = AgentId(agent_id)] {
        RegistryBatch batch;
        if (auto it = agents_.find(id); it != agents_.end()) {
          batch.PutAgent(AgentRecord(it->second));
        }  // Else removed meanwhile, and its removal wrote what is left of it.
        return batch;
      },
      std::move(done));
}

// ---------------------------------------------------------------------------------------------
// Subscriptions and admissions wait for their records

bool Master::FrameworkStored(const v1::SubscribeRequest& request, const StreamId& stream,
                             const EventOutbox& outbox) {
  if (stored_subscription_ == stream) {
    stored_subscription_.reset();
    return true;
  }
  v1::SubscribeRequest stored = request;
  v1::FrameworkInfo& info = *stored.mutable_framework_info();
  if (info.id().empty()) {
    // Fixed now, so the subscription that runs again creates the framework that was stored.
    info.set_id(NewUuid());
  }
  const FrameworkId id(info.id());
  if (auto writing = framework_writes_.find(id); writing != framework_writes_.end()) {
    // Another subscription of this framework is being stored: decide on this one after it.
    writing->second.push_back([this, request, stream, outbox]() mutable {
      Subscribe(request, stream, std::move(outbox));
    });
    return false;
  }
  v1::RegistryFramework record;
  *record.mutable_info() = info;
  auto existing = frameworks_.find(id);
  record.set_registered_time(Seconds(
      existing != frameworks_.end() ? existing->second.registered_time : loop_.clock().Now()));
  framework_writes_[id];
  subscribing_streams_[stream] = false;
  RegistryBatch batch;
  batch.PutFramework(record);
  registry_.Write(std::move(batch), [this, id, stream, outbox,
                                     stored = std::move(stored)](absl::Status status) mutable {
    std::deque<EventLoop::Task> waiting = std::move(framework_writes_[id]);
    framework_writes_.erase(id);
    auto subscribing = subscribing_streams_.find(stream);
    const bool closed = subscribing != subscribing_streams_.end() && subscribing->second;
    subscribing_streams_.erase(stream);
    if (!status.ok()) {
      RefuseSubscription(stored.framework_info(), *outbox,
                         absl::UnavailableError(absl::StrCat("cannot store framework '", id.value(),
                                                             "': ", status.message())));
    } else {
      stored_subscription_ = stream;
      Subscribe(stored, stream, std::move(outbox));
      stored_subscription_.reset();
      if (closed) {
        // The scheduler left while its subscription was being stored.
        SchedulerStreamClosed(stream);
      }
    }
    for (EventLoop::Task& task : waiting) {
      std::move(task)();
    }
  });
  return false;
}

bool Master::AgentStored(const StreamId& link, const v1::AgentMessage::Register& reg,
                         const AgentOutbox& outbox) {
  if (stored_registration_ == link) {
    stored_registration_.reset();
    return true;
  }
  v1::AgentMessage::Register stored = reg;
  const bool new_agent = reg.info().id().empty();
  if (new_agent) {
    stored.mutable_info()->set_id(NewUuid());
  }
  const AgentId id(stored.info().id());
  v1::RegistryAgent record;
  if (auto existing = agents_.find(id); existing != agents_.end()) {
    record = AgentRecord(existing->second);  // Keeps its operator state and reservations.
  } else {
    record.set_registered_time(Seconds(loop_.clock().Now()));
  }
  *record.mutable_info() = stored.info();
  record.set_state(v1::RegistryAgent::ADMITTED);
  record.clear_unreachable_time();
  admitting_links_[link] = false;
  RegistryBatch batch;
  batch.PutAgent(record);
  registry_.Write(std::move(batch), [this, link, outbox, new_agent, id,
                                     stored = std::move(stored)](absl::Status status) {
    auto admitting = admitting_links_.find(link);
    const bool closed = admitting != admitting_links_.end() && admitting->second;
    admitting_links_.erase(link);
    if (!status.ok()) {
      const absl::Status error = absl::UnavailableError(
          absl::StrCat("cannot store agent '", id.value(), "': ", status.message()));
      LOG(WARNING) << "refusing agent registration on link '" << link.value()
                   << "': " << error.message();
      outbox->Close(error);
      return;
    }
    if (closed) {
      LOG(INFO) << "agent link '" << link.value() << "' closed while agent '" << id.value()
                << "' was being admitted";
      if (new_agent) {
        UnpersistAgent(id);  // It never learned its id; it will register afresh.
      }
      return;
    }
    stored_registration_ = link;
    registering_new_agent_ = new_agent;
    HandleAgentMessage(
        link,
        [&] {
          v1::AgentMessage message;
          *message.mutable_register_() = stored;
          return message;
        }(),
        outbox);
    stored_registration_.reset();
    registering_new_agent_ = false;
  });
  return false;
}

// ---------------------------------------------------------------------------------------------
// Weights and quota

void Master::UpdateWeights(const v1::UpdateWeightsRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  if (absl::Status status = CheckWeights(request); !status.ok()) {
    std::move(done)(status);
    return;
  }
  RegistryBatch batch;
  for (const v1::WeightInfo& weight : request.weights()) {
    batch.PutWeight(weight);
  }
  registry_.Write(
      std::move(batch), [this, request, done = std::move(done)](absl::Status status) mutable {
        if (!status.ok()) {
          LOG(WARNING) << "weights not updated: " << status.message();
          std::move(done)(status);
          return;
        }
        for (const v1::WeightInfo& weight : request.weights()) {
          RZ_CHECK_OK(allocator_.SetWeight(weight.role(), weight.weight()));
          LOG(INFO) << "weight of role '" << weight.role() << "' set to " << weight.weight();
        }
        RescindAllOffers();
        MarkAllDirty();
        std::move(done)(absl::OkStatus());
      });
}

void Master::UpdateQuota(const v1::UpdateQuotaRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<std::vector<std::pair<std::string, allocator::Quota>>> quotas =
      CheckQuota(request);
  if (!quotas.ok()) {
    std::move(done)(quotas.status());
    return;
  }
  RegistryBatch batch;
  for (const v1::QuotaConfig& config : request.quotas()) {
    batch.PutQuota(config);
  }
  registry_.Write(std::move(batch), [this, quotas = *std::move(quotas),
                                     done = std::move(done)](absl::Status status) mutable {
    if (!status.ok()) {
      LOG(WARNING) << "quota not updated: " << status.message();
      std::move(done)(status);
      return;
    }
    for (const auto& [role, quota] : quotas) {
      if (absl::Status set = allocator_.SetQuota(role, quota); !set.ok()) {
        // CheckQuota accepted it; the allocator disagreeing is a bug.
        LOG(DFATAL) << "quota of role '" << role << "': " << set.message();
        continue;
      }
      LOG(INFO) << "quota of role '" << role << "' set: guarantee " << quota.guarantee.ToString()
                << ", limit " << quota.limit.ToString();
    }
    RescindAllOffers();
    MarkAllDirty();
    std::move(done)(absl::OkStatus());
  });
}

// ---------------------------------------------------------------------------------------------
// Recovery

absl::Status Master::Recover(const RegistryState& state) {
  DCHECK(loop_.IsLoopThread());
  const absl::Time now = loop_.clock().Now();
  // Check everything before loading anything.
  for (const v1::WeightInfo& weight : state.weights) {
    v1::UpdateWeightsRequest request;
    *request.add_weights() = weight;
    if (absl::Status status = CheckWeights(request); !status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("registry record 'weight/", weight.role(), "': ", status.message()));
    }
  }
  std::vector<std::pair<std::string, allocator::Quota>> quotas;
  for (const v1::QuotaConfig& config : state.quotas) {
    v1::UpdateQuotaRequest request;
    *request.add_quotas() = config;
    absl::StatusOr<std::vector<std::pair<std::string, allocator::Quota>>> checked =
        CheckQuota(request);
    if (!checked.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("registry record 'quota/", config.role(),
                                                     "': ", checked.status().message()));
    }
    quotas.insert(quotas.end(), checked->begin(), checked->end());
  }
  std::vector<allocator::FrameworkOptions> framework_options;
  for (const v1::RegistryFramework& record : state.frameworks) {
    absl::StatusOr<allocator::FrameworkOptions> options =
        ToFrameworkOptions(record.info(), /*active=*/false);
    if (!options.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "registry record 'framework/", record.info().id(), "': ", options.status().message()));
    }
    framework_options.push_back(*std::move(options));
  }
  std::vector<Resources> totals;
  for (const v1::RegistryAgent& record : state.agents) {
    absl::StatusOr<Resources> total = FromProto(record.info().resources());
    absl::StatusOr<Resources> reserved = FromProto(record.reserved());
    if (!total.ok() || !reserved.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("registry record 'agent/", record.info().id(), "' has invalid resources: ",
                       (!total.ok() ? total.status() : reserved.status()).message()));
    }
    totals.push_back(*std::move(total));
  }

  for (const v1::WeightInfo& weight : state.weights) {
    RZ_CHECK_OK(allocator_.SetWeight(weight.role(), weight.weight()));
  }
  for (const auto& [role, quota] : quotas) {
    RZ_RETURN_IF_ERROR(allocator_.SetQuota(role, quota));
  }

  std::vector<FrameworkId> expired;
  for (size_t i = 0; i < state.frameworks.size(); ++i) {
    const v1::RegistryFramework& record = state.frameworks[i];
    const FrameworkId id(record.info().id());
    Framework& framework = frameworks_[id];
    framework.id = id;
    framework.info = record.info();
    framework.registered_time = FromSeconds(record.registered_time());
    // A framework connected when its record was written gets its whole failover timeout from
    // now: its scheduler had no chance to notice this master's absence before.
    const absl::Duration timeout =
        absl::Seconds(std::max(0.0, record.info().failover_timeout_seconds()));
    framework.failover_deadline =
        record.disconnected() ? FromSeconds(record.failover_deadline()) : now + timeout;
    RZ_CHECK_OK(allocator_.AddFramework(id, framework_options[i]));
    FrameworkChanged(id);
    if (framework.failover_deadline <= now) {
      expired.push_back(id);
      continue;
    }
    framework.failover_timer = loop_.PostAfter(framework.failover_deadline - now,
                                               [this, id] { FrameworkFailoverExpired(id); });
    if (!record.disconnected()) {
      PersistFramework(framework);  // Now disconnected, with the deadline just set.
    }
    LOG(INFO) << "recovered framework '" << id.value() << "' (" << record.info().name()
              << "); torn down at " << framework.failover_deadline
              << " unless its scheduler resubscribes";
  }

  for (size_t i = 0; i < state.agents.size(); ++i) {
    const v1::RegistryAgent& record = state.agents[i];
    const AgentId id(record.info().id());
    if (record.state() == v1::RegistryAgent::GONE) {
      v1::AgentState& gone = gone_agents_[id];
      *gone.mutable_info() = record.info();
      gone.set_status(v1::AgentState::GONE);
      *gone.mutable_total() = record.info().resources();
      gone.set_registered_time(record.registered_time());
      gone.set_gone_time(record.gone_time());
      gone_order_.push_back(id);
      continue;
    }
    Agent& agent = agents_[id];
    agent.id = id;
    agent.info = record.info();
    agent.reserved = *FromProto(record.reserved());
    agent.total = totals[i];
    agent.registered_time = FromSeconds(record.registered_time());
    agent.deactivated = record.deactivated();
    if (record.drain().state() != v1::DrainInfo::STATE_UNSPECIFIED) {
      agent.drain = record.drain();
    }
    if (record.state() == v1::RegistryAgent::UNREACHABLE) {
      agent.unreachable = true;
      agent.unreachable_time = FromSeconds(record.unreachable_time());
    } else {
      // Not offered until it reregisters; unreachable if it does not in time (EndRecovery).
      agent.recovering = true;
      ++recovered_agents_;
    }
    AgentChanged(id);
  }

  if (recovered_agents_ > 0) {
    loop_.PostAfter(options_.agent_reregister_timeout, [this] { EndRecovery(); });
  }

  maintenance_ = state.maintenance.schedule();
  for (const v1::MachineId& machine : state.maintenance.down_machines()) {
    down_machines_.insert({machine.hostname(), machine.ip()});
  }

  LOG(INFO) << "recovered from the registry: " << state.frameworks.size() << " frameworks, "
            << state.agents.size() << " agents, " << state.weights.size() << " weights, "
            << state.quotas.size() << " quotas";
  for (const FrameworkId& id : expired) {
    RemoveFramework(frameworks_.at(id), "failover timeout expired while no master was running");
  }
  MarkAllDirty();
  PublishSoon();
  return absl::OkStatus();
}

}  // namespace rz::master
