// MasterDetector specs and StaticMasterDetector against fake masters on loopback gRPC servers
// (port 0) that answer GetVersion as the leader, or refuse as a standby with the `rz-leader`
// hint. Waits are on conditions with deadlines: the detector runs its own thread.
#include "common/master_detector.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/static_master_detector.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fake_leadership.h"
#include "zk/zookeeper_master_detector.h"

namespace rz {
namespace {

using ::rz::testing::FakeMasterServer;
using ::rz::testing::Leadership;
using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(10);

// What a detector reported, in order ("" for nullopt).
class Reports {
 public:
  std::function<void(std::optional<v1::MasterInfo>)> Callback() {
    return [this](std::optional<v1::MasterInfo> leader) {
      absl::MutexLock lock(&mu_);
      reports_.push_back(leader.has_value() ? leader->grpc_address() : "");
    };
  }

  // Waits until the last report is `address` ("" : none); false at the deadline.
  bool WaitForLast(const std::string& address, absl::Duration deadline = kDeadline) {
    absl::MutexLock lock(&mu_);
    auto last_is = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !reports_.empty() && reports_.back() == address;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&last_is), deadline);
  }

  std::vector<std::string> all() const {
    absl::MutexLock lock(&mu_);
    return reports_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::string> reports_ ABSL_GUARDED_BY(mu_);
};

template <typename F>
bool Eventually(F condition, absl::Duration deadline = kDeadline) {
  const absl::Time until = absl::Now() + deadline;
  while (absl::Now() < until) {
    if (condition()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

StaticMasterDetector::Options Fast() {
  return {.probe_interval = absl::Milliseconds(100),
          .probe_timeout = absl::Milliseconds(500),
          .initial_backoff = absl::Milliseconds(20),
          .max_backoff = absl::Milliseconds(100)};
}

TEST(MasterSpecTest, MalformedSpecsAreInvalidArgumentsNamingTheProblem) {
  struct Case {
    std::string spec;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "not set"},
           {"   ", "not set"},
           {"localhost", "no port"},
           {":5050", "no host"},
           {"h:0", "port '0'"},
           {"h:65536", "port '65536'"},
           {"h:50x", "port '50x'"},
           {"h:5050,", "an empty address"},
           {"a:1,,b:2", "an empty address"},
           {"a:1,a:1", "listed twice"},
           {"::1:5050", "[address]:port"},
           {"http://h:5050", "unknown scheme 'http://'"},
           {"zk://h:2181", "needs a path"},
           {"zk://h/rz", "no port"},
       }) {
    absl::StatusOr<std::unique_ptr<MasterDetector>> detector = CreateMasterDetector(c.spec);
    ASSERT_FALSE(detector.ok()) << "'" << c.spec << "'";
    EXPECT_EQ(detector.status().code(), absl::StatusCode::kInvalidArgument) << c.spec;
    EXPECT_THAT(std::string(detector.status().message()), HasSubstr(c.says)) << c.spec;
  }
}

TEST(MasterSpecTest, ListsParseInOrderWithSpacesAndIpv6) {
  absl::StatusOr<std::vector<std::string>> masters =
      ParseMasterList("m1:5050, 10.0.0.2:5050 ,[::1]:5051");
  ASSERT_TRUE(masters.ok()) << masters.status();
  EXPECT_THAT(*masters, ::testing::ElementsAre("m1:5050", "10.0.0.2:5050", "[::1]:5051"));
  EXPECT_TRUE(CreateMasterDetector("127.0.0.1:5050").ok());
  EXPECT_TRUE(CreateMasterDetector("a:1,b:2,c:3").ok());
}

TEST(MasterSpecTest, AZooKeeperSpecMakesAZooKeeperDetector) {
  // Nothing is dialled before Start().
  absl::StatusOr<std::unique_ptr<MasterDetector>> detector =
      CreateMasterDetector("zk://127.0.0.1:2181,127.0.0.1:2182/rz");
  ASSERT_TRUE(detector.ok()) << detector.status();
  EXPECT_NE(dynamic_cast<zk::ZooKeeperMasterDetector*>(detector->get()), nullptr);
}

TEST(StaticMasterDetectorTest, OneAddressIsTheLeaderWithoutBeingAsked) {
  Leadership leadership;
  FakeMasterServer master(leadership, "m1");  // Leads nothing: it would refuse if asked.
  StaticMasterDetector detector({master.address()}, Fast());
  Reports reports;
  detector.Start(reports.Callback());
  ASSERT_TRUE(reports.WaitForLast(master.address()));
  absl::SleepFor(absl::Milliseconds(300));  // Several probe intervals: nothing may change.
  EXPECT_EQ(reports.all(), std::vector<std::string>{master.address()});
  EXPECT_EQ(master.questions(), 0);
  ASSERT_TRUE(detector.leader().has_value());
  EXPECT_EQ(detector.leader()->grpc_address(), master.address());
}

TEST(StaticMasterDetectorTest, FindsTheLeaderAmongThreeAndFollowsAChange) {
  Leadership leadership;
  FakeMasterServer m1(leadership, "m1");
  FakeMasterServer m2(leadership, "m2");
  FakeMasterServer m3(leadership, "m3");
  leadership.Lead("m3");
  // Default options: a change must be noticed "within a couple of seconds".
  StaticMasterDetector detector({m1.address(), m2.address(), m3.address()});
  Reports reports;
  detector.Start(reports.Callback());
  ASSERT_TRUE(reports.WaitForLast(m3.address())) << ::testing::PrintToString(reports.all());
  // The first answer is the leader found, not a passing "none".
  EXPECT_EQ(reports.all().front(), m3.address());

  leadership.Lead("m2");
  const absl::Time changed = absl::Now();
  ASSERT_TRUE(reports.WaitForLast(m2.address(), absl::Seconds(5)))
      << ::testing::PrintToString(reports.all());
  EXPECT_LT(absl::Now() - changed, absl::Seconds(3));
  EXPECT_EQ(detector.leader()->grpc_address(), m2.address());
}

TEST(StaticMasterDetectorTest, FindsTheLeaderWhenStandbysDoNotKnowIt) {
  Leadership leadership;
  FakeMasterServer m1(leadership, "m1");
  FakeMasterServer m2(leadership, "m2");
  leadership.Lead("m2", /*standbys_know=*/false);
  StaticMasterDetector detector({m1.address(), m2.address()}, Fast());
  Reports reports;
  detector.Start(reports.Callback());
  EXPECT_TRUE(reports.WaitForLast(m2.address()));
}

TEST(StaticMasterDetectorTest, ReportsNoneWhileNoMasterLeadsAndTheLeaderWhenOneIsElected) {
  Leadership leadership;
  FakeMasterServer m1(leadership, "m1");
  FakeMasterServer m2(leadership, "m2");
  StaticMasterDetector detector({m1.address(), m2.address()}, Fast());
  Reports reports;
  detector.Start(reports.Callback());
  ASSERT_TRUE(reports.WaitForLast(""));
  EXPECT_FALSE(detector.leader().has_value());

  leadership.Lead("m1");
  ASSERT_TRUE(reports.WaitForLast(m1.address()));
  // The leader dies: nobody leads, and the detector says so.
  m1.Shutdown();
  ASSERT_TRUE(reports.WaitForLast(""));
  EXPECT_FALSE(detector.leader().has_value());
  EXPECT_EQ(reports.all(), (std::vector<std::string>{"", m1.address(), ""}));
}

TEST(StaticMasterDetectorTest, AMasterThatNamesItselfLeads) {
  Leadership leadership;
  FakeMasterServer m1(leadership, "m1");
  FakeMasterServer m2(leadership, "m2");
  leadership.Lead("m2");
  leadership.SetTakingOver(true);  // Elected, still loading the registry.
  StaticMasterDetector detector({m1.address(), m2.address()}, Fast());
  Reports reports;
  detector.Start(reports.Callback());
  EXPECT_TRUE(reports.WaitForLast(m2.address()));
}

TEST(StaticMasterDetectorTest, ReportsNoneWhenNoMasterAnswers) {
  // Nothing listens on port 1 or 2 of loopback.
  StaticMasterDetector detector({"127.0.0.1:1", "127.0.0.1:2"}, Fast());
  Reports reports;
  detector.Start(reports.Callback());
  ASSERT_TRUE(reports.WaitForLast(""));
  EXPECT_FALSE(detector.leader().has_value());
}

TEST(StaticMasterDetectorTest, AHintFromAClientSwitchesAtOnceAndIsVerified) {
  Leadership leadership;
  FakeMasterServer configured(leadership, "standby");
  FakeMasterServer elsewhere(leadership, "leader");
  leadership.Lead("leader");
  // Slow probing: only the hint can explain a quick switch.
  StaticMasterDetector::Options options = Fast();
  options.probe_interval = absl::Seconds(30);
  StaticMasterDetector detector({configured.address()}, options);
  Reports reports;
  detector.Start(reports.Callback());
  ASSERT_TRUE(reports.WaitForLast(configured.address()));

  detector.ReportLeaderHint("not an address");  // Ignored.
  detector.ReportLeaderHint(elsewhere.address());
  ASSERT_TRUE(reports.WaitForLast(elsewhere.address(), absl::Seconds(2)));
  EXPECT_GE(elsewhere.questions(), 1);

  // A hint naming a master that does not lead is checked and not believed.
  FakeMasterServer liar(leadership, "liar");
  detector.ReportLeaderHint(liar.address());
  EXPECT_TRUE(Eventually([&] { return liar.questions() >= 1; }, absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(detector.leader()->grpc_address(), elsewhere.address());
}

TEST(StaticMasterDetectorTest, OneConfiguredMasterIsTheFallbackWhenTheHintedLeaderDies) {
  Leadership leadership;
  FakeMasterServer configured(leadership, "standby");
  auto hinted = std::make_unique<FakeMasterServer>(leadership, "leader");
  leadership.Lead("leader");
  StaticMasterDetector detector({configured.address()}, Fast());
  Reports reports;
  detector.Start(reports.Callback());
  detector.ReportLeaderHint(hinted->address());
  ASSERT_TRUE(reports.WaitForLast(hinted->address()));

  // The hinted leader dies and the configured master knows no other: it is the best guess
  // again, as it was before it named another.
  leadership.Lead("", /*standbys_know=*/false);
  hinted->Shutdown();
  EXPECT_TRUE(reports.WaitForLast(configured.address()));
}

TEST(StaticMasterDetectorTest, WaitForLeaderReturnsTheLeaderOrUnavailable) {
  Leadership leadership;
  FakeMasterServer m1(leadership, "m1");
  FakeMasterServer m2(leadership, "m2");
  leadership.Lead("m2");
  StaticMasterDetector detector({m1.address(), m2.address()}, Fast());
  absl::StatusOr<v1::MasterInfo> leader =
      WaitForLeader(detector, absl::Seconds(10), "the test masters");
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(leader->grpc_address(), m2.address());

  StaticMasterDetector nobody({"127.0.0.1:1", "127.0.0.1:2"}, Fast());
  absl::StatusOr<v1::MasterInfo> none =
      WaitForLeader(nobody, absl::Milliseconds(300), "127.0.0.1:1,127.0.0.1:2");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("127.0.0.1:1,127.0.0.1:2"));
}

}  // namespace
}  // namespace rz
