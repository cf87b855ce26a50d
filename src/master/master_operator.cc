// Master: operator actions (weights, quota, ...).
#include <algorithm>
#include <cmath>
#include <iterator>
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
// Operators

// UpdateWeights and UpdateQuota store the change first (master_registry.cc); these check it.
absl::Status Master::CheckWeights(const v1::UpdateWeightsRequest& request) const {
  for (const v1::WeightInfo& weight : request.weights()) {
    if (!IsValidRole(weight.role())) {
      return absl::InvalidArgumentError(absl::StrCat("invalid role '", weight.role(), "'"));
    }
    if (!(weight.weight() > 0) || weight.weight() > 1e9) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weight of role '", weight.role(), "' must be in (0, 1e9], not ", weight.weight()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::pair<std::string, allocator::Quota>>> Master::CheckQuota(
    const v1::UpdateQuotaRequest& request) const {
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
    // A limit below what the role holds now would leave it over quota until tasks end; that
    // is refused unless the operator insists.
    if (!request.force()) {
      // Outstanding offers count as consumed for the allocator, but the update rescinds them:
      // only what tasks hold (and reservations) can leave the role over its limit.
      const Resources consumed = allocator_.Consumed(config.role());
      Resources offered;
      for (const auto& [id, offer] : offers_) {
        if (offer.role == config.role() ||
            absl::StartsWith(offer.role, absl::StrCat(config.role(), "/"))) {
          offered += offer.resources;
        }
      }
      std::vector<std::string> limited(quota.zero_limit.begin(), quota.zero_limit.end());
      for (const ResourceEntry& limit : quota.limit.entries()) {
        limited.push_back(limit.name);
      }
      for (const std::string& name : limited) {
        const int64_t held = consumed.ScalarFixed(name) - offered.ScalarFixed(name);
        if (held > quota.limit.ScalarFixed(name)) {
          return absl::FailedPreconditionError(
              absl::StrCat("quota of role '", config.role(), "': limit of '", name, "' (",
                           quota.limit.Scalar(name), ") is below its current consumption (",
                           FromFixed(held), "); set force to apply it anyway"));
        }
      }
    }
    quotas.emplace_back(config.role(), std::move(quota));
  }
  return quotas;
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
// Agent lifecycle: drain, deactivation, gone agents, maintenance (H4)

namespace {

std::string Lower(absl::string_view text) { return absl::AsciiStrToLower(text); }

// The host part of an agent's "http://host:port".
std::string HostOf(absl::string_view http_address) {
  absl::ConsumePrefix(&http_address, "http://");
  absl::ConsumePrefix(&http_address, "https://");
  if (absl::ConsumePrefix(&http_address, "[")) {
    return std::string(http_address.substr(0, http_address.find(']')));
  }
  return std::string(http_address.substr(0, http_address.find(':')));
}

bool Matches(const v1::MachineId& machine, const v1::AgentInfo& info) {
  if (!machine.hostname().empty()) {
    return Lower(machine.hostname()) == Lower(info.hostname());
  }
  return !machine.ip().empty() && machine.ip() == HostOf(info.http_address());
}

std::pair<std::string, std::string> MachineKey(const v1::MachineId& machine) {
  return {Lower(machine.hostname()), machine.ip()};
}

std::string MachineName(const v1::MachineId& machine) {
  return machine.hostname().empty() ? machine.ip() : machine.hostname();
}

}  // namespace

absl::StatusOr<Master::Agent*> Master::FindAgentForAction(const std::string& agent_id) {
  if (agent_id.empty()) {
    return absl::InvalidArgumentError("agent_id is required");
  }
  if (gone_agents_.contains(AgentId(agent_id))) {
    return absl::FailedPreconditionError(absl::StrCat("agent '", agent_id, "' is gone"));
  }
  auto it = agents_.find(AgentId(agent_id));
  if (it == agents_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown agent '", agent_id, "'"));
  }
  return &it->second;
}

void Master::UpdateAgentActive(Agent& agent) {
  const bool active = !agent.deactivated && !agent.drain.has_value();
  if (!active) {
    std::vector<OfferId> offers(agent.offers.begin(), agent.offers.end());
    for (const OfferId& offer : offers) {
      RemoveOffer(offer, /*rescind=*/true, absl::ZeroDuration());
    }
  }
  // NotFound while the agent is disconnected: AddAgent at its return calls this again.
  (void)allocator_.SetAgentActive(agent.id, active);
  if (active) {
    TriggerAllocation();
  }
  AgentChanged(agent.id);
}

void Master::KillForDrain(Agent& agent) {
  const v1::DrainConfig& config = agent.drain->config();
  for (const TaskKey& key : agent.tasks) {
    const Task& task = tasks_.at(key);
    if (task.terminal) {
      continue;
    }
    v1::MasterMessage message;
    v1::MasterMessage::KillTask* kill = message.mutable_kill_task();
    kill->set_framework_id(key.first.value());
    kill->set_task_id(key.second.value());
    *kill->mutable_kill_policy() = task.proto.kill_policy();
    if (config.has_max_grace_period_seconds()) {
      const double cap = config.max_grace_period_seconds();
      const v1::KillPolicy& own = task.proto.kill_policy();
      kill->mutable_kill_policy()->set_grace_period_seconds(
          own.has_grace_period_seconds() ? std::min(own.grace_period_seconds(), cap) : cap);
    }
    SendToAgent(agent, std::move(message));
  }
}

void Master::CheckDrained(Agent& agent) {
  if (!agent.drain.has_value() || agent.drain->state() != v1::DrainInfo::DRAINING) {
    return;
  }
  for (const TaskKey& key : agent.tasks) {
    if (!tasks_.at(key).terminal) {
      return;
    }
  }
  LOG(INFO) << "agent '" << agent.id.value() << "' is drained";
  agent.drain->set_state(v1::DrainInfo::DRAINED);
  AgentChanged(agent.id);
  PersistAgent(agent);  // Registry (H1).
  if (agent.drain->config().mark_gone()) {
    RemoveAgentByOperator(agent.id, "drained and marked gone by an operator", /*gone=*/true);
  }
}

void Master::RemoveAgentByOperator(const AgentId& agent_id, const std::string& why, bool gone) {
  const AgentId id = agent_id;  // A copy: `agent_id` may refer into the agent erased below.
  Agent& agent = agents_.at(id);
  LOG(WARNING) << "removing agent '" << id.value() << "' (" << agent.info.hostname()
               << "): " << why;
  std::vector<OfferId> offers(agent.offers.begin(), agent.offers.end());
  for (const OfferId& offer : offers) {
    RemoveOffer(offer, /*rescind=*/true, absl::ZeroDuration());
  }
  // The tasks are gone with the agent: frameworks hear so, and their resources are freed before
  // the agent leaves the allocator.
  std::vector<TaskKey> keys(agent.tasks.begin(), agent.tasks.end());
  for (const TaskKey& key : keys) {
    Task& task = tasks_.at(key);
    if (!task.terminal) {
      v1::TaskStatus status =
          MasterStatus(key.first, key.second.value(), id.value(), v1::TASK_GONE_BY_OPERATOR,
                       v1::TaskStatus::REASON_AGENT_REMOVED, why);
      UpdateTaskState(task, status);
      if (auto f = frameworks_.find(key.first); f != frameworks_.end()) {
        SendUpdate(f->second, status);
      }
    }
    CompleteTask(key);
  }
  for (auto it = inverse_offers_.begin(); it != inverse_offers_.end();) {
    if (it->second.agent == id) {
      it = inverse_offers_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = inverse_statuses_.begin(); it != inverse_statuses_.end();) {
    it = it->first.first == id ? inverse_statuses_.erase(it) : std::next(it);
  }
  (void)allocator_.RemoveAgent(id);
  if (agent.outbox != nullptr) {
    v1::MasterMessage message;
    message.mutable_shutdown()->set_message(why);
    agent.outbox->Send(std::move(message));
    agent.outbox->Close(absl::FailedPreconditionError(absl::StrCat("agent removed: ", why)));
    agent_by_link_.erase(agent.link);
  }
  if (agent.reregister_timer.has_value()) {
    loop_.CancelTimer(*agent.reregister_timer);
  }
  if (gone) {
    v1::AgentState& record = gone_agents_[id];
    *record.mutable_info() = agent.info;
    record.set_status(v1::AgentState::GONE);
    ToProto(agent.total, record.mutable_total());
    record.set_registered_time(Seconds(agent.registered_time));
    record.set_gone_time(Seconds(loop_.clock().Now()));
    PersistGoneAgent(id, agent.info, loop_.clock().Now());  // Registry (H1).
    gone_order_.push_back(id);
    while (gone_order_.size() > options_.max_gone_agents) {
      UnpersistAgent(gone_order_.front());
      gone_agents_.erase(gone_order_.front());
      gone_order_.pop_front();
    }
  } else {
    UnpersistAgent(id);  // May register again once its machine is UP (H1).
  }
  agents_.erase(id);
  AgentChanged(id);
  // Held reconciliation for the agent now has its answer.
  AnswerPendingReconciliation(id);
  TriggerAllocation();
  PublishSoon();
}

void Master::PruneUnreachableAgents() {
  std::vector<std::pair<absl::Time, AgentId>> unreachable;
  for (const auto& [id, agent] : agents_) {
    if (agent.unreachable) {
      unreachable.emplace_back(agent.unreachable_time, id);
    }
  }
  if (unreachable.size() <= options_.max_unreachable_agents) {
    return;
  }
  std::sort(unreachable.begin(), unreachable.end());
  const size_t excess = unreachable.size() - options_.max_unreachable_agents;
  for (size_t i = 0; i < excess; ++i) {
    const AgentId& id = unreachable[i].second;
    Agent& agent = agents_.at(id);
    LOG(INFO) << "forgetting unreachable agent '" << id.value()
              << "' (more than --max_unreachable_agents)";
    // Its tasks are forgotten too: if the agent returns, it reports them afresh.
    for (const TaskKey& key : agent.tasks) {
      if (auto f = frameworks_.find(key.first); f != frameworks_.end()) {
        f->second.tasks.erase(key.second);
      }
      tasks_.erase(key);
      TaskChanged(key);
    }
    UnpersistAgent(id);  // Registry (H1).
    agents_.erase(id);
    AgentChanged(id);
  }
  PublishSoon();
}

bool Master::AgentRefused(const v1::AgentInfo& info, std::string* why) const {
  if (!info.id().empty() && gone_agents_.contains(AgentId(info.id()))) {
    *why = absl::StrCat("agent '", info.id(), "' (", info.hostname(),
                        ") was marked gone by an operator and may not register again; start it "
                        "with an empty work dir to join as a new agent");
    return true;
  }
  for (const auto& [hostname, ip] : down_machines_) {
    v1::MachineId machine;
    machine.set_hostname(hostname);
    machine.set_ip(ip);
    if (Matches(machine, info)) {
      *why = absl::StrCat("machine '", MachineName(machine),
                          "' is DOWN for maintenance; agents may register once it is UP");
      return true;
    }
  }
  return false;
}

std::optional<v1::Unavailability> Master::UnavailabilityOf(const v1::AgentInfo& info) const {
  for (const v1::MaintenanceWindow& window : maintenance_.windows()) {
    for (const v1::MachineId& machine : window.machines()) {
      if (Matches(machine, info)) {
        return window.unavailability();
      }
    }
  }
  return std::nullopt;
}

void Master::UpdateInverseOffers() {
  if (maintenance_.windows().empty() && inverse_offers_.empty() && inverse_statuses_.empty()) {
    return;
  }
  // (agent, framework) pairs that should hold an inverse offer: frameworks with live tasks on
  // agents of scheduled machines.
  absl::btree_map<std::pair<AgentId, FrameworkId>, v1::Unavailability> wanted;
  for (const auto& [id, agent] : agents_) {
    std::optional<v1::Unavailability> unavailability = UnavailabilityOf(agent.info);
    if (!unavailability.has_value()) {
      continue;
    }
    for (const TaskKey& key : agent.tasks) {
      if (!tasks_.at(key).terminal && frameworks_.contains(key.first)) {
        wanted.emplace(std::make_pair(id, key.first), *unavailability);
      }
    }
  }
  absl::btree_set<std::pair<AgentId, FrameworkId>> outstanding;
  for (auto it = inverse_offers_.begin(); it != inverse_offers_.end();) {
    const std::pair<AgentId, FrameworkId> pair(it->second.agent, it->second.framework);
    if (!wanted.contains(pair)) {
      if (auto f = frameworks_.find(pair.second); f != frameworks_.end()) {
        v1::Event event;
        event.mutable_rescind_inverse_offer()->set_inverse_offer_id(it->first);
        SendEvent(f->second, std::move(event));
      }
      it = inverse_offers_.erase(it);
      continue;
    }
    outstanding.insert(pair);
    ++it;
  }
  // Statuses are kept while the machine stays scheduled (answers outlive the tasks).
  for (auto it = inverse_statuses_.begin(); it != inverse_statuses_.end();) {
    auto agent = agents_.find(it->first.first);
    const bool scheduled =
        agent != agents_.end() && UnavailabilityOf(agent->second.info).has_value();
    it = scheduled ? std::next(it) : inverse_statuses_.erase(it);
  }
  const double now = Seconds(loop_.clock().Now());
  absl::btree_map<FrameworkId, v1::Event> events;
  for (const auto& [pair, unavailability] : wanted) {
    if (outstanding.contains(pair)) {
      continue;
    }
    if (auto status = inverse_statuses_.find(pair);
        status != inverse_statuses_.end() &&
        status->second.status() != v1::InverseOfferStatus::UNKNOWN) {
      continue;  // Answered for this schedule.
    }
    const Agent& agent = agents_.at(pair.first);
    InverseOffer& offer = inverse_offers_[NewUuid()];
    offer.framework = pair.second;
    offer.agent = pair.first;
    offer.proto.set_framework_id(pair.second.value());
    offer.proto.set_agent_id(pair.first.value());
    offer.proto.set_hostname(agent.info.hostname());
    *offer.proto.mutable_unavailability() = unavailability;
    v1::InverseOfferStatus& status = inverse_statuses_[pair];
    status.set_status(v1::InverseOfferStatus::UNKNOWN);
    status.set_framework_id(pair.second.value());
    status.set_agent_id(pair.first.value());
    status.set_timestamp(now);
  }
  for (auto& [id, offer] : inverse_offers_) {
    if (offer.proto.id().empty()) {
      offer.proto.set_id(id);
      *events[offer.framework].mutable_inverse_offers()->add_inverse_offers() = offer.proto;
    }
  }
  for (auto& [framework_id, event] : events) {
    SendEvent(frameworks_.at(framework_id), std::move(event));
  }
  PublishSoon();
}

namespace {

v1::DrainInfo DrainOf(const v1::DrainAgentRequest& request) {
  v1::DrainInfo drain;
  drain.set_state(v1::DrainInfo::DRAINING);
  if (request.has_max_grace_period_seconds()) {
    drain.mutable_config()->set_max_grace_period_seconds(request.max_grace_period_seconds());
  }
  drain.mutable_config()->set_mark_gone(request.mark_gone());
  return drain;
}

}  // namespace

// Each action below is checked, its record stored, then checked again and applied
// (StoreThenApply in master_registry.cc): the Check functions are the one place that says
// what an action requires.

absl::StatusOr<Master::Agent*> Master::CheckDrain(const v1::DrainAgentRequest& request) {
  if (request.has_max_grace_period_seconds() && !(request.max_grace_period_seconds() >= 0)) {
    return absl::InvalidArgumentError("max_grace_period_seconds must not be negative");
  }
  RZ_ASSIGN_OR_RETURN(Agent * agent, FindAgentForAction(request.agent_id()));
  if (agent->drain.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent '", request.agent_id(), "' is already ",
                     agent->drain->state() == v1::DrainInfo::DRAINED ? "drained" : "draining"));
  }
  return agent;
}

