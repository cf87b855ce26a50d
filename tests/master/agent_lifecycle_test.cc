// Agent lifecycle: partition (SCENARIOS M6), reconciliation (M7, M8), operator drain,
// deactivation, gone agents, framework teardown and bounded histories.
#include <map>
#include <string>
#include <vector>

#include "common/task_states.h"
#include "master_test_fixture.h"

namespace rz::master {
namespace {

class AgentLifecycleTest : public MasterTest {
 protected:
  // A running task `task_id` of `s` on a fresh agent; takes the events so far.
  Agent RunningTask(const Scheduler& s, const std::string& task_id,
                    const std::string& hostname = "h1", v1::KillPolicy kill_policy = {}) {
    Agent agent = AddAgent("cpus:2;mem:1024", hostname);
    std::vector<v1::Offer> offers = Offers(s.stream->Take());
    EXPECT_THAT(offers, SizeIs(1));
    v1::TaskInfo task = Task(task_id, "cpus:1;mem:128");
    *task.mutable_kill_policy() = kill_policy;
    EXPECT_TRUE(Launch(s, {offers.at(0).id()}, {task}).ok());
    agent.stream->Take();
    AgentUpdate(agent, s.framework_id, task_id, v1::TASK_RUNNING, "u-" + task_id);
    Acknowledge(s, agent, task_id, "u-" + task_id);
    s.stream->Take();
    agent.stream->Take();
    return agent;
  }

  void Acknowledge(const Scheduler& s, const Agent& agent, const std::string& task_id,
                   const std::string& uuid) {
    v1::AcknowledgeRequest ack;
    *ack.mutable_header() = s.header();
    ack.set_agent_id(agent.id);
    ack.set_task_id(task_id);
    ack.set_uuid(uuid);
    EXPECT_TRUE(master_.Acknowledge(ack).ok());
    loop_.RunUntilIdle();
  }

  // The agent comes back on a new link reporting `tasks`; returns the new link's stream.
  std::shared_ptr<AgentStream> Reregister(Agent& agent, const std::vector<v1::Task>& tasks,
                                          const std::string& hostname = "h1") {
    auto stream = std::make_shared<AgentStream>();
    v1::AgentMessage message;
    v1::AgentInfo* info = message.mutable_register_()->mutable_info();
    info->set_id(agent.id);
    info->set_hostname(hostname);
    ToProto(Res("cpus:2;mem:1024"), info->mutable_resources());
    for (const v1::Task& task : tasks) {
      *message.mutable_register_()->add_tasks() = task;
    }
    agent.link = StreamId(absl::StrCat("relink-", ++links_));
    agent.stream = stream;
    master_.HandleAgentMessage(agent.link, message, stream);
    loop_.RunUntilIdle();
    return stream;
  }

  static v1::Task ReportedTask(const Scheduler& s, const std::string& task_id,
                               v1::TaskState state) {
    v1::Task task;
    task.set_task_id(task_id);
    task.set_framework_id(s.framework_id);
    task.set_state(state);
    task.set_role("*");
    ToProto(Res("cpus:1;mem:128"), task.mutable_resources());
    v1::TaskStatus* status = task.mutable_latest_status();
    status->set_task_id(task_id);
    status->set_framework_id(s.framework_id);
    status->set_state(state);
    status->set_source(v1::TaskStatus::SOURCE_AGENT);
    return task;
  }

  // Lets the agent go silent until it is unreachable (ping timeout, then reregister timeout).
  void Partition() { loop_.AdvanceTime(absl::Seconds(15 + 75 + 15 + 76)); }

  std::vector<v1::TaskStatus> Reconcile(const Scheduler& s,
                                        std::vector<std::pair<std::string, std::string>> refs) {
    v1::ReconcileRequest request;
    *request.mutable_header() = s.header();
    for (const auto& [task_id, agent_id] : refs) {
      v1::ReconcileRequest::TaskRef* ref = request.add_tasks();
      ref->set_task_id(task_id);
      ref->set_agent_id(agent_id);
    }
    EXPECT_TRUE(master_.Reconcile(request).ok());
    loop_.RunUntilIdle();
    return Updates(s.stream->Take());
  }

