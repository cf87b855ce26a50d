// The scheduler API of the master (H3 of issue 5): ACCEPT validation with precise reasons,
// RESERVE/UNRESERVE (in ACCEPT and by operators), UPDATE_FRAMEWORK, MESSAGE, failover rules,
// the outstanding offer cap and resuming a scheduler without losing events. MasterTest-style:
// manual loop, capturing outboxes, manual clock.
#include "master/master_test_fixture.h"

namespace rz::master {
namespace {

using ::testing::ElementsAre;

class SchedulerApiTest : public MasterTest {
 protected:
  static v1::FrameworkInfo Info(const std::vector<std::string>& roles = {"*"},
                                double failover_timeout = 0) {
    v1::FrameworkInfo info;
    info.set_name("h3");
    info.set_user("alice");
    info.set_principal("p1");
    for (const std::string& role : roles) {
      info.add_roles(role);
    }
    info.set_failover_timeout_seconds(failover_timeout);
    return info;
  }

  // Subscribes with `info` (resuming after `last_sequence` if set); returns the scheduler with
  // SUBSCRIBED taken off its stream (left there if the subscription was refused).
  Scheduler SubscribeWith(const v1::FrameworkInfo& info, uint64_t last_sequence = 0) {
    Scheduler s{StreamId(absl::StrCat("h3-stream-", ++streams_)),
                std::make_shared<SchedulerStream>(), ""};
    v1::SubscribeRequest request;
    *request.mutable_framework_info() = info;
    request.set_last_sequence(last_sequence);
    master_.Subscribe(request, s.stream_id, s.stream);
    loop_.RunUntilIdle();
    if (!s.stream->messages.empty() && s.stream->messages[0].has_subscribed()) {
      s.framework_id = s.stream->messages[0].subscribed().framework_id();
      s.stream->messages.erase(s.stream->messages.begin());
    }
    return s;
  }

  static v1::Operation Reserve(const std::string& resources) {
    v1::Operation op;
    op.set_type(v1::Operation::RESERVE);
    ToProto(Res(resources), op.mutable_reserve()->mutable_resources());
    return op;
  }
  static v1::Operation Unreserve(const std::string& resources) {
    v1::Operation op;
    op.set_type(v1::Operation::UNRESERVE);
    ToProto(Res(resources), op.mutable_unreserve()->mutable_resources());
    return op;
  }
  static v1::Operation LaunchOp(std::vector<v1::TaskInfo> tasks) {
    v1::Operation op;
    op.set_type(v1::Operation::LAUNCH);
    for (v1::TaskInfo& task : tasks) {
      *op.mutable_launch()->add_tasks() = std::move(task);
    }
    return op;
  }

  // UPDATE_FRAMEWORK, run until the registry answered.
  absl::Status UpdateFramework(const v1::UpdateFrameworkRequest& request) {
    absl::Status result = absl::UnknownError("no answer");
    master_.UpdateFramework(request, [&result](absl::Status status) { result = status; });
    loop_.RunUntilIdle();
    return result;
  }

  absl::Status AcceptOps(const Scheduler& s, const std::vector<std::string>& offer_ids,
                         const std::vector<v1::Operation>& ops, double refuse_seconds = 0) {
    v1::AcceptRequest request;
    *request.mutable_header() = s.header();
    for (const std::string& id : offer_ids) {
      request.add_offer_ids(id);
    }
    for (const v1::Operation& op : ops) {
      *request.add_operations() = op;
    }
    request.mutable_filters()->set_refuse_seconds(refuse_seconds);
    absl::Status status = Act(&Master::Accept, request);
    loop_.RunUntilIdle();
    return status;
  }

  absl::Status Decline(const Scheduler& s, const std::string& offer_id, double refuse = 0) {
    v1::DeclineRequest request;
    *request.mutable_header() = s.header();
    request.add_offer_ids(offer_id);
    request.mutable_filters()->set_refuse_seconds(refuse);
    absl::Status status = master_.Decline(request);
    loop_.RunUntilIdle();
    return status;
  }

