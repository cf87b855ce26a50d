// The agent's state machine on a ManualEventLoop, with a fake launcher, a fake master
// connection and a blocking runner that holds jobs until the test runs them.
#include "agent/agent.h"

#include <signal.h>
#include <sys/wait.h>

#include <deque>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/random_id.h"
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

class FakeLauncher final : public Launcher {
 public:
  absl::StatusOr<LaunchHandle> Launch(const LaunchSpec& spec, ExitCallback on_exit) override {
    if (!fail_with_.ok()) {
      return fail_with_;
    }
    const LaunchHandle handle = next_handle_++;
    specs_.emplace(handle, spec);
    exits_.emplace(handle, std::move(on_exit));
    last_ = handle;
    return handle;
  }

  absl::Status Kill(LaunchHandle handle, int signal) override {
    signals_.emplace_back(handle, signal);
    return exits_.contains(handle) ? absl::OkStatus() : absl::NotFoundError("exited");
  }

  // Reports the exit of `handle` the way the reaper thread would.
  void Exit(LaunchHandle handle, int wait_status) {
    auto it = exits_.find(handle);
    ASSERT_NE(it, exits_.end());
    ExitCallback on_exit = std::move(it->second);
    exits_.erase(it);
    std::move(on_exit)(wait_status);
  }

  void FailWith(absl::Status status) { fail_with_ = std::move(status); }
  LaunchHandle last() const { return last_; }
  int launches() const { return static_cast<int>(specs_.size()); }
  const LaunchSpec& spec(LaunchHandle handle) const { return specs_.at(handle); }
  const std::vector<std::pair<LaunchHandle, int>>& signals() const { return signals_; }

 private:
  absl::Status fail_with_;
  LaunchHandle next_handle_ = 1;
  LaunchHandle last_ = 0;
  absl::flat_hash_map<LaunchHandle, LaunchSpec> specs_;
  absl::flat_hash_map<LaunchHandle, ExitCallback> exits_;
  std::vector<std::pair<LaunchHandle, int>> signals_;
};

constexpr char kFramework[] = "fw1";

