// Agent: the agent's state machine. It registers with the master, turns RUN_TASK into launched
// processes (through the Launcher seam), kills them on request, and delivers every task status
// update reliably: per task, updates form an ordered queue whose head is sent (and resent with
// exponential backoff, and again on every new registration) until the master forwards the
// framework's acknowledgement of that head's uuid.
//
// Task life: STARTING when RUN_TASK arrives, RUNNING once spawned, then FINISHED (exit 0),
// FAILED (non-zero exit, spawn failure) or, after a kill, KILLING then KILLED; ERROR for an
// invalid task. A task stays active until its terminal update is acknowledged, then moves to a
// bounded list of completed tasks.
//
// Thread rule: loop-only. Every method runs on `loop` (DCHECKed). Blocking work (sandbox
// creation, spawning) goes to `run_blocking` and posts its result back to the loop. Readers on
// other threads use the StateSnapshot the agent publishes after changes.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "agent/launcher.h"
#include "agent/master_connection.h"
#include "agent/state_snapshot.h"
#include "common/event_loop.h"
#include "common/ids.h"
#include "common/resources.h"
#include "rz/v1/agent.pb.h"
#include "rz/v1/agent_api.pb.h"

namespace rz::agent {

struct AgentOptions {
  std::string hostname;
  std::string http_address;    // http://host:port of the agent's REST API.
  std::string master_address;  // host:port, for /state.
  std::string work_dir;
  Resources resources;
  // Text attributes (e.g. rack, zone) schedulers can constrain offers on.
  std::vector<std::pair<std::string, std::string>> attributes;
  std::string version;
  absl::Duration default_kill_grace_period = absl::Seconds(3);
  absl::Duration status_update_retry_initial = absl::Seconds(1);
  absl::Duration status_update_retry_max = absl::Seconds(60);
  size_t max_completed_tasks = 1000;
};

// Runs a closure off the event loop (production: WorkerPool::Submit).
using BlockingRunner = std::function<void(absl::AnyInvocable<void() &&>)>;

class Agent {
 public:
  // All references must outlive the agent, and `loop` must not run closures the agent posted
  // once the agent is destroyed (stop the loop first).
  Agent(AgentOptions options, EventLoop& loop, Launcher& launcher, BlockingRunner run_blocking,
        MasterConnection& master, StateSnapshot& snapshot);

  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Publishes the first snapshot.
  void Start();

  // A new stream to the master is open: sends Register (a reregistration with every active
  // task and its framework once the agent has an id).
  void OnMasterConnected();

  // The stream broke; nothing is sent until the next registration.
  void OnMasterDisconnected();

  // Handles one message from the master. Invalid or unexpected messages are logged and
  // ignored: the master reconciles.
  void OnMasterMessage(const rz::v1::MasterMessage& message);

  const AgentId& id() const;
  bool registered() const;

 private:
  using TaskKey = std::pair<FrameworkId, TaskId>;

  enum class Phase {
    kLaunching,  // STARTING sent; sandbox creation and spawn in progress on a worker.
    kRunning,
    kKilling,   // SIGTERM sent; SIGKILL when the grace period ends.
    kTerminal,  // Terminal update queued; waits for its acknowledgement.
  };

  struct TaskRecord {
    uint64_t launch_id = 0;  // Unique per record; tags callbacks from workers and the launcher.
    rz::v1::Task task;       // `state` and `latest_status` follow the updates sent.
    rz::v1::KillPolicy kill_policy;
    Phase phase = Phase::kLaunching;
    // Set when a kill arrives during launch: the worker skips the spawn if it has not begun.
    std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
    std::optional<LaunchHandle> handle;  // Set while the process is known not to be reaped.
    std::optional<int> early_exit;       // An exit that arrived before the launch result.
    TimerId escalation_timer = 0;        // SIGKILL after the grace period.
    std::deque<rz::v1::TaskStatus> unacknowledged;  // Front is in flight.
    TimerId retry_timer = 0;
    absl::Duration retry_backoff;
  };

  void HandleRegistered(const rz::v1::MasterMessage::Registered& registered);
  void RunTask(const rz::v1::FrameworkInfo& framework, const rz::v1::TaskInfo& task_info);
  void KillTask(const TaskKey& key, const rz::v1::KillPolicy* policy);
  void ShutdownFramework(const FrameworkId& framework_id);
  void Acknowledge(const rz::v1::MasterMessage::Acknowledge& ack);

  // Results from the worker and the launcher, posted back to the loop.
  void OnLaunched(const TaskKey& key, uint64_t launch_id, absl::StatusOr<LaunchHandle> result);
  void OnExited(const TaskKey& key, uint64_t launch_id, int wait_status);
  void OnGracePeriodOver(const TaskKey& key, uint64_t launch_id);
  void HandleExit(TaskRecord& record, int wait_status);

  // Queues a new update for `record` (sending it at once if the queue was empty) and makes
  // the task's state `state`.
  void Update(TaskRecord& record, rz::v1::TaskState state, rz::v1::TaskStatus::Reason reason,
              std::string message, std::optional<int> exit_status = std::nullopt);
  // Sends an update that needs no acknowledgement, for a task the agent cannot track.
  void SendUntrackedError(const rz::v1::FrameworkInfo& framework, const rz::v1::TaskInfo& task_info,
                          std::string message);
  void TransmitHead(const TaskKey& key, TaskRecord& record);
  void OnRetryTimer(const TaskKey& key, const std::string& uuid);
  void CompleteTask(const TaskKey& key);

  TaskRecord* Find(const TaskKey& key, uint64_t launch_id);
  rz::v1::AgentInfo Info() const;
  void MarkDirty();
  void Publish();

  const AgentOptions options_;
  EventLoop& loop_;
  Launcher& launcher_;
  const BlockingRunner run_blocking_;
  MasterConnection& master_;
  StateSnapshot& snapshot_;
  const double start_time_;

  AgentId id_;
  bool connected_ = false;
  bool registered_ = false;
  uint64_t next_launch_id_ = 1;
  bool publish_pending_ = false;

  std::map<TaskKey, TaskRecord> tasks_;  // Active: not terminal, or terminal and unacked.
  // Frameworks the master shut down and forgot: their tasks' updates would never be
  // acknowledged, so they are not sent and a terminal task completes at once.
  std::set<FrameworkId> shut_down_frameworks_;
  std::map<FrameworkId, rz::v1::FrameworkInfo> frameworks_;  // Of the active tasks.
  std::deque<rz::v1::Task> completed_tasks_;                 // Oldest first.
};

}  // namespace rz::agent
