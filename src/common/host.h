// Facts about the machine a daemon or tool runs on.
//
// Thread rule: thread-safe.
#pragma once

#include <string>

namespace rz {

// This machine's host name, or "localhost" when it has none or it cannot be read.
std::string LocalHostname();

}  // namespace rz
