// The master and its registry (FakeRegistryStore, manual clock): changes are answered only once
// stored, and a master restarted on the same store carries on with frameworks (and their
// failover deadlines), agents, weights and quota. Registry writes run on a separate
// ManualEventLoop (`worker_`), so a test decides when a write becomes durable.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "master/master.h"
#include "master/master_daemon.h"
#include "master/master_test_fixture.h"
#include "master/registry/registry.h"
#include "testing/fake_registry_store.h"
#include "testing/manual_event_loop.h"

namespace rz::master {
namespace {

using ::rz::testing::ManualEventLoop;
using ::testing::ElementsAre;

class MasterRegistryTest : public ::testing::Test {
 protected:
  MasterRegistryTest() { StartMaster(); }
  ~MasterRegistryTest() override { StopMaster(); }

  static MasterOptions Options() {
    MasterOptions options;
    options.offer_timeout = absl::Seconds(30);
    options.heartbeat_interval = absl::Seconds(1000);
    options.agent_ping_interval = absl::Seconds(1000);
    options.agent_ping_timeout = absl::Seconds(5000);
    options.agent_reregister_timeout = absl::Seconds(75);
    return options;
  }

  void StartMaster() {
    const absl::Time now =
        loop_ == nullptr ? absl::FromUnixSeconds(1'000'000) : loop_->clock().Now();
    loop_ = std::make_unique<ManualEventLoop>();
    loop_->manual_clock().Set(now);
    registry_ = std::make_unique<Registry>(*loop_, worker_, store_);
    absl::StatusOr<RegistryState> state = registry_->Recover();
    ASSERT_TRUE(state.ok()) << state.status();
    v1::MasterInfo info;
    info.set_id("m1");
    master_ = std::make_unique<Master>(*loop_, options_, info, *registry_);
    absl::Status recovered;
    loop_->Post([&] {
      recovered = master_->Recover(*state);
      master_->Start(info);
    });
    Run();
    ASSERT_TRUE(recovered.ok()) << recovered;
  }
  void StopMaster() {
    Run();
    master_.reset();
    registry_.reset();
  }
  // A master restart on the same store; the clock carries on.
  void Restart() {
    StopMaster();
    StartMaster();
  }

  // Runs the master loop and the registry worker until neither has anything to do.
  void Run() {
    while (loop_->RunUntilIdle() + worker_.RunUntilIdle() > 0) {
    }
  }
  void Advance(absl::Duration d) {
    // One second at a time, so writes made by timers are stored as they would be.
    for (absl::Duration done; done < d; done += absl::Seconds(1)) {
      loop_->AdvanceTime(std::min(absl::Seconds(1), d - done));
      Run();
    }
  }

  struct Scheduler {
    StreamId stream_id;
    std::shared_ptr<SchedulerStream> stream;
    std::string framework_id;
    v1::CallHeader header() const {
      v1::CallHeader h;
      h.set_framework_id(framework_id);
      h.set_stream_id(stream_id.value());
      return h;
    }
  };
  // Opens a subscription without running anything.
  Scheduler StartSubscribe(const std::string& id = "", double failover_timeout = 100,
                           const std::string& name = "fw") {
    Scheduler scheduler{StreamId(absl::StrCat("stream-", ++streams_)),
                        std::make_shared<SchedulerStream>(), id};
    v1::SubscribeRequest request;
    request.mutable_framework_info()->set_name(name);
    request.mutable_framework_info()->set_id(id);
    request.mutable_framework_info()->add_roles("dev");
    request.mutable_framework_info()->set_failover_timeout_seconds(failover_timeout);
    master_->Subscribe(request, scheduler.stream_id, scheduler.stream);
    return scheduler;
  }
  Scheduler Subscribe(const std::string& id = "", double failover_timeout = 100) {
    Scheduler scheduler = StartSubscribe(id, failover_timeout);
    Run();
    EXPECT_FALSE(scheduler.stream->messages.empty());
    if (!scheduler.stream->messages.empty() && scheduler.stream->messages[0].has_subscribed()) {
      scheduler.framework_id = scheduler.stream->messages[0].subscribed().framework_id();
    }
    return scheduler;
  }