void Master::DrainAgent(const v1::DrainAgentRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  StoreThenApplyToAgent(
      request.agent_id(),
      FutureAgentRecord(
          CheckDrain(request),
          [&](v1::RegistryAgent& record) { *record.mutable_drain() = DrainOf(request); }),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(Agent * agent, CheckDrain(request));
        agent->drain = DrainOf(request);
        LOG(INFO) << "draining agent '" << request.agent_id() << "'"
                  << (request.mark_gone() ? " (then marking it gone)" : "");
        UpdateAgentActive(*agent);
        KillForDrain(*agent);
        CheckDrained(*agent);  // Last use of `agent`: mark_gone may remove it.
        PublishSoon();
        return absl::OkStatus();
      },
      std::move(done));
}

absl::StatusOr<Master::Agent*> Master::CheckDeactivate(const v1::DeactivateAgentRequest& request) {
  RZ_ASSIGN_OR_RETURN(Agent * agent, FindAgentForAction(request.agent_id()));
  if (agent->deactivated) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent '", request.agent_id(), "' is already deactivated"));
  }
  return agent;
}

void Master::DeactivateAgent(const v1::DeactivateAgentRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  StoreThenApplyToAgent(
      request.agent_id(),
      FutureAgentRecord(CheckDeactivate(request),
                        [](v1::RegistryAgent& record) { record.set_deactivated(true); }),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(Agent * agent, CheckDeactivate(request));
        agent->deactivated = true;
        LOG(INFO) << "deactivated agent '" << request.agent_id() << "'";
        UpdateAgentActive(*agent);
        PublishSoon();
        return absl::OkStatus();
      },
      std::move(done));
}

