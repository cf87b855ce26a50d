// A session and a leader on a real 3-server ZooKeeper ensemble: losing one server changes
// nothing; losing two suspends the session (the leader steps down once a whole session timeout
// passes without a quorum); bringing them back lets a new candidacy lead again.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "testing/zookeeper_ensemble.h"
#include "zk/leader_contender.h"
#include "zk/zookeeper_session.h"

namespace rz::zk {
namespace {

using ::rz::testing::ZooKeeperEnsemble;

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// Which server of the ensemble leads (srvr's "Mode: leader"); -1 if none.
int LeaderOf(const ZooKeeperEnsemble& ensemble) {
  for (int i = 0; i < ensemble.size(); ++i) {
    if (ensemble.running(i) &&
        ensemble.FourLetterWord(i, "srvr").find("Mode: leader") != std::string::npos) {
      return i;
    }
  }
  return -1;
}

class StateLog {
 public:
  std::function<void(SessionState)> Callback() {
    return [this](SessionState state) {
      absl::MutexLock lock(&mu_);
      states_.push_back(state);
    };
  }
  std::vector<SessionState> states() {
    absl::MutexLock lock(&mu_);
    return states_;
  }

 private:
  absl::Mutex mu_;
  std::vector<SessionState> states_;
};

TEST(ZooKeeperEnsembleTest, OneServerDownChangesNothingTwoSuspendTheSessionsUntilTheyReturn) {
  absl::StatusOr<std::unique_ptr<ZooKeeperEnsemble>> started = ZooKeeperEnsemble::Start(3);
  ASSERT_TRUE(started.ok()) << started.status();
  ZooKeeperEnsemble& ensemble = **started;

  // A long session (it must outlive the outage) and a leader with a short one (it must step
  // down during the outage).
  StateLog log;
  absl::StatusOr<std::unique_ptr<ZooKeeperSession>> opened =
      ZooKeeperSession::Start({.servers = ensemble.connect_string(),
                               .session_timeout = absl::Seconds(30),
                               .on_state = log.Callback()});
  ASSERT_TRUE(opened.ok()) << opened.status();
  ZooKeeperSession& session = **opened;
  ASSERT_TRUE(session.WaitConnected(absl::Seconds(10)).ok());
  ASSERT_TRUE(session.Create("/data", "v1").ok());

  absl::Mutex mu;
  int elected = 0;
  std::vector<absl::Status> lost;
  LeaderContender contender(
      {.servers = ensemble.connect_string(), .path = "/rz", .session_timeout = absl::Seconds(2)},
      {.elected =
           [&](const std::string&) {
             absl::MutexLock lock(&mu);
             ++elected;
           },
       .lost =
           [&](const absl::Status& why) {
             absl::MutexLock lock(&mu);
             lost.push_back(why);
           }});
  contender.Contend();
  auto elected_count = [&] {
    absl::MutexLock lock(&mu);
    return elected;
  };
  auto lost_count = [&] {
    absl::MutexLock lock(&mu);
    return static_cast<int>(lost.size());
  };
  ASSERT_TRUE(WaitFor([&] { return elected_count() == 1; }, absl::Seconds(10)));

  // One server down (the ensemble's leader, the harder case): clients on it move to another
  // server within their session; nothing is lost and writes go on.
  const int first = LeaderOf(ensemble);
  ASSERT_GE(first, 0);
  ASSERT_TRUE(ensemble.Kill(first).ok());
  absl::StatusOr<ZnodeStat> written;
  ASSERT_TRUE(WaitFor(
      [&] {
        written = session.Set("/data", "v2");
        return written.ok();
      },
      absl::Seconds(10)))
      << written.status();
  ASSERT_TRUE(WaitFor([&] { return LeaderOf(ensemble) >= 0; }, absl::Seconds(10)));
  EXPECT_TRUE(session.Set("/data", "v3").ok());
  EXPECT_TRUE(contender.leading());
  EXPECT_EQ(lost_count(), 0);
  EXPECT_NE(session.state(), SessionState::kExpired);

  // Two down: no quorum. The session is suspended (connecting), its calls fail Unavailable, and
  // the leader steps down once its session timeout passes without a quorum.
  int second = -1;
  for (int i = 0; i < ensemble.size(); ++i) {
    if (ensemble.running(i)) {
      second = i;
      break;
    }
  }
  ASSERT_TRUE(ensemble.Kill(second).ok());
  // The last server serves on until it notices the lost quorum (at once if the ensemble's
  // leader died, after syncLimit ticks if a follower did).
  absl::StatusOr<std::optional<Znode>> read;
  ASSERT_TRUE(WaitFor(
      [&] {
        read = session.Get("/data");
        return absl::IsUnavailable(read.status());
      },
      absl::Seconds(10)))
      << read.status();
  EXPECT_TRUE(
      WaitFor([&] { return session.state() == SessionState::kConnecting; }, absl::Seconds(5)));
  ASSERT_TRUE(WaitFor([&] { return lost_count() == 1; }, absl::Seconds(2) + absl::Seconds(5)));
  EXPECT_FALSE(contender.leading());
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(lost.front().code(), absl::StatusCode::kUnavailable) << lost.front();
  }

  // Both back: the long session reconnects with its data, and a new candidacy leads.
  contender.Contend();
  ASSERT_TRUE(ensemble.Restart(first).ok());
  ASSERT_TRUE(ensemble.Restart(second).ok());
  ASSERT_TRUE(
      WaitFor([&] { return session.state() == SessionState::kConnected; }, absl::Seconds(20)));
  absl::StatusOr<std::optional<Znode>> data = session.Get("/data");
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_TRUE(data->has_value());
  EXPECT_EQ((*data)->data, "v3");
  ASSERT_TRUE(WaitFor([&] { return elected_count() == 2; }, absl::Seconds(20)));
  EXPECT_TRUE(contender.leading());
  EXPECT_EQ(log.states().front(), SessionState::kConnected);
  for (SessionState state : log.states()) {
    EXPECT_NE(state, SessionState::kExpired);
  }
}

TEST(ZooKeeperSessionTest, AnUnreachableEnsembleIsUnavailableNamingTheServers) {
  // A port nobody listens on: ask the kernel for a free one and do not use it.
  absl::StatusOr<std::unique_ptr<ZooKeeperSession>> session =
      ZooKeeperSession::Start({.servers = "127.0.0.1:1", .session_timeout = absl::Seconds(2)});
  ASSERT_TRUE(session.ok()) << session.status();
  absl::Status connected = (*session)->WaitConnected(absl::Milliseconds(500));
  EXPECT_EQ(connected.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(connected.message().find("127.0.0.1:1"), absl::string_view::npos) << connected;
  absl::StatusOr<std::optional<ZnodeStat>> exists = (*session)->Exists("/x");
  EXPECT_EQ(exists.status().code(), absl::StatusCode::kUnavailable) << exists.status();
  EXPECT_NE(exists.status().message().find("'/x'"), absl::string_view::npos);

  EXPECT_EQ(ZooKeeperSession::Start({.servers = ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rz::zk
