#include "agent/agent.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/fetcher.h"
#include "agent/gc.h"
#include "agent/health_checker.h"
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
  if (task_info.has_health_check()) {
    if (absl::Status status = ValidateHealthCheck(task_info.health_check()); !status.ok()) {
      return std::string(status.message());
    }
  }
  for (const auto& [name, value] : task_info.limits()) {
    if (name != "cpus" && name != "mem" && name != "pids") {
      return absl::StrCat("limits: unknown resource '", name, "' (cpus, mem or pids)");
    }
    if (!(value > 0)) {
      return absl::StrCat("limits: ", name, " must be positive, not ", value);
    }
  }
  return "";
}

double ScalarOf(const rz::v1::TaskInfo& info, const std::string& name) {
  double total = 0;
  for (const rz::v1::Resource& resource : info.resources()) {
    if (resource.name() == name && resource.has_scalar()) {
      total += resource.scalar();
    }
  }
  return total;
}

// PORTS=31000,31001 and PORT0, PORT1, ... for the task's port ranges.
std::vector<std::pair<std::string, std::string>> PortEnvironment(const rz::v1::TaskInfo& info) {
  std::vector<uint64_t> ports;
  for (const rz::v1::Resource& resource : info.resources()) {
    if (resource.name() != "ports" || !resource.has_ranges()) {
      continue;
    }
    for (const rz::v1::Range& range : resource.ranges().range()) {
      for (uint64_t port = range.begin(); port <= range.end() && ports.size() < 1024; ++port) {
        ports.push_back(port);
      }
    }
  }
  std::vector<std::pair<std::string, std::string>> environment;
  if (ports.empty()) {
    return environment;
  }
  environment.emplace_back("PORTS", absl::StrJoin(ports, ","));
  for (size_t i = 0; i < ports.size(); ++i) {
    environment.emplace_back(absl::StrCat("PORT", i), absl::StrCat(ports[i]));
  }
  return environment;
}

struct UserIds {
  uid_t uid;
  gid_t gid;
};

absl::StatusOr<UserIds> LookUpUser(const std::string& user) {
  std::vector<char> buffer(16384);
  struct passwd entry;
  struct passwd* found = nullptr;
  const int rc = ::getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("looking up user '", user, "': ", std::strerror(rc)));
  }
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown user '", user, "'"));
  }
  return UserIds{entry.pw_uid, entry.pw_gid};
}

void AddStatistics(rz::v1::ResourceStatistics& total, const rz::v1::ResourceStatistics& s) {
  total.set_cpus_user_time_secs(total.cpus_user_time_secs() + s.cpus_user_time_secs());
  total.set_cpus_system_time_secs(total.cpus_system_time_secs() + s.cpus_system_time_secs());
  total.set_cpus_limit(total.cpus_limit() + s.cpus_limit());
  total.set_cpus_nr_periods(total.cpus_nr_periods() + s.cpus_nr_periods());
  total.set_cpus_nr_throttled(total.cpus_nr_throttled() + s.cpus_nr_throttled());
  total.set_cpus_throttled_time_secs(total.cpus_throttled_time_secs() +
                                     s.cpus_throttled_time_secs());
  total.set_mem_rss_bytes(total.mem_rss_bytes() + s.mem_rss_bytes());
  total.set_mem_cache_bytes(total.mem_cache_bytes() + s.mem_cache_bytes());
  total.set_mem_usage_bytes(total.mem_usage_bytes() + s.mem_usage_bytes());
  total.set_mem_peak_bytes(total.mem_peak_bytes() + s.mem_peak_bytes());
  total.set_mem_limit_bytes(total.mem_limit_bytes() + s.mem_limit_bytes());
  total.set_processes(total.processes() + s.processes());
  total.set_pids_limit(total.pids_limit() + s.pids_limit());
}

}  // namespace

Agent::Agent(AgentOptions options, EventLoop& loop, Containerizer& containerizer,
             BlockingRunner run_blocking, CheckpointWriter checkpoint, MasterConnection& master,
             StateSnapshot& snapshot, Fetcher* fetcher, SandboxGc* gc)
    : options_(std::move(options)),
      loop_(loop),
      containerizer_(containerizer),
      run_blocking_(std::move(run_blocking)),
      checkpoint_(std::move(checkpoint)),
      master_(master),
      snapshot_(snapshot),
      fetcher_(fetcher),
      gc_(gc),
      start_time_(ToSeconds(loop.clock().Now())) {}

Agent::~Agent() {
  *alive_ = false;
  loop_.CancelTimer(usage_timer_);
}

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

// ---------------------------------------------------------------------------------------------
// Recovery

Containerizer::ExitCallback Agent::ExitCallbackFor(const std::string& container_id) {
  // Recovery runs before the agent knows which task owns the container; the callback finds the
  // task by container id once on the loop.
  return [this, container_id](Termination termination) {
    loop_.Post([this, container_id, termination = std::move(termination)] {
      if (recovering_) {
        early_recovered_exits_[container_id] = termination;
        return;
      }
      for (auto& [key, record] : tasks_) {
        if (record.container_id == container_id) {
          OnExited(key, record.launch_id, termination);
          return;
        }
      }
      VLOG(1) << "exit of unknown recovered container " << container_id;
    });
  };
}