  // The single TASK_DROPPED/TASK_ERROR a one-task ACCEPT produced, checked for reason, message
  // and the invalid accept counter when `invalid`.
  v1::TaskStatus OnlyUpdate(std::vector<v1::Event> events) {
    std::vector<v1::TaskStatus> updates = Updates(events);
    EXPECT_THAT(updates, SizeIs(1));
    return updates.empty() ? v1::TaskStatus() : updates[0];
  }

  static Resources Total(const std::vector<v1::Offer>& offers) {
    Resources total;
    for (const v1::Offer& offer : offers) {
      total += *FromProto(offer.resources());
    }
    return total;
  }

  void CloseStream(const Scheduler& s) {
    master_.SchedulerStreamClosed(s.stream_id);
    loop_.RunUntilIdle();
  }
};

// --- ACCEPT validation: each failure names its reason and the resources come back --------------

TEST_F(SchedulerApiTest, AcceptOfAnUnknownOfferSaysUnknown) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  s.stream->Take();
  ASSERT_TRUE(Launch(s, {"never-made"}, {Task("t1", "cpus:1")}).ok());
  v1::TaskStatus update = OnlyUpdate(s.stream->Take());
  EXPECT_EQ(update.state(), v1::TASK_DROPPED);
  EXPECT_EQ(update.reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_EQ(update.message(), "invalid offers: offer 'never-made' is unknown");
  EXPECT_EQ(master_.snapshot()->counters().at("invalid_accepts"), 1);
}

TEST_F(SchedulerApiTest, AcceptOfATimedOutOfferSaysItTimedOutAndTheResourcesComeBack) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  loop_.AdvanceTime(absl::Seconds(30));  // The offer timeout; re-offered at once.
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());
  ASSERT_THAT(Offers(events), SizeIs(1));
  EXPECT_EQ(Total(Offers(events)), Res("cpus:2;mem:1024"));

  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  v1::TaskStatus update = OnlyUpdate(s.stream->Take());
  EXPECT_EQ(update.state(), v1::TASK_DROPPED);
  EXPECT_THAT(update.message(), HasSubstr(absl::StrCat("offer '", offers[0].id(), "' timed out")));
  EXPECT_EQ(master_.counters().invalid_accepts, 1);
}

TEST_F(SchedulerApiTest, AcceptOfARescindedOfferSaysItWasRescinded) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  v1::UpdateWeightsRequest weights;
  v1::WeightInfo* weight = weights.add_weights();
  weight->set_role("other");
  weight->set_weight(2);
  ASSERT_TRUE(UpdateWeights(weights).ok());  // Rescinds every offer.
  loop_.RunUntilIdle();
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events[0].has_rescind());
  std::vector<v1::Offer> again = Offers(events);
  ASSERT_THAT(again, SizeIs(1));
  EXPECT_EQ(Total(again), Res("cpus:2;mem:1024"));

  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  EXPECT_THAT(OnlyUpdate(s.stream->Take()).message(),
              HasSubstr(absl::StrCat("offer '", offers[0].id(), "' was rescinded")));
}

TEST_F(SchedulerApiTest, AcceptOfADeclinedOfferSaysItWasDeclined) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Decline(s, offers[0].id(), /*refuse=*/100).ok());
  EXPECT_THAT(Offers(s.stream->Take()), IsEmpty());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  EXPECT_THAT(OnlyUpdate(s.stream->Take()).message(),
              HasSubstr(absl::StrCat("offer '", offers[0].id(), "' was declined")));
}

TEST_F(SchedulerApiTest, AcceptOfAnAlreadyAcceptedOfferSaysSo) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:64")}, 100).ok());
  s.stream->Take();
  agent.stream->Take();
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t2", "cpus:1;mem:64")}).ok());
  v1::TaskStatus update = OnlyUpdate(s.stream->Take());
  EXPECT_EQ(update.task_id(), "t2");
  EXPECT_THAT(update.message(),
              HasSubstr(absl::StrCat("offer '", offers[0].id(), "' was already accepted")));
  EXPECT_THAT(agent.stream->Take(), IsEmpty());
}

