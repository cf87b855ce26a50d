#include "common/worker_pool.h"

#include <atomic>

#include "absl/synchronization/blocking_counter.h"
#include "gtest/gtest.h"

namespace rz {
namespace {

TEST(WorkerPoolTest, RunsEverySubmittedTask) {
  std::atomic<int> ran = 0;
  absl::BlockingCounter done(50);
  {
    WorkerPool pool(3);
    for (int i = 0; i < 50; ++i) {
      pool.Submit([&] {
        ++ran;
        done.DecrementCount();
      });
    }
    done.Wait();
  }
  EXPECT_EQ(ran.load(), 50);
}

TEST(WorkerPoolTest, DestructionDrainsTheQueue) {
  std::atomic<int> ran = 0;
  {
    WorkerPool pool(1);
    for (int i = 0; i < 20; ++i) pool.Submit([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 20);
}

}  // namespace
}  // namespace rz