void Agent::Recover(RecoveryInput input) {
  DCHECK(loop_.IsLoopThread());
  Recovered& checkpoint = input.checkpoint;
  for (const std::string& skipped : checkpoint.skipped) {
    LOG(WARNING) << "checkpoint: skipped " << skipped;
  }
  if (checkpoint.agent.has_value()) {
    id_ = AgentId(checkpoint.agent->info().id());
  }
  next_sequence_ = checkpoint.max_sequence + 1;
  for (auto& [framework_id, framework] : checkpoint.frameworks) {
    frameworks_[framework_id] = framework;
  }

  CheckpointBatch cleanup;
  std::vector<TaskKey> finished;
  for (auto& [key, recovered] : checkpoint.tasks) {
    if (!frameworks_.contains(key.first)) {
      LOG(WARNING) << "checkpoint: task " << key.second << " has no framework; dropping it";
      cleanup.DeleteTask(key.first, key.second);
      continue;
    }
    rz::v1::TaskCheckpoint& saved = recovered.checkpoint;
    TaskRecord& record = tasks_[key];
    record.launch_id = next_launch_id_++;
    record.task = saved.task();
    record.task.set_agent_id(id_.value());
    record.info = saved.info();
    record.container_id = saved.container_id();
    record.group_id = saved.group_id();
    record.retry_backoff = options_.status_update_retry_initial;
    for (auto& [sequence, status] : recovered.pending_updates) {
      record.unacknowledged.push_back({.sequence = sequence, .durable = true, .status = status});
    }
    const rz::v1::TaskState state = record.task.state();
    if (IsTerminal(state)) {
      record.phase = Phase::kTerminal;
      if (record.unacknowledged.empty()) {
        // Acknowledged before the crash, deleted after: finished once every task is back (so
        // that completing it does not forget a framework other tasks still need).
        finished.push_back(key);
      }
      continue;
    }
    auto container = record.container_id.empty() ? input.containers.end()
                                                 : input.containers.find(record.container_id);
    if (container == input.containers.end()) {
      // No trace of a container: the launch never got that far.
      record.phase = Phase::kTerminal;
      Update(record, rz::v1::TASK_FAILED, TaskStatus::REASON_AGENT_RESTARTED,
             "the agent restarted before the task's container started");
      continue;
    }
    RecoveredContainer& found = container->second;
    if (auto early = early_recovered_exits_.find(record.container_id);
        early != early_recovered_exits_.end()) {
      found.state = RecoveredContainer::State::kExited;  // It ended during recovery.
      found.termination = early->second;
    }
    if (found.state == RecoveredContainer::State::kRunning) {
      if (!record.task.user().empty() || options_.can_switch_user) {
        // Health checks run as the task's user. Recovery runs once, before the agent serves.
        if (absl::StatusOr<std::string> user = ResolveUser(record.task);
            user.ok() && !user->empty()) {
          if (absl::StatusOr<UserIds> ids = LookUpUser(*user); ids.ok()) {
            record.uid = ids->uid;
            record.gid = ids->gid;
          }
        }
      }
      record.container_running = true;
      record.pid = found.pid;
      record.phase = state == rz::v1::TASK_KILLING ? Phase::kKilling : Phase::kRunning;
      LOG(INFO) << "recovered task " << key.second << " of framework " << key.first
                << " running in container " << record.container_id << " (pid " << found.pid << ")";
      if (record.phase == Phase::kKilling) {
        // The kill was under way: deliver it again, with a fresh grace period.
        record.phase = Phase::kRunning;
        KillTask(key, nullptr);
      } else if (state == rz::v1::TASK_STARTING) {
        Update(record, rz::v1::TASK_RUNNING, TaskStatus::REASON_UNSPECIFIED, "");
        StartHealthCheck(key, record);
      } else {
        StartHealthCheck(key, record);
      }
      continue;
    }
    record.phase = state == rz::v1::TASK_KILLING ? Phase::kKilling : Phase::kRunning;
    LOG(INFO) << "task " << key.second << " of framework " << key.first
              << " ended while the agent was down";
    HandleExit(key, record, found.termination);
  }
  for (const TaskKey& key : finished) {
    CompleteTask(key);
  }
  if (!cleanup.empty()) {
    Persist(std::move(cleanup));
  }
  // Frameworks without tasks are not needed any more.
  for (auto it = frameworks_.begin(); it != frameworks_.end();) {
    const FrameworkId framework_id = it->first;
    const bool used = std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& entry) {
      return entry.first.first == framework_id;
    });
    if (used) {
      ++it;
      continue;
    }
    CheckpointBatch batch;
    batch.DeleteFramework(framework_id);
    Persist(std::move(batch));
    it = frameworks_.erase(it);
  }
  early_recovered_exits_.clear();
  recovering_ = false;
  LOG_IF(INFO, !id_.empty()) << "recovered agent " << id_ << " with " << tasks_.size()
                             << " active tasks";
  if (options_.usage_interval > absl::ZeroDuration()) {
    usage_timer_ = loop_.PostAfter(options_.usage_interval, [this] { SampleUsage(); });
  }
  MarkDirty();
}