AgentOptions TestOptions() {
  static int counter = 0;
  AgentOptions options;
  options.hostname = "agent.example";
  options.http_address = "http://agent.example:5081";
  options.master_address = "master.example:5050";
  options.work_dir = std::filesystem::path(::testing::TempDir()) /
                     ("agent_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  options.resources = *Resources::Parse("cpus:2;mem:1024");
  options.version = "test";
  options.default_kill_grace_period = absl::Seconds(3);
  return options;
}

MasterMessage Registered(const std::string& agent_id) {
  MasterMessage message;
  message.mutable_registered()->set_agent_id(agent_id);
  return message;
}

MasterMessage RunTaskMessage(const std::string& task_id,
                             const std::string& framework_id = kFramework) {
  MasterMessage message;
  auto* run = message.mutable_run_task();
  run->mutable_framework()->set_id(framework_id);
  run->mutable_framework()->set_name("test framework");
  run->mutable_task()->set_task_id(task_id);
  run->mutable_task()->set_name("task " + task_id);
  run->mutable_task()->mutable_command()->set_shell(true);
  run->mutable_task()->mutable_command()->set_value("true");
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

class AgentTest : public ::testing::Test {
 protected:
  AgentTest()
      : agent_(
            options_, loop_, launcher_,
            [this](absl::AnyInvocable<void() &&> job) { jobs_.push_back(std::move(job)); }, master_,
            snapshot_) {
    agent_.Start();
  }

  // Opens a stream and completes the registration as agent "a1".
  void Register() {
    agent_.OnMasterConnected();
    agent_.OnMasterMessage(Registered("a1"));
    loop_.RunUntilIdle();
    master_.Take();
  }

  void Deliver(const MasterMessage& message) {
    agent_.OnMasterMessage(message);
    loop_.RunUntilIdle();
  }

  // Runs the jobs handed to the worker pool, then what they posted.
  void RunJobs() {
    while (!jobs_.empty()) {
      absl::AnyInvocable<void()&&> job = std::move(jobs_.front());
      jobs_.pop_front();
      std::move(job)();
    }
    loop_.RunUntilIdle();
  }

  void Exit(LaunchHandle handle, int wait_status) {
    launcher_.Exit(handle, wait_status);
    loop_.RunUntilIdle();
  }

  // Expects exactly one update in flight and acknowledges it. Returns it.
  TaskStatus AckOnly() {
    std::vector<TaskStatus> updates = master_.TakeUpdates();
    EXPECT_THAT(updates, SizeIs(1));
    if (updates.empty()) {
      return TaskStatus();
    }
    Deliver(AckMessage(updates.back()));
    return updates.back();
  }

  // Launches `task_id` and acknowledges STARTING and RUNNING. Returns the launch handle.
  LaunchHandle StartRunningTask(const std::string& task_id) {
    Deliver(RunTaskMessage(task_id));
    RunJobs();
    EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
    EXPECT_EQ(AckOnly().state(), rz::v1::TASK_RUNNING);
    return launcher_.last();
  }

  const AgentOptions options_ = TestOptions();
  testing::ManualEventLoop loop_;
  FakeLauncher launcher_;
  FakeMasterConnection master_;
  StateSnapshot snapshot_;
  std::deque<absl::AnyInvocable<void() &&>> jobs_;
  Agent agent_;
};

TEST_F(AgentTest, FirstConnectionSendsRegisterWithoutIdOrTasks) {
  agent_.OnMasterConnected();
  std::vector<AgentMessage> sent = master_.Take();
  ASSERT_THAT(sent, SizeIs(1));
  ASSERT_TRUE(sent[0].has_register_());
  EXPECT_EQ(sent[0].register_().info().id(), "");
  EXPECT_EQ(sent[0].register_().info().hostname(), "agent.example");
  EXPECT_EQ(sent[0].register_().info().http_address(), "http://agent.example:5081");
  EXPECT_THAT(sent[0].register_().info().resources(), SizeIs(2));
  EXPECT_THAT(sent[0].register_().tasks(), IsEmpty());

  agent_.OnMasterMessage(Registered("a1"));
  loop_.RunUntilIdle();
  EXPECT_TRUE(agent_.registered());
  EXPECT_EQ(agent_.id(), AgentId("a1"));
  EXPECT_TRUE(snapshot_.Get()->registered());
  EXPECT_EQ(snapshot_.Get()->info().id(), "a1");
}

TEST_F(AgentTest, RunTaskReportsStartingRunningFinishedInOrderWithOnlyTheHeadInFlight) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  ASSERT_EQ(launcher_.launches(), 1);
  EXPECT_EQ(launcher_.spec(launcher_.last()).sandbox, options_.work_dir + "/sandboxes/fw1/t1");
  EXPECT_TRUE(std::filesystem::is_directory(launcher_.spec(launcher_.last()).sandbox));

  // RUNNING is queued behind the unacknowledged STARTING.
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_STARTING));
  const TaskStatus starting = updates[0];
  EXPECT_EQ(starting.task_id(), "t1");
  EXPECT_EQ(starting.framework_id(), kFramework);
  EXPECT_EQ(starting.agent_id(), "a1");
  EXPECT_EQ(starting.source(), TaskStatus::SOURCE_AGENT);
  EXPECT_EQ(starting.uuid().size(), 16);
  EXPECT_GT(starting.timestamp(), 0);

  Exit(launcher_.last(), 0);
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());

  Deliver(AckMessage(starting));
  updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_RUNNING));
  EXPECT_NE(updates[0].uuid(), starting.uuid());

  Deliver(AckMessage(updates[0]));
  updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FINISHED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_COMMAND_EXITED);
  EXPECT_EQ(updates[0].message(), "command exited with status 0");
  ASSERT_TRUE(updates[0].has_exit_status());
  EXPECT_EQ(updates[0].exit_status(), 0);
  EXPECT_THAT(snapshot_.Get()->tasks(), SizeIs(1));

  // The terminal acknowledgement retires the task.
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  EXPECT_THAT(snapshot_.Get()->tasks(), IsEmpty());
  ASSERT_THAT(snapshot_.Get()->completed_tasks(), SizeIs(1));
  EXPECT_EQ(snapshot_.Get()->completed_tasks(0).state(), rz::v1::TASK_FINISHED);
  EXPECT_EQ(snapshot_.Get()->completed_tasks(0).acknowledged_state(), rz::v1::TASK_FINISHED);
  EXPECT_THAT(snapshot_.Get()->frameworks(), IsEmpty());
  EXPECT_EQ(loop_.pending_timers(), 0);
}