TEST_F(SchedulerApiTest, AcceptOfAnOfferOfAnAgentThatReregisteredSaysStale) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  // The agent's link drops and it comes back on a new one with its id.
  master_.AgentLinkClosed(agent.link);
  loop_.RunUntilIdle();
  v1::AgentMessage reg;
  v1::AgentInfo* info = reg.mutable_register_()->mutable_info();
  info->set_id(agent.id);
  info->set_hostname("h1");
  ToProto(Res("cpus:2;mem:1024"), info->mutable_resources());
  auto link = std::make_shared<AgentStream>();
  master_.HandleAgentMessage(StreamId("link-again"), reg, link);
  loop_.RunUntilIdle();
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_THAT(Offers(events), SizeIs(1));  // The new offer of the returned agent.
  link->Take();                            // REGISTERED.

  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  v1::TaskStatus update = OnlyUpdate(s.stream->Take());
  EXPECT_EQ(update.state(), v1::TASK_DROPPED);
  EXPECT_THAT(update.message(), HasSubstr("is stale"));
  EXPECT_THAT(link->Take(), IsEmpty());
}

TEST_F(SchedulerApiTest, AcceptOfAnotherFrameworksOfferIsRefusedAndItsOwnerKeepsIt) {
  AddAgent("cpus:2;mem:1024");
  Scheduler owner = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(owner.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  Scheduler thief = SubscribeWith(Info());
  thief.stream->Take();
  ASSERT_TRUE(Launch(thief, {offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  EXPECT_THAT(OnlyUpdate(thief.stream->Take()).message(),
              HasSubstr("belongs to another framework"));
  EXPECT_EQ(master_.snapshot()->offers_size(), 1);
  // The owner can still use it.
  ASSERT_TRUE(Launch(owner, {offers[0].id()}, {Task("t1", "cpus:1;mem:64")}).ok());
  EXPECT_THAT(Updates(owner.stream->Take()), IsEmpty());
  EXPECT_EQ(master_.snapshot()->tasks_size(), 1);
}

TEST_F(SchedulerApiTest, DuplicateOfferIdsAreRefusedAndTheResourcesAreOfferedAgain) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id(), offers[0].id()}, {Task("t1", "cpus:1")}).ok());
  std::vector<v1::Event> events = s.stream->Take();
  EXPECT_THAT(OnlyUpdate(events).message(), HasSubstr("appears more than once"));
  EXPECT_EQ(Total(Offers(events)), Res("cpus:2;mem:1024"));
}

TEST_F(SchedulerApiTest, OffersOfTwoRolesCannotBeCombined) {
  AddAgent("cpus(a):1;mem(a):128;cpus(b):1;mem(b):128");
  Scheduler s = SubscribeWith(Info({"a", "b"}));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  ASSERT_NE(offers[0].role(), offers[1].role());
  ASSERT_TRUE(Launch(s, {offers[0].id(), offers[1].id()}, {Task("t1", "cpus(a):1")}).ok());
  std::vector<v1::Event> events = s.stream->Take();
  EXPECT_THAT(OnlyUpdate(events).message(), HasSubstr("are allocated to different roles"));
  EXPECT_EQ(Total(Offers(events)), Res("cpus(a):1;mem(a):128;cpus(b):1;mem(b):128"));
}

TEST_F(SchedulerApiTest, TasksWithoutCommandOrResourcesOrWithADuplicateIdAreErrors) {
  Agent agent = AddAgent("cpus:4;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  v1::TaskInfo no_command = Task("no-command", "cpus:1");
  no_command.clear_command();
  v1::TaskInfo no_resources = Task("no-resources", "cpus:1");
  no_resources.clear_resources();
  ASSERT_TRUE(Launch(s, {offers[0].id()},
                     {no_command, no_resources, Task("twice", "cpus:1"), Task("twice", "cpus:1")})
                  .ok());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(3));
  EXPECT_EQ(updates[0].state(), v1::TASK_ERROR);
  EXPECT_EQ(updates[0].reason(), v1::TaskStatus::REASON_TASK_INVALID);
  EXPECT_EQ(updates[0].message(), "task has no command");
  EXPECT_EQ(updates[1].state(), v1::TASK_ERROR);
  EXPECT_EQ(updates[1].message(), "task uses no resources");
  EXPECT_EQ(updates[2].task_id(), "twice");
  EXPECT_EQ(updates[2].state(), v1::TASK_ERROR);
  EXPECT_THAT(updates[2].message(), HasSubstr("already in use"));
  ASSERT_THAT(agent.stream->Take(), SizeIs(1));  // Only the first "twice".
}

