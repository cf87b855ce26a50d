// CgroupFs is the only code that touches the cgroup filesystems (and signals the processes in
// them). `Cgroups` (cgroups.h) is written against it; `RealCgroupFs` makes the syscalls, and tests
// use `FakeCgroupFs` (tests/agent/containerizer/fake_cgroup_fs.h), an in-memory tree.
//
// Every path is absolute (e.g. "/sys/fs/cgroup/memory/rz/c1/memory.limit_in_bytes"). Errors are
// errno statuses (`absl::ErrnoToStatus`) whose message names the path, so a fake and the real
// filesystem fail with the same codes: NotFound (ENOENT, ESRCH), AlreadyExists (EEXIST),
// FailedPrecondition (EBUSY: a cgroup with processes or children), InvalidArgument (EINVAL: a
// value the kernel refuses), PermissionDenied (EACCES, EPERM).
//
// Thread rule: implementations are thread-safe. Every method may block on the filesystem, so
// never call them on an event loop.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rz::agent {

class CgroupFs {
 public:
  virtual ~CgroupFs() = default;

  // The whole contents of the file at `path`.
  virtual absl::StatusOr<std::string> Read(const std::string& path) = 0;

  // Writes `value` to the existing file at `path` in a single write() call: a cgroup interface
  // file takes one value per write, and a short or split write is an error.
  virtual absl::Status Write(const std::string& path, const std::string& value) = 0;

  // Creates the directory `path`; its parent must exist (NotFound otherwise). Returns
  // AlreadyExists if `path` exists, so callers can tell "made it" from "was there".
  virtual absl::Status MakeDir(const std::string& path) = 0;

  // Removes the directory `path`. A cgroup directory goes away with its interface files but
  // not while it has processes or child cgroups (FailedPrecondition). NotFound if it does not
  // exist.
  virtual absl::Status RemoveDir(const std::string& path) = 0;

  // The names (not paths) of the directories directly under `path`, sorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDirs(const std::string& path) = 0;

  // True if a file or directory exists at `path`.
  virtual bool Exists(const std::string& path) = 0;

  // Sends `signal` to process `pid`. NotFound if the process no longer exists.
  virtual absl::Status Kill(pid_t pid, int signal) = 0;

  // Blocks the calling thread for `duration`. Waiting on the kernel (a freezer to settle,
  // killed processes to leave a cgroup) goes through here so that tests need not sleep.
  virtual void Sleep(absl::Duration duration) = 0;
};

// The real filesystem and kill(2).
class RealCgroupFs final : public CgroupFs {
 public:
  absl::StatusOr<std::string> Read(const std::string& path) override;
  absl::Status Write(const std::string& path, const std::string& value) override;
  absl::Status MakeDir(const std::string& path) override;
  absl::Status RemoveDir(const std::string& path) override;
  absl::StatusOr<std::vector<std::string>> ListDirs(const std::string& path) override;
  bool Exists(const std::string& path) override;
  absl::Status Kill(pid_t pid, int signal) override;
  void Sleep(absl::Duration duration) override;
};

}  // namespace rz::agent
