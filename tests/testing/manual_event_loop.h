// ManualEventLoop: an EventLoop for unit tests. Nothing runs until the test calls RunUntilIdle()
// or AdvanceTime(); time comes from a ManualClock that only the test moves.
//
// Thread rule: Post/PostAfter/CancelTimer are thread-safe; Run*/AdvanceTime are called by the
// test thread, which counts as the loop thread.
#pragma once

#include <deque>
#include <map>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"

namespace rz::testing {

class ManualEventLoop final : public EventLoop {
 public:
  ManualEventLoop() = default;

  void Post(Task task) override {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(task));
  }

  TimerId PostAfter(absl::Duration delay, Task task) override {
    absl::MutexLock lock(&mu_);
    const TimerId id = next_id_++;
    timers_.emplace(std::make_pair(clock_.Now() + delay, id), std::move(task));
    return id;
  }

  void CancelTimer(TimerId id) override {
    absl::MutexLock lock(&mu_);
    for (auto it = timers_.begin(); it != timers_.end(); ++it) {
      if (it->first.second == id) {
        timers_.erase(it);
        return;
      }
    }
  }

  const Clock& clock() const override { return clock_; }
  bool IsLoopThread() const override { return true; }

  // Runs queued closures and due timers until none is left. Returns how many ran.
  int RunUntilIdle() {
    int ran = 0;
    while (true) {
      Task task;
      {
        absl::MutexLock lock(&mu_);
        if (!queue_.empty()) {
          task = std::move(queue_.front());
          queue_.pop_front();
        } else if (!timers_.empty() && timers_.begin()->first.first <= clock_.Now()) {
          task = std::move(timers_.begin()->second);
          timers_.erase(timers_.begin());
        } else {
          return ran;
        }
      }
      std::move(task)();
      ++ran;
    }
  }

  // Moves the clock forward in steps, firing each timer at its due time, then runs until idle.
  void AdvanceTime(absl::Duration d) {
    const absl::Time end = clock_.Now() + d;
    while (true) {
      RunUntilIdle();
      absl::Time next;
      {
        absl::MutexLock lock(&mu_);
        if (timers_.empty() || timers_.begin()->first.first > end) {
          break;
        }
        next = timers_.begin()->first.first;
      }
      if (next > clock_.Now()) {
        clock_.Set(next);
      }
    }
    clock_.Set(end);
    RunUntilIdle();
  }

  ManualClock& manual_clock() { return clock_; }

  size_t pending_timers() const {
    absl::MutexLock lock(&mu_);
    return timers_.size();
  }

 private:
  ManualClock clock_;
  mutable absl::Mutex mu_;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  TimerId next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::pair<absl::Time, TimerId>, Task> timers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::testing