absl::StatusOr<Master::Agent*> Master::CheckReactivate(const v1::ReactivateAgentRequest& request) {
  RZ_ASSIGN_OR_RETURN(Agent * agent, FindAgentForAction(request.agent_id()));
  if (!agent->deactivated && !agent->drain.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("agent '", request.agent_id(), "' is neither deactivated nor draining"));
  }
  return agent;
}

void Master::ReactivateAgent(const v1::ReactivateAgentRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  StoreThenApplyToAgent(
      request.agent_id(),
      FutureAgentRecord(CheckReactivate(request),
                        [](v1::RegistryAgent& record) {
                          record.set_deactivated(false);
                          record.clear_drain();
                        }),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(Agent * agent, CheckReactivate(request));
        agent->deactivated = false;
        agent->drain.reset();
        LOG(INFO) << "reactivated agent '" << request.agent_id() << "'";
        UpdateAgentActive(*agent);
        PublishSoon();
        return absl::OkStatus();
      },
      std::move(done));
}

void Master::MarkAgentGone(const v1::MarkAgentGoneRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<RegistryBatch> future = [&]() -> absl::StatusOr<RegistryBatch> {
    RZ_ASSIGN_OR_RETURN(Agent * agent, FindAgentForAction(request.agent_id()));
    RegistryBatch batch;
    batch.PutAgent(GoneAgentRecord(agent->id, agent->info, loop_.clock().Now()));
    return batch;
  }();
  // The removal writes the gone record again (as every removal does); nothing more to store.
  StoreThenApply(
      std::move(future),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(Agent * agent, FindAgentForAction(request.agent_id()));
        RemoveAgentByOperator(agent->id, "marked gone by an operator", /*gone=*/true);
        return absl::OkStatus();
      },
      [] { return RegistryBatch(); }, std::move(done));
}