  struct Agent {
    StreamId link;
    std::shared_ptr<AgentStream> stream;
    std::string id;
  };
  // Registers (or with `id`, reregisters with `tasks`) an agent and runs until it is answered.
  Agent AddAgent(const std::string& id = "", const std::vector<v1::Task>& tasks = {}) {
    Agent agent{StreamId(absl::StrCat("link-", ++links_)), std::make_shared<AgentStream>(), id};
    v1::AgentMessage message;
    v1::AgentInfo* info = message.mutable_register_()->mutable_info();
    info->set_id(id);
    info->set_hostname("h1");
    info->set_http_address("http://h1:5081");
    ToProto(Res("cpus:4;mem:1024"), info->mutable_resources());
    for (const v1::Task& task : tasks) {
      *message.mutable_register_()->add_tasks() = task;
    }
    master_->HandleAgentMessage(agent.link, message, agent.stream);
    Run();
    if (!agent.stream->messages.empty() && agent.stream->messages[0].has_registered()) {
      agent.id = agent.stream->messages[0].registered().agent_id();
    }
    return agent;
  }

  template <typename Message>
  std::optional<Message> Record(const std::string& key) {
    std::optional<RegistryRecord> record = store_.Peek(key);
    if (!record.has_value()) {
      return std::nullopt;
    }
    Message message;
    EXPECT_TRUE(message.ParseFromString(record->value));
    return message;
  }
  static std::vector<v1::TaskStatus> Updates(const std::vector<v1::Event>& events) {
    std::vector<v1::TaskStatus> updates;
    for (const v1::Event& event : events) {
      if (event.has_update()) {
        updates.push_back(event.update().status());
      }
    }
    return updates;
  }
  absl::Status UpdateWeights(const std::string& role, double weight) {
    v1::UpdateWeightsRequest request;
    v1::WeightInfo* info = request.add_weights();
    info->set_role(role);
    info->set_weight(weight);
    std::optional<absl::Status> result;
    master_->UpdateWeights(request, [&](absl::Status status) { result = status; });
    Run();
    return result.value_or(absl::InternalError("no completion"));
  }
  double WeightOf(const std::string& role) {
    const auto held = master_->roles_snapshot();  // Keeps the snapshot alive for the loop.
    for (const v1::RoleInfo& info : held->roles()) {
      if (info.role() == role) {
        return info.weight();
      }
    }
    return -1;
  }

  MasterOptions options_ = Options();  // Of the next StartMaster().
  FakeRegistryStore store_;
  ManualEventLoop worker_;
  std::unique_ptr<ManualEventLoop> loop_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Master> master_;
  int streams_ = 0;
  int links_ = 0;
};

TEST_F(MasterRegistryTest, SubscribedIsSentOnlyOnceTheFrameworkIsStored) {
  Scheduler scheduler = StartSubscribe("", 100, "analytics");
  loop_->RunUntilIdle();
  EXPECT_TRUE(scheduler.stream->messages.empty());
  EXPECT_EQ(store_.size(), 0u);
  worker_.RunUntilIdle();  // Durable now; the answer waits for the loop.
  EXPECT_TRUE(scheduler.stream->messages.empty());
  loop_->RunUntilIdle();
  ASSERT_FALSE(scheduler.stream->messages.empty());
  ASSERT_TRUE(scheduler.stream->messages[0].has_subscribed());
  const std::string id = scheduler.stream->messages[0].subscribed().framework_id();
  std::optional<v1::RegistryFramework> record = Record<v1::RegistryFramework>("framework/" + id);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->info().name(), "analytics");
  EXPECT_FALSE(record->disconnected());
}

TEST_F(MasterRegistryTest, ASecondSubscribeWhileTheFirstIsStoredFailsOverAfterIt) {
  Scheduler first = StartSubscribe("fw-1");
  Scheduler second = StartSubscribe("fw-1");
  Run();
  ASSERT_GE(first.stream->messages.size(), 2u);
  EXPECT_TRUE(first.stream->messages[0].has_subscribed());
  EXPECT_EQ(first.stream->messages[1].error().message(), "framework failed over");
  EXPECT_TRUE(first.stream->closed);
  ASSERT_FALSE(second.stream->messages.empty());
  EXPECT_TRUE(second.stream->messages[0].has_subscribed());
  EXPECT_FALSE(second.stream->closed);
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 1);
}

TEST_F(MasterRegistryTest, AFailedWriteRefusesTheSubscriptionAndKeepsNothing) {
  store_.FailApplies(absl::UnavailableError("disk full"));
  Scheduler scheduler = StartSubscribe("fw-1");
  Run();
  ASSERT_EQ(scheduler.stream->messages.size(), 1u);
  EXPECT_THAT(scheduler.stream->messages[0].error().message(), ::testing::HasSubstr("disk full"));
  EXPECT_TRUE(scheduler.stream->closed);
  EXPECT_EQ(scheduler.stream->close_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(store_.size(), 0u);
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 0);
  // The next attempt is stored and answered.
  Scheduler again = Subscribe("fw-1");
  EXPECT_TRUE(again.stream->messages[0].has_subscribed());
}

