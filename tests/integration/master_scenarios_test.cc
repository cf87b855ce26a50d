// The master scenarios of SCENARIOS.md (M1–M8) on the in-process cluster: a real MasterDaemon
// on a manual clock, AgentDaemons with a fake containerizer, schedulers using the client
// library, all over real gRPC on loopback.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rz/v1/operator.grpc.pb.h"
#include "testing/in_process_cluster.h"

namespace rz::testing {
namespace {

using ::testing::HasSubstr;

class MasterScenarioTest : public ::testing::Test {
 protected:
  void StartCluster(int agents = 1, master::MasterOptions options = Options()) {
    cluster_ = std::make_unique<InProcessCluster>(
        InProcessClusterOptions{.agents = agents, .master = options});
    ASSERT_TRUE(cluster_->Start().ok());
  }

  static master::MasterOptions Options() {
    master::MasterOptions options;
    options.offer_timeout = absl::Seconds(30);
    options.allocation_interval = absl::Seconds(1);
    // Far away, so that only the timers a test drives fire.
    options.heartbeat_interval = absl::Hours(1);
    options.agent_ping_interval = absl::Hours(1);
    options.agent_ping_timeout = absl::Hours(2);
    options.agent_reregister_timeout = absl::Seconds(60);
    return options;
  }

  static v1::FrameworkInfo Framework(const std::string& role = "*", double failover = 0) {
    v1::FrameworkInfo info;
    info.set_name("scenario");
    info.add_roles(role);
    info.set_failover_timeout_seconds(failover);
    return info;
  }

  // Launches `task` on the first offer and waits until it runs.
  void LaunchRunning(scheduler::SchedulerClient& client, v1::TaskInfo task) {
    std::vector<v1::Offer> offers = NextOffers(client);
    ASSERT_FALSE(offers.empty());
    task.set_agent_id(offers[0].agent_id());
    ASSERT_TRUE(client.Launch({OfferId(offers[0].id())}, {task}).ok());
    while (true) {
      std::optional<v1::TaskStatus> update = NextUpdate(client, task.task_id());
      ASSERT_TRUE(update.has_value()) << "no update for " << task.task_id();
      if (update->state() == v1::TASK_RUNNING) {
        return;
      }
      ASSERT_FALSE(IsTerminal(update->state())) << update->DebugString();
    }
  }

  int64_t Counter(const std::string& name) const {
    auto state = cluster_->state();
    auto it = state->counters().find(name);
    return it == state->counters().end() ? 0 : it->second;
  }

  std::unique_ptr<InProcessCluster> cluster_;
};

// M1. An unanswered offer is rescinded at the offer timeout and offered again next cycle.
TEST_F(MasterScenarioTest, M1_UnansweredOffersAreRescindedAtTheTimeoutAndOfferedAgain) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  std::vector<v1::Offer> offers = NextOffers(*client);
  ASSERT_EQ(offers.size(), 1u);

  cluster_->AdvanceMasterClock(absl::Seconds(29));
  EXPECT_FALSE(
      NextEventWhere(
          *client, [](const v1::Event& e) { return e.has_rescind(); }, absl::Milliseconds(200))
          .has_value());

  cluster_->AdvanceMasterClock(absl::Seconds(2));
  std::optional<v1::Event> rescind =
      NextEventWhere(*client, [](const v1::Event& e) { return e.has_rescind(); });
  ASSERT_TRUE(rescind.has_value());
  EXPECT_EQ(rescind->rescind().offer_id(), offers[0].id());

  cluster_->AdvanceMasterClock(absl::Seconds(1));
  std::vector<v1::Offer> again = NextOffers(*client);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_NE(again[0].id(), offers[0].id());
  EXPECT_EQ(again[0].agent_id(), offers[0].agent_id());
}

// M1. A declined offer is never rescinded by the timer.
TEST_F(MasterScenarioTest, M1_DeclinedOffersAreNotRescinded) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  std::vector<v1::Offer> offers = NextOffers(*client);
  ASSERT_EQ(offers.size(), 1u);
  ASSERT_TRUE(client->Decline({OfferId(offers[0].id())}, /*refuse_seconds=*/100).ok());
  cluster_->AdvanceMasterClock(absl::Seconds(31));
  EXPECT_FALSE(
      NextEventWhere(
          *client, [](const v1::Event& e) { return e.has_rescind(); }, absl::Milliseconds(300))
          .has_value());
}

