// What the system tests share: the build tree's binaries, a temp dir, daemons started with
// posix_spawn and stopped by pid, condition waits with deadlines, and the removal of the
// cgroups a killed agent left behind.
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/process.h"
#include "glog/logging.h"
#include "gtest/gtest.h"

extern char** environ;

namespace rz::system_test {

inline constexpr absl::Duration kStartTimeout = absl::Seconds(30);
inline constexpr absl::Duration kCommandTimeout = absl::Seconds(90);

// The build tree: ${RZ_BUILD_DIR} (set by rz_test), else two levels above this binary
// (<build>/tests/system/system_test).
inline std::string BuildDir() {
  if (const char* dir = std::getenv("RZ_BUILD_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  absl::StatusOr<std::string> self = cli::SelfDirectory();
  return self.ok() ? absl::StrCat(*self, "/../..") : ".";
}

inline std::string Binary(const std::string& relative) {
  return absl::StrCat(BuildDir(), "/", relative);
}

// The daemons get our environment minus RZ_* variables (RZ_BUILD_DIR, a developer's
// RZ_MASTER, ...): every setting a test relies on is on the command line.
inline std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "RZ_")) {
      env.emplace_back(*e);
    }
  }
  return env;
}

// Polls `condition` until it holds or `timeout` passes.
inline bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

inline std::string ReadOrEmpty(const std::string& path) {
  absl::StatusOr<std::string> text = cli::ReadFile(path);
  return text.ok() ? *text : "";
}

inline std::vector<std::string> NonEmptyLines(const std::string& text) {
  return absl::StrSplit(text, '\n', absl::SkipEmpty());
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  absl::Duration elapsed;
};

// A fresh directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/rz-system-XXXXXX";
    CHECK(mkdtemp(templ) != nullptr) << "mkdtemp: " << strerror(errno);
    path_ = templ;
    // Tasks run as an unprivileged user when the agent is root: they must reach their sandboxes.
    std::filesystem::permissions(
        path_, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                   std::filesystem::perms::group_exec | std::filesystem::perms::others_read |
                   std::filesystem::perms::others_exec);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class SystemTestBase : public ::testing::Test {
 protected:
  void TearDown() override {
    std::vector<cli::Subprocess*> processes;
    for (Daemon& daemon : daemons_) {
      processes.push_back(&daemon.process);
    }
    cli::StopAll(processes, absl::Seconds(5));
    if (HasFailure()) {
      for (const Daemon& daemon : daemons_) {
        std::fprintf(stderr, "---- last lines of %s (%s) ----\n%s\n", daemon.name.c_str(),
                     daemon.log.c_str(), cli::TailFile(daemon.log, 30).c_str());
      }
    }
  }

  // Starts a program with its output in `log` (created under the temp dir).
  cli::Subprocess& Spawn(const std::string& name, std::vector<std::string> argv,
                         const std::string& log) {
    cli::SpawnOptions options;
    options.argv = std::move(argv);
    options.stdout_path = log;
    options.stderr_path = log;
    options.env = ChildEnvironment();
    absl::StatusOr<cli::Subprocess> process = cli::Subprocess::Spawn(options);
    CHECK(process.ok()) << process.status();
    daemons_.push_back(Daemon{name, log, *std::move(process)});
    return daemons_.back().process;
  }

  // Runs a program to completion (or kills it after `timeout`), capturing its output.
  CommandResult RunProgram(std::vector<std::string> argv, absl::Duration timeout) {
    const int n = ++commands_run_;
    cli::SpawnOptions options;
    options.argv = std::move(argv);
    options.stdout_path = absl::StrCat(temp_.path(), "/command-", n, ".out");
    options.stderr_path = absl::StrCat(temp_.path(), "/command-", n, ".err");
    options.env = ChildEnvironment();
    const absl::Time start = absl::Now();
    absl::StatusOr<cli::Subprocess> process = cli::Subprocess::Spawn(options);
    CommandResult result;
    if (!process.ok()) {
      ADD_FAILURE() << process.status();
      return result;
    }
    std::optional<int> status = process->WaitFor(timeout);
    if (!status.has_value()) {
      ADD_FAILURE() << "'" << options.argv[0] << "' did not exit within " << timeout;
      status = process->Stop(absl::Seconds(2));
    }
    result.elapsed = absl::Now() - start;
    result.exit_code = cli::ExitCodeOf(*status);
    result.out = ReadOrEmpty(options.stdout_path);
    result.err = ReadOrEmpty(options.stderr_path);
    return result;
  }

  struct Daemon {
    std::string name;
    std::string log;
    cli::Subprocess process;
  };

  TempDir temp_;
  std::deque<Daemon> daemons_;  // A deque: Spawn()'s references stay valid.
  int commands_run_ = 0;
};

// Kills every process in the cgroup `name` (under this process's own cgroup, in every
// hierarchy) and removes it with its children. A safety net for tests whose agents could not
// clean up (killed with SIGKILL, or a test that failed half-way).
inline void DestroyCgroupTree(const std::string& name) {
  std::vector<std::string> roots;
  for (absl::string_view line : absl::StrSplit(ReadOrEmpty("/proc/self/cgroup"), '\n')) {
    std::vector<std::string> fields = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (fields.size() != 3 || absl::StartsWith(fields[1], "name=")) {
      continue;
    }
    std::string base = "/sys/fs/cgroup";
    if (!fields[1].empty()) {
      base = absl::StrCat(base, "/", fields[1]);
    } else if (std::filesystem::exists("/sys/fs/cgroup/unified/cgroup.controllers")) {
      base = "/sys/fs/cgroup/unified";
    }
    roots.push_back(absl::StrCat(base, fields[2] == "/" ? "" : fields[2], "/", name));
  }
  for (int round = 0; round < 50; ++round) {
    bool any = false;
    for (const std::string& root : roots) {
      std::error_code error;
      if (!std::filesystem::exists(root, error)) {
        continue;
      }
      any = true;
      // Children first: collect every directory, deepest last, then walk it backwards.
      std::vector<std::string> dirs = {root};
      for (const auto& entry : std::filesystem::recursive_directory_iterator(root, error)) {
        if (entry.is_directory(error)) {
          dirs.push_back(entry.path().string());
        }
      }
      for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
        for (absl::string_view pid :
             absl::StrSplit(ReadOrEmpty(*it + "/cgroup.procs"), '\n', absl::SkipEmpty())) {
          int value = 0;
          if (absl::SimpleAtoi(pid, &value) && value > 0) {
            ::kill(value, SIGKILL);
          }
        }
        ::rmdir(it->c_str());
      }
    }
    if (!any) {
      return;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
}

}  // namespace rz::system_test