  const v1::AgentState* FindAgent(const std::string& id) {
    state_ = master_.snapshot();
    for (const v1::AgentState& agent : state_->agents()) {
      if (agent.info().id() == id) {
        return &agent;
      }
    }
    return nullptr;
  }

  static std::vector<v1::MasterMessage> Kills(const std::vector<v1::MasterMessage>& messages) {
    std::vector<v1::MasterMessage> kills;
    for (const v1::MasterMessage& message : messages) {
      if (message.has_kill_task()) {
        kills.push_back(message);
      }
    }
    return kills;
  }

  std::shared_ptr<const v1::State> state_;
};

// --- M6: partition ---------------------------------------------------------------------------

TEST_F(AgentLifecycleTest, APartitionedAgentIsUnreachableAndItsTasksResumeWhenItReturns) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  Partition();
  EXPECT_TRUE(agent.stream->closed);
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_UNREACHABLE);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_AGENT_REMOVED);
  EXPECT_GT(updates[0].unreachable_time(), 0);
  const v1::AgentState* shown = FindAgent(agent.id);
  ASSERT_NE(shown, nullptr);
  EXPECT_EQ(shown->status(), v1::AgentState::UNREACHABLE);
  EXPECT_DOUBLE_EQ(shown->unreachable_time(), updates[0].unreachable_time());
  EXPECT_EQ(master_.snapshot()->tasks(0).state(), v1::TASK_UNREACHABLE);

  std::shared_ptr<AgentStream> stream =
      Reregister(agent, {ReportedTask(s, "t1", v1::TASK_RUNNING)});
  std::vector<v1::MasterMessage> to_agent = stream->Take();
  ASSERT_FALSE(to_agent.empty());
  EXPECT_TRUE(to_agent[0].has_registered());
  EXPECT_THAT(Kills(to_agent), IsEmpty());  // Nothing is killed.
  EXPECT_FALSE(stream->closed);
  updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_RUNNING);
  EXPECT_EQ(master_.snapshot()->tasks(0).state(), v1::TASK_RUNNING);
  shown = FindAgent(agent.id);
  EXPECT_EQ(shown->status(), v1::AgentState::REGISTERED);
  EXPECT_EQ(shown->unreachable_time(), 0);
}

TEST_F(AgentLifecycleTest, ATaskThatFinishedDuringThePartitionIsReportedFinished) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  Partition();
  s.stream->Take();
  std::shared_ptr<AgentStream> stream =
      Reregister(agent, {ReportedTask(s, "t1", v1::TASK_FINISHED)});
  EXPECT_THAT(Kills(stream->Take()), IsEmpty());
  std::vector<v1::Event> events = s.stream->Take();
  std::vector<v1::TaskStatus> updates = Updates(events);
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_FINISHED);
  // Its resources are free again: the whole agent is offered.
  std::vector<v1::Offer> offers = Offers(events);
  ASSERT_THAT(offers, SizeIs(1)) << master_.snapshot()->ShortDebugString();
  EXPECT_EQ(*FromProto(offers[0].resources()), Res("cpus:2;mem:1024"));
}

// --- M7: explicit reconciliation --------------------------------------------------------------

TEST_F(AgentLifecycleTest, ExplicitReconciliationOfAKnownTaskAnswersItsLatestState) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  std::vector<v1::TaskStatus> updates = Reconcile(s, {{"t1", agent.id}});
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].task_id(), "t1");
  EXPECT_EQ(updates[0].state(), v1::TASK_RUNNING);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_RECONCILIATION);
  EXPECT_EQ(updates[0].source(), v1::TaskStatus::SOURCE_MASTER);
  EXPECT_TRUE(updates[0].uuid().empty());
}

TEST_F(AgentLifecycleTest, ExplicitReconciliationOfAStagingTaskNamesTheTask) {
  Scheduler s = Subscribe();
  Agent agent = AddAgent("cpus:2;mem:1024");
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  s.stream->Take();
  std::vector<v1::TaskStatus> updates = Reconcile(s, {{"t1", ""}});
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].task_id(), "t1");
  EXPECT_EQ(updates[0].agent_id(), agent.id);
  EXPECT_EQ(updates[0].state(), v1::TASK_STAGING);
}