// ---------------------------------------------------------------------------------------------
// The master link

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
      rz::v1::Task* task = reg->add_tasks();
      *task = record.task;
      task->clear_statistics();
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
      RunTasks(message.run_task().framework(), {&message.run_task().task()});
      break;
    case rz::v1::MasterMessage::kRunTaskGroup: {
      std::vector<const rz::v1::TaskInfo*> tasks;
      for (const rz::v1::TaskInfo& task : message.run_task_group().tasks()) {
        tasks.push_back(&task);
      }
      RunTasks(message.run_task_group().framework(), tasks);
      break;
    }
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
    case rz::v1::MasterMessage::kShutdown: {
      // Marked gone by an operator (or its machine is DOWN): the master has freed everything
      // here and will refuse this agent id, so nothing it runs may go on.
      LOG(ERROR) << "the master removed this agent: " << message.shutdown().message()
                 << "; killing every task. Restart the agent with an empty work dir to join "
                    "again as a new agent.";
      absl::btree_set<FrameworkId> frameworks;
      for (const auto& [key, record] : tasks_) {
        frameworks.insert(key.first);
      }
      for (const FrameworkId& framework_id : frameworks) {
        ShutdownFramework(framework_id);
      }
      break;
    }
    case rz::v1::MasterMessage::kFrameworkMessage:
      DeliverMessage(message.framework_message());
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
  const bool new_id = id_.value() != registered.agent_id();
  id_ = AgentId(registered.agent_id());
  registered_ = true;
  LOG(INFO) << "registered as agent " << id_ << " with master " << options_.master_address << " ("
            << tasks_.size() << " active tasks)";
  if (new_id) {
    rz::v1::AgentCheckpoint agent;
    *agent.mutable_info() = Info();
    CheckpointBatch batch;
    batch.PutAgent(agent);
    Persist(std::move(batch));
  }
  // Every unacknowledged head goes out again on the new stream; the old one may have lost it.
  for (auto& [key, record] : tasks_) {
    record.task.set_agent_id(id_.value());
    record.retry_backoff = options_.status_update_retry_initial;
    TransmitHead(key, record);
  }
}

// ---------------------------------------------------------------------------------------------
// Launching

absl::StatusOr<std::string> Agent::ResolveUser(const rz::v1::Task& task) const {
  if (!options_.can_switch_user) {
    if (!task.user().empty() && task.user() != options_.agent_user) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot run the task as user '", task.user(), "': this agent runs as '",
                       options_.agent_user, "' and cannot switch users"));
    }
    return std::string();
  }
  const std::string user = task.user().empty() ? options_.default_task_user : task.user();
  if (!options_.allow_root_tasks && (user == "root" || user == "0")) {
    return absl::PermissionDeniedError(
        "tasks may not run as root on this agent (see --allow_root_tasks)");
  }
  return user;
}

Agent::TaskRecord* Agent::AddTask(const rz::v1::FrameworkInfo& framework,
                                  const rz::v1::TaskInfo& task_info, const std::string& group_id) {
  const TaskKey key{FrameworkId(framework.id()), TaskId(task_info.task_id())};
  frameworks_[key.first] = framework;
  TaskRecord& record = tasks_[key];
  record.launch_id = next_launch_id_++;
  record.retry_backoff = options_.status_update_retry_initial;
  record.info = task_info;
  record.group_id = group_id;
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
  task.set_user(task_info.command().user().empty() ? framework.user() : task_info.command().user());
  *task.mutable_command() = task_info.command();
  *task.mutable_labels() = task_info.labels();
  task.set_group_id(group_id);
  return &record;
}

