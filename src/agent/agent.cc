#include "agent/agent.h"

#include <sys/wait.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/sandbox.h"
#include "common/random_id.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "glog/logging.h"

namespace rz::agent {
namespace {

using rz::v1::TaskStatus;

double ToSeconds(absl::Time time) { return absl::ToDoubleSeconds(time - absl::UnixEpoch()); }

// "command exited with status 3" / "command terminated by signal SIGTERM (15)".
std::string DescribeExit(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("command exited with status ", WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    const int signal = WTERMSIG(wait_status);
    const char* name = sigabbrev_np(signal);
    return absl::StrCat("command terminated by signal ",
                        name != nullptr ? absl::StrCat("SIG", name) : "unknown", " (", signal, ")");
  }
  return absl::StrCat("command ended with wait status ", wait_status);
}

// The problem with a RUN_TASK the agent can track, or "" if it is valid.
std::string ValidateTask(const rz::v1::FrameworkInfo& framework,
                         const rz::v1::TaskInfo& task_info) {
  if (!IsSafePathComponent(framework.id())) {
    return absl::StrCat("invalid framework id '", framework.id(), "'");
  }
  if (!IsSafePathComponent(task_info.task_id())) {
    return absl::StrCat("invalid task id '", task_info.task_id(), "'");
  }
  if (!task_info.has_command()) {
    return "task has no command";
  }
  if (task_info.command().value().empty()) {
    return task_info.command().shell() ? "task has an empty shell command"
                                       : "task command has no executable";
  }
  return "";
}

}  // namespace

Agent::Agent(AgentOptions options, EventLoop& loop, Launcher& launcher, BlockingRunner run_blocking,
             MasterConnection& master, StateSnapshot& snapshot)
    : options_(std::move(options)),
      loop_(loop),
      launcher_(launcher),
      run_blocking_(std::move(run_blocking)),
      master_(master),
      snapshot_(snapshot),
      start_time_(ToSeconds(loop.clock().Now())) {}

void Agent::Start() {
  DCHECK(loop_.IsLoopThread());
  Publish();
}

const AgentId& Agent::id() const {
  DCHECK(loop_.IsLoopThread());
  return id_;
}

bool Agent::registered() const {
  DCHECK(loop_.IsLoopThread());
  return registered_;
}

rz::v1::AgentInfo Agent::Info() const {
  rz::v1::AgentInfo info;
  info.set_id(id_.value());
  info.set_hostname(options_.hostname);
  info.set_http_address(options_.http_address);
  ToProto(options_.resources, info.mutable_resources());
  for (const auto& [name, value] : options_.attributes) {
    rz::v1::Attribute* attribute = info.add_attributes();
    attribute->set_name(name);
    attribute->set_text(value);
  }
  info.set_version(options_.version);
  return info;
}

void Agent::OnMasterConnected() {
  DCHECK(loop_.IsLoopThread());
  connected_ = true;
  registered_ = false;
  rz::v1::AgentMessage message;
  rz::v1::AgentMessage::Register* reg = message.mutable_register_();
  *reg->mutable_info() = Info();
  // A reregistration carries the full inventory, so the master can reconcile: every task not
  // yet terminal plus the terminal ones whose final update the framework has not acknowledged.
  if (!id_.empty()) {
    for (const auto& [key, record] : tasks_) {
      *reg->add_tasks() = record.task;
    }
    for (const auto& [framework_id, framework] : frameworks_) {
      *reg->add_frameworks() = framework;
    }
  }
  // Logged at INFO once registered; every dial attempt would flood the log while the master
  // is down.
  VLOG(1) << (id_.empty() ? "registering" : "reregistering as agent ") << id_.value()
          << " with master " << options_.master_address << " (" << reg->tasks_size() << " tasks)";
  master_.Send(std::move(message));
  MarkDirty();
}

void Agent::OnMasterDisconnected() {
  DCHECK(loop_.IsLoopThread());
  if (registered_) {
    LOG(WARNING) << "lost the master; will reregister";
  }
  connected_ = false;
  registered_ = false;
  for (auto& [key, record] : tasks_) {
    loop_.CancelTimer(record.retry_timer);
    record.retry_timer = 0;
  }
  MarkDirty();
}

void Agent::OnMasterMessage(const rz::v1::MasterMessage& message) {
  DCHECK(loop_.IsLoopThread());
  switch (message.message_case()) {
    case rz::v1::MasterMessage::kRegistered:
      HandleRegistered(message.registered());
      break;
    case rz::v1::MasterMessage::kRunTask:
      RunTask(message.run_task().framework(), message.run_task().task());
      break;
    case rz::v1::MasterMessage::kKillTask: {
      const auto& kill = message.kill_task();
      KillTask({FrameworkId(kill.framework_id()), TaskId(kill.task_id())},
               kill.has_kill_policy() ? &kill.kill_policy() : nullptr);
      break;
    }
    case rz::v1::MasterMessage::kShutdownFramework:
      ShutdownFramework(FrameworkId(message.shutdown_framework().framework_id()));
      break;
    case rz::v1::MasterMessage::kAcknowledge:
      Acknowledge(message.acknowledge());
      break;
    case rz::v1::MasterMessage::kPing: {
      rz::v1::AgentMessage pong;
      pong.mutable_pong()->set_nonce(message.ping().nonce());
      master_.Send(std::move(pong));
      break;
    }
    case rz::v1::MasterMessage::MESSAGE_NOT_SET:
      LOG(WARNING) << "ignoring an empty message from the master";
      break;
  }
  MarkDirty();
}

void Agent::HandleRegistered(const rz::v1::MasterMessage::Registered& registered) {
  if (!connected_) {
    LOG(WARNING) << "ignoring Registered without an open stream";
    return;
  }
  if (registered.agent_id().empty()) {
    LOG(ERROR) << "the master registered this agent without an id; ignoring";
    return;
  }
  if (!id_.empty() && id_.value() != registered.agent_id()) {
    LOG(WARNING) << "the master changed this agent's id from " << id_ << " to '"
                 << registered.agent_id() << "'";
  }
  id_ = AgentId(registered.agent_id());
  registered_ = true;
  LOG(INFO) << "registered as agent " << id_ << " with master " << options_.master_address << " ("
            << tasks_.size() << " active tasks)";
  // Every unacknowledged head goes out again on the new stream; the old one may have lost it.
  for (auto& [key, record] : tasks_) {
    record.task.set_agent_id(id_.value());
    record.retry_backoff = options_.status_update_retry_initial;
    TransmitHead(key, record);
  }
}

void Agent::RunTask(const rz::v1::FrameworkInfo& framework, const rz::v1::TaskInfo& task_info) {
  const TaskKey key{FrameworkId(framework.id()), TaskId(task_info.task_id())};
  if (task_info.task_id().empty() || tasks_.contains(key)) {
    SendUntrackedError(framework, task_info,
                       task_info.task_id().empty()
                           ? "task has no id"
                           : absl::StrCat("task '", task_info.task_id(), "' of framework '",
                                          framework.id(), "' already exists on this agent"));
    return;
  }

  frameworks_[key.first] = framework;
  TaskRecord& record = tasks_[key];
  record.launch_id = next_launch_id_++;
  record.retry_backoff = options_.status_update_retry_initial;
  record.kill_policy = task_info.kill_policy();
  rz::v1::Task& task = record.task;
  task.set_task_id(task_info.task_id());
  task.set_name(task_info.name());
  task.set_framework_id(framework.id());
  task.set_agent_id(id_.value());
  task.set_state(rz::v1::TASK_STAGING);
  *task.mutable_resources() = task_info.resources();
  for (const rz::v1::Resource& resource : task_info.resources()) {
    if (!resource.allocation_role().empty()) {
      task.set_role(resource.allocation_role());
      break;
    }
  }
  const std::string user =
      task_info.command().user().empty() ? framework.user() : task_info.command().user();
  task.set_user(user);
  *task.mutable_command() = task_info.command();
  *task.mutable_labels() = task_info.labels();

  if (std::string problem = ValidateTask(framework, task_info); !problem.empty()) {
    LOG(WARNING) << "rejecting task " << key.second << " of framework " << key.first << ": "
                 << problem;
    record.phase = Phase::kTerminal;
    Update(record, rz::v1::TASK_ERROR, TaskStatus::REASON_TASK_INVALID, std::move(problem));
    return;
  }

  Update(record, rz::v1::TASK_STARTING, TaskStatus::REASON_UNSPECIFIED, "");
  LaunchSpec spec{.framework_id = key.first,
                  .task_id = key.second,
                  .agent_id = id_,
                  .command = task_info.command(),
                  .sandbox = SandboxDir(options_.work_dir, key.first, key.second),
                  .user = user};
  const uint64_t launch_id = record.launch_id;
  run_blocking_([this, key, launch_id, spec = std::move(spec), cancelled = record.cancelled,
                 loop = &loop_, launcher = &launcher_]() mutable {
    absl::StatusOr<LaunchHandle> result;
    if (cancelled->load()) {
      result = absl::CancelledError("killed before it was spawned");
    } else if (absl::Status created = CreateSandbox(spec.sandbox); !created.ok()) {
      result = created;
    } else {
      result = launcher->Launch(spec, [this, key, launch_id, loop](int wait_status) {
        loop->Post([this, key, launch_id, wait_status] { OnExited(key, launch_id, wait_status); });
      });
    }
    loop->Post([this, key, launch_id, result = std::move(result)]() mutable {
      OnLaunched(key, launch_id, std::move(result));
    });
  });
}

void Agent::OnLaunched(const TaskKey& key, uint64_t launch_id,
                       absl::StatusOr<LaunchHandle> result) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr || record->phase == Phase::kTerminal) {
    // Killed while the worker was spawning: the process must not live on.
    if (result.ok()) {
      LOG(INFO) << "task " << key.second << " was killed during launch; killing its process";
      if (absl::Status killed = launcher_.Kill(*result, SIGKILL); !killed.ok()) {
        VLOG(1) << killed;
      }
      if (record != nullptr) {
        record->handle = *result;
      }
    }
    return;
  }
  if (!result.ok()) {
    LOG(WARNING) << "cannot launch task " << key.second << ": " << result.status();
    record->phase = Phase::kTerminal;
    Update(*record, rz::v1::TASK_FAILED, TaskStatus::REASON_CONTAINER_LAUNCH_FAILED,
           absl::StrCat("cannot launch task: ", result.status().message()));
    MarkDirty();
    return;
  }
  record->handle = *result;
  record->phase = Phase::kRunning;
  Update(*record, rz::v1::TASK_RUNNING, TaskStatus::REASON_UNSPECIFIED, "");
  if (record->early_exit.has_value()) {
    HandleExit(*record, *record->early_exit);
  }
  MarkDirty();
}

