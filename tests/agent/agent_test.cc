// The agent's state machine on a ManualEventLoop with fakes: a containerizer the test drives, a
// checkpoint writer that holds writes until the test releases them (and then applies them to a
// real CheckpointStore, so a test can read back what is durable), a master connection that
// records what is sent, and a blocking runner that queues jobs until the test runs them.
#include "agent/agent.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "agent/checkpoint_store.h"
#include "agent/containerizer/containerizer.h"
#include "agent/fetcher.h"
#include "common/random_id.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/manual_event_loop.h"

namespace rz::agent {
namespace {

using ::rz::v1::AgentMessage;
using ::rz::v1::MasterMessage;
using ::rz::v1::TaskStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::SizeIs;

constexpr char kFramework[] = "fw1";

// ---------------------------------------------------------------------------------------------
// Fakes

class FakeMasterConnection final : public MasterConnection {
 public:
  void Send(AgentMessage message) override { sent_.push_back(std::move(message)); }

  std::vector<AgentMessage> Take() { return std::exchange(sent_, {}); }

  // The status updates among the messages sent since the last Take*().
  std::vector<TaskStatus> TakeUpdates() {
    std::vector<TaskStatus> updates;
    for (const AgentMessage& message : Take()) {
      if (message.has_status_update()) {
        updates.push_back(message.status_update().status());
      }
    }
    return updates;
  }

 private:
  std::vector<AgentMessage> sent_;
};

// A container that ended on its own with exit code `code`, or by `signal`.
Termination Exited(int code) { return Termination{.wait_status = code << 8}; }
Termination Signaled(int signal) { return Termination{.wait_status = signal}; }

// Records the containers the agent starts; the test reports their exits. Every call comes from
// the test thread (jobs run when the test says so), so it needs no lock.
class FakeContainerizer final : public Containerizer {
 public:
  absl::StatusOr<pid_t> Launch(const ContainerSpec& spec, ExitCallback on_exit) override {
    if (during_launch_) {
      std::exchange(during_launch_, nullptr)();
    }
    if (!fail_with_.ok()) {
      return fail_with_;
    }
    launched_.push_back(spec.container_id);
    specs_.emplace(spec.container_id, spec);
    exits_.emplace(spec.container_id, std::move(on_exit));
    return next_pid_++;
  }

  absl::Status Kill(const std::string& container_id, int signal) override {
    kills_.emplace_back(container_id, signal);
    return exits_.contains(container_id)
               ? absl::OkStatus()
               : absl::NotFoundError(absl::StrCat("container '", container_id, "' is gone"));
  }

  absl::StatusOr<rz::v1::ResourceStatistics> Usage(const std::string& container_id) override {
    ++usage_calls_;
    if (!exits_.contains(container_id)) {
      return absl::NotFoundError(absl::StrCat("container '", container_id, "' is gone"));
    }
    return usage_;
  }

  absl::StatusOr<std::map<std::string, RecoveredContainer>> Recover(
      const std::set<std::string>& /*known*/,
      const std::function<ExitCallback(const std::string&)>& /*make_callback*/) override {
    return std::map<std::string, RecoveredContainer>();
  }

  std::optional<Description> Describe(const std::string& container_id) override {
    if (!exits_.contains(container_id)) {
      return std::nullopt;
    }
    return Description{.pid = 0, .cgroups = {"memory/rz/" + container_id}};
  }

  // Watches a container that survived an agent restart; `on_exit` is the agent's
  // ExitCallbackFor() the way Recover() would get it.
  void Adopt(const std::string& container_id, ExitCallback on_exit) {
    exits_.emplace(container_id, std::move(on_exit));
  }

  // Reports the end of `container_id` the way the containerizer's cleanup thread would.
  void Exit(const std::string& container_id, Termination termination) {
    auto it = exits_.find(container_id);
    if (it == exits_.end()) {
      ADD_FAILURE() << "no running container '" << container_id << "'";
      return;
    }
    ExitCallback on_exit = std::move(it->second);
    exits_.erase(it);
    std::move(on_exit)(std::move(termination));
  }

  void FailLaunchWith(absl::Status status) { fail_with_ = std::move(status); }
  // Runs `event` once, inside the next Launch(): what the loop does while a worker launches.
  void DuringNextLaunch(std::function<void()> event) { during_launch_ = std::move(event); }
  void SetUsage(rz::v1::ResourceStatistics usage) { usage_ = std::move(usage); }

  int launches() const { return static_cast<int>(launched_.size()); }
  // Container ids in launch order.
  const std::vector<std::string>& launched() const { return launched_; }
  const std::string& last() const { return launched_.back(); }
  const ContainerSpec& spec(const std::string& container_id) const {
    return specs_.at(container_id);
  }
  // The container of the task `task_id`, or "" if none was launched.
  std::string ContainerOf(const std::string& task_id) const {
    for (const auto& [container_id, spec] : specs_) {
      if (spec.task_id == TaskId(task_id)) {
        return container_id;
      }
    }
    return "";
  }
  const std::vector<std::pair<std::string, int>>& kills() const { return kills_; }
  int usage_calls() const { return usage_calls_; }

 private:
  absl::Status fail_with_;
  std::function<void()> during_launch_;
  pid_t next_pid_ = 1000;
  std::vector<std::string> launched_;
  std::map<std::string, ContainerSpec> specs_;
  std::map<std::string, ExitCallback> exits_;
  std::vector<std::pair<std::string, int>> kills_;
  rz::v1::ResourceStatistics usage_;
  int usage_calls_ = 0;
};

// The agent's CheckpointWriter. Batches wait (their `done` uncalled) until the test calls
// ReleaseCheckpoints(), unless Hold(false); released batches are written, in order, to a real
// CheckpointStore, whose contents Load() returns the way a restarted agent would read them.
class FakeCheckpointWriter {
 public:
  explicit FakeCheckpointWriter(std::string dir) : dir_(std::move(dir)) { Open(); }

  CheckpointWriter AsWriter() {
    return [this](CheckpointBatch batch, absl::AnyInvocable<void(absl::Status) &&> done) {
      if (!batch.status().ok()) {
        ++invalid_batches_;
        EXPECT_TRUE(tolerate_invalid_) << "the agent wrote an invalid batch: " << batch.status();
      }
      pending_.push_back({std::move(batch), std::move(done)});
      ++writes_;
      if (!hold_) {
        ReleaseCheckpoints();
      }
    };
  }

  // With `hold`, batches wait for ReleaseCheckpoints(); without, they complete at once.
  void Hold(bool hold) { hold_ = hold; }

  // Invalid batches (which the store rejects whole) are counted, not test failures.
  void TolerateInvalidBatches() { tolerate_invalid_ = true; }
  int invalid_batches() const { return invalid_batches_; }

  // Later writes fail with `status` (nothing is written); OK writes again.
  void FailWith(absl::Status status) { fail_with_ = std::move(status); }

  // Makes every waiting batch durable, in order, and calls its `done`. Returns how many.
  int ReleaseCheckpoints() {
    struct Result {
      absl::Status status;
      absl::Notification written;
    };
    std::deque<Pending> pending = std::exchange(pending_, {});
    std::vector<std::shared_ptr<Result>> results;
    for (Pending& write : pending) {
      auto result = std::make_shared<Result>();
      results.push_back(result);
      if (fail_with_.ok()) {
        store_->Write(std::move(write.batch), [result](absl::Status status) {
          result->status = std::move(status);
          result->written.Notify();
        });
      } else {
        result->status = fail_with_;
        result->written.Notify();
      }
    }
    for (size_t i = 0; i < pending.size(); ++i) {
      results[i]->written.WaitForNotification();
      if (fail_with_.ok() && !tolerate_invalid_) {
        EXPECT_TRUE(results[i]->status.ok()) << results[i]->status;
      }
      std::move(pending[i].done)(results[i]->status);
    }
    return static_cast<int>(pending.size());
  }

  // Forgets the batches still waiting: what an agent crash does to writes not yet durable.
  void DropPending() { pending_.clear(); }

  int waiting() const { return static_cast<int>(pending_.size()); }
  int writes() const { return writes_; }

  // Everything durable so far, read back by a freshly opened store.
  Recovered Load() {
    store_.reset();
    Open();
    absl::StatusOr<Recovered> recovered = store_->Load();
    EXPECT_TRUE(recovered.ok()) << recovered.status();
    return recovered.ok() ? *std::move(recovered) : Recovered();
  }

 private:
  struct Pending {
    CheckpointBatch batch;
    absl::AnyInvocable<void(absl::Status) &&> done;
  };

