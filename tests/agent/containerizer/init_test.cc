// Tests of the init's runtime-file library, and of rz-containerizer-init itself as a real
// process: the test plays the agent (a sync pipe, posix_spawn, release, wait with a deadline).
//
// Built twice: `init_test` (unprivileged) and `init_privileged_test` (RZ_INIT_TEST_PRIVILEGED,
// labelled privileged; user switching and pid namespaces, skipped unless root).

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/containerizer/init/runtime_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace rz::agent {
namespace {

using ::testing::HasSubstr;

constexpr auto kDeadline = std::chrono::seconds(10);

std::string InitBinary() {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): nothing sets the environment concurrently.
  if (const char* build = std::getenv("RZ_BUILD_DIR"); build != nullptr) {
    return absl::StrCat(build, "/src/agent/containerizer/rz-containerizer-init");
  }
  // Run by hand: the binary sits at <build>/tests/agent/containerizer/.
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe");
  return (self.parent_path() / "../../../src/agent/containerizer/rz-containerizer-init")
      .lexically_normal()
      .string();
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

[[maybe_unused]] void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

// Polls `condition` until it holds or `kDeadline` passes. Only for real processes and files.
template <typename Condition>
bool WaitFor(Condition condition) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    ::poll(nullptr, 0, 5);
  }
  return condition();
}

// This process's environment with `overrides` ("NAME=value") replacing or adding entries.
std::vector<std::string> Environment(const std::vector<std::string>& overrides) {
  std::vector<std::string> env = overrides;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view var(*entry);
    const std::string_view name = var.substr(0, var.find('=') + 1);
    if (std::none_of(overrides.begin(), overrides.end(),
                     [&](const std::string& o) { return o.rfind(name, 0) == 0; })) {
      env.emplace_back(var);
    }
  }
  return env;
}

std::vector<char*> CStrings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) {
    out.push_back(s.data());
  }
  out.push_back(nullptr);
  return out;
}

// One spawned init, as the agent would start it.
class InitProcess {
 public:
  // Spawns the init with `args` (init_path and sync_fd are filled in) and this process's
  // environment plus `env` ("NAME=value"); its stderr goes to `stderr_path`.
  InitProcess(InitArgs args, const std::string& stderr_path,
              const std::vector<std::string>& env = {}) {
    int sync[2];
    EXPECT_EQ(::pipe2(sync, O_CLOEXEC), 0);
    args.init_path = InitBinary();
    args.sync_fd = 3;
    std::vector<std::string> argv = BuildInitArgv(args);
    Spawn(argv, sync[0], stderr_path, env);
    ::close(sync[0]);
    sync_write_ = sync[1];
  }

  // Spawns the init with a raw command line (for argument errors); no sync pipe.
  InitProcess(std::vector<std::string> argv, const std::string& stderr_path) {
    Spawn(argv, -1, stderr_path, {});
  }

  InitProcess(const InitProcess&) = delete;
  InitProcess& operator=(const InitProcess&) = delete;

  ~InitProcess() {
    CloseSync();
    if (pid_ > 0 && !exit_status_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }

  // The agent's go-ahead: the init is in its cgroups.
  void Release() {
    ASSERT_EQ(::write(sync_write_, "x", 1), 1);
    CloseSync();
  }

  // The agent gives up without releasing.
  void Abandon() { CloseSync(); }

  // Waits for the init to exit; returns its raw wait status, or nullopt after the deadline.
  std::optional<int> Wait() {
    if (exit_status_ || pid_ <= 0) {
      return exit_status_;
    }
    // A pidfd wakes us exactly when the init exits, so the start-up measurement is not
    // quantized by a polling interval.
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      pollfd pfd = {.fd = pidfd, .events = POLLIN};
      const int timeout_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(kDeadline).count());
      while (::poll(&pfd, 1, timeout_ms) < 0 && errno == EINTR) {
      }
      ::close(pidfd);
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
    }
    return exit_status_;
  }

 private:
  void Spawn(std::vector<std::string>& argv, int sync_read, const std::string& stderr_path,
             const std::vector<std::string>& env) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    if (sync_read >= 0) {
      posix_spawn_file_actions_adddup2(&actions, sync_read, 3);
    }
    std::vector<char*> cargv = CStrings(argv);
    std::vector<std::string> envp = Environment(env);
    std::vector<char*> cenvp = CStrings(envp);
    const int error = posix_spawn(&pid_, cargv[0], &actions, nullptr, cargv.data(), cenvp.data());
    posix_spawn_file_actions_destroy(&actions);
    EXPECT_EQ(error, 0) << "spawning " << argv[0] << ": error " << error;
  }

  void CloseSync() {
    if (sync_write_ >= 0) {
      ::close(sync_write_);
      sync_write_ = -1;
    }
  }

  pid_t pid_ = -1;
  int sync_write_ = -1;
  std::optional<int> exit_status_;
};

class InitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "init_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    // World-searchable so a task running as another user can reach its sandbox.
    ::chmod(root_.c_str(), 0755);
    runtime_dir_ = root_ + "/runtime";
    sandbox_ = root_ + "/sandbox";
    std::filesystem::create_directory(runtime_dir_);
    std::filesystem::create_directory(sandbox_);
    ::chmod(sandbox_.c_str(), 0777);
  }

  void TearDown() override {
    for (pid_t pid : leftovers_) {
      ::kill(pid, SIGKILL);
    }
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  InitArgs Args(std::vector<std::string> command) {
    return InitArgs{
        .runtime_dir = runtime_dir_, .sandbox = sandbox_, .command = std::move(command)};
  }

  std::string Sandbox(const std::string& name) const { return sandbox_ + "/" + name; }
  std::string StderrPath() const { return root_ + "/init.stderr"; }

  // Spawns, releases and waits for the init; returns its wait status.
  std::optional<int> Run(const InitArgs& args, const std::vector<std::string>& env = {}) {
    InitProcess init(args, StderrPath(), env);
    init.Release();
    return init.Wait();
  }

  std::string root_;
  std::string runtime_dir_;
  std::string sandbox_;
  std::vector<pid_t> leftovers_;  // Processes a test left behind on purpose; killed at the end.
};

// ---------------------------------------------------------------------------------------------
// The shared library.

#if !RZ_INIT_TEST_PRIVILEGED

TEST(InitArgvTest, BuildThenParseRoundTrips) {
  InitArgs args{.init_path = "/usr/libexec/rz-containerizer-init",
                .runtime_dir = "/var/run/rz/c1",
                .sync_fd = 7,
                .sandbox = "/var/lib/rz/sandboxes/f/t",
                .user = "nobody",
                .pid_namespace = true,
                .rlimits = {{.resource = RLIMIT_NOFILE, .soft = 64, .hard = 128},
                            {.resource = RLIMIT_CORE, .soft = 0, .hard = RLIM_INFINITY}},
                .log_max_bytes = 1 << 20,
                .log_max_files = 3,
                .command = {"sh", "-c", "echo --not-a-flag", "--"}};
  std::vector<std::string> argv = BuildInitArgv(args);
  std::vector<char*> cargv = CStrings(argv);

  absl::StatusOr<InitArgs> parsed = ParseInitArgv(static_cast<int>(argv.size()), cargv.data());

  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, args);
  EXPECT_THAT(argv, ::testing::Contains("--rlimit=CORE:0:unlimited"));
}

TEST(InitArgvTest, OptionalFlagsDefault) {
  std::vector<std::string> argv = {"init", "--runtime_dir=/r", "--sync_fd=3", "--sandbox=/s", "--",
                                   "true"};
  std::vector<char*> cargv = CStrings(argv);

  absl::StatusOr<InitArgs> parsed = ParseInitArgv(static_cast<int>(argv.size()), cargv.data());

  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->user.has_value());
  EXPECT_FALSE(parsed->pid_namespace);
  EXPECT_FALSE(parsed->log_max_bytes.has_value());
  EXPECT_EQ(parsed->log_max_files, kDefaultLogMaxFiles);
  EXPECT_EQ(parsed->command, std::vector<std::string>{"true"});
}

