// `rz run`: runs one command as a task on the cluster, like `docker run` for a one-off job.
// It checks that some agent can fit the request at all, subscribes as a short-lived framework
// ("rz-run <name>", failover timeout 0), launches the task on the first offer that fits,
// prints every state change to stderr, and when the task ends copies its stdout (and stderr)
// from the agent's sandbox and exits with the task's exit code.
//
// Exit codes: the task's own (0 for TASK_FINISHED; WEXITSTATUS, or 128 + signal, for
// TASK_FAILED); 125 when rz itself failed or the task ended in any other state (no agent
// fits, no offer in time, master unreachable, TASK_KILLED/ERROR/DROPPED/GONE...); 130 when
// interrupted by SIGINT/SIGTERM (the task is killed first).
//
// Thread rule: RunTask() is called once, from main(); it installs SIGINT/SIGTERM handlers.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "rz/v1/common.pb.h"

namespace rz::cli {

inline constexpr int kExitRzFailed = 125;
inline constexpr int kExitInterrupted = 130;

struct RunOptions {
  std::string master = "127.0.0.1:5050";  // host:port of the master's gRPC listener.
  double cpus = 0.1;
  double mem = 32;  // MB.
  std::string role = "*";
  std::string name;                            // Empty: derived from the command.
  absl::Duration timeout = absl::Seconds(60);  // For a fitting offer to arrive.
  std::string user;                            // Empty: the agent's default.
  std::vector<std::string> command;            // What followed `--`.
};

// Runs the task and returns the process exit code (see the header comment). Reports every
// problem as one `rz run: ...` line on stderr.
int RunTask(const RunOptions& options);

// A single argument runs under /bin/sh -c (so `rz run -- 'a | b'` works); several are an argv
// run directly. REQUIRES: `args` is not empty.
rz::v1::CommandInfo BuildCommand(const std::vector<std::string>& args);

// A task name from the command: the basename of the first word, reduced to [A-Za-z0-9._-].
std::string DefaultTaskName(const std::vector<std::string>& args);

// The exit code `rz run` reports for a terminal status (see the header comment).
int ExitCodeForStatus(const rz::v1::TaskStatus& status);

}  // namespace rz::cli