TEST_F(MasterRegistryTest, TheFailoverDeadlineSurvivesARestart) {
  Scheduler scheduler = Subscribe("fw-1", /*failover_timeout=*/100);
  const absl::Time disconnected = loop_->clock().Now();
  master_->SchedulerStreamClosed(scheduler.stream_id);
  Run();
  std::optional<v1::RegistryFramework> record = Record<v1::RegistryFramework>("framework/fw-1");
  ASSERT_TRUE(record.has_value());
  EXPECT_TRUE(record->disconnected());
  EXPECT_EQ(record->failover_deadline(),
            absl::ToDoubleSeconds(disconnected + absl::Seconds(100) - absl::UnixEpoch()));

  Advance(absl::Seconds(40));
  Restart();
  ASSERT_EQ(master_->snapshot()->frameworks_size(), 1);
  EXPECT_FALSE(master_->snapshot()->frameworks(0).connected());
  // Torn down at the original deadline (60 s after the restart), not a full timeout later.
  Advance(absl::Seconds(59));
  EXPECT_TRUE(store_.Peek("framework/fw-1").has_value());
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 1);
  Advance(absl::Seconds(2));
  EXPECT_FALSE(store_.Peek("framework/fw-1").has_value());
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 0);

  Scheduler late = StartSubscribe("fw-1");
  Run();
  ASSERT_EQ(late.stream->messages.size(), 1u);
  EXPECT_TRUE(late.stream->messages[0].has_error());
  EXPECT_TRUE(late.stream->closed);
}

TEST_F(MasterRegistryTest, AFrameworkWhoseDeadlinePassedWhileTheMasterWasDownIsRemovedAtOnce) {
  Scheduler scheduler = Subscribe("fw-1", /*failover_timeout=*/10);
  master_->SchedulerStreamClosed(scheduler.stream_id);
  Run();
  StopMaster();
  loop_->manual_clock().Set(loop_->clock().Now() + absl::Seconds(30));
  StartMaster();
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 0);
  EXPECT_FALSE(store_.Peek("framework/fw-1").has_value());
  Scheduler late = StartSubscribe("fw-1");
  Run();
  ASSERT_EQ(late.stream->messages.size(), 1u);
  EXPECT_TRUE(late.stream->messages[0].has_error());
}

TEST_F(MasterRegistryTest, AConnectedFrameworkGetsItsWholeFailoverTimeoutAfterARestart) {
  Subscribe("fw-1", /*failover_timeout=*/100);
  Advance(absl::Seconds(50));
  Restart();
  // Disconnected by the restart: stored so, with a deadline a full timeout from now.
  std::optional<v1::RegistryFramework> record = Record<v1::RegistryFramework>("framework/fw-1");
  ASSERT_TRUE(record.has_value());
  EXPECT_TRUE(record->disconnected());
  Advance(absl::Seconds(99));
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 1);
  // Its scheduler comes back in time: connected, and stored so.
  Scheduler back = Subscribe("fw-1");
  EXPECT_TRUE(back.stream->messages[0].has_subscribed());
  EXPECT_FALSE(Record<v1::RegistryFramework>("framework/fw-1")->disconnected());
  Advance(absl::Seconds(10));
  EXPECT_EQ(master_->snapshot()->frameworks_size(), 1);
}

TEST_F(MasterRegistryTest, RegisteredIsSentOnlyOnceTheAgentIsStored) {
  Agent agent{StreamId("link-x"), std::make_shared<AgentStream>(), ""};
  v1::AgentMessage message;
  message.mutable_register_()->mutable_info()->set_hostname("h1");
  ToProto(Res("cpus:4;mem:1024"), message.mutable_register_()->mutable_info()->mutable_resources());
  master_->HandleAgentMessage(agent.link, message, agent.stream);
  loop_->RunUntilIdle();
  EXPECT_TRUE(agent.stream->messages.empty());
  Run();
  ASSERT_EQ(agent.stream->messages.size(), 1u);
  ASSERT_TRUE(agent.stream->messages[0].has_registered());
  const std::string id = agent.stream->messages[0].registered().agent_id();
  std::optional<v1::RegistryAgent> record = Record<v1::RegistryAgent>("agent/" + id);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->state(), v1::RegistryAgent::ADMITTED);
  EXPECT_EQ(record->info().hostname(), "h1");
}

