// Agent: the agent's state machine. It registers with the master, turns RUN_TASK (and
// RUN_TASK_GROUP) into containers (through the Containerizer seam), kills them on request, and
// delivers every task status update reliably: per task, updates form an ordered queue; each is
// checkpointed before it is forwarded, and the head is sent (and resent with exponential
// backoff, and again on every new registration) until the master forwards the framework's
// acknowledgement of that head's uuid.
//
// Task life: STARTING when RUN_TASK arrives (sandbox, fetch, container launch run on a worker),
// RUNNING once the container runs (with `healthy` updates when it has a health check), then
// FINISHED (exit 0), FAILED (non-zero exit, a container limit, a failed fetch or launch, a
// failed health check) or, after a kill, KILLING then KILLED; ERROR for an invalid task. A
// task stays active until its terminal update is acknowledged, then moves to a bounded list of
// completed tasks and its sandbox is scheduled for garbage collection.
//
// Recovery: a restarted agent loads its checkpoint (agent id, frameworks, tasks, unacknowledged
// updates), asks the containerizer which containers still run, reports the tasks that ended
// while it was down, and reregisters with its full inventory.
//
// Thread rule: loop-only. Every method runs on `loop` (DCHECKed). Blocking work (sandbox
// creation, fetching, container operations) goes to `run_blocking` and posts its result back;
// checkpoint writes go to `checkpoint`, whose completion also posts back. Readers on other
// threads use the StateSnapshot the agent publishes after changes.
#pragma once

#include <sys/types.h>

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
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/checkpoint_store.h"
#include "agent/containerizer/containerizer.h"
#include "agent/master_connection.h"
#include "agent/state_snapshot.h"
#include "common/event_loop.h"
#include "common/ids.h"
#include "common/resources.h"
#include "rz/v1/agent.pb.h"
#include "rz/v1/agent_api.pb.h"

namespace rz::agent {

class Fetcher;
class HealthChecker;
class SandboxGc;
struct HealthResult;

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
  // Whom tasks run as. The agent's own user name; whether it may switch users (root);
  // the user for tasks that name none when it may; and whether tasks may run as root.
  std::string agent_user;
  bool can_switch_user = false;
  std::string default_task_user = "nobody";
  bool allow_root_tasks = false;
  // pids.max for tasks without a "pids" limit; 0 = none.
  uint64_t default_pids_max = 0;
  // How often container usage is sampled, published and pushed to the master; 0 = never.
  absl::Duration usage_interval = absl::Seconds(10);
};

// Runs a closure off the event loop (production: WorkerPool::Submit).
using BlockingRunner = std::function<void(absl::AnyInvocable<void() &&>)>;

// Persists a checkpoint batch off the loop and calls `done` (on any thread) once it is
// durable (production: CheckpointStore::Write).
using CheckpointWriter =
    std::function<void(CheckpointBatch batch, absl::AnyInvocable<void(absl::Status) &&> done)>;

// What the agent found at start-up: its checkpoint and the containers that survived.
struct RecoveryInput {
  Recovered checkpoint;
  std::map<std::string, RecoveredContainer> containers;  // By container id.
};

class Agent {
 public:
  // All references must outlive the agent, and `loop` must not run closures the agent posted
  // once the agent is destroyed (stop the loop first). `fetcher` and `gc` may be null.
  Agent(AgentOptions options, EventLoop& loop, Containerizer& containerizer,
        BlockingRunner run_blocking, CheckpointWriter checkpoint, MasterConnection& master,
        StateSnapshot& snapshot, Fetcher* fetcher = nullptr, SandboxGc* gc = nullptr);
  ~Agent();

  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Publishes the first snapshot (recovering until Recover() or StartFresh() runs).
  void Start();

  // Restores the checkpointed state (the agent's id, frameworks, tasks, unacknowledged
  // updates), reports what ended while the agent was down and starts sampling usage. Call
  // once, before the first connection. The agent's info is checkpointed once the master
  // assigns an id.
  void Recover(RecoveryInput input);
  // For an agent without a checkpoint.
  void StartFresh() { Recover({}); }

