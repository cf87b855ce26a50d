// Master state-machine tests: the Master runs on a ManualEventLoop, schedulers and agents are
// captured outboxes, time is a manual clock. No gRPC, no threads, no sleeps.
#include "master/master_test_fixture.h"

namespace rz::master {
namespace {

TEST_F(MasterTest, SubscribeAssignsAFrameworkIdAndOffersTheWholeAgent) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  ASSERT_FALSE(s.framework_id.empty());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(*FromProto(offers[0].resources()), Res("cpus:2;mem:1024"));
  EXPECT_EQ(offers[0].agent_http_address(), "http://h1:5081");
  EXPECT_EQ(master_.snapshot()->offers_size(), 1);
}

TEST_F(MasterTest, EventsCarryIncreasingSequenceNumbers) {
  Scheduler s = Subscribe();
  AddAgent("cpus:1;mem:512");
  AddAgent("cpus:1;mem:512", "h2");
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_THAT(events, SizeIs(2));
  EXPECT_EQ(events[0].sequence(), 2u);  // SUBSCRIBED was 1.
  EXPECT_EQ(events[1].sequence(), 3u);
}

TEST_F(MasterTest, ConnectedSchedulersGetHeartbeats) {
  Scheduler s = Subscribe();
  loop_.AdvanceTime(absl::Seconds(99));
  EXPECT_THAT(s.stream->Take(), IsEmpty());
  loop_.AdvanceTime(absl::Seconds(1));
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_TRUE(events[0].has_heartbeat());
  EXPECT_EQ(events[0].sequence(), 2u);
}

TEST_F(MasterTest, LaunchedTaskRunsFinishesAndCompletesOnAcknowledgement) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));

  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:128")}).ok());
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  ASSERT_TRUE(to_agent[0].has_run_task());
  EXPECT_EQ(to_agent[0].run_task().task().task_id(), "t1");
  EXPECT_EQ(to_agent[0].run_task().task().agent_id(), agent.id);
  EXPECT_EQ(master_.snapshot()->tasks(0).state(), v1::TASK_STAGING);

  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_FINISHED, "uuid-1");
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_FINISHED);
  EXPECT_EQ(updates[0].agent_id(), agent.id);
  // Still listed until acknowledged.
  EXPECT_EQ(master_.snapshot()->tasks_size(), 1);

  v1::AcknowledgeRequest ack;
  *ack.mutable_header() = s.header();
  ack.set_agent_id(agent.id);
  ack.set_task_id("t1");
  ack.set_uuid("uuid-1");
  ASSERT_TRUE(master_.Acknowledge(ack).ok());
  loop_.RunUntilIdle();
  to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  EXPECT_EQ(to_agent[0].acknowledge().uuid(), "uuid-1");
  EXPECT_EQ(master_.snapshot()->tasks_size(), 0);
  ASSERT_EQ(master_.snapshot()->completed_tasks_size(), 1);
  EXPECT_EQ(master_.snapshot()->completed_tasks(0).state(), v1::TASK_FINISHED);
}

TEST_F(MasterTest, UnusedResourcesOfAnAcceptAreFilteredThenOfferedAgain) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:128")}, 5).ok());
  loop_.AdvanceTime(absl::Seconds(4));
  EXPECT_THAT(Offers(s.stream->Take()), IsEmpty());
  loop_.AdvanceTime(absl::Seconds(2));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(*FromProto(offers[0].resources()), Res("cpus:1;mem:896"));
}

TEST_F(MasterTest, AcceptOfAnUnknownOfferDropsTheTasksWithAReason) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  s.stream->Take();
  ASSERT_TRUE(Launch(s, {"no-such-offer"}, {Task("t1", "cpus:1")}).ok());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_DROPPED);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_EQ(updates[0].source(), v1::TaskStatus::SOURCE_MASTER);
  EXPECT_THAT(updates[0].message(), HasSubstr("'no-such-offer'"));
  EXPECT_EQ(master_.counters().invalid_accepts, 1);
  EXPECT_EQ(master_.snapshot()->counters().at("invalid_accepts"), 1);
  EXPECT_THAT(agent.stream->Take(), IsEmpty());
}

