// An EventLoop runs closures one at a time on one thread. A daemon's state is touched only from
// closures on its loop, so that state needs no locks.
//
// Implementations: ThreadEventLoop (production, thread_event_loop.h) and ManualEventLoop
// (tests/testing/manual_event_loop.h), which runs closures only when a test says so.
#pragma once

#include <cstdint>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace rz {

using TimerId = uint64_t;

class EventLoop {
 public:
  using Task = absl::AnyInvocable<void() &&>;

  virtual ~EventLoop() = default;

  // Queues `task` to run on the loop thread after every task queued before it. Thread-safe.
  virtual void Post(Task task) = 0;

  // Runs `task` on the loop once `delay` has elapsed on clock(). Returns an id for
  // CancelTimer(). Thread-safe.
  virtual TimerId PostAfter(absl::Duration delay, Task task) = 0;

  // Cancels a timer that has not fired yet; a no-op otherwise. Thread-safe.
  virtual void CancelTimer(TimerId id) = 0;

  virtual const Clock& clock() const = 0;

  // True on the loop thread. Loop-only methods DCHECK this on entry.
  virtual bool IsLoopThread() const = 0;
};

}  // namespace rz