TEST_F(MasterRegistryTest, AnAgentRefusedByTheRegistryIsNotAdmitted) {
  store_.FailApplies(absl::UnavailableError("disk full"));
  Agent agent = AddAgent();
  EXPECT_TRUE(agent.stream->closed);
  EXPECT_EQ(agent.stream->close_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(agent.stream->close_status.message(), ::testing::HasSubstr("disk full"));
  EXPECT_EQ(master_->snapshot()->agents_size(), 0);
}

TEST_F(MasterRegistryTest, RecoveredAgentsThatDoNotReturnBecomeUnreachable) {
  Agent agent = AddAgent();
  ASSERT_FALSE(agent.id.empty());
  Restart();
  ASSERT_EQ(master_->snapshot()->agents_size(), 1);
  Advance(absl::Seconds(74));
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->state(), v1::RegistryAgent::ADMITTED);
  Advance(absl::Seconds(2));
  std::optional<v1::RegistryAgent> record = Record<v1::RegistryAgent>("agent/" + agent.id);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->state(), v1::RegistryAgent::UNREACHABLE);
  EXPECT_GT(record->unreachable_time(), 0);
  // And it stays unreachable across another restart.
  Restart();
  ASSERT_EQ(master_->snapshot()->agents_size(), 1);
  EXPECT_EQ(master_->snapshot()->agents(0).status(), v1::AgentState::UNREACHABLE);
}

TEST_F(MasterRegistryTest, RunningTasksResumeWhenARecoveredAgentReturns) {
  Scheduler scheduler = Subscribe("fw-1", /*failover_timeout=*/1000);
  Agent agent = AddAgent();
  Restart();
  Scheduler back = Subscribe("fw-1");
  ASSERT_TRUE(back.stream->messages[0].has_subscribed());
  back.stream->Take();
  // Explicit reconciliation of a task on an agent that is not back yet gets no answer (M7).
  v1::ReconcileRequest reconcile;
  *reconcile.mutable_header() = back.header();
  reconcile.add_tasks()->set_task_id("t1");
  reconcile.mutable_tasks(0)->set_agent_id(agent.id);
  ASSERT_TRUE(master_->Reconcile(reconcile).ok());
  Run();
  EXPECT_TRUE(Updates(back.stream->Take()).empty());

  v1::Task task;
  task.set_task_id("t1");
  task.set_framework_id("fw-1");
  task.set_agent_id(agent.id);
  task.set_state(v1::TASK_RUNNING);
  task.set_role("dev");
  ToProto(Res("cpus:1;mem:128"), task.mutable_resources());
  task.mutable_latest_status()->set_state(v1::TASK_RUNNING);
  task.mutable_latest_status()->set_task_id("t1");
  Agent returned = AddAgent(agent.id, {task});
  ASSERT_FALSE(returned.stream->messages.empty());
  EXPECT_TRUE(returned.stream->messages[0].has_registered());
  std::vector<v1::TaskStatus> updates = Updates(back.stream->Take());
  ASSERT_EQ(updates.size(), 1u);  // The held reconciliation is answered now.
  EXPECT_EQ(updates[0].task_id(), "t1");
  EXPECT_EQ(updates[0].state(), v1::TASK_RUNNING);
  // Back in time: never marked unreachable, and nothing was killed.
  Advance(absl::Seconds(100));
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->state(), v1::RegistryAgent::ADMITTED);
  for (const v1::MasterMessage& message : returned.stream->messages) {
    EXPECT_FALSE(message.has_kill_task());
    EXPECT_FALSE(message.has_shutdown_framework());
  }
  ASSERT_TRUE(master_->Reconcile(reconcile).ok());
  Run();
  updates = Updates(back.stream->Take());
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0].state(), v1::TASK_RUNNING);
}

TEST_F(MasterRegistryTest, WeightsAndQuotaSurviveARestart) {
  ASSERT_TRUE(UpdateWeights("dev", 3).ok());
  v1::UpdateQuotaRequest quota;
  v1::QuotaConfig* config = quota.add_quotas();
  config->set_role("dev");
  ToProto(Res("cpus:2"), config->mutable_limits());
  std::optional<absl::Status> result;
  master_->UpdateQuota(quota, [&](absl::Status status) { result = status; });
  Run();
  ASSERT_TRUE(result.has_value() && result->ok()) << result.value_or(absl::OkStatus());
  EXPECT_EQ(WeightOf("dev"), 3);

  Restart();
  EXPECT_EQ(WeightOf("dev"), 3);
  bool quota_found = false;
  const auto held2 = master_->roles_snapshot();  // Keeps the snapshot alive for the loop.
  for (const v1::RoleInfo& info : held2->roles()) {
    if (info.role() == "dev") {
      quota_found = info.quota().limits_size() == 1;
    }
  }
  EXPECT_TRUE(quota_found);
  EXPECT_TRUE(store_.Peek("quota/dev").has_value());
}

