// OperatorEvents: the operator event stream (Operator.Subscribe). Subscribers get SUBSCRIBED
// with the whole state, then TASK_ADDED, TASK_UPDATED, AGENT_ADDED, AGENT_REMOVED,
// FRAMEWORK_ADDED, FRAMEWORK_UPDATED, FRAMEWORK_REMOVED and periodic HEARTBEAT events.
//
// Events are derived from the snapshot deltas the master publishes (snapshot.h), so no mutation
// path needs a hook of its own and the loop builds nothing while nobody is subscribed. Changes of
// one entity within one loop batch coalesce into one event (as the snapshot does): a task that
// is launched and fails in the same batch arrives as one TASK_ADDED carrying its final state.
//
// Bounds: at most `max_subscribers` streams (more are refused with RESOURCE_EXHAUSTED naming
// the limit); each stream's outbox is bounded by the transport (QueuedWriter), so a consumer
// that falls behind is disconnected instead of growing the master's memory.
//
// Thread rule: loop only.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/event_loop.h"
#include "common/ids.h"
#include "master/outbox.h"
#include "master/snapshot.h"
#include "rz/v1/operator.pb.h"

namespace rz::master {

using OperatorEventOutbox = std::shared_ptr<Outbox<v1::OperatorEvent>>;

class OperatorEvents {
 public:
  OperatorEvents(EventLoop& loop, size_t max_subscribers, absl::Duration heartbeat_interval);
  ~OperatorEvents();

  OperatorEvents(const OperatorEvents&) = delete;
  OperatorEvents& operator=(const OperatorEvents&) = delete;

  bool active() const { return !subscribers_.empty(); }
  size_t size() const { return subscribers_.size(); }

  // Adds `outbox` as `stream` and sends it SUBSCRIBED with `state`, which must be the snapshot
  // just published (so every later delta is news to it). When the limit is reached the outbox
  // is closed with RESOURCE_EXHAUSTED instead, and that status is returned.
  absl::Status Subscribe(const StreamId& stream, OperatorEventOutbox outbox,
                         const MasterSnapshot& state);
  void Unsubscribe(const StreamId& stream);

  // Turns one publication's delta into events for every subscriber.
  void OnDelta(const SnapshotDelta& delta);

  // Sends `event` to every subscriber.
  void Send(const v1::OperatorEvent& event);

  // Closes every stream (master shutting down).
  void CloseAll(const absl::Status& status);

  // The events a delta produces, in order: frameworks, agents, then tasks, so a task's
  // framework and agent are announced before it. Exposed for tests.
  static std::vector<v1::OperatorEvent> EventsOf(const SnapshotDelta& delta);

 private:
  void ScheduleHeartbeat();

  EventLoop& loop_;
  const size_t max_subscribers_;
  const absl::Duration heartbeat_interval_;
  absl::btree_map<StreamId, OperatorEventOutbox> subscribers_;
  std::optional<TimerId> heartbeat_timer_;
};

}  // namespace rz::master
