// Small file helpers shared by the daemons.
//
// Thread rule: thread-safe; they block on the filesystem, so never call them on an event loop.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace rz {

// Writes `contents` to `path` through a temporary file in the same directory and a rename, so
// readers never see a partial file. Returns the errno status naming the file on failure.
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

}  // namespace rz