TEST_F(MasterRegistryTest, AFailedWriteLeavesTheWeightsUnchangedAndReturnsTheError) {
  ASSERT_TRUE(UpdateWeights("dev", 2).ok());
  store_.FailApplies(absl::UnavailableError("disk full"));
  absl::Status status = UpdateWeights("dev", 5);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("disk full"));
  EXPECT_THAT(status.message(), ::testing::HasSubstr("weight/dev"));
  EXPECT_EQ(WeightOf("dev"), 2);
  Restart();
  EXPECT_EQ(WeightOf("dev"), 2);
}

TEST_F(MasterRegistryTest, AWeightUpdateIsAppliedOnlyOnceStored) {
  v1::UpdateWeightsRequest request;
  request.add_weights()->set_role("dev");
  request.mutable_weights(0)->set_weight(4);
  std::optional<absl::Status> result;
  master_->UpdateWeights(request, [&](absl::Status status) { result = status; });
  loop_->RunUntilIdle();
  EXPECT_FALSE(result.has_value());
  EXPECT_NE(WeightOf("dev"), 4);
  Run();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok());
  EXPECT_EQ(WeightOf("dev"), 4);
  // A bad request is answered at once and stores nothing.
  request.mutable_weights(0)->set_weight(-1);
  result.reset();
  master_->UpdateWeights(request, [&](absl::Status status) { result = status; });
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MasterRegistryTest, AGoneAgentIsRefusedAfterARestart) {
  Agent agent = AddAgent();
  v1::MarkAgentGoneRequest gone;
  gone.set_agent_id(agent.id);
  std::optional<absl::Status> result;
  master_->MarkAgentGone(gone, [&](absl::Status status) { result = status; });
  Run();
  ASSERT_TRUE(result.has_value() && result->ok()) << result.value_or(absl::OkStatus());
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->state(), v1::RegistryAgent::GONE);
  Restart();
  Agent again = AddAgent(agent.id);
  EXPECT_TRUE(again.stream->closed);
  EXPECT_EQ(again.stream->close_status.code(), absl::StatusCode::kFailedPrecondition);
}

// After a recovery (restart or failover): agents that do not return.

int CountAgents(Master& master, v1::AgentState::Status status) {
  std::shared_ptr<const v1::State> state = master.snapshot();
  int n = 0;
  for (const v1::AgentState& agent : state->agents()) {
    n += agent.status() == status;
  }
  return n;
}

TEST_F(MasterRegistryTest, TooManyMissingAgentsAfterARecoveryAreNotMarkedUnreachable) {
  std::vector<Agent> agents;
  for (int i = 0; i < 4; ++i) {
    agents.push_back(AddAgent());
  }
  options_.recovery_agent_removal_limit = 0.5;
  Restart();
  AddAgent(agents[0].id);  // One of four returns: 75% are missing, more than half.
  Advance(absl::Seconds(76));
  EXPECT_EQ(CountAgents(*master_, v1::AgentState::UNREACHABLE), 0);
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agents[1].id)->state(),
            v1::RegistryAgent::ADMITTED);
  EXPECT_THAT(master_->metrics().RenderText(*master_->state()),
              ::testing::HasSubstr("rz_master_recovery_agent_removals_refused 3"));
  // They may still come back.
  Agent back = AddAgent(agents[1].id);
  ASSERT_FALSE(back.stream->messages.empty());
  EXPECT_TRUE(back.stream->messages[0].has_registered());
}

TEST_F(MasterRegistryTest, MissingAgentsAfterARecoveryAreMarkedUnreachableAtTheRateLimit) {
  std::vector<Agent> agents;
  for (int i = 0; i < 5; ++i) {
    agents.push_back(AddAgent());
  }
  options_.agent_removals_per_period = 2;
  options_.agent_removal_period = absl::Seconds(10);
  Restart();
  AddAgent(agents[0].id);
  Advance(absl::Seconds(75));  // The reregister timeout: the first two of four.
  EXPECT_EQ(CountAgents(*master_, v1::AgentState::UNREACHABLE), 2);
  Advance(absl::Seconds(9));
  EXPECT_EQ(CountAgents(*master_, v1::AgentState::UNREACHABLE), 2);
  Advance(absl::Seconds(1));  // One period later, the other two.
  EXPECT_EQ(CountAgents(*master_, v1::AgentState::UNREACHABLE), 4);
  EXPECT_EQ(CountAgents(*master_, v1::AgentState::REGISTERED), 1);
}

// Operator actions and reservations (DESIGN.md §6): stored first, then applied and answered.

