// Master core: construction, timers, events, offers and task bookkeeping shared by the
// scheduler, agent and operator sides (master_scheduler.cc, master_agents.cc, master_operator.cc).
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
#include "master/validation.h"

namespace rz::master {

Master::Master(EventLoop& loop, MasterOptions options, v1::MasterInfo info, Registry& registry)
    : loop_(loop),
      options_(options),
      info_(std::move(info)),
      allocator_(options.allocator),
      state_(std::make_shared<MasterSnapshot>()),
      registry_(registry) {}

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

void Master::StepDown(const absl::Status& why) {
  DCHECK(loop_.IsLoopThread());
  stepped_down_ = true;
  for (std::optional<TimerId>* timer : {&allocation_timer_, &ping_timer_, &heartbeat_timer_}) {
    if (timer->has_value()) {
      loop_.CancelTimer(**timer);
      timer->reset();
    }
  }
  // Schedulers and agents find the new leader and resubscribe or reregister there.
  for (auto& [id, framework] : frameworks_) {
    if (framework.outbox != nullptr) {
      framework.outbox->Close(why);
    }
  }
  for (auto& [id, agent] : agents_) {
    if (agent.outbox != nullptr) {
      agent.outbox->Close(why);
    }
  }
  CloseOperatorEventStreams(why);
}

uint64_t Master::SendEvent(Framework& framework, v1::Event event) {
  // Events for a disconnected scheduler are dropped and take no sequence number, so numbers
  // seen by schedulers have no gaps; what still matters is replayed when it resubscribes
  // (ReplayMissed).
  if (framework.outbox == nullptr) {
    return 0;
  }
  const uint64_t sequence = framework.next_sequence++;
  event.set_sequence(sequence);
  framework.outbox->Send(std::move(event));
  return sequence;
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
  const uint64_t sequence = SendEvent(framework, std::move(event));
  // Remember whether the task's latest status reached the scheduler (replayed if not).
  auto task = tasks_.find(TaskKey(framework.id, TaskId(status.task_id())));
  if (task != tasks_.end()) {
    const v1::TaskStatus& latest = task->second.proto.latest_status();
    if (latest.state() == status.state() && latest.uuid() == status.uuid() &&
        latest.timestamp() == status.timestamp()) {
      task->second.status_sequence = sequence;
    }
  }
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

void Master::UpdateTaskState(Task& task, const v1::TaskStatus& status) {
  const bool was_terminal = task.terminal;
  task.proto.set_state(status.state());
  *task.proto.mutable_latest_status() = status;
  task.status_sequence = 0;  // Due to the scheduler; SendUpdate records its delivery.
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
  TaskChanged(TaskKey(FrameworkId(task.proto.framework_id()), TaskId(task.proto.task_id())));
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
  TaskChanged(key);
  HistoryChanged();
}

void Master::SendToAgent(Agent& agent, v1::MasterMessage message) {
  if (agent.outbox != nullptr) {
    agent.outbox->Send(std::move(message));
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
  if (stepped_down_) {
    return;
  }
  UpdateInverseOffers();  // Frameworks that started tasks on scheduled machines (H4).
  const absl::Time start = loop_.clock().Now();
  std::vector<allocator::Allocation> allocations = allocator_.Allocate(start);
  last_cycle_duration_ = loop_.clock().Now() - start;
  metrics_.AllocationCycle(last_cycle_duration_);
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
    OfferChanged(id);
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
    if (std::optional<v1::Unavailability> unavailability = UnavailabilityOf(agent.info)) {
      *proto.mutable_unavailability() = *unavailability;  // Maintenance (H4).
    }
    if (options_.offer_timeout > absl::ZeroDuration()) {
      offer.timeout = loop_.PostAfter(options_.offer_timeout, [this, id] {
        if (offers_.contains(id)) {
          LOG(INFO) << "offer '" << id.value() << "' timed out";
          offers_.at(id).timeout.reset();
          NoteRemovedOffer(id, "timed out");
          RemoveOffer(id, /*rescind=*/true, absl::ZeroDuration());
          TriggerAllocation();
        }
      });
    }
    framework.offers.insert(id);
    agent.offers.insert(id);
    *events[framework.id].mutable_offers()->add_offers() = proto;
    ++counters_.offers_sent;
    metrics_.OffersSent(1);
  }
  for (auto& [framework_id, event] : events) {
    Framework& framework = frameworks_.at(framework_id);
    std::vector<OfferId> sent;
    for (const v1::Offer& offer : event.offers().offers()) {
      sent.emplace_back(offer.id());
    }
    const uint64_t sequence = SendEvent(framework, std::move(event));
    for (OfferId& id : sent) {
      framework.sent_offers.emplace_back(std::move(id), sequence);
    }
    while (framework.sent_offers.size() > kMaxSentOffers) {
      framework.sent_offers.pop_front();
    }
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
    NoteRemovedOffer(id, rescind ? "was rescinded" : "was withdrawn");
    if (rescind) {
      ++counters_.offers_rescinded;
      metrics_.OfferRescinded();
      v1::Event event;
      event.mutable_rescind()->set_offer_id(id.value());
      removed_offers_.at(id).rescind_sequence = SendEvent(framework->second, std::move(event));
    }
  }
  if (auto agent = agents_.find(offer.agent); agent != agents_.end()) {
    agent->second.offers.erase(id);
  }
  allocator_.Recover(offer.framework, offer.agent, offer.role, offer.resources, loop_.clock().Now(),
                     refuse);
  offers_.erase(it);
  OfferChanged(id);
}

}  // namespace rz::master