void Agent::RunTasks(const rz::v1::FrameworkInfo& framework,
                     const std::vector<const rz::v1::TaskInfo*>& tasks) {
  if (tasks.empty()) {
    LOG(WARNING) << "ignoring an empty task group of framework " << framework.id();
    return;
  }
  // A group is launched whole or not at all: any invalid member fails every member.
  std::string group_problem;
  std::set<std::string> ids;
  for (const rz::v1::TaskInfo* task_info : tasks) {
    const TaskKey key{FrameworkId(framework.id()), TaskId(task_info->task_id())};
    const bool unusable_ids =
        !IsSafePathComponent(framework.id()) || !IsSafePathComponent(task_info->task_id());
    if (unusable_ids || tasks_.contains(key) || !ids.insert(task_info->task_id()).second) {
      // Ids that cannot name a sandbox cannot be tracked (nor checkpointed) either.
      std::string problem;
      if (task_info->task_id().empty()) {
        problem = "task has no id";
      } else if (unusable_ids) {
        problem = !IsSafePathComponent(framework.id())
                      ? absl::StrCat("invalid framework id '", framework.id(), "'")
                      : absl::StrCat("invalid task id '", task_info->task_id(), "'");
      } else {
        problem = absl::StrCat("task '", task_info->task_id(), "' of framework '", framework.id(),
                               "' already exists on this agent");
      }
      SendUntrackedError(framework, *task_info, std::move(problem));
      if (tasks.size() > 1) {
        group_problem = absl::StrCat("task group member '", task_info->task_id(),
                                     "' has a missing or duplicate id");
      }
      continue;
    }
    if (std::string problem = ValidateTask(framework, *task_info);
        !problem.empty() && group_problem.empty() && tasks.size() > 1) {
      group_problem = absl::StrCat("task group member '", task_info->task_id(), "': ", problem);
    }
  }
  const std::string group_id = tasks.size() > 1 ? tasks.front()->task_id() : "";
  std::vector<TaskKey> launch;
  for (const rz::v1::TaskInfo* task_info : tasks) {
    const TaskKey key{FrameworkId(framework.id()), TaskId(task_info->task_id())};
    if (!IsSafePathComponent(framework.id()) || !IsSafePathComponent(task_info->task_id()) ||
        tasks_.contains(key)) {
      continue;  // Answered with an untracked error above.
    }
    TaskRecord& record = *AddTask(framework, *task_info, group_id);
    std::string problem = ValidateTask(framework, *task_info);
    if (problem.empty() && !group_problem.empty()) {
      problem = group_problem;
    }
    CheckpointBatch batch;
    batch.PutFramework(framework);
    if (!problem.empty()) {
      LOG(WARNING) << "rejecting task " << key.second << " of framework " << key.first << ": "
                   << problem;
      record.phase = Phase::kTerminal;
      Persist(std::move(batch));
      Update(record, rz::v1::TASK_ERROR, TaskStatus::REASON_TASK_INVALID, std::move(problem));
      continue;
    }
    Persist(std::move(batch));
    launch.push_back(key);
  }
  for (const TaskKey& key : launch) {
    TaskRecord& record = tasks_.at(key);
    if (record.phase != Phase::kLaunching) {
      continue;  // Killed with a group member that could not start.
    }
    absl::StatusOr<std::string> user = ResolveUser(record.task);
    if (!user.ok()) {
      record.phase = Phase::kTerminal;
      Update(record, rz::v1::TASK_FAILED, TaskStatus::REASON_CONTAINER_LAUNCH_FAILED,
             std::string(user.status().message()));
      if (!record.group_id.empty()) {
        KillGroup(key, TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED,
                  absl::StrCat("task group member '", key.second.value(), "' failed to start"));
      }
      continue;
    }
    record.container_id = NewUuid();
    Update(record, rz::v1::TASK_STARTING, TaskStatus::REASON_UNSPECIFIED, "");
    Launch(key, record, *std::move(user));
  }
}

void Agent::Launch(const TaskKey& key, TaskRecord& record, std::string user) {
  const rz::v1::TaskInfo& info = record.info;
  ContainerSpec spec{.container_id = record.container_id,
                     .group_id = record.group_id,
                     .framework_id = key.first,
                     .task_id = key.second,
                     .agent_id = id_,
                     .command = info.command(),
                     .container = info.container(),
                     .sandbox = SandboxDir(options_.work_dir, key.first, key.second),
                     .user = user,
                     .cpus = ScalarOf(info, "cpus"),
                     .mem_mb = ScalarOf(info, "mem"),
                     .environment = PortEnvironment(info)};
  if (auto it = info.limits().find("cpus"); it != info.limits().end()) {
    spec.cpus_limit = it->second;
  }
  if (auto it = info.limits().find("mem"); it != info.limits().end()) {
    spec.mem_limit_mb = it->second;
  }
  if (auto it = info.limits().find("pids"); it != info.limits().end()) {
    spec.pids_max = static_cast<uint64_t>(it->second);
  } else if (options_.default_pids_max > 0) {
    spec.pids_max = options_.default_pids_max;
  }
  const uint64_t launch_id = record.launch_id;
  run_blocking_([this, key, launch_id, spec = std::move(spec), cancelled = record.cancelled,
                 loop = &loop_, containerizer = &containerizer_, fetcher = fetcher_]() mutable {
    LaunchResult result;
    auto launch = [&]() -> absl::Status {
      if (cancelled->load()) {
        return absl::CancelledError("killed before it was started");
      }
      std::optional<std::pair<uid_t, gid_t>> owner;
      if (!spec.user.empty()) {
        absl::StatusOr<UserIds> ids = LookUpUser(spec.user);
        if (!ids.ok()) {
          return ids.status();
        }
        owner = std::make_pair(ids->uid, ids->gid);
        result.uid = ids->uid;
        result.gid = ids->gid;
      }
      if (absl::Status created = CreateSandbox(spec.sandbox); !created.ok()) {
        return created;
      }
      if (owner && ::chown(spec.sandbox.c_str(), owner->first, owner->second) != 0) {
        return absl::InternalError(absl::StrCat("cannot give the sandbox ", spec.sandbox,
                                                " to user '", spec.user,
                                                "': ", std::strerror(errno)));
      }
      if (fetcher != nullptr && spec.command.uris_size() > 0) {
        if (absl::Status fetched = fetcher->FetchAll(spec.command.uris(), spec.sandbox, owner);
            !fetched.ok()) {
          result.failure_reason = TaskStatus::REASON_FETCH_FAILED;
          return fetched;
        }
      }
      if (cancelled->load()) {
        return absl::CancelledError("killed before it was started");
      }
      absl::StatusOr<pid_t> pid =
          containerizer->Launch(spec, [this, key, launch_id, loop](Termination termination) {
            loop->Post([this, key, launch_id, termination = std::move(termination)] {
              OnExited(key, launch_id, termination);
            });
          });
      if (!pid.ok()) {
        return pid.status();
      }
      result.pid = *pid;
      result.container_id = spec.container_id;
      if (auto description = containerizer->Describe(spec.container_id)) {
        result.cgroups = std::move(description->cgroups);
      }
      return absl::OkStatus();
    };
    result.status = launch();
    loop->Post([this, key, launch_id, result = std::move(result)]() mutable {
      OnLaunched(key, launch_id, std::move(result));
    });
  });
}

