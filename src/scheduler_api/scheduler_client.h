// SchedulerClient: the C++ client library for framework schedulers. It subscribes a framework
// to the master's Scheduler service, delivers the master's events (offers, status updates,
// rescinds, errors, ...) and sends the scheduler's calls (accept, decline, kill, acknowledge,
// ...), filling each call's header with the framework id and stream id it subscribed with.
//
//   rz::v1::FrameworkInfo info;
//   info.set_name("batch");
//   rz::scheduler::SchedulerClient client("127.0.0.1:5050", info);
//   RZ_RETURN_IF_ERROR(client.Subscribe(absl::Seconds(10)));
//   while (std::optional<rz::v1::Event> event = client.NextEvent(absl::Seconds(1))) { ... }
//
// Events arrive on one reader thread in the order the master sent them. They are queued for
// NextEvent(), or, if SchedulerClientOptions::on_event is set, handed to that callback on the
// reader thread instead. When the event stream ends for any reason other than Close() (master
// gone, framework torn down, stream replaced), one synthetic ERROR event carrying the gRPC
// status message is delivered last.
//
// The client tracks the sequence number of the last event it delivered (last_sequence()).
// With SchedulerClientOptions::resubscribe it resubscribes by itself when the stream breaks
// (not when the master ends it with an ERROR: failed over, torn down), with exponential
// backoff, resuming after that sequence so the master replays what was missed (unacknowledged
// status updates, outstanding offers, RESCINDs; see docs/framework-guide.md). The new
// SUBSCRIBED event is delivered like any other; calls then carry the new stream id. A
// scheduler process that restarts can resume the same way with a new client, its
// FrameworkInfo.id set and options.resume_after_sequence.
//
// Thread rule: thread-safe. Every call may be made from any thread, concurrently, including
// from the on_event callback, except Close() (and the destructor), which must not be called
// from the callback. Subscribe() must complete before the unary calls are made.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "rz/v1/scheduler.grpc.pb.h"
#include "rz/v1/scheduler.pb.h"

namespace rz::scheduler {

struct SchedulerClientOptions {
  // If set, every event (SUBSCRIBED included) is passed to this function on the reader thread
  // and NextEvent() returns nothing. The callback must not block for long: while it runs, no
  // further event is read.
  std::function<void(const rz::v1::Event&)> on_event;

  // Deadline of each unary call.
  absl::Duration call_timeout = absl::Seconds(10);

  // Resubscribe when the event stream breaks, waiting `resubscribe_backoff` (doubling up to
  // `resubscribe_backoff_max`) between attempts, for at most the framework's failover timeout
  // (at least one attempt). Without it, a broken stream ends the client (synthetic ERROR).
  bool resubscribe = false;
  absl::Duration resubscribe_backoff = absl::Milliseconds(100);
  absl::Duration resubscribe_backoff_max = absl::Seconds(5);

  // The first Subscribe() resumes after this sequence (needs FrameworkInfo.id); 0: no resume.
  uint64_t resume_after_sequence = 0;
};

// A task named in an explicit reconciliation.
struct TaskRef {
  TaskId task_id;
  AgentId agent_id;  // May be empty.
};

class SchedulerClient {
 public:
  // `master_address` is host:port of the master's gRPC listener. No connection is made yet.
  SchedulerClient(std::string master_address, rz::v1::FrameworkInfo framework_info,
                  SchedulerClientOptions options = {});
  ~SchedulerClient();  // Close()s.

  SchedulerClient(const SchedulerClient&) = delete;
  SchedulerClient& operator=(const SchedulerClient&) = delete;

  // Opens the event stream and waits up to `timeout` for the master's answer. Returns OK once
  // the SUBSCRIBED event arrived (framework_id() and stream_id() are then set); Unavailable
  // naming the address if the master cannot be reached; the ERROR event's message (as
  // FailedPrecondition) if the master refused the subscription; DeadlineExceeded if the master
  // did not answer in time; FailedPrecondition if called twice.
  absl::Status Subscribe(absl::Duration timeout);

  // The next queued event, waiting up to `timeout` for one. Returns nullopt on timeout, when
  // the client is closed and the queue is empty, or when an on_event callback is set.
  std::optional<rz::v1::Event> NextEvent(absl::Duration timeout);

  // The unary calls. Each returns the master's answer as a Status (FailedPrecondition if not
  // subscribed; Unavailable if the master cannot be reached; DeadlineExceeded after
  // options.call_timeout).

