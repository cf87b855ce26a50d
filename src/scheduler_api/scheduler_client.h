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
// Following the leader: the client is given a master spec (one host:port, a list, or zk://...;
// see common/master_detector.h) or a MasterDetector, and subscribes to the master the detector
// names. When the detector names another master, or a master refuses with UNAVAILABLE and the
// `rz-leader` hint (a standby, or a leader stepping down), the stream is dropped and, with
// `resubscribe`, the client resubscribes to the new leader at once (a hint is also reported to
// the detector), resuming after last_sequence() with the same framework id. Unary calls go to
// the master of the current subscription; one refused by a master that no longer leads returns
// Unavailable naming the leader: retry it after the new SUBSCRIBED event.
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

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/master_detector.h"
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
  // `master` is the masters' gRPC address: host:port (one master), host:port,host:port,... or
  // zk://host:port,.../path; the client follows whichever leads. A malformed spec makes
  // Subscribe() return InvalidArgument. No connection is made yet.
  SchedulerClient(std::string master, rz::v1::FrameworkInfo framework_info,
                  SchedulerClientOptions options = {});
  // Follows `detector` (owned; started by Subscribe()).
  SchedulerClient(std::unique_ptr<MasterDetector> detector, rz::v1::FrameworkInfo framework_info,
                  SchedulerClientOptions options = {});
  ~SchedulerClient();  // Close()s.

  SchedulerClient(const SchedulerClient&) = delete;
  SchedulerClient& operator=(const SchedulerClient&) = delete;

  // Opens the event stream at the leading master (following up to a few `rz-leader` hints) and
  // waits up to `timeout` for its answer. Returns OK once the SUBSCRIBED event arrived
  // (framework_id() and stream_id() are then set); InvalidArgument for a malformed master spec;
  // Unavailable naming the address if the master cannot be reached, or the spec if no leader
  // was found in time; the ERROR event's message (as FailedPrecondition) if the master refused
  // the subscription; DeadlineExceeded if the master did not answer in time;
  // FailedPrecondition if called twice.
  absl::Status Subscribe(absl::Duration timeout);

  // The next queued event, waiting up to `timeout` for one. Returns nullopt on timeout, when
  // the client is closed and the queue is empty, or when an on_event callback is set.
  std::optional<rz::v1::Event> NextEvent(absl::Duration timeout);

  // The unary calls. Each returns the master's answer as a Status (FailedPrecondition if not
  // subscribed; Unavailable if the master cannot be reached or no longer leads;
  // DeadlineExceeded after options.call_timeout).

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
  // host:port of the master of the current (or last) subscription; before one, the spec.
  std::string master_address() const;

 private:
  using Stub = rz::v1::Scheduler::Stub;

  // Called by the detector on its thread: records the leader and drops a stream to another.
  void OnLeader(std::optional<rz::v1::MasterInfo> leader);
  void ReadEvents(rz::v1::SubscribeRequest request);
  void Deliver(rz::v1::Event event);
  // The header for a unary call, or FailedPrecondition if not subscribed.
  absl::Status FillHeader(rz::v1::CallHeader* header) const;
  // Makes one unary call, `invoke(stub, context)`, at the master of the subscription.
  template <typename F>
  absl::Status Call(const char* call, F invoke);
  std::shared_ptr<Stub> StubFor(const std::string& address);  // Caller holds mu_.

  const std::string master_spec_;
  rz::v1::FrameworkInfo framework_info_;  // Guarded by mu_ after Subscribe().
  const SchedulerClientOptions options_;
  // Null if the spec is malformed (detector_status_ says why). Reset by the destructor only.
  std::unique_ptr<MasterDetector> detector_;
  absl::Status detector_status_;

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
  std::string leader_;     // The detector's leader; empty: none known.
  uint64_t leader_changes_ = 0;
  bool leader_seen_ = false;    // The detector named a leader at least once.
  std::string stream_address_;  // The master of the current or last subscription attempt.
  bool stream_open_ = false;    // An attempt on stream_context_ is in progress.
  std::string moved_to_;        // The leader the open stream was dropped for.
  absl::flat_hash_map<std::string, std::shared_ptr<Stub>> stubs_;

  // Set up by Subscribe() and replaced by the reader thread for each resubscription, under
  // mu_; the reader thread uses it while it runs. TryCancel() on it is thread-safe. Close()
  // and Subscribe() are serialized by close_mu_.
  std::mutex close_mu_;
  std::unique_ptr<grpc::ClientContext> stream_context_;  // Guarded by mu_.
  std::thread reader_thread_;
};

}  // namespace rz::scheduler
