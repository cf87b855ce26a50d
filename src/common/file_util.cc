#include "common/file_util.h"

#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rz {

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      return absl::ErrnoToStatus(errno, absl::StrCat("writing '", tmp, "'"));
    }
    out << contents;
    out.flush();
    if (!out) {
      return absl::ErrnoToStatus(errno, absl::StrCat("writing '", tmp, "'"));
    }
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int error = errno;
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(error, absl::StrCat("renaming '", tmp, "' to '", path, "'"));
  }
  return absl::OkStatus();
}

}  // namespace rz
