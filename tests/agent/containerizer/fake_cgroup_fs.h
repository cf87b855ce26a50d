// FakeCgroupFs: an in-memory CgroupFs that behaves like cgroupfs where the agent's code can
// tell the difference.
//
// - It is a tree of directories and files. Mount a hierarchy with AddV1Hierarchy() or
//   AddV2Hierarchy(); every directory made below a mount point (by MakeDir() or AddCgroup()) is a
//   cgroup and gets the interface files of its controllers with the kernel's defaults, so code
//   can read them at once. On v2 those are the controllers enabled in the parent's
//   cgroup.subtree_control, and enabling one later adds its files to existing children.
// - Writes store the value as written, except where the kernel acts: a pid written to
//   cgroup.procs leaves every other cgroup of that hierarchy; "+cpu -pids" edits
//   cgroup.subtree_control (refused with EBUSY, i.e. FailedPrecondition, while a non-root v2 cgroup
//   holds processes); "1" to cgroup.kill SIGKILLs the subtree; cgroup.freeze mirrors into
//   cgroup.events "frozen". A pid may not join a v2 cgroup that hands controllers to children.
// - Kill() records the signal; a SIGKILL removes the pid from every cgroup.procs (the process
//   died) unless set_kill_removes_processes(false) makes processes unkillable. Processes the
//   fake does not know (in no cgroup.procs) answer NotFound, like ESRCH.
// - RemoveDir() refuses cgroups with children or processes (EBUSY, i.e. FailedPrecondition).
// - Sleep() only adds to slept().
// - Tests set contents with SetFile() (e.g. "oom_kill 1" in memory.events), inject failures
//   with FailWrites(), and hide files from new cgroups with OmitFile() (an older kernel).
//
// Thread rule: thread-safe.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/containerizer/cgroup_fs.h"

namespace rz::agent {

class FakeCgroupFs final : public CgroupFs {
 public:
  // Mounts a v1 hierarchy carrying `controllers` (e.g. {"cpu", "cpuacct"} when co-mounted).
  void AddV1Hierarchy(const std::string& mount_point, std::vector<std::string> controllers) {
    absl::MutexLock lock(&mu_);
    mounts_.push_back({.path = mount_point, .version = 1, .controllers = std::move(controllers)});
    MakeParentsLocked(mount_point);
    nodes_[mount_point] = Node{.dir = true};
    PopulateLocked(mount_point);
  }

  // Mounts the unified hierarchy; its root's cgroup.controllers lists `controllers`.
  void AddV2Hierarchy(const std::string& mount_point, std::vector<std::string> controllers) {
    absl::MutexLock lock(&mu_);
    mounts_.push_back({.path = mount_point, .version = 2, .controllers = std::move(controllers)});
    MakeParentsLocked(mount_point);
    nodes_[mount_point] = Node{.dir = true};
    PopulateLocked(mount_point);
  }

  // /proc/self/mountinfo lines for the hierarchies mounted so far.
  std::string MountInfo() const {
    absl::MutexLock lock(&mu_);
    std::string text;
    int id = 30;
    for (const Mount& mount : mounts_) {
      if (mount.version == 1) {
        absl::StrAppend(&text, id, " 25 0:", id, " / ", mount.path,
                        " rw,nosuid,nodev,noexec,relatime shared:", id, " - cgroup cgroup rw,",
                        absl::StrJoin(mount.controllers, ","), "\n");
      } else {
        absl::StrAppend(&text, id, " 25 0:", id, " / ", mount.path,
                        " rw,nosuid,nodev,noexec,relatime shared:", id,
                        " - cgroup2 cgroup2 rw,nsdelegate\n");
      }
      ++id;
    }
    return text;
  }

  // Creates the cgroup `path` and any missing parents (an existing tree, e.g. the agent's own
  // cgroup).
  void AddCgroup(const std::string& path) {
    absl::MutexLock lock(&mu_);
    std::string current;
    for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
      absl::StrAppend(&current, "/", part);
      if (!nodes_.contains(current)) {
        nodes_[current] = Node{.dir = true};
        PopulateLocked(current);
      }
    }
  }

