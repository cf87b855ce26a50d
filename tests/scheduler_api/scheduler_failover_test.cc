// SchedulerClient following the leading master among fake masters on loopback gRPC servers
// (port 0): a standby's `rz-leader` hint, a leader that steps down, a deposed leader that keeps
// its stream open while the detector names another, and the errors on the way.
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rz/v1/scheduler.grpc.pb.h"
#include "scheduler_api/fake_scheduler_master.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/fake_leadership.h"

namespace rz::scheduler {
namespace {

using ::rz::testing::FakeMasterServer;
using ::rz::testing::Leadership;
using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(10);

// Two fake masters, m1 and m2, each with a Scheduler service; m1 leads at first.
class SchedulerFailoverTest : public ::testing::Test {
 protected:
  SchedulerFailoverTest() { leadership_.Lead("m1"); }

  void TearDown() override {
    client_.reset();  // Cancels the stream, so the handlers return.
    leadership_.Lead("");
  }

  SchedulerClient& MakeClient(const std::string& master, bool resubscribe = true) {
    rz::v1::FrameworkInfo info;
    info.set_name("failover-test");
    info.set_failover_timeout_seconds(60);
    SchedulerClientOptions options;
    options.resubscribe = resubscribe;
    options.resubscribe_backoff = absl::Milliseconds(20);
    options.resubscribe_backoff_max = absl::Milliseconds(200);
    client_ = std::make_unique<SchedulerClient>(master, info, std::move(options));
    return *client_;
  }

  static rz::v1::Event Offer(uint64_t sequence) {
    rz::v1::Event event;
    event.set_sequence(sequence);
    event.mutable_offers()->add_offers()->set_id(absl::StrCat("o", sequence));
    return event;
  }

  // The next event satisfying `want`, skipping others; nullopt at the deadline.
  template <typename F>
  std::optional<rz::v1::Event> NextWhere(F want) {
    const absl::Time until = absl::Now() + kDeadline;
    while (absl::Now() < until) {
      std::optional<rz::v1::Event> event = client_->NextEvent(until - absl::Now());
      if (event.has_value() && want(*event)) {
        return event;
      }
    }
    return std::nullopt;
  }

  std::string List() const { return absl::StrCat(server1_.address(), ",", server2_.address()); }