TEST(InitArgvTest, BadArgumentsAreNamed) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--sync_fd=3", "--bogus=1", "--", "true"}, "--bogus=1"},
      {{"--sync_fd=abc", "--", "true"}, "--sync_fd='abc'"},
      {{"--sync_fd=-2", "--", "true"}, "--sync_fd='-2'"},
      {{"--sync_fd=3", "--log_max_bytes=0", "--", "true"}, "--log_max_bytes='0'"},
      {{"--sync_fd=3", "--log_max_files=x", "--", "true"}, "--log_max_files='x'"},
      {{"--sync_fd=3", "--rlimit=NOFILE:64", "--", "true"}, "--rlimit='NOFILE:64'"},
      {{"--sync_fd=3", "--sandbox=/other", "--", "true"}, "--sandbox given more than once"},
      {{"--sync_fd=3", "--"}, "missing the task's command"},
      {{"--sync_fd=3", "true"}, "unknown argument 'true'"},
  };
  for (const auto& [extra, expected] : cases) {
    std::vector<std::string> argv = {"init", "--runtime_dir=/r", "--sandbox=/s"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    std::vector<char*> cargv = CStrings(argv);

    absl::StatusOr<InitArgs> parsed = ParseInitArgv(static_cast<int>(argv.size()), cargv.data());

    ASSERT_FALSE(parsed.ok()) << "no error for the case expecting: " << expected;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), HasSubstr(expected));
  }
}

TEST(InitArgvTest, MissingRequiredFlagsAreNamed) {
  std::vector<std::string> argv = {"init", "--sync_fd=3", "--sandbox=/s", "--", "true"};
  std::vector<char*> cargv = CStrings(argv);

  absl::StatusOr<InitArgs> parsed = ParseInitArgv(static_cast<int>(argv.size()), cargv.data());

  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(), "missing --runtime_dir");
}

TEST(RlimitTest, ParsesNumbersAndUnlimited) {
  absl::StatusOr<RlimitSpec> spec = ParseRlimitFlag("NOFILE:64:unlimited");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(*spec, (RlimitSpec{.resource = RLIMIT_NOFILE, .soft = 64, .hard = RLIM_INFINITY}));

  absl::StatusOr<RlimitSpec> direct = ParseRlimit("CPU", 10, std::nullopt);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_EQ(*direct, (RlimitSpec{.resource = RLIMIT_CPU, .soft = 10, .hard = RLIM_INFINITY}));
  EXPECT_EQ(FormatRlimitFlag(*direct), "CPU:10:unlimited");
}

TEST(RlimitTest, BadTypesAndValuesAreRejectedClearly) {
  absl::StatusOr<RlimitSpec> unknown = ParseRlimit("FILES", 1, 1);
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("unknown rlimit type 'FILES'"));

  absl::StatusOr<RlimitSpec> inverted = ParseRlimit("NOFILE", 128, 64);
  ASSERT_FALSE(inverted.ok());
  EXPECT_THAT(std::string(inverted.status().message()),
              HasSubstr("soft limit 128 exceeds hard limit 64"));

  absl::StatusOr<RlimitSpec> soft_unlimited = ParseRlimit("NOFILE", std::nullopt, 64);
  EXPECT_FALSE(soft_unlimited.ok());

  absl::StatusOr<RlimitSpec> not_a_number = ParseRlimitFlag("NOFILE:lots:64");
  ASSERT_FALSE(not_a_number.ok());
  EXPECT_THAT(std::string(not_a_number.status().message()),
              HasSubstr("soft limit 'lots' is not a number or 'unlimited'"));

  absl::StatusOr<RlimitSpec> negative = ParseRlimitFlag("NOFILE:1:-1");
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(std::string(negative.status().message()), HasSubstr("hard limit '-1'"));

  EXPECT_FALSE(ParseRlimitFlag("nofile:1:1").ok());
  EXPECT_FALSE(ParseRlimitFlag("NOFILE:1:1:1").ok());
}