TEST_F(SchedulerApiTest, ATaskUsingResourcesTheOffersDoNotHoldIsDropped) {
  AddAgent("cpus:1;mem:512");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("gpu", "gpus:1")}, 0).ok());
  std::vector<v1::Event> events = s.stream->Take();
  v1::TaskStatus update = OnlyUpdate(events);
  EXPECT_EQ(update.state(), v1::TASK_DROPPED);
  EXPECT_EQ(update.reason(), v1::TaskStatus::REASON_INVALID_OFFERS);
  EXPECT_THAT(update.message(), HasSubstr("which the offers do not hold"));
  EXPECT_EQ(Total(Offers(events)), Res("cpus:1;mem:512"));
}

// --- Failover -----------------------------------------------------------------------------------

TEST_F(SchedulerApiTest, FailoverWithAChangedUserOrPrincipalIsRefused) {
  Scheduler first = SubscribeWith(Info({"*"}, 60));
  ASSERT_FALSE(first.framework_id.empty());
  v1::FrameworkInfo info = Info({"*"}, 60);
  info.set_id(first.framework_id);
  info.set_user("mallory");
  Scheduler second = SubscribeWith(info);
  ASSERT_THAT(second.stream->messages, SizeIs(1));
  EXPECT_THAT(second.stream->messages[0].error().message(), HasSubstr("cannot change its user"));
  EXPECT_TRUE(second.stream->closed);
  EXPECT_EQ(second.stream->close_status.code(), absl::StatusCode::kPermissionDenied);

  info.set_user("alice");
  info.set_principal("p2");
  Scheduler third = SubscribeWith(info);
  ASSERT_THAT(third.stream->messages, SizeIs(1));
  EXPECT_THAT(third.stream->messages[0].error().message(), HasSubstr("principal"));
  // The first instance is untouched.
  EXPECT_FALSE(first.stream->closed);
}

// --- UPDATE_FRAMEWORK ---------------------------------------------------------------------------

TEST_F(SchedulerApiTest, UpdateFrameworkToANewRoleGivesOffersThereAndShowsInState) {
  AddAgent("cpus:1;mem:128;cpus(eng):1;mem(eng):128");
  Scheduler s = SubscribeWith(Info({"*"}));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(offers[0].role(), "*");

  v1::UpdateFrameworkRequest request;
  *request.mutable_header() = s.header();
  *request.mutable_framework_info() = Info({"eng"});
  request.mutable_framework_info()->set_name("renamed");
  ASSERT_TRUE(UpdateFramework(request).ok());
  loop_.RunUntilIdle();
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());  // Its role was left.
  std::vector<v1::Offer> now = Offers(events);
  ASSERT_THAT(now, SizeIs(1));
  EXPECT_EQ(now[0].role(), "eng");
  EXPECT_EQ(*FromProto(now[0].resources()), Res("cpus:1;mem:128;cpus(eng):1;mem(eng):128"));
  const v1::FrameworkInfo& shown = master_.snapshot()->frameworks(0).info();
  EXPECT_EQ(shown.name(), "renamed");
  EXPECT_THAT(shown.roles(), ElementsAre("eng"));
  EXPECT_EQ(shown.id(), s.framework_id);
}