  void Open() {
    absl::StatusOr<std::unique_ptr<CheckpointStore>> store =
        CheckpointStore::Open(dir_, {.sync = false});
    CHECK(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  const std::string dir_;
  std::unique_ptr<CheckpointStore> store_;
  std::deque<Pending> pending_;
  bool hold_ = false;
  bool tolerate_invalid_ = false;
  int invalid_batches_ = 0;
  absl::Status fail_with_;
  int writes_ = 0;
};

// A directory under the test temp dir, removed with everything in it.
class ScopedDir {
 public:
  ScopedDir() {
    static int counter = 0;
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("agent_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScopedDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  ScopedDir(const ScopedDir&) = delete;
  ScopedDir& operator=(const ScopedDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// Messages

MasterMessage Registered(const std::string& agent_id) {
  MasterMessage message;
  message.mutable_registered()->set_agent_id(agent_id);
  return message;
}

rz::v1::TaskInfo TaskInfoOf(const std::string& task_id, const std::string& command = "true") {
  rz::v1::TaskInfo task;
  task.set_task_id(task_id);
  task.set_name("task " + task_id);
  task.mutable_command()->set_shell(true);
  task.mutable_command()->set_value(command);
  return task;
}

rz::v1::FrameworkInfo FrameworkOf(const std::string& framework_id) {
  rz::v1::FrameworkInfo framework;
  framework.set_id(framework_id);
  framework.set_name("test framework");
  return framework;
}

MasterMessage RunTaskMessage(const std::string& task_id,
                             const std::string& framework_id = kFramework) {
  MasterMessage message;
  *message.mutable_run_task()->mutable_framework() = FrameworkOf(framework_id);
  *message.mutable_run_task()->mutable_task() = TaskInfoOf(task_id);
  return message;
}

MasterMessage RunTaskGroupMessage(const std::vector<std::string>& task_ids) {
  MasterMessage message;
  *message.mutable_run_task_group()->mutable_framework() = FrameworkOf(kFramework);
  for (const std::string& task_id : task_ids) {
    *message.mutable_run_task_group()->add_tasks() = TaskInfoOf(task_id);
  }
  return message;
}

MasterMessage KillMessage(const std::string& task_id, std::optional<double> grace = std::nullopt) {
  MasterMessage message;
  message.mutable_kill_task()->set_framework_id(kFramework);
  message.mutable_kill_task()->set_task_id(task_id);
  if (grace.has_value()) {
    message.mutable_kill_task()->mutable_kill_policy()->set_grace_period_seconds(*grace);
  }
  return message;
}

MasterMessage AckMessage(const TaskStatus& status) {
  MasterMessage message;
  message.mutable_acknowledge()->set_framework_id(status.framework_id());
  message.mutable_acknowledge()->set_task_id(status.task_id());
  message.mutable_acknowledge()->set_uuid(status.uuid());
  return message;
}

std::vector<rz::v1::TaskState> States(const std::vector<TaskStatus>& updates) {
  std::vector<rz::v1::TaskState> states;
  for (const TaskStatus& update : updates) {
    states.push_back(update.state());
  }
  return states;
}

// The updates of `task_id` among `updates`.
std::vector<TaskStatus> Of(const std::vector<TaskStatus>& updates, const std::string& task_id) {
  std::vector<TaskStatus> of;
  for (const TaskStatus& update : updates) {
    if (update.task_id() == task_id) {
      of.push_back(update);
    }
  }
  return of;
}

// ---------------------------------------------------------------------------------------------
// Fixtures

// One agent "process" and everything it talks to. StartAgent() replaces the agent (and its
// loop, containerizer and master link) the way a restart would, keeping the work dir and
// whatever the checkpoint made durable.
class AgentTestBase : public ::testing::Test {
 protected:
  AgentTestBase() : checkpoints_(work_dir_.path() + "/meta") {}

  static AgentOptions DefaultOptions() {
    AgentOptions options;
    options.hostname = "agent.example";
    options.http_address = "http://agent.example:5081";
    options.master_address = "master.example:5050";
    options.resources = *Resources::Parse("cpus:2;mem:1024");
    options.version = "test";
    options.default_kill_grace_period = absl::Seconds(3);
    options.usage_interval = absl::ZeroDuration();  // No timers unless a test wants them.
    return options;
  }

  // Starts a new agent; the test then calls StartFresh() or Recover().
  void StartAgent(AgentOptions options, Fetcher* fetcher = nullptr) {
    agent_.reset();
    // What the old agent left in flight dies with it.
    jobs_.clear();
    checkpoints_.DropPending();
    loop_ = std::make_unique<testing::ManualEventLoop>();
    containerizer_ = std::make_unique<FakeContainerizer>();
    master_ = std::make_unique<FakeMasterConnection>();
    snapshot_ = std::make_unique<StateSnapshot>();
    options.work_dir = work_dir_.path();
    options_ = options;
    agent_ = std::make_unique<Agent>(
        options, *loop_, *containerizer_,
        [this](absl::AnyInvocable<void() &&> job) {
          if (inline_jobs_) {
            std::move(job)();
          } else {
            jobs_.push_back(std::move(job));
          }
        },
        checkpoints_.AsWriter(), *master_, *snapshot_, fetcher);
    agent_->Start();
  }

  void StartFreshAgent(AgentOptions options = DefaultOptions(), Fetcher* fetcher = nullptr) {
    StartAgent(std::move(options), fetcher);
    agent_->StartFresh();
    loop_->RunUntilIdle();
  }

  // Opens a stream and completes the registration as agent "a1".
  void Register() {
    agent_->OnMasterConnected();
    agent_->OnMasterMessage(Registered("a1"));
    loop_->RunUntilIdle();
    master_->Take();
  }

  void Deliver(const MasterMessage& message) {
    agent_->OnMasterMessage(message);
    loop_->RunUntilIdle();
  }

  // Runs the jobs handed to the worker pool (and the jobs they queue), then what they posted.
  void RunJobs() {
    while (!jobs_.empty()) {
      absl::AnyInvocable<void()&&> job = std::move(jobs_.front());
      jobs_.pop_front();
      std::move(job)();
      loop_->RunUntilIdle();
    }
    loop_->RunUntilIdle();
  }

  // Runs the next queued job only; what it posts stays queued on the loop.
  void RunOneJob() {
    ASSERT_FALSE(jobs_.empty());
    absl::AnyInvocable<void()&&> job = std::move(jobs_.front());
    jobs_.pop_front();
    std::move(job)();
  }

  // Kills `task_id` and runs the job that signals its container.
  void Kill(const std::string& task_id, std::optional<double> grace = std::nullopt) {
    Deliver(KillMessage(task_id, grace));
    RunJobs();
  }

  void AdvanceTime(absl::Duration d) {
    loop_->AdvanceTime(d);
    RunJobs();
  }

  void Exit(const std::string& container_id, Termination termination) {
    containerizer_->Exit(container_id, std::move(termination));
    loop_->RunUntilIdle();
  }

  // Expects exactly one update in flight and acknowledges it. Returns it.
  TaskStatus AckOnly() {
    std::vector<TaskStatus> updates = master_->TakeUpdates();
    EXPECT_THAT(updates, SizeIs(1));
    if (updates.empty()) {
      return TaskStatus();
    }
    Deliver(AckMessage(updates.back()));
    return updates.back();
  }

  // Acknowledges every update sent, and every update that sends in turn, until none is in
  // flight. Returns them in the order sent.
  std::vector<TaskStatus> AckAll() {
    std::vector<TaskStatus> all;
    for (std::vector<TaskStatus> sent = master_->TakeUpdates(); !sent.empty();
         sent = master_->TakeUpdates()) {
      for (const TaskStatus& update : sent) {
        all.push_back(update);
        Deliver(AckMessage(update));
      }
    }
    return all;
  }

  // Launches `task_id` and acknowledges STARTING and RUNNING. Returns its container id.
  std::string StartRunningTask(const std::string& task_id) {
    Deliver(RunTaskMessage(task_id));
    RunJobs();
    EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
    EXPECT_EQ(AckOnly().state(), rz::v1::TASK_RUNNING);
    return containerizer_->ContainerOf(task_id);
  }

  std::shared_ptr<const rz::v1::AgentStateResponse> State() { return snapshot_->Get(); }

  // Declared first: removed last, after the store is closed.
  ScopedDir work_dir_;
  FakeCheckpointWriter checkpoints_;
  AgentOptions options_;
  bool inline_jobs_ = false;
  std::deque<absl::AnyInvocable<void() &&>> jobs_;
  std::unique_ptr<testing::ManualEventLoop> loop_;
  std::unique_ptr<FakeContainerizer> containerizer_;
  std::unique_ptr<FakeMasterConnection> master_;
  std::unique_ptr<StateSnapshot> snapshot_;
  std::unique_ptr<Agent> agent_;  // Last: destroyed before what it references.
};

// An agent without a checkpoint.
class AgentTest : public AgentTestBase {
 protected:
  AgentTest() { StartFreshAgent(); }
};

// ---------------------------------------------------------------------------------------------
// Registration and the status update protocol

TEST_F(AgentTest, FirstConnectionSendsRegisterWithoutIdOrTasks) {
  agent_->OnMasterConnected();
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  ASSERT_TRUE(sent[0].has_register_());
  EXPECT_EQ(sent[0].register_().info().id(), "");
  EXPECT_EQ(sent[0].register_().info().hostname(), "agent.example");
  EXPECT_EQ(sent[0].register_().info().http_address(), "http://agent.example:5081");
  EXPECT_THAT(sent[0].register_().info().resources(), SizeIs(2));
  EXPECT_THAT(sent[0].register_().tasks(), IsEmpty());
  EXPECT_FALSE(State()->recovering());

  agent_->OnMasterMessage(Registered("a1"));
  loop_->RunUntilIdle();
  EXPECT_TRUE(agent_->registered());
  EXPECT_EQ(agent_->id(), AgentId("a1"));
  EXPECT_TRUE(State()->registered());
  EXPECT_EQ(State()->info().id(), "a1");
  // The new id is checkpointed.
  Recovered disk = checkpoints_.Load();
  ASSERT_TRUE(disk.agent.has_value());
  EXPECT_EQ(disk.agent->info().id(), "a1");
}

// Updates produced while the master is unreachable are delivered after it returns, in order,
// one task's head at a time; the one in flight when the link broke goes again with its uuid.
TEST_F(AgentTest, UpdatesProducedWhileTheMasterIsUnreachableArriveInOrderAfterItReturns) {
  Register();
  const std::string container = StartRunningTask("t1");
  Deliver(KillMessage("t1", 5));
  RunJobs();
  std::vector<TaskStatus> before = master_->TakeUpdates();
  ASSERT_THAT(States(before), ElementsAre(rz::v1::TASK_KILLING));  // Sent, never acknowledged.

  agent_->OnMasterDisconnected();
  loop_->RunUntilIdle();
  Exit(container, Signaled(SIGTERM));  // KILLED is produced while the master is unreachable.
  loop_->AdvanceTime(absl::Minutes(5));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());  // Nothing goes out while unreachable.

  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  std::vector<TaskStatus> delivered;
  for (int i = 0; i < 4; ++i) {
    std::vector<TaskStatus> updates = master_->TakeUpdates();
    if (updates.empty()) {
      break;
    }
    ASSERT_THAT(updates, SizeIs(1));  // Only the head is in flight.
    delivered.push_back(updates[0]);
    Deliver(AckMessage(updates[0]));
  }
  ASSERT_THAT(States(delivered), ElementsAre(rz::v1::TASK_KILLING, rz::v1::TASK_KILLED));
  EXPECT_EQ(delivered[0].uuid(), before[0].uuid());
}

TEST_F(AgentTest, RunTaskReportsStartingRunningFinishedInOrderWithOnlyTheHeadInFlight) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 1);
  const ContainerSpec& spec = containerizer_->spec(containerizer_->last());
  EXPECT_FALSE(spec.container_id.empty());
  EXPECT_EQ(spec.task_id, TaskId("t1"));
  EXPECT_EQ(spec.framework_id, FrameworkId(kFramework));
  EXPECT_EQ(spec.agent_id, AgentId("a1"));
  EXPECT_EQ(spec.group_id, "");
  EXPECT_EQ(spec.command.value(), "true");
  EXPECT_EQ(spec.sandbox, options_.work_dir + "/sandboxes/fw1/t1");
  EXPECT_TRUE(std::filesystem::is_directory(spec.sandbox));

  // RUNNING is queued behind the unacknowledged STARTING.
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_STARTING));
  const TaskStatus starting = updates[0];
  EXPECT_EQ(starting.task_id(), "t1");
  EXPECT_EQ(starting.framework_id(), kFramework);
  EXPECT_EQ(starting.agent_id(), "a1");
  EXPECT_EQ(starting.source(), TaskStatus::SOURCE_AGENT);
  EXPECT_EQ(starting.uuid().size(), 16);
  EXPECT_GT(starting.timestamp(), 0);

  Exit(containerizer_->last(), Exited(0));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());