TEST_F(MasterTest, AcceptAcrossTwoAgentsDropsTasksAndReturnsTheResources) {
  AddAgent("cpus:1;mem:512", "h1");
  AddAgent("cpus:1;mem:512", "h2");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  ASSERT_TRUE(Launch(s, {offers[0].id(), offers[1].id()}, {Task("t1", "cpus:2")}).ok());
  std::vector<v1::Event> events = s.stream->Take();
  std::vector<v1::TaskStatus> updates = Updates(events);
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_DROPPED);
  EXPECT_THAT(updates[0].message(), HasSubstr("different agents"));
  // The resources came back without a filter and are offered again.
  EXPECT_THAT(Offers(events), SizeIs(2));
}

TEST_F(MasterTest, AnOfferUsedTwiceInOneAcceptIsRefused) {
  AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id(), offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_DROPPED);
  EXPECT_THAT(updates[0].message(), HasSubstr("more than once"));
}

TEST_F(MasterTest, ATaskAskingForMoreThanTheOfferIsDropped) {
  Agent agent = AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("big", "cpus:4")}).ok());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_DROPPED);
  EXPECT_THAT(updates[0].message(), HasSubstr("cpus:4"));
  EXPECT_THAT(agent.stream->Take(), IsEmpty());
}

TEST_F(MasterTest, ATaskGroupGoesToItsAgentAsOneRunTaskGroup) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("g1", "cpus:1;mem:128"), Task("g2", "cpus:0.5")}, 5,
                     /*group=*/true)
                  .ok());
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  ASSERT_TRUE(to_agent[0].has_run_task_group());
  const auto& group = to_agent[0].run_task_group();
  ASSERT_EQ(group.tasks_size(), 2);
  EXPECT_EQ(group.tasks(0).task_id(), "g1");
  EXPECT_EQ(group.tasks(1).task_id(), "g2");
  EXPECT_EQ(group.tasks(1).agent_id(), agent.id);
  EXPECT_EQ(group.framework().id(), s.framework_id);
  ASSERT_EQ(master_.snapshot()->tasks_size(), 2);
  const auto held = master_.snapshot();  // Keeps the snapshot alive for the loop.
  for (const v1::Task& task : held->tasks()) {
    EXPECT_EQ(task.state(), v1::TASK_STAGING);
    EXPECT_EQ(task.group_id(), "g1");
  }
  EXPECT_EQ(master_.counters().tasks_launched, 2);
}

TEST_F(MasterTest, ATaskGroupLaunchesWholeOrNotAtAll) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  // Each member fits alone; together they do not.
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("g1", "cpus:1.5"), Task("g2", "cpus:1")}, 5,
                     /*group=*/true)
                  .ok());
  EXPECT_THAT(agent.stream->Take(), IsEmpty());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(2));
  for (const v1::TaskStatus& update : updates) {
    EXPECT_EQ(update.state(), v1::TASK_DROPPED);
    EXPECT_EQ(update.reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
    EXPECT_THAT(update.message(), HasSubstr("task group member 'g2'"));
  }
  EXPECT_EQ(master_.snapshot()->tasks_size(), 0);

  // A member without a command makes every member TASK_ERROR.
  loop_.AdvanceTime(absl::Seconds(6));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  v1::TaskInfo bad = Task("h2", "cpus:0.5");
  bad.mutable_command()->clear_value();
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("h1", "cpus:0.5"), bad}, 5, /*group=*/true).ok());
  updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(2));
  EXPECT_EQ(updates[0].state(), v1::TASK_ERROR);
  EXPECT_EQ(updates[1].state(), v1::TASK_ERROR);
  EXPECT_THAT(updates[0].message(), HasSubstr("no command"));
  EXPECT_THAT(agent.stream->Take(), IsEmpty());
}