TEST_F(SchedulerApiTest, UpdateFrameworkRefusesPrincipalAndUserChangesAndInvalidInfo) {
  Scheduler s = SubscribeWith(Info());
  v1::UpdateFrameworkRequest request;
  *request.mutable_header() = s.header();
  *request.mutable_framework_info() = Info();
  request.mutable_framework_info()->set_principal("p2");
  absl::Status status = UpdateFramework(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("principal is immutable"));

  *request.mutable_framework_info() = Info();
  request.mutable_framework_info()->set_user("root");
  status = UpdateFramework(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(status.message(), HasSubstr("user is immutable"));

  *request.mutable_framework_info() = Info({"bad role!"});
  status = UpdateFramework(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("invalid role"));

  *request.mutable_framework_info() = Info();
  request.mutable_framework_info()->set_id("someone-else");
  EXPECT_EQ(UpdateFramework(request).code(), absl::StatusCode::kInvalidArgument);
  // Nothing changed.
  EXPECT_EQ(master_.snapshot()->frameworks(0).info().principal(), "p1");
}

TEST_F(SchedulerApiTest, AnUpdateFrameworkThatCannotBeStoredChangesNothing) {
  Scheduler s = SubscribeWith(Info());
  store_.FailApplies(absl::UnavailableError("disk on fire"));
  v1::UpdateFrameworkRequest request;
  *request.mutable_header() = s.header();
  *request.mutable_framework_info() = Info();
  request.mutable_framework_info()->set_name("renamed");
  absl::Status status = UpdateFramework(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("disk on fire"));
  EXPECT_NE(master_.snapshot()->frameworks(0).info().name(), "renamed");

  store_.ClearFailure();
  ASSERT_TRUE(UpdateFramework(request).ok());
  EXPECT_EQ(master_.snapshot()->frameworks(0).info().name(), "renamed");
}

// --- MESSAGE ------------------------------------------------------------------------------------

TEST_F(SchedulerApiTest, AMessageReachesTheAgentOfTheTask) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info());
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:64")}).ok());
  agent.stream->Take();

  v1::MessageRequest request;
  *request.mutable_header() = s.header();
  request.set_task_id("t1");
  request.set_data(std::string("hello\0world", 11));
  ASSERT_TRUE(master_.Message(request).ok());
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  ASSERT_TRUE(to_agent[0].has_framework_message());
  EXPECT_EQ(to_agent[0].framework_message().framework_id(), s.framework_id);
  EXPECT_EQ(to_agent[0].framework_message().task_id(), "t1");
  EXPECT_EQ(to_agent[0].framework_message().data(), std::string("hello\0world", 11));

  request.set_task_id("nope");
  EXPECT_EQ(master_.Message(request).code(), absl::StatusCode::kNotFound);
  request.set_task_id("t1");
  request.set_data(std::string(Master::kMaxMessageBytes + 1, 'x'));
  absl::Status status = master_.Message(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("1 MiB"));
  request.set_data(std::string(Master::kMaxMessageBytes, 'x'));
  EXPECT_TRUE(master_.Message(request).ok());
  EXPECT_THAT(agent.stream->Take(), SizeIs(1));
}

// --- RESERVE / UNRESERVE ------------------------------------------------------------------------

TEST_F(SchedulerApiTest, ReserveThenLaunchInOneAccept) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info({"eng"}));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(AcceptOps(s, {offers[0].id()},
                        {Reserve("cpus(eng):1;mem(eng):256"),
                         LaunchOp({Task("t1", "cpus(eng):1;mem(eng):128")})},
                        /*refuse_seconds=*/0)
                  .ok());
  // The accept triggers an allocation at once: what the task does not use is offered again,
  // reserved and unreserved alike.
  std::vector<v1::Event> events = s.stream->Take();
  EXPECT_THAT(Updates(events), IsEmpty());
  EXPECT_EQ(Total(Offers(events)), Res("mem(eng):128;cpus:1;mem:768"));
  std::vector<v1::MasterMessage> to_agent = agent.stream->Take();
  ASSERT_THAT(to_agent, SizeIs(1));
  EXPECT_EQ(*FromProto(to_agent[0].run_task().task().resources()), Res("cpus(eng):1;mem(eng):128"));

  std::shared_ptr<const v1::State> state = master_.snapshot();
  ASSERT_EQ(state->agents_size(), 1);
  EXPECT_EQ(*FromProto(state->agents(0).reserved()), Res("cpus(eng):1;mem(eng):256"));
  EXPECT_EQ(state->agents(0).reserved(0).reservations(0).type(), v1::ReservationInfo::DYNAMIC);
  EXPECT_EQ(*FromProto(state->agents(0).total()), Res("cpus(eng):1;mem(eng):256;cpus:1;mem:768"));
}