// M2. Offers of two agents in one ACCEPT: every task dropped naming the problem, the
// resources come back, a counter counts it.
TEST_F(MasterScenarioTest, M2_OffersOfTwoAgentsInOneAcceptDropTheTasks) {
  StartCluster(/*agents=*/2);
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  std::vector<v1::Offer> offers = NextOffers(*client);
  while (offers.size() < 2) {
    std::vector<v1::Offer> more = NextOffers(*client);
    ASSERT_FALSE(more.empty());
    offers.insert(offers.end(), more.begin(), more.end());
  }
  ASSERT_NE(offers[0].agent_id(), offers[1].agent_id());
  v1::TaskInfo task = ClusterTask("t1");
  task.set_agent_id(offers[0].agent_id());
  ASSERT_TRUE(
      client->Launch({OfferId(offers[0].id()), OfferId(offers[1].id())}, {task}, /*refuse=*/0)
          .ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*client, "t1");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_DROPPED);
  EXPECT_EQ(update->source(), v1::TaskStatus::SOURCE_MASTER);
  EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_THAT(update->message(), HasSubstr("different agents"));
  EXPECT_TRUE(WaitFor([&] { return Counter("invalid_accepts") == 1; }));

  // Both agents' resources are offered again.
  cluster_->AdvanceMasterClock(absl::Seconds(1));
  std::vector<v1::Offer> again = NextOffers(*client);
  while (again.size() < 2) {
    std::vector<v1::Offer> more = NextOffers(*client);
    ASSERT_FALSE(more.empty());
    again.insert(again.end(), more.begin(), more.end());
  }
  EXPECT_NE(again[0].agent_id(), again[1].agent_id());
}

// M2. An offer id used twice, and an unknown offer.
TEST_F(MasterScenarioTest, M2_DuplicateAndUnknownOffersDropTheTasks) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  std::vector<v1::Offer> offers = NextOffers(*client);
  ASSERT_EQ(offers.size(), 1u);
  v1::TaskInfo task = ClusterTask("dup");
  task.set_agent_id(offers[0].agent_id());
  ASSERT_TRUE(client->Launch({OfferId(offers[0].id()), OfferId(offers[0].id())}, {task}, 0).ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*client, "dup");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_DROPPED);
  EXPECT_THAT(update->message(), HasSubstr("more than once"));

  v1::TaskInfo unknown = ClusterTask("unknown");
  ASSERT_TRUE(client->Launch({OfferId("no-such-offer")}, {unknown}, 0).ok());
  update = NextUpdate(*client, "unknown");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_DROPPED);
  EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_THAT(update->message(), HasSubstr("no-such-offer"));
  EXPECT_TRUE(WaitFor([&] { return Counter("invalid_accepts") == 2; }));
}