void Agent::OnLaunched(const TaskKey& key, uint64_t launch_id, LaunchResult result) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr || record->phase == Phase::kTerminal) {
    // Killed while the worker was launching (and perhaps acknowledged and retired already):
    // the container must not live on.
    if (result.status.ok()) {
      LOG(INFO) << "task " << key.second << " was killed during launch; destroying its container";
      if (record != nullptr) {
        record->container_running = true;
      }
      run_blocking_([containerizer = &containerizer_, id = result.container_id] {
        if (absl::Status killed = containerizer->Kill(id, SIGKILL); !killed.ok()) {
          VLOG(1) << "killing container " << id << ": " << killed;
        }
      });
    }
    return;
  }
  if (!result.status.ok()) {
    LOG(WARNING) << "cannot launch task " << key.second << ": " << result.status;
    record->phase = Phase::kTerminal;
    const bool fetch = result.failure_reason == TaskStatus::REASON_FETCH_FAILED;
    Update(*record, rz::v1::TASK_FAILED, result.failure_reason,
           absl::StrCat(fetch ? "cannot fetch the task's URIs: " : "cannot launch task: ",
                        result.status.message()));
    if (!record->group_id.empty()) {
      KillGroup(key, TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED,
                absl::StrCat("task group member '", key.second.value(), "' failed to start"));
    }
    MarkDirty();
    return;
  }
  record->container_running = true;
  record->pid = result.pid;
  record->uid = result.uid;
  record->gid = result.gid;
  record->cgroups = std::move(result.cgroups);
  record->container_start_time = ToSeconds(loop_.clock().Now());
  if (record->phase == Phase::kKilling) {
    return;  // A kill arrived meanwhile; SignalContainer() already went out.
  }
  record->phase = Phase::kRunning;
  Update(*record, rz::v1::TASK_RUNNING, TaskStatus::REASON_UNSPECIFIED, "");
  if (record->early_exit.has_value()) {
    HandleExit(key, *record, *record->early_exit);
  } else {
    StartHealthCheck(key, *record);
  }
  MarkDirty();
}

void Agent::OnExited(const TaskKey& key, uint64_t launch_id, Termination termination) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr) {
    VLOG(1) << "exit of completed task " << key.second;
    return;
  }
  if (record->phase == Phase::kLaunching) {
    record->early_exit = std::move(termination);  // Reported once the launch result arrives.
    return;
  }
  HandleExit(key, *record, termination);
  MarkDirty();
}

void Agent::HandleExit(const TaskKey& key, TaskRecord& record, const Termination& termination) {
  record.container_running = false;
  record.health_checker.reset();
  loop_.CancelTimer(record.escalation_timer);
  record.escalation_timer = 0;
  const std::optional<int> wait_status = termination.wait_status;
  std::string description =
      wait_status ? DescribeExit(*wait_status) : std::string("exit status unknown");
  if (!termination.message.empty()) {
    description = absl::StrCat(termination.message, " (", description, ")");
  }
  LOG(INFO) << "task '" << record.task.task_id() << "' of framework '" << record.task.framework_id()
            << "': " << description;
  const Phase phase = record.phase;
  if (phase == Phase::kTerminal) {
    return;  // Killed during launch; already reported.
  }
  record.phase = Phase::kTerminal;
  bool failed = false;
  if (termination.reason == TaskStatus::REASON_AGENT_REBOOTED) {
    Update(record, rz::v1::TASK_GONE, termination.reason, termination.message);
    failed = true;
  } else if (termination.reason == TaskStatus::REASON_CONTAINER_RECOVERY_FAILED) {
    Update(record, rz::v1::TASK_FAILED, termination.reason, termination.message);
    failed = true;
  } else if (termination.limitation) {
    Update(record, rz::v1::TASK_FAILED, termination.reason, description, wait_status);
    failed = true;
  } else if (record.kill_reason.has_value()) {
    // The agent killed the task itself (failed health check, a failed group member).
    const bool health = *record.kill_reason == TaskStatus::REASON_HEALTH_CHECK_FAILED;
    Update(record, health ? rz::v1::TASK_FAILED : rz::v1::TASK_KILLED, *record.kill_reason,
           absl::StrCat(record.kill_message, "; ", description), wait_status);
    failed = health;
  } else if (phase == Phase::kKilling) {
    // Whatever the exit code, a task that was asked to die was killed.
    Update(record, rz::v1::TASK_KILLED, TaskStatus::REASON_KILLED_BY_REQUEST,
           absl::StrCat("task killed: ", description), wait_status);
  } else if (wait_status && *wait_status == 0) {
    Update(record, rz::v1::TASK_FINISHED, TaskStatus::REASON_COMMAND_EXITED, description,
           wait_status);
  } else {
    Update(record, rz::v1::TASK_FAILED, TaskStatus::REASON_COMMAND_EXITED, description,
           wait_status);
    failed = true;
  }
  if (failed && !record.group_id.empty()) {
    KillGroup(key, TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED,
              absl::StrCat("task group member '", key.second.value(), "' failed"));
  }
}