TEST_F(InitTest, StatusFileRoundTrips) {
  ASSERT_TRUE(WriteStatusFile(runtime_dir_, W_EXITCODE(3, 0), "line one\nline two").ok());

  absl::StatusOr<InitExit> read = ReadStatusFile(runtime_dir_);

  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->wait_status, W_EXITCODE(3, 0));
  EXPECT_EQ(read->message, "line one line two");
  EXPECT_FALSE(std::filesystem::exists(runtime_dir_ + "/status.tmp"));
}

TEST_F(InitTest, MissingStatusFileIsNotFound) {
  absl::StatusOr<InitExit> read = ReadStatusFile(runtime_dir_);
  EXPECT_EQ(read.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(InitTest, MalformedOrPartialStatusFileIsDataLoss) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "truncated"},
      {"exit_status=0\nmessage=", "truncated"},
      {"exit_status=12", "truncated"},
      {"exit_status=abc\nmessage=\n", "exit_status 'abc' is not a number"},
      {"message=hi\n", "no exit_status"},
      {"exit_status=0\n", "no message"},
      {"garbage\n", "not key=value"},
  };
  for (const auto& [contents, expected] : cases) {
    WriteFile(runtime_dir_ + "/status", contents);

    absl::StatusOr<InitExit> read = ReadStatusFile(runtime_dir_);

    ASSERT_FALSE(read.ok()) << "accepted '" << contents << "'";
    EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss) << contents;
    EXPECT_THAT(std::string(read.status().message()), HasSubstr(expected)) << contents;
  }
}

TEST(ExitCodeTest, SignalsMapTo128Plus) {
  EXPECT_EQ(ExitCodeOf(W_EXITCODE(3, 0)), 3);
  EXPECT_EQ(ExitCodeOf(SIGKILL), 128 + SIGKILL);
}

// ---------------------------------------------------------------------------------------------
// The init as a process.

TEST_F(InitTest, RunsTheTaskAndRecordsItsExitAndOutput) {
  std::optional<int> status = Run(Args({"sh", "-c", "echo out; echo err >&2; exit 3"}));

  ASSERT_TRUE(status.has_value()) << "the init did not exit";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 3);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(WIFEXITED(exit->wait_status));
  EXPECT_EQ(WEXITSTATUS(exit->wait_status), 3);
  EXPECT_EQ(exit->message, "");
  EXPECT_EQ(ReadFile(Sandbox("stdout")), "out\n");
  EXPECT_EQ(ReadFile(Sandbox("stderr")), "err\n");
}

TEST_F(InitTest, TaskRunsInTheSandboxWithTheGivenEnvironment) {
  std::optional<int> status = Run(Args({"sh", "-c", "pwd; echo $RZ_INIT_TEST_VALUE"}),
                                  {"RZ_INIT_TEST_VALUE=passed-through"});

  ASSERT_EQ(status, 0);
  EXPECT_EQ(ReadFile(Sandbox("stdout")),
            absl::StrCat(std::filesystem::canonical(sandbox_).string(), "\npassed-through\n"));
}

TEST_F(InitTest, EofOnTheSyncPipeExits111WithoutRunningTheTask) {
  InitProcess init(Args({"sh", "-c", "touch marker"}), StderrPath());
  init.Abandon();

  std::optional<int> status = init.Wait();

  ASSERT_TRUE(status.has_value()) << "the init did not exit";
  ASSERT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), kInitExitAgentGaveUp);
  EXPECT_FALSE(std::filesystem::exists(Sandbox("marker")));
  EXPECT_EQ(ReadStatusFile(runtime_dir_).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(InitTest, MissingExecutableExits127NamingIt) {
  // Searched in PATH; one without unreadable entries, for which execvp reports EACCES instead.
  std::optional<int> status =
      Run(Args({"rz-no-such-command", "arg"}), {"PATH=/usr/local/bin:/usr/bin:/bin"});

  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), kTaskExitNotFound);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(WEXITSTATUS(exit->wait_status), 127);
  EXPECT_EQ(exit->message, "exec 'rz-no-such-command': No such file or directory");
}