// M2. Offers allocated to two roles cannot be combined. A quota limit on role "a" cuts its
// offer, so the rest of the agent is offered to role "b" of the same framework.
TEST_F(MasterScenarioTest, M2_OffersOfTwoRolesDropTheTasks) {
  StartCluster();
  auto channel =
      grpc::CreateChannel(cluster_->master().grpc_address(), grpc::InsecureChannelCredentials());
  auto operator_stub = v1::Operator::NewStub(channel);
  v1::UpdateQuotaRequest quota;
  v1::QuotaConfig* config = quota.add_quotas();
  config->set_role("a");
  ToProto(*Resources::Parse("cpus:1;mem:512"), config->mutable_limits());
  grpc::ClientContext context;
  v1::UpdateResponse response;
  ASSERT_TRUE(operator_stub->UpdateQuota(&context, quota, &response).ok());

  v1::FrameworkInfo info = Framework("a");
  info.add_roles("b");
  auto client = cluster_->Subscribe(info);
  ASSERT_NE(client, nullptr);
  std::map<std::string, v1::Offer> by_role;
  for (int round = 0; round < 5 && by_role.size() < 2; ++round) {
    for (const v1::Offer& offer : NextOffers(*client, absl::Seconds(2))) {
      by_role.emplace(offer.role(), offer);
    }
    cluster_->AdvanceMasterClock(absl::Seconds(1));
  }
  ASSERT_EQ(by_role.size(), 2u);
  ASSERT_EQ(by_role["a"].agent_id(), by_role["b"].agent_id());
  v1::TaskInfo task = ClusterTask("roles", "cpus:0.5;mem:64");
  task.set_agent_id(by_role["a"].agent_id());
  ASSERT_TRUE(
      client->Launch({OfferId(by_role["a"].id()), OfferId(by_role["b"].id())}, {task}, 0).ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*client, "roles");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_DROPPED);
  EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_THAT(update->message(), HasSubstr("different roles"));
  EXPECT_EQ(cluster_->containerizer(0).launches(), 0);
}

// M2. Resources not in the offers.
TEST_F(MasterScenarioTest, M2_ATaskLargerThanItsOffersIsDropped) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  std::vector<v1::Offer> offers = NextOffers(*client);
  ASSERT_EQ(offers.size(), 1u);
  v1::TaskInfo task = ClusterTask("big", "cpus:64;mem:128");
  task.set_agent_id(offers[0].agent_id());
  ASSERT_TRUE(client->Launch({OfferId(offers[0].id())}, {task}, 0).ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*client, "big");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_DROPPED);
  EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_THAT(update->message(), HasSubstr("do not hold"));
  EXPECT_EQ(cluster_->containerizer(0).launches(), 0);
}

// M3. KILL of an unknown task answers like a reconciliation.
TEST_F(MasterScenarioTest, M3_KillOfAnUnknownTaskAnswersWithAReconciliationUpdate) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Kill(TaskId("ghost")).ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*client, "ghost");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->source(), v1::TaskStatus::SOURCE_MASTER);
  EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_RECONCILIATION);
  EXPECT_TRUE(update->state() == v1::TASK_UNKNOWN || update->state() == v1::TASK_GONE)
      << v1::TaskState_Name(update->state());
}

// M4. A second scheduler with the same framework id takes over; the first gets ERROR and its
// stream closes; the new info shows in /state.
TEST_F(MasterScenarioTest, M4_SchedulerFailoverMovesTheFrameworkToTheNewInstance) {
  StartCluster();
  auto first = cluster_->Subscribe(Framework("*", 60));
  ASSERT_NE(first, nullptr);
  LaunchRunning(*first, ClusterTask("keeps-running"));

  v1::FrameworkInfo info = Framework("*", 120);
  info.set_id(first->framework_id().value());
  info.set_name("renamed");
  auto second = cluster_->Subscribe(info);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->framework_id(), first->framework_id());

  std::optional<v1::Event> error =
      NextEventWhere(*first, [](const v1::Event& e) { return e.has_error(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_THAT(error->error().message(), HasSubstr("framework failed over"));
  EXPECT_FALSE(first->Kill(TaskId("keeps-running")).ok());  // Its stream is no longer current.

  ASSERT_TRUE(WaitFor([&] {
    auto state = cluster_->state();
    return state->frameworks_size() == 1 && state->frameworks(0).info().name() == "renamed" &&
           state->frameworks(0).info().failover_timeout_seconds() == 120;
  }));
  EXPECT_TRUE(cluster_->containerizer(0).Running("keeps-running"));

  // A changed principal is refused.
  v1::FrameworkInfo other = info;
  other.set_principal("mallory");
  scheduler::SchedulerClient third(cluster_->master().grpc_address(), other);
  absl::Status status = third.Subscribe(kClusterDeadline);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("principal"));
}

// M5. A scheduler that does not return within its failover timeout: its tasks are killed, the
// framework is completed, and subscribing with its id again is refused.
TEST_F(MasterScenarioTest, M5_AFrameworkPastItsFailoverTimeoutIsTornDown) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 10));
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("orphan"));
  const std::string id = client->framework_id().value();
  client->Close();
  ASSERT_TRUE(WaitFor([&] {
    auto state = cluster_->state();
    return state->frameworks_size() == 1 && !state->frameworks(0).connected();
  }));

  cluster_->AdvanceMasterClock(absl::Seconds(9));
  EXPECT_TRUE(cluster_->containerizer(0).Running("orphan"));
  EXPECT_EQ(cluster_->state()->frameworks_size(), 1);

  cluster_->AdvanceMasterClock(absl::Seconds(2));
  ASSERT_TRUE(WaitFor([&] { return !cluster_->containerizer(0).Running("orphan"); }));
  ASSERT_TRUE(WaitFor([&] {
    auto state = cluster_->state();
    return state->frameworks_size() == 0 && state->completed_frameworks_size() == 1;
  }));

  v1::FrameworkInfo again = Framework("*", 10);
  again.set_id(id);
  scheduler::SchedulerClient returning(cluster_->master().grpc_address(), again);
  absl::Status status = returning.Subscribe(kClusterDeadline);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("torn down"));
}

