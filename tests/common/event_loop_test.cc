#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/thread_event_loop.h"
#include "gtest/gtest.h"
#include "testing/manual_event_loop.h"

namespace rz {
namespace {

TEST(ThreadEventLoopTest, RunsPostedTasksInOrderOnTheLoopThread) {
  ThreadEventLoop loop;
  loop.Start();
  std::vector<int> order;
  absl::Notification done;
  bool on_loop = true;
  for (int i = 0; i < 100; ++i) {
    loop.Post([&, i] {
      on_loop = on_loop && loop.IsLoopThread();
      order.push_back(i);
      if (i == 99) done.Notify();
    });
  }
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Stop();
  EXPECT_TRUE(on_loop);
  EXPECT_FALSE(loop.IsLoopThread());
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(ThreadEventLoopTest, TimersFireInDueOrderAndCancelledOnesNever) {
  ThreadEventLoop loop;
  loop.Start();
  std::vector<int> fired;
  absl::Notification done;
  loop.PostAfter(absl::Milliseconds(30), [&] {
    fired.push_back(2);
    done.Notify();
  });
  const TimerId cancelled = loop.PostAfter(absl::Milliseconds(10), [&] { fired.push_back(99); });
  loop.PostAfter(absl::Milliseconds(5), [&] { fired.push_back(1); });
  loop.CancelTimer(cancelled);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Stop();
  EXPECT_EQ(fired, (std::vector<int>{1, 2}));
}

TEST(ThreadEventLoopTest, StopRunsWhatIsAlreadyQueued) {
  ThreadEventLoop loop;
  std::atomic<int> ran = 0;
  for (int i = 0; i < 10; ++i) loop.Post([&] { ++ran; });
  loop.Start();
  loop.Stop();
  EXPECT_EQ(ran.load(), 10);
}

TEST(ManualEventLoopTest, NothingRunsUntilTheTestSaysSo) {
  testing::ManualEventLoop loop;
  int ran = 0;
  loop.Post([&] { ++ran; });
  EXPECT_EQ(ran, 0);
  EXPECT_EQ(loop.RunUntilIdle(), 1);
  EXPECT_EQ(ran, 1);
}

TEST(ManualEventLoopTest, TimersFireOnlyWhenTheClockReachesThem) {
  testing::ManualEventLoop loop;
  const absl::Time start = loop.clock().Now();
  std::vector<absl::Duration> fired_at;
  loop.PostAfter(absl::Seconds(5), [&] { fired_at.push_back(loop.clock().Now() - start); });
  loop.PostAfter(absl::Seconds(2), [&] {
    fired_at.push_back(loop.clock().Now() - start);
    // A timer set from a timer fires in the same advance if due.
    loop.PostAfter(absl::Seconds(1), [&] { fired_at.push_back(loop.clock().Now() - start); });
  });
  loop.AdvanceTime(absl::Seconds(1));
  EXPECT_TRUE(fired_at.empty());
  loop.AdvanceTime(absl::Seconds(10));
  EXPECT_EQ(fired_at,
            (std::vector<absl::Duration>{absl::Seconds(2), absl::Seconds(3), absl::Seconds(5)}));
}

}  // namespace
}  // namespace rz
