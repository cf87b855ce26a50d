#include "agent/sandbox.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rz::agent {

bool IsSafePathComponent(const std::string& id) {
  return !id.empty() && id.size() <= 255 && id != "." && id != ".." &&
         id.find('/') == std::string::npos && id.find('\0') == std::string::npos;
}

std::string SandboxDir(const std::string& work_dir, const FrameworkId& framework_id,
                       const TaskId& task_id) {
  return absl::StrCat(work_dir, "/sandboxes/", framework_id.value(), "/", task_id.value());
}

absl::Status ValidateSandboxRelativePath(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("empty path");
  }
  if (path.front() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("path '", path, "' is absolute"));
  }
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("path contains a NUL byte");
  }
  for (const std::string& component : std::vector<std::string>(absl::StrSplit(path, '/'))) {
    if (component == "..") {
      return absl::InvalidArgumentError(absl::StrCat("path '", path, "' leaves the sandbox"));
    }
  }
  return absl::OkStatus();
}

absl::Status CreateSandbox(const std::string& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create sandbox '", dir, "': ", error.message()));
  }
  return absl::OkStatus();
}

absl::Status AppendMessage(const std::string& sandbox, const std::string& data, int uid, int gid) {
  const std::string dir = absl::StrCat(sandbox, "/.rz");
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("cannot create '", dir, "': ", std::strerror(errno)));
  }
  const std::string path = absl::StrCat(sandbox, "/", kMessagesFile);
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open '", path, "': ", std::strerror(errno)));
  }
  if (uid != -1 && (::fchown(fd, uid, gid) != 0 || ::chown(dir.c_str(), uid, gid) != 0)) {
    const int error = errno;
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("cannot give '", path, "' to uid ", uid, ": ", std::strerror(error)));
  }
  // One write() per line: appends of concurrent writers do not interleave within it.
  const std::string line = absl::StrCat(absl::Base64Escape(data), "\n");
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(fd, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot write '", path, "': ", std::strerror(error)));
    }
    written += static_cast<size_t>(n);
  }
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace rz::agent
