// LeaderContender and ZooKeeperMasterDetector against a real ZooKeeper server: the lowest
// candidate leads, a departure wakes only its successor, an expired or killed leader is
// replaced within the session timeout, and the detector follows every change.
#include "zk/leader_contender.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/build_dir.h"
#include "testing/zookeeper_ensemble.h"
#include "testing/zookeeper_suite.h"
#include "zk/election.h"
#include "zk/zookeeper_master_detector.h"
#include "zk/zookeeper_session.h"

namespace rz::zk {
namespace {

using ::rz::testing::ZooKeeperEnsemble;
using ::rz::testing::ZooKeeperSuiteTest;
using ::testing::HasSubstr;

// Polls `condition` until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// True if `condition` stays false for all of `period` (for "nothing else happens" checks:
// watch notifications of other sessions have no order relative to the one we waited for).
bool StaysFalse(const std::function<bool()>& condition, absl::Duration period) {
  return !WaitFor(condition, period);
}

// A contender and what its callbacks reported.
class Candidate {
 public:
  Candidate(const std::string& servers, const std::string& path, const std::string& id,
            absl::Duration session_timeout) {
    v1::MasterInfo info;
    info.set_id(id);
    info.set_grpc_address(id + ":5050");
    info.set_http_address("http://" + id + ":5080");
    contender_ = std::make_unique<LeaderContender>(
        LeaderContender::Options{servers, path, session_timeout, info},
        LeaderContender::Callbacks{.elected =
                                       [this](const std::string& znode) {
                                         absl::MutexLock lock(&mu_);
                                         elected_.push_back(znode);
                                         elected_at_ = absl::Now();
                                       },
                                   .lost =
                                       [this](const absl::Status& why) {
                                         absl::MutexLock lock(&mu_);
                                         lost_.push_back(why);
                                       }});
  }
  ~Candidate() { contender_.reset(); }  // Before the members its callbacks use.

  LeaderContender& contender() { return *contender_; }
  int elected_count() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(elected_.size());
  }
  std::string last_elected_znode() {
    absl::MutexLock lock(&mu_);
    return elected_.empty() ? "" : elected_.back();
  }
  absl::Time elected_at() {
    absl::MutexLock lock(&mu_);
    return elected_at_;
  }
  std::vector<absl::Status> lost() {
    absl::MutexLock lock(&mu_);
    return lost_;
  }
  // Contends and waits until the znode exists, so candidates queue in creation order.
  std::string ContendAndWaitForZnode() {
    contender_->Contend();
    EXPECT_TRUE(WaitFor([this] { return contender_->znode().has_value(); }, absl::Seconds(10)));
    return contender_->znode().value_or("");
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> elected_;
  absl::Time elected_at_;
  std::vector<absl::Status> lost_;
  std::unique_ptr<LeaderContender> contender_;
};

// Records what a detector reported.
class DetectorLog {
 public:
  std::function<void(std::optional<v1::MasterInfo>)> Callback() {
    return [this](std::optional<v1::MasterInfo> leader) {
      absl::MutexLock lock(&mu_);
      changes_.push_back(leader.has_value() ? leader->id() : "<none>");
    };
  }
  std::vector<std::string> changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }
  std::string last() {
    absl::MutexLock lock(&mu_);
    return changes_.empty() ? "" : changes_.back();
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> changes_;
};

class LeaderContenderTest : public ZooKeeperSuiteTest {
 protected:
  void SetUp() override {
    ZooKeeperSuiteTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    path_ = NextPath("election");
  }

  std::string servers() const { return ensemble_->connect_string(); }
  std::unique_ptr<Candidate> NewCandidate(const std::string& id,
                                          absl::Duration session_timeout = absl::Seconds(10)) {
    return std::make_unique<Candidate>(servers(), path_, id, session_timeout);
  }
  std::unique_ptr<ZooKeeperSession> RawSession() {
    absl::StatusOr<std::unique_ptr<ZooKeeperSession>> session =
        ZooKeeperSession::Start({.servers = servers()});
    EXPECT_TRUE(session.ok()) << session.status();
    EXPECT_TRUE((*session)->WaitConnected(absl::Seconds(10)).ok());
    return *std::move(session);
  }

