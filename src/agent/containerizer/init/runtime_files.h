// The contract between the agent and `rz-containerizer-init`: the init's command line and the
// files it leaves in the container's runtime directory. Both sides link this library, so the
// formats are defined once.
//
// Thread rule: pure functions, except WriteStatusFile() and ReadStatusFile(), which block on the
// filesystem (the agent calls them from its worker pool, never from its event loop).
//
// Depends on Abseil only (no glog, no protobuf): the init links it and must start quickly.
#pragma once

#include <sys/resource.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rz::agent {

// Names inside the runtime directory.
inline constexpr char kStatusFileName[] = "status";
inline constexpr char kStatusTempFileName[] = "status.tmp";

// Names inside the sandbox.
inline constexpr char kStdoutFileName[] = "stdout";
inline constexpr char kStderrFileName[] = "stderr";
inline constexpr char kInitLogFileName[] = "init.log";

// Exit codes of the init itself (besides the task's own exit code or 128 + signal).
inline constexpr int kInitExitBadArguments = 125;
inline constexpr int kInitExitAgentGaveUp = 111;  // EOF on the sync pipe; nothing ran.
// The task "exits" with these when it could not be started: 127 when something (the
// executable) was not found, 126 for every other failure before exec.
inline constexpr int kTaskExitNotFound = 127;
inline constexpr int kTaskExitCannotRun = 126;

inline constexpr int kDefaultLogMaxFiles = 5;

// One resource limit. `soft` and `hard` are RLIM_INFINITY when unlimited; soft <= hard.
struct RlimitSpec {
  int resource = 0;  // RLIMIT_NOFILE, ...
  rlim_t soft = RLIM_INFINITY;
  rlim_t hard = RLIM_INFINITY;

  friend bool operator==(const RlimitSpec&, const RlimitSpec&) = default;
};

// Everything the init's command line carries; see README.md for the protocol.
struct InitArgs {
  std::string init_path;            // argv[0]: the init binary.
  std::string runtime_dir;          // --runtime_dir: where the status file goes. Must exist.
  int sync_fd = -1;                 // --sync_fd: the read end of the agent's release pipe.
  std::string sandbox;              // --sandbox: the task's working directory and log files.
  std::optional<std::string> user;  // --user: run the task as this unix user.
  bool pid_namespace = false;       // --pid_namespace: new pid + mount namespaces.
  std::vector<RlimitSpec> rlimits;  // --rlimit=TYPE:SOFT:HARD, repeated.
  // --join_cgroup=FILE, repeated: once released, the init writes "0" to each file (a cgroup v1
  // `tasks` file), moving itself into the cgroup. A process moving itself skips the kernel's
  // threadgroup lock, which a write of another pid to cgroup.procs waits on for an RCU grace
  // period (milliseconds).
  std::vector<std::string> join_cgroups;
  std::optional<uint64_t> log_max_bytes;    // --log_max_bytes: rotate stdout/stderr above this.
  int log_max_files = kDefaultLogMaxFiles;  // --log_max_files: rotated files kept per stream.
  std::vector<std::string> command;         // after "--": the task's argv (argv[0] via PATH).

  friend bool operator==(const InitArgs&, const InitArgs&) = default;
};

// How the task ended, as the init recorded it.
struct InitExit {
  int wait_status = 0;  // Raw waitpid() status: use WIFEXITED(), WEXITSTATUS(), WTERMSIG().
  std::string message;  // Why the task could not start; empty when it ran.
};

// Returns the rlimit for `type` ("NOFILE", "CPU", ... as in setrlimit without the RLIMIT_
// prefix) with `soft`/`hard` (nullopt = unlimited). Returns InvalidArgument naming the problem
// for an unknown type, a value that cannot be represented, or soft > hard.
absl::StatusOr<RlimitSpec> ParseRlimit(std::string_view type, std::optional<uint64_t> soft,
                                       std::optional<uint64_t> hard);

// Parses a --rlimit value "TYPE:SOFT:HARD" where SOFT and HARD are decimal numbers or
// "unlimited". Returns InvalidArgument naming `value` and what is wrong.
absl::StatusOr<RlimitSpec> ParseRlimitFlag(std::string_view value);

// "NOFILE:64:64" for `spec`; the inverse of ParseRlimitFlag().
// REQUIRES: `spec.resource` is one of the supported resources.
std::string FormatRlimitFlag(const RlimitSpec& spec);

// The argv for spawning the init (argv[0] is `args.init_path`). ParseInitArgv() of the result
// returns `args`. REQUIRES: `args.command` is non-empty.
std::vector<std::string> BuildInitArgv(const InitArgs& args);

// Parses the init's command line. Returns InvalidArgument naming the offending argument for an
// unknown flag, a missing or repeated one, a bad value, or a missing command after "--".
absl::StatusOr<InitArgs> ParseInitArgv(int argc, char** argv);

// Atomically replaces `dir`/status (through status.tmp, fsync and rename) with `wait_status`
// and `message` (newlines in `message` become spaces). Returns the errno status naming the file
// on failure.
absl::Status WriteStatusFile(const std::string& dir, int wait_status, std::string_view message);

// Reads `dir`/status. Returns NotFound if it does not exist (the init has not finished, or died
// before writing it), DataLoss if it is malformed or truncated, or another errno status if it
// cannot be read.
absl::StatusOr<InitExit> ReadStatusFile(const std::string& dir);

// The exit code a shell would report for `wait_status`: the exit code, or 128 + the signal.
int ExitCodeOf(int wait_status);

}  // namespace rz::agent