TEST_F(AgentLifecycleTest, ExplicitReconciliationOfUnknownTasks) {
  Scheduler s = Subscribe();
  Agent registered = RunningTask(s, "t1", "h1");
  Agent partitioned = RunningTask(s, "t2", "h2");
  Agent gone = RunningTask(s, "t3", "h3");
  // Keep h1 and h3 answering pings while h2 goes silent.
  for (int i = 0; i < 13; ++i) {
    loop_.AdvanceTime(absl::Seconds(15));
    for (Agent* a : {&registered, &gone}) {
      v1::AgentMessage pong;
      pong.mutable_pong()->set_nonce(1);
      master_.HandleAgentMessage(a->link, pong, a->stream);
    }
  }
  ASSERT_EQ(FindAgent(partitioned.id)->status(), v1::AgentState::UNREACHABLE);
  const double unreachable_time = FindAgent(partitioned.id)->unreachable_time();
  v1::MarkAgentGoneRequest mark;
  mark.set_agent_id(gone.id);
  ASSERT_TRUE(Act(&Master::MarkAgentGone, mark).ok());
  loop_.RunUntilIdle();
  s.stream->Take();

  std::vector<v1::TaskStatus> updates = Reconcile(s, {{"x1", registered.id},
                                                      {"x2", partitioned.id},
                                                      {"x3", gone.id},
                                                      {"x4", "no-such-agent"},
                                                      {"x5", ""}});
  ASSERT_THAT(updates, SizeIs(5));
  EXPECT_EQ(updates[0].state(), v1::TASK_GONE);
  EXPECT_EQ(updates[1].state(), v1::TASK_UNREACHABLE);
  EXPECT_DOUBLE_EQ(updates[1].unreachable_time(), unreachable_time);
  EXPECT_EQ(updates[2].state(), v1::TASK_GONE_BY_OPERATOR);
  EXPECT_EQ(updates[3].state(), v1::TASK_UNKNOWN);
  EXPECT_EQ(updates[4].state(), v1::TASK_UNKNOWN);
  for (const v1::TaskStatus& update : updates) {
    EXPECT_EQ(update.reason(), v1::TaskStatus::REASON_RECONCILIATION) << update.task_id();
    EXPECT_EQ(update.source(), v1::TaskStatus::SOURCE_MASTER) << update.task_id();
    EXPECT_EQ(update.framework_id(), s.framework_id);
  }
  // The task on the unreachable agent is known: its latest state, with the unreachable time.
  updates = Reconcile(s, {{"t2", partitioned.id}});
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_UNREACHABLE);
  EXPECT_DOUBLE_EQ(updates[0].unreachable_time(), unreachable_time);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_RECONCILIATION);
}

// --- M8: implicit reconciliation --------------------------------------------------------------

TEST_F(AgentLifecycleTest, ImplicitReconciliationSendsLiveAndUnacknowledgedTerminalTasks) {
  Scheduler s = Subscribe();
  Agent agent = AddAgent("cpus:4;mem:1024");
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()},
                     {Task("running", "cpus:1"), Task("finished-acked", "cpus:1"),
                      Task("finished-unacked", "cpus:1")})
                  .ok());
  AgentUpdate(agent, s.framework_id, "running", v1::TASK_RUNNING, "u1");
  AgentUpdate(agent, s.framework_id, "finished-acked", v1::TASK_FINISHED, "u2");
  AgentUpdate(agent, s.framework_id, "finished-unacked", v1::TASK_FINISHED, "u3");
  Acknowledge(s, agent, "finished-acked", "u2");
  s.stream->Take();

  std::vector<v1::TaskStatus> updates = Reconcile(s, {});
  std::map<std::string, v1::TaskState> by_task;
  for (const v1::TaskStatus& update : updates) {
    by_task[update.task_id()] = update.state();
    EXPECT_EQ(update.reason(), v1::TaskStatus::REASON_RECONCILIATION);
    EXPECT_EQ(update.source(), v1::TaskStatus::SOURCE_MASTER);
  }
  EXPECT_EQ(by_task, (std::map<std::string, v1::TaskState>{
                         {"running", v1::TASK_RUNNING}, {"finished-unacked", v1::TASK_FINISHED}}));
}