  std::string path_;
};

TEST_F(LeaderContenderTest, OfThreeContendersExactlyTheLowestIsElected) {
  auto a = NewCandidate("a");
  auto b = NewCandidate("b");
  auto c = NewCandidate("c");
  // All at once: the order of their znodes decides, not the order of the calls.
  c->contender().Contend();
  a->contender().Contend();
  b->contender().Contend();
  std::vector<Candidate*> all = {a.get(), b.get(), c.get()};
  ASSERT_TRUE(WaitFor(
      [&] {
        int elected = 0;
        for (Candidate* candidate : all) {
          elected += candidate->elected_count();
        }
        return elected == 1 && a->contender().znode() && b->contender().znode() &&
               c->contender().znode();
      },
      absl::Seconds(10)));

  std::vector<std::string> names;
  for (Candidate* candidate : all) {
    const std::string znode = *candidate->contender().znode();
    names.push_back(znode.substr(znode.rfind('/') + 1));
  }
  const std::string lowest = absl::StrCat(path_, "/", SortCandidates(names).front());
  int leading = 0;
  for (Candidate* candidate : all) {
    if (candidate->contender().leading()) {
      ++leading;
      EXPECT_EQ(*candidate->contender().znode(), lowest);
      EXPECT_EQ(candidate->last_elected_znode(), lowest);
    } else {
      EXPECT_EQ(candidate->elected_count(), 0);
    }
    EXPECT_TRUE(candidate->lost().empty());
  }
  EXPECT_EQ(leading, 1);

  // The detector names the same leader, with the info its znode holds.
  DetectorLog log;  // Outlives the detector, which calls it.
  ZooKeeperMasterDetector detector({.servers = servers(), .path = path_});
  detector.Start(log.Callback());
  ASSERT_TRUE(WaitFor([&] { return detector.leader().has_value(); }, absl::Seconds(10)));
  EXPECT_EQ(*detector.leader_znode(), lowest);
  EXPECT_TRUE(detector.leader()->leader());
  EXPECT_EQ(detector.leader()->grpc_address(), detector.leader()->id() + ":5050");
  EXPECT_EQ(log.changes().front(), "<none>");  // Called at once with what it knew: nothing.
}

TEST_F(LeaderContenderTest, AnExpiredLeaderIsReplacedWithinTheSessionTimeoutAndCanContendAgain) {
  const absl::Duration timeout = absl::Seconds(2);
  auto a = NewCandidate("a", timeout);
  auto b = NewCandidate("b", timeout);
  auto c = NewCandidate("c", timeout);
  a->ContendAndWaitForZnode();
  const std::string b_znode = b->ContendAndWaitForZnode();
  const std::string c_znode = c->ContendAndWaitForZnode();
  ASSERT_TRUE(WaitFor([&] { return a->elected_count() == 1; }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return c->contender().predecessor() == b_znode; }, absl::Seconds(10)));
  DetectorLog log;  // Outlives the detector, which calls it.
  ZooKeeperMasterDetector detector({.servers = servers(), .path = path_});
  detector.Start(log.Callback());
  ASSERT_TRUE(WaitFor([&] { return log.last() == "a"; }, absl::Seconds(10)));

  const std::optional<SessionCredentials> credentials = a->contender().session_credentials();
  ASSERT_TRUE(credentials.has_value());
  const absl::Time expired_at = absl::Now();
  ASSERT_TRUE(ExpireSession(servers(), *credentials).ok());

  ASSERT_TRUE(WaitFor([&] { return b->elected_count() == 1; }, timeout));
  std::cout << "expired leader's session -> next elected: "
            << absl::FormatDuration(b->elected_at() - expired_at) << std::endl;
  EXPECT_EQ(b->last_elected_znode(), b_znode);
  ASSERT_TRUE(WaitFor([&] { return !a->lost().empty(); }, absl::Seconds(10)));
  // Either the expiry or the deletion of its znode (the server deletes it as it ends the
  // session) reaches the contender first; both end the candidacy, once.
  const absl::Status why = a->lost().front();
  EXPECT_TRUE((why.code() == absl::StatusCode::kUnavailable &&
               absl::StrContains(why.message(), "expired")) ||
              (why.code() == absl::StatusCode::kFailedPrecondition &&
               absl::StrContains(why.message(), "deleted")))
      << why;
  EXPECT_EQ(a->lost().size(), 1u);
  EXPECT_FALSE(a->contender().leading());
  ASSERT_TRUE(WaitFor([&] { return log.last() == "b"; }, absl::Seconds(5)));
  // c's predecessor (b) did not change: c was never woken.
  EXPECT_EQ(c->contender().watch_events(), 0u);
  EXPECT_EQ(c->elected_count(), 0);