  Deliver(AckMessage(starting));
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_RUNNING));
  EXPECT_NE(updates[0].uuid(), starting.uuid());

  Deliver(AckMessage(updates[0]));
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FINISHED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_COMMAND_EXITED);
  EXPECT_EQ(updates[0].message(), "command exited with status 0");
  ASSERT_TRUE(updates[0].has_exit_status());
  EXPECT_EQ(updates[0].exit_status(), 0);
  EXPECT_THAT(State()->tasks(), SizeIs(1));

  // The terminal acknowledgement retires the task.
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  EXPECT_THAT(State()->tasks(), IsEmpty());
  ASSERT_THAT(State()->completed_tasks(), SizeIs(1));
  EXPECT_EQ(State()->completed_tasks(0).state(), rz::v1::TASK_FINISHED);
  EXPECT_EQ(State()->completed_tasks(0).acknowledged_state(), rz::v1::TASK_FINISHED);
  EXPECT_THAT(State()->frameworks(), IsEmpty());
  EXPECT_EQ(loop_->pending_timers(), 0);
}

TEST_F(AgentTest, StaleAcknowledgementIsIgnored) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_STARTING));

  TaskStatus stale = updates[0];
  stale.set_uuid(NewUuidBytes());
  Deliver(AckMessage(stale));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());  // RUNNING still waits.

  // The same acknowledgement twice: the second is stale too.
  Deliver(AckMessage(updates[0]));
  std::vector<TaskStatus> running = master_->TakeUpdates();
  ASSERT_THAT(States(running), ElementsAre(rz::v1::TASK_RUNNING));
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).acknowledged_state(), rz::v1::TASK_STARTING);
  // Only the real acknowledgement removed an update from the checkpoint.
  Recovered disk = checkpoints_.Load();
  ASSERT_EQ(disk.tasks.size(), 1);
  const auto& pending = disk.tasks.begin()->second.pending_updates;
  ASSERT_THAT(pending, SizeIs(1));
  EXPECT_EQ(pending[0].second.uuid(), running[0].uuid());
}

TEST_F(AgentTest, UnacknowledgedUpdateIsResentWithTheSameUuidWithExponentialBackoff) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  std::vector<TaskStatus> first = master_->TakeUpdates();
  ASSERT_THAT(first, SizeIs(1));

  loop_->AdvanceTime(absl::Milliseconds(999));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  loop_->AdvanceTime(absl::Milliseconds(1));
  std::vector<TaskStatus> retry = master_->TakeUpdates();
  ASSERT_THAT(retry, SizeIs(1));
  EXPECT_EQ(retry[0].uuid(), first[0].uuid());
  EXPECT_EQ(retry[0].state(), rz::v1::TASK_STARTING);

  // The next retry comes 2 s later, then 4 s.
  loop_->AdvanceTime(absl::Milliseconds(1999));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  loop_->AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(master_->TakeUpdates(), SizeIs(1));
  loop_->AdvanceTime(absl::Seconds(4));
  std::vector<TaskStatus> third = master_->TakeUpdates();
  ASSERT_THAT(third, SizeIs(1));
  EXPECT_EQ(third[0].uuid(), first[0].uuid());

  // Acknowledged: the retries stop and the next update starts at 1 s again.
  Deliver(AckMessage(first[0]));
  EXPECT_THAT(States(master_->TakeUpdates()), ElementsAre(rz::v1::TASK_RUNNING));
  loop_->AdvanceTime(absl::Seconds(1));
  EXPECT_THAT(States(master_->TakeUpdates()), ElementsAre(rz::v1::TASK_RUNNING));
}

TEST_F(AgentTest, RetryBackoffIsCappedAtSixtySeconds) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  master_->Take();
  // 1+2+4+8+16+32 = 63 s, then one retry every 60 s.
  loop_->AdvanceTime(absl::Seconds(63));
  EXPECT_THAT(master_->TakeUpdates(), SizeIs(6));
  loop_->AdvanceTime(absl::Seconds(59));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  loop_->AdvanceTime(absl::Seconds(1));
  EXPECT_THAT(master_->TakeUpdates(), SizeIs(1));
}

TEST_F(AgentTest, PingIsAnsweredWithPongCarryingTheNonce) {
  Register();
  MasterMessage ping;
  ping.mutable_ping()->set_nonce(42);
  Deliver(ping);
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  ASSERT_TRUE(sent[0].has_pong());
  EXPECT_EQ(sent[0].pong().nonce(), 42u);
}

TEST_F(AgentTest, UpdatesWaitForRegistrationAndAreResentOnANewStream) {
  Register();
  Deliver(RunTaskMessage("t1"));
  std::vector<TaskStatus> before = master_->TakeUpdates();
  ASSERT_THAT(before, SizeIs(1));

  agent_->OnMasterDisconnected();
  loop_->RunUntilIdle();
  EXPECT_FALSE(State()->registered());
  loop_->AdvanceTime(absl::Seconds(30));
  EXPECT_THAT(master_->Take(), IsEmpty());  // No retries into a broken link.

  agent_->OnMasterConnected();
  loop_->RunUntilIdle();
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  EXPECT_TRUE(sent[0].has_register_());  // Nothing before the master accepted us.

  Deliver(Registered("a1"));
  std::vector<TaskStatus> after = master_->TakeUpdates();
  ASSERT_THAT(after, SizeIs(1));
  EXPECT_EQ(after[0].uuid(), before[0].uuid());
}

TEST_F(AgentTest, ReregistrationCarriesNonTerminalAndUnacknowledgedTerminalTasks) {
  Register();
  StartRunningTask("running");
  const std::string unacked = StartRunningTask("unacked");
  Exit(unacked, Exited(1));  // FAILED, never acknowledged.
  master_->Take();
  const std::string done = StartRunningTask("done");
  Exit(done, Exited(0));
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_FINISHED);  // Retired to completed tasks.

  agent_->OnMasterDisconnected();
  agent_->OnMasterConnected();
  loop_->RunUntilIdle();
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  ASSERT_TRUE(sent[0].has_register_());
  const AgentMessage::Register& reg = sent[0].register_();
  EXPECT_EQ(reg.info().id(), "a1");
  ASSERT_THAT(reg.tasks(), SizeIs(2));
  EXPECT_EQ(reg.tasks(0).task_id(), "running");
  EXPECT_EQ(reg.tasks(0).state(), rz::v1::TASK_RUNNING);
  EXPECT_EQ(reg.tasks(0).agent_id(), "a1");
  EXPECT_EQ(reg.tasks(1).task_id(), "unacked");
  EXPECT_EQ(reg.tasks(1).state(), rz::v1::TASK_FAILED);
  EXPECT_EQ(reg.tasks(1).latest_status().state(), rz::v1::TASK_FAILED);
  EXPECT_EQ(reg.tasks(1).acknowledged_state(), rz::v1::TASK_RUNNING);
  ASSERT_THAT(reg.frameworks(), SizeIs(1));
  EXPECT_EQ(reg.frameworks(0).id(), kFramework);

  // Once registered again, the unacknowledged terminal update goes out again.
  Deliver(Registered("a1"));
  std::vector<TaskStatus> resent = master_->TakeUpdates();
  ASSERT_THAT(resent, SizeIs(1));
  EXPECT_EQ(resent[0].task_id(), "unacked");
  EXPECT_EQ(resent[0].state(), rz::v1::TASK_FAILED);
}