absl::Status Master::TeardownFramework(const v1::TeardownFrameworkRequest& request) {
  DCHECK(loop_.IsLoopThread());
  if (request.framework_id().empty()) {
    return absl::InvalidArgumentError("framework_id is required");
  }
  auto it = frameworks_.find(FrameworkId(request.framework_id()));
  if (it == frameworks_.end()) {
    for (const v1::FrameworkState& done : completed_frameworks_) {
      if (done.info().id() == request.framework_id()) {
        return absl::FailedPreconditionError(
            absl::StrCat("framework '", request.framework_id(), "' was already removed"));
      }
    }
    return absl::NotFoundError(absl::StrCat("unknown framework '", request.framework_id(), "'"));
  }
  RemoveFramework(it->second, "torn down by an operator");
  return absl::OkStatus();
}

absl::StatusOr<v1::MaintenanceSchedule> Master::CheckMaintenanceSchedule(
    const v1::UpdateMaintenanceScheduleRequest& request) const {
  v1::MaintenanceSchedule schedule = request.schedule();
  absl::btree_set<std::pair<std::string, std::string>> seen;
  for (int w = 0; w < schedule.windows_size(); ++w) {
    v1::MaintenanceWindow& window = *schedule.mutable_windows(w);
    if (window.machines().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("maintenance window ", w, " has no machines"));
    }
    const v1::Unavailability& unavailability = window.unavailability();
    if (!std::isfinite(unavailability.start()) || unavailability.start() < 0 ||
        !std::isfinite(unavailability.duration_seconds()) ||
        unavailability.duration_seconds() < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "maintenance window ", w, " needs a start >= 0 and a duration >= 0 (seconds)"));
    }
    for (v1::MachineId& machine : *window.mutable_machines()) {
      if (machine.hostname().empty() && machine.ip().empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("a machine of maintenance window ", w, " has neither hostname nor ip"));
      }
      machine.set_hostname(Lower(machine.hostname()));
      if (!seen.insert(MachineKey(machine)).second) {
        return absl::InvalidArgumentError(absl::StrCat("machine '", MachineName(machine),
                                                       "' is in more than one maintenance window"));
      }
    }
  }
  for (const auto& down : down_machines_) {
    if (!seen.contains(down)) {
      return absl::FailedPreconditionError(
          absl::StrCat("machine '", down.first.empty() ? down.second : down.first,
                       "' is DOWN: bring it UP before removing it from the schedule"));
    }
  }
  return schedule;
}