// ---------------------------------------------------------------------------------------------
// Health checks

void Agent::StartHealthCheck(const TaskKey& key, TaskRecord& record) {
  if (!record.info.has_health_check() || record.phase != Phase::kRunning) {
    return;
  }
  HealthChecker::Target target;
  target.sandbox = SandboxDir(options_.work_dir, key.first, key.second);
  for (const auto& variable : record.info.command().environment().variables()) {
    target.environment.push_back(absl::StrCat(variable.name(), "=", variable.value()));
  }
  target.environment.push_back(absl::StrCat("RZ_SANDBOX=", target.sandbox));
  target.environment.push_back(absl::StrCat("RZ_TASK_ID=", key.second.value()));
  for (const auto& [name, value] : PortEnvironment(record.info)) {
    target.environment.push_back(absl::StrCat(name, "=", value));
  }
  target.uid = record.uid;
  target.gid = record.gid;
  record.health_checker = std::make_unique<HealthChecker>(
      loop_, run_blocking_, record.info.health_check(), std::move(target),
      [this, key, launch_id = record.launch_id](const HealthResult& result) {
        OnHealthResult(key, launch_id, result);
      });
  record.health_checker->Start();
}

void Agent::OnHealthResult(const TaskKey& key, uint64_t launch_id, const HealthResult& result) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  // A KILLING or ended task never goes back to RUNNING.
  if (record == nullptr || record->phase != Phase::kRunning) {
    return;
  }
  record->healthy = result.healthy;
  Update(*record, rz::v1::TASK_RUNNING, TaskStatus::REASON_TASK_HEALTH_CHECK_STATUS_UPDATED,
         result.message, std::nullopt, result.healthy);
  if (result.kill) {
    LOG(INFO) << "task " << key.second << " failed " << result.consecutive_failures
              << " health checks in a row; killing it";
    record->kill_reason = TaskStatus::REASON_HEALTH_CHECK_FAILED;
    record->kill_message = absl::StrCat("health check failed ", result.consecutive_failures,
                                        " times in a row: ", result.message);
    KillTask(key, nullptr);
  }
  MarkDirty();
}

// ---------------------------------------------------------------------------------------------
// Killing

void Agent::SignalContainer(const TaskRecord& record, int signal) {
  if (record.container_id.empty()) {
    return;
  }
  run_blocking_([containerizer = &containerizer_, id = record.container_id, signal] {
    if (absl::Status sent = containerizer->Kill(id, signal); !sent.ok()) {
      VLOG(1) << "signal " << signal << " to container " << id << ": " << sent;  // Exiting.
    }
  });
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
      Update(record, rz::v1::TASK_KILLED,
             record.kill_reason.value_or(TaskStatus::REASON_TASK_KILLED_DURING_LAUNCH),
             record.kill_message.empty() ? "task killed before it started" : record.kill_message);
      break;
    case Phase::kRunning: {
      absl::Duration grace = options_.default_kill_grace_period;
      if (policy != nullptr && policy->has_grace_period_seconds()) {
        grace = absl::Seconds(policy->grace_period_seconds());
      } else if (record.info.kill_policy().has_grace_period_seconds()) {
        grace = absl::Seconds(record.info.kill_policy().grace_period_seconds());
      }
      grace = std::max(grace, absl::ZeroDuration());
      record.phase = Phase::kKilling;
      record.health_checker.reset();
      Update(record, rz::v1::TASK_KILLING, TaskStatus::REASON_UNSPECIFIED,
             absl::StrCat("sending SIGTERM; SIGKILL after ", absl::FormatDuration(grace)));
      if (record.container_running) {
        SignalContainer(record, SIGTERM);
      }
      record.escalation_timer = loop_.PostAfter(
          grace, [this, key, launch_id = record.launch_id] { OnGracePeriodOver(key, launch_id); });
      break;
    }
    case Phase::kKilling:
    case Phase::kTerminal:
      LOG(INFO) << "task " << key.second << " is already being killed or has ended";
      return;
  }
  // Killing one task of a group kills the group.
  if (!record.group_id.empty() && !record.kill_reason.has_value()) {
    KillGroup(key, TaskStatus::REASON_KILLED_BY_REQUEST,
              absl::StrCat("task group member '", key.second.value(), "' was killed"));
  }
}

void Agent::KillGroup(const TaskKey& key, TaskStatus::Reason reason, const std::string& why) {
  const std::string group_id = tasks_.at(key).group_id;
  std::vector<TaskKey> members;
  for (auto& [other_key, other] : tasks_) {
    if (other_key != key && other_key.first == key.first && other.group_id == group_id &&
        (other.phase == Phase::kLaunching || other.phase == Phase::kRunning)) {
      members.push_back(other_key);
    }
  }
  for (const TaskKey& member : members) {
    TaskRecord& other = tasks_.at(member);
    other.kill_reason = reason;
    other.kill_message = why;
    KillTask(member, nullptr);
  }
}