TEST_F(MasterTest, CallsFromAStaleStreamAreRefused) {
  AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe();
  v1::DeclineRequest decline;
  *decline.mutable_header() = s.header();
  decline.mutable_header()->set_stream_id("someone-else");
  EXPECT_EQ(master_.Decline(decline).code(), absl::StatusCode::kPermissionDenied);
  decline.mutable_header()->set_framework_id("nobody");
  EXPECT_EQ(master_.Decline(decline).code(), absl::StatusCode::kNotFound);
}

TEST_F(MasterTest, KillOfAnUnknownTaskAnswersWithAReconciliationUpdate) {
  Scheduler s = Subscribe();
  v1::KillRequest kill;
  *kill.mutable_header() = s.header();
  kill.set_task_id("ghost");
  ASSERT_TRUE(master_.Kill(kill).ok());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_UNKNOWN);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_RECONCILIATION);
  EXPECT_EQ(updates[0].source(), v1::TaskStatus::SOURCE_MASTER);
}

TEST_F(MasterTest, KillOfARunningTaskReachesItsAgent) {
  Agent agent = AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  agent.stream->Take();
  v1::KillRequest kill;
  *kill.mutable_header() = s.header();
  kill.set_task_id("t1");
  ASSERT_TRUE(master_.Kill(kill).ok());
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  EXPECT_EQ(to_agent[0].kill_task().task_id(), "t1");
}

TEST_F(MasterTest, ASecondSubscriptionWithTheSameIdFailsOverTheFirst) {
  Scheduler first = Subscribe("*", "", 60);
  Scheduler second = Subscribe("*", first.framework_id, 60);
  EXPECT_EQ(second.framework_id, first.framework_id);
  std::vector<v1::Event> events = first.stream->Take();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_EQ(events[0].error().message(), "framework failed over");
  EXPECT_TRUE(first.stream->closed);
  // The first stream's end must not disconnect the framework.
  master_.SchedulerStreamClosed(first.stream_id);
  loop_.RunUntilIdle();
  EXPECT_TRUE(master_.snapshot()->frameworks(0).connected());
}

TEST_F(MasterTest, AFrameworkWhoseSchedulerDoesNotReturnIsRemovedAfterTheFailoverTimeout) {
  Agent agent = AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe("*", "", 10);
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  agent.stream->Take();
  master_.SchedulerStreamClosed(s.stream_id);
  loop_.AdvanceTime(absl::Seconds(9));
  EXPECT_EQ(master_.snapshot()->frameworks_size(), 1);
  EXPECT_THAT(agent.stream->Take(), IsEmpty());
  loop_.AdvanceTime(absl::Seconds(2));
  EXPECT_EQ(master_.snapshot()->frameworks_size(), 0);
  EXPECT_EQ(master_.snapshot()->completed_frameworks_size(), 1);
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  EXPECT_EQ(to_agent[0].shutdown_framework().framework_id(), s.framework_id);

  // Re-subscribing with the removed id is refused.
  Scheduler again = Subscribe("*", s.framework_id);
  std::vector<v1::Event> events = again.stream->Take();
  ASSERT_THAT(events, SizeIs(1));
  EXPECT_THAT(events[0].error().message(), HasSubstr("torn down"));
  EXPECT_TRUE(again.stream->closed);
}

TEST_F(MasterTest, UnansweredOffersAreRescindedAfterTheOfferTimeout) {
  AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  loop_.AdvanceTime(absl::Seconds(29));
  EXPECT_THAT(s.stream->Take(), IsEmpty());
  loop_.AdvanceTime(absl::Seconds(1));
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_GE(events.size(), 1u);
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());
  // Offered again in the next pass.
  EXPECT_THAT(Offers(events), SizeIs(1));
}