  // Creates or replaces the file at `path` (and any missing parent directories).
  void SetFile(const std::string& path, const std::string& contents) {
    absl::MutexLock lock(&mu_);
    MakeParentsLocked(path);
    nodes_[path] = Node{.dir = false, .contents = contents};
  }

  // The contents of the file at `path`, or "<missing>".
  std::string File(const std::string& path) const {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(path);
    return it == nodes_.end() || it->second.dir ? "<missing>" : it->second.contents;
  }

  bool HasDir(const std::string& path) const {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(path);
    return it != nodes_.end() && it->second.dir;
  }

  // From now on cgroups are created without a file of this name (e.g. "cgroup.kill").
  void OmitFile(const std::string& name) {
    absl::MutexLock lock(&mu_);
    omitted_.insert(name);
  }

  // Every later Write() to `path` returns `status` without writing anything (with OkStatus the
  // write is silently dropped, like a kernel that ignores it).
  void FailWrites(const std::string& path, absl::Status status) {
    absl::MutexLock lock(&mu_);
    write_failures_[path] = std::move(status);
  }

  void set_kill_removes_processes(bool removes) {
    absl::MutexLock lock(&mu_);
    kill_removes_ = removes;
  }

  // Every Write() that was not refused, in order: (path, value).
  std::vector<std::pair<std::string, std::string>> writes() const {
    absl::MutexLock lock(&mu_);
    return writes_;
  }

  // Every signal sent, in order: (pid, signal).
  std::vector<std::pair<pid_t, int>> signals() const {
    absl::MutexLock lock(&mu_);
    return signals_;
  }

  absl::Duration slept() const {
    absl::MutexLock lock(&mu_);
    return slept_;
  }

  // CgroupFs

  absl::StatusOr<std::string> Read(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(path);
    if (it == nodes_.end()) {
      return Errno(ENOENT, "reading", path);
    }
    if (it->second.dir) {
      return Errno(EISDIR, "reading", path);
    }
    return it->second.contents;
  }

  absl::Status Write(const std::string& path, const std::string& value) override {
    absl::MutexLock lock(&mu_);
    if (auto failure = write_failures_.find(path); failure != write_failures_.end()) {
      return failure->second;
    }
    absl::Status status = WriteLocked(path, value);
    if (status.ok()) {
      writes_.emplace_back(path, value);
    }
    return status;
  }

  absl::Status MakeDir(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    if (nodes_.contains(path)) {
      return Errno(EEXIST, "creating", path);
    }
    auto parent = nodes_.find(Parent(path));
    if (parent == nodes_.end() || !parent->second.dir) {
      return Errno(ENOENT, "creating", path);
    }
    nodes_[path] = Node{.dir = true};
    PopulateLocked(path);
    return absl::OkStatus();
  }

  absl::Status RemoveDir(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(path);
    if (it == nodes_.end()) {
      return Errno(ENOENT, "removing", path);
    }
    if (!it->second.dir) {
      return Errno(ENOTDIR, "removing", path);
    }
    if (!ChildDirsLocked(path).empty() || !PidsLocked(path).empty()) {
      return Errno(EBUSY, "removing", path);
    }
    nodes_.erase(nodes_.lower_bound(path + "/"), nodes_.lower_bound(path + "0"));  // '0' > '/'
    nodes_.erase(path);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> ListDirs(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    auto it = nodes_.find(path);
    if (it == nodes_.end()) {
      return Errno(ENOENT, "listing", path);
    }
    if (!it->second.dir) {
      return Errno(ENOTDIR, "listing", path);
    }
    return ChildDirsLocked(path);
  }

  bool Exists(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    return nodes_.contains(path);
  }

  absl::Status Kill(pid_t pid, int signal) override {
    absl::MutexLock lock(&mu_);
    bool known = false;
    for (const auto& [path, node] : nodes_) {
      if (absl::EndsWith(path, "/cgroup.procs") && HasPid(node.contents, pid)) {
        known = true;
        break;
      }
    }
    if (!known) {
      return absl::ErrnoToStatus(ESRCH, absl::StrCat("signalling pid ", pid));
    }
    SignalLocked(pid, signal);
    return absl::OkStatus();
  }

  void Sleep(absl::Duration duration) override {
    absl::MutexLock lock(&mu_);
    slept_ += duration;
  }

 private:
  struct Node {
    bool dir = false;
    std::string contents;
  };
  struct Mount {
    std::string path;
    int version = 1;
    std::vector<std::string> controllers;
  };

  static absl::Status Errno(int error, const char* what, const std::string& path) {
    return absl::ErrnoToStatus(error, absl::StrCat(what, " '", path, "'"));
  }

  static std::string Parent(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
  }

  static std::vector<pid_t> ParsePids(const std::string& text) {
    std::vector<pid_t> pids;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      pid_t pid;
      if (absl::SimpleAtoi(line, &pid)) {
        pids.push_back(pid);
      }
    }
    return pids;
  }