void Agent::OnExited(const TaskKey& key, uint64_t launch_id, int wait_status) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr) {
    VLOG(1) << "exit of completed task " << key.second;
    return;
  }
  if (record->phase == Phase::kLaunching) {
    record->early_exit = wait_status;  // Reported once the launch result arrives.
    return;
  }
  HandleExit(*record, wait_status);
  MarkDirty();
}

void Agent::HandleExit(TaskRecord& record, int wait_status) {
  record.handle.reset();
  loop_.CancelTimer(record.escalation_timer);
  record.escalation_timer = 0;
  const std::string description = DescribeExit(wait_status);
  LOG(INFO) << "task '" << record.task.task_id() << "' of framework '" << record.task.framework_id()
            << "': " << description;
  switch (record.phase) {
    case Phase::kTerminal:
      return;  // Killed during launch; already reported.
    case Phase::kKilling:
      record.phase = Phase::kTerminal;
      // Whatever the exit code, a task that was asked to die was killed.
      Update(record, rz::v1::TASK_KILLED, TaskStatus::REASON_KILLED_BY_REQUEST,
             absl::StrCat("task killed: ", description), wait_status);
      return;
    case Phase::kLaunching:
    case Phase::kRunning:
      record.phase = Phase::kTerminal;
      if (wait_status == 0) {
        Update(record, rz::v1::TASK_FINISHED, TaskStatus::REASON_COMMAND_EXITED, description,
               wait_status);
      } else {
        Update(record, rz::v1::TASK_FAILED, TaskStatus::REASON_COMMAND_EXITED, description,
               wait_status);
      }
      return;
  }
}

