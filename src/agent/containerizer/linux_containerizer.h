// LinuxContainerizer: runs each task under rz-containerizer-init, inside cgroups when the host
// offers them.
//
// Launch: creates <runtime_root>/<container_id>/, creates and configures the container's cgroups
// (cpu shares/weight from the request, CFS quota from the limit, memory hard limit, pids.max),
// posix_spawns the init (blocked on a pipe), places it in the cgroups, records its pid and start
// time (and the boot id) in the runtime directory, then releases it. The init switches to the
// task's user, sets rlimits, optionally enters new pid and mount namespaces, execs the task,
// reaps descendants and writes the task's exit status to the runtime directory.
//
// Exit: a reaper thread watches every init through a pidfd. When one exits, a cleanup thread
// reads the status file and the cgroups' OOM and pids counters, kills every process left in the
// cgroups, removes them, and reports the Termination.
//
// Recovery: an init whose pid is alive with the recorded start time (and boot id) is watched
// again; otherwise its status file says how the task ended. Runtime directories and cgroups
// the checkpoint does not know are destroyed.
//
// Without cgroups (`cgroups` null: not root, or --isolation=none) containers are process trees:
// SIGKILL reaches the init and its children's process groups, and no limits apply.
//
// Thread rule: thread-safe; every public method may block. One reaper thread (epoll on pidfds)
// and a small cleanup pool run exit handling; exit callbacks run on the cleanup pool.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/containerizer/cgroups.h"
#include "agent/containerizer/containerizer.h"
#include "common/worker_pool.h"

namespace rz::agent {

class LinuxContainerizer final : public Containerizer {
 public:
  struct Options {
    // The rz-containerizer-init binary.
    std::string init_path;
    // Runtime directories live in <runtime_root>/<container_id>/.
    std::string runtime_root;
    // Containers' cgroups are <cgroup_parent>/<container_id> (or
    // <cgroup_parent>/<group_id>/<container_id>) in every hierarchy.
    std::string cgroup_parent = "rz";
    // PATH and HOME given to every task (before the task's own environment).
    std::string path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    std::string home = "/";
    // stdout/stderr rotation in the sandbox; 0 = unbounded.
    uint64_t log_max_bytes = 0;
    int log_max_files = 5;
    // The machine's boot id (/proc/sys/kernel/random/boot_id).
    std::string boot_id;
  };

  // `cgroups` may be null (no isolation). CHECK-fails if epoll or eventfd cannot be created.
  LinuxContainerizer(Options options, std::unique_ptr<Cgroups> cgroups);
  ~LinuxContainerizer() override;

  LinuxContainerizer(const LinuxContainerizer&) = delete;
  LinuxContainerizer& operator=(const LinuxContainerizer&) = delete;

  absl::StatusOr<pid_t> Launch(const ContainerSpec& spec, ExitCallback on_exit) override;
  absl::Status Kill(const std::string& container_id, int signal) override;
  absl::StatusOr<rz::v1::ResourceStatistics> Usage(const std::string& container_id) override;
  absl::StatusOr<std::map<std::string, RecoveredContainer>> Recover(
      const std::set<std::string>& known,
      const std::function<ExitCallback(const std::string& container_id)>& make_callback) override;
  std::optional<Description> Describe(const std::string& container_id) override;

  // Kills every container and waits (up to `timeout`) until each is gone, its exit reported.
  // For agents that must not leave containers behind when they stop (tests, `rz local`).
  void DestroyAll(absl::Duration timeout);

  // The cgroups in use, or null.
  const Cgroups* cgroups() const { return cgroups_.get(); }

  // Reads /proc/sys/kernel/random/boot_id (trimmed); empty if unreadable.
  static std::string HostBootId();

 private:
  struct Container {
    std::string id;
    std::string cgroup;  // Relative cgroup name; empty without cgroups.
    std::string runtime_dir;
    pid_t pid = 0;
    int pidfd = -1;
    bool child = false;  // Spawned by this process (waitpid works), not recovered.
    uint64_t mem_limit_bytes = 0;
    ExitCallback on_exit;
  };

  std::string CgroupName(const ContainerSpec& spec) const;
  // Watches `container` (takes its pidfd) for exit.
  void Watch(std::unique_ptr<Container> container);
  void Reap();
  // Runs on the cleanup pool: status file, limits, kill leftovers, remove cgroups, callback.
  void Finish(std::unique_ptr<Container> container, std::optional<int> waited_status);
  Termination Conclude(const Container& container, std::optional<int> waited_status);
  // Kills every process of a container (cgroup, or the init's process tree).
  absl::Status KillAll(const std::string& cgroup, pid_t pid);
  void DestroyCgroup(const std::string& cgroup);
  void DestroyOrphan(const std::string& runtime_dir, const std::string& cgroup);

  const Options options_;
  const std::unique_ptr<Cgroups> cgroups_;
  const int epoll_fd_;
  const int wake_fd_;  // eventfd: wakes the reaper to stop.

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_token_ ABSL_GUARDED_BY(mu_) = 1;
  // Watched containers by epoll token, and the token of each id.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Container>> watched_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, uint64_t> by_id_ ABSL_GUARDED_BY(mu_);

  std::thread reaper_;
  WorkerPool cleanup_;  // Declared last: joined first, while everything it uses is alive.
};

}  // namespace rz::agent