TEST_F(AgentTest, StaleAcknowledgementIsIgnored) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_STARTING));

  TaskStatus stale = updates[0];
  stale.set_uuid(NewUuidBytes());
  Deliver(AckMessage(stale));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());  // RUNNING still waits.

  // The same acknowledgement twice: the second is stale too.
  Deliver(AckMessage(updates[0]));
  std::vector<TaskStatus> running = master_.TakeUpdates();
  ASSERT_THAT(States(running), ElementsAre(rz::v1::TASK_RUNNING));
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  ASSERT_THAT(snapshot_.Get()->tasks(), SizeIs(1));
  EXPECT_EQ(snapshot_.Get()->tasks(0).acknowledged_state(), rz::v1::TASK_STARTING);
}

TEST_F(AgentTest, UnacknowledgedUpdateIsResentWithTheSameUuidWithExponentialBackoff) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  std::vector<TaskStatus> first = master_.TakeUpdates();
  ASSERT_THAT(first, SizeIs(1));

  loop_.AdvanceTime(absl::Milliseconds(999));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  loop_.AdvanceTime(absl::Milliseconds(1));
  std::vector<TaskStatus> retry = master_.TakeUpdates();
  ASSERT_THAT(retry, SizeIs(1));
  EXPECT_EQ(retry[0].uuid(), first[0].uuid());
  EXPECT_EQ(retry[0].state(), rz::v1::TASK_STARTING);

  // The next retry comes 2 s later, then 4 s.
  loop_.AdvanceTime(absl::Milliseconds(1999));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  loop_.AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(master_.TakeUpdates(), SizeIs(1));
  loop_.AdvanceTime(absl::Seconds(4));
  std::vector<TaskStatus> third = master_.TakeUpdates();
  ASSERT_THAT(third, SizeIs(1));
  EXPECT_EQ(third[0].uuid(), first[0].uuid());

  // Acknowledged: the retries stop and the next update starts at 1 s again.
  Deliver(AckMessage(first[0]));
  EXPECT_THAT(States(master_.TakeUpdates()), ElementsAre(rz::v1::TASK_RUNNING));
  loop_.AdvanceTime(absl::Seconds(1));
  EXPECT_THAT(States(master_.TakeUpdates()), ElementsAre(rz::v1::TASK_RUNNING));
}

TEST_F(AgentTest, RetryBackoffIsCappedAtSixtySeconds) {
  Register();
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  master_.Take();
  // 1+2+4+8+16+32 = 63 s, then one retry every 60 s.
  loop_.AdvanceTime(absl::Seconds(63));
  EXPECT_THAT(master_.TakeUpdates(), SizeIs(6));
  loop_.AdvanceTime(absl::Seconds(59));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  loop_.AdvanceTime(absl::Seconds(1));
  EXPECT_THAT(master_.TakeUpdates(), SizeIs(1));
}

TEST_F(AgentTest, KillDuringLaunchReportsKilledAndNeverStartsTheTask) {
  Register();
  Deliver(RunTaskMessage("t1"));
  ASSERT_THAT(jobs_, SizeIs(1));  // The spawn job has not run yet.
  Deliver(KillMessage("t1"));
  RunJobs();
  EXPECT_EQ(launcher_.launches(), 0);

  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_KILLED_DURING_LAUNCH);
  Deliver(AckMessage(updates[0]));
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  EXPECT_THAT(snapshot_.Get()->tasks(), IsEmpty());
  EXPECT_THAT(snapshot_.Get()->completed_tasks(), SizeIs(1));
}