TEST_F(InitTest, NonExecutableFileExits126) {
  WriteFile(Sandbox("script"), "#!/bin/sh\n");
  std::optional<int> status = Run(Args({Sandbox("script")}));

  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), kTaskExitCannotRun);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_THAT(exit->message, HasSubstr("Permission denied"));
}

TEST_F(InitTest, BadArgumentsExit125NamingTheArgument) {
  InitProcess init(
      std::vector<std::string>{InitBinary(), "--runtime_dir=" + runtime_dir_, "--sync_fd=3",
                               "--sandbox=" + sandbox_, "--rlimit=FILES:1:1", "--", "true"},
      StderrPath());

  std::optional<int> status = init.Wait();

  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), kInitExitBadArguments);
  EXPECT_THAT(ReadFile(StderrPath()).value_or(""),
              HasSubstr("rz-containerizer-init: --rlimit='FILES:1:1': unknown rlimit type"));
}

TEST_F(InitTest, SigtermToTheInitReachesTheTask) {
  InitProcess init(
      Args({"sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done"}),
      StderrPath());
  init.Release();
  ASSERT_TRUE(WaitFor([&] { return ReadFile(Sandbox("stdout")) == "ready\n"; }));

  ::kill(init.pid(), SIGTERM);
  std::optional<int> status = init.Wait();

  ASSERT_TRUE(status.has_value()) << "the init did not exit";
  EXPECT_EQ(WEXITSTATUS(*status), 7);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(WEXITSTATUS(exit->wait_status), 7);
}

TEST_F(InitTest, TaskKilledBySignalIsRecordedAsSuch) {
  std::optional<int> status = Run(Args({"sh", "-c", "kill -9 $$"}));

  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), 128 + SIGKILL);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_TRUE(WIFSIGNALED(exit->wait_status));
  EXPECT_EQ(WTERMSIG(exit->wait_status), SIGKILL);
}

// Returns the PPid field of /proc/<pid>/status, or -1 if the process is gone.
pid_t ParentOf(pid_t pid) {
  std::optional<std::string> status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status) {
    return -1;
  }
  const size_t at = status->find("\nPPid:");
  return at == std::string::npos ? -1 : std::atoi(status->c_str() + at + 6);
}

TEST_F(InitTest, OrphanedDescendantsAreAdoptedAndReaped) {
  // The orphan's parent subshell exits at once, so the orphan is reparented to the init (a
  // subreaper); when it exits it must not stay a zombie while the task keeps running.
  InitProcess init(Args({"sh", "-c",
                         "(sleep 0.5 & echo $! > orphan_pid.tmp; mv orphan_pid.tmp orphan_pid); "
                         "while [ ! -e done ]; do sleep 0.02; done"}),
                   StderrPath());
  init.Release();
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(Sandbox("orphan_pid")); }));
  const pid_t orphan = std::stoi(ReadFile(Sandbox("orphan_pid")).value_or("0"));
  ASSERT_GT(orphan, 0);

  EXPECT_TRUE(WaitFor([&] { return ParentOf(orphan) == init.pid() || ParentOf(orphan) < 0; }));
  const pid_t adopter = ParentOf(orphan);
  EXPECT_TRUE(WaitFor([&] { return ParentOf(orphan) < 0; }))
      << "orphan " << orphan << " was not reaped";
  EXPECT_EQ(::waitpid(init.pid(), nullptr, WNOHANG), 0) << "the init exited early";
  // Checked after the wait so a slow machine cannot make the orphan exit before adoption.
  EXPECT_EQ(adopter, init.pid()) << "the orphan was not adopted by the init";

  WriteFile(Sandbox("done"), "");
  EXPECT_EQ(init.Wait(), 0);
}

