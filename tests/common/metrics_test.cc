// ThreadEventLoop instrumentation: queue depth, the age of the oldest queued closure, and the
// lag each batch reports. A manual clock makes the ages exact; notifications order the threads.
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/thread_event_loop.h"
#include "gtest/gtest.h"

namespace rz {
namespace {

TEST(ThreadEventLoopStatsTest, QueueDepthAgeAndLag) {
  ManualClock clock;
  ThreadEventLoop loop(clock);
  absl::Mutex mu;
  std::vector<absl::Duration> lags;
  loop.SetLagObserver([&](absl::Duration lag, size_t) {
    absl::MutexLock lock(&mu);
    lags.push_back(lag);
  });
  loop.Start();

  // Hold the loop busy so later posts stay queued.
  absl::Notification running, release, done;
  loop.Post([&] {
    running.Notify();
    release.WaitForNotification();
  });
  ASSERT_TRUE(running.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(loop.stats().queue_depth, 0u);

  loop.Post([] {});
  clock.Advance(absl::Seconds(2));
  loop.Post([&] { done.Notify(); });
  clock.Advance(absl::Seconds(1));
  ThreadEventLoop::Stats stats = loop.stats();
  EXPECT_EQ(stats.queue_depth, 2u);
  EXPECT_EQ(stats.oldest_queued_age, absl::Seconds(3));  // The first of the two waited 3 s.

  release.Notify();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Stop();
  stats = loop.stats();
  EXPECT_EQ(stats.queue_depth, 0u);
  EXPECT_EQ(stats.oldest_queued_age, absl::ZeroDuration());
  EXPECT_EQ(stats.tasks_run, 3u);
  absl::MutexLock lock(&mu);
  ASSERT_EQ(lags.size(), 2u);  // Two batches: the blocker alone, then the two queued behind it.
  EXPECT_EQ(lags[1], absl::Seconds(3));
}

TEST(ThreadEventLoopStatsTest, LateTimersReportTheirLateness) {
  ManualClock clock;
  ThreadEventLoop loop(clock);
  absl::Mutex mu;
  std::vector<absl::Duration> lags;
  loop.SetLagObserver([&](absl::Duration lag, size_t) {
    absl::MutexLock lock(&mu);
    lags.push_back(lag);
  });
  absl::Notification fired;
  loop.PostAfter(absl::Seconds(1), [&] { fired.Notify(); });
  clock.Advance(absl::Seconds(5));  // Due 4 s ago when the loop first looks.
  loop.Start();
  ASSERT_TRUE(fired.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Stop();
  absl::MutexLock lock(&mu);
  ASSERT_FALSE(lags.empty());
  EXPECT_EQ(lags[0], absl::Seconds(4));
}

}  // namespace
}  // namespace rz