TEST_F(SchedulerApiTest, UnreserveReturnsReservedResourcesAndRefusesWhatIsNotReserved) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info({"eng"}));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_TRUE(AcceptOps(s, {offers[0].id()}, {Reserve("cpus(eng):1")}).ok());
  loop_.AdvanceTime(absl::Seconds(1));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(Total(offers), Res("cpus(eng):1;cpus:1;mem:1024"));

  // Unreserving more than is reserved: refused, with the reason, and the offer goes back.
  absl::Status status = AcceptOps(s, {offers[0].id()}, {Unreserve("cpus(eng):1;mem(eng):1")});
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("is not dynamically reserved"));
  EXPECT_THAT(status.message(), HasSubstr("operation 0 (UNRESERVE)"));
  EXPECT_EQ(master_.counters().invalid_accepts, 1);
  EXPECT_EQ(*FromProto(master_.snapshot()->agents(0).reserved()), Res("cpus(eng):1"));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));

  ASSERT_TRUE(AcceptOps(s, {offers[0].id()}, {Unreserve("cpus(eng):1")}).ok());
  EXPECT_THAT(master_.snapshot()->agents(0).reserved(), IsEmpty());
  EXPECT_EQ(*FromProto(master_.snapshot()->agents(0).total()), Res("cpus:2;mem:1024"));
  loop_.AdvanceTime(absl::Seconds(1));
  EXPECT_EQ(Total(Offers(s.stream->Take())), Res("cpus:2;mem:1024"));
}

TEST_F(SchedulerApiTest, ReservingForAnotherRoleOrWithoutARoleIsInvalid) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info({"eng"}));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  absl::Status status = AcceptOps(s, {offers[0].id()}, {Reserve("cpus(ops):1")});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("offers are allocated to role 'eng'"));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  status = AcceptOps(s, {offers[0].id()}, {Reserve("cpus:1")});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("carries no reservation role"));
  EXPECT_THAT(master_.snapshot()->agents(0).reserved(), IsEmpty());
}

TEST_F(SchedulerApiTest, OperatorReservesAndUnreservesFreeResources) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info({"eng"}));
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));

  v1::ReserveResourcesRequest reserve;
  reserve.set_agent_id(agent.id);
  ToProto(Res("cpus(eng):1"), reserve.mutable_resources());
  // The offer holds the resources: it is rescinded first.
  ASSERT_TRUE(Act(&Master::ReserveResources, reserve).ok());
  loop_.RunUntilIdle();
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].rescind().offer_id(), offers[0].id());
  EXPECT_EQ(Total(Offers(events)), Res("cpus(eng):1;cpus:1;mem:1024"));
  EXPECT_EQ(*FromProto(master_.snapshot()->agents(0).reserved()), Res("cpus(eng):1"));

  // Errors: unknown agent, unreserved resources, more than the agent has.
  v1::ReserveResourcesRequest bad = reserve;
  bad.set_agent_id("nope");
  EXPECT_EQ(Act(&Master::ReserveResources, bad).code(), absl::StatusCode::kNotFound);
  bad = reserve;
  ToProto(Res("cpus:1"), bad.mutable_resources());
  EXPECT_EQ(Act(&Master::ReserveResources, bad).code(), absl::StatusCode::kInvalidArgument);
  ToProto(Res("cpus(eng):5"), bad.mutable_resources());
  absl::Status status = Act(&Master::ReserveResources, bad);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("is not free"));

  v1::UnreserveResourcesRequest unreserve;
  unreserve.set_agent_id(agent.id);
  ToProto(Res("mem(eng):1"), unreserve.mutable_resources());
  status = Act(&Master::UnreserveResources, unreserve);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("not dynamically reserved"));
  ToProto(Res("cpus(eng):1"), unreserve.mutable_resources());
  ASSERT_TRUE(Act(&Master::UnreserveResources, unreserve).ok());
  loop_.RunUntilIdle();
  EXPECT_THAT(master_.snapshot()->agents(0).reserved(), IsEmpty());
  EXPECT_EQ(Total(Offers(s.stream->Take())), Res("cpus:2;mem:1024"));
}