// --- Drain -------------------------------------------------------------------------------------

TEST_F(AgentLifecycleTest, DrainKillsTasksWithTheirCappedGracePeriodThenTheAgentIsDrained) {
  Scheduler s = Subscribe();
  v1::KillPolicy long_grace;
  long_grace.set_grace_period_seconds(60);
  Agent agent = RunningTask(s, "t1", "h1", long_grace);
  // A second task on the same agent with no policy of its own.
  loop_.AdvanceTime(absl::Seconds(6));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t2", "cpus:1")}).ok());
  agent.stream->Take();

  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  drain.set_max_grace_period_seconds(10);
  ASSERT_TRUE(Act(&Master::DrainAgent, drain).ok());
  loop_.RunUntilIdle();
  std::vector<v1::MasterMessage> kills = Kills(agent.stream->Take());
  ASSERT_THAT(kills, SizeIs(2));
  for (const v1::MasterMessage& kill : kills) {
    EXPECT_DOUBLE_EQ(kill.kill_task().kill_policy().grace_period_seconds(), 10)
        << kill.kill_task().task_id();
  }
  EXPECT_EQ(FindAgent(agent.id)->drain().state(), v1::DrainInfo::DRAINING);
  EXPECT_DOUBLE_EQ(FindAgent(agent.id)->drain().config().max_grace_period_seconds(), 10);
  // A second drain is refused.
  EXPECT_EQ(Act(&Master::DrainAgent, drain).code(), absl::StatusCode::kFailedPrecondition);

  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_KILLED, "k1");
  EXPECT_EQ(FindAgent(agent.id)->drain().state(), v1::DrainInfo::DRAINING);
  AgentUpdate(agent, s.framework_id, "t2", v1::TASK_KILLED, "k2");
  EXPECT_EQ(FindAgent(agent.id)->drain().state(), v1::DrainInfo::DRAINED);
  // No offers from a drained agent, even though its resources are free.
  loop_.AdvanceTime(absl::Seconds(10));
  EXPECT_THAT(Offers(s.stream->Take()), IsEmpty());
  EXPECT_EQ(FindAgent(agent.id)->status(), v1::AgentState::REGISTERED);

  // REACTIVATE ends the drain: offers again.
  v1::ReactivateAgentRequest reactivate;
  reactivate.set_agent_id(agent.id);
  ASSERT_TRUE(Act(&Master::ReactivateAgent, reactivate).ok());
  loop_.RunUntilIdle();
  EXPECT_THAT(Offers(s.stream->Take()), SizeIs(1));
  EXPECT_FALSE(FindAgent(agent.id)->has_drain());
}

TEST_F(AgentLifecycleTest, DrainRescindsOutstandingOffersAndKeepsATasksOwnShorterGrace) {
  Scheduler s = Subscribe();
  v1::KillPolicy short_grace;
  short_grace.set_grace_period_seconds(3);
  Agent agent = RunningTask(s, "t1", "h1", short_grace);
  loop_.AdvanceTime(absl::Seconds(6));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));

  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  drain.set_max_grace_period_seconds(10);
  ASSERT_TRUE(Act(&Master::DrainAgent, drain).ok());
  loop_.RunUntilIdle();
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());
  std::vector<v1::MasterMessage> kills = Kills(agent.stream->Take());
  ASSERT_THAT(kills, SizeIs(1));
  EXPECT_DOUBLE_EQ(kills[0].kill_task().kill_policy().grace_period_seconds(), 3);
}