void Master::UpdateMaintenanceSchedule(const v1::UpdateMaintenanceScheduleRequest& request,
                                       Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<RegistryBatch> future = [&]() -> absl::StatusOr<RegistryBatch> {
    RZ_ASSIGN_OR_RETURN(v1::MaintenanceSchedule schedule, CheckMaintenanceSchedule(request));
    RegistryBatch batch;
    batch.PutMaintenance(MaintenanceRecord(schedule, down_machines_));
    return batch;
  }();
  StoreThenApply(
      std::move(future),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(maintenance_, CheckMaintenanceSchedule(request));
        for (const auto& [id, agent] : agents_) {
          AgentChanged(id);  // Their unavailability may have changed.
        }
        LOG(INFO) << "maintenance schedule updated: " << maintenance_.windows_size()
                  << " window(s)";
        UpdateInverseOffers();
        // Outstanding offers would not show the new unavailability.
        RescindAllOffers();
        return absl::OkStatus();
      },
      [this] { return MaintenanceBatch(); }, std::move(done));
}

absl::StatusOr<std::vector<v1::MachineId>> Master::CheckStartMaintenance(
    const v1::StartMaintenanceRequest& request) const {
  if (request.machines().empty()) {
    return absl::InvalidArgumentError("no machines given");
  }
  std::vector<v1::MachineId> machines;
  for (const v1::MachineId& machine : request.machines()) {
    v1::MachineId normalized = machine;
    normalized.set_hostname(Lower(machine.hostname()));
    bool scheduled = false;
    for (const v1::MaintenanceWindow& window : maintenance_.windows()) {
      for (const v1::MachineId& entry : window.machines()) {
        scheduled = scheduled || MachineKey(entry) == MachineKey(normalized);
      }
    }
    if (!scheduled) {
      return absl::FailedPreconditionError(
          absl::StrCat("machine '", MachineName(machine), "' is not in the maintenance schedule"));
    }
    if (down_machines_.contains(MachineKey(normalized))) {
      return absl::FailedPreconditionError(
          absl::StrCat("machine '", MachineName(machine), "' is already DOWN"));
    }
    machines.push_back(std::move(normalized));
  }
  return machines;
}