TEST_F(SchedulerApiTest, ReservationsSurviveTheAgentReregistering) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  v1::ReserveResourcesRequest reserve;
  reserve.set_agent_id(agent.id);
  ToProto(Res("cpus(eng):1"), reserve.mutable_resources());
  ASSERT_TRUE(Act(&Master::ReserveResources, reserve).ok());
  master_.AgentLinkClosed(agent.link);
  loop_.RunUntilIdle();
  v1::AgentMessage reg;
  v1::AgentInfo* info = reg.mutable_register_()->mutable_info();
  info->set_id(agent.id);
  info->set_hostname("h1");
  ToProto(Res("cpus:2;mem:1024"), info->mutable_resources());
  master_.HandleAgentMessage(StreamId("link-again"), reg, std::make_shared<AgentStream>());
  loop_.RunUntilIdle();
  Scheduler s = SubscribeWith(Info({"eng"}));
  EXPECT_EQ(Total(Offers(s.stream->Take())), Res("cpus(eng):1;cpus:1;mem:1024"));
  EXPECT_EQ(*FromProto(master_.snapshot()->agents(0).total()), Res("cpus(eng):1;cpus:1;mem:1024"));
}

// --- Outstanding offer cap ----------------------------------------------------------------------

TEST_F(SchedulerApiTest, AFrameworkNeverHoldsMoreOffersThanItsCap) {
  AddAgent("cpus:1;mem:128", "h1");
  AddAgent("cpus:1;mem:128", "h2");
  AddAgent("cpus:1;mem:128", "h3");
  v1::FrameworkInfo info = Info();
  info.set_max_outstanding_offers(2);
  Scheduler s = SubscribeWith(info);
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  loop_.AdvanceTime(absl::Seconds(5));
  EXPECT_THAT(Offers(s.stream->Take()), IsEmpty());
  EXPECT_EQ(master_.snapshot()->offers_size(), 2);
  // Declining one makes room for the third agent's.
  ASSERT_TRUE(Decline(s, offers[0].id(), /*refuse=*/100).ok());
  std::vector<v1::Offer> next = Offers(s.stream->Take());
  ASSERT_THAT(next, SizeIs(1));
  EXPECT_NE(next[0].agent_id(), offers[0].agent_id());
  EXPECT_NE(next[0].agent_id(), offers[1].agent_id());
}

// --- No event lost across a reconnect -----------------------------------------------------------