// M5. The same after TEARDOWN.
TEST_F(MasterScenarioTest, M5_ATornDownFrameworkCannotComeBack) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 3600));
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("doomed"));
  const std::string id = client->framework_id().value();
  ASSERT_TRUE(client->Teardown().ok());
  ASSERT_TRUE(WaitFor([&] { return !cluster_->containerizer(0).Running("doomed"); }));
  v1::FrameworkInfo again = Framework("*", 10);
  again.set_id(id);
  scheduler::SchedulerClient returning(cluster_->master().grpc_address(), again);
  EXPECT_FALSE(returning.Subscribe(kClusterDeadline).ok());
}

// M5. The failover deadline survives a master restart: the framework is still torn down at
// its original deadline, not a full timeout after the restart.
TEST_F(MasterScenarioTest, M5_TheFailoverDeadlineSurvivesAMasterRestart) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 30));
  ASSERT_NE(client, nullptr);
  client->Close();
  double deadline = 0;
  ASSERT_TRUE(WaitFor([&] {
    auto state = cluster_->state();
    if (state->frameworks_size() != 1 || state->frameworks(0).connected()) {
      return false;
    }
    deadline = state->frameworks(0).failover_deadline();
    return true;
  }));
  cluster_->AdvanceMasterClock(absl::Seconds(10));
  ASSERT_TRUE(cluster_->RestartMaster().ok());
  ASSERT_TRUE(WaitFor([&] {
    auto state = cluster_->state();
    return state->frameworks_size() == 1 && !state->frameworks(0).connected();
  }));
  EXPECT_DOUBLE_EQ(cluster_->state()->frameworks(0).failover_deadline(), deadline);

  cluster_->AdvanceMasterClock(absl::Seconds(19));
  EXPECT_EQ(cluster_->state()->frameworks_size(), 1);
  cluster_->AdvanceMasterClock(absl::Seconds(2));
  EXPECT_TRUE(WaitFor([&] { return cluster_->state()->frameworks_size() == 0; }));
}

// M7. After a master restart, a task on an agent the registry knows but which has not
// reregistered yet gets no reconciliation answer until the agent is back.
TEST_F(MasterScenarioTest, M7_ReconciliationWaitsForARecoveredAgent) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 3600));
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("waiting"));
  const std::string agent_id = cluster_->agent_id(0);
  const std::string framework_id = client->framework_id().value();
  client->Close();
  cluster_->StopAgent(0);
  ASSERT_TRUE(cluster_->RestartMaster().ok());

  v1::FrameworkInfo info = Framework("*", 3600);
  info.set_id(framework_id);
  auto resumed = cluster_->Subscribe(info);
  ASSERT_NE(resumed, nullptr);
  ASSERT_TRUE(resumed->Reconcile({{TaskId("waiting"), AgentId(agent_id)}}).ok());
  EXPECT_FALSE(NextUpdate(*resumed, "waiting", true, absl::Milliseconds(500)).has_value());

  ASSERT_TRUE(cluster_->RestartAgent(0).ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*resumed, "waiting");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_RUNNING);
  EXPECT_TRUE(cluster_->containerizer(0).Running("waiting"));
}