void Agent::KillTask(const TaskKey& key, const rz::v1::KillPolicy* policy) {
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    LOG(INFO) << "ignoring kill of unknown task " << key.second << " of framework " << key.first;
    return;
  }
  TaskRecord& record = it->second;
  switch (record.phase) {
    case Phase::kLaunching:
      record.phase = Phase::kTerminal;
      record.cancelled->store(true);
      Update(record, rz::v1::TASK_KILLED, TaskStatus::REASON_TASK_KILLED_DURING_LAUNCH,
             "task killed before it started");
      return;
    case Phase::kRunning: {
      absl::Duration grace = options_.default_kill_grace_period;
      if (policy != nullptr && policy->has_grace_period_seconds()) {
        grace = absl::Seconds(policy->grace_period_seconds());
      } else if (record.kill_policy.has_grace_period_seconds()) {
        grace = absl::Seconds(record.kill_policy.grace_period_seconds());
      }
      grace = std::max(grace, absl::ZeroDuration());
      record.phase = Phase::kKilling;
      Update(record, rz::v1::TASK_KILLING, TaskStatus::REASON_UNSPECIFIED,
             absl::StrCat("sending SIGTERM; SIGKILL after ", absl::FormatDuration(grace)));
      if (absl::Status sent = launcher_.Kill(*record.handle, SIGTERM); !sent.ok()) {
        VLOG(1) << "SIGTERM to task " << key.second << ": " << sent;  // Its exit is on the way.
      }
      record.escalation_timer = loop_.PostAfter(
          grace, [this, key, launch_id = record.launch_id] { OnGracePeriodOver(key, launch_id); });
      return;
    }
    case Phase::kKilling:
    case Phase::kTerminal:
      LOG(INFO) << "task " << key.second << " is already being killed or has ended";
      return;
  }
}

