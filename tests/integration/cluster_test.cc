// End-to-end tests of one master and one agent in this process, with a scheduler using the
// framework client library, over real gRPC and HTTP on loopback. Tasks are real processes.
// Waits are on conditions with deadlines (real threads and processes are involved).
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_daemon.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "master/master_daemon.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/build_dir.h"

namespace rz {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);

// Polls `condition` until it holds or `kDeadline` passes.
template <typename F>
bool WaitFor(F condition) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (absl::Now() < deadline) {
    if (condition()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rz-cluster-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    work_dir_ = dir;

    master::MasterDaemonOptions master_options;
    master_options.ip = "127.0.0.1";
    master_options.hostname = "127.0.0.1";
    master_options.port = 0;
    master_options.http_port = 0;
    master_options.registry = master::RegistryBackend::kInMemory;
    master_ = std::make_unique<master::MasterDaemon>(master_options);
    ASSERT_TRUE(master_->Start().ok());

    agent_ = std::make_unique<agent::AgentDaemon>(
        agent::AgentDaemonOptions{.master = master_->grpc_address(),
                                  .ip = "127.0.0.1",
                                  .hostname = "127.0.0.1",
                                  .http_port = 0,
                                  .work_dir = work_dir_,
                                  .resources = *Resources::Parse("cpus:2;mem:1024"),
                                  .default_kill_grace_period = absl::Seconds(2),
                                  .containerizer_init = testing::ContainerizerInitPath(),
                                  .destroy_containers_on_stop = true});
    ASSERT_TRUE(agent_->Start().ok());
    ASSERT_TRUE(WaitFor([&] {
      auto state = master_->master().snapshot();
      return state->agents_size() == 1 && state->agents(0).status() == v1::AgentState::REGISTERED;
    }));

    v1::FrameworkInfo info;
    info.set_name("cluster-test");
    scheduler_ = std::make_unique<scheduler::SchedulerClient>(master_->grpc_address(), info);
    ASSERT_TRUE(scheduler_->Subscribe(kDeadline).ok());
  }

  void TearDown() override {
    scheduler_.reset();
    agent_.reset();
    master_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(work_dir_, ignored);
  }

  // The next event that satisfies `want`, skipping others; nullopt at the deadline.
  template <typename F>
  std::optional<v1::Event> NextEventWhere(F want) {
    const absl::Time deadline = absl::Now() + kDeadline;
    while (absl::Now() < deadline) {
      std::optional<v1::Event> event = scheduler_->NextEvent(deadline - absl::Now());
      if (event.has_value() && want(*event)) {
        return event;
      }
    }
    return std::nullopt;
  }

  v1::Offer NextOffer() {
    std::optional<v1::Event> event =
        NextEventWhere([](const v1::Event& e) { return e.offers().offers_size() > 0; });
    EXPECT_TRUE(event.has_value());
    return event.has_value() ? event->offers().offers(0) : v1::Offer();
  }

  static v1::TaskInfo ShellTask(const std::string& id, const std::string& command) {
    v1::TaskInfo task;
    task.set_task_id(id);
    task.set_name(id);
    task.mutable_command()->set_shell(true);
    task.mutable_command()->set_value(command);
    ToProto(*Resources::Parse("cpus:0.5;mem:64"), task.mutable_resources());
    return task;
  }

  // Collects (and acknowledges: the agent sends a task's next update only then) updates of
  // `task_id` until one in state `until`, or a terminal one.
  std::vector<v1::TaskStatus> UpdatesUntilTerminal(
      const std::string& task_id, v1::TaskState until = v1::TASK_STATE_UNSPECIFIED) {
    std::vector<v1::TaskStatus> updates;
    while (true) {
      std::optional<v1::Event> event = NextEventWhere([&](const v1::Event& e) {
        return e.has_update() && e.update().status().task_id() == task_id;
      });
      if (!event.has_value()) {
        ADD_FAILURE() << "no terminal update for task '" << task_id << "'";
        return updates;
      }
      const v1::TaskStatus& status = event->update().status();
      updates.push_back(status);
      EXPECT_TRUE(scheduler_->Acknowledge(status).ok());
      if (IsTerminal(status.state()) || status.state() == until) {
        return updates;
      }
    }
  }

  std::string work_dir_;
  std::unique_ptr<master::MasterDaemon> master_;
  std::unique_ptr<agent::AgentDaemon> agent_;
  std::unique_ptr<scheduler::SchedulerClient> scheduler_;
};

std::vector<v1::TaskState> States(const std::vector<v1::TaskStatus>& updates) {
  std::vector<v1::TaskState> states;
  for (const v1::TaskStatus& status : updates) {
    states.push_back(status.state());
  }
  return states;
}

TEST_F(ClusterTest, ATaskRunsToFinishedAndItsAcknowledgementReachesTheAgent) {
  v1::Offer offer = NextOffer();
  EXPECT_EQ(*FromProto(offer.resources()), *Resources::Parse("cpus:2;mem:1024"));
  ASSERT_TRUE(scheduler_->Launch({OfferId(offer.id())}, {ShellTask("t1", "echo hi")}).ok());

  std::vector<v1::TaskStatus> updates = UpdatesUntilTerminal("t1");
  EXPECT_THAT(States(updates),
              ::testing::ElementsAre(v1::TASK_STARTING, v1::TASK_RUNNING, v1::TASK_FINISHED));
  for (const v1::TaskStatus& status : updates) {
    EXPECT_EQ(status.uuid().size(), 16u);
    EXPECT_EQ(status.agent_id(), offer.agent_id());
  }

  // The acknowledgements reached the agent: nothing is left unacknowledged there, and the
  // master moved the task to its completed list.
  EXPECT_TRUE(WaitFor([&] {
    auto state = agent_->state();
    return state->tasks_size() == 0 && state->completed_tasks_size() == 1;
  }));
  EXPECT_TRUE(WaitFor([&] {
    auto state = master_->master().snapshot();
    return state->tasks_size() == 0 && state->completed_tasks_size() == 1 &&
           state->completed_tasks(0).state() == v1::TASK_FINISHED;
  }));

  // The task's stdout is in its sandbox, served by the agent.
  httplib::Client client(offer.agent_http_address());
  auto response = client.Get("/files/read?framework_id=" + scheduler_->framework_id().value() +
                             "&task_id=t1&path=stdout");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "hi\n");
}

