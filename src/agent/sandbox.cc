#include "agent/sandbox.h"

#include <filesystem>
#include <system_error>
#include <vector>

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

}  // namespace rz::agent
