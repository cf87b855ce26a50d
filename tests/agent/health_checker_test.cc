// HealthChecker on a ManualEventLoop: the blocking part of each check runs inline on the test
// thread (or, where the test needs a check in flight, when the test says so), against real
// commands, a real HTTP server and real sockets on 127.0.0.1 port 0.
#include "agent/health_checker.h"

#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "testing/manual_event_loop.h"

namespace rz::agent {
namespace {

using rz::v1::HealthCheck;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// Runs the blocking part at once, on the test thread; its result is posted to the loop.
void RunInline(absl::AnyInvocable<void() &&> work) { std::move(work)(); }

HealthCheck CommandCheck(const std::string& command) {
  HealthCheck check;
  check.set_type(HealthCheck::COMMAND);
  check.mutable_command()->set_shell(true);
  check.mutable_command()->set_value(command);
  return check;
}

HealthCheck TcpCheck(int port) {
  HealthCheck check;
  check.set_type(HealthCheck::TCP);
  check.mutable_tcp()->set_port(port);
  return check;
}

// A listening TCP socket on 127.0.0.1 with a kernel-chosen port; connections queue in the
// backlog without an accept().
class Listener {
 public:
  Listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
        ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1: "
                    << std::error_code(errno, std::generic_category()).message();
      return;
    }
    port_ = ntohs(address.sin_port);
  }
  ~Listener() { Close(); }

  void Close() {
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class HealthCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "health_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr)
        << std::error_code(errno, std::generic_category()).message();
    sandbox_ = pattern;
  }
  void TearDown() override {
    checker_.reset();
    std::error_code error;
    std::filesystem::remove_all(sandbox_, error);
  }

  HealthChecker::Target DefaultTarget() const {
    HealthChecker::Target target;
    target.sandbox = sandbox_;
    target.environment = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    return target;
  }

  void StartChecker(const HealthCheck& check, BlockingRunner runner = RunInline,
                    const std::optional<HealthChecker::Target>& target = std::nullopt) {
    ASSERT_TRUE(ValidateHealthCheck(check).ok()) << ValidateHealthCheck(check);
    checker_ = std::make_unique<HealthChecker>(
        loop_, std::move(runner), check, target.value_or(DefaultTarget()),
        [this](const HealthResult& result) { results_.push_back(result); });
    checker_->Start();
  }

  // A runner that keeps the blocking part until the test runs it: a check in flight.
  BlockingRunner DeferringRunner() {
    return [this](absl::AnyInvocable<void() &&> work) { deferred_.push_back(std::move(work)); };
  }
  void RunDeferred() {
    std::vector<absl::AnyInvocable<void()&&>> work = std::move(deferred_);
    deferred_.clear();
    for (auto& item : work) {
      std::move(item)();
    }
  }

  void Touch(const std::string& name) { std::ofstream(sandbox_ + "/" + name) << "x"; }
  void Remove(const std::string& name) { std::filesystem::remove(sandbox_ + "/" + name); }

  rz::testing::ManualEventLoop loop_;
  std::string sandbox_;
  std::vector<HealthResult> results_;
  std::vector<absl::AnyInvocable<void() &&>> deferred_;
  std::unique_ptr<HealthChecker> checker_;
};

std::vector<bool> Healthy(const std::vector<HealthResult>& results) {
  std::vector<bool> healthy;
  healthy.reserve(results.size());
  for (const HealthResult& result : results) {
    healthy.push_back(result.healthy);
  }
  return healthy;
}

TEST(HealthCheckTimingTest, ExplicitZerosAreKeptWhereTheyMeanSomething) {
  HealthCheck check;
  check.set_delay_seconds(0);
  check.set_grace_period_seconds(0);
  check.set_interval_seconds(1);
  const HealthCheckTiming timing = TimingOf(check);
  EXPECT_EQ(timing.delay, absl::ZeroDuration());
  EXPECT_EQ(timing.grace_period, absl::ZeroDuration());
  EXPECT_EQ(timing.interval, absl::Seconds(1));
  EXPECT_EQ(timing.timeout, absl::Seconds(20));
}

TEST(HealthCheckTimingTest, UnsetFieldsTakeTheDefaults) {
  const HealthCheckTiming timing = TimingOf(HealthCheck());
  EXPECT_EQ(timing.delay, absl::Seconds(15));
  EXPECT_EQ(timing.interval, absl::Seconds(10));
  EXPECT_EQ(timing.timeout, absl::Seconds(20));
  EXPECT_EQ(timing.grace_period, absl::Seconds(10));
  EXPECT_EQ(timing.consecutive_failures, 3);
}