v1::AgentState AgentStateOf(Master& master, const std::string& id) {
  std::shared_ptr<const v1::State> state = master.snapshot();
  for (const v1::AgentState& agent : state->agents()) {
    if (agent.info().id() == id) {
      return agent;
    }
  }
  return v1::AgentState();
}

TEST_F(MasterRegistryTest, AnOperatorActionIsAppliedAndAnsweredOnlyOnceStored) {
  Agent agent = AddAgent();
  v1::DeactivateAgentRequest request;
  request.set_agent_id(agent.id);
  std::optional<absl::Status> result;
  master_->DeactivateAgent(request, [&](absl::Status status) { result = status; });
  loop_->RunUntilIdle();
  EXPECT_FALSE(result.has_value());
  EXPECT_FALSE(Record<v1::RegistryAgent>("agent/" + agent.id)->deactivated());
  EXPECT_FALSE(AgentStateOf(*master_, agent.id).deactivated());
  worker_.RunUntilIdle();  // Durable; applied when the loop runs the completion.
  EXPECT_TRUE(Record<v1::RegistryAgent>("agent/" + agent.id)->deactivated());
  EXPECT_FALSE(result.has_value());
  Run();
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->ok()) << *result;
  EXPECT_TRUE(AgentStateOf(*master_, agent.id).deactivated());
  Restart();
  EXPECT_TRUE(AgentStateOf(*master_, agent.id).deactivated());
}

TEST_F(MasterRegistryTest, AFailedWriteAppliesNoOperatorAction) {
  Agent agent = AddAgent();
  store_.FailApplies(absl::UnavailableError("disk on fire"));
  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  std::optional<absl::Status> result;
  master_->DrainAgent(drain, [&](absl::Status status) { result = status; });
  Run();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(result->message()), ::testing::HasSubstr("disk on fire"));
  EXPECT_FALSE(AgentStateOf(*master_, agent.id).has_drain());
  EXPECT_FALSE(Record<v1::RegistryAgent>("agent/" + agent.id)->has_drain());
  // A refused action (already deactivated, say) stores nothing either.
  result.reset();
  v1::ReactivateAgentRequest reactivate;
  reactivate.set_agent_id(agent.id);
  master_->ReactivateAgent(reactivate, [&](absl::Status status) { result = status; });
  ASSERT_TRUE(result.has_value());  // Answered at once.
  EXPECT_EQ(result->code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MasterRegistryTest, TwoActionsInFlightOnOneAgentAreCheckedAgainWhenApplied) {
  Agent agent = AddAgent();
  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  std::optional<absl::Status> first;
  std::optional<absl::Status> second;
  master_->DrainAgent(drain, [&](absl::Status status) { first = status; });
  master_->DrainAgent(drain, [&](absl::Status status) { second = status; });
  Run();
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_TRUE(first->ok()) << *first;
  EXPECT_EQ(second->code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->drain().state(),
            v1::DrainInfo::DRAINED);  // No tasks: drained at once.
}

TEST_F(MasterRegistryTest, MachineDownStoresTheScheduleAndForgetsItsAgentsInOneWrite) {
  Agent agent = AddAgent();
  v1::UpdateMaintenanceScheduleRequest schedule;
  v1::MaintenanceWindow* window = schedule.mutable_schedule()->add_windows();
  window->add_machines()->set_hostname("H1");
  window->mutable_unavailability()->set_start(2'000'000);
  std::optional<absl::Status> result;
  master_->UpdateMaintenanceSchedule(schedule, [&](absl::Status status) { result = status; });
  Run();
  ASSERT_TRUE(result.has_value() && result->ok()) << result.value_or(absl::OkStatus());
  ASSERT_TRUE(Record<v1::RegistryMaintenance>("maintenance").has_value());
  EXPECT_EQ(
      Record<v1::RegistryMaintenance>("maintenance")->schedule().windows(0).machines(0).hostname(),
      "h1");

  v1::StartMaintenanceRequest down;
  down.add_machines()->set_hostname("h1");
  result.reset();
  master_->StartMaintenance(down, [&](absl::Status status) { result = status; });
  loop_->RunUntilIdle();
  EXPECT_TRUE(Record<v1::RegistryAgent>("agent/" + agent.id).has_value());
  EXPECT_FALSE(agent.stream->closed);
  worker_.RunUntilIdle();
  EXPECT_FALSE(Record<v1::RegistryAgent>("agent/" + agent.id).has_value());
  EXPECT_EQ(Record<v1::RegistryMaintenance>("maintenance")->down_machines_size(), 1);
  Run();
  ASSERT_TRUE(result.has_value() && result->ok()) << result.value_or(absl::OkStatus());
  EXPECT_TRUE(agent.stream->closed);
  // After a restart the machine is still DOWN: its agent is refused.
  Restart();
  Agent again = AddAgent();
  EXPECT_TRUE(again.stream->closed);
  EXPECT_EQ(again.stream->close_status.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MasterRegistryTest, OperatorReservationsAreStoredBeforeTheyAreApplied) {
  Agent agent = AddAgent();
  v1::ReserveResourcesRequest reserve;
  reserve.set_agent_id(agent.id);
  Resources reserved = Res("cpus:2").WithRole("dev");
  ToProto(reserved, reserve.mutable_resources());
  std::optional<absl::Status> result;
  master_->ReserveResources(reserve, [&](absl::Status status) { result = status; });
  loop_->RunUntilIdle();
  EXPECT_FALSE(result.has_value());
  EXPECT_EQ(AgentStateOf(*master_, agent.id).reserved_size(), 0);
  worker_.RunUntilIdle();
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->reserved_size(), 1);
  Run();
  ASSERT_TRUE(result.has_value() && result->ok()) << result.value_or(absl::OkStatus());
  EXPECT_EQ(AgentStateOf(*master_, agent.id).reserved_size(), 1);

  // A failed write leaves them as they are.
  store_.FailApplies(absl::UnavailableError("disk on fire"));
  v1::UnreserveResourcesRequest unreserve;
  unreserve.set_agent_id(agent.id);
  ToProto(reserved, unreserve.mutable_resources());
  result.reset();
  master_->UnreserveResources(unreserve, [&](absl::Status status) { result = status; });
  Run();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(AgentStateOf(*master_, agent.id).reserved_size(), 1);
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->reserved_size(), 1);
}

