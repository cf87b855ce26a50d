// PosixLauncher with real processes. Each test waits for exits on a condition with a deadline.
#include "agent/posix_launcher.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rz::agent {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The exit status of one launch, delivered by the reaper thread.
struct ExitWaiter {
  absl::Notification done;
  int status = -1;

  Launcher::ExitCallback Callback() {
    return [this](int wait_status) {
      status = wait_status;
      done.Notify();
    };
  }
  bool Wait() { return done.WaitForNotificationWithTimeout(kDeadline); }
};

class PosixLauncherTest : public ::testing::Test {
 protected:
  PosixLauncherTest() {
    static int counter = 0;
    sandbox_ =
        std::filesystem::path(::testing::TempDir()) /
        ("posix_launcher_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::create_directories(sandbox_);
  }

  LaunchSpec Shell(const std::string& script) {
    LaunchSpec spec{.framework_id = FrameworkId("fw"),
                    .task_id = TaskId("task"),
                    .agent_id = AgentId("agent"),
                    .sandbox = sandbox_};
    spec.command.set_shell(true);
    spec.command.set_value(script);
    return spec;
  }

  PosixLauncher launcher_{PosixLauncher::CurrentProcessOptions()};
  std::string sandbox_;
};

TEST_F(PosixLauncherTest, OutputLandsInTheSandbox) {
  ExitWaiter waiter;
  ASSERT_TRUE(launcher_.Launch(Shell("echo hello; echo oops >&2; pwd"), waiter.Callback()).ok());
  ASSERT_TRUE(waiter.Wait());
  EXPECT_EQ(waiter.status, 0);
  EXPECT_EQ(ReadAll(sandbox_ + "/stdout"),
            "hello\n" + std::filesystem::canonical(sandbox_).string() + "\n");
  EXPECT_EQ(ReadAll(sandbox_ + "/stderr"), "oops\n");
}

TEST_F(PosixLauncherTest, ExitCodeIsReportedAsARawWaitStatus) {
  ExitWaiter waiter;
  ASSERT_TRUE(launcher_.Launch(Shell("exit 3"), waiter.Callback()).ok());
  ASSERT_TRUE(waiter.Wait());
  ASSERT_TRUE(WIFEXITED(waiter.status));
  EXPECT_EQ(WEXITSTATUS(waiter.status), 3);
}

TEST_F(PosixLauncherTest, EnvironmentReachesTheTask) {
  LaunchSpec spec = Shell("echo \"$FOO|$RZ_TASK_ID|$RZ_FRAMEWORK_ID|$RZ_AGENT_ID|$RZ_SANDBOX\"");
  auto* variable = spec.command.mutable_environment()->add_variables();
  variable->set_name("FOO");
  variable->set_value("bar baz");
  ExitWaiter waiter;
  ASSERT_TRUE(launcher_.Launch(spec, waiter.Callback()).ok());
  ASSERT_TRUE(waiter.Wait());
  EXPECT_EQ(ReadAll(sandbox_ + "/stdout"), "bar baz|task|fw|agent|" + sandbox_ + "\n");
}

TEST_F(PosixLauncherTest, CommandWithoutShellRunsTheExecutableWithItsArguments) {
  LaunchSpec spec = Shell("");
  spec.command.set_shell(false);
  spec.command.set_value("echo");  // Found through PATH.
  spec.command.add_arguments("echo");
  spec.command.add_arguments("a  b");
  spec.command.add_arguments("$HOME");
  ExitWaiter waiter;
  ASSERT_TRUE(launcher_.Launch(spec, waiter.Callback()).ok());
  ASSERT_TRUE(waiter.Wait());
  EXPECT_EQ(ReadAll(sandbox_ + "/stdout"), "a  b $HOME\n");
}

TEST_F(PosixLauncherTest, MissingExecutableIsNotFound) {
  LaunchSpec spec = Shell("");
  spec.command.set_shell(false);
  spec.command.set_value("no-such-program-rz");
  ExitWaiter waiter;
  absl::StatusOr<LaunchHandle> launched = launcher_.Launch(spec, waiter.Callback());
  ASSERT_FALSE(launched.ok());
  EXPECT_EQ(launched.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(launched.status().message(), HasSubstr("no-such-program-rz"));

  spec.command.set_value("/no/such/file");
  launched = launcher_.Launch(spec, waiter.Callback());
  ASSERT_FALSE(launched.ok());
  EXPECT_THAT(launched.status().message(), HasSubstr("No such file or directory"));
}

TEST_F(PosixLauncherTest, AnotherUserNeedsTheContainerizer) {
  LaunchSpec spec = Shell("true");
  spec.user = "rz-someone-else";
  ExitWaiter waiter;
  absl::StatusOr<LaunchHandle> launched = launcher_.Launch(spec, waiter.Callback());
  ASSERT_FALSE(launched.ok());
  EXPECT_EQ(launched.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(launched.status().message(),
              HasSubstr("switching to user 'rz-someone-else' needs the containerizer"));

  spec.user = PosixLauncher::CurrentProcessOptions().agent_user;  // The agent's own user is fine.
  ASSERT_TRUE(launcher_.Launch(spec, waiter.Callback()).ok());
  ASSERT_TRUE(waiter.Wait());
}

// True once `pid` is gone or a zombie (it may have been reparented to a pid 1 that never reaps).
bool IsDead(pid_t pid) {
  if (::kill(pid, 0) != 0) {
    return true;
  }
  const std::string stat = ReadAll("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || stat.substr(paren + 2, 1) == "Z";
}

TEST_F(PosixLauncherTest, KillReachesTheWholeProcessGroup) {
  ExitWaiter waiter;
  // The shell waits on a background child: both must die from one kill.
  absl::StatusOr<LaunchHandle> handle = launcher_.Launch(
      Shell("sleep 1000 & echo $! > child.tmp && mv child.tmp child; wait"), waiter.Callback());
  ASSERT_TRUE(handle.ok()) << handle.status();
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!std::filesystem::exists(sandbox_ + "/child") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  const pid_t child = std::stoi(ReadAll(sandbox_ + "/child"));
  ASSERT_GT(child, 0);

  ASSERT_TRUE(launcher_.Kill(*handle, SIGTERM).ok());
  ASSERT_TRUE(waiter.Wait());
  ASSERT_TRUE(WIFSIGNALED(waiter.status));
  EXPECT_EQ(WTERMSIG(waiter.status), SIGTERM);
  while (!IsDead(child) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_TRUE(IsDead(child));

  // The leader is reaped: its pid must never be signalled again.
  EXPECT_EQ(launcher_.Kill(*handle, SIGKILL).code(), absl::StatusCode::kNotFound);
}

TEST_F(PosixLauncherTest, TaskStartsWithDefaultSignalHandling) {
  // Even if the agent blocks SIGTERM (as rz-agent's main does), the task must not inherit that.
  sigset_t term;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &term, &old);
  ExitWaiter waiter;
  absl::StatusOr<LaunchHandle> handle =
      launcher_.Launch(Shell("echo ready > ready; exec sleep 1000"), waiter.Callback());
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(handle.ok());
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!std::filesystem::exists(sandbox_ + "/ready") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(launcher_.Kill(*handle, SIGTERM).ok());
  ASSERT_TRUE(waiter.Wait());
  ASSERT_TRUE(WIFSIGNALED(waiter.status));
  EXPECT_EQ(WTERMSIG(waiter.status), SIGTERM);
}

}  // namespace
}  // namespace rz::agent