TEST_F(HealthCheckerTest, ConsecutiveFailuresReportEachFailureThenKill) {
  HealthCheck check = CommandCheck("exit 1");
  check.set_consecutive_failures(4);
  StartChecker(check);  // Defaults: first check at 15 s, past the 10 s grace period.

  loop_.AdvanceTime(absl::Seconds(14));
  EXPECT_THAT(results_, IsEmpty());
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(results_.size(), 1);
  loop_.AdvanceTime(absl::Seconds(1000));

  ASSERT_EQ(results_.size(), 4);
  for (uint32_t i = 0; i < 4; ++i) {
    EXPECT_FALSE(results_[i].healthy);
    EXPECT_EQ(results_[i].consecutive_failures, i + 1);
    EXPECT_EQ(results_[i].kill, i == 3) << i;
    EXPECT_EQ(results_[i].message, "command exited with status 1");
  }
  EXPECT_FALSE(checker_->active());
  EXPECT_EQ(loop_.pending_timers(), 0);
}

TEST_F(HealthCheckerTest, FailuresInTheGracePeriodDoNotCountUntilAFirstSuccess) {
  HealthCheck check = CommandCheck("test -e healthy");
  check.set_delay_seconds(1);
  check.set_interval_seconds(10);
  check.set_grace_period_seconds(100);
  check.set_consecutive_failures(2);
  StartChecker(check);

  loop_.AdvanceTime(absl::Seconds(1 + 10 + 10));  // Checks at 1, 11, 21 s fail in grace.
  EXPECT_THAT(results_, IsEmpty());
  EXPECT_TRUE(checker_->active());

  Touch("healthy");
  loop_.AdvanceTime(absl::Seconds(10));  // 31 s: first success.
  ASSERT_EQ(results_.size(), 1);
  EXPECT_TRUE(results_[0].healthy);
  EXPECT_EQ(results_[0].message, "command exited with status 0");

  // Still within the grace period, but after a success every failure counts.
  Remove("healthy");
  loop_.AdvanceTime(absl::Seconds(10));
  ASSERT_EQ(results_.size(), 2);
  EXPECT_FALSE(results_[1].healthy);
  EXPECT_EQ(results_[1].consecutive_failures, 1);
  EXPECT_FALSE(results_[1].kill);
  loop_.AdvanceTime(absl::Seconds(10));
  ASSERT_EQ(results_.size(), 3);
  EXPECT_EQ(results_[2].consecutive_failures, 2);
  EXPECT_TRUE(results_[2].kill);
}

TEST_F(HealthCheckerTest, FailuresAfterTheGracePeriodCountWithoutASuccess) {
  HealthCheck check = CommandCheck("exit 3");
  check.set_delay_seconds(1);
  check.set_interval_seconds(10);
  check.set_grace_period_seconds(5);
  StartChecker(check);

  loop_.AdvanceTime(absl::Seconds(1));
  EXPECT_THAT(results_, IsEmpty());
  loop_.AdvanceTime(absl::Seconds(10));
  ASSERT_EQ(results_.size(), 1);
  EXPECT_EQ(results_[0].consecutive_failures, 1);
  EXPECT_EQ(results_[0].message, "command exited with status 3");
}

TEST_F(HealthCheckerTest, SuccessIsReportedOnlyWhenTheStateChanges) {
  HealthCheck check = CommandCheck("test -e healthy");
  check.set_delay_seconds(1);
  check.set_interval_seconds(1);
  check.set_grace_period_seconds(1);
  check.set_consecutive_failures(5);
  StartChecker(check);
  Touch("healthy");

  loop_.AdvanceTime(absl::Seconds(3));  // Three successes.
  EXPECT_THAT(Healthy(results_), ElementsAre(true));

  Remove("healthy");
  loop_.AdvanceTime(absl::Seconds(1));
  Touch("healthy");
  loop_.AdvanceTime(absl::Seconds(3));
  EXPECT_THAT(Healthy(results_), ElementsAre(true, false, true));
  EXPECT_EQ(results_[2].consecutive_failures, 0);
  EXPECT_FALSE(results_[2].kill);
}