void Agent::OnGracePeriodOver(const TaskKey& key, uint64_t launch_id) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr || record->phase != Phase::kKilling || !record->handle.has_value()) {
    return;
  }
  record->escalation_timer = 0;
  LOG(INFO) << "task " << key.second << " outlived its kill grace period; sending SIGKILL";
  if (absl::Status sent = launcher_.Kill(*record->handle, SIGKILL); !sent.ok()) {
    VLOG(1) << "SIGKILL to task " << key.second << ": " << sent;
  }
}

void Agent::ShutdownFramework(const FrameworkId& framework_id) {
  LOG(INFO) << "shutting down framework " << framework_id;
  shut_down_frameworks_.insert(framework_id);
  std::vector<TaskKey> keys;
  for (const auto& [key, record] : tasks_) {
    if (key.first == framework_id) {
      keys.push_back(key);
    }
  }
  for (const TaskKey& key : keys) {
    auto it = tasks_.find(key);
    if (it == tasks_.end()) {
      continue;
    }
    if (it->second.phase == Phase::kTerminal) {
      // Ended already; its last update will never be acknowledged now.
      CompleteTask(key);
    } else {
      KillTask(key, nullptr);
    }
  }
  const bool any_left = std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& entry) {
    return entry.first.first == framework_id;
  });
  if (!any_left) {
    shut_down_frameworks_.erase(framework_id);
  }
}

void Agent::Acknowledge(const rz::v1::MasterMessage::Acknowledge& ack) {
  const TaskKey key{FrameworkId(ack.framework_id()), TaskId(ack.task_id())};
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    LOG(INFO) << "ignoring acknowledgement for unknown task " << key.second;
    return;
  }
  TaskRecord& record = it->second;
  if (record.unacknowledged.empty() || record.unacknowledged.front().uuid() != ack.uuid()) {
    LOG(INFO) << "ignoring stale acknowledgement " << UuidToString(ack.uuid()) << " for task "
              << key.second;
    return;
  }
  record.task.set_acknowledged_state(record.unacknowledged.front().state());
  record.unacknowledged.pop_front();
  loop_.CancelTimer(record.retry_timer);
  record.retry_timer = 0;
  record.retry_backoff = options_.status_update_retry_initial;
  if (!record.unacknowledged.empty()) {
    TransmitHead(key, record);
  } else if (record.phase == Phase::kTerminal && IsTerminal(record.task.state())) {
    CompleteTask(key);
  }
}

void Agent::Update(TaskRecord& record, rz::v1::TaskState state, TaskStatus::Reason reason,
                   std::string message, std::optional<int> exit_status) {
  TaskStatus status;
  status.set_task_id(record.task.task_id());
  status.set_framework_id(record.task.framework_id());
  status.set_agent_id(id_.value());
  status.set_state(state);
  status.set_source(TaskStatus::SOURCE_AGENT);
  status.set_reason(reason);
  status.set_message(std::move(message));
  status.set_uuid(NewUuidBytes());
  status.set_timestamp(ToSeconds(loop_.clock().Now()));
  if (exit_status.has_value()) {
    status.set_exit_status(*exit_status);
  }
  record.task.set_state(state);
  *record.task.mutable_latest_status() = status;
  const TaskKey key{FrameworkId(record.task.framework_id()), TaskId(record.task.task_id())};
  if (shut_down_frameworks_.contains(key.first)) {
    record.unacknowledged.clear();
    loop_.CancelTimer(record.retry_timer);
    record.retry_timer = 0;
    if (IsTerminal(state)) {
      // Completed from a fresh closure: callers still hold `record`.
      loop_.Post([this, key] {
        if (tasks_.contains(key)) {
          CompleteTask(key);
        }
      });
    }
    MarkDirty();
    return;
  }
  record.unacknowledged.push_back(std::move(status));
  if (record.unacknowledged.size() == 1) {
    record.retry_backoff = options_.status_update_retry_initial;
    TransmitHead(key, record);
  }
  MarkDirty();
}