TEST_F(AgentTest, CompletedTasksAreBounded) {
  AgentOptions options = DefaultOptions();
  options.max_completed_tasks = 2;
  StartFreshAgent(options);
  Register();
  for (const std::string task_id : {"t1", "t2", "t3"}) {
    MasterMessage run = RunTaskMessage(task_id);
    run.mutable_run_task()->mutable_task()->clear_command();  // Ends at once in TASK_ERROR.
    Deliver(run);
  }
  for (const TaskStatus& update : master_->TakeUpdates()) {
    Deliver(AckMessage(update));
  }
  ASSERT_THAT(State()->completed_tasks(), SizeIs(2));
  EXPECT_EQ(State()->completed_tasks(0).task_id(), "t2");
  EXPECT_EQ(State()->completed_tasks(1).task_id(), "t3");
  EXPECT_THAT(State()->tasks(), IsEmpty());
}

// ---------------------------------------------------------------------------------------------
// Checkpointing before forwarding

TEST_F(AgentTest, UpdateIsSentOnlyOnceItsCheckpointIsDurableAndAcksRemoveIt) {
  Register();
  checkpoints_.Hold(true);
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 1);
  // STARTING and RUNNING exist, but neither is durable: nothing goes out, nothing is on disk.
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  EXPECT_GT(checkpoints_.waiting(), 0);
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_RUNNING);
  EXPECT_TRUE(checkpoints_.Load().tasks.empty());
  loop_->AdvanceTime(absl::Seconds(10));  // Nor is anything retried.
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());

  checkpoints_.ReleaseCheckpoints();
  loop_->RunUntilIdle();
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_STARTING));
  const TaskStatus starting = updates[0];
  Recovered disk = checkpoints_.Load();
  ASSERT_EQ(disk.tasks.size(), 1);
  const Recovered::RecoveredTask& saved = disk.tasks.begin()->second;
  EXPECT_EQ(saved.checkpoint.task().task_id(), "t1");
  EXPECT_EQ(saved.checkpoint.container_id(), containerizer_->last());
  EXPECT_EQ(saved.checkpoint.info().command().value(), "true");
  ASSERT_THAT(saved.pending_updates, SizeIs(2));
  EXPECT_EQ(saved.pending_updates[0].second.uuid(), starting.uuid());
  EXPECT_EQ(saved.pending_updates[1].second.state(), rz::v1::TASK_RUNNING);
  EXPECT_LT(saved.pending_updates[0].first, saved.pending_updates[1].first);
  EXPECT_TRUE(disk.frameworks.contains(FrameworkId(kFramework)));

  // RUNNING is durable already: the acknowledgement of STARTING sends it at once, and the
  // removal of STARTING from the checkpoint becomes durable on release.
  Deliver(AckMessage(starting));
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_RUNNING));
  const TaskStatus running = updates[0];
  EXPECT_THAT(checkpoints_.Load().tasks.begin()->second.pending_updates, SizeIs(2));
  checkpoints_.ReleaseCheckpoints();
  loop_->RunUntilIdle();
  disk = checkpoints_.Load();
  ASSERT_EQ(disk.tasks.size(), 1);
  ASSERT_THAT(disk.tasks.begin()->second.pending_updates, SizeIs(1));
  EXPECT_EQ(disk.tasks.begin()->second.pending_updates[0].second.uuid(), running.uuid());
  EXPECT_EQ(disk.tasks.begin()->second.checkpoint.task().acknowledged_state(),
            rz::v1::TASK_STARTING);

  // FINISHED waits for its write even though nothing is ahead of it.
  Deliver(AckMessage(running));
  Exit(containerizer_->last(), Exited(0));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  checkpoints_.ReleaseCheckpoints();
  loop_->RunUntilIdle();
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FINISHED));

  // The terminal acknowledgement deletes the task and its framework from the checkpoint.
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(checkpoints_.Load().tasks, SizeIs(1));
  checkpoints_.ReleaseCheckpoints();
  disk = checkpoints_.Load();
  EXPECT_TRUE(disk.tasks.empty());
  EXPECT_TRUE(disk.frameworks.empty());
}

TEST_F(AgentTest, FailedCheckpointWriteStillForwardsTheUpdate) {
  Register();
  checkpoints_.FailWith(absl::UnavailableError("disk full"));
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  EXPECT_THAT(States(master_->TakeUpdates()), ElementsAre(rz::v1::TASK_STARTING));
}

// ---------------------------------------------------------------------------------------------
// Killing

TEST_F(AgentTest, KillDuringLaunchReportsKilledAndNeverStartsTheTask) {
  Register();
  Deliver(RunTaskMessage("t1"));
  ASSERT_THAT(jobs_, SizeIs(1));  // The launch job has not run yet.
  Kill("t1");
  EXPECT_EQ(containerizer_->launches(), 0);

  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_KILLED_DURING_LAUNCH);
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  EXPECT_THAT(State()->tasks(), IsEmpty());
  EXPECT_THAT(State()->completed_tasks(), SizeIs(1));
}

TEST_F(AgentTest, KillThatRacesTheLaunchDestroysTheContainerAtOnce) {
  Register();
  Deliver(RunTaskMessage("t1"));
  // The worker launches and posts its result, but the kill is handled first.
  RunOneJob();
  ASSERT_EQ(containerizer_->launches(), 1);
  const std::string container = containerizer_->last();
  agent_->OnMasterMessage(KillMessage("t1"));
  loop_->RunUntilIdle();
  RunJobs();

  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(container, SIGKILL)));
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_KILLED);
  Exit(container, Signaled(SIGKILL));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());  // Never RUNNING, no second terminal update.
}

// A kill that arrives after the worker's last `cancelled` check, acknowledged before the launch
// returns, retires the task's record: the container it launched must still be destroyed.
TEST_F(AgentTest, ContainerOfATaskKilledAndRetiredDuringLaunchIsDestroyed) {
  Register();
  Deliver(RunTaskMessage("t1"));
  std::vector<TaskStatus> during;
  containerizer_->DuringNextLaunch([&] {
    Deliver(KillMessage("t1"));
    during = AckAll();
  });
  RunJobs();
  ASSERT_THAT(States(during), ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_KILLED));
  EXPECT_THAT(State()->tasks(), IsEmpty());
  ASSERT_EQ(containerizer_->launches(), 1);
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(containerizer_->last(), SIGKILL)));
}

TEST_F(AgentTest, KillOfRunningTaskReportsKillingThenKilledEvenWithExitCodeZero) {
  Register();
  const std::string container = StartRunningTask("t1");

  Kill("t1");
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(container, SIGTERM)));
  const TaskStatus killing = AckOnly();
  EXPECT_EQ(killing.state(), rz::v1::TASK_KILLING);
  EXPECT_EQ(killing.message(), "sending SIGTERM; SIGKILL after 3s");

  Exit(container, Exited(0));  // The task handled SIGTERM and exited cleanly.
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_KILLED_BY_REQUEST);
  EXPECT_EQ(updates[0].exit_status(), 0);
  EXPECT_EQ(updates[0].source(), TaskStatus::SOURCE_AGENT);
  EXPECT_THAT(updates[0].message(), HasSubstr("command exited with status 0"));
  // No SIGKILL once the task is gone, even after the grace period.
  AdvanceTime(absl::Seconds(10));
  EXPECT_THAT(containerizer_->kills(), SizeIs(1));
}

TEST_F(AgentTest, SigkillFollowsTheGracePeriodWhenTheTaskIgnoresSigterm) {
  Register();
  const std::string container = StartRunningTask("t1");

  Kill("t1", /*grace=*/5.0);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_KILLING);
  AdvanceTime(absl::Milliseconds(4999));
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(container, SIGTERM)));
  AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(containerizer_->kills(),
              ElementsAre(Pair(container, SIGTERM), Pair(container, SIGKILL)));

  Exit(container, Signaled(SIGKILL));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(updates[0].message(), "task killed: command terminated by signal SIGKILL (9)");
  EXPECT_EQ(updates[0].exit_status(), SIGKILL);
}

TEST_F(AgentTest, DefaultGracePeriodAppliesWithoutAKillPolicy) {
  Register();
  const std::string container = StartRunningTask("t1");
  Kill("t1");
  AdvanceTime(absl::Milliseconds(2999));
  EXPECT_THAT(containerizer_->kills(), SizeIs(1));
  AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(containerizer_->kills(),
              ElementsAre(Pair(container, SIGTERM), Pair(container, SIGKILL)));
}

TEST_F(AgentTest, TheTasksOwnKillPolicyBeatsTheDefaultGracePeriod) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_task()->mutable_kill_policy()->set_grace_period_seconds(1);
  Deliver(run);
  RunJobs();
  const std::string container = containerizer_->last();
  Kill("t1");
  AdvanceTime(absl::Milliseconds(999));
  EXPECT_THAT(containerizer_->kills(), SizeIs(1));
  AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(containerizer_->kills(),
              ElementsAre(Pair(container, SIGTERM), Pair(container, SIGKILL)));
}

TEST_F(AgentTest, KillOfUnknownTaskIsIgnored) {
  Register();
  Kill("nope");
  EXPECT_THAT(master_->Take(), IsEmpty());
  EXPECT_THAT(containerizer_->kills(), IsEmpty());
}

