#include "agent/containerizer/cgroup_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace rz::agent {
namespace {

absl::Status PathError(int error, const char* what, const std::string& path) {
  return absl::ErrnoToStatus(error, absl::StrCat(what, " '", path, "'"));
}

// Closes a file descriptor on every return path.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

absl::StatusOr<std::string> RealCgroupFs::Read(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return PathError(errno, "reading", path);
  }
  // Interface files report a size of 0 (or 4096), so read until EOF rather than trusting stat.
  std::string contents;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return PathError(errno, "reading", path);
    }
    if (n == 0) {
      return contents;
    }
    contents.append(buffer, static_cast<size_t>(n));
  }
}

absl::Status RealCgroupFs::Write(const std::string& path, const std::string& value) {
  // No O_CREAT and no O_TRUNC: interface files exist already, and a typo must fail loudly.
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return PathError(errno, "opening", path);
  }
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("writing '", value, "' to '", path, "'"));
  }
  if (static_cast<size_t>(n) != value.size()) {
    return absl::InternalError(absl::StrCat("short write of '", value, "' to '", path, "': ", n,
                                            " of ", value.size(), " bytes"));
  }
  return absl::OkStatus();
}

absl::Status RealCgroupFs::MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) {
    return PathError(errno, "creating", path);
  }
  return absl::OkStatus();
}

absl::Status RealCgroupFs::RemoveDir(const std::string& path) {
  if (::rmdir(path.c_str()) != 0) {
    return PathError(errno, "removing", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> RealCgroupFs::ListDirs(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    return PathError(errno, "listing", path);
  }
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    bool is_dir = entry->d_type == DT_DIR;
    if (entry->d_type == DT_UNKNOWN) {
      struct stat st;
      const std::string child = absl::StrCat(path, "/", name);
      is_dir = ::stat(child.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (is_dir) {
      names.push_back(name);
    }
    errno = 0;
  }
  const int error = errno;
  ::closedir(dir);
  if (error != 0) {
    return PathError(error, "listing", path);
  }
  std::sort(names.begin(), names.end());
  return names;
}

bool RealCgroupFs::Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

absl::Status RealCgroupFs::Kill(pid_t pid, int signal) {
  if (::kill(pid, signal) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("signalling pid ", pid, " with ", signal));
  }
  return absl::OkStatus();
}

void RealCgroupFs::Sleep(absl::Duration duration) { absl::SleepFor(duration); }

}  // namespace rz::agent
