// Containerizer: the seam between the agent's state machine and the containers that run its
// tasks. Production: LinuxContainerizer (rz-containerizer-init inside cgroups); tests of the
// state machine use a fake.
//
// A container is named by an id the agent chooses (unique per agent, a safe path component). It
// lives until its init process exits; then the containerizer kills whatever the task left
// behind, reads the exit status the init recorded and reports a Termination exactly once.
//
// Thread rule: implementations are thread-safe. Every method may block (cgroup files, process
// spawning, reading /proc) and is called from the agent's worker pool, never from its loop.
// Exit callbacks run on a containerizer thread and must only post.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/ids.h"
#include "rz/v1/common.pb.h"

namespace rz::agent {

// Everything needed to start one task's container.
struct ContainerSpec {
  std::string container_id;
  // Tasks of one group share a parent cgroup named by this id; empty for a lone task.
  std::string group_id;
  FrameworkId framework_id;
  TaskId task_id;
  AgentId agent_id;
  rz::v1::CommandInfo command;
  rz::v1::ContainerInfo container;
  // Absolute path of the task's sandbox. REQUIRES: the directory exists and the task's user
  // can write it.
  std::string sandbox;
  // The unix user to run the task as; empty means the agent's own user.
  std::string user;
  // Isolation: the requested cpus and memory, and optional limits above them.
  double cpus = 0;
  double mem_mb = 0;
  std::optional<double> cpus_limit;
  std::optional<double> mem_limit_mb;
  std::optional<uint64_t> pids_max;
  // Extra environment after the task's own (ports and the like).
  std::vector<std::pair<std::string, std::string>> environment;
};

// How a container ended.
struct Termination {
  // The task's raw waitpid() status, when known.
  std::optional<int> wait_status;
  // REASON_COMMAND_EXITED for a task that ended on its own (or was killed on request);
  // CONTAINER_LIMITATION_* when the container hit a limit; AGENT_REBOOTED or
  // CONTAINER_RECOVERY_FAILED when the container was lost.
  rz::v1::TaskStatus::Reason reason = rz::v1::TaskStatus::REASON_COMMAND_EXITED;
  std::string message;
  // True when a limit ended the task (the task failed, whatever its exit status says).
  bool limitation = false;
};

// What recovery found for one container the agent's checkpoint knows.
struct RecoveredContainer {
  enum class State {
    kRunning,  // The init is alive (same pid and start time); its exit will be reported.
    kExited,   // It ended while the agent was down: `termination` says how.
  };
  State state = State::kExited;
  pid_t pid = 0;
  Termination termination;
};

class Containerizer {
 public:
  using ExitCallback = absl::AnyInvocable<void(Termination) &&>;

  virtual ~Containerizer() = default;

  // Starts the container. On success `on_exit` runs exactly once, after the container is gone
  // (its processes killed, its cgroups removed); it may run before Launch() returns. On failure
  // nothing is left behind and `on_exit` never runs. Returns the init's pid.
  virtual absl::StatusOr<pid_t> Launch(const ContainerSpec& spec, ExitCallback on_exit) = 0;

  // Delivers `signal` to the task: SIGKILL kills every process of the container at once;
  // other signals go to the init, which forwards them to the task. NotFound once the container
  // is gone.
  virtual absl::Status Kill(const std::string& container_id, int signal) = 0;

  // Current usage of a running container. NotFound once it is gone.
  virtual absl::StatusOr<rz::v1::ResourceStatistics> Usage(const std::string& container_id) = 0;

  // Recovers after an agent restart. For each of `known` (the containers the checkpoint
  // names) reports whether it still runs (and then watches it, reporting its exit through
  // `make_callback(container_id)`) or how it ended. Containers not in `known` (orphans: their
  // runtime directories and cgroups) are destroyed. A container of `known` with no trace at all
  // is absent from the result.
  virtual absl::StatusOr<std::map<std::string, RecoveredContainer>> Recover(
      const std::set<std::string>& known,
      const std::function<ExitCallback(const std::string& container_id)>& make_callback) = 0;

  // The cgroup directories and init pid of a running container, for the agent's REST API.
  struct Description {
    pid_t pid = 0;
    std::vector<std::string> cgroups;
  };
  virtual std::optional<Description> Describe(const std::string& container_id) = 0;
};

}  // namespace rz::agent