TEST_F(AgentTest, AShutdownFromTheMasterKillsEveryTaskOfEveryFramework) {
  Register();
  const std::string c1 = StartRunningTask("t1");
  Deliver(RunTaskMessage("other", "fw2"));
  RunJobs();
  master_->Take();
  ASSERT_EQ(containerizer_->launches(), 2);
  const std::string c2 = containerizer_->last();

  MasterMessage shutdown;
  shutdown.mutable_shutdown()->set_message("agent marked gone by the operator");
  Deliver(shutdown);
  RunJobs();
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(c1, SIGTERM), Pair(c2, SIGTERM)));
  Exit(c1, Signaled(SIGTERM));
  Exit(c2, Signaled(SIGTERM));
  EXPECT_THAT(State()->tasks(), IsEmpty());
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
}

TEST_F(AgentTest, ShutdownFrameworkKillsAllItsTasksWithoutWaitingForAcknowledgements) {
  Register();
  const std::string c1 = StartRunningTask("t1");
  const std::string c2 = StartRunningTask("t2");
  Deliver(RunTaskMessage("other", "fw2"));
  RunJobs();
  master_->Take();

  MasterMessage shutdown;
  shutdown.mutable_shutdown_framework()->set_framework_id(kFramework);
  Deliver(shutdown);
  RunJobs();
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(c1, SIGTERM), Pair(c2, SIGTERM)));
  // The master has forgotten the framework: nobody would acknowledge its updates.
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());

  Exit(c1, Exited(0));
  Exit(c2, Signaled(SIGTERM));
  EXPECT_THAT(master_->TakeUpdates(), IsEmpty());
  // Both tasks are retired at once; the other framework's task is untouched.
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).task_id(), "other");
  ASSERT_THAT(State()->completed_tasks(), SizeIs(2));
  EXPECT_EQ(State()->completed_tasks(0).state(), rz::v1::TASK_KILLED);
  EXPECT_EQ(State()->completed_tasks(1).state(), rz::v1::TASK_KILLED);
  // And forgotten by the checkpoint too.
  Recovered disk = checkpoints_.Load();
  ASSERT_EQ(disk.tasks.size(), 1);
  EXPECT_EQ(disk.tasks.begin()->first.second, TaskId("other"));
  EXPECT_FALSE(disk.frameworks.contains(FrameworkId(kFramework)));
}

// ---------------------------------------------------------------------------------------------
// Exits and failures

TEST_F(AgentTest, NonZeroExitFailsTheTaskWithTheRawWaitStatus) {
  Register();
  const std::string container = StartRunningTask("t1");
  Exit(container, Exited(3));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_COMMAND_EXITED);
  EXPECT_EQ(updates[0].message(), "command exited with status 3");
  EXPECT_EQ(updates[0].exit_status(), 3 << 8);
}

TEST_F(AgentTest, DeathBySignalIsDescribed) {
  Register();
  const std::string container = StartRunningTask("t1");
  Exit(container, Signaled(SIGTERM));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].message(), "command terminated by signal SIGTERM (15)");
  EXPECT_EQ(updates[0].exit_status(), SIGTERM);
}

TEST_F(AgentTest, MemoryLimitationFailsTheTaskWithItsReasonAndMessage) {
  Register();
  const std::string container = StartRunningTask("t1");
  Exit(container, Termination{.wait_status = SIGKILL,
                              .reason = TaskStatus::REASON_CONTAINER_LIMITATION_MEMORY,
                              .message = "memory limit of 64 MB exceeded",
                              .limitation = true});
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LIMITATION_MEMORY);
  EXPECT_THAT(updates[0].message(), HasSubstr("memory limit of 64 MB exceeded"));
  EXPECT_EQ(updates[0].exit_status(), SIGKILL);
}

TEST_F(AgentTest, LimitationFailsTheTaskEvenWhenItExitedZero) {
  Register();
  const std::string container = StartRunningTask("t1");
  Exit(container, Termination{.wait_status = 0,
                              .reason = TaskStatus::REASON_CONTAINER_LIMITATION_PIDS,
                              .message = "pids limit reached",
                              .limitation = true});
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LIMITATION_PIDS);
}

TEST_F(AgentTest, ExitBeforeTheLaunchResultStillReportsRunningThenFinished) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunOneJob();  // Launches; the launch result is posted but not handled yet.
  containerizer_->Exit(containerizer_->last(), Exited(0));  // The exit is posted right behind.
  loop_->RunUntilIdle();
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_RUNNING);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_FINISHED);
}

TEST_F(AgentTest, LaunchFailureFailsTheTask) {
  Register();
  containerizer_->FailLaunchWith(absl::NotFoundError("executable 'nope' not found in PATH"));
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LAUNCH_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("executable 'nope' not found"));
  EXPECT_FALSE(updates[0].has_exit_status());
}

TEST_F(AgentTest, FetchFailureFailsTheTaskWithFetchFailed) {
  Fetcher fetcher(FetcherOptions{});  // No cache: a file:// URI is copied directly.
  StartFreshAgent(DefaultOptions(), &fetcher);
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_task()->mutable_command()->add_uris()->set_value(
      "file://" + options_.work_dir + "/no-such-file");
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_FETCH_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("no-such-file"));
  // The agent outlives `fetcher` only until the end of the test; stop using it first.
  StartFreshAgent();
}

// ---------------------------------------------------------------------------------------------
// Invalid tasks

TEST_F(AgentTest, TaskWithoutCommandIsAnError) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_task()->clear_command();
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
  EXPECT_EQ(updates[0].message(), "task has no command");
}

TEST_F(AgentTest, TaskIdThatCannotNameADirectoryIsAnError) {
  // See InvalidTaskIdIsNotCheckpointed: the agent tries to checkpoint this task.
  checkpoints_.TolerateInvalidBatches();
  Register();
  Deliver(RunTaskMessage("../escape"));
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
}

TEST_F(AgentTest, DuplicateTaskIdIsAnErrorAndLeavesTheFirstTaskAlone) {
  Register();
  StartRunningTask("t1");
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 1);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
  EXPECT_TRUE(updates[0].uuid().empty());  // Not tracked, so not to be acknowledged.
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_RUNNING);
}

// Ids that cannot name a sandbox are answered with an untracked TASK_ERROR and never reach the
// checkpoint (the store would refuse the batch).
TEST_F(AgentTest, InvalidTaskIdIsNotCheckpointed) {
  checkpoints_.TolerateInvalidBatches();
  Register();
  const TaskStatus error = [&] {
    Deliver(RunTaskMessage("../escape"));
    return AckOnly();
  }();
  EXPECT_EQ(error.state(), rz::v1::TASK_ERROR);
  EXPECT_EQ(checkpoints_.invalid_batches(), 0);
}

// ---------------------------------------------------------------------------------------------
// Resources, limits and ports

TEST_F(AgentTest, ResourcesAndLimitsReachTheContainerSpec) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  rz::v1::TaskInfo* task = run.mutable_run_task()->mutable_task();
  rz::v1::Resource* cpus = task->add_resources();
  cpus->set_name("cpus");
  cpus->set_scalar(0.5);
  rz::v1::Resource* mem = task->add_resources();
  mem->set_name("mem");
  mem->set_scalar(64);
  (*task->mutable_limits())["cpus"] = 1;
  (*task->mutable_limits())["mem"] = 128;
  (*task->mutable_limits())["pids"] = 50;
  Deliver(run);
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 1);
  const ContainerSpec& spec = containerizer_->spec(containerizer_->last());
  EXPECT_DOUBLE_EQ(spec.cpus, 0.5);
  EXPECT_DOUBLE_EQ(spec.mem_mb, 64);
  EXPECT_EQ(spec.cpus_limit, 1.0);
  EXPECT_EQ(spec.mem_limit_mb, 128.0);
  EXPECT_EQ(spec.pids_max, 50u);
}

TEST_F(AgentTest, DefaultPidsMaxAppliesWithoutAPidsLimit) {
  AgentOptions options = DefaultOptions();
  options.default_pids_max = 200;
  StartFreshAgent(options);
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 1);
  const ContainerSpec& spec = containerizer_->spec(containerizer_->last());
  EXPECT_EQ(spec.pids_max, 200u);
  EXPECT_EQ(spec.cpus_limit, std::nullopt);
  EXPECT_EQ(spec.mem_limit_mb, std::nullopt);
}

TEST_F(AgentTest, UnknownLimitIsATaskErrorNamingIt) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  (*run.mutable_run_task()->mutable_task()->mutable_limits())["gpus"] = 1;
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
  EXPECT_THAT(updates[0].message(), HasSubstr("'gpus'"));
}

TEST_F(AgentTest, PortsReachTheContainerEnvironment) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  rz::v1::Resource* ports = run.mutable_run_task()->mutable_task()->add_resources();
  ports->set_name("ports");
  rz::v1::Range* range = ports->mutable_ranges()->add_range();
  range->set_begin(31000);
  range->set_end(31001);
  Deliver(run);
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 1);
  EXPECT_THAT(
      containerizer_->spec(containerizer_->last()).environment,
      ElementsAre(Pair("PORTS", "31000,31001"), Pair("PORT0", "31000"), Pair("PORT1", "31001")));
}

// ---------------------------------------------------------------------------------------------
// Users

TEST_F(AgentTest, TaskNamingAnotherUserFailsWhenTheAgentCannotSwitchUsers) {
  AgentOptions options = DefaultOptions();
  options.agent_user = "rzagent";
  options.can_switch_user = false;
  StartFreshAgent(options);
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_framework()->set_user("alice");
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LAUNCH_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("'alice'"));

  // The agent's own user is fine, and runs as the agent (no switch).
  MasterMessage own = RunTaskMessage("t2");
  own.mutable_run_task()->mutable_task()->mutable_command()->set_user("rzagent");
  Deliver(own);
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 1);
  EXPECT_EQ(containerizer_->spec(containerizer_->last()).user, "");
}

