// PosixLauncher: the walking skeleton's Launcher. It starts each task as a plain process with
// posix_spawn (never fork() of the agent) in a process group of its own, with stdin from
// /dev/null, stdout/stderr appended to `stdout`/`stderr` in the sandbox, the sandbox as its
// working directory and a fresh environment (see Launch()). One reaper thread watches a pidfd
// per child with epoll and reaps it when it exits.
//
// It cannot switch users: a task asking for a user other than the agent's fails to launch.
// Destroying the launcher stops the reaper but leaves running tasks alone.
//
// Thread rule: thread-safe. Exit callbacks run on the reaper thread, without locks held.
#pragma once

#include <sys/types.h>

#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "agent/launcher.h"

namespace rz::agent {

class PosixLauncher final : public Launcher {
 public:
  struct Options {
    // The user the agent runs as; tasks may only ask for this user (or none).
    std::string agent_user;
    // PATH and HOME given to every task (before the task's own environment).
    std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    std::string home = "/";
  };

  // Options for the current process: its user name, its PATH (or the default) and the user's
  // home directory.
  static Options CurrentProcessOptions();

  // Starts the reaper thread. CHECK-fails if epoll or eventfd cannot be created.
  explicit PosixLauncher(Options options);
  ~PosixLauncher() override;

  PosixLauncher(const PosixLauncher&) = delete;
  PosixLauncher& operator=(const PosixLauncher&) = delete;

  // The task's environment is PATH and HOME from Options, then CommandInfo.environment (which
  // may override them), then RZ_SANDBOX, RZ_TASK_ID, RZ_FRAMEWORK_ID and RZ_AGENT_ID. With
  // `shell` the command runs as `/bin/sh -c value`; otherwise `value` is the executable,
  // searched in the task's PATH when it has no '/', and `arguments` its argv (argv[0] is
  // `value` when `arguments` is empty).
  absl::StatusOr<LaunchHandle> Launch(const LaunchSpec& spec, ExitCallback on_exit) override;
  absl::Status Kill(LaunchHandle handle, int signal) override;

 private:
  struct Child {
    pid_t pid = 0;
    int pidfd = -1;
    ExitCallback on_exit;
  };

  void Reap();

  const Options options_;
  const int epoll_fd_;
  const int wake_fd_;  // eventfd: wakes the reaper to stop.

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  LaunchHandle next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  // Children not yet reaped. A pid here is alive or a zombie, so it cannot have been reused.
  absl::flat_hash_map<LaunchHandle, Child> children_ ABSL_GUARDED_BY(mu_);

  std::thread reaper_;
};

}  // namespace rz::agent