TEST_F(AgentLifecycleTest, DrainWithMarkGoneMarksTheAgentGoneOnceDrained) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  drain.set_mark_gone(true);
  ASSERT_TRUE(Act(&Master::DrainAgent, drain).ok());
  loop_.RunUntilIdle();
  std::vector<v1::MasterMessage> kills = Kills(agent.stream->Take());
  ASSERT_THAT(kills, SizeIs(1));
  EXPECT_FALSE(kills[0].kill_task().kill_policy().has_grace_period_seconds());
  EXPECT_FALSE(agent.stream->closed);

  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_KILLED, "k1");
  EXPECT_EQ(FindAgent(agent.id), nullptr);
  ASSERT_EQ(master_.snapshot()->gone_agents_size(), 1);
  EXPECT_EQ(master_.snapshot()->gone_agents(0).info().id(), agent.id);
  EXPECT_EQ(master_.snapshot()->gone_agents(0).status(), v1::AgentState::GONE);
  EXPECT_TRUE(agent.stream->closed);
  std::vector<v1::MasterMessage> last = agent.stream->messages;
  ASSERT_FALSE(last.empty());
  EXPECT_TRUE(last.back().has_shutdown());
}

TEST_F(AgentLifecycleTest, ADrainedAgentWithNoTasksIsGoneAtOnceWithMarkGone) {
  Scheduler s = Subscribe();
  Agent agent = AddAgent("cpus:1;mem:128");
  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  drain.set_mark_gone(true);
  ASSERT_TRUE(Act(&Master::DrainAgent, drain).ok());
  loop_.RunUntilIdle();
  EXPECT_EQ(FindAgent(agent.id), nullptr);
  EXPECT_EQ(master_.snapshot()->gone_agents_size(), 1);
}

TEST_F(AgentLifecycleTest, ADrainingAgentThatReconnectsIsAskedAgainToKillItsTasks) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  master_.AgentLinkClosed(agent.link);
  loop_.RunUntilIdle();
  v1::DrainAgentRequest drain;
  drain.set_agent_id(agent.id);
  ASSERT_TRUE(Act(&Master::DrainAgent, drain).ok());
  std::shared_ptr<AgentStream> stream =
      Reregister(agent, {ReportedTask(s, "t1", v1::TASK_RUNNING)});
  EXPECT_THAT(Kills(stream->Take()), SizeIs(1));
  loop_.AdvanceTime(absl::Seconds(6));
  EXPECT_THAT(Offers(s.stream->Take()), IsEmpty());
}

// --- Deactivate / reactivate ------------------------------------------------------------------