TEST_F(AgentTest, RootTasksAreRefusedUnlessAllowed) {
  AgentOptions options = DefaultOptions();
  options.can_switch_user = true;
  options.allow_root_tasks = false;
  StartFreshAgent(options);
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_task()->mutable_command()->set_user("root");
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LAUNCH_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("root"));
}

TEST_F(AgentTest, TasksRunAsTheirUserOrTheDefaultTaskUser) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "giving a sandbox to another user needs root";
  }
  AgentOptions options = DefaultOptions();
  options.can_switch_user = true;
  options.default_task_user = "nobody";
  StartFreshAgent(options);
  Register();
  Deliver(RunTaskMessage("t1"));  // Names no user.
  MasterMessage run2 = RunTaskMessage("t2");
  run2.mutable_run_task()->mutable_framework()->set_user("daemon");
  Deliver(run2);
  MasterMessage run3 = RunTaskMessage("t3");
  run3.mutable_run_task()->mutable_framework()->set_user("daemon");
  run3.mutable_run_task()->mutable_task()->mutable_command()->set_user("bin");
  Deliver(run3);
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 3);
  EXPECT_EQ(containerizer_->spec(containerizer_->ContainerOf("t1")).user, "nobody");
  EXPECT_EQ(containerizer_->spec(containerizer_->ContainerOf("t2")).user, "daemon");
  EXPECT_EQ(containerizer_->spec(containerizer_->ContainerOf("t3")).user, "bin");
  // The sandbox belongs to the task's user.
  struct stat info;
  const std::string sandbox = containerizer_->spec(containerizer_->ContainerOf("t1")).sandbox;
  ASSERT_EQ(::stat(sandbox.c_str(), &info), 0);
  EXPECT_NE(info.st_uid, 0u);
}

TEST_F(AgentTest, UnknownUserFailsTheLaunchNamingIt) {
  AgentOptions options = DefaultOptions();
  options.can_switch_user = true;
  StartFreshAgent(options);
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_task()->mutable_command()->set_user("no-such-user-rz");
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LAUNCH_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("'no-such-user-rz'"));
}

// ---------------------------------------------------------------------------------------------
// Task groups

TEST_F(AgentTest, GroupMembersShareAGroupAndOneFailureKillsTheOthers) {
  Register();
  Deliver(RunTaskGroupMessage({"g1", "g2", "g3"}));
  RunJobs();
  ASSERT_EQ(containerizer_->launches(), 3);
  const std::string c1 = containerizer_->ContainerOf("g1");
  const std::string c2 = containerizer_->ContainerOf("g2");
  const std::string c3 = containerizer_->ContainerOf("g3");
  const std::string group = containerizer_->spec(c1).group_id;
  EXPECT_FALSE(group.empty());
  EXPECT_EQ(containerizer_->spec(c2).group_id, group);
  EXPECT_EQ(containerizer_->spec(c3).group_id, group);
  EXPECT_NE(c1, c2);
  ASSERT_THAT(State()->tasks(), SizeIs(3));
  EXPECT_EQ(State()->tasks(0).group_id(), group);
  EXPECT_THAT(States(AckAll()),
              ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_STARTING, rz::v1::TASK_STARTING,
                          rz::v1::TASK_RUNNING, rz::v1::TASK_RUNNING, rz::v1::TASK_RUNNING));

  Exit(c2, Exited(1));
  RunJobs();
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(Of(updates, "g2")), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(Of(updates, "g2")[0].reason(), TaskStatus::REASON_COMMAND_EXITED);
  EXPECT_THAT(States(Of(updates, "g1")), ElementsAre(rz::v1::TASK_KILLING));
  EXPECT_THAT(States(Of(updates, "g3")), ElementsAre(rz::v1::TASK_KILLING));
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(c1, SIGTERM), Pair(c3, SIGTERM)));
  for (const TaskStatus& update : updates) {
    Deliver(AckMessage(update));
  }

  Exit(c1, Signaled(SIGTERM));
  Exit(c3, Exited(0));
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(Of(updates, "g1")), ElementsAre(rz::v1::TASK_KILLED));
  ASSERT_THAT(States(Of(updates, "g3")), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(Of(updates, "g1")[0].reason(), TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED);
  EXPECT_EQ(Of(updates, "g3")[0].reason(), TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED);
  EXPECT_THAT(Of(updates, "g1")[0].message(), HasSubstr("'g2'"));
}

TEST_F(AgentTest, KillingOneGroupMemberKillsTheGroup) {
  Register();
  Deliver(RunTaskGroupMessage({"g1", "g2", "g3"}));
  RunJobs();
  master_->Take();
  Kill("g2");
  EXPECT_THAT(containerizer_->kills(),
              ::testing::UnorderedElementsAre(Pair(containerizer_->ContainerOf("g1"), SIGTERM),
                                              Pair(containerizer_->ContainerOf("g2"), SIGTERM),
                                              Pair(containerizer_->ContainerOf("g3"), SIGTERM)));
  ASSERT_THAT(State()->tasks(), SizeIs(3));
  for (const rz::v1::Task& task : State()->tasks()) {
    EXPECT_EQ(task.state(), rz::v1::TASK_KILLING) << task.task_id();
  }
  for (const std::string task_id : {"g1", "g2", "g3"}) {
    Exit(containerizer_->ContainerOf(task_id), Signaled(SIGTERM));
  }
  for (const rz::v1::Task& task : State()->tasks()) {
    EXPECT_EQ(task.state(), rz::v1::TASK_KILLED) << task.task_id();
    EXPECT_EQ(task.latest_status().reason(), TaskStatus::REASON_KILLED_BY_REQUEST);
  }
}

TEST_F(AgentTest, InvalidMemberFailsTheWholeGroupWithTaskError) {
  Register();
  MasterMessage run = RunTaskGroupMessage({"g1", "g2", "g3"});
  run.mutable_run_task_group()->mutable_tasks(1)->clear_command();
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(updates, SizeIs(3));
  for (const TaskStatus& update : updates) {
    EXPECT_EQ(update.state(), rz::v1::TASK_ERROR) << update.task_id();
    EXPECT_EQ(update.reason(), TaskStatus::REASON_TASK_INVALID);
  }
  EXPECT_EQ(Of(updates, "g2")[0].message(), "task has no command");
  EXPECT_THAT(Of(updates, "g1")[0].message(), HasSubstr("'g2'"));
  EXPECT_THAT(Of(updates, "g3")[0].message(), HasSubstr("task has no command"));
}

TEST_F(AgentTest, LaunchFailureOfOneMemberKillsTheOthers) {
  Register();
  Deliver(RunTaskGroupMessage({"g1", "g2"}));
  RunOneJob();  // g1 launches.
  containerizer_->FailLaunchWith(absl::InternalError("cgroup write failed"));
  RunJobs();  // g2 does not.
  const std::vector<TaskStatus> updates = AckAll();
  EXPECT_THAT(States(Of(updates, "g2")), ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_FAILED));
  EXPECT_EQ(Of(updates, "g2")[1].reason(), TaskStatus::REASON_CONTAINER_LAUNCH_FAILED);
  EXPECT_THAT(States(Of(updates, "g1")),
              ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_RUNNING, rz::v1::TASK_KILLING));
  EXPECT_THAT(containerizer_->kills(),
              ElementsAre(Pair(containerizer_->ContainerOf("g1"), SIGTERM)));
}

TEST_F(AgentTest, AMemberThatMayNotRunKillsTheGroupBeforeAnyoneStarts) {
  AgentOptions options = DefaultOptions();
  options.can_switch_user = true;
  options.allow_root_tasks = false;
  StartFreshAgent(options);
  Register();
  MasterMessage run = RunTaskGroupMessage({"g1", "g2"});
  run.mutable_run_task_group()->mutable_tasks(0)->mutable_command()->set_user("root");
  Deliver(run);
  RunJobs();
  EXPECT_EQ(containerizer_->launches(), 0);
  const std::vector<TaskStatus> updates = AckAll();
  EXPECT_THAT(States(Of(updates, "g1")), ElementsAre(rz::v1::TASK_FAILED));
  // Killed while still launching: never STARTING after its terminal update.
  EXPECT_THAT(States(Of(updates, "g2")), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(Of(updates, "g2")[0].reason(), TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED);
}

// ---------------------------------------------------------------------------------------------
// Health checks

MasterMessage RunWithCommandHealthCheck(const std::string& task_id, const std::string& check) {
  MasterMessage run = RunTaskMessage(task_id);
  rz::v1::HealthCheck* health = run.mutable_run_task()->mutable_task()->mutable_health_check();
  health->set_type(rz::v1::HealthCheck::COMMAND);
  health->mutable_command()->set_shell(true);
  health->mutable_command()->set_value(check);
  health->set_consecutive_failures(4);
  health->set_delay_seconds(0);
  health->set_interval_seconds(1);
  health->set_grace_period_seconds(0);
  health->set_timeout_seconds(10);
  return run;
}

void Append(std::vector<TaskStatus>& to, const std::vector<TaskStatus>& more) {
  to.insert(to.end(), more.begin(), more.end());
}

TEST_F(AgentTest, FailingHealthCheckReportsUnhealthyThenKillsAndFailsTheTask) {
  Register();
  inline_jobs_ = true;  // Checks really run `false`, inline when the loop asks.
  Deliver(RunWithCommandHealthCheck("t1", "false"));
  ASSERT_EQ(containerizer_->launches(), 1);
  const std::string container = containerizer_->last();

  // The first check runs at once (delay 0) and counts (grace 0); the next ones a second apart.
  std::vector<TaskStatus> updates = AckAll();
  for (int second = 0; second < 10 && containerizer_->kills().empty(); ++second) {
    loop_->AdvanceTime(absl::Seconds(1));
    Append(updates, AckAll());
  }
  ASSERT_THAT(States(updates),
              ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_RUNNING, rz::v1::TASK_RUNNING,
                          rz::v1::TASK_RUNNING, rz::v1::TASK_RUNNING, rz::v1::TASK_RUNNING,
                          rz::v1::TASK_KILLING));
  EXPECT_FALSE(updates[1].has_healthy());  // Launched; not checked yet.
  for (int i = 2; i < 6; ++i) {
    ASSERT_TRUE(updates[i].has_healthy());
    EXPECT_FALSE(updates[i].healthy());
    EXPECT_EQ(updates[i].reason(), TaskStatus::REASON_TASK_HEALTH_CHECK_STATUS_UPDATED);
    EXPECT_EQ(updates[i].message(), "command exited with status 1");
  }
  EXPECT_DOUBLE_EQ(updates[5].timestamp() - updates[2].timestamp(), 3.0);
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair(container, SIGTERM)));
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_KILLING);

  // A KILLING task never goes back to RUNNING.
  for (int second = 0; second < 2; ++second) {
    loop_->AdvanceTime(absl::Seconds(1));
    EXPECT_THAT(AckAll(), IsEmpty());
  }
  Exit(container, Signaled(SIGTERM));
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_HEALTH_CHECK_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("4 times in a row"));
}

