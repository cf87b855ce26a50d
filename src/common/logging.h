// Logging set-up for the daemons and tools: glog to stderr, with a failure signal handler.
//
// Thread rule: call once from main() before starting any thread.
#pragma once

namespace rz {

void InitLogging(const char* argv0);

}  // namespace rz
