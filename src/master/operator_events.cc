#include "master/operator_events.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/task_states.h"
#include "glog/logging.h"
#include "google/protobuf/util/message_differencer.h"
#include "master/master.h"

namespace rz::master {
namespace {

using google::protobuf::util::MessageDifferencer;

bool Gone(v1::AgentState::Status status) {
  return status == v1::AgentState::UNREACHABLE || status == v1::AgentState::GONE;
}

v1::OperatorEvent TaskUpdated(const v1::Task& task) {
  v1::OperatorEvent event;
  event.set_type(v1::OperatorEvent::TASK_UPDATED);
  v1::OperatorEvent::TaskUpdated* updated = event.mutable_task_updated();
  updated->set_framework_id(task.framework_id());
  *updated->mutable_status() = task.latest_status();
  updated->set_state(task.state());
  return event;
}

}  // namespace

OperatorEvents::OperatorEvents(EventLoop& loop, size_t max_subscribers,
                               absl::Duration heartbeat_interval)
    : loop_(loop), max_subscribers_(max_subscribers), heartbeat_interval_(heartbeat_interval) {}

OperatorEvents::~OperatorEvents() {
  if (heartbeat_timer_.has_value()) {
    loop_.CancelTimer(*heartbeat_timer_);
  }
}

absl::Status OperatorEvents::Subscribe(const StreamId& stream, OperatorEventOutbox outbox,
                                       const MasterSnapshot& state) {
  if (subscribers_.size() >= max_subscribers_) {
    absl::Status status = absl::ResourceExhaustedError(
        absl::StrCat("too many operator event subscribers: the limit is ", max_subscribers_,
                     " (--max_operator_event_subscribers)"));
    outbox->Close(status);
    return status;
  }
  v1::OperatorEvent event;
  event.set_type(v1::OperatorEvent::SUBSCRIBED);
  *event.mutable_subscribed()->mutable_state() = *state.AsState();
  event.mutable_subscribed()->set_heartbeat_interval_seconds(
      absl::ToDoubleSeconds(heartbeat_interval_));
  outbox->Send(std::move(event));
  subscribers_[stream] = std::move(outbox);
  if (!heartbeat_timer_.has_value()) {
    ScheduleHeartbeat();
  }
  return absl::OkStatus();
}

void OperatorEvents::Unsubscribe(const StreamId& stream) {
  subscribers_.erase(stream);
  if (subscribers_.empty() && heartbeat_timer_.has_value()) {
    loop_.CancelTimer(*heartbeat_timer_);
    heartbeat_timer_.reset();
  }
}

void OperatorEvents::ScheduleHeartbeat() {
  if (heartbeat_interval_ <= absl::ZeroDuration()) {
    return;
  }
  heartbeat_timer_ = loop_.PostAfter(heartbeat_interval_, [this] {
    heartbeat_timer_.reset();
    if (subscribers_.empty()) {
      return;
    }
    v1::OperatorEvent event;
    event.set_type(v1::OperatorEvent::HEARTBEAT);
    Send(event);
    ScheduleHeartbeat();
  });
}

void OperatorEvents::Send(const v1::OperatorEvent& event) {
  for (auto& [stream, outbox] : subscribers_) {
    outbox->Send(event);  // A slow consumer's outbox closes itself; OnDone unsubscribes it.
  }
}

void Master::CloseOperatorEventStreams(const absl::Status& status) {
  DCHECK(loop_.IsLoopThread());
  if (operator_events_ != nullptr) {
    operator_events_->CloseAll(status);
  }
}

void OperatorEvents::CloseAll(const absl::Status& status) {
  for (auto& [stream, outbox] : subscribers_) {
    outbox->Close(status);
  }
}

void OperatorEvents::OnDelta(const SnapshotDelta& delta) {
  if (subscribers_.empty()) {
    return;
  }
  for (const v1::OperatorEvent& event : EventsOf(delta)) {
    Send(event);
  }
}

std::vector<v1::OperatorEvent> OperatorEvents::EventsOf(const SnapshotDelta& delta) {
  std::vector<v1::OperatorEvent> events;
  for (const auto& [before, after] : delta.frameworks) {
    v1::OperatorEvent event;
    if (before == nullptr && after != nullptr) {
      event.set_type(v1::OperatorEvent::FRAMEWORK_ADDED);
      *event.mutable_framework_added()->mutable_framework() = after->proto();
    } else if (before != nullptr && after == nullptr) {
      event.set_type(v1::OperatorEvent::FRAMEWORK_REMOVED);
      *event.mutable_framework_removed()->mutable_framework_info() = before->proto().info();
    } else if (before != nullptr && after != nullptr) {
      // Offered and used resources change with every allocation; they are not news here.
      const v1::FrameworkState& b = before->proto();
      const v1::FrameworkState& a = after->proto();
      if (b.connected() == a.connected() && b.failover_deadline() == a.failover_deadline() &&
          MessageDifferencer::Equals(b.info(), a.info())) {
        continue;
      }
      event.set_type(v1::OperatorEvent::FRAMEWORK_UPDATED);
      *event.mutable_framework_updated()->mutable_framework() = a;
    } else {
      continue;
    }
    events.push_back(std::move(event));
  }
  for (const auto& [before, after] : delta.agents) {
    v1::OperatorEvent event;
    if (after != nullptr && !Gone(after->proto().status()) &&
        (before == nullptr || Gone(before->proto().status()))) {
      // New, or back from UNREACHABLE.
      event.set_type(v1::OperatorEvent::AGENT_ADDED);
      *event.mutable_agent_added()->mutable_agent() = after->proto();
    } else if (before != nullptr && !Gone(before->proto().status()) &&
               (after == nullptr || Gone(after->proto().status()))) {
      event.set_type(v1::OperatorEvent::AGENT_REMOVED);
      const v1::AgentState& last = after != nullptr ? after->proto() : before->proto();
      event.mutable_agent_removed()->set_agent_id(last.info().id());
      event.mutable_agent_removed()->set_status(after != nullptr ? last.status()
                                                                 : v1::AgentState::GONE);
    } else {
      continue;
    }
    events.push_back(std::move(event));
  }
  for (const auto& [before, after] : delta.tasks) {
    if (before == nullptr && after != nullptr) {
      v1::OperatorEvent event;
      event.set_type(v1::OperatorEvent::TASK_ADDED);
      *event.mutable_task_added()->mutable_task() = after->proto();
      events.push_back(std::move(event));
    } else if (before != nullptr && after != nullptr) {
      // Usage statistics and acknowledgements change the view too; only a new status is news.
      if (MessageDifferencer::Equals(before->proto().latest_status(),
                                     after->proto().latest_status()) &&
          before->proto().state() == after->proto().state()) {
        continue;
      }
      events.push_back(TaskUpdated(after->proto()));
    }
    // A task leaving the active set moved to the completed history; its terminal update was
    // announced when it arrived (or comes from Master::OnSnapshotDelta when both happened in
    // one batch).
  }
  return events;
}

// ---------------------------------------------------------------------------------------------
// Master side

void Master::SubscribeOperatorEvents(const StreamId& stream, OperatorEventOutbox outbox) {
  DCHECK(loop_.IsLoopThread());
  if (operator_events_ == nullptr) {
    operator_events_ = std::make_unique<OperatorEvents>(
        loop_, options_.max_operator_event_subscribers, options_.heartbeat_interval);
    AddSnapshotObserver([this](const SnapshotDelta& delta) { OnSnapshotDelta(delta); });
  }
  // Publish what is pending first, so the SUBSCRIBED state is exact and every later event is a
  // change after it.
  PublishNow();
  absl::Status status = operator_events_->Subscribe(stream, std::move(outbox), *state());
  if (!status.ok()) {
    LOG(WARNING) << "refusing operator event subscriber '" << stream.value()
                 << "': " << status.message();
  }
  metrics_.SetOperatorSubscribers(static_cast<int64_t>(operator_events_->size()));
}

void Master::OperatorEventStreamClosed(const StreamId& stream) {
  DCHECK(loop_.IsLoopThread());
  if (operator_events_ != nullptr) {
    operator_events_->Unsubscribe(stream);
    metrics_.SetOperatorSubscribers(static_cast<int64_t>(operator_events_->size()));
  }
}

void Master::OnSnapshotDelta(const SnapshotDelta& delta) {
  if (operator_events_ == nullptr || !operator_events_->active()) {
    return;
  }
  operator_events_->OnDelta(delta);
  // A task that got its terminal update and left the active set in the same batch: announce
  // the update from the completed history.
  std::shared_ptr<const MasterSnapshot> current;
  for (const auto& [before, after] : delta.tasks) {
    if (before == nullptr || after != nullptr || IsTerminal(before->proto().state())) {
      continue;
    }
    if (current == nullptr) {
      current = state();
    }
    const std::vector<TaskViewPtr>& completed = *current->completed_tasks;
    for (auto it = completed.rbegin(); it != completed.rend(); ++it) {
      const v1::Task& task = (*it)->proto();
      if (task.task_id() == before->proto().task_id() &&
          task.framework_id() == before->proto().framework_id()) {
        operator_events_->Send(TaskUpdated(task));
        break;
      }
    }
  }
}

}  // namespace rz::master