TEST_F(AgentTest, KillThatRacesTheSpawnKillsTheProcessAtOnce) {
  Register();
  Deliver(RunTaskMessage("t1"));
  // The worker spawns and posts its result, but the kill is handled first.
  std::move(jobs_.front())();
  jobs_.pop_front();
  ASSERT_EQ(launcher_.launches(), 1);
  agent_.OnMasterMessage(KillMessage("t1"));
  loop_.RunUntilIdle();

  EXPECT_THAT(launcher_.signals(), ElementsAre(Pair(launcher_.last(), SIGKILL)));
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_KILLED);
  Exit(launcher_.last(), SIGKILL);
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());  // Never RUNNING, no second terminal update.
}

TEST_F(AgentTest, KillOfRunningTaskReportsKillingThenKilledEvenWithExitCodeZero) {
  Register();
  const LaunchHandle handle = StartRunningTask("t1");

  Deliver(KillMessage("t1"));
  EXPECT_THAT(launcher_.signals(), ElementsAre(Pair(handle, SIGTERM)));
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_KILLING);

  Exit(handle, 0);  // The task handled SIGTERM and exited cleanly.
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(updates[0].exit_status(), 0);
  EXPECT_EQ(updates[0].source(), TaskStatus::SOURCE_AGENT);
  EXPECT_THAT(updates[0].message(), HasSubstr("command exited with status 0"));
  // No SIGKILL once the task is gone, even after the grace period.
  loop_.AdvanceTime(absl::Seconds(10));
  EXPECT_THAT(launcher_.signals(), SizeIs(1));
}

TEST_F(AgentTest, SigkillFollowsTheGracePeriodWhenTheTaskIgnoresSigterm) {
  Register();
  const LaunchHandle handle = StartRunningTask("t1");

  Deliver(KillMessage("t1", /*grace=*/5.0));
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_KILLING);
  loop_.AdvanceTime(absl::Milliseconds(4999));
  EXPECT_THAT(launcher_.signals(), ElementsAre(Pair(handle, SIGTERM)));
  loop_.AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(launcher_.signals(), ElementsAre(Pair(handle, SIGTERM), Pair(handle, SIGKILL)));

  Exit(handle, SIGKILL);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_KILLED));
  EXPECT_EQ(updates[0].message(), "task killed: command terminated by signal SIGKILL (9)");
}

TEST_F(AgentTest, DefaultGracePeriodAppliesWithoutAKillPolicy) {
  Register();
  const LaunchHandle handle = StartRunningTask("t1");
  Deliver(KillMessage("t1"));
  loop_.AdvanceTime(absl::Milliseconds(2999));
  EXPECT_THAT(launcher_.signals(), SizeIs(1));
  loop_.AdvanceTime(absl::Milliseconds(1));
  EXPECT_THAT(launcher_.signals(), ElementsAre(Pair(handle, SIGTERM), Pair(handle, SIGKILL)));
}

TEST_F(AgentTest, NonZeroExitFailsTheTaskWithTheRawWaitStatus) {
  Register();
  const LaunchHandle handle = StartRunningTask("t1");
  Exit(handle, 3 << 8);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_COMMAND_EXITED);
  EXPECT_EQ(updates[0].message(), "command exited with status 3");
  EXPECT_EQ(updates[0].exit_status(), 3 << 8);
}

TEST_F(AgentTest, DeathBySignalIsDescribed) {
  Register();
  const LaunchHandle handle = StartRunningTask("t1");
  Exit(handle, SIGTERM);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].message(), "command terminated by signal SIGTERM (15)");
  EXPECT_EQ(updates[0].exit_status(), SIGTERM);
}

TEST_F(AgentTest, ExitBeforeTheLaunchResultStillReportsRunningThenFinished) {
  Register();
  Deliver(RunTaskMessage("t1"));
  std::move(jobs_.front())();  // Spawns; the launch result is posted but not handled yet.
  jobs_.pop_front();
  launcher_.Exit(launcher_.last(), 0);  // The reaper posts the exit right behind it.
  loop_.RunUntilIdle();
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_RUNNING);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_FINISHED);
}