  static bool HasPid(const std::string& text, pid_t pid) {
    const std::vector<pid_t> pids = ParsePids(text);
    return std::find(pids.begin(), pids.end(), pid) != pids.end();
  }

  static std::string FormatPids(const std::vector<pid_t>& pids) {
    std::string text;
    for (pid_t pid : pids) {
      absl::StrAppend(&text, pid, "\n");
    }
    return text;
  }

  // The interface files of one controller in a new cgroup, with the kernel's defaults.
  static std::vector<std::pair<std::string, std::string>> ControllerFiles(
      int version, const std::string& controller) {
    if (version == 1) {
      if (controller == "cpu") {
        return {{"cpu.shares", "1024\n"},
                {"cpu.cfs_period_us", "100000\n"},
                {"cpu.cfs_quota_us", "-1\n"},
                {"cpu.stat", "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"}};
      }
      if (controller == "cpuacct") {
        return {{"cpuacct.stat", "user 0\nsystem 0\n"}, {"cpuacct.usage", "0\n"}};
      }
      if (controller == "memory") {
        const std::string unlimited = "9223372036854771712\n";
        return {{"memory.limit_in_bytes", unlimited},
                {"memory.memsw.limit_in_bytes", unlimited},
                {"memory.usage_in_bytes", "0\n"},
                {"memory.max_usage_in_bytes", "0\n"},
                {"memory.failcnt", "0\n"},
                {"memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"},
                {"memory.stat", "cache 0\nrss 0\ntotal_cache 0\ntotal_rss 0\n"}};
      }
      if (controller == "pids") {
        return {{"pids.max", "max\n"}, {"pids.current", "0\n"}, {"pids.events", "max 0\n"}};
      }
      if (controller == "freezer") {
        return {{"freezer.state", "THAWED\n"}};
      }
      return {};
    }
    if (controller == "cpu") {
      return {{"cpu.weight", "100\n"},
              {"cpu.max", "max 100000\n"},
              {"cpu.stat",
               "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\n"
               "throttled_usec 0\n"}};
    }
    if (controller == "memory") {
      return {{"memory.max", "max\n"},
              {"memory.current", "0\n"},
              {"memory.peak", "0\n"},
              {"memory.swap.max", "max\n"},
              {"memory.oom.group", "0\n"},
              {"memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"},
              {"memory.stat", "anon 0\nfile 0\nkernel 0\n"}};
    }
    if (controller == "pids") {
      return {{"pids.max", "max\n"}, {"pids.current", "0\n"}, {"pids.events", "max 0\n"}};
    }
    return {};
  }

