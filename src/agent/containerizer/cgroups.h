// Cgroups puts containers into control groups, limits them, reads their usage and kills them,
// on either cgroups v1 (one hierarchy per controller, possibly co-mounted) or the v2 unified
// hierarchy. `Cgroups::Detect` picks the version at start-up; every kernel access goes through
// the `CgroupFs` seam.
//
// Names. A container's cgroup is named by a relative path such as "rz/<container-id>" or
// "rz/<group-id>/<container-id>"; it lives at `<root>/<name>` in every hierarchy the version
// uses, where `<root>` is the agent's own cgroup (from /proc/self/cgroup, as for a systemd
// service with Delegate=yes) or the `--cgroups_root` override. Components must be non-empty and
// must not be "." or ".."; anything else is InvalidArgument.
//
// v1 uses the cpu, cpuacct, memory, pids and freezer hierarchies. v2 needs the cpu, memory and
// pids controllers in the unified hierarchy and enables them (`+cpu +memory +pids` in
// cgroup.subtree_control) on every cgroup from the mount point down to each container's parent.
// Because a v2 cgroup that hands controllers to its children may not hold processes itself, the
// first Create() moves whatever runs in `<root>` (the agent itself, when the root is its own
// cgroup) into the leaf `<root>/agent`, as systemd asks of delegated services. With an override
// such as "/rz" the root is a fresh cgroup and nothing moves.
//
// Thread rule: thread-safe. Every method blocks on the filesystem (KillAll and Destroy for up to
// several seconds), so callers run them on a worker thread, never on an event loop. Calls for
// one name should be serialized by the caller; calls for different names may run concurrently.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "agent/containerizer/cgroup_fs.h"
#include "rz/v1/common.pb.h"

namespace rz::agent {

// Limits for one container. Unset fields leave the cgroup's current setting alone.
struct CgroupLimits {
  // The CPU request, as a relative weight: v1 cpu.shares = 1024 × cpus (at least 2); v2
  // cpu.weight = 100 × cpus (clamped to [1, 10000]). Both scales put one cpu at the kernel's
  // default weight, so 0.5 cpus gives shares 512 (v1) and weight 50 (v2).
  std::optional<double> cpu_shares_cpus;
  // A hard CPU cap through CFS bandwidth control: a 100 ms period and a quota of cpus × 100 ms
  // (at least 1 ms, the kernel's minimum). v1 cpu.cfs_period_us/cpu.cfs_quota_us; v2 cpu.max,
  // e.g. "50000 100000" for 0.5 cpus.
  std::optional<double> cpu_limit_cpus;
  // A hard memory limit: v1 memory.limit_in_bytes, and memory.memsw.limit_in_bytes to the same
  // value when the kernel has swap accounting (best effort). v2 memory.max, memory.swap.max 0
  // and memory.oom.group 1 (an OOM kill takes the whole container) where those files exist.
  std::optional<uint64_t> memory_limit_bytes;
  // pids.max: the most tasks (processes and threads) the cgroup may hold.
  std::optional<uint64_t> pids_max;
};

enum class CgroupsVersion { kAuto, kV1, kV2 };

struct CgroupsDetectOptions {
  std::string mountinfo;    // The text of /proc/self/mountinfo.
  std::string self_cgroup;  // The text of /proc/self/cgroup.
  // If non-empty, an absolute cgroup path such as "/rz" used as the root in every hierarchy
  // instead of the agent's own cgroup; it is created on the first Create().
  std::string root_override;
  // kAuto takes v2 when the unified hierarchy has the needed controllers, else v1.
  CgroupsVersion prefer = CgroupsVersion::kAuto;
};

class Cgroups {
 public:
  using DetectOptions = CgroupsDetectOptions;

  // Chooses v1 or v2 from `options`. FailedPrecondition naming what is missing (an unmounted
  // v1 controller, a v2 controller absent from cgroup.controllers, no line for a hierarchy in
  // /proc/self/cgroup); InvalidArgument for a malformed `root_override`. `fs` must outlive the
  // result.
  static absl::StatusOr<std::unique_ptr<Cgroups>> Detect(CgroupFs& fs,
                                                         const CgroupsDetectOptions& options);

  // Detect() with /proc/self/mountinfo and /proc/self/cgroup read through `fs`.
  static absl::StatusOr<std::unique_ptr<Cgroups>> DetectHost(
      CgroupFs& fs, const std::string& root_override,
      CgroupsVersion prefer = CgroupsVersion::kAuto);

  virtual ~Cgroups() = default;

  // 1 or 2.
  virtual int version() const = 0;

  // E.g. "cgroups v1 (cpu, cpuacct, memory, pids, freezer) under /sys/fs/cgroup/cpu, ...".
  virtual std::string Describe() const = 0;

  // The absolute directories of `name`, one per hierarchy (one for v2), whether they exist or
  // not. Empty for an invalid name.
  virtual std::vector<std::string> Paths(const std::string& name) const = 0;

  // Creates the cgroup `name` (and any missing parents) in every hierarchy. Creating an
  // existing cgroup is OK.
  virtual absl::Status Create(const std::string& name) = 0;

  // Writes the set fields of `limits`. InvalidArgument, before anything is written, for a
  // non-positive cpus value, memory limit or pids_max; the kernel's error otherwise.
  virtual absl::Status Apply(const std::string& name, const CgroupLimits& limits) = 0;

  // Moves process `pid` into `name` in every hierarchy. NotFound if the cgroup or the process
  // does not exist.
  virtual absl::Status Place(const std::string& name, pid_t pid) = 0;

  // Usage of `name` (its nested cgroups included, as the kernel counts them). `timestamp` is
  // left 0 for the caller, who owns the clock; limits that are unset read as 0. NotFound if the
  // cgroup does not exist.
  virtual absl::StatusOr<v1::ResourceStatistics> Statistics(const std::string& name) = 0;

  // True once the kernel's OOM killer killed a process of `name` (v1 memory.oom_control
  // "oom_kill", or "under_oom" on kernels without that line; v2 memory.events "oom_kill").
  virtual absl::StatusOr<bool> OomKilled(const std::string& name) = 0;

  // True once a fork in `name` failed because pids.max was reached (pids.events "max").
  virtual absl::StatusOr<bool> PidsLimitHit(const std::string& name) = 0;

  // The pids in `name` and its nested cgroups (in any hierarchy), sorted. NotFound if the
  // cgroup exists in no hierarchy.
  virtual absl::StatusOr<std::vector<pid_t>> Processes(const std::string& name) = 0;

  // SIGKILLs every process in `name` and its nested cgroups, such that none escapes: v1
  // freezes the cgroup first (so nothing forks between listing and killing), kills, thaws, and
  // repeats until the cgroup is empty; v2 writes cgroup.kill, or runs the same loop with
  // cgroup.freeze on kernels without it. Blocks until the cgroup is empty; DeadlineExceeded,
  // naming the survivors, if it is not after a few seconds. NotFound if the cgroup exists in
  // no hierarchy.
  virtual absl::Status KillAll(const std::string& name) = 0;

  // KillAll(), then removes `name` and its nested cgroups in every hierarchy. Destroying a
  // cgroup that does not exist is OK.
  virtual absl::Status Destroy(const std::string& name) = 0;

  // The names (last components, sorted) of the cgroups directly under `parent` in any
  // hierarchy; `parent` "" means the root. Empty if `parent` does not exist. Used at recovery
  // to find cgroups no checkpoint knows. On v2 the root also holds the agent's leaf "agent".
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& parent) = 0;
};

}  // namespace rz::agent