TEST_F(AgentTest, SpawnFailureFailsTheTask) {
  Register();
  launcher_.FailWith(absl::NotFoundError("executable 'nope' not found in PATH '/bin'"));
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_STARTING);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_FAILED));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_CONTAINER_LAUNCH_FAILED);
  EXPECT_THAT(updates[0].message(), HasSubstr("executable 'nope' not found"));
  EXPECT_FALSE(updates[0].has_exit_status());
}

TEST_F(AgentTest, TaskUserIsPassedToTheLauncher) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_framework()->set_user("alice");
  Deliver(run);
  MasterMessage run2 = RunTaskMessage("t2");
  run2.mutable_run_task()->mutable_framework()->set_user("alice");
  run2.mutable_run_task()->mutable_task()->mutable_command()->set_user("bob");
  Deliver(run2);
  RunJobs();
  ASSERT_EQ(launcher_.launches(), 2);
  EXPECT_EQ(launcher_.spec(1).user, "alice");
  EXPECT_EQ(launcher_.spec(2).user, "bob");
  EXPECT_EQ(launcher_.spec(1).agent_id, AgentId("a1"));
  EXPECT_EQ(launcher_.spec(1).task_id, TaskId("t1"));
}

TEST_F(AgentTest, TaskWithoutCommandIsAnError) {
  Register();
  MasterMessage run = RunTaskMessage("t1");
  run.mutable_run_task()->mutable_task()->clear_command();
  Deliver(run);
  RunJobs();
  EXPECT_EQ(launcher_.launches(), 0);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
  EXPECT_EQ(updates[0].message(), "task has no command");
}

TEST_F(AgentTest, TaskIdThatCannotNameADirectoryIsAnError) {
  Register();
  Deliver(RunTaskMessage("../escape"));
  RunJobs();
  EXPECT_EQ(launcher_.launches(), 0);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
}

TEST_F(AgentTest, DuplicateTaskIdIsAnErrorAndLeavesTheFirstTaskAlone) {
  Register();
  StartRunningTask("t1");
  Deliver(RunTaskMessage("t1"));
  RunJobs();
  EXPECT_EQ(launcher_.launches(), 1);
  std::vector<TaskStatus> updates = master_.TakeUpdates();
  ASSERT_THAT(States(updates), ElementsAre(rz::v1::TASK_ERROR));
  EXPECT_EQ(updates[0].reason(), TaskStatus::REASON_TASK_INVALID);
  EXPECT_TRUE(updates[0].uuid().empty());  // Not tracked, so not to be acknowledged.
  ASSERT_THAT(snapshot_.Get()->tasks(), SizeIs(1));
  EXPECT_EQ(snapshot_.Get()->tasks(0).state(), rz::v1::TASK_RUNNING);
}

TEST_F(AgentTest, KillOfUnknownTaskIsIgnored) {
  Register();
  Deliver(KillMessage("nope"));
  EXPECT_THAT(master_.Take(), IsEmpty());
  EXPECT_THAT(launcher_.signals(), IsEmpty());
}

TEST_F(AgentTest, ShutdownFrameworkKillsAllItsTasksWithoutWaitingForAcknowledgements) {
  Register();
  const LaunchHandle h1 = StartRunningTask("t1");
  const LaunchHandle h2 = StartRunningTask("t2");
  Deliver(RunTaskMessage("other", "fw2"));
  RunJobs();
  master_.Take();

  MasterMessage shutdown;
  shutdown.mutable_shutdown_framework()->set_framework_id(kFramework);
  Deliver(shutdown);
  EXPECT_THAT(launcher_.signals(), ElementsAre(Pair(h1, SIGTERM), Pair(h2, SIGTERM)));
  // The master has forgotten the framework: nobody would acknowledge its updates.
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());

  Exit(h1, 0);
  Exit(h2, SIGTERM);
  EXPECT_THAT(master_.TakeUpdates(), IsEmpty());
  // Both tasks are retired at once; the other framework's task is untouched.
  ASSERT_THAT(snapshot_.Get()->tasks(), SizeIs(1));
  EXPECT_EQ(snapshot_.Get()->tasks(0).task_id(), "other");
  ASSERT_THAT(snapshot_.Get()->completed_tasks(), SizeIs(2));
  EXPECT_EQ(snapshot_.Get()->completed_tasks(0).state(), rz::v1::TASK_KILLED);
  EXPECT_EQ(snapshot_.Get()->completed_tasks(1).state(), rz::v1::TASK_KILLED);
}