TEST_F(MasterTest, AnAgentLinkMustStartWithARegister) {
  auto stream = std::make_shared<AgentStream>();
  v1::AgentMessage pong;
  pong.mutable_pong()->set_nonce(1);
  master_.HandleAgentMessage(StreamId("l"), pong, stream);
  EXPECT_TRUE(stream->closed);
  EXPECT_EQ(stream->close_status.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(MasterTest, AnAgentWithMalformedResourcesIsRefused) {
  auto stream = std::make_shared<AgentStream>();
  v1::AgentMessage message;
  message.mutable_register_()->mutable_info()->set_hostname("h");
  v1::Resource* bad = message.mutable_register_()->mutable_info()->add_resources();
  bad->set_name("cpus");
  bad->set_scalar(-1);
  master_.HandleAgentMessage(StreamId("l"), message, stream);
  EXPECT_TRUE(stream->closed);
  EXPECT_EQ(stream->close_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(stream->close_status.message()), HasSubstr("cpus"));
  EXPECT_EQ(master_.snapshot()->agents_size(), 0);
}

TEST_F(MasterTest, TasksUnknownToAReregisteringAgentAreDropped) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  master_.AgentLinkClosed(agent.link);
  loop_.RunUntilIdle();
  s.stream->Take();

  // The agent comes back on a new link without the task.
  auto stream = std::make_shared<AgentStream>();
  v1::AgentMessage message;
  v1::AgentInfo* info = message.mutable_register_()->mutable_info();
  info->set_id(agent.id);
  info->set_hostname("h1");
  ToProto(Res("cpus:2;mem:1024"), info->mutable_resources());
  master_.HandleAgentMessage(StreamId("link-again"), message, stream);
  loop_.RunUntilIdle();
  EXPECT_TRUE(stream->Take()[0].has_registered());

  std::vector<v1::Event> events = s.stream->Take();
  std::vector<v1::TaskStatus> updates = Updates(events);
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_DROPPED);
  EXPECT_EQ(updates[0].source(), v1::TaskStatus::SOURCE_AGENT);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_RECONCILIATION);
  // The whole agent is offered again.
  std::vector<v1::Offer> again = Offers(events);
  ASSERT_THAT(again, SizeIs(1));
  EXPECT_EQ(*FromProto(again[0].resources()), Res("cpus:2;mem:1024"));
}

TEST_F(MasterTest, TasksOfAnAgentThatStaysAwayBecomeUnreachable) {
  Agent agent = AddAgent("cpus:1;mem:512");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_RUNNING, "u1");
  s.stream->Take();
  master_.AgentLinkClosed(agent.link);
  loop_.AdvanceTime(absl::Seconds(76));
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].state(), v1::TASK_UNREACHABLE);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_AGENT_REMOVED);
  EXPECT_GT(updates[0].unreachable_time(), 0);
  EXPECT_EQ(master_.snapshot()->agents(0).status(), v1::AgentState::UNREACHABLE);
}

TEST_F(MasterTest, AnAgentThatAnswersNoPingsIsDisconnected) {
  Agent agent = AddAgent("cpus:1;mem:512");
  loop_.AdvanceTime(absl::Seconds(15));
  std::vector<v1::MasterMessage> pings = agent.stream->Take();
  ASSERT_THAT(pings, SizeIs(1));
  EXPECT_TRUE(pings[0].has_ping());
  loop_.AdvanceTime(absl::Seconds(75));
  EXPECT_TRUE(agent.stream->closed);
  EXPECT_EQ(master_.snapshot()->agents(0).status(), v1::AgentState::DISCONNECTED);
}

