// Launcher: the seam between the agent's state machine and the processes that run its tasks.
// The walking skeleton runs plain processes (PosixLauncher); the containerizer issue replaces it
// with a launcher that starts `rz-containerizer-init` inside cgroups.
//
// Thread rule: implementations are thread-safe. Launch() may block (process creation, disk) and
// is called from the agent's WorkerPool, never from its event loop; Kill() does not block.
#pragma once

#include <cstdint>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ids.h"
#include "rz/v1/common.pb.h"

namespace rz::agent {

// Everything a launcher needs to start one task.
struct LaunchSpec {
  FrameworkId framework_id;
  TaskId task_id;
  AgentId agent_id;
  rz::v1::CommandInfo command;
  // Absolute path of the task's sandbox. REQUIRES: the directory exists.
  std::string sandbox;
  // The unix user to run as; empty means the agent's own user.
  std::string user;
};

// Identifies one launched process tree for Kill(). Never reused by a launcher instance.
using LaunchHandle = uint64_t;

class Launcher {
 public:
  // Receives the raw waitpid() status of the task's process once it has exited.
  using ExitCallback = absl::AnyInvocable<void(int wait_status) &&>;

  virtual ~Launcher() = default;

  // Starts the task described by `spec`. On success `on_exit` is called exactly once, on a
  // launcher thread, when the task's process has exited and been reaped; it may be called
  // before Launch() returns. On failure `on_exit` is never called. Returns
  // FailedPrecondition when the launcher cannot honour `spec.user`, NotFound when the
  // executable does not exist, and Internal (with the errno text) for other spawn failures.
  virtual absl::StatusOr<LaunchHandle> Launch(const LaunchSpec& spec, ExitCallback on_exit) = 0;

  // Sends `signal` to every process of the task (its process group). Returns NotFound once the
  // task's process has been reaped: a reaped pid is never signalled.
  virtual absl::Status Kill(LaunchHandle handle, int signal) = 0;
};

}  // namespace rz::agent