void Master::StartMaintenance(const v1::StartMaintenanceRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  // The machines go DOWN and their agents' records go, in one write.
  absl::StatusOr<RegistryBatch> future = [&]() -> absl::StatusOr<RegistryBatch> {
    RZ_ASSIGN_OR_RETURN(std::vector<v1::MachineId> machines, CheckStartMaintenance(request));
    absl::btree_set<std::pair<std::string, std::string>> down = down_machines_;
    RegistryBatch batch;
    for (const v1::MachineId& machine : machines) {
      down.insert(MachineKey(machine));
      for (const auto& [id, agent] : agents_) {
        if (Matches(machine, agent.info)) {
          batch.DeleteAgent(id);
        }
      }
    }
    batch.PutMaintenance(MaintenanceRecord(maintenance_, down));
    return batch;
  }();
  StoreThenApply(
      std::move(future),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(std::vector<v1::MachineId> machines, CheckStartMaintenance(request));
        for (const v1::MachineId& machine : machines) {
          down_machines_.insert(MachineKey(machine));
          std::vector<AgentId> affected;
          for (const auto& [id, agent] : agents_) {
            if (Matches(machine, agent.info)) {
              affected.push_back(id);
            }
          }
          for (const AgentId& id : affected) {
            RemoveAgentByOperator(id, absl::StrCat("machine '", MachineName(machine), "' is DOWN"),
                                  /*gone=*/false);
          }
          LOG(INFO) << "machine '" << MachineName(machine) << "' is DOWN";
        }
        PublishSoon();
        return absl::OkStatus();
      },
      [this] { return MaintenanceBatch(); }, std::move(done));
}