TEST_F(AgentTest, PingIsAnsweredWithPongCarryingTheNonce) {
  Register();
  master_.Take();
  MasterMessage ping;
  ping.mutable_ping()->set_nonce(42);
  Deliver(ping);
  std::vector<AgentMessage> sent = master_.Take();
  ASSERT_THAT(sent, SizeIs(1));
  ASSERT_TRUE(sent[0].has_pong());
  EXPECT_EQ(sent[0].pong().nonce(), 42u);
}

TEST_F(AgentTest, UpdatesWaitForRegistrationAndAreResentOnANewStream) {
  Register();
  Deliver(RunTaskMessage("t1"));
  std::vector<TaskStatus> before = master_.TakeUpdates();
  ASSERT_THAT(before, SizeIs(1));

  agent_.OnMasterDisconnected();
  loop_.RunUntilIdle();
  EXPECT_FALSE(snapshot_.Get()->registered());
  loop_.AdvanceTime(absl::Seconds(30));
  EXPECT_THAT(master_.Take(), IsEmpty());  // No retries into a broken link.

  agent_.OnMasterConnected();
  loop_.RunUntilIdle();
  std::vector<AgentMessage> sent = master_.Take();
  ASSERT_THAT(sent, SizeIs(1));
  EXPECT_TRUE(sent[0].has_register_());  // Nothing before the master accepted us.

  Deliver(Registered("a1"));
  std::vector<TaskStatus> after = master_.TakeUpdates();
  ASSERT_THAT(after, SizeIs(1));
  EXPECT_EQ(after[0].uuid(), before[0].uuid());
}

TEST_F(AgentTest, ReregistrationCarriesNonTerminalAndUnacknowledgedTerminalTasks) {
  Register();
  StartRunningTask("running");
  const LaunchHandle unacked = StartRunningTask("unacked");
  Exit(unacked, 1 << 8);  // FAILED, never acknowledged.
  master_.Take();
  const LaunchHandle done = StartRunningTask("done");
  Exit(done, 0);
  EXPECT_EQ(AckOnly().state(), rz::v1::TASK_FINISHED);  // Retired to completed tasks.

  agent_.OnMasterDisconnected();
  agent_.OnMasterConnected();
  loop_.RunUntilIdle();
  std::vector<AgentMessage> sent = master_.Take();
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
  std::vector<TaskStatus> resent = master_.TakeUpdates();
  ASSERT_THAT(resent, SizeIs(1));
  EXPECT_EQ(resent[0].task_id(), "unacked");
  EXPECT_EQ(resent[0].state(), rz::v1::TASK_FAILED);
}

TEST_F(AgentTest, CompletedTasksAreBounded) {
  // A second agent with a small bound; the fixture's agent stays idle.
  AgentOptions options = TestOptions();
  options.max_completed_tasks = 2;
  StateSnapshot snapshot;
  Agent agent(
      options, loop_, launcher_,
      [this](absl::AnyInvocable<void() &&> job) { jobs_.push_back(std::move(job)); }, master_,
      snapshot);
  agent.OnMasterConnected();
  agent.OnMasterMessage(Registered("a2"));
  for (const std::string task_id : {"t1", "t2", "t3"}) {
    MasterMessage run = RunTaskMessage(task_id);
    run.mutable_run_task()->mutable_task()->clear_command();  // Ends at once in TASK_ERROR.
    agent.OnMasterMessage(run);
  }
  loop_.RunUntilIdle();
  for (const TaskStatus& update : master_.TakeUpdates()) {
    agent.OnMasterMessage(AckMessage(update));
  }
  loop_.RunUntilIdle();
  ASSERT_THAT(snapshot.Get()->completed_tasks(), SizeIs(2));
  EXPECT_EQ(snapshot.Get()->completed_tasks(0).task_id(), "t2");
  EXPECT_EQ(snapshot.Get()->completed_tasks(1).task_id(), "t3");
}

}  // namespace
}  // namespace rz::agent