TEST_F(MasterTest, AQuotaChangeRescindsOffersAndTheNextOnesRespectTheLimit) {
  AddAgent("cpus:4;mem:1024");
  Scheduler s = Subscribe("q");
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));

  v1::UpdateQuotaRequest request;
  v1::QuotaConfig* config = request.add_quotas();
  config->set_role("q");
  ToProto(Res("cpus:1;mem:256"), config->mutable_limits());
  ASSERT_TRUE(UpdateQuota(request).ok());
  loop_.RunUntilIdle();

  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());
  std::vector<v1::Offer> again = Offers(events);
  ASSERT_THAT(again, SizeIs(1));
  EXPECT_EQ(*FromProto(again[0].resources()), Res("cpus:1;mem:256"));

  std::shared_ptr<const v1::Roles> roles = master_.roles_snapshot();
  bool found = false;
  for (const v1::RoleInfo& role : roles->roles()) {
    if (role.role() == "q") {
      found = true;
      EXPECT_EQ(*FromProto(role.consumed()), Res("cpus:1;mem:256"));
      EXPECT_EQ(*FromProto(role.offered()), Res("cpus:1;mem:256"));
      EXPECT_THAT(role.frameworks(), ::testing::ElementsAre(s.framework_id));
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(MasterTest, QuotaAndWeightUpdatesAreAllOrNothing) {
  v1::UpdateQuotaRequest quota;
  v1::QuotaConfig* good = quota.add_quotas();
  good->set_role("a");
  ToProto(Res("cpus:1"), good->mutable_limits());
  v1::QuotaConfig* bad = quota.add_quotas();
  bad->set_role("b");
  ToProto(Res("cpus:2"), bad->mutable_guarantees());
  ToProto(Res("cpus:1"), bad->mutable_limits());
  absl::Status status = UpdateQuota(quota);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("role 'b'"));
  loop_.RunUntilIdle();
  const auto held2 = master_.roles_snapshot();  // Keeps the snapshot alive for the loop.
  for (const v1::RoleInfo& role : held2->roles()) {
    EXPECT_NE(role.role(), "a") << "quota of 'a' was applied although 'b' was refused";
  }

  v1::UpdateWeightsRequest weights;
  v1::WeightInfo* w = weights.add_weights();
  w->set_role("a");
  w->set_weight(2);
  v1::WeightInfo* zero = weights.add_weights();
  zero->set_role("b");
  zero->set_weight(0);
  status = UpdateWeights(weights);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("'b'"));
}

TEST_F(MasterTest, AZeroLimitIsHonouredAndShown) {
  AddAgent("cpus:2;mem:1024");
  v1::UpdateQuotaRequest request;
  v1::QuotaConfig* config = request.add_quotas();
  config->set_role("q");
  v1::Resource* cpus = config->add_limits();
  cpus->set_name("cpus");
  cpus->set_scalar(0);
  v1::Resource* mem = config->add_limits();
  mem->set_name("mem");
  mem->set_scalar(0);
  ASSERT_TRUE(UpdateQuota(request).ok());
  Scheduler q = Subscribe("q");
  EXPECT_THAT(Offers(q.stream->Take()), IsEmpty());
  loop_.RunUntilIdle();
  bool found = false;
  const auto held3 = master_.roles_snapshot();  // Keeps the snapshot alive for the loop.
  for (const v1::RoleInfo& role : held3->roles()) {
    if (role.role() == "q") {
      found = true;
      ASSERT_EQ(role.quota().limits_size(), 2);
      EXPECT_EQ(role.quota().limits(0).scalar(), 0);
    }
  }
  EXPECT_TRUE(found);

  // A guarantee above a zero limit is refused before anything is applied.
  v1::UpdateQuotaRequest bad;
  v1::QuotaConfig* other = bad.add_quotas();
  other->set_role("other");
  ToProto(Res("cpus:1"), other->mutable_guarantees());
  v1::QuotaConfig* zero = bad.add_quotas();
  zero->set_role("z");
  ToProto(Res("cpus:1"), zero->mutable_guarantees());
  v1::Resource* none = zero->add_limits();
  none->set_name("cpus");
  none->set_scalar(0);
  EXPECT_EQ(UpdateQuota(bad).code(), absl::StatusCode::kInvalidArgument);
  loop_.RunUntilIdle();
  const auto held4 = master_.roles_snapshot();  // Keeps the snapshot alive for the loop.
  for (const v1::RoleInfo& role : held4->roles()) {
    EXPECT_NE(role.role(), "other");
  }
}