  const Mount* MountOfLocked(const std::string& path) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Mount* best = nullptr;
    for (const Mount& mount : mounts_) {
      if ((path == mount.path || absl::StartsWith(path, mount.path + "/")) &&
          (best == nullptr || mount.path.size() > best->path.size())) {
        best = &mount;
      }
    }
    return best;
  }

  void MakeParentsLocked(const std::string& path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (std::string dir = Parent(path); !nodes_.contains(dir); dir = Parent(dir)) {
      nodes_[dir] = Node{.dir = true};
    }
  }

  void AddFileLocked(const std::string& dir, const std::string& name, const std::string& contents)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!omitted_.contains(name)) {
      nodes_[dir + "/" + name] = Node{.dir = false, .contents = contents};
    }
  }

  // The interface files of the new cgroup `dir`.
  void PopulateLocked(const std::string& dir) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Mount* mount = MountOfLocked(dir);
    if (mount == nullptr) {
      return;
    }
    AddFileLocked(dir, "cgroup.procs", "");
    if (mount->version == 1) {
      AddFileLocked(dir, "tasks", "");
      for (const std::string& controller : mount->controllers) {
        for (const auto& [name, contents] : ControllerFiles(1, controller)) {
          AddFileLocked(dir, name, contents);
        }
      }
      return;
    }
    AddFileLocked(dir, "cgroup.subtree_control", "");
    AddFileLocked(dir, "cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
    if (dir == mount->path) {
      AddFileLocked(dir, "cgroup.controllers", absl::StrJoin(mount->controllers, " ") + "\n");
      return;
    }
    AddFileLocked(dir, "cgroup.events", "populated 0\nfrozen 0\n");
    AddFileLocked(dir, "cgroup.freeze", "0\n");
    AddFileLocked(dir, "cgroup.kill", "");
    AddFileLocked(dir, "cgroup.type", "domain\n");
    const std::vector<std::string> available = EnabledLocked(Parent(dir));
    AddFileLocked(dir, "cgroup.controllers", absl::StrJoin(available, " ") + "\n");
    for (const std::string& controller : available) {
      for (const auto& [name, contents] : ControllerFiles(2, controller)) {
        AddFileLocked(dir, name, contents);
      }
    }
  }

  // The controllers in `dir`'s cgroup.subtree_control.
  std::vector<std::string> EnabledLocked(const std::string& dir) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = nodes_.find(dir + "/cgroup.subtree_control");
    if (it == nodes_.end()) {
      return {};
    }
    return absl::StrSplit(it->second.contents, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  }

  std::vector<std::string> ChildDirsLocked(const std::string& dir) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> children;
    const std::string prefix = dir == "/" ? "/" : dir + "/";
    for (auto it = nodes_.lower_bound(prefix); it != nodes_.end(); ++it) {
      if (!absl::StartsWith(it->first, prefix)) {
        break;
      }
      const std::string rest = it->first.substr(prefix.size());
      if (it->second.dir && !rest.empty() && rest.find('/') == std::string::npos) {
        children.push_back(rest);
      }
    }
    return children;
  }

  std::vector<pid_t> PidsLocked(const std::string& dir) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = nodes_.find(dir + "/cgroup.procs");
    return it == nodes_.end() ? std::vector<pid_t>{} : ParsePids(it->second.contents);
  }

  std::vector<pid_t> SubtreePidsLocked(const std::string& dir) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<pid_t> pids = PidsLocked(dir);
    for (const std::string& child : ChildDirsLocked(dir)) {
      std::vector<pid_t> more = SubtreePidsLocked(dir + "/" + child);
      pids.insert(pids.end(), more.begin(), more.end());
    }
    return pids;
  }

  void RemovePidLocked(pid_t pid, const std::string& within) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto& [path, node] : nodes_) {
      if (absl::EndsWith(path, "/cgroup.procs") && absl::StartsWith(path, within) &&
          HasPid(node.contents, pid)) {
        std::vector<pid_t> pids = ParsePids(node.contents);
        pids.erase(std::remove(pids.begin(), pids.end(), pid), pids.end());
        node.contents = FormatPids(pids);
      }
    }
  }

  void SignalLocked(pid_t pid, int signal) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    signals_.emplace_back(pid, signal);
    if (signal == SIGKILL && kill_removes_) {
      RemovePidLocked(pid, "/");
    }
  }

  absl::Status WriteLocked(const std::string& path, const std::string& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = nodes_.find(path);
    if (it == nodes_.end()) {
      return Errno(ENOENT, "opening", path);
    }
    if (it->second.dir) {
      return Errno(EISDIR, "opening", path);
    }
    const std::string dir = Parent(path);
    const std::string name = path.substr(dir.size() + 1);
    const Mount* mount = MountOfLocked(dir);
    if (mount != nullptr && name == "cgroup.procs") {
      return WriteProcsLocked(*mount, dir, value);
    }
    if (mount != nullptr && mount->version == 2 && name == "cgroup.subtree_control") {
      return WriteSubtreeControlLocked(*mount, dir, value);
    }
    if (mount != nullptr && mount->version == 2 && name == "cgroup.kill") {
      for (pid_t pid : SubtreePidsLocked(dir)) {
        SignalLocked(pid, SIGKILL);
      }
      return absl::OkStatus();
    }
    if (auto events = nodes_.find(dir + "/cgroup.events");
        name == "cgroup.freeze" && events != nodes_.end()) {
      events->second.contents =
          absl::StrCat("populated 0\nfrozen ", absl::StripAsciiWhitespace(value), "\n");
    }
    it->second.contents = value;
    return absl::OkStatus();
  }

  absl::Status WriteProcsLocked(const Mount& mount, const std::string& dir,
                                const std::string& value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    pid_t pid;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &pid) || pid <= 0) {
      return Errno(EINVAL, "writing", dir + "/cgroup.procs");
    }
    if (mount.version == 2 && dir != mount.path && !EnabledLocked(dir).empty()) {
      return Errno(EBUSY, "writing", dir + "/cgroup.procs");  // No internal processes.
    }
    RemovePidLocked(pid, mount.path + "/");
    std::vector<pid_t> pids = PidsLocked(dir);
    pids.push_back(pid);
    nodes_[dir + "/cgroup.procs"].contents = FormatPids(pids);
    return absl::OkStatus();
  }

  absl::Status WriteSubtreeControlLocked(const Mount& mount, const std::string& dir,
                                         const std::string& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string file = dir + "/cgroup.subtree_control";
    auto available_node = nodes_.find(dir + "/cgroup.controllers");
    const std::vector<std::string> available =
        available_node == nodes_.end() ? std::vector<std::string>{}
                                       : absl::StrSplit(available_node->second.contents,
                                                        absl::ByAnyChar(" \n"), absl::SkipEmpty());
    std::vector<std::string> enabled = EnabledLocked(dir);
    std::vector<std::string> added;
    for (absl::string_view token : absl::StrSplit(value, ' ', absl::SkipEmpty())) {
      const std::string controller(token.substr(1));
      if ((token[0] != '+' && token[0] != '-') ||
          std::find(available.begin(), available.end(), controller) == available.end()) {
        return Errno(EINVAL, "writing", file);
      }
      const bool on = std::find(enabled.begin(), enabled.end(), controller) != enabled.end();
      if (token[0] == '+' && !on) {
        if (dir != mount.path && !PidsLocked(dir).empty()) {
          return Errno(EBUSY, "writing", file);  // No internal processes.
        }
        enabled.push_back(controller);
        added.push_back(controller);
      } else if (token[0] == '-' && on) {
        enabled.erase(std::find(enabled.begin(), enabled.end(), controller));
      }
    }
    nodes_[file].contents = absl::StrJoin(enabled, " ") + "\n";
    for (const std::string& child : ChildDirsLocked(dir)) {
      const std::string child_dir = dir + "/" + child;
      nodes_[child_dir + "/cgroup.controllers"].contents = absl::StrJoin(enabled, " ") + "\n";
      for (const std::string& controller : added) {
        for (const auto& [name, contents] : ControllerFiles(2, controller)) {
          AddFileLocked(child_dir, name, contents);
        }
      }
    }
    return absl::OkStatus();
  }

  mutable absl::Mutex mu_;
  std::map<std::string, Node> nodes_ ABSL_GUARDED_BY(mu_);  // Absolute path → node, sorted.
  std::vector<Mount> mounts_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> omitted_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::Status> write_failures_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, std::string>> writes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<pid_t, int>> signals_ ABSL_GUARDED_BY(mu_);
  bool kill_removes_ ABSL_GUARDED_BY(mu_) = true;
  absl::Duration slept_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::agent