TEST_F(InitTest, ExitsWhenTheMainProcessExitsDespiteABackgroundChild) {
  // The background child keeps the output pipe open; the init must stop draining after a bound.
  InitArgs args = Args({"sh", "-c", "sleep 30 & echo $! > bg_pid; echo main done"});
  args.log_max_bytes = 1 << 20;
  InitProcess init(args, StderrPath());
  init.Release();

  std::optional<int> status = init.Wait();
  if (std::optional<std::string> bg = ReadFile(Sandbox("bg_pid")); bg && !bg->empty()) {
    leftovers_.push_back(std::stoi(*bg));
  }

  ASSERT_TRUE(status.has_value()) << "the init hung on its background child";
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_TRUE(ReadStatusFile(runtime_dir_).ok());
  EXPECT_EQ(ReadFile(Sandbox("stdout")), "main done\n");
}

TEST_F(InitTest, RotatesOutputKeepingAtMostTheGivenNumberOfFiles) {
  // 10 writes of 1 KiB ('0' x 1023 + newline, then '1' ..., the last one '9').
  InitArgs args = Args({"sh", "-c",
                        "for i in 0 1 2 3 4 5 6 7 8 9; do "
                        "  printf \"%01023d\\n\" 0 | tr 0 $i; "
                        "done"});
  args.log_max_bytes = 2048;
  args.log_max_files = 2;

  std::optional<int> status = Run(args);

  ASSERT_EQ(status, 0);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(sandbox_)) {
    names.push_back(entry.path().filename().string());
    EXPECT_LE(entry.file_size(), 2048u) << entry.path();
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"stderr", "stdout", "stdout.1", "stdout.2"}));
  const std::string newest = ReadFile(Sandbox("stdout")).value_or("");
  ASSERT_GE(newest.size(), 1024u);
  EXPECT_EQ(newest.substr(newest.size() - 1024), std::string(1023, '9') + "\n");
  const std::string older = ReadFile(Sandbox("stdout.2")).value_or("");
  EXPECT_EQ(older.find('9'), std::string::npos);
  EXPECT_FALSE(older.empty());
}

TEST_F(InitTest, RlimitIsVisibleToTheTask) {
  InitArgs args = Args({"sh", "-c", "ulimit -n"});
  args.rlimits.push_back({.resource = RLIMIT_NOFILE, .soft = 64, .hard = 64});

  std::optional<int> status = Run(args);

  ASSERT_EQ(status, 0);
  EXPECT_EQ(ReadFile(Sandbox("stdout")), "64\n");
}

TEST_F(InitTest, UnsettableRlimitFailsBeforeExecWithAMessage) {
  // The hard limit cannot be raised above the kernel's nr_open (even by root).
  InitArgs args = Args({"true"});
  args.rlimits.push_back({.resource = RLIMIT_NOFILE, .soft = 1ull << 40, .hard = 1ull << 40});

  std::optional<int> status = Run(args);

  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), kTaskExitCannotRun);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_THAT(exit->message, HasSubstr("setting rlimit NOFILE:"));
}

TEST_F(InitTest, UnknownUserFailsClearly) {
  InitArgs args = Args({"true"});
  args.user = "rz-no-such-user";

  std::optional<int> status = Run(args);

  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(WEXITSTATUS(*status), kTaskExitCannotRun);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_THAT(exit->message, HasSubstr("unknown user 'rz-no-such-user'"));
}

double Percentile(std::vector<double> values, double fraction) {
  std::sort(values.begin(), values.end());
  return values[static_cast<size_t>(fraction * static_cast<double>(values.size() - 1))];
}