TEST_F(MasterRegistryTest, AnAcceptThatReservesLaunchesOnlyOnceTheReservationIsStored) {
  Agent agent = AddAgent();
  Scheduler scheduler = Subscribe();
  Advance(absl::Seconds(1));
  std::string offer_id;
  for (const v1::Event& event : scheduler.stream->Take()) {
    if (event.has_offers() && event.offers().offers_size() > 0) {
      offer_id = event.offers().offers(0).id();
    }
  }
  ASSERT_FALSE(offer_id.empty());
  auto accept = [&](const std::string& task_id) {
    v1::AcceptRequest request;
    *request.mutable_header() = scheduler.header();
    request.add_offer_ids(offer_id);
    v1::Operation* op = request.add_operations();
    op->set_type(v1::Operation::RESERVE);
    ToProto(Res("cpus:1").WithRole("dev"), op->mutable_reserve()->mutable_resources());
    op = request.add_operations();
    op->set_type(v1::Operation::LAUNCH);
    v1::TaskInfo* task = op->mutable_launch()->add_tasks();
    task->set_name(task_id);
    task->set_task_id(task_id);
    task->mutable_command()->set_value("sleep 100");
    ToProto(Res("cpus:1").WithRole("dev") + Res("mem:64"), task->mutable_resources());
    return request;
  };
  auto launched = [&] {
    for (const v1::MasterMessage& message : agent.stream->messages) {
      if (message.has_run_task()) {
        return true;
      }
    }
    return false;
  };
  std::optional<absl::Status> result;
  master_->Accept(accept("t1"), [&](absl::Status status) { result = status; });
  loop_->RunUntilIdle();
  EXPECT_FALSE(result.has_value());
  EXPECT_FALSE(launched());
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->reserved_size(), 0);
  worker_.RunUntilIdle();
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->reserved_size(), 1);
  Run();
  ASSERT_TRUE(result.has_value() && result->ok()) << result.value_or(absl::OkStatus());
  EXPECT_TRUE(launched());
  EXPECT_EQ(AgentStateOf(*master_, agent.id).reserved_size(), 1);

  // A failed write: the task is dropped, the offer's resources go back, nothing is reserved.
  Advance(absl::Seconds(10));  // Past the default refusal of what the ACCEPT left.
  offer_id.clear();
  for (const v1::Event& event : scheduler.stream->Take()) {
    if (event.has_offers() && event.offers().offers_size() > 0) {
      offer_id = event.offers().offers(0).id();
    }
  }
  ASSERT_FALSE(offer_id.empty());
  store_.FailApplies(absl::UnavailableError("disk on fire"));
  result.reset();
  master_->Accept(accept("t2"), [&](absl::Status status) { result = status; });
  Run();
  ASSERT_TRUE(result.has_value());
  EXPECT_EQ(result->code(), absl::StatusCode::kUnavailable);
  std::vector<v1::TaskStatus> updates = Updates(scheduler.stream->Take());
  ASSERT_EQ(updates.size(), 1u);
  EXPECT_EQ(updates[0].task_id(), "t2");
  EXPECT_EQ(updates[0].state(), v1::TASK_DROPPED);
  EXPECT_EQ(AgentStateOf(*master_, agent.id).reserved_size(), 1);
  EXPECT_EQ(Record<v1::RegistryAgent>("agent/" + agent.id)->reserved_size(), 1);
}