// M6. An agent that goes away: after the reregistration timeout its tasks are UNREACHABLE
// with an unreachable time; when it comes back they are RUNNING again and nothing is killed.
TEST_F(MasterScenarioTest, M6_TasksOfAPartitionedAgentComeBackRunning) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 3600));
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("survivor"));
  const std::string agent_id = cluster_->agent_id(0);

  cluster_->StopAgent(0);
  ASSERT_TRUE(WaitFor([&] {
    auto state = cluster_->state();
    return state->agents_size() == 1 && state->agents(0).status() != v1::AgentState::REGISTERED;
  }));
  cluster_->AdvanceMasterClock(absl::Seconds(61));
  std::optional<v1::TaskStatus> unreachable = NextUpdate(*client, "survivor");
  ASSERT_TRUE(unreachable.has_value());
  EXPECT_EQ(unreachable->state(), v1::TASK_UNREACHABLE);
  EXPECT_EQ(unreachable->reason(), v1::TaskStatus::REASON_AGENT_REMOVED);
  EXPECT_GT(unreachable->unreachable_time(), 0);

  ASSERT_TRUE(cluster_->RestartAgent(0).ok());
  EXPECT_EQ(cluster_->agent_id(0), agent_id);
  std::optional<v1::TaskStatus> back = NextUpdate(*client, "survivor");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->state(), v1::TASK_RUNNING);
  EXPECT_TRUE(cluster_->containerizer(0).Running("survivor"));
  EXPECT_TRUE(cluster_->containerizer(0).kills().empty());
}

// M6. A task that finished while its agent was away is reported FINISHED when it returns.
TEST_F(MasterScenarioTest, M6_ATaskThatFinishedWhileAwayIsReportedFinished) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 3600));
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("finisher"));

  cluster_->StopAgent(0);
  cluster_->AdvanceMasterClock(absl::Seconds(61));
  std::optional<v1::TaskStatus> unreachable = NextUpdate(*client, "finisher");
  ASSERT_TRUE(unreachable.has_value());
  EXPECT_EQ(unreachable->state(), v1::TASK_UNREACHABLE);

  ASSERT_TRUE(cluster_->containerizer(0).ExitTask("finisher", 0));
  ASSERT_TRUE(cluster_->RestartAgent(0).ok());
  bool finished = false;
  for (int i = 0; i < 4 && !finished; ++i) {
    std::optional<v1::TaskStatus> update = NextUpdate(*client, "finisher");
    ASSERT_TRUE(update.has_value());
    finished = update->state() == v1::TASK_FINISHED;
  }
  EXPECT_TRUE(finished);
}

// M7. Explicit reconciliation: known task → its latest state; unknown task on a registered
// agent → TASK_GONE; unknown agent → TASK_UNKNOWN; all with reason RECONCILIATION.
TEST_F(MasterScenarioTest, M7_ExplicitReconciliation) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("known"));
  const std::string agent_id = cluster_->agent_id(0);
  ASSERT_TRUE(client
                  ->Reconcile({{TaskId("known"), AgentId(agent_id)},
                               {TaskId("never-launched"), AgentId(agent_id)},
                               {TaskId("elsewhere"), AgentId("no-such-agent")}})
                  .ok());
  for (const auto& [task, state] :
       std::vector<std::pair<std::string, v1::TaskState>>{{"known", v1::TASK_RUNNING},
                                                          {"never-launched", v1::TASK_GONE},
                                                          {"elsewhere", v1::TASK_UNKNOWN}}) {
    std::optional<v1::TaskStatus> update = NextUpdate(*client, task);
    ASSERT_TRUE(update.has_value()) << task;
    EXPECT_EQ(update->state(), state) << task;
    EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_RECONCILIATION) << task;
    EXPECT_EQ(update->source(), v1::TaskStatus::SOURCE_MASTER) << task;
    EXPECT_TRUE(update->uuid().empty()) << task;
  }
}