TEST_F(AgentTest, HealthyTaskIsReportedOnceAndKillingStopsTheChecks) {
  Register();
  inline_jobs_ = true;
  Deliver(RunWithCommandHealthCheck("t1", "true"));
  std::vector<TaskStatus> updates = AckAll();
  for (int second = 0; second < 20; ++second) {
    loop_->AdvanceTime(absl::Seconds(1));
    Append(updates, AckAll());
  }
  // Only the first success is reported.
  ASSERT_THAT(States(updates),
              ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_RUNNING, rz::v1::TASK_RUNNING));
  ASSERT_TRUE(updates[2].has_healthy());
  EXPECT_TRUE(updates[2].healthy());
  EXPECT_EQ(updates[2].reason(), TaskStatus::REASON_TASK_HEALTH_CHECK_STATUS_UPDATED);
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_TRUE(State()->tasks(0).latest_status().healthy());

  Deliver(KillMessage("t1", /*grace=*/60));
  EXPECT_THAT(States(AckAll()), ElementsAre(rz::v1::TASK_KILLING));
  for (int second = 0; second < 30; ++second) {
    loop_->AdvanceTime(absl::Seconds(1));
    EXPECT_THAT(AckAll(), IsEmpty());
  }
  EXPECT_THAT(containerizer_->kills(), SizeIs(1));
}

// ---------------------------------------------------------------------------------------------
// Usage

TEST_F(AgentTest, UsageIsSampledForRunningContainersAndSentToTheMaster) {
  AgentOptions options = DefaultOptions();
  options.usage_interval = absl::Seconds(10);
  StartFreshAgent(options);
  Register();
  const std::string container = StartRunningTask("t1");
  Exit(StartRunningTask("t0"), Exited(1));  // Ended (unacknowledged): nothing to sample.
  master_->Take();
  rz::v1::ResourceStatistics usage;
  usage.set_cpus_user_time_secs(1.5);
  usage.set_mem_rss_bytes(1 << 20);
  usage.set_processes(2);
  containerizer_->SetUsage(usage);

  AdvanceTime(absl::Seconds(10));
  EXPECT_EQ(containerizer_->usage_calls(), 1);
  std::vector<AgentMessage> sent = master_->Take();
  std::vector<AgentMessage> reports;
  for (const AgentMessage& message : sent) {
    if (message.has_usage()) {
      reports.push_back(message);
    }
  }
  ASSERT_THAT(reports, SizeIs(1));
  ASSERT_THAT(State()->tasks(), SizeIs(2));
  const AgentMessage::Usage& report = reports[0].usage();
  ASSERT_THAT(report.tasks(), SizeIs(1));
  EXPECT_EQ(report.tasks(0).framework_id(), kFramework);
  EXPECT_EQ(report.tasks(0).task_id(), "t1");
  EXPECT_DOUBLE_EQ(report.tasks(0).statistics().cpus_user_time_secs(), 1.5);
  EXPECT_GT(report.tasks(0).statistics().timestamp(), 0);
  EXPECT_DOUBLE_EQ(report.total().cpus_user_time_secs(), 1.5);
  EXPECT_EQ(report.total().mem_rss_bytes(), 1u << 20);
  EXPECT_EQ(report.total().processes(), 2u);

  const auto state = State();
  ASSERT_THAT(state->containers(), SizeIs(1));
  EXPECT_EQ(state->containers(0).container_id(), container);
  EXPECT_EQ(state->containers(0).task_id(), "t1");
  EXPECT_THAT(state->containers(0).cgroups(), ElementsAre("memory/rz/" + container));
  EXPECT_EQ(state->containers(0).statistics().mem_rss_bytes(), 1u << 20);
  for (const rz::v1::Task& task : state->tasks()) {
    if (task.task_id() == "t1") {
      EXPECT_DOUBLE_EQ(task.statistics().cpus_user_time_secs(), 1.5);
    }
  }
  // Statistics never reach the checkpoint or a reregistration.
  agent_->OnMasterConnected();
  sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  for (const rz::v1::Task& task : sent[0].register_().tasks()) {
    EXPECT_FALSE(task.has_statistics());
  }

  // Sampling repeats every interval.
  AdvanceTime(absl::Seconds(10));
  EXPECT_EQ(containerizer_->usage_calls(), 2);
}

// ---------------------------------------------------------------------------------------------
// Recovery

// An agent restarted with a checkpoint the test writes by hand.
class AgentRecoveryTest : public AgentTestBase {
 protected:
  AgentRecoveryTest() {
    StartAgent(DefaultOptions());
    rz::v1::AgentCheckpoint agent;
    agent.mutable_info()->set_id("a1");
    input_.checkpoint.agent = agent;
    input_.checkpoint.frameworks[FrameworkId(kFramework)] = FrameworkOf(kFramework);
  }

  // Adds a checkpointed task in `state` with container `container_id`; returns its record.
  Recovered::RecoveredTask& AddTask(const std::string& task_id, rz::v1::TaskState state,
                                    const std::string& container_id) {
    Recovered::RecoveredTask& task =
        input_.checkpoint.tasks[{FrameworkId(kFramework), TaskId(task_id)}];
    rz::v1::Task* saved = task.checkpoint.mutable_task();
    saved->set_task_id(task_id);
    saved->set_framework_id(kFramework);
    saved->set_agent_id("a1");
    saved->set_state(state);
    *task.checkpoint.mutable_info() = TaskInfoOf(task_id);
    task.checkpoint.set_container_id(container_id);
    return task;
  }

  // Adds an unacknowledged update to `task`.
  TaskStatus AddPending(Recovered::RecoveredTask& task, uint64_t sequence,
                        rz::v1::TaskState state) {
    TaskStatus status;
    status.set_task_id(task.checkpoint.task().task_id());
    status.set_framework_id(kFramework);
    status.set_agent_id("a1");
    status.set_state(state);
    status.set_source(TaskStatus::SOURCE_AGENT);
    status.set_uuid(NewUuidBytes());
    task.pending_updates.emplace_back(sequence, status);
    *task.checkpoint.mutable_task()->mutable_latest_status() = status;
    input_.checkpoint.max_sequence = std::max(input_.checkpoint.max_sequence, sequence);
    return status;
  }

  // The container is still running: its exit will come through the agent's callback.
  void AddRunningContainer(const std::string& container_id, pid_t pid) {
    input_.containers[container_id] =
        RecoveredContainer{.state = RecoveredContainer::State::kRunning, .pid = pid};
    containerizer_->Adopt(container_id, agent_->ExitCallbackFor(container_id));
  }

  void AddExitedContainer(const std::string& container_id, Termination termination) {
    input_.containers[container_id] = RecoveredContainer{
        .state = RecoveredContainer::State::kExited, .termination = std::move(termination)};
  }

  void Recover() {
    agent_->Recover(std::move(input_));
    loop_->RunUntilIdle();
  }

  RecoveryInput input_;
};

TEST_F(AgentRecoveryTest, RunningContainerKeepsItsTaskAndThePendingUpdateKeepsItsUuid) {
  Recovered::RecoveredTask& task = AddTask("t1", rz::v1::TASK_RUNNING, "c1");
  const TaskStatus pending = AddPending(task, 7, rz::v1::TASK_RUNNING);
  AddRunningContainer("c1", 4242);
  EXPECT_TRUE(State()->recovering());
  Recover();

  EXPECT_FALSE(State()->recovering());
  EXPECT_EQ(agent_->id(), AgentId("a1"));
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_RUNNING);
  ASSERT_THAT(State()->containers(), SizeIs(1));
  EXPECT_EQ(State()->containers(0).container_id(), "c1");
  EXPECT_EQ(State()->containers(0).executor_pid(), "4242");

  // The reregistration carries the task under the checkpointed id; nothing else goes first.
  agent_->OnMasterConnected();
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  ASSERT_TRUE(sent[0].has_register_());
  EXPECT_EQ(sent[0].register_().info().id(), "a1");
  ASSERT_THAT(sent[0].register_().tasks(), SizeIs(1));
  EXPECT_EQ(sent[0].register_().tasks(0).task_id(), "t1");
  EXPECT_EQ(sent[0].register_().tasks(0).state(), rz::v1::TASK_RUNNING);
  EXPECT_EQ(sent[0].register_().tasks(0).agent_id(), "a1");
  ASSERT_THAT(sent[0].register_().frameworks(), SizeIs(1));
  EXPECT_EQ(sent[0].register_().frameworks(0).id(), kFramework);

  // Once registered, the pending update goes out again with the same uuid.
  Deliver(Registered("a1"));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].uuid(), pending.uuid());
  EXPECT_EQ(updates[0].state(), rz::v1::TASK_RUNNING);
  Deliver(AckMessage(updates[0]));

  // The container's later exit finishes the task; new updates are numbered after the old ones.
  Exit("c1", Exited(0));
  updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FINISHED));
  Recovered disk = checkpoints_.Load();
  ASSERT_EQ(disk.tasks.size(), 1);
  ASSERT_THAT(disk.tasks.begin()->second.pending_updates, SizeIs(1));
  EXPECT_GT(disk.tasks.begin()->second.pending_updates[0].first, 7u);
  EXPECT_EQ(disk.tasks.begin()->second.pending_updates[0].second.uuid(), updates[0].uuid());
}