TEST_F(AgentLifecycleTest, ADeactivatedAgentMakesNoOffersAndItsTasksKeepRunning) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  loop_.AdvanceTime(absl::Seconds(6));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));

  v1::DeactivateAgentRequest deactivate;
  deactivate.set_agent_id(agent.id);
  ASSERT_TRUE(Act(&Master::DeactivateAgent, deactivate).ok());
  loop_.RunUntilIdle();
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());
  EXPECT_THAT(Kills(agent.stream->Take()), IsEmpty());
  EXPECT_TRUE(FindAgent(agent.id)->deactivated());
  EXPECT_EQ(master_.snapshot()->tasks(0).state(), v1::TASK_RUNNING);
  EXPECT_EQ(Act(&Master::DeactivateAgent, deactivate).code(),
            absl::StatusCode::kFailedPrecondition);

  loop_.AdvanceTime(absl::Seconds(30));
  EXPECT_THAT(Offers(s.stream->Take()), IsEmpty());

  v1::ReactivateAgentRequest reactivate;
  reactivate.set_agent_id(agent.id);
  ASSERT_TRUE(Act(&Master::ReactivateAgent, reactivate).ok());
  loop_.RunUntilIdle();
  EXPECT_THAT(Offers(s.stream->Take()), SizeIs(1));
  EXPECT_FALSE(FindAgent(agent.id)->deactivated());
  EXPECT_EQ(Act(&Master::ReactivateAgent, reactivate).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(AgentLifecycleTest, ActionsOnUnknownAgentsAreNotFoundAndNeedAnId) {
  v1::DrainAgentRequest drain;
  drain.set_agent_id("nope");
  EXPECT_EQ(Act(&Master::DrainAgent, drain).code(), absl::StatusCode::kNotFound);
  v1::DeactivateAgentRequest deactivate;
  EXPECT_EQ(Act(&Master::DeactivateAgent, deactivate).code(), absl::StatusCode::kInvalidArgument);
  v1::MarkAgentGoneRequest gone;
  gone.set_agent_id("nope");
  EXPECT_EQ(Act(&Master::MarkAgentGone, gone).code(), absl::StatusCode::kNotFound);
  drain.set_max_grace_period_seconds(-1);
  EXPECT_EQ(Act(&Master::DrainAgent, drain).code(), absl::StatusCode::kInvalidArgument);
}

// --- Gone --------------------------------------------------------------------------------------

TEST_F(AgentLifecycleTest, AGoneAgentsTasksAreGoneByOperatorAndTheAgentIsRefused) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  Agent other = AddAgent("cpus:1;mem:128", "h2");
  s.stream->Take();

  v1::MarkAgentGoneRequest gone;
  gone.set_agent_id(agent.id);
  ASSERT_TRUE(Act(&Master::MarkAgentGone, gone).ok());
  loop_.RunUntilIdle();
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_GONE_BY_OPERATOR);
  EXPECT_EQ(updates[0].source(), v1::TaskStatus::SOURCE_MASTER);
  EXPECT_TRUE(agent.stream->closed);
  ASSERT_FALSE(agent.stream->messages.empty());
  EXPECT_TRUE(agent.stream->messages.back().has_shutdown());
  std::shared_ptr<const v1::State> state = master_.snapshot();
  EXPECT_THAT(state->tasks(), IsEmpty());
  ASSERT_EQ(state->completed_tasks_size(), 1);
  EXPECT_EQ(state->completed_tasks(0).state(), v1::TASK_GONE_BY_OPERATOR);
  ASSERT_EQ(state->agents_size(), 1);
  EXPECT_EQ(state->agents(0).info().id(), other.id);
  ASSERT_EQ(state->gone_agents_size(), 1);
  EXPECT_GT(state->gone_agents(0).gone_time(), 0);
  ASSERT_EQ(state->frameworks_size(), 1);
  EXPECT_THAT(state->frameworks(0).used(), IsEmpty());  // Its resources are freed.
  EXPECT_EQ(Act(&Master::MarkAgentGone, gone).code(), absl::StatusCode::kFailedPrecondition);

  // The agent comes back: refused, with a message saying why.
  std::shared_ptr<AgentStream> stream =
      Reregister(agent, {ReportedTask(s, "t1", v1::TASK_RUNNING)});
  EXPECT_TRUE(stream->closed);
  EXPECT_EQ(stream->close_status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(stream->close_status.message()), HasSubstr("marked gone"));
  EXPECT_THAT(stream->messages, IsEmpty());
  EXPECT_EQ(master_.snapshot()->agents_size(), 1);
}

TEST_F(AgentLifecycleTest, OperatorTeardownRemovesTheFramework) {
  Scheduler s = Subscribe();
  Agent agent = RunningTask(s, "t1");
  v1::TeardownFrameworkRequest teardown;
  teardown.set_framework_id(s.framework_id);
  ASSERT_TRUE(master_.TeardownFramework(teardown).ok());
  loop_.RunUntilIdle();
  EXPECT_TRUE(s.stream->closed);
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_FALSE(to_agent.empty());
  EXPECT_TRUE(to_agent[0].has_shutdown_framework());
  EXPECT_THAT(master_.snapshot()->frameworks(), IsEmpty());
  EXPECT_EQ(master_.TeardownFramework(teardown).code(), absl::StatusCode::kFailedPrecondition);
  teardown.set_framework_id("nope");
  EXPECT_EQ(master_.TeardownFramework(teardown).code(), absl::StatusCode::kNotFound);
  teardown.clear_framework_id();
  EXPECT_EQ(master_.TeardownFramework(teardown).code(), absl::StatusCode::kInvalidArgument);
}

// --- Bounded histories -------------------------------------------------------------------------