  // The exit callback for a recovered running container (Containerizer::Recover()).
  Containerizer::ExitCallback ExitCallbackFor(const std::string& container_id);

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
    kLaunching,  // STARTING sent; sandbox, fetch and container launch in progress on a worker.
    kRunning,
    kKilling,   // SIGTERM sent; SIGKILL when the grace period ends.
    kTerminal,  // Terminal update queued; waits for its acknowledgement.
  };

  // One queued status update and whether its checkpoint is durable yet.
  struct PendingUpdate {
    uint64_t sequence = 0;
    bool durable = false;
    rz::v1::TaskStatus status;
  };

  struct TaskRecord {
    uint64_t launch_id = 0;  // Unique per record; tags callbacks from workers and containers.
    rz::v1::Task task;       // `state` and `latest_status` follow the updates sent.
    rz::v1::TaskInfo info;
    std::string container_id;  // Set once a container may exist.
    std::string group_id;      // Tasks of one RunTaskGroup share it.
    Phase phase = Phase::kLaunching;
    // Set when a kill arrives during launch: the worker skips the launch if it has not begun.
    std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
    bool container_running = false;         // Launched and its exit not yet reported.
    std::optional<Termination> early_exit;  // An exit that arrived before the launch result.
    // Why the agent killed the task itself (health check, group member failed), if it did.
    std::optional<rz::v1::TaskStatus::Reason> kill_reason;
    std::string kill_message;
    TimerId escalation_timer = 0;              // SIGKILL after the grace period.
    std::deque<PendingUpdate> unacknowledged;  // Front is in flight once durable.
    TimerId retry_timer = 0;
    absl::Duration retry_backoff;
    std::optional<bool> healthy;
    std::unique_ptr<HealthChecker> health_checker;
    std::optional<uid_t> uid;  // Of the task's user, once resolved.
    std::optional<gid_t> gid;
    rz::v1::ResourceStatistics statistics;
    pid_t pid = 0;
    std::vector<std::string> cgroups;
    double container_start_time = 0;
  };

  // The outcome of a launch on the worker.
  struct LaunchResult {
    absl::Status status;
    rz::v1::TaskStatus::Reason failure_reason = rz::v1::TaskStatus::REASON_CONTAINER_LAUNCH_FAILED;
    pid_t pid = 0;
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::vector<std::string> cgroups;
    std::string container_id;  // Of the launched container.
  };

  void HandleRegistered(const rz::v1::MasterMessage::Registered& registered);
  void RunTasks(const rz::v1::FrameworkInfo& framework,
                const std::vector<const rz::v1::TaskInfo*>& tasks);
  void KillTask(const TaskKey& key, const rz::v1::KillPolicy* policy);
  // Kills every other live task of `key`'s group.
  void KillGroup(const TaskKey& key, rz::v1::TaskStatus::Reason reason, const std::string& why);
  void ShutdownFramework(const FrameworkId& framework_id);
  void Acknowledge(const rz::v1::MasterMessage::Acknowledge& ack);
  // A scheduler's MESSAGE: appended to the task's `.rz/messages` on a worker (best effort).
  void DeliverMessage(const rz::v1::MasterMessage::FrameworkMessage& message);

  // Creates the record of a valid task (or an invalid one, reported TASK_ERROR).
  TaskRecord* AddTask(const rz::v1::FrameworkInfo& framework, const rz::v1::TaskInfo& task_info,
                      const std::string& group_id);
  // The unix user `task` runs as, or an error saying why it may not run.
  absl::StatusOr<std::string> ResolveUser(const rz::v1::Task& task) const;
  void Launch(const TaskKey& key, TaskRecord& record, std::string user);

  // Results from workers and containers, posted back to the loop.
  void OnLaunched(const TaskKey& key, uint64_t launch_id, LaunchResult result);
  void OnExited(const TaskKey& key, uint64_t launch_id, Termination termination);
  void OnGracePeriodOver(const TaskKey& key, uint64_t launch_id);
  void HandleExit(const TaskKey& key, TaskRecord& record, const Termination& termination);
  void StartHealthCheck(const TaskKey& key, TaskRecord& record);
  void OnHealthResult(const TaskKey& key, uint64_t launch_id, const HealthResult& result);
  void SignalContainer(const TaskRecord& record, int signal);

  // Queues a new update for `record` (checkpointed, then sent once it heads the queue) and
  // makes the task's state `state`.
  void Update(TaskRecord& record, rz::v1::TaskState state, rz::v1::TaskStatus::Reason reason,
              std::string message, std::optional<int> exit_status = std::nullopt,
              std::optional<bool> healthy = std::nullopt);
  // Sends an update that needs no acknowledgement, for a task the agent cannot track.
  void SendUntrackedError(const rz::v1::FrameworkInfo& framework, const rz::v1::TaskInfo& task_info,
                          std::string message);
  void TransmitHead(const TaskKey& key, TaskRecord& record);
  void OnRetryTimer(const TaskKey& key, const std::string& uuid);
  void OnDurable(const TaskKey& key, uint64_t launch_id, uint64_t sequence);
  void CompleteTask(const TaskKey& key);

  rz::v1::TaskCheckpoint CheckpointOf(const TaskRecord& record) const;
  // Writes `batch`; `on_durable` runs on the loop once it is durable (or failed, logged).
  void Persist(CheckpointBatch batch, absl::AnyInvocable<void() &&> on_durable = nullptr);

  void SampleUsage();
  void OnUsage(std::vector<std::pair<TaskKey, absl::StatusOr<rz::v1::ResourceStatistics>>> usage);

  TaskRecord* Find(const TaskKey& key, uint64_t launch_id);
  rz::v1::AgentInfo Info() const;
  void MarkDirty();
  void Publish();

  const AgentOptions options_;
  EventLoop& loop_;
  Containerizer& containerizer_;
  const BlockingRunner run_blocking_;
  const CheckpointWriter checkpoint_;
  MasterConnection& master_;
  StateSnapshot& snapshot_;
  Fetcher* const fetcher_;
  SandboxGc* const gc_;
  const double start_time_;

  AgentId id_;
  bool recovering_ = true;
  bool connected_ = false;
  bool registered_ = false;
  uint64_t next_launch_id_ = 1;
  uint64_t next_sequence_ = 1;
  uint64_t next_container_ = 1;
  bool publish_pending_ = false;
  bool usage_in_flight_ = false;
  TimerId usage_timer_ = 0;
  // Lets closures posted by other threads (checkpoint completions) detect a destroyed agent.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  // Exits of recovered containers reported before Recover() ran, by container id.
  std::map<std::string, Termination> early_recovered_exits_;
  std::map<TaskKey, TaskRecord> tasks_;  // Active: not terminal, or terminal and unacked.
  // Frameworks the master shut down and forgot: their tasks' updates would never be
  // acknowledged, so they are not sent and a terminal task completes at once.
  std::set<FrameworkId> shut_down_frameworks_;
  std::map<FrameworkId, rz::v1::FrameworkInfo> frameworks_;  // Of the active tasks.
  std::deque<rz::v1::Task> completed_tasks_;                 // Oldest first.
  rz::v1::ResourceStatistics usage_total_;
};

}  // namespace rz::agent
