// Facts about task states shared by the master, the agent and the CLI.
//
// Thread rule: pure functions; thread-safe.
#pragma once

#include "rz/v1/common.pb.h"

namespace rz {

// True for states after which a task never changes again (FINISHED, FAILED, KILLED, ERROR,
// DROPPED, GONE, GONE_BY_OPERATOR). UNREACHABLE and UNKNOWN are not terminal: the task may
// still run and be reported later.
inline bool IsTerminal(v1::TaskState state) {
  switch (state) {
    case v1::TASK_FINISHED:
    case v1::TASK_FAILED:
    case v1::TASK_KILLED:
    case v1::TASK_ERROR:
    case v1::TASK_DROPPED:
    case v1::TASK_GONE:
    case v1::TASK_GONE_BY_OPERATOR:
      return true;
    default:
      return false;
  }
}

}  // namespace rz
