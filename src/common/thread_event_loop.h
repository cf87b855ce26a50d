// ThreadEventLoop: the production EventLoop, one thread that runs posted closures in order and
// timers when they are due on the real clock.
//
// Thread rule: Post/PostAfter/CancelTimer are thread-safe; Start/Stop are called by the owner.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"

namespace rz {

class ThreadEventLoop final : public EventLoop {
 public:
  explicit ThreadEventLoop(const Clock& clock = RealClock::Get());
  ~ThreadEventLoop() override;  // Stops the loop if running.

  ThreadEventLoop(const ThreadEventLoop&) = delete;
  ThreadEventLoop& operator=(const ThreadEventLoop&) = delete;

  // Starts the loop thread. REQUIRES: not started.
  void Start();

  // Runs the closures already queued, then stops and joins the loop thread. Timers not yet
  // due are dropped. Idempotent. REQUIRES: not called on the loop thread.
  void Stop();

  void Post(Task task) override;
  TimerId PostAfter(absl::Duration delay, Task task) override;
  void CancelTimer(TimerId id) override;
  const Clock& clock() const override { return clock_; }
  bool IsLoopThread() const override;

  // Instrumentation for the daemon's metrics. It costs one clock read per batch (when the
  // queue goes from empty to non-empty), never one per Post.
  struct Stats {
    size_t queue_depth = 0;            // Closures posted and not yet started.
    absl::Duration oldest_queued_age;  // How long the oldest of them has waited.
    uint64_t tasks_run = 0;            // Closures and timers run so far.
  };
  Stats stats() const;  // Thread-safe.

  // Called on the loop thread before each batch with the batch's lag (how long its oldest
  // closure waited, or how late its earliest timer runs, whichever is longer) and its size.
  // REQUIRES: before Start().
  using LagObserver = std::function<void(absl::Duration lag, size_t batch_size)>;
  void SetLagObserver(LagObserver observer);

 private:
  void Run();

  const Clock& clock_;
  std::thread thread_;
  std::thread::id loop_thread_id_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<Task> queue_ ABSL_GUARDED_BY(mu_);
  // When queue_ last went from empty to non-empty: the post time of its oldest closure.
  absl::Time oldest_post_ ABSL_GUARDED_BY(mu_);
  uint64_t tasks_run_ ABSL_GUARDED_BY(mu_) = 0;
  LagObserver lag_observer_;
  TimerId next_timer_id_ ABSL_GUARDED_BY(mu_) = 1;
  // Due time → id; ids make equal deadlines fire in order of creation.
  std::multimap<absl::Time, TimerId> timers_by_due_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<TimerId, std::pair<absl::Time, Task>> timers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz
