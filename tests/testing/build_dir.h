// Paths of binaries in the build tree, for tests that start them. rz_test() sets RZ_BUILD_DIR.
#pragma once

#include <cstdlib>
#include <string>

namespace rz::testing {

// $RZ_BUILD_DIR/<relative>; empty if RZ_BUILD_DIR is unset.
inline std::string BuildPath(const std::string& relative) {
  const char* dir = std::getenv("RZ_BUILD_DIR");
  return dir == nullptr ? std::string() : std::string(dir) + "/" + relative;
}

inline std::string ContainerizerInitPath() {
  return BuildPath("src/agent/containerizer/rz-containerizer-init");
}

}  // namespace rz::testing