TEST_F(AgentRecoveryTest, StartingTaskWithARunningContainerBecomesRunning) {
  AddTask("t1", rz::v1::TASK_STARTING, "c1");
  AddRunningContainer("c1", 4242);
  Recover();
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_RUNNING);
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_RUNNING));
  EXPECT_EQ(updates[0].agent_id(), "a1");
}

TEST_F(AgentRecoveryTest, ContainerThatExitedWhileTheAgentWasDownFailsTheTask) {
  AddTask("t1", rz::v1::TASK_RUNNING, "c1");
  AddExitedContainer("c1", Exited(3));
  Recover();
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_COMMAND_EXITED);
  EXPECT_EQ(updates[0].message(), "command exited with status 3");
  ASSERT_TRUE(updates[0].has_exit_status());
  EXPECT_EQ(WEXITSTATUS(updates[0].exit_status()), 3);
  EXPECT_THAT(State()->containers(), IsEmpty());
}

TEST_F(AgentRecoveryTest, ContainerLostToARebootMakesTheTaskGone) {
  AddTask("t1", rz::v1::TASK_RUNNING, "c1");
  AddExitedContainer("c1", Termination{.reason = TaskStatus::REASON_AGENT_REBOOTED,
                                       .message = "the machine rebooted"});
  Recover();
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_GONE));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_AGENT_REBOOTED);
  EXPECT_EQ(updates[0].message(), "the machine rebooted");
}

TEST_F(AgentRecoveryTest, TaskWhoseContainerIsMissingFailsWithAgentRestarted) {
  AddTask("t1", rz::v1::TASK_STARTING, "c-never-started");
  AddTask("t2", rz::v1::TASK_STARTING, "");  // Crashed before a container id was chosen.
  Recover();
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(updates, SizeIs(2));
  for (const TaskStatus& update : updates) {
    EXPECT_EQ(update.state(), rz::v1::TASK_FAILED) << update.task_id();
    EXPECT_EQ(update.reason(), TaskStatus::REASON_AGENT_RESTARTED);
  }
}

TEST_F(AgentRecoveryTest, TerminalTaskWithoutPendingUpdatesIsCompleted) {
  AddTask("done", rz::v1::TASK_FINISHED, "c1");
  Recover();
  EXPECT_THAT(State()->tasks(), IsEmpty());
  ASSERT_THAT(State()->completed_tasks(), SizeIs(1));
  EXPECT_EQ(State()->completed_tasks(0).task_id(), "done");
  EXPECT_THAT(State()->frameworks(), IsEmpty());
  agent_->OnMasterConnected();
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  EXPECT_THAT(sent[0].register_().tasks(), IsEmpty());
}

TEST_F(AgentRecoveryTest, TerminalTaskWithAPendingUpdateResendsIt) {
  Recovered::RecoveredTask& task = AddTask("t1", rz::v1::TASK_FAILED, "c1");
  const TaskStatus pending = AddPending(task, 3, rz::v1::TASK_FAILED);
  Recover();
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  std::vector<TaskStatus> updates = master_->TakeUpdates();
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].uuid(), pending.uuid());
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(State()->tasks(), IsEmpty());
  EXPECT_THAT(State()->completed_tasks(), SizeIs(1));
}

TEST_F(AgentRecoveryTest, ExitReportedBeforeRecoverRanIsNotLost) {
  AddTask("t1", rz::v1::TASK_RUNNING, "c1");
  AddRunningContainer("c1", 4242);
  // The container ends while the agent is still recovering.
  containerizer_->Exit("c1", Exited(0));
  loop_->RunUntilIdle();
  Recover();
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_FINISHED);
  EXPECT_THAT(State()->containers(), IsEmpty());
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  EXPECT_THAT(States(master_->TakeUpdates()), ElementsAre(rz::v1::TASK_FINISHED));
}

TEST_F(AgentRecoveryTest, KillingTaskIsKilledAgain) {
  AddTask("t1", rz::v1::TASK_KILLING, "c1");
  AddRunningContainer("c1", 4242);
  Recover();
  RunJobs();
  EXPECT_THAT(containerizer_->kills(), ElementsAre(Pair("c1", SIGTERM)));
  Exit("c1", Signaled(SIGTERM));
  agent_->OnMasterConnected();
  Deliver(Registered("a1"));
  const std::vector<TaskStatus> updates = AckAll();
  EXPECT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLING, rz::v1::TASK_KILLED));
}

// Completing a recovered terminal task must not forget its framework while other tasks of the
// framework are still being restored.
TEST_F(AgentRecoveryTest, CompletingATerminalTaskKeepsTheOtherTasksOfItsFramework) {
  // "a" sorts before "b": the checkpoint hands it over first.
  AddTask("a", rz::v1::TASK_FINISHED, "ca");
  AddTask("b", rz::v1::TASK_RUNNING, "cb");
  AddRunningContainer("cb", 4242);
  // What the agent recovers is what its store holds.
  CheckpointBatch saved;
  for (const auto& [id, framework] : input_.checkpoint.frameworks) {
    saved.PutFramework(framework);
  }
  for (const auto& [key, task] : input_.checkpoint.tasks) {
    saved.PutTask(task.checkpoint);
  }
  checkpoints_.AsWriter()(std::move(saved), [](absl::Status status) { ASSERT_TRUE(status.ok()); });
  checkpoints_.ReleaseCheckpoints();
  Recover();
  checkpoints_.ReleaseCheckpoints();
  ASSERT_THAT(State()->tasks(), SizeIs(1));
  EXPECT_EQ(State()->tasks(0).task_id(), "b");
  EXPECT_EQ(State()->tasks(0).state(), rz::v1::TASK_RUNNING);
  Recovered disk = checkpoints_.Load();
  EXPECT_TRUE(disk.tasks.contains({FrameworkId(kFramework), TaskId("b")}));
  EXPECT_TRUE(disk.frameworks.contains(FrameworkId(kFramework)));
}

TEST_F(AgentRecoveryTest, TaskWithoutItsFrameworkIsDropped) {
  AddTask("t1", rz::v1::TASK_RUNNING, "c1");
  input_.checkpoint.frameworks.clear();
  Recover();
  EXPECT_THAT(State()->tasks(), IsEmpty());
}

// The whole cycle: what one agent checkpoints is what the next one recovers.
TEST_F(AgentTest, RestartedAgentRecoversTheTasksItCheckpointed) {
  Register();
  const std::string c1 = StartRunningTask("t1");
  Deliver(RunTaskMessage("t2"));
  RunJobs();
  const std::string c2 = containerizer_->ContainerOf("t2");
  const std::vector<TaskStatus> unacked = master_->TakeUpdates();  // t2 STARTING.
  ASSERT_THAT(unacked, SizeIs(1));
  ASSERT_EQ(unacked[0].task_id(), "t2");

  // The agent crashes; t1's container survives, t2's ends with status 2 meanwhile.
  RecoveryInput input{.checkpoint = checkpoints_.Load()};
  ASSERT_EQ(input.checkpoint.tasks.size(), 2);
  EXPECT_EQ(
      input.checkpoint.tasks.at({FrameworkId(kFramework), TaskId("t2")}).checkpoint.container_id(),
      c2);
  StartAgent(DefaultOptions());
  input.containers[c1] =
      RecoveredContainer{.state = RecoveredContainer::State::kRunning, .pid = 77};
  containerizer_->Adopt(c1, agent_->ExitCallbackFor(c1));
  input.containers[c2] =
      RecoveredContainer{.state = RecoveredContainer::State::kExited, .termination = Exited(2)};
  agent_->Recover(std::move(input));
  loop_->RunUntilIdle();

  agent_->OnMasterConnected();
  std::vector<AgentMessage> sent = master_->Take();
  ASSERT_THAT(sent, SizeIs(1));
  EXPECT_EQ(sent[0].register_().info().id(), "a1");
  EXPECT_THAT(sent[0].register_().tasks(), SizeIs(2));
  Deliver(Registered("a1"));
  // t2's queue is resent from its head, STARTING with its old uuid; t1 has nothing pending.
  const std::vector<TaskStatus> updates = AckAll();
  ASSERT_THAT(States(updates),
              ElementsAre(rz::v1::TASK_STARTING, rz::v1::TASK_RUNNING, rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].uuid(), unacked[0].uuid());
  EXPECT_EQ(updates[2].message(), "command exited with status 2");

  Exit(c1, Exited(0));
  EXPECT_THAT(States(master_->TakeUpdates()), ElementsAre(rz::v1::TASK_FINISHED));
}

}  // namespace
}  // namespace rz::agent