TEST_F(ClusterTest, AFailingTaskReportsItsExitStatus) {
  v1::Offer offer = NextOffer();
  ASSERT_TRUE(scheduler_->Launch({OfferId(offer.id())}, {ShellTask("t2", "exit 3")}).ok());
  std::vector<v1::TaskStatus> updates = UpdatesUntilTerminal("t2");
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().state(), v1::TASK_FAILED);
  EXPECT_THAT(updates.back().message(), HasSubstr("status 3"));
  ASSERT_TRUE(updates.back().has_exit_status());
  EXPECT_EQ(WEXITSTATUS(updates.back().exit_status()), 3);
}

// LAUNCH_GROUP end to end: both tasks start in one parent cgroup; when one fails the agent
// kills the other (SCENARIOS G5).
TEST_F(ClusterTest, WhenOneTaskOfAGroupFailsTheOthersAreKilled) {
  v1::Offer offer = NextOffer();
  v1::Operation op;
  op.set_type(v1::Operation::LAUNCH_GROUP);
  *op.mutable_launch_group()->add_tasks() = ShellTask("ga", "sleep 0.5; exit 3");
  *op.mutable_launch_group()->add_tasks() = ShellTask("gb", "sleep 60");
  ASSERT_TRUE(scheduler_->Accept({OfferId(offer.id())}, {op}).ok());
  std::map<std::string, v1::TaskStatus> last;
  while (!(last.contains("ga") && IsTerminal(last["ga"].state()) && last.contains("gb") &&
           IsTerminal(last["gb"].state()))) {
    std::optional<v1::Event> event = NextEventWhere([](const v1::Event& e) {
      return e.has_update() &&
             (e.update().status().task_id() == "ga" || e.update().status().task_id() == "gb");
    });
    ASSERT_TRUE(event.has_value()) << "the group's tasks did not both end";
    const v1::TaskStatus& status = event->update().status();
    last[status.task_id()] = status;
    ASSERT_TRUE(scheduler_->Acknowledge(status).ok());
  }
  EXPECT_EQ(last["ga"].state(), v1::TASK_FAILED);
  EXPECT_EQ(WEXITSTATUS(last["ga"].exit_status()), 3);
  EXPECT_EQ(last["gb"].state(), v1::TASK_KILLED);
  EXPECT_EQ(last["gb"].reason(), v1::TaskStatus::REASON_TASK_GROUP_MEMBER_FAILED);
}

TEST_F(ClusterTest, AKilledTaskEndsKilled) {
  v1::Offer offer = NextOffer();
  ASSERT_TRUE(scheduler_->Launch({OfferId(offer.id())}, {ShellTask("t3", "sleep 60")}).ok());
  ASSERT_EQ(UpdatesUntilTerminal("t3", v1::TASK_RUNNING).back().state(), v1::TASK_RUNNING);
  ASSERT_TRUE(scheduler_->Kill(TaskId("t3")).ok());
  std::vector<v1::TaskStatus> updates = UpdatesUntilTerminal("t3");
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().state(), v1::TASK_KILLED);
}

TEST_F(ClusterTest, AnAcceptNamingAnUnknownOfferDropsTheTask) {
  NextOffer();
  ASSERT_TRUE(scheduler_->Launch({OfferId("no-such-offer")}, {ShellTask("t4", "true")}).ok());
  std::optional<v1::Event> event = NextEventWhere(
      [](const v1::Event& e) { return e.has_update() && e.update().status().task_id() == "t4"; });
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->update().status().state(), v1::TASK_DROPPED);
  EXPECT_EQ(event->update().status().reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_THAT(event->update().status().message(), HasSubstr("'no-such-offer'"));
}

TEST_F(ClusterTest, TeardownKillsTheFrameworksTasksOnTheAgent) {
  v1::Offer offer = NextOffer();
  ASSERT_TRUE(scheduler_->Launch({OfferId(offer.id())}, {ShellTask("t5", "sleep 60")}).ok());
  ASSERT_EQ(UpdatesUntilTerminal("t5", v1::TASK_RUNNING).back().state(), v1::TASK_RUNNING);
  // Tear the scheduler down: the master tells the agent to shut the framework down and the
  // task is killed there.
  ASSERT_TRUE(scheduler_->Teardown().ok());
  EXPECT_TRUE(WaitFor([&] { return master_->master().snapshot()->frameworks_size() == 0; }));
  EXPECT_TRUE(WaitFor([&] {
    auto state = agent_->state();
    for (const v1::Task& task : state->tasks()) {
      if (task.task_id() == "t5" && task.state() != v1::TASK_KILLED) return false;
    }
    for (const v1::Task& task : state->completed_tasks()) {
      if (task.task_id() == "t5") return task.state() == v1::TASK_KILLED;
    }
    return state->tasks_size() == 1;
  }));
}

}  // namespace
}  // namespace rz