TEST_F(SchedulerApiTest, AResumingSchedulerGetsUpdatesItMissedAndRescindsOfOffersItKnew) {
  Agent agent = AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info({"*"}, 60));
  std::vector<v1::Event> events = s.stream->Take();
  std::vector<v1::Offer> offers = Offers(events);
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Launch(s, {offers[0].id()},
                     {Task("t1", "cpus:1;mem:64"), Task("t2", "cpus:1;mem:64")},
                     /*refuse_seconds=*/0)
                  .ok());
  loop_.AdvanceTime(absl::Seconds(1));
  // t1 RUNNING is seen but not acknowledged; a leftover offer is seen.
  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_RUNNING, "u1");
  events = s.stream->Take();
  ASSERT_THAT(Updates(events), SizeIs(1));
  std::vector<v1::Offer> leftover = Offers(events);
  ASSERT_THAT(leftover, SizeIs(1));
  const uint64_t last_seen = events.back().sequence();

  // The stream breaks; while the scheduler is away t2 starts and finishes.
  CloseStream(s);
  AgentUpdate(agent, s.framework_id, "t2", v1::TASK_RUNNING, "u2");
  AgentUpdate(agent, s.framework_id, "t2", v1::TASK_FINISHED, "u3");
  EXPECT_THAT(s.stream->Take(), IsEmpty());

  v1::FrameworkInfo info = Info({"*"}, 60);
  info.set_id(s.framework_id);
  Scheduler back = SubscribeWith(info, last_seen);
  ASSERT_EQ(back.framework_id, s.framework_id);
  events = back.stream->Take();
  std::map<std::string, v1::TaskStatus> replayed;
  std::vector<std::string> rescinded;
  uint64_t sequence = last_seen + 1;  // SUBSCRIBED.
  for (const v1::Event& event : events) {
    EXPECT_GT(event.sequence(), sequence);
    sequence = event.sequence();
    if (event.has_update()) {
      replayed[event.update().status().task_id()] = event.update().status();
    }
    if (event.has_rescind()) {
      rescinded.push_back(event.rescind().offer_id());
    }
  }
  ASSERT_EQ(replayed.size(), 2u);
  EXPECT_EQ(replayed["t1"].state(), v1::TASK_RUNNING);  // Seen, never acknowledged.
  EXPECT_EQ(replayed["t1"].uuid(), "u1");
  EXPECT_EQ(replayed["t2"].state(), v1::TASK_FINISHED);  // Missed.
  EXPECT_EQ(replayed["t2"].uuid(), "u3");
  // The leftover offer was withdrawn at the disconnect: the scheduler must be told.
  EXPECT_THAT(rescinded, ElementsAre(leftover[0].id()));

  // Acknowledged updates are not replayed again on the next resume.
  for (const auto& [task_id, status] : replayed) {
    v1::AcknowledgeRequest ack;
    *ack.mutable_header() = back.header();
    ack.set_agent_id(agent.id);
    ack.set_task_id(task_id);
    ack.set_uuid(status.uuid());
    ASSERT_TRUE(master_.Acknowledge(ack).ok());
  }
  loop_.RunUntilIdle();
  events = back.stream->Take();
  const uint64_t last = events.empty() ? sequence : events.back().sequence();
  CloseStream(back);
  Scheduler again = SubscribeWith(info, last);
  EXPECT_THAT(Updates(again.stream->Take()), IsEmpty());
}

TEST_F(SchedulerApiTest, AResumeBeforeTheMasterNoticedTheBreakGetsOutstandingOffersAgain) {
  AddAgent("cpus:2;mem:1024");
  Scheduler s = SubscribeWith(Info({"*"}, 60));
  std::vector<v1::Event> events = s.stream->Take();
  ASSERT_THAT(Offers(events), SizeIs(1));
  const std::string offer_id = Offers(events)[0].id();
  // The offer event was lost on the wire: the scheduler saw only SUBSCRIBED (1).
  v1::FrameworkInfo info = Info({"*"}, 60);
  info.set_id(s.framework_id);
  Scheduler back = SubscribeWith(info, /*last_sequence=*/1);
  EXPECT_TRUE(s.stream->closed);  // Failed over.
  std::vector<v1::Offer> offers = Offers(back.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(offers[0].id(), offer_id);
  ASSERT_TRUE(Launch(back, {offer_id}, {Task("t1", "cpus:1;mem:64")}).ok());
  EXPECT_EQ(master_.snapshot()->tasks_size(), 1);
}

TEST_F(SchedulerApiTest, AResumeAfterTheFailoverTimeoutGetsAnError) {
  Scheduler s = SubscribeWith(Info({"*"}, 10));
  CloseStream(s);
  loop_.AdvanceTime(absl::Seconds(10));
  v1::FrameworkInfo info = Info({"*"}, 10);
  info.set_id(s.framework_id);
  Scheduler late = SubscribeWith(info, /*last_sequence=*/1);
  EXPECT_TRUE(late.framework_id.empty());
  ASSERT_THAT(late.stream->messages, SizeIs(1));
  EXPECT_THAT(late.stream->messages[0].error().message(), HasSubstr("has been torn down"));
  EXPECT_EQ(late.stream->close_status.code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace rz::master