// The real thing: MasterDaemon with its LevelDB registry, restarted on the same work dir.
class MasterDaemonRegistryTest : public ::testing::Test {
 protected:
  MasterDaemonRegistryTest() {
    std::string pattern = "/tmp/rz-master-registry-test-XXXXXX";
    CHECK(mkdtemp(pattern.data()) != nullptr);
    work_dir_ = pattern;
  }
  ~MasterDaemonRegistryTest() override { std::filesystem::remove_all(work_dir_); }

  std::unique_ptr<MasterDaemon> StartDaemon() {
    MasterDaemonOptions options;
    options.ip = "127.0.0.1";
    options.hostname = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    options.work_dir = work_dir_;
    options.registry = RegistryBackend::kLevelDb;
    auto daemon = std::make_unique<MasterDaemon>(options);
    absl::Status status = daemon->Start();
    EXPECT_TRUE(status.ok()) << status;
    return daemon;
  }
  // Runs `f` on the daemon's loop and waits for it.
  static void OnLoop(MasterDaemon& daemon, absl::AnyInvocable<void() &&> f) {
    absl::Notification done;
    daemon.loop().Post([&] {
      std::move(f)();
      done.Notify();
    });
    done.WaitForNotification();
  }

  std::string work_dir_;
};

TEST_F(MasterDaemonRegistryTest, AFrameworkAndItsDeadlineSurviveADaemonRestart) {
  auto stream = std::make_shared<SchedulerStream>();
  double deadline = 0;
  {
    std::unique_ptr<MasterDaemon> daemon = StartDaemon();
    v1::SubscribeRequest request;
    request.mutable_framework_info()->set_id("fw-durable");
    request.mutable_framework_info()->set_name("durable");
    request.mutable_framework_info()->add_roles("dev");
    request.mutable_framework_info()->set_failover_timeout_seconds(3600);
    OnLoop(*daemon, [&] { daemon->master().Subscribe(request, StreamId("s1"), stream); });
    // SUBSCRIBED arrives once the record is synced to LevelDB, on the registry's thread.
    const absl::Time give_up = absl::Now() + absl::Seconds(10);
    bool subscribed = false;
    while (!subscribed && absl::Now() < give_up) {
      OnLoop(*daemon, [&] { subscribed = !stream->messages.empty(); });
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_TRUE(subscribed);
    ASSERT_TRUE(stream->messages[0].has_subscribed());
    OnLoop(*daemon, [&] { daemon->master().SchedulerStreamClosed(StreamId("s1")); });
    while (deadline == 0 && absl::Now() < give_up) {
      const auto held = daemon->master().snapshot();  // Keeps the snapshot alive for the loop.
      for (const v1::FrameworkState& framework : held->frameworks()) {
        deadline = framework.failover_deadline();
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    ASSERT_GT(deadline, 0);
    daemon->Stop();  // Writes already queued reach the store before the daemon goes.
  }
  std::unique_ptr<MasterDaemon> restarted = StartDaemon();
  std::shared_ptr<const v1::State> state;
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  do {
    state = restarted->master().snapshot();
    absl::SleepFor(absl::Milliseconds(5));
  } while (state->frameworks_size() == 0 && absl::Now() < give_up);
  ASSERT_EQ(state->frameworks_size(), 1);
  EXPECT_EQ(state->frameworks(0).info().id(), "fw-durable");
  EXPECT_EQ(state->frameworks(0).info().name(), "durable");
  EXPECT_FALSE(state->frameworks(0).connected());
  EXPECT_DOUBLE_EQ(state->frameworks(0).failover_deadline(), deadline);

  // A second master on the same work dir is refused: LevelDB's lock.
  MasterDaemonOptions options;
  options.ip = "127.0.0.1";
  options.port = 0;
  options.http_port = 0;
  options.work_dir = work_dir_;
  MasterDaemon second(options);
  EXPECT_EQ(second.Start().code(), absl::StatusCode::kUnavailable);
}

TEST_F(MasterDaemonRegistryTest, TheLevelDbRegistryNeedsAWorkDir) {
  MasterDaemonOptions options;
  options.ip = "127.0.0.1";
  options.port = 0;
  options.http_port = 0;
  MasterDaemon daemon(options);
  absl::Status status = daemon.Start();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("work dir"));
}

}  // namespace
}  // namespace rz::master