// M7. A task on an unreachable agent reconciles as TASK_UNREACHABLE with its unreachable time.
TEST_F(MasterScenarioTest, M7_ReconciliationOfATaskOnAnUnreachableAgent) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework("*", 3600));
  ASSERT_NE(client, nullptr);
  LaunchRunning(*client, ClusterTask("far"));
  const std::string agent_id = cluster_->agent_id(0);
  cluster_->StopAgent(0);
  cluster_->AdvanceMasterClock(absl::Seconds(61));
  std::optional<v1::TaskStatus> unreachable = NextUpdate(*client, "far");
  ASSERT_TRUE(unreachable.has_value());
  ASSERT_TRUE(client->Reconcile({{TaskId("far"), AgentId(agent_id)}}).ok());
  std::optional<v1::TaskStatus> update = NextUpdate(*client, "far");
  ASSERT_TRUE(update.has_value());
  EXPECT_EQ(update->state(), v1::TASK_UNREACHABLE);
  EXPECT_EQ(update->reason(), v1::TaskStatus::REASON_RECONCILIATION);
  EXPECT_DOUBLE_EQ(update->unreachable_time(), unreachable->unreachable_time());
}

// M8. Implicit reconciliation sends every non-terminal task, and a terminal one only while its
// terminal update is unacknowledged.
TEST_F(MasterScenarioTest, M8_ImplicitReconciliation) {
  StartCluster();
  auto client = cluster_->Subscribe(Framework());
  ASSERT_NE(client, nullptr);
  std::vector<v1::Offer> offers = NextOffers(*client);
  ASSERT_EQ(offers.size(), 1u);
  std::vector<v1::TaskInfo> tasks = {ClusterTask("running", "cpus:0.5;mem:64"),
                                     ClusterTask("acked", "cpus:0.5;mem:64", "exit 0"),
                                     ClusterTask("unacked", "cpus:0.5;mem:64", "exit 1")};
  for (v1::TaskInfo& task : tasks) {
    task.set_agent_id(offers[0].agent_id());
  }
  ASSERT_TRUE(client->Launch({OfferId(offers[0].id())}, tasks).ok());
  // "acked" is acknowledged up to FINISHED; "unacked" up to (not including) FAILED.
  for (bool done = false; !done;) {
    std::optional<v1::TaskStatus> update = NextUpdate(*client, "acked");
    ASSERT_TRUE(update.has_value());
    done = update->state() == v1::TASK_FINISHED;
  }
  for (bool done = false; !done;) {
    std::optional<v1::TaskStatus> update = NextUpdate(*client, "unacked", /*ack=*/false);
    ASSERT_TRUE(update.has_value());
    done = update->state() == v1::TASK_FAILED;
    if (!done) {
      ASSERT_TRUE(client->Acknowledge(*update).ok());
    }
  }
  ASSERT_TRUE(WaitFor([&] {
    const auto held = cluster_->state();  // Keeps the snapshot alive for the loop.
    for (const v1::Task& task : held->completed_tasks()) {
      if (task.task_id() == "acked") {
        return true;
      }
    }
    return false;
  }));

  ASSERT_TRUE(client->Reconcile().ok());
  std::set<std::string> answered;
  while (std::optional<v1::Event> event = NextEventWhere(
             *client,
             [](const v1::Event& e) {
               return e.has_update() &&
                      e.update().status().reason() == v1::TaskStatus::REASON_RECONCILIATION;
             },
             absl::Milliseconds(500))) {
    answered.insert(event->update().status().task_id());
  }
  EXPECT_EQ(answered, (std::set<std::string>{"running", "unacked"}));
}

}  // namespace
}  // namespace rz::testing