  // Applies `operations` in order to the resources of `offer_ids` (all on one agent); what
  // they leave unused is refused for `filters.refuse_seconds`.
  absl::Status Accept(const std::vector<OfferId>& offer_ids,
                      const std::vector<rz::v1::Operation>& operations,
                      const rz::v1::Filters& filters = {});
  // Accept() with a single LAUNCH of `tasks`; leftovers are refused for `refuse_seconds`.
  // Each task's agent_id must be set to the offers' agent.
  absl::Status Launch(const std::vector<OfferId>& offer_ids,
                      const std::vector<rz::v1::TaskInfo>& tasks, double refuse_seconds = 5.0);
  absl::Status Decline(const std::vector<OfferId>& offer_ids, double refuse_seconds = 5.0);
  // Empty `roles`: all of the framework's roles.
  absl::Status Revive(const std::vector<std::string>& roles = {});
  absl::Status Suppress(const std::vector<std::string>& roles = {});
  // `agent_id` may be empty when the master knows where the task runs.
  absl::Status Kill(const TaskId& task_id, const AgentId& agent_id = AgentId());
  // Acknowledges `status`. A status without uuid needs no acknowledgement: returns OK and
  // sends nothing.
  absl::Status Acknowledge(const rz::v1::TaskStatus& status);
  // Empty `tasks`: implicit reconciliation of every task of the framework.
  absl::Status Reconcile(const std::vector<TaskRef>& tasks = {});
  // Removes the framework from the cluster: its tasks are killed, its stream closed.
  absl::Status Teardown();
  // Replaces the framework's info (roles, name, capabilities, failover timeout, offer filters,
  // offer cap); its id may be left empty. Principal and user cannot change (PermissionDenied).
  // Later resubscriptions use the new info.
  absl::Status UpdateFramework(const rz::v1::FrameworkInfo& info);
  // Best-effort delivery of `data` (at most 1 MiB) to task `task_id`: appended as one base64
  // line to `.rz/messages` in its sandbox. NotFound if the master knows no such live task.
  absl::Status Message(const TaskId& task_id, const std::string& data,
                       const AgentId& agent_id = AgentId());

  // Operations for Accept().
  static rz::v1::Operation LaunchOperation(const std::vector<rz::v1::TaskInfo>& tasks);
  // `resources` carry the reservation (reservations[].role) to create or remove.
  static rz::v1::Operation ReserveOperation(const std::vector<rz::v1::Resource>& resources);
  static rz::v1::Operation UnreserveOperation(const std::vector<rz::v1::Resource>& resources);

  // The sequence number of the last event delivered (0 before any).
  uint64_t last_sequence() const;

  // Tests: breaks the current event stream as a network failure would (the client then
  // resubscribes, if configured to).
  void BreakStreamForTesting();

  // Cancels the event stream and joins the reader thread; no event is delivered afterwards
  // (queued ones can still be taken). Idempotent.
  // REQUIRES: not called from the on_event callback.
  void Close();

  // Set by a successful Subscribe(); empty before.
  FrameworkId framework_id() const;
  StreamId stream_id() const;
  const std::string& master_address() const { return master_address_; }

 private:
  void ReadEvents(rz::v1::SubscribeRequest request);
  void Deliver(rz::v1::Event event);
  // The header for a unary call, or FailedPrecondition if not subscribed.
  absl::Status FillHeader(rz::v1::CallHeader* header) const;
  void PrepareContext(grpc::ClientContext* context) const;
  absl::Status CallResult(const char* call, const grpc::Status& status) const;

  const std::string master_address_;
  rz::v1::FrameworkInfo framework_info_;  // Guarded by mu_ after Subscribe().
  const SchedulerClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<rz::v1::Scheduler::Stub> stub_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Guarded by mu_.
  bool subscribe_started_ = false;
  bool subscribe_done_ = false;    // The first event (or the stream's end) was seen.
  absl::Status subscribe_status_;  // Valid once subscribe_done_.
  bool closed_ = false;            // Close() was called.
  bool stream_ended_ = false;      // The reader thread has finished.
  FrameworkId framework_id_;
  StreamId stream_id_;
  std::deque<rz::v1::Event> events_;
  uint64_t last_sequence_ = 0;
  int subscriptions_ = 0;  // SUBSCRIBED events seen.

  // Set up by Subscribe() and replaced by the reader thread for each resubscription, under
  // mu_; the reader thread uses it while it runs. TryCancel() on it is thread-safe. Close()
  // and Subscribe() are serialized by close_mu_.
  std::mutex close_mu_;
  std::unique_ptr<grpc::ClientContext> stream_context_;  // Guarded by mu_.
  std::thread reader_thread_;
};

}  // namespace rz::scheduler