TEST_F(AgentLifecycleTest, GoneAgentsAreBoundedAndTheOldestMayRegisterAgain) {
  MasterOptions options = Options();
  options.max_gone_agents = 2;
  options.max_unreachable_agents = 1;
  // A master of its own with small bounds, on the fixture's loop.
  FakeRegistryStore store;
  Registry registry{loop_, loop_, store};
  Master master(loop_, options, Info(), registry);
  loop_.Post([&] { master.Start(Info()); });
  loop_.RunUntilIdle();
  auto add = [&](const std::string& hostname, const std::string& id) {
    auto stream = std::make_shared<AgentStream>();
    v1::AgentMessage message;
    v1::AgentInfo* info = message.mutable_register_()->mutable_info();
    info->set_id(id);
    info->set_hostname(hostname);
    ToProto(Res("cpus:1;mem:128"), info->mutable_resources());
    master.HandleAgentMessage(StreamId("l-" + hostname + id), message, stream);
    loop_.RunUntilIdle();
    return stream;
  };
  std::vector<std::string> ids;
  for (const std::string host : {"a", "b", "c"}) {
    std::shared_ptr<AgentStream> stream = add(host, "");
    ids.push_back(stream->messages.at(0).registered().agent_id());
  }
  for (const std::string& id : ids) {
    v1::MarkAgentGoneRequest gone;
    gone.set_agent_id(id);
    ASSERT_TRUE(Act(master, &Master::MarkAgentGone, gone).ok());
    loop_.RunUntilIdle();
  }
  std::shared_ptr<const v1::State> state = master.snapshot();
  EXPECT_EQ(state->agents_size(), 0) << state->ShortDebugString();
  ASSERT_EQ(state->gone_agents_size(), 2);
  EXPECT_EQ(state->gone_agents(0).info().id(), ids[1]);
  EXPECT_EQ(state->gone_agents(1).info().id(), ids[2]);
  // The forgotten one may register again; a remembered one may not.
  EXPECT_FALSE(add("a", ids[0])->closed);
  EXPECT_TRUE(add("b", ids[1])->closed);

  // Unreachable agents: only the most recent max_unreachable_agents are kept.
  std::shared_ptr<AgentStream> d = add("d", "");
  const std::string d_id = d->messages.at(0).registered().agent_id();
  master.AgentLinkClosed(StreamId("l-a" + ids[0]));
  loop_.AdvanceTime(absl::Seconds(10));
  master.AgentLinkClosed(StreamId("l-d"));
  loop_.AdvanceTime(absl::Seconds(80));
  state = master.snapshot();
  ASSERT_EQ(state->agents_size(), 1) << state->ShortDebugString();
  EXPECT_EQ(state->agents(0).info().id(), d_id);
  EXPECT_EQ(state->agents(0).status(), v1::AgentState::UNREACHABLE);
}

TEST_F(AgentLifecycleTest, CompletedTasksAreBounded) {
  MasterOptions options = Options();
  options.max_completed_tasks = 2;
  FakeRegistryStore store;
  Registry registry{loop_, loop_, store};
  Master master(loop_, options, Info(), registry);
  loop_.Post([&] { master.Start(Info()); });
  loop_.RunUntilIdle();
  auto stream = std::make_shared<AgentStream>();
  v1::AgentMessage message;
  v1::AgentInfo* info = message.mutable_register_()->mutable_info();
  info->set_hostname("h");
  ToProto(Res("cpus:4;mem:512"), info->mutable_resources());
  for (const std::string id : {"t1", "t2", "t3"}) {
    v1::Task* task = message.mutable_register_()->add_tasks();
    task->set_task_id(id);
    task->set_framework_id("f1");
    task->set_state(v1::TASK_RUNNING);
    ToProto(Res("cpus:1"), task->mutable_resources());
  }
  master.HandleAgentMessage(StreamId("l"), message, stream);
  loop_.RunUntilIdle();
  const std::string agent_id = stream->Take().at(0).registered().agent_id();
  v1::MarkAgentGoneRequest gone;
  gone.set_agent_id(agent_id);
  ASSERT_TRUE(Act(master, &Master::MarkAgentGone, gone).ok());
  loop_.RunUntilIdle();
  std::shared_ptr<const v1::State> state = master.snapshot();
  ASSERT_EQ(state->completed_tasks_size(), 2);
  EXPECT_EQ(state->completed_tasks(0).task_id(), "t2");
  EXPECT_EQ(state->completed_tasks(1).task_id(), "t3");
}

}  // namespace
}  // namespace rz::master