TEST_F(HealthCheckerTest, TimeoutKillsTheWholeProcessGroup) {
  // The check's background `sleep` is orphaned when its shell dies; as a subreaper this test
  // process inherits and reaps it, so "gone" can be checked without zombies in the way.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  HealthCheck check = CommandCheck("echo $$ > pgid; sleep 10 & wait");
  check.set_delay_seconds(1);
  check.set_timeout_seconds(0.5);
  check.set_grace_period_seconds(1);
  check.set_consecutive_failures(1);
  StartChecker(check);

  loop_.AdvanceTime(absl::Seconds(1));

  ASSERT_EQ(results_.size(), 1);
  EXPECT_EQ(results_[0].message, "timed out after 500ms");
  EXPECT_TRUE(results_[0].kill);
  pid_t pgid = 0;
  std::ifstream(sandbox_ + "/pgid") >> pgid;
  ASSERT_GT(pgid, 0);
  int status = 0;
  while (::waitpid(-pgid, &status, 0) > 0) {
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  EXPECT_EQ(errno, ECHILD);
  EXPECT_EQ(::kill(-pgid, 0), -1);
  EXPECT_EQ(errno, ESRCH) << "process group " << pgid << " survived the timeout";
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_F(HealthCheckerTest, CommandSeesTheSandboxAndBothEnvironments) {
  HealthCheck check = CommandCheck(
      "test \"$FROM_TASK\" = task && test \"$OVERRIDDEN\" = check && "
      "test \"$(pwd -P)\" = \"$EXPECTED\"");
  auto* variables = check.mutable_command()->mutable_environment();
  auto* overridden = variables->add_variables();
  overridden->set_name("OVERRIDDEN");
  overridden->set_value("check");
  auto* expected = variables->add_variables();
  expected->set_name("EXPECTED");
  expected->set_value(std::filesystem::canonical(sandbox_).string());
  check.set_delay_seconds(1);
  HealthChecker::Target target = DefaultTarget();
  target.environment.emplace_back("FROM_TASK=task");
  target.environment.emplace_back("OVERRIDDEN=task");
  StartChecker(check, RunInline, target);

  loop_.AdvanceTime(absl::Seconds(1));

  EXPECT_THAT(Healthy(results_), ElementsAre(true));
}

TEST_F(HealthCheckerTest, CommandWithoutShellRunsValueWithItsArguments) {
  HealthCheck check;
  check.set_type(HealthCheck::COMMAND);
  check.mutable_command()->set_value("test");
  for (const char* arg : {"test", "-d", "."}) {
    check.mutable_command()->add_arguments(arg);
  }
  check.set_delay_seconds(1);
  check.set_interval_seconds(1);
  check.set_grace_period_seconds(1);
  StartChecker(check);
  loop_.AdvanceTime(absl::Seconds(1));
  EXPECT_THAT(Healthy(results_), ElementsAre(true));

  // `-f .` is false: the arguments really reach the executable.
  checker_.reset();
  results_.clear();
  check.mutable_command()->set_arguments(1, "-f");
  StartChecker(check);
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(results_.size(), 1);
  EXPECT_EQ(results_[0].message, "command exited with status 1");
}

TEST_F(HealthCheckerTest, CommandInAMissingSandboxFails) {
  HealthCheck check = CommandCheck("true");
  check.set_delay_seconds(1);
  check.set_grace_period_seconds(1);
  HealthChecker::Target target = DefaultTarget();
  target.sandbox = sandbox_ + "/missing";
  StartChecker(check, RunInline, target);

  loop_.AdvanceTime(absl::Seconds(1));

  ASSERT_EQ(results_.size(), 1);
  EXPECT_FALSE(results_[0].healthy);
  EXPECT_THAT(results_[0].message, HasSubstr("No such file or directory"));
}

TEST_F(HealthCheckerTest, CommandRunsAsTheTargetUserAndGroup) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "switching users needs root";
  }
  HealthCheck check = CommandCheck(
      "test \"$(id -u)\" = 65534 && test \"$(id -g)\" = 65534 && test \"$(id -G)\" = 65534");
  check.set_delay_seconds(1);
  HealthChecker::Target target = DefaultTarget();
  target.uid = 65534;
  target.gid = 65534;
  StartChecker(check, RunInline, target);

  loop_.AdvanceTime(absl::Seconds(1));

  ASSERT_EQ(results_.size(), 1);
  EXPECT_TRUE(results_[0].healthy) << results_[0].message;
}

