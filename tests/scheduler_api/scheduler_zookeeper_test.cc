// SchedulerClient given `zk://...`: it follows the leader elected in a REAL ZooKeeper server
// (tests/testing/zookeeper_ensemble.h) between two fake masters whose LeaderContenders hold
// their gRPC addresses, and resubscribes at the new leader with its framework id and last
// sequence when the first one withdraws.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "scheduler_api/fake_scheduler_master.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/fake_leadership.h"
#include "testing/zookeeper_ensemble.h"
#include "zk/leader_contender.h"
#include "zk/zookeeper_url.h"

namespace rz::scheduler {
namespace {

using ::rz::testing::FakeMasterServer;
using ::rz::testing::Leadership;

constexpr absl::Duration kDeadline = absl::Seconds(20);

class SchedulerZooKeeperTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<rz::testing::ZooKeeperEnsemble>> ensemble =
        rz::testing::ZooKeeperEnsemble::Start(1);
    ASSERT_TRUE(ensemble.ok()) << ensemble.status();
    ensemble_ = std::move(ensemble).value().release();
  }
  static void TearDownTestSuite() {
    delete ensemble_;
    ensemble_ = nullptr;
  }

  void TearDown() override {
    client_.reset();
    leadership_.Lead("");
  }

  // A contender for master `server` at /rz; returns once its znode exists (so contenders
  // queue in the order they are made).
  std::unique_ptr<zk::LeaderContender> Contend(const FakeMasterServer& server,
                                               absl::Notification* elected) {
    v1::MasterInfo info;
    info.set_id(server.name());
    info.set_grpc_address(server.address());
    auto contender = std::make_unique<zk::LeaderContender>(
        zk::LeaderContender::Options{.servers = ensemble_->connect_string(),
                                     .path = "/rz",
                                     .session_timeout = absl::Seconds(5),
                                     .info = info},
        zk::LeaderContender::Callbacks{
            .elected = [elected](const std::string&) { elected->Notify(); },
            .lost = [](const absl::Status&) {}});
    contender->Contend();
    const absl::Time until = absl::Now() + kDeadline;
    while (!contender->znode().has_value() && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return contender;
  }

  static rz::testing::ZooKeeperEnsemble* ensemble_;
  Leadership leadership_;
  FakeSchedulerMaster m1_{leadership_, "m1"};
  FakeSchedulerMaster m2_{leadership_, "m2"};
  FakeMasterServer server1_{leadership_, "m1", {&m1_}};
  FakeMasterServer server2_{leadership_, "m2", {&m2_}};
  std::unique_ptr<SchedulerClient> client_;
};

rz::testing::ZooKeeperEnsemble* SchedulerZooKeeperTest::ensemble_ = nullptr;

TEST_F(SchedulerZooKeeperTest, ResubscribesAtTheMasterElectedNextInZooKeeper) {
  absl::Notification first_elected;
  absl::Notification second_elected;
  std::unique_ptr<zk::LeaderContender> first = Contend(server1_, &first_elected);
  ASSERT_TRUE(first_elected.WaitForNotificationWithTimeout(kDeadline));
  leadership_.Lead("m1");
  std::unique_ptr<zk::LeaderContender> second = Contend(server2_, &second_elected);
  // m1 will not end its stream by itself: only ZooKeeper can move the client.
  m1_.KeepStreamsWhenDeposed();

  v1::FrameworkInfo info;
  info.set_name("zk-follower");
  info.set_failover_timeout_seconds(60);
  SchedulerClientOptions options;
  options.resubscribe = true;
  options.resubscribe_backoff = absl::Milliseconds(20);
  client_ = std::make_unique<SchedulerClient>(ensemble_->url("/rz"), info, options);
  ASSERT_TRUE(client_->Subscribe(kDeadline).ok());
  EXPECT_EQ(client_->stream_id(), StreamId("m1-stream"));
  rz::v1::Event offer;
  offer.set_sequence(2);
  offer.mutable_offers()->add_offers()->set_id("o2");
  m1_.Push(offer);
  const absl::Time until = absl::Now() + kDeadline;
  while (client_->last_sequence() < 2 && absl::Now() < until) {
    client_->NextEvent(absl::Milliseconds(50));
  }
  ASSERT_EQ(client_->last_sequence(), 2u);

  leadership_.Lead("m2");
  first->Withdraw();
  ASSERT_TRUE(second_elected.WaitForNotificationWithTimeout(kDeadline));
  std::vector<rz::v1::SubscribeRequest> at_m2 = m2_.WaitForSubscriptions(1);
  ASSERT_EQ(at_m2.size(), 1u);
  EXPECT_EQ(at_m2[0].framework_info().id(), "fw-1");
  EXPECT_EQ(at_m2[0].last_sequence(), 2u);
  const absl::Time switched = absl::Now() + kDeadline;
  while (client_->stream_id() != StreamId("m2-stream") && absl::Now() < switched) {
    client_->NextEvent(absl::Milliseconds(50));
  }
  EXPECT_EQ(client_->stream_id(), StreamId("m2-stream"));
  EXPECT_EQ(client_->master_address(), server2_.address());
}

}  // namespace
}  // namespace rz::scheduler