TEST_F(MasterTest, AResubscribingSchedulerStartsUnsuppressed) {
  AddAgent("cpus:1;mem:512");
  Scheduler first = Subscribe("*", "", 60);
  std::vector<v1::Offer> offers = Offers(first.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  v1::SuppressRequest suppress;
  *suppress.mutable_header() = first.header();
  ASSERT_TRUE(master_.Suppress(suppress).ok());
  v1::DeclineRequest decline;
  *decline.mutable_header() = first.header();
  decline.add_offer_ids(offers[0].id());
  decline.mutable_filters()->set_refuse_seconds(60);
  ASSERT_TRUE(master_.Decline(decline).ok());
  loop_.AdvanceTime(absl::Seconds(2));
  EXPECT_THAT(Offers(first.stream->Take()), IsEmpty());

  Scheduler second = Subscribe("*", first.framework_id, 60);
  EXPECT_THAT(Offers(second.stream->Take()), SizeIs(1));
}

TEST_F(MasterTest, AMultiRoleFrameworkGetsOneOfferPerRole) {
  AddAgent("cpus:4;mem:1024");
  v1::UpdateQuotaRequest request;
  v1::QuotaConfig* config = request.add_quotas();
  config->set_role("a");
  ToProto(Res("cpus:1;mem:128"), config->mutable_limits());
  ASSERT_TRUE(UpdateQuota(request).ok());

  auto stream = std::make_shared<SchedulerStream>();
  v1::SubscribeRequest subscribe;
  subscribe.mutable_framework_info()->set_name("multi");
  subscribe.mutable_framework_info()->add_roles("a");
  subscribe.mutable_framework_info()->add_roles("b");
  master_.Subscribe(subscribe, StreamId("multi"), stream);
  loop_.RunUntilIdle();
  std::vector<v1::Offer> offers = Offers(stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  std::map<std::string, Resources> by_role;
  for (const v1::Offer& offer : offers) {
    by_role[offer.role()] = *FromProto(offer.resources());
    for (const v1::Resource& resource : offer.resources()) {
      EXPECT_EQ(resource.allocation_role(), offer.role());
    }
  }
  EXPECT_EQ(by_role["a"], Res("cpus:1;mem:128"));
  EXPECT_EQ(by_role["b"], Res("cpus:3;mem:896"));
}

TEST_F(MasterTest, InvalidFrameworkInfoIsRefusedWithAnError) {
  Scheduler s = Subscribe("eng//web");
  ASSERT_THAT(s.stream->messages, SizeIs(1));
  EXPECT_THAT(s.stream->messages[0].error().message(), HasSubstr("invalid role 'eng//web'"));
  EXPECT_TRUE(s.stream->closed);
  EXPECT_EQ(master_.snapshot()->frameworks_size(), 0);
}

v1::ResourceStatistics Stats(uint64_t mem_usage_bytes, double cpus_user_time_secs) {
  v1::ResourceStatistics stats;
  stats.set_timestamp(1000.0);
  stats.set_mem_usage_bytes(mem_usage_bytes);
  stats.set_cpus_user_time_secs(cpus_user_time_secs);
  return stats;
}

v1::AgentMessage UsageMessage(
    const std::vector<std::pair<std::string, std::string>>& framework_and_task,
    const std::vector<v1::ResourceStatistics>& stats, const v1::ResourceStatistics& total) {
  v1::AgentMessage message;
  v1::AgentMessage::Usage* usage = message.mutable_usage();
  for (size_t i = 0; i < framework_and_task.size(); ++i) {
    v1::AgentMessage::Usage::TaskUsage* entry = usage->add_tasks();
    entry->set_framework_id(framework_and_task[i].first);
    entry->set_task_id(framework_and_task[i].second);
    *entry->mutable_statistics() = stats[i];
  }
  *usage->mutable_total() = total;
  return message;
}

TEST_F(MasterTest, AUsageReportShowsUpForTheAgentAndItsTask) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:128")}).ok());
  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_RUNNING, "u1");

  master_.HandleAgentMessage(
      agent.link, UsageMessage({{s.framework_id, "t1"}}, {Stats(4096, 1.5)}, Stats(8192, 2.5)),
      agent.stream);
  loop_.RunUntilIdle();

  std::shared_ptr<const v1::State> state = master_.snapshot();
  ASSERT_EQ(state->agents_size(), 1);
  EXPECT_EQ(state->agents(0).usage().mem_usage_bytes(), 8192u);
  EXPECT_EQ(state->agents(0).usage().cpus_user_time_secs(), 2.5);
  ASSERT_EQ(state->tasks_size(), 1);
  EXPECT_EQ(state->tasks(0).statistics().mem_usage_bytes(), 4096u);
  EXPECT_EQ(state->tasks(0).statistics().cpus_user_time_secs(), 1.5);
  EXPECT_FALSE(agent.stream->closed);

  // A later report replaces the earlier one.
  master_.HandleAgentMessage(
      agent.link, UsageMessage({{s.framework_id, "t1"}}, {Stats(100, 3.0)}, Stats(200, 4.0)),
      agent.stream);
  loop_.RunUntilIdle();
  state = master_.snapshot();
  EXPECT_EQ(state->agents(0).usage().mem_usage_bytes(), 200u);
  EXPECT_EQ(state->tasks(0).statistics().mem_usage_bytes(), 100u);
}