  // The expired contender contends again with a new session and queues behind c.
  const std::string a_again = a->ContendAndWaitForZnode();
  EXPECT_EQ(SortCandidates(
                {a_again.substr(a_again.rfind('/') + 1), c_znode.substr(c_znode.rfind('/') + 1)})
                .back(),
            a_again.substr(a_again.rfind('/') + 1));
  EXPECT_FALSE(a->contender().leading());

  // b withdraws: c (its successor) leads at once, and the detector follows.
  b->contender().Withdraw();
  ASSERT_TRUE(WaitFor([&] { return c->elected_count() == 1; }, absl::Seconds(5)));
  ASSERT_TRUE(WaitFor([&] { return log.last() == "c"; }, absl::Seconds(5)));
  EXPECT_EQ(a->elected_count(), 1);  // Only its first candidacy.
  EXPECT_TRUE(b->lost().empty());    // A withdrawal is not a loss.
  EXPECT_THAT(log.changes(), ::testing::ElementsAre("<none>", "a", "b", "c"));
}

TEST_F(LeaderContenderTest, ADeletedCandidateWakesOnlyItsSuccessor) {
  auto a = NewCandidate("a");
  auto b = NewCandidate("b");
  auto c = NewCandidate("c");
  auto d = NewCandidate("d");
  a->ContendAndWaitForZnode();
  const std::string b_znode = b->ContendAndWaitForZnode();
  const std::string c_znode = c->ContendAndWaitForZnode();
  d->ContendAndWaitForZnode();
  ASSERT_TRUE(WaitFor([&] { return a->elected_count() == 1; }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return d->contender().predecessor() == c_znode; }, absl::Seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return c->contender().predecessor() == b_znode; }, absl::Seconds(10)));
  EXPECT_EQ(a->contender().predecessor(), std::nullopt);  // The leader waits for nobody.

  std::unique_ptr<ZooKeeperSession> operator_session = RawSession();
  ASSERT_TRUE(operator_session->Delete(c_znode).ok());

  ASSERT_TRUE(WaitFor([&] { return !c->lost().empty(); }, absl::Seconds(5)));
  EXPECT_EQ(c->lost().front().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c->lost().front().message(), HasSubstr("deleted"));
  ASSERT_TRUE(WaitFor([&] { return d->contender().watch_events() == 1; }, absl::Seconds(5)));
  // No herd: a and b watch nothing that changed.
  EXPECT_TRUE(
      StaysFalse([&] { return a->contender().watch_events() + b->contender().watch_events() > 0; },
                 absl::Milliseconds(300)));
  EXPECT_FALSE(d->contender().leading());
  EXPECT_EQ(d->elected_count(), 0);
  ASSERT_TRUE(WaitFor([&] { return d->contender().predecessor() == b_znode; }, absl::Seconds(5)));

  // d now watches b: when a and b go, d leads.
  a->contender().Withdraw();
  ASSERT_TRUE(WaitFor([&] { return b->elected_count() == 1; }, absl::Seconds(5)));
  EXPECT_EQ(d->contender().watch_events(), 1u);
  b->contender().Withdraw();
  ASSERT_TRUE(WaitFor([&] { return d->elected_count() == 1; }, absl::Seconds(5)));
}