absl::StatusOr<
    std::pair<v1::MaintenanceSchedule, absl::btree_set<std::pair<std::string, std::string>>>>
Master::CheckStopMaintenance(const v1::StopMaintenanceRequest& request) const {
  if (request.machines().empty()) {
    return absl::InvalidArgumentError("no machines given");
  }
  absl::btree_set<std::pair<std::string, std::string>> up;
  for (const v1::MachineId& machine : request.machines()) {
    v1::MachineId normalized = machine;
    normalized.set_hostname(Lower(machine.hostname()));
    if (!down_machines_.contains(MachineKey(normalized))) {
      return absl::FailedPreconditionError(
          absl::StrCat("machine '", MachineName(machine), "' is not DOWN"));
    }
    up.insert(MachineKey(normalized));
  }
  // The machines leave the schedule (their maintenance is over) and may register agents again.
  v1::MaintenanceSchedule schedule;
  for (const v1::MaintenanceWindow& window : maintenance_.windows()) {
    v1::MaintenanceWindow kept = window;
    kept.clear_machines();
    for (const v1::MachineId& machine : window.machines()) {
      if (!up.contains(MachineKey(machine))) {
        *kept.add_machines() = machine;
      }
    }
    if (!kept.machines().empty()) {
      *schedule.add_windows() = std::move(kept);
    }
  }
  return std::make_pair(std::move(schedule), std::move(up));
}

void Master::StopMaintenance(const v1::StopMaintenanceRequest& request, Completion done) {
  DCHECK(loop_.IsLoopThread());
  absl::StatusOr<RegistryBatch> future = [&]() -> absl::StatusOr<RegistryBatch> {
    RZ_ASSIGN_OR_RETURN(auto change, CheckStopMaintenance(request));
    absl::btree_set<std::pair<std::string, std::string>> down = down_machines_;
    for (const auto& key : change.second) {
      down.erase(key);
    }
    RegistryBatch batch;
    batch.PutMaintenance(MaintenanceRecord(change.first, down));
    return batch;
  }();
  StoreThenApply(
      std::move(future),
      [this, request]() -> absl::Status {
        RZ_ASSIGN_OR_RETURN(auto change, CheckStopMaintenance(request));
        maintenance_ = std::move(change.first);
        for (const auto& [id, agent] : agents_) {
          AgentChanged(id);  // Their unavailability may have changed.
        }
        for (const auto& key : change.second) {
          down_machines_.erase(key);
          LOG(INFO) << "machine '" << (key.first.empty() ? key.second : key.first) << "' is UP";
        }
        UpdateInverseOffers();
        PublishSoon();
        return absl::OkStatus();
      },
      [this] { return MaintenanceBatch(); }, std::move(done));
}

absl::Status Master::AnswerInverseOffers(const v1::InverseOffersResponse& request, bool accept) {
  DCHECK(loop_.IsLoopThread());
  RZ_ASSIGN_OR_RETURN(Framework * framework, FindCaller(request.header()));
  const double now = Seconds(loop_.clock().Now());
  for (const std::string& id : request.inverse_offer_ids()) {
    auto it = inverse_offers_.find(id);
    if (it == inverse_offers_.end() || it->second.framework != framework->id) {
      VLOG(1) << "ignoring answer to unknown inverse offer '" << id << "'";
      continue;
    }
    v1::InverseOfferStatus& status = inverse_statuses_[{it->second.agent, framework->id}];
    status.set_status(accept ? v1::InverseOfferStatus::ACCEPT : v1::InverseOfferStatus::DECLINE);
    status.set_framework_id(framework->id.value());
    status.set_agent_id(it->second.agent.value());
    status.set_timestamp(now);
    inverse_offers_.erase(it);
  }
  PublishSoon();
  return absl::OkStatus();
}

absl::Status Master::AcceptInverseOffers(const v1::InverseOffersResponse& request) {
  return AnswerInverseOffers(request, /*accept=*/true);
}

absl::Status Master::DeclineInverseOffers(const v1::InverseOffersResponse& request) {
  return AnswerInverseOffers(request, /*accept=*/false);
}