TEST_F(MasterTest, UsageOfUnknownTasksIsIgnored) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Agent other = AddAgent("cpus:2;mem:1024", "h2");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  const v1::Offer& on_other = offers[0].agent_id() == other.id ? offers[0] : offers[1];
  ASSERT_TRUE(Launch(s, {on_other.id()}, {Task("t1", "cpus:1;mem:128")}).ok());

  // `agent` reports a task nobody knows and a task that runs on `other`.
  master_.HandleAgentMessage(
      agent.link,
      UsageMessage({{s.framework_id, "ghost"}, {"no-such-framework", "t1"}, {s.framework_id, "t1"}},
                   {Stats(1, 1), Stats(2, 2), Stats(3, 3)}, Stats(64, 1)),
      agent.stream);
  loop_.RunUntilIdle();

  std::shared_ptr<const v1::State> state = master_.snapshot();
  EXPECT_FALSE(agent.stream->closed);
  ASSERT_EQ(state->tasks_size(), 1);
  EXPECT_EQ(state->tasks(0).task_id(), "t1");
  EXPECT_FALSE(state->tasks(0).has_statistics());
  // The agent's own total is still recorded.
  for (const v1::AgentState& agent_state : state->agents()) {
    EXPECT_EQ(agent_state.usage().mem_usage_bytes(), agent_state.info().id() == agent.id ? 64u : 0u)
        << agent_state.info().id();
  }
}

TEST_F(MasterTest, UsageOnAnUnregisteredLinkIsIgnored) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  auto stranger = std::make_shared<AgentStream>();
  master_.HandleAgentMessage(StreamId("link-stranger"), UsageMessage({}, {}, Stats(64, 1)),
                             stranger);
  loop_.RunUntilIdle();
  EXPECT_FALSE(stranger->closed);
  EXPECT_THAT(stranger->messages, IsEmpty());
  ASSERT_EQ(master_.snapshot()->agents_size(), 1);
  EXPECT_EQ(master_.snapshot()->agents(0).usage().mem_usage_bytes(), 0u);
}

TEST_F(MasterTest, UsageReportsPublishOnceAndRunNoAllocation) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Subscribe();
  loop_.RunUntilIdle();
  const int64_t cycles = master_.snapshot()->counters().at("allocation_cycles");
  const std::shared_ptr<const v1::State> before = master_.snapshot();

  // Two reports in one loop batch.
  master_.HandleAgentMessage(agent.link, UsageMessage({}, {}, Stats(1, 1)), agent.stream);
  master_.HandleAgentMessage(agent.link, UsageMessage({}, {}, Stats(2, 2)), agent.stream);
  EXPECT_EQ(master_.snapshot(), before);  // Nothing is published mid-batch.

  // Exactly one closure follows: the publication (no allocation pass).
  EXPECT_EQ(loop_.RunUntilIdle(), 1);
  EXPECT_NE(master_.snapshot(), before);
  EXPECT_EQ(master_.snapshot()->agents(0).usage().mem_usage_bytes(), 2u);
  EXPECT_EQ(master_.snapshot()->counters().at("allocation_cycles"), cycles);
}

}  // namespace
}  // namespace rz::master
