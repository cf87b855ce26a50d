// Child processes for the CLI (`rz local`) and the system tests: start a program with
// posix_spawn (never fork(), so a big multi-threaded parent is never copied), redirect its
// output to files, poll or wait for it with a deadline, and stop exactly that process by its
// pid (SIGTERM, then SIGKILL after a grace period).
//
// Thread rule: a Subprocess is used by one thread at a time. The free functions are
// thread-safe.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rz::cli {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the path of the program (no PATH search).
  // Files the child's stdout/stderr go to (created or truncated). Empty: inherited. The same
  // path for both makes one combined log.
  std::string stdout_path;
  std::string stderr_path;
  // If set, stdin reads /dev/null instead of the parent's stdin.
  bool null_stdin = true;
  // Puts the child in its own process group, so a Ctrl-C at the terminal reaches only the
  // parent, which then stops the child in order.
  bool new_process_group = false;
  // The child's environment ("NAME=value"); nullopt: the parent's.
  std::optional<std::vector<std::string>> env;
};

class Subprocess {
 public:
  // Starts the program. The child begins with all signals unblocked and at their default
  // disposition. Returns InvalidArgument for an empty argv, or the errno of posix_spawn
  // (e.g. NotFound for a missing program) naming the program.
  static absl::StatusOr<Subprocess> Spawn(const SpawnOptions& options);

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  // A child still running is killed (SIGKILL) and reaped.
  ~Subprocess();

  pid_t pid() const { return pid_; }

  // The wait status (as waitpid() reports it) if the child has exited; nullopt while it runs.
  // Never blocks.
  std::optional<int> Poll();

  // Waits up to `timeout` for the child to exit; returns its wait status, or nullopt if it
  // still runs.
  std::optional<int> WaitFor(absl::Duration timeout);

  // Sends `signal` to the child if it has not been reaped yet.
  void Signal(int signal);

  // Sends SIGTERM, waits up to `grace`, then SIGKILLs and reaps. Returns the wait status.
  // Calling it on an exited child just returns its status.
  int Stop(absl::Duration grace);

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}

  pid_t pid_ = -1;
  std::optional<int> wait_status_;  // Set once reaped.
};

// Stops all of `processes` at once: SIGTERM to each, up to `grace` in total for them to exit,
// then SIGKILL for the rest. Every process is reaped on return.
void StopAll(const std::vector<Subprocess*>& processes, absl::Duration grace);

// The conventional shell exit code of a wait status: the exit code, or 128 + signal number.
int ExitCodeOf(int wait_status);

// "exited with status 3" / "was killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int wait_status);

// The last `lines` lines of the file at `path` ("" if it cannot be read).
std::string TailFile(const std::string& path, int lines);

// The whole file at `path`, or NotFound / the errno naming it.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The directory of the running executable (from /proc/self/exe).
absl::StatusOr<std::string> SelfDirectory();

// The first of `dirs`/`name` that is an executable file, else `name` searched on PATH.
// Returns NotFound listing every place looked at.
absl::StatusOr<std::string> FindProgram(const std::string& name,
                                        const std::vector<std::string>& dirs);

}  // namespace rz::cli