TEST_F(LeaderContenderTest, AKilledLeaderProcessIsReplacedAfterItsSessionTimesOut) {
  const std::string helper = rz::testing::BuildPath("tests/zk/rz-zk-test-contender");
  ASSERT_EQ(access(helper.c_str(), X_OK), 0) << "missing " << helper << " (RZ_BUILD_DIR unset?)";
  const absl::Duration timeout = absl::Seconds(2);
  const std::string servers_arg = servers();
  const std::string timeout_ms = absl::StrCat(absl::ToInt64Milliseconds(timeout));
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    execl(helper.c_str(), helper.c_str(), servers_arg.c_str(), path_.c_str(), timeout_ms.c_str(),
          "doomed", static_cast<char*>(nullptr));
    _exit(127);
  }
  DetectorLog log;  // Outlives the detector, which calls it.
  ZooKeeperMasterDetector detector({.servers = servers(), .path = path_});
  detector.Start(log.Callback());
  const bool doomed_leads = WaitFor([&] { return log.last() == "doomed"; }, absl::Seconds(10));
  auto b = NewCandidate("b", timeout);
  if (doomed_leads) {
    b->ContendAndWaitForZnode();
  }
  const absl::Time killed_at = absl::Now();
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(doomed_leads) << "the helper contender never led";

  ASSERT_TRUE(WaitFor([&] { return b->elected_count() == 1; }, timeout + absl::Seconds(3)));
  const absl::Duration failover = b->elected_at() - killed_at;
  std::cout << "kill -9 of the leader -> next elected (session timeout "
            << absl::FormatDuration(timeout) << "): " << absl::FormatDuration(failover)
            << std::endl;
  // ZooKeeper expires the dead session after the timeout (checked once per tick, 500 ms).
  EXPECT_GE(failover, timeout - absl::Milliseconds(600));
  EXPECT_LE(failover, timeout + absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] { return log.last() == "b"; }, absl::Seconds(5)));
}

TEST_F(LeaderContenderTest, TheDetectorReportsNoLeaderUntilAReadableCandidateLeads) {
  DetectorLog log;  // Outlives the detector, which calls it.
  ZooKeeperMasterDetector detector({.servers = servers(), .path = path_});
  detector.Start(log.Callback());
  ASSERT_TRUE(WaitFor([&] { return !log.changes().empty(); }, absl::Seconds(5)));
  EXPECT_EQ(log.last(), "<none>");  // The path does not even exist.

  // Something that is not a MasterInfo sits first in line.
  std::unique_ptr<ZooKeeperSession> operator_session = RawSession();
  absl::StatusOr<std::string> corrupt = operator_session->Create(
      path_ + "/master_", "{not json", CreateMode::kPersistentSequential, true);
  ASSERT_TRUE(corrupt.ok()) << corrupt.status();
  auto b = NewCandidate("b");
  b->ContendAndWaitForZnode();
  EXPECT_TRUE(StaysFalse([&] { return detector.leader().has_value(); }, absl::Milliseconds(300)));
  EXPECT_EQ(b->elected_count(), 0);

  ASSERT_TRUE(operator_session->Delete(*corrupt).ok());
  ASSERT_TRUE(WaitFor([&] { return b->elected_count() == 1; }, absl::Seconds(5)));
  ASSERT_TRUE(WaitFor([&] { return log.last() == "b"; }, absl::Seconds(5)));

  b->contender().Withdraw();
  ASSERT_TRUE(WaitFor([&] { return log.last() == "<none>"; }, absl::Seconds(5)));
  EXPECT_FALSE(detector.leader().has_value());
  EXPECT_THAT(log.changes(), ::testing::ElementsAre("<none>", "b", "<none>"));
}

TEST_F(LeaderContenderTest, BadOptionsEndTheCandidacyWithAClearError) {
  Candidate bad(servers(), "relative/path", "x", absl::Seconds(10));
  bad.contender().Contend();
  ASSERT_TRUE(WaitFor([&] { return !bad.lost().empty(); }, absl::Seconds(5)));
  EXPECT_EQ(bad.lost().front().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.lost().front().message(), HasSubstr("relative/path"));
  EXPECT_FALSE(bad.contender().contending());

  absl::StatusOr<std::unique_ptr<ZooKeeperMasterDetector>> detector =
      ZooKeeperMasterDetector::Create("zk://127.0.0.1/rz");
  EXPECT_EQ(detector.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(detector.status().message(), HasSubstr("no port"));
}

}  // namespace
}  // namespace rz::zk