TEST_F(HealthCheckerTest, HttpCheckIsHealthyOn200AndFailsOn503) {
  httplib::Server server;
  std::atomic<int> status{200};
  std::atomic<int> requests{0};
  server.Get("/ready", [&](const httplib::Request&, httplib::Response& response) {
    ++requests;
    response.status = status.load();
    response.set_content("ok", "text/plain");
  });
  const int port = server.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::atomic<bool> listen_returned{false};
  std::thread thread([&] {
    server.listen_after_bind();
    listen_returned = true;
  });
  // A stop() before the listen loop runs would be lost; wait (bounded) until it runs.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!server.is_running() && !listen_returned && absl::Now() < deadline) {
    std::this_thread::yield();
  }

  HealthCheck check;
  check.set_type(HealthCheck::HTTP);
  check.mutable_http()->set_port(port);
  check.mutable_http()->set_path("/ready");
  check.set_delay_seconds(1);
  check.set_interval_seconds(1);
  check.set_timeout_seconds(5);
  check.set_consecutive_failures(1);
  StartChecker(check);

  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(results_.size(), 1);
  EXPECT_TRUE(results_[0].healthy);
  EXPECT_EQ(results_[0].message, "HTTP 200");

  status = 503;
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(results_.size(), 2);
  EXPECT_FALSE(results_[1].healthy);
  EXPECT_TRUE(results_[1].kill);
  EXPECT_EQ(results_[1].message, "HTTP 503");
  EXPECT_EQ(requests.load(), 2);

  server.stop();
  thread.join();
}

TEST_F(HealthCheckerTest, HttpCheckReportsAnUnreachableServer) {
  int port = 0;
  {
    Listener listener;
    port = listener.port();
  }  // Closed: nothing listens on `port` any more.
  HealthCheck check;
  check.set_type(HealthCheck::HTTP);
  check.mutable_http()->set_port(port);
  check.set_delay_seconds(1);
  check.set_grace_period_seconds(1);
  check.set_timeout_seconds(5);
  StartChecker(check);

  loop_.AdvanceTime(absl::Seconds(1));

  ASSERT_EQ(results_.size(), 1);
  EXPECT_FALSE(results_[0].healthy);
  EXPECT_THAT(results_[0].message, StartsWith(absl::StrCat("GET http://127.0.0.1:", port, "/: ")));
}

TEST_F(HealthCheckerTest, TcpCheckSucceedsWhileListeningAndFailsOnceClosed) {
  Listener listener;
  ASSERT_GT(listener.port(), 0);
  HealthCheck check = TcpCheck(listener.port());
  check.set_delay_seconds(1);
  check.set_interval_seconds(1);
  check.set_timeout_seconds(5);
  StartChecker(check);

  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(results_.size(), 1);
  EXPECT_TRUE(results_[0].healthy);
  EXPECT_EQ(results_[0].message, absl::StrCat("connected to 127.0.0.1:", listener.port()));

  listener.Close();
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(results_.size(), 2);
  EXPECT_FALSE(results_[1].healthy);
  EXPECT_EQ(results_[1].consecutive_failures, 1);
  EXPECT_EQ(results_[1].message,
            absl::StrCat("connect to 127.0.0.1:", listener.port(), ": Connection refused"));
}

TEST_F(HealthCheckerTest, StopDropsTheResultOfACheckInFlight) {
  HealthCheck check = CommandCheck("exit 1");
  check.set_delay_seconds(1);
  check.set_grace_period_seconds(1);
  check.set_consecutive_failures(1);
  StartChecker(check, DeferringRunner());
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(deferred_.size(), 1);

  checker_->Stop();
  RunDeferred();  // The check finishes and posts its (killing) result.
  loop_.AdvanceTime(absl::Seconds(100));

  EXPECT_THAT(results_, IsEmpty());
  EXPECT_TRUE(deferred_.empty());
  EXPECT_EQ(loop_.pending_timers(), 0);
}

TEST_F(HealthCheckerTest, CheckerMayBeDestroyedWhileACheckIsInFlight) {
  HealthCheck check = CommandCheck("exit 1");
  check.set_delay_seconds(1);
  check.set_grace_period_seconds(1);
  StartChecker(check, DeferringRunner());
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(deferred_.size(), 1);

  checker_->Stop();
  checker_.reset();
  RunDeferred();
  loop_.RunUntilIdle();

  EXPECT_THAT(results_, IsEmpty());
}

TEST_F(HealthCheckerTest, NextCheckStartsAnIntervalAfterThePreviousOneFinished) {
  HealthCheck check = CommandCheck("exit 1");
  check.set_delay_seconds(1);
  check.set_interval_seconds(10);
  check.set_grace_period_seconds(1);
  StartChecker(check, DeferringRunner());
  loop_.AdvanceTime(absl::Seconds(1));
  ASSERT_EQ(deferred_.size(), 1);

  loop_.AdvanceTime(absl::Seconds(100));  // The check hangs: no second one starts.
  EXPECT_EQ(deferred_.size(), 1);

  RunDeferred();
  loop_.RunUntilIdle();
  ASSERT_EQ(results_.size(), 1);
  loop_.AdvanceTime(absl::Seconds(10) - absl::Milliseconds(1));
  EXPECT_TRUE(deferred_.empty());
  loop_.AdvanceTime(absl::Milliseconds(1));
  EXPECT_EQ(deferred_.size(), 1);
}