void Agent::OnGracePeriodOver(const TaskKey& key, uint64_t launch_id) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr || record->phase != Phase::kKilling || !record->container_running) {
    return;
  }
  record->escalation_timer = 0;
  LOG(INFO) << "task " << key.second << " outlived its kill grace period; killing its container";
  SignalContainer(*record, SIGKILL);
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

// ---------------------------------------------------------------------------------------------
// Status updates

void Agent::DeliverMessage(const rz::v1::MasterMessage::FrameworkMessage& message) {
  const TaskKey key(FrameworkId(message.framework_id()), TaskId(message.task_id()));
  auto it = tasks_.find(key);
  if (it == tasks_.end() || it->second.phase == Phase::kTerminal) {
    LOG(WARNING) << "dropping a message for task '" << message.task_id() << "' of framework '"
                 << message.framework_id() << "': not running here";
    return;
  }
  const TaskRecord& record = it->second;
  const int uid = record.uid.has_value() ? static_cast<int>(*record.uid) : -1;
  const int gid = record.gid.has_value() ? static_cast<int>(*record.gid) : -1;
  run_blocking_([sandbox = SandboxDir(options_.work_dir, key.first, key.second),
                 data = message.data(), uid, gid, task_id = message.task_id()] {
    if (absl::Status status = AppendMessage(sandbox, data, uid, gid); !status.ok()) {
      LOG(WARNING) << "message for task '" << task_id << "' not delivered: " << status.message();
    }
  });
}

void Agent::Acknowledge(const rz::v1::MasterMessage::Acknowledge& ack) {
  const TaskKey key{FrameworkId(ack.framework_id()), TaskId(ack.task_id())};
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    LOG(INFO) << "ignoring acknowledgement for unknown task " << key.second;
    return;
  }
  TaskRecord& record = it->second;
  if (record.unacknowledged.empty() || record.unacknowledged.front().status.uuid() != ack.uuid()) {
    LOG(INFO) << "ignoring stale acknowledgement " << UuidToString(ack.uuid()) << " for task "
              << key.second;
    return;
  }
  const PendingUpdate acked = std::move(record.unacknowledged.front());
  record.unacknowledged.pop_front();
  record.task.set_acknowledged_state(acked.status.state());
  loop_.CancelTimer(record.retry_timer);
  record.retry_timer = 0;
  record.retry_backoff = options_.status_update_retry_initial;
  if (record.unacknowledged.empty() && record.phase == Phase::kTerminal &&
      IsTerminal(record.task.state())) {
    CompleteTask(key);
    return;
  }
  CheckpointBatch batch;
  batch.RemoveUpdate(key.first, key.second, acked.sequence);
  batch.PutTask(CheckpointOf(record));
  Persist(std::move(batch));
  TransmitHead(key, record);
}

rz::v1::TaskCheckpoint Agent::CheckpointOf(const TaskRecord& record) const {
  rz::v1::TaskCheckpoint checkpoint;
  *checkpoint.mutable_task() = record.task;
  checkpoint.mutable_task()->clear_statistics();
  *checkpoint.mutable_info() = record.info;
  checkpoint.set_container_id(record.container_id);
  checkpoint.set_group_id(record.group_id);
  return checkpoint;
}

void Agent::Persist(CheckpointBatch batch, absl::AnyInvocable<void() &&> on_durable) {
  checkpoint_(std::move(batch), [this, alive = std::weak_ptr<bool>(alive_), loop = &loop_,
                                 on_durable = std::move(on_durable)](absl::Status status) mutable {
    if (!status.ok()) {
      // Forwarding beats losing the update: the master still learns of it, but an agent crash
      // now could lose it.
      LOG(ERROR) << "checkpoint write failed: " << status;
    }
    if (on_durable == nullptr) {
      return;
    }
    loop->Post([alive, on_durable = std::move(on_durable)]() mutable {
      if (alive.lock()) {
        std::move(on_durable)();
      }
    });
  });
}

void Agent::Update(TaskRecord& record, rz::v1::TaskState state, TaskStatus::Reason reason,
                   std::string message, std::optional<int> exit_status,
                   std::optional<bool> healthy) {
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
  if (healthy.has_value()) {
    status.set_healthy(*healthy);
  } else if (record.healthy.has_value() && state == rz::v1::TASK_RUNNING) {
    status.set_healthy(*record.healthy);
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
  const uint64_t sequence = next_sequence_++;
  CheckpointBatch batch;
  batch.PutTask(CheckpointOf(record));
  batch.AppendUpdate(key.first, key.second, sequence, status);
  record.unacknowledged.push_back({.sequence = sequence, .durable = false, .status = status});
  Persist(std::move(batch), [this, key, launch_id = record.launch_id, sequence] {
    OnDurable(key, launch_id, sequence);
  });
  MarkDirty();
}

void Agent::OnDurable(const TaskKey& key, uint64_t launch_id, uint64_t sequence) {
  DCHECK(loop_.IsLoopThread());
  TaskRecord* record = Find(key, launch_id);
  if (record == nullptr) {
    return;
  }
  for (PendingUpdate& update : record->unacknowledged) {
    if (update.sequence == sequence) {
      update.durable = true;
    }
  }
  if (!record->unacknowledged.empty() && record->unacknowledged.front().sequence == sequence &&
      record->retry_timer == 0) {
    record->retry_backoff = options_.status_update_retry_initial;
    TransmitHead(key, *record);
  }
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
  if (!registered_ || record.unacknowledged.empty() || !record.unacknowledged.front().durable) {
    return;  // Sent after the next registration, or once its checkpoint is durable.
  }
  rz::v1::AgentMessage message;
  *message.mutable_status_update()->mutable_status() = record.unacknowledged.front().status;
  message.mutable_status_update()->mutable_status()->set_agent_id(id_.value());
  master_.Send(std::move(message));
  record.retry_timer = loop_.PostAfter(
      record.retry_backoff,
      [this, key, uuid = record.unacknowledged.front().status.uuid()] { OnRetryTimer(key, uuid); });
}

void Agent::OnRetryTimer(const TaskKey& key, const std::string& uuid) {
  DCHECK(loop_.IsLoopThread());
  auto it = tasks_.find(key);
  if (it == tasks_.end()) {
    return;
  }
  TaskRecord& record = it->second;
  record.retry_timer = 0;
  if (record.unacknowledged.empty() || record.unacknowledged.front().status.uuid() != uuid) {
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
  record.health_checker.reset();
  if (record.container_running) {
    // Killed during launch and started anyway; SIGKILL went out, its exit is not reported.
    VLOG(1) << "task " << key.second << " completes before its container was destroyed";
  }
  if (gc_ != nullptr) {
    gc_->Schedule(SandboxDir(options_.work_dir, key.first, key.second), loop_.clock().Now());
  }
  record.task.clear_statistics();
  completed_tasks_.push_back(std::move(record.task));
  while (completed_tasks_.size() > options_.max_completed_tasks) {
    completed_tasks_.pop_front();
  }
  tasks_.erase(it);
  CheckpointBatch batch;
  batch.DeleteTask(key.first, key.second);
  const bool framework_active = std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& entry) {
    return entry.first.first == key.first;
  });
  if (!framework_active) {
    frameworks_.erase(key.first);
    shut_down_frameworks_.erase(key.first);
    batch.DeleteFramework(key.first);
  }
  Persist(std::move(batch));
  MarkDirty();
}

// ---------------------------------------------------------------------------------------------
// Usage

void Agent::SampleUsage() {
  DCHECK(loop_.IsLoopThread());
  usage_timer_ = loop_.PostAfter(options_.usage_interval, [this] { SampleUsage(); });
  if (usage_in_flight_) {
    return;  // The previous sample is still being read.
  }
  std::vector<std::pair<TaskKey, std::string>> containers;
  for (const auto& [key, record] : tasks_) {
    if (record.container_running) {
      containers.emplace_back(key, record.container_id);
    }
  }
  usage_in_flight_ = true;
  run_blocking_([this, containers = std::move(containers), loop = &loop_,
                 containerizer = &containerizer_]() mutable {
    std::vector<std::pair<TaskKey, absl::StatusOr<rz::v1::ResourceStatistics>>> usage;
    usage.reserve(containers.size());
    for (auto& [key, container_id] : containers) {
      usage.emplace_back(key, containerizer->Usage(container_id));
    }
    loop->Post([this, usage = std::move(usage)]() mutable { OnUsage(std::move(usage)); });
  });
}

void Agent::OnUsage(
    std::vector<std::pair<TaskKey, absl::StatusOr<rz::v1::ResourceStatistics>>> usage) {
  DCHECK(loop_.IsLoopThread());
  usage_in_flight_ = false;
  rz::v1::AgentMessage message;
  rz::v1::AgentMessage::Usage* report = message.mutable_usage();
  rz::v1::ResourceStatistics total;
  const double now = ToSeconds(loop_.clock().Now());
  for (auto& [key, statistics] : usage) {
    auto it = tasks_.find(key);
    if (it == tasks_.end() || !statistics.ok()) {
      continue;
    }
    statistics->set_timestamp(now);
    it->second.statistics = *statistics;
    AddStatistics(total, *statistics);
    rz::v1::AgentMessage::Usage::TaskUsage* task = report->add_tasks();
    task->set_framework_id(key.first.value());
    task->set_task_id(key.second.value());
    *task->mutable_statistics() = *statistics;
  }
  total.set_timestamp(now);
  usage_total_ = total;
  *report->mutable_total() = total;
  if (registered_) {
    master_.Send(std::move(message));
  }
  MarkDirty();
}

// ---------------------------------------------------------------------------------------------
// State

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
  state->set_recovering(recovering_);
  for (const auto& [key, record] : tasks_) {
    rz::v1::Task* task = state->add_tasks();
    *task = record.task;
    *task->mutable_statistics() = record.statistics;
    if (!record.container_running) {
      continue;
    }
    rz::v1::ContainerState* container = state->add_containers();
    container->set_container_id(record.container_id);
    container->set_framework_id(key.first.value());
    container->set_task_id(key.second.value());
    container->set_executor_pid(absl::StrCat(record.pid));
    for (const std::string& cgroup : record.cgroups) {
      container->add_cgroups(cgroup);
    }
    container->set_sandbox(SandboxDir(options_.work_dir, key.first, key.second));
    *container->mutable_statistics() = record.statistics;
    container->set_start_time(record.container_start_time);
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
