// Maintenance: schedule windows, offer unavailability, inverse offers and their answers,
// machine DOWN and UP.
#include <string>
#include <vector>

#include "master_test_fixture.h"

namespace rz::master {
namespace {

class MaintenanceTest : public MasterTest {
 protected:
  double Now() { return absl::ToDoubleSeconds(loop_.clock().Now() - absl::UnixEpoch()); }

  static v1::MachineId Machine(const std::string& hostname) {
    v1::MachineId machine;
    machine.set_hostname(hostname);
    return machine;
  }

  absl::Status Schedule(const std::vector<std::string>& hostnames, double start,
                        double duration = 3600) {
    v1::UpdateMaintenanceScheduleRequest request;
    v1::MaintenanceWindow* window = request.mutable_schedule()->add_windows();
    for (const std::string& hostname : hostnames) {
      *window->add_machines() = Machine(hostname);
    }
    window->mutable_unavailability()->set_start(start);
    window->mutable_unavailability()->set_duration_seconds(duration);
    absl::Status status = Act(&Master::UpdateMaintenanceSchedule, request);
    loop_.RunUntilIdle();
    return status;
  }

  absl::Status Down(const std::string& hostname) {
    v1::StartMaintenanceRequest request;
    *request.add_machines() = Machine(hostname);
    absl::Status status = Act(&Master::StartMaintenance, request);
    loop_.RunUntilIdle();
    return status;
  }

  absl::Status Up(const std::string& hostname) {
    v1::StopMaintenanceRequest request;
    *request.add_machines() = Machine(hostname);
    absl::Status status = Act(&Master::StopMaintenance, request);
    loop_.RunUntilIdle();
    return status;
  }

  // A task of `s` on a new agent `hostname`.
  Agent WithTask(const Scheduler& s, const std::string& hostname, const std::string& task_id) {
    Agent agent = AddAgent("cpus:2;mem:1024", hostname);
    std::vector<v1::Offer> offers = Offers(s.stream->Take());
    EXPECT_THAT(offers, SizeIs(1));
    EXPECT_TRUE(Launch(s, {offers.at(0).id()}, {Task(task_id, "cpus:1;mem:128")}).ok());
    AgentUpdate(agent, s.framework_id, task_id, v1::TASK_RUNNING, "u-" + task_id);
    agent.stream->Take();
    s.stream->Take();
    return agent;
  }

