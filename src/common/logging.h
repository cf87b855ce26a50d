// Logging set-up for the daemons and tools: glog to stderr, with a failure signal handler.
//
// Thread rule: call once from main() before starting any thread.
#pragma once

#include "absl/status/status.h"
#include "glog/logging.h"

namespace rz {

void InitLogging(const char* argv0);

}  // namespace rz

// CHECK-fails with the status message unless `expr` is OK. For what cannot fail unless there is
// a bug; untrusted input gets a Status path instead.
#define RZ_CHECK_OK(expr)                             \
  do {                                                \
    const ::absl::Status rz_check_status_ = (expr);   \
    CHECK(rz_check_status_.ok()) << rz_check_status_; \
  } while (false)