  Leadership leadership_;
  FakeSchedulerMaster m1_{leadership_, "m1"};
  FakeSchedulerMaster m2_{leadership_, "m2"};
  FakeMasterServer server1_{leadership_, "m1", {&m1_}};
  FakeMasterServer server2_{leadership_, "m2", {&m2_}};
  std::unique_ptr<SchedulerClient> client_;
};

TEST_F(SchedulerFailoverTest, SubscribeFollowsTheHintOfAStandby) {
  leadership_.Lead("m2");
  SchedulerClient& client = MakeClient(server1_.address());  // Only the standby is named.
  const absl::Status status = client.Subscribe(kDeadline);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(client.stream_id(), StreamId("m2-stream"));
  EXPECT_EQ(client.master_address(), server2_.address());
  EXPECT_EQ(m2_.WaitForSubscriptions(1).size(), 1u);
  // Calls go to the leader.
  ASSERT_TRUE(client.Decline({OfferId("o1")}).ok());
  ASSERT_EQ(m2_.declines().size(), 1u);
  EXPECT_EQ(m2_.declines()[0].header().stream_id(), "m2-stream");
}

TEST_F(SchedulerFailoverTest, ResubscribesToTheNewLeaderWithTheSameFrameworkIdAndLastSequence) {
  SchedulerClient& client = MakeClient(List());
  ASSERT_TRUE(client.Subscribe(kDeadline).ok());
  EXPECT_EQ(client.stream_id(), StreamId("m1-stream"));
  for (uint64_t sequence = 1; sequence <= 5; ++sequence) {
    m1_.Push(Offer(sequence));
  }
  ASSERT_TRUE(NextWhere([](const rz::v1::Event& e) { return e.sequence() == 5; }).has_value());
  EXPECT_EQ(client.last_sequence(), 5u);

  // m1 steps down: it ends the stream with UNAVAILABLE and names m2.
  leadership_.Lead("m2");
  std::vector<rz::v1::SubscribeRequest> at_m2 = m2_.WaitForSubscriptions(1);
  ASSERT_EQ(at_m2.size(), 1u);
  EXPECT_EQ(at_m2[0].framework_info().id(), "fw-1");
  EXPECT_EQ(at_m2[0].last_sequence(), 5u);
  EXPECT_EQ(at_m2[0].framework_info().name(), "failover-test");
  std::optional<rz::v1::Event> subscribed =
      NextWhere([](const rz::v1::Event& e) { return e.has_subscribed() || e.has_error(); });
  ASSERT_TRUE(subscribed.has_value());
  ASSERT_TRUE(subscribed->has_subscribed()) << subscribed->DebugString();
  EXPECT_EQ(client.stream_id(), StreamId("m2-stream"));
  EXPECT_EQ(client.framework_id(), FrameworkId("fw-1"));

  // Events and calls continue at m2, which numbers the framework's events afresh: the client
  // resumes after the last event it saw, not after the old leader's highest number.
  m2_.Push(Offer(2));
  ASSERT_TRUE(NextWhere([](const rz::v1::Event& e) { return e.sequence() == 2; }).has_value());
  EXPECT_EQ(client.last_sequence(), 2u);
  ASSERT_TRUE(client.Decline({OfferId("o2")}).ok());
  ASSERT_EQ(m2_.declines().size(), 1u);
  EXPECT_EQ(m2_.declines()[0].header().stream_id(), "m2-stream");
  EXPECT_TRUE(m1_.declines().empty());
}

TEST_F(SchedulerFailoverTest, LeavesADeposedLeaderThatKeepsItsStreamWhenTheDetectorNamesAnother) {
  m1_.KeepStreamsWhenDeposed();
  SchedulerClient& client = MakeClient(List());
  ASSERT_TRUE(client.Subscribe(kDeadline).ok());
  m1_.Push(Offer(1));
  ASSERT_TRUE(NextWhere([](const rz::v1::Event& e) { return e.sequence() == 1; }).has_value());

  // m1's stream stays open; only the detector (asking every second) can tell.
  leadership_.Lead("m2");
  std::vector<rz::v1::SubscribeRequest> at_m2 = m2_.WaitForSubscriptions(1);
  ASSERT_EQ(at_m2.size(), 1u);
  EXPECT_EQ(at_m2[0].framework_info().id(), "fw-1");
  EXPECT_EQ(at_m2[0].last_sequence(), 1u);
  ASSERT_TRUE(NextWhere([](const rz::v1::Event& e) { return e.has_subscribed(); }).has_value());
  EXPECT_EQ(client.stream_id(), StreamId("m2-stream"));
}

TEST_F(SchedulerFailoverTest, WithoutResubscribeAStepDownEndsTheClientNamingTheLeader) {
  SchedulerClient& client = MakeClient(server1_.address(), /*resubscribe=*/false);
  ASSERT_TRUE(client.Subscribe(kDeadline).ok());
  leadership_.Lead("m2");
  std::optional<rz::v1::Event> error =
      NextWhere([](const rz::v1::Event& e) { return e.has_error(); });
  ASSERT_TRUE(error.has_value());
  EXPECT_THAT(error->error().message(), HasSubstr(server2_.address()));
  EXPECT_TRUE(m2_.WaitForSubscriptions(0).empty());
}

TEST_F(SchedulerFailoverTest, ACallRefusedByAMasterThatNoLongerLeadsNamesTheLeader) {
  m1_.KeepStreamsWhenDeposed();
  SchedulerClient& client = MakeClient(server1_.address(), /*resubscribe=*/false);
  ASSERT_TRUE(client.Subscribe(kDeadline).ok());
  leadership_.Lead("m2");
  const absl::Status status = client.Decline({OfferId("o1")});
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(server2_.address()));
}

TEST_F(SchedulerFailoverTest, SubscribeWaitsForALeaderThatIsTakingOver) {
  leadership_.SetTakingOver(true);  // m1 refuses, naming itself.
  SchedulerClient& client = MakeClient(List());
  absl::Status status;
  std::thread subscriber([&] { status = client.Subscribe(kDeadline); });
  absl::SleepFor(absl::Milliseconds(300));
  leadership_.SetTakingOver(false);
  subscriber.join();
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(client.stream_id(), StreamId("m1-stream"));
}

TEST_F(SchedulerFailoverTest, SubscribeIsUnavailableWhenNoMasterLeads) {
  leadership_.Lead("");
  SchedulerClient& client = MakeClient(List());
  const absl::Status status = client.Subscribe(absl::Milliseconds(500));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("no leading master"));
}

TEST_F(SchedulerFailoverTest, AMalformedMasterSpecIsAnInvalidArgument) {
  SchedulerClient& client = MakeClient("h:1,h:x");
  const absl::Status status = client.Subscribe(kDeadline);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("h:x"));
}

}  // namespace
}  // namespace rz::scheduler