  static std::vector<v1::InverseOffer> InverseOffers(const std::vector<v1::Event>& events) {
    std::vector<v1::InverseOffer> result;
    for (const v1::Event& event : events) {
      for (const v1::InverseOffer& offer : event.inverse_offers().inverse_offers()) {
        result.push_back(offer);
      }
    }
    return result;
  }
};

TEST_F(MaintenanceTest, OffersFromScheduledMachinesCarryTheUnavailability) {
  Scheduler s = Subscribe();
  Agent h1 = AddAgent("cpus:1;mem:512", "h1");
  Agent h2 = AddAgent("cpus:1;mem:512", "h2");
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  const double start = Now() + 3600;
  ASSERT_TRUE(Schedule({"H1"}, start, 600).ok());  // Hostnames match case-insensitively.
  std::vector<v1::Event> events = s.stream->Take();
  int rescinds = 0;
  for (const v1::Event& event : events) {
    rescinds += event.has_rescind() ? 1 : 0;
  }
  EXPECT_EQ(rescinds, 2);  // The outstanding offers did not show the window.
  offers = Offers(events);
  ASSERT_THAT(offers, SizeIs(2));
  for (const v1::Offer& offer : offers) {
    if (offer.hostname() == "h1") {
      ASSERT_TRUE(offer.has_unavailability());
      EXPECT_DOUBLE_EQ(offer.unavailability().start(), start);
      EXPECT_DOUBLE_EQ(offer.unavailability().duration_seconds(), 600);
    } else {
      EXPECT_FALSE(offer.has_unavailability()) << offer.hostname();
    }
  }
  // Nobody holds resources on h1: no inverse offers.
  EXPECT_THAT(InverseOffers(events), IsEmpty());
  std::shared_ptr<const v1::State> state = master_.snapshot();
  ASSERT_EQ(state->maintenance_schedule().windows_size(), 1);
  for (const v1::AgentState& agent : state->agents()) {
    EXPECT_EQ(agent.has_unavailability(), agent.info().hostname() == "h1");
  }
}

TEST_F(MaintenanceTest, FrameworksWithTasksThereGetInverseOffersAndTheirAnswersShowInStatus) {
  Scheduler s = Subscribe();
  Agent h1 = WithTask(s, "h1", "t1");
  Scheduler other = Subscribe();
  other.stream->Take();
  const double start = Now() + 3600;
  ASSERT_TRUE(Schedule({"h1"}, start).ok());
  std::vector<v1::InverseOffer> inverse = InverseOffers(s.stream->Take());
  ASSERT_THAT(inverse, SizeIs(1));
  EXPECT_EQ(inverse[0].agent_id(), h1.id);
  EXPECT_EQ(inverse[0].framework_id(), s.framework_id);
  EXPECT_EQ(inverse[0].hostname(), "h1");
  EXPECT_DOUBLE_EQ(inverse[0].unavailability().start(), start);
  EXPECT_THAT(InverseOffers(other.stream->Take()), IsEmpty());  // It holds nothing on h1.

  v1::MaintenanceStatus status = master_.snapshot()->maintenance_status();
  ASSERT_EQ(status.draining_machines_size(), 1);
  EXPECT_EQ(status.draining_machines(0).id().hostname(), "h1");
  ASSERT_EQ(status.draining_machines(0).statuses_size(), 1);
  EXPECT_EQ(status.draining_machines(0).statuses(0).status(), v1::InverseOfferStatus::UNKNOWN);

  v1::InverseOffersResponse answer;
  *answer.mutable_header() = s.header();
  answer.add_inverse_offer_ids(inverse[0].id());
  ASSERT_TRUE(master_.DeclineInverseOffers(answer).ok());
  loop_.RunUntilIdle();
  status = master_.snapshot()->maintenance_status();
  ASSERT_EQ(status.draining_machines(0).statuses_size(), 1);
  EXPECT_EQ(status.draining_machines(0).statuses(0).status(), v1::InverseOfferStatus::DECLINE);
  EXPECT_EQ(status.draining_machines(0).statuses(0).framework_id(), s.framework_id);
  // An answered inverse offer is not sent again by later cycles.
  loop_.AdvanceTime(absl::Seconds(3));
  EXPECT_THAT(InverseOffers(s.stream->Take()), IsEmpty());
  // A stale id is ignored.
  ASSERT_TRUE(master_.AcceptInverseOffers(answer).ok());
  loop_.RunUntilIdle();
  EXPECT_EQ(master_.snapshot()->maintenance_status().draining_machines(0).statuses(0).status(),
            v1::InverseOfferStatus::DECLINE);
}

TEST_F(MaintenanceTest, AcceptedInverseOffersShowAndRemovingTheWindowClearsThem) {
  Scheduler s = Subscribe();
  Agent h1 = WithTask(s, "h1", "t1");
  ASSERT_TRUE(Schedule({"h1"}, Now() + 60).ok());
  std::vector<v1::InverseOffer> inverse = InverseOffers(s.stream->Take());
  ASSERT_THAT(inverse, SizeIs(1));
  v1::InverseOffersResponse answer;
  *answer.mutable_header() = s.header();
  answer.add_inverse_offer_ids(inverse[0].id());
  ASSERT_TRUE(master_.AcceptInverseOffers(answer).ok());
  loop_.RunUntilIdle();
  EXPECT_EQ(master_.snapshot()->maintenance_status().draining_machines(0).statuses(0).status(),
            v1::InverseOfferStatus::ACCEPT);

  v1::UpdateMaintenanceScheduleRequest empty;
  ASSERT_TRUE(Act(&Master::UpdateMaintenanceSchedule, empty).ok());
  loop_.RunUntilIdle();
  EXPECT_THAT(master_.snapshot()->maintenance_status().draining_machines(), IsEmpty());
  EXPECT_THAT(master_.snapshot()->maintenance_schedule().windows(), IsEmpty());
}

TEST_F(MaintenanceTest, AnUnansweredInverseOfferIsRescindedWhenTheWindowGoes) {
  Scheduler s = Subscribe();
  Agent h1 = WithTask(s, "h1", "t1");
  ASSERT_TRUE(Schedule({"h1"}, Now() + 60).ok());
  std::vector<v1::InverseOffer> inverse = InverseOffers(s.stream->Take());
  ASSERT_THAT(inverse, SizeIs(1));
  v1::UpdateMaintenanceScheduleRequest empty;
  ASSERT_TRUE(Act(&Master::UpdateMaintenanceSchedule, empty).ok());
  loop_.RunUntilIdle();
  bool rescinded = false;
  for (const v1::Event& event : s.stream->Take()) {
    rescinded = rescinded || event.rescind_inverse_offer().inverse_offer_id() == inverse[0].id();
  }
  EXPECT_TRUE(rescinded);
}

TEST_F(MaintenanceTest, ADownMachinesAgentIsRemovedAndRefusedUntilItIsUp) {
  Scheduler s = Subscribe();
  Agent h1 = WithTask(s, "h1", "t1");
  Agent h2 = AddAgent("cpus:1;mem:512", "h2");
  ASSERT_TRUE(Schedule({"h1"}, Now()).ok());
  s.stream->Take();
  ASSERT_TRUE(Down("h1").ok());
  std::vector<v1::TaskStatus> updates = Updates(s.stream->Take());
  ASSERT_THAT(updates, SizeIs(1));
  EXPECT_EQ(updates[0].task_id(), "t1");
  EXPECT_EQ(updates[0].state(), v1::TASK_GONE_BY_OPERATOR);
  EXPECT_TRUE(h1.stream->closed);
  std::shared_ptr<const v1::State> state = master_.snapshot();
  ASSERT_EQ(state->agents_size(), 1);
  EXPECT_EQ(state->agents(0).info().hostname(), "h2");
  EXPECT_THAT(state->gone_agents(), IsEmpty());  // Removed for the maintenance, not gone.
  ASSERT_EQ(state->maintenance_status().down_machines_size(), 1);
  EXPECT_EQ(state->maintenance_status().down_machines(0).hostname(), "h1");
  EXPECT_THAT(state->maintenance_status().draining_machines(), IsEmpty());
  EXPECT_EQ(Down("h1").code(), absl::StatusCode::kFailedPrecondition);
  // A DOWN machine cannot leave the schedule.
  v1::UpdateMaintenanceScheduleRequest empty;
  EXPECT_EQ(Act(&Master::UpdateMaintenanceSchedule, empty).code(),
            absl::StatusCode::kFailedPrecondition);

  // Its agent tries to come back: refused while DOWN.
  auto stream = std::make_shared<AgentStream>();
  v1::AgentMessage message;
  v1::AgentInfo* info = message.mutable_register_()->mutable_info();
  info->set_id(h1.id);
  info->set_hostname("h1");
  ToProto(Res("cpus:2;mem:1024"), info->mutable_resources());
  master_.HandleAgentMessage(StreamId("back"), message, stream);
  loop_.RunUntilIdle();
  EXPECT_TRUE(stream->closed);
  EXPECT_THAT(std::string(stream->close_status.message()), HasSubstr("DOWN"));

  ASSERT_TRUE(Up("h1").ok());
  EXPECT_THAT(master_.snapshot()->maintenance_schedule().windows(), IsEmpty());
  EXPECT_THAT(master_.snapshot()->maintenance_status().down_machines(), IsEmpty());
  EXPECT_EQ(Up("h1").code(), absl::StatusCode::kFailedPrecondition);
  stream = std::make_shared<AgentStream>();
  master_.HandleAgentMessage(StreamId("back-again"), message, stream);
  loop_.RunUntilIdle();
  EXPECT_FALSE(stream->closed);
  ASSERT_FALSE(stream->messages.empty());
  EXPECT_TRUE(stream->messages[0].has_registered());
}

TEST_F(MaintenanceTest, MalformedSchedulesAndUnscheduledMachinesAreRefused) {
  v1::UpdateMaintenanceScheduleRequest request;
  request.mutable_schedule()->add_windows();  // No machines.
  EXPECT_EQ(Act(&Master::UpdateMaintenanceSchedule, request).code(),
            absl::StatusCode::kInvalidArgument);
  request.mutable_schedule()->mutable_windows(0)->add_machines();  // Neither hostname nor ip.
  EXPECT_EQ(Act(&Master::UpdateMaintenanceSchedule, request).code(),
            absl::StatusCode::kInvalidArgument);
  *request.mutable_schedule()->mutable_windows(0)->mutable_machines(0) = Machine("h1");
  *request.mutable_schedule()->add_windows() = request.schedule().windows(0);
  absl::Status twice = Act(&Master::UpdateMaintenanceSchedule, request);
  EXPECT_EQ(twice.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(twice.message()), HasSubstr("more than one"));
  request.mutable_schedule()->mutable_windows()->RemoveLast();
  request.mutable_schedule()->mutable_windows(0)->mutable_unavailability()->set_duration_seconds(
      -1);
  EXPECT_EQ(Act(&Master::UpdateMaintenanceSchedule, request).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(master_.snapshot()->maintenance_schedule().windows(), IsEmpty());

  EXPECT_EQ(Down("h9").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Up("h9").code(), absl::StatusCode::kFailedPrecondition);
  v1::StartMaintenanceRequest none;
  EXPECT_EQ(Act(&Master::StartMaintenance, none).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MaintenanceTest, MachinesMatchByIpWhenNoHostnameIsGiven) {
  Scheduler s = Subscribe();
  Agent agent = AddAgent("cpus:1;mem:512", "10.0.0.7");  // http://10.0.0.7:5081
  s.stream->Take();
  v1::UpdateMaintenanceScheduleRequest request;
  v1::MaintenanceWindow* window = request.mutable_schedule()->add_windows();
  window->add_machines()->set_ip("10.0.0.7");
  window->mutable_unavailability()->set_start(Now() + 10);
  ASSERT_TRUE(Act(&Master::UpdateMaintenanceSchedule, request).ok());
  loop_.RunUntilIdle();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_TRUE(offers[0].has_unavailability());
}

}  // namespace
}  // namespace rz::master