TEST_F(HealthCheckerTest, CallbackMayDestroyTheChecker) {
  HealthCheck check = CommandCheck("exit 1");
  check.set_delay_seconds(1);
  check.set_grace_period_seconds(1);
  checker_ = std::make_unique<HealthChecker>(loop_, RunInline, check, DefaultTarget(),
                                             [this](const HealthResult& result) {
                                               results_.push_back(result);
                                               checker_.reset();
                                             });
  checker_->Start();

  loop_.AdvanceTime(absl::Seconds(100));

  EXPECT_EQ(results_.size(), 1);
  EXPECT_EQ(checker_, nullptr);
  EXPECT_EQ(loop_.pending_timers(), 0);
}

struct InvalidCase {
  std::string name;
  HealthCheck check;
  std::string message;
};

TEST(ValidateHealthCheckTest, RejectsBadChecksNamingTheField) {
  std::vector<InvalidCase> cases;
  cases.push_back({"no type", HealthCheck(), "health_check.type: must be COMMAND, HTTP or TCP"});
  {
    HealthCheck check;
    check.set_type(static_cast<HealthCheck::Type>(7));
    cases.push_back({"unknown type", check, "health_check.type: 7 is not a check type"});
  }
  {
    HealthCheck check;
    check.set_type(HealthCheck::COMMAND);
    cases.push_back(
        {"no command", check, "health_check.command.value: a COMMAND check needs a command"});
  }
  {
    HealthCheck check;
    check.set_type(HealthCheck::HTTP);
    cases.push_back({"http port 0", check, "health_check.http.port: 0 is not a port"});
  }
  {
    HealthCheck check;
    check.set_type(HealthCheck::HTTP);
    check.mutable_http()->set_port(70000);
    cases.push_back({"http port too big", check, "health_check.http.port: 70000 is not a port"});
  }
  {
    HealthCheck check;
    check.set_type(HealthCheck::HTTP);
    check.mutable_http()->set_port(80);
    check.mutable_http()->set_scheme("ftp");
    cases.push_back({"scheme", check, "health_check.http.scheme: 'ftp' is not http or https"});
  }
  {
    HealthCheck check;
    check.set_type(HealthCheck::HTTP);
    check.mutable_http()->set_port(80);
    check.mutable_http()->set_path("health");
    cases.push_back({"path", check, "health_check.http.path: 'health' does not start with '/'"});
  }
  {
    HealthCheck check;
    check.set_type(HealthCheck::TCP);
    check.mutable_tcp();
    cases.push_back({"tcp port 0", check, "health_check.tcp.port: 0 is not a port"});
  }
  {
    HealthCheck check = TcpCheck(80);
    check.mutable_command()->set_value("true");
    cases.push_back({"other body", check, "health_check.command: set on a TCP check"});
  }
  {
    HealthCheck check = TcpCheck(80);
    check.set_interval_seconds(-1);
    cases.push_back({"negative", check, "health_check.interval_seconds: -1 is negative"});
  }
  {
    HealthCheck check = TcpCheck(80);
    check.set_timeout_seconds(std::numeric_limits<double>::infinity());
    cases.push_back(
        {"infinite", check, "health_check.timeout_seconds: inf is not a finite duration"});
  }

  for (const InvalidCase& c : cases) {
    const absl::Status status = ValidateHealthCheck(c.check);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_EQ(status.message(), c.message) << c.name;
  }
}

TEST(ValidateHealthCheckTest, AcceptsEachTypeWithDefaults) {
  EXPECT_TRUE(ValidateHealthCheck(CommandCheck("true")).ok());
  EXPECT_TRUE(ValidateHealthCheck(TcpCheck(65535)).ok());
  HealthCheck http;
  http.set_type(HealthCheck::HTTP);
  http.mutable_http()->set_port(8080);
  http.mutable_http()->set_scheme("https");
  http.mutable_http()->set_path("/health");
  EXPECT_TRUE(ValidateHealthCheck(http).ok()) << ValidateHealthCheck(http);
}

}  // namespace
}  // namespace rz::agent