// Waits until `fd` has data; returns the microseconds since `start`, or -1 after the deadline.
double MicrosUntilReadable(int fd, std::chrono::steady_clock::time_point start) {
  pollfd pfd = {.fd = fd, .events = POLLIN};
  if (::poll(&pfd, 1, 10'000) != 1) {
    return -1;
  }
  const auto now = std::chrono::steady_clock::now();
  char buffer[16];
  [[maybe_unused]] ssize_t ignored = ::read(fd, buffer, sizeof(buffer));
  return std::chrono::duration<double, std::micro>(now - start).count();
}

// Measures how long the init adds between the agent's spawn and the task's exec: the task
// (/bin/echo) writes into a FIFO the test holds, through the init (released at once) and,
// as the baseline, spawned directly. Also guards against gross regressions.
TEST_F(InitTest, AddsLittleLatencyBetweenSpawnAndExec) {
  constexpr int kRuns = 200;
  const std::string fifo = Sandbox("stdout");
  std::vector<double> through_init, direct, until_status;
  for (int i = 0; i < kRuns; ++i) {
    std::filesystem::remove(fifo);
    std::filesystem::remove(runtime_dir_ + "/status");
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
    // Held open for reading so the init's open() of its stdout file does not block.
    const int read_fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(read_fd, 0);
    const auto start = std::chrono::steady_clock::now();
    InitProcess init(Args({"/bin/echo", "x"}), StderrPath());
    init.Release();
    through_init.push_back(MicrosUntilReadable(read_fd, start));
    ASSERT_EQ(init.Wait(), 0);
    ASSERT_TRUE(ReadStatusFile(runtime_dir_).ok());
    until_status.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
            .count());
    ::close(read_fd);
    ASSERT_GE(through_init.back(), 0) << "the task never wrote";
  }
  for (int i = 0; i < kRuns; ++i) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 1);
    std::vector<std::string> argv = {"/bin/echo", "x"};
    std::vector<char*> cargv = CStrings(argv);
    pid_t pid = -1;
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    direct.push_back(MicrosUntilReadable(pipe_fds[0], start));
    ::close(pipe_fds[0]);
    ::waitpid(pid, nullptr, 0);
  }
  const double init_p50 = Percentile(through_init, 0.5);
  const double direct_p50 = Percentile(direct, 0.5);
  std::printf(
      "spawn -> task output over %d runs: through the init p50 %.0f us (p90 %.0f us), "
      "direct spawn p50 %.0f us; init overhead p50 %.0f us; spawn -> status file p50 %.0f us\n",
      kRuns, init_p50, Percentile(through_init, 0.9), direct_p50, init_p50 - direct_p50,
      Percentile(until_status, 0.5));
  RecordProperty("init_overhead_p50_us", static_cast<int>(init_p50 - direct_p50));
  // Wall-clock time on a shared machine is noisy (the target is < 2 ms); the bound only
  // catches a wait in the start-up path. InitTest.LinksNoHeavyLibraries guards the linking.
  EXPECT_LT(init_p50 - direct_p50, 50'000.0);
}

// The init's start-up cost is mostly the dynamic loader: it must map libc (and libm) only.
TEST_F(InitTest, LinksNoHeavyLibraries) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "sanitizer runtimes load libstdc++ and libgcc_s";
#endif
  InitProcess init(Args({"true"}), StderrPath());
  const std::string proc = absl::StrCat("/proc/", init.pid());
  // Blocked in read(3, ...) on the sync pipe: past the loader and static initialisers.
  ASSERT_TRUE(
      WaitFor([&] { return ReadFile(proc + "/syscall").value_or("").rfind("0 0x3 ", 0) == 0; }));

  const std::string maps = ReadFile(proc + "/maps").value_or("");
  init.Abandon();

  EXPECT_THAT(maps, HasSubstr("libc.so"));
  for (const char* library :
       {"libstdc++", "libabsl", "libglog", "libgflags", "libprotobuf", "libgrpc", "libgcc_s"}) {
    EXPECT_THAT(maps, ::testing::Not(HasSubstr(library)));
  }
  EXPECT_EQ(init.Wait(), W_EXITCODE(kInitExitAgentGaveUp, 0));
}

#else  // RZ_INIT_TEST_PRIVILEGED

class InitPrivilegedTest : public InitTest {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (user switching, pid namespaces)";
    }
    InitTest::SetUp();
  }
};

