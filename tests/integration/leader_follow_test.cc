// An agent and a scheduler (the real client library) follow the leader from one real
// MasterDaemon to the next (issue 6, H2). A fake standby master (tests/testing/fake_leadership.h)
// refuses everything with the `rz-leader` hint naming whichever real master leads; the clients
// are given only `--master=<standby>,<first master>`, so they can find the second master (on
// another port, recovering the first one's LevelDB registry) only through the standby's hint.
// Over real gRPC on loopback; waits are on conditions with deadlines.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/agent_daemon.h"
#include "common/resources.h"
#include "gtest/gtest.h"
#include "master/master_daemon.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/fake_containerizer.h"
#include "testing/fake_leadership.h"
#include "testing/in_process_cluster.h"

namespace rz {
namespace {

using ::rz::testing::FakeMasterServer;
using ::rz::testing::Leadership;
using ::rz::testing::NextEventWhere;
using ::rz::testing::NextOffers;
using ::rz::testing::NextUpdate;
using ::rz::testing::WaitFor;

class LeaderFollowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rz-leader-follow-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    root_ = dir;
    std::filesystem::create_directories(root_ + "/master");
    std::filesystem::create_directories(root_ + "/agent");
  }

  void TearDown() override {
    scheduler_.reset();
    if (agent_ != nullptr) {
      agent_->Stop();
    }
    agent_.reset();
    master_.reset();
    standby_.Shutdown();
    std::error_code error;
    std::filesystem::remove_all(root_, error);
  }

  // Starts a master on a new port over the registry in <root>/master; the standby names it.
  void StartMaster() {
    master::MasterDaemonOptions options;
    options.ip = "127.0.0.1";
    options.hostname = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    options.registry = master::RegistryBackend::kLevelDb;
    options.work_dir = root_ + "/master";
    master_ = std::make_unique<master::MasterDaemon>(options);
    ASSERT_TRUE(master_->Start().ok());
    leadership_.Register("real", master_->grpc_address());
    leadership_.Lead("real");
  }

  std::shared_ptr<const v1::State> state() { return master_->master().snapshot(); }

  bool AgentRegisteredWithRunningTask(const std::string& task_id) {
    std::shared_ptr<const v1::State> state = this->state();
    if (state->agents_size() != 1 || state->agents(0).status() != v1::AgentState::REGISTERED) {
      return false;
    }
    for (const v1::Task& task : state->tasks()) {
      if (task.task_id() == task_id && task.state() == v1::TASK_RUNNING) {
        return true;
      }
    }
    return false;
  }

  bool FrameworkConnected(const FrameworkId& id) {
    for (const v1::FrameworkState& framework : state()->frameworks()) {
      if (framework.info().id() == id.value()) {
        return framework.connected();
      }
    }
    return false;
  }

  std::string root_;
  Leadership leadership_;
  FakeMasterServer standby_{leadership_, "standby"};
  std::unique_ptr<master::MasterDaemon> master_;
  rz::testing::ClusterContainerizer containerizer_;
  std::unique_ptr<agent::AgentDaemon> agent_;
  std::unique_ptr<scheduler::SchedulerClient> scheduler_;
};

TEST_F(LeaderFollowTest, AgentAndSchedulerFollowTheLeaderToTheNextMaster) {
  StartMaster();
  const std::string first = master_->grpc_address();
  const std::string masters = absl::StrCat(standby_.address(), ",", first);

  agent_ = std::make_unique<agent::AgentDaemon>(
      agent::AgentDaemonOptions{.master = masters,
                                .ip = "127.0.0.1",
                                .hostname = "127.0.0.1",
                                .http_port = 0,
                                .work_dir = root_ + "/agent",
                                .resources = *Resources::Parse("cpus:4;mem:4096"),
                                .default_kill_grace_period = absl::Seconds(1),
                                .registration_backoff_max = absl::Milliseconds(200),
                                .default_task_user = "",
                                .usage_interval = absl::Hours(1),
                                .checkpoint_sync = false,
                                .containerizer = &containerizer_});
  ASSERT_TRUE(agent_->Start().ok());
  ASSERT_TRUE(WaitFor([&] {
    std::shared_ptr<const v1::State> state = this->state();
    return state->agents_size() == 1 && state->agents(0).status() == v1::AgentState::REGISTERED;
  }));

  v1::FrameworkInfo info;
  info.set_name("follower");
  info.set_failover_timeout_seconds(600);
  scheduler::SchedulerClientOptions options;
  options.resubscribe = true;
  options.resubscribe_backoff = absl::Milliseconds(20);
  options.resubscribe_backoff_max = absl::Milliseconds(500);
  scheduler_ = std::make_unique<scheduler::SchedulerClient>(masters, info, options);
  ASSERT_TRUE(scheduler_->Subscribe(absl::Seconds(10)).ok());
  EXPECT_EQ(scheduler_->master_address(), first);
  const FrameworkId framework_id = scheduler_->framework_id();
  const StreamId first_stream = scheduler_->stream_id();

  std::vector<v1::Offer> offers = NextOffers(*scheduler_);
  ASSERT_FALSE(offers.empty());
  v1::TaskInfo task = rz::testing::ClusterTask("t1");
  task.set_agent_id(offers[0].agent_id());
  ASSERT_TRUE(scheduler_->Launch({OfferId(offers[0].id())}, {task}).ok());
  std::optional<v1::TaskStatus> update;
  do {
    update = NextUpdate(*scheduler_, "t1");
  } while (update.has_value() && update->state() != v1::TASK_RUNNING);
  ASSERT_TRUE(update.has_value());

  // Failover: the first master goes away; the next one recovers its registry on another port,
  // and only the standby's hint leads there.
  master_.reset();
  StartMaster();
  const std::string second = master_->grpc_address();

  // The agent reregisters there with its running task; nothing is launched again.
  EXPECT_TRUE(WaitFor([&] { return AgentRegisteredWithRunningTask("t1"); }))
      << state()->DebugString();
  EXPECT_EQ(containerizer_.launches(), 1);

  // The scheduler resubscribes there with its framework id.
  std::optional<v1::Event> subscribed =
      NextEventWhere(*scheduler_, [](const v1::Event& e) { return e.has_subscribed(); });
  ASSERT_TRUE(subscribed.has_value());
  EXPECT_EQ(subscribed->subscribed().framework_id(), framework_id.value());
  EXPECT_NE(scheduler_->stream_id(), first_stream);
  EXPECT_EQ(scheduler_->master_address(), second);
  EXPECT_TRUE(WaitFor([&] { return FrameworkConnected(framework_id); }));

  // Calls reach the new leader and, through it, the agent.
  ASSERT_TRUE(scheduler_->Kill(TaskId("t1")).ok());
  do {
    update = NextUpdate(*scheduler_, "t1");
  } while (update.has_value() && update->state() != v1::TASK_KILLED);
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_KILLED);
}

}  // namespace
}  // namespace rz
