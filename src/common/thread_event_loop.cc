#include "common/thread_event_loop.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "glog/logging.h"

namespace rz {

ThreadEventLoop::ThreadEventLoop(const Clock& clock) : clock_(clock) {}

ThreadEventLoop::~ThreadEventLoop() { Stop(); }

void ThreadEventLoop::Start() {
  CHECK(!thread_.joinable()) << "event loop started twice";
  thread_ = std::thread([this] { Run(); });
}

void ThreadEventLoop::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    CHECK(!IsLoopThread()) << "event loop stopped from its own thread";
    thread_.join();
  }
}

void ThreadEventLoop::Post(Task task) {
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) {
    oldest_post_ = clock_.Now();
  }
  queue_.push_back(std::move(task));
}

ThreadEventLoop::Stats ThreadEventLoop::stats() const {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.queue_depth = queue_.size();
  if (!queue_.empty()) {
    stats.oldest_queued_age = std::max(clock_.Now() - oldest_post_, absl::ZeroDuration());
  }
  stats.tasks_run = tasks_run_;
  return stats;
}

void ThreadEventLoop::SetLagObserver(LagObserver observer) {
  CHECK(!thread_.joinable()) << "lag observer set after Start()";
  lag_observer_ = std::move(observer);
}

TimerId ThreadEventLoop::PostAfter(absl::Duration delay, Task task) {
  const absl::Time due = clock_.Now() + delay;
  absl::MutexLock lock(&mu_);
  const TimerId id = next_timer_id_++;
  timers_by_due_.emplace(due, id);
  timers_.emplace(id, std::make_pair(due, std::move(task)));
  return id;
}

void ThreadEventLoop::CancelTimer(TimerId id) {
  Task task;  // Destroyed outside the lock: a closure's destructor may post.
  {
    absl::MutexLock lock(&mu_);
    auto it = timers_.find(id);
    if (it == timers_.end()) {
      return;
    }
    auto [begin, end] = timers_by_due_.equal_range(it->second.first);
    for (auto d = begin; d != end; ++d) {
      if (d->second == id) {
        timers_by_due_.erase(d);
        break;
      }
    }
    task = std::move(it->second.second);
    timers_.erase(it);
  }
}

bool ThreadEventLoop::IsLoopThread() const { return std::this_thread::get_id() == loop_thread_id_; }

void ThreadEventLoop::Run() {
  loop_thread_id_ = std::this_thread::get_id();
  std::vector<Task> batch;
  absl::Duration lag;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty() ||
               (!timers_by_due_.empty() && timers_by_due_.begin()->first <= clock_.Now());
      };
      while (!ready()) {
        // Wake for the next timer, or at least every 100 ms of real time so a manual clock
        // (tests) that is advanced without a Post() is noticed, and never spins.
        absl::Duration wait = absl::Milliseconds(100);
        if (!timers_by_due_.empty()) {
          wait = std::min(wait, timers_by_due_.begin()->first - clock_.Now());
        }
        mu_.AwaitWithTimeout(absl::Condition(&ready), std::max(wait, absl::ZeroDuration()));
      }
      const absl::Time now = clock_.Now();
      if (!queue_.empty()) {
        lag = now - oldest_post_;
      }
      while (!queue_.empty()) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (!timers_by_due_.empty() && timers_by_due_.begin()->first <= now) {
        lag = std::max(lag, now - timers_by_due_.begin()->first);
      }
      while (!timers_by_due_.empty() && timers_by_due_.begin()->first <= now) {
        const TimerId id = timers_by_due_.begin()->second;
        timers_by_due_.erase(timers_by_due_.begin());
        auto it = timers_.find(id);
        batch.push_back(std::move(it->second.second));
        timers_.erase(it);
      }
      if (batch.empty() && stopping_) {
        break;
      }
      tasks_run_ += batch.size();
    }
    if (lag_observer_ && !batch.empty()) {
      lag_observer_(std::max(lag, absl::ZeroDuration()), batch.size());
    }
    for (Task& task : batch) {
      std::move(task)();
    }
    batch.clear();
    lag = absl::ZeroDuration();
  }
  // Drop timers not yet due; their closures are destroyed here, on the loop thread.
  absl::flat_hash_map<TimerId, std::pair<absl::Time, Task>> dropped;
  {
    absl::MutexLock lock(&mu_);
    dropped.swap(timers_);
    timers_by_due_.clear();
  }
}

}  // namespace rz