void Agent::SendUntrackedError(const rz::v1::FrameworkInfo& framework,
                               const rz::v1::TaskInfo& task_info, std::string message) {
  LOG(WARNING) << "rejecting task '" << task_info.task_id() << "' of framework '" << framework.id()
               << "': " << message;
  rz::v1::AgentMessage out;
  TaskStatus* status = out.mutable_status_update()->mutable_status();
  status->set_task_id(task_info.task_id());
  status->set_framework_id(framework.id());
  status->set_agent_id(id_.value());
  status->set_state(rz::v1::TASK_ERROR);
  status->set_source(TaskStatus::SOURCE_AGENT);
  status->set_reason(TaskStatus::REASON_TASK_INVALID);
  status->set_message(std::move(message));
  status->set_timestamp(ToSeconds(loop_.clock().Now()));
  master_.Send(std::move(out));  // No uuid: nothing to acknowledge, nothing to retry.
}

void Agent::TransmitHead(const TaskKey& key, TaskRecord& record) {
  loop_.CancelTimer(record.retry_timer);
  record.retry_timer = 0;
  if (!registered_ || record.unacknowledged.empty()) {
    return;  // Sent again after the next registration.
  }
  rz::v1::AgentMessage message;
  *message.mutable_status_update()->mutable_status() = record.unacknowledged.front();
  master_.Send(std::move(message));
  record.retry_timer = loop_.PostAfter(
      record.retry_backoff,
      [this, key, uuid = record.unacknowledged.front().uuid()] { OnRetryTimer(key, uuid); });
}

void Agent::OnRetryTimer(const TaskKey& key, const std::string& uuid) {
  DCHECK(loop_.IsLoopThread());
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    return;
  }
  TaskRecord& record = it->second;
  record.retry_timer = 0;
  if (record.unacknowledged.empty() || record.unacknowledged.front().uuid() != uuid) {
    return;
  }
  VLOG(1) << "resending unacknowledged update " << UuidToString(uuid) << " of task " << key.second;
  record.retry_backoff = std::min(record.retry_backoff * 2, options_.status_update_retry_max);
  TransmitHead(key, record);
}

void Agent::CompleteTask(const TaskKey& key) {
  auto it = tasks_.find(key);
  TaskRecord& record = it->second;
  loop_.CancelTimer(record.retry_timer);
  loop_.CancelTimer(record.escalation_timer);
  if (record.handle.has_value()) {
    // Killed during launch and spawned anyway; SIGKILL went out, its exit is not reported.
    VLOG(1) << "task " << key.second << " completes before its process was reaped";
  }
  completed_tasks_.push_back(std::move(record.task));
  while (completed_tasks_.size() > options_.max_completed_tasks) {
    completed_tasks_.pop_front();
  }
  tasks_.erase(it);
  const bool framework_active = std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& entry) {
    return entry.first.first == key.first;
  });
  if (!framework_active) {
    frameworks_.erase(key.first);
    shut_down_frameworks_.erase(key.first);
  }
  MarkDirty();
}

Agent::TaskRecord* Agent::Find(const TaskKey& key, uint64_t launch_id) {
  auto it = tasks_.find(key);
  if (it == tasks_.end() || it->second.launch_id != launch_id) {
    return nullptr;
  }
  return &it->second;
}

void Agent::MarkDirty() {
  if (publish_pending_) {
    return;
  }
  publish_pending_ = true;
  // Coalesces the changes of one burst of events into one snapshot.
  loop_.Post([this] {
    publish_pending_ = false;
    Publish();
  });
}

void Agent::Publish() {
  DCHECK(loop_.IsLoopThread());
  auto state = std::make_shared<rz::v1::AgentStateResponse>();
  *state->mutable_info() = Info();
  state->set_master_address(options_.master_address);
  state->set_registered(registered_);
  for (const auto& [key, record] : tasks_) {
    *state->add_tasks() = record.task;
  }
  for (const rz::v1::Task& task : completed_tasks_) {
    *state->add_completed_tasks() = task;
  }
  for (const auto& [framework_id, framework] : frameworks_) {
    *state->add_frameworks() = framework;
  }
  state->set_start_time(start_time_);
  snapshot_.Publish(std::move(state));
}

}  // namespace rz::agent