void Master::FillAgentLifecycle(const Agent& agent, v1::AgentState* out) const {
  if (agent.unreachable) {
    out->set_status(v1::AgentState::UNREACHABLE);
    out->set_unreachable_time(Seconds(agent.unreachable_time));
  }
  if (agent.drain.has_value()) {
    *out->mutable_drain() = *agent.drain;
  }
  out->set_deactivated(agent.deactivated);
  if (std::optional<v1::Unavailability> unavailability = UnavailabilityOf(agent.info)) {
    *out->mutable_unavailability() = *unavailability;
  }
}

void Master::FillLifecycleState(v1::State* state) const {
  for (const AgentId& id : gone_order_) {
    *state->add_gone_agents() = gone_agents_.at(id);
  }
  *state->mutable_maintenance_schedule() = maintenance_;
  v1::MaintenanceStatus* status = state->mutable_maintenance_status();
  for (const v1::MaintenanceWindow& window : maintenance_.windows()) {
    for (const v1::MachineId& machine : window.machines()) {
      if (down_machines_.contains(MachineKey(machine))) {
        *status->add_down_machines() = machine;
        continue;
      }
      v1::MaintenanceStatus::DrainingMachine* draining = status->add_draining_machines();
      *draining->mutable_id() = machine;
      for (const auto& [pair, answer] : inverse_statuses_) {
        auto agent = agents_.find(pair.first);
        if (agent != agents_.end() && Matches(machine, agent->second.info)) {
          *draining->add_statuses() = answer;
        }
      }
    }
  }
}

std::shared_ptr<const v1::State> Master::maintenance_snapshot() const { return state()->extras; }

// ---------------------------------------------------------------------------------------------
// Reconciliation of tasks the master does not know (SCENARIOS M7)

void Master::ReconcileUnknownTask(Framework& framework, const std::string& task_id,
                                  const std::string& agent_id) {
  v1::TaskState state = v1::TASK_UNKNOWN;
  std::string message = absl::StrCat("task '", task_id, "' is not known");
  double unreachable_time = 0;
  if (!agent_id.empty() && gone_agents_.contains(AgentId(agent_id))) {
    state = v1::TASK_GONE_BY_OPERATOR;
    message = absl::StrCat("agent '", agent_id, "' was marked gone");
  } else if (auto agent = agents_.find(AgentId(agent_id));
             !agent_id.empty() && agent != agents_.end()) {
    if (agent->second.recovering) {
      // Its tasks are unknown until it reregisters or is marked unreachable.
      pending_reconcile_[agent->first].emplace_back(framework.id, task_id);
      return;
    }
    if (agent->second.unreachable) {
      state = v1::TASK_UNREACHABLE;
      unreachable_time = Seconds(agent->second.unreachable_time);
      message = absl::StrCat("agent '", agent_id, "' is unreachable");
    } else {
      state = v1::TASK_GONE;
      message = absl::StrCat("task '", task_id, "' is not known to agent '", agent_id, "'");
    }
  }
  v1::TaskStatus status = MasterStatus(framework.id, task_id, agent_id, state,
                                       v1::TaskStatus::REASON_RECONCILIATION, message);
  if (unreachable_time > 0) {
    status.set_unreachable_time(unreachable_time);
  }
  SendUpdate(framework, status);
}

void Master::AnswerPendingReconciliation(const AgentId& agent) {
  auto pending = pending_reconcile_.find(agent);
  if (pending == pending_reconcile_.end()) {
    return;
  }
  std::vector<std::pair<FrameworkId, std::string>> refs = std::move(pending->second);
  pending_reconcile_.erase(pending);
  for (const auto& [framework_id, task_id] : refs) {
    auto framework = frameworks_.find(framework_id);
    if (framework == frameworks_.end()) {
      continue;
    }
    auto task = tasks_.find(TaskKey(framework_id, TaskId(task_id)));
    if (task != tasks_.end()) {
      v1::TaskStatus status = task->second.proto.latest_status();
      status.clear_uuid();
      status.set_source(v1::TaskStatus::SOURCE_MASTER);
      status.set_reason(v1::TaskStatus::REASON_RECONCILIATION);
      SendUpdate(framework->second, status);
      continue;
    }
    ReconcileUnknownTask(framework->second, task_id, agent.value());
  }
}

}  // namespace rz::master