TEST_F(InitPrivilegedTest, RunsTheTaskAsTheGivenUser) {
  const passwd* nobody = ::getpwnam("nobody");  // NOLINT(concurrency-mt-unsafe)
  ASSERT_NE(nobody, nullptr);
  const uid_t nobody_uid = nobody->pw_uid;
  InitArgs args = Args({"sh", "-c", "id -u; echo $HOME"});
  args.user = "nobody";

  std::optional<int> status = Run(args);

  ASSERT_EQ(status, 0) << ReadFile(Sandbox("init.log")).value_or("");
  std::optional<std::string> out = ReadFile(Sandbox("stdout"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->substr(0, out->find('\n')), std::to_string(nobody_uid));
  struct stat st;
  ASSERT_EQ(::stat(Sandbox("stdout").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody_uid);
  ASSERT_EQ(::stat(Sandbox("stderr").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody_uid);
}

TEST_F(InitPrivilegedTest, RotatedFilesStayOwnedByTheUser) {
  InitArgs args = Args({"sh", "-c", "for i in 1 2 3; do printf '%0100d\\n' 0; done"});
  args.user = "nobody";
  args.log_max_bytes = 150;

  ASSERT_EQ(Run(args), 0) << ReadFile(Sandbox("init.log")).value_or("");

  const passwd* nobody = ::getpwnam("nobody");  // NOLINT(concurrency-mt-unsafe)
  ASSERT_NE(nobody, nullptr);
  const uid_t nobody_uid = nobody->pw_uid;
  for (const char* name : {"stdout", "stdout.1", "stdout.2"}) {
    struct stat st;
    ASSERT_EQ(::stat(Sandbox(name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_uid, nobody_uid) << name;
  }
}

TEST_F(InitPrivilegedTest, PidNamespaceMakesTheInitPid1) {
  InitArgs args = Args({"sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline"});
  args.pid_namespace = true;

  std::optional<int> status = Run(args);

  ASSERT_EQ(status, 0) << ReadFile(Sandbox("init.log")).value_or("");
  std::optional<std::string> out = ReadFile(Sandbox("stdout"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->substr(0, out->find('\n')), "2");
  EXPECT_THAT(*out, HasSubstr("rz-containerizer-init --runtime_dir="));
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->wait_status, 0);
}

// True if some process runs `sleep <seconds>` (an argument unique to one test).
bool SleepRuns(const std::string& seconds) {
  const std::string wanted = absl::StrCat("sleep", std::string(1, '\0'), seconds);
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::optional<std::string> cmdline = ReadFile(entry.path().string() + "/cmdline");
    if (cmdline && cmdline->rfind(wanted, 0) == 0) {
      return true;
    }
  }
  return false;
}

TEST_F(InitPrivilegedTest, PidNamespaceForwardsSigtermAndKillsLeftovers) {
  // The task leaves behind a daemon that ignores SIGTERM; leaving the namespace kills it.
  InitArgs args = Args({"sh", "-c",
                        "(trap '' TERM; exec sleep 313) & trap 'exit 9' TERM; echo ready; "
                        "while :; do sleep 0.05; done"});
  args.pid_namespace = true;
  InitProcess init(args, StderrPath());
  init.Release();
  ASSERT_TRUE(WaitFor([&] { return ReadFile(Sandbox("stdout")) == "ready\n"; }));
  ASSERT_TRUE(WaitFor([] { return SleepRuns("313"); }));

  ::kill(init.pid(), SIGTERM);
  std::optional<int> status = init.Wait();

  ASSERT_TRUE(status.has_value()) << "the init did not exit";
  EXPECT_EQ(WEXITSTATUS(*status), 9);
  absl::StatusOr<InitExit> exit = ReadStatusFile(runtime_dir_);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(WEXITSTATUS(exit->wait_status), 9);
  EXPECT_TRUE(WaitFor([] { return !SleepRuns("313"); })) << "the daemon outlived the namespace";
}

#endif  // RZ_INIT_TEST_PRIVILEGED

}  // namespace
}  // namespace rz::agent
