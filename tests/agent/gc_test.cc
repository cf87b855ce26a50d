#include "agent/gc.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "testing/manual_event_loop.h"

namespace rz::agent {
namespace {

constexpr absl::Duration kDelay = absl::Hours(10);
constexpr absl::Duration kInterval = absl::Minutes(1);

class SandboxGcTest : public ::testing::Test {
 protected:
  SandboxGcTest() {
    std::string pattern = (std::filesystem::temp_directory_path() / "rz-gc-test.XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
    }
    dir_ = pattern;
    root_ = dir_ + "/sandboxes";
    std::filesystem::create_directories(root_);
  }

  ~SandboxGcTest() override {
    gc_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // A sandbox with a file and a subdirectory in it.
  std::string MakeSandbox(const std::string& relative) {
    const std::string path = absl::StrCat(root_, "/", relative);
    std::filesystem::create_directories(path + "/sub");
    std::ofstream(path + "/stdout") << "output";
    std::ofstream(path + "/sub/file") << "data";
    return path;
  }

  static bool Exists(const std::string& path) {
    std::error_code ignored;
    return std::filesystem::exists(std::filesystem::symlink_status(path, ignored));
  }

  // Runs blocking work inline; its result is posted to the loop like in production.
  SandboxGc& MakeGc(std::function<absl::StatusOr<double>()> disk_usage = [] { return 0.0; }) {
    gc_ = std::make_unique<SandboxGc>(SandboxGcOptions{.root = root_,
                                                       .gc_delay = kDelay,
                                                       .disk_watermark = 0.9,
                                                       .disk_check_interval = kInterval,
                                                       .disk_usage = std::move(disk_usage)},
                                      loop_, [this](absl::AnyInvocable<void() &&> work) {
                                        ++blocking_calls_;
                                        std::move(work)();
                                      });
    return *gc_;
  }

  absl::Time Now() { return loop_.clock().Now(); }

  testing::ManualEventLoop loop_;
  std::string dir_;
  std::string root_;
  int blocking_calls_ = 0;
  std::unique_ptr<SandboxGc> gc_;
};

TEST_F(SandboxGcTest, SandboxIsRemovedOnlyAfterTheGcDelay) {
  SandboxGc& gc = MakeGc();
  const std::string sandbox = MakeSandbox("fw/task1");

  gc.Schedule(sandbox, Now());
  loop_.AdvanceTime(kDelay - absl::Seconds(1));
  EXPECT_TRUE(Exists(sandbox));
  EXPECT_EQ(gc.pending(), 1);

  loop_.AdvanceTime(absl::Seconds(1));
  EXPECT_FALSE(Exists(sandbox));
  EXPECT_TRUE(Exists(root_ + "/fw"));
  EXPECT_EQ(gc.pending(), 0);
}

TEST_F(SandboxGcTest, DelayCountsFromTheFinishTime) {
  SandboxGc& gc = MakeGc();
  const std::string old_sandbox = MakeSandbox("fw/old");
  const std::string new_sandbox = MakeSandbox("fw/new");

  gc.Schedule(old_sandbox, Now() - kDelay - absl::Seconds(1));  // Overdue: goes at once.
  gc.Schedule(new_sandbox, Now() - absl::Hours(1));
  loop_.RunUntilIdle();
  EXPECT_FALSE(Exists(old_sandbox));
  EXPECT_TRUE(Exists(new_sandbox));

  loop_.AdvanceTime(kDelay - absl::Hours(1));
  EXPECT_FALSE(Exists(new_sandbox));
}

TEST_F(SandboxGcTest, UnscheduleKeepsTheSandbox) {
  SandboxGc& gc = MakeGc();
  const std::string sandbox = MakeSandbox("fw/task1");
  gc.Schedule(sandbox, Now());

  EXPECT_TRUE(gc.Unschedule(sandbox + "/"));  // The same path, spelled differently.
  EXPECT_FALSE(gc.Unschedule(sandbox));
  loop_.AdvanceTime(2 * kDelay);

  EXPECT_TRUE(Exists(sandbox));
  EXPECT_EQ(gc.pending(), 0);
  EXPECT_EQ(blocking_calls_, 0);
}

TEST_F(SandboxGcTest, SchedulingAgainReplacesTheTime) {
  SandboxGc& gc = MakeGc();
  const std::string sandbox = MakeSandbox("fw/task1");
  gc.Schedule(sandbox, Now());
  loop_.AdvanceTime(kDelay / 2);
  gc.Schedule(sandbox, Now());

  loop_.AdvanceTime(kDelay / 2);
  EXPECT_TRUE(Exists(sandbox));
  EXPECT_EQ(gc.pending(), 1);
  loop_.AdvanceTime(kDelay / 2);
  EXPECT_FALSE(Exists(sandbox));
}

TEST_F(SandboxGcTest, PathAlreadyGoneIsFine) {
  SandboxGc& gc = MakeGc();
  gc.Schedule(root_ + "/fw/never-created", Now());

  loop_.AdvanceTime(kDelay);

  EXPECT_EQ(gc.pending(), 0);
  EXPECT_EQ(blocking_calls_, 1);
}

TEST_F(SandboxGcTest, DiskPressureRemovesTheOldestAtOnceUntilBelowTheWatermark) {
  const std::string oldest = MakeSandbox("fw/oldest");
  const std::string middle = MakeSandbox("fw/middle");
  const std::string newest = MakeSandbox("fw/newest");
  // Each sandbox "uses" 5% of the disk on top of a 80% base: 95% with all three.
  std::vector<std::string> removal_order;
  SandboxGc& gc = MakeGc([&] {
    int percent = 80;
    for (const std::string& path : {oldest, middle, newest}) {
      if (Exists(path)) {
        percent += 5;
      }
    }
    return percent / 100.0;
  });
  gc.Schedule(middle, Now() - absl::Hours(2));
  // Just finished: younger than even the shrunken delay at 85% (10h * (1 - 0.85 / 0.9) = 33m).
  gc.Schedule(newest, Now());
  gc.Schedule(oldest, Now() - absl::Hours(3));

  gc.Start();
  loop_.RunUntilIdle();

  // 0.95 → remove oldest → 0.90 (still at the watermark) → remove middle → 0.85: stop.
  EXPECT_FALSE(Exists(oldest));
  EXPECT_FALSE(Exists(middle));
  EXPECT_TRUE(Exists(newest));
  EXPECT_EQ(gc.pending(), 1);
}

TEST_F(SandboxGcTest, DiskPressureRemovesOldestFirst) {
  const std::string older = MakeSandbox("fw/older");
  const std::string newer = MakeSandbox("fw/newer");
  // Removing either sandbox relieves the pressure.
  SandboxGc& gc = MakeGc([&] { return Exists(older) && Exists(newer) ? 0.95 : 0.5; });
  gc.Schedule(newer, Now() - absl::Hours(1));
  gc.Schedule(older, Now() - absl::Hours(2));

  gc.Start();
  loop_.RunUntilIdle();

  EXPECT_FALSE(Exists(older));
  EXPECT_TRUE(Exists(newer));
  EXPECT_EQ(gc.pending(), 1);
}

TEST_F(SandboxGcTest, PressureWithNothingToRemoveWaitsForTheNextCheck) {
  SandboxGc& gc = MakeGc([] { return 0.99; });
  gc.Start();
  loop_.RunUntilIdle();
  EXPECT_EQ(blocking_calls_, 1);

  loop_.AdvanceTime(kInterval);
  EXPECT_EQ(blocking_calls_, 2);
  EXPECT_EQ(gc.pending(), 0);
}

TEST_F(SandboxGcTest, DelayShrinksWithDiskUsage) {
  EXPECT_EQ(SandboxGc::EffectiveDelay(kDelay, 0.0, 0.9), kDelay);
  EXPECT_NEAR(absl::ToDoubleSeconds(SandboxGc::EffectiveDelay(kDelay, 0.45, 0.9)),
              absl::ToDoubleSeconds(kDelay / 2), 1e-3);
  EXPECT_EQ(SandboxGc::EffectiveDelay(kDelay, 0.9, 0.9), absl::ZeroDuration());
  EXPECT_EQ(SandboxGc::EffectiveDelay(kDelay, 0.99, 0.9), absl::ZeroDuration());

  // At half the watermark a sandbox goes after half the delay, at the next disk check.
  const std::string young = MakeSandbox("fw/young");
  const std::string old = MakeSandbox("fw/old");
  SandboxGc& gc = MakeGc([] { return 0.45; });
  gc.Schedule(old, Now() - kDelay / 2 + kInterval);
  gc.Schedule(young, Now() - kDelay / 2 + 2 * kInterval + absl::Seconds(1));
  gc.Start();
  loop_.RunUntilIdle();
  EXPECT_TRUE(Exists(old));

  loop_.AdvanceTime(kInterval);
  EXPECT_FALSE(Exists(old));
  EXPECT_TRUE(Exists(young));
  loop_.AdvanceTime(kInterval);
  EXPECT_TRUE(Exists(young));
  loop_.AdvanceTime(kInterval);
  EXPECT_FALSE(Exists(young));
}

TEST_F(SandboxGcTest, FailingDiskProbeIsNotFatal) {
  const std::string sandbox = MakeSandbox("fw/task");
  SandboxGc& gc = MakeGc([] { return absl::UnavailableError("statvfs broke"); });
  gc.Schedule(sandbox, Now());
  gc.Start();

  loop_.AdvanceTime(kDelay);

  EXPECT_FALSE(Exists(sandbox));
}

TEST_F(SandboxGcTest, PathsOutsideTheRootAreRefused) {
  SandboxGc& gc = MakeGc([] { return 0.99; });
  const std::string outside = dir_ + "/outside";
  std::filesystem::create_directories(outside);
  for (const std::string& path : {outside, root_, root_ + "/..", root_ + "/fw/../../outside",
                                  std::string("relative/path"), dir_ + "/sandboxes-sibling"}) {
    gc.Schedule(path, Now() - 2 * kDelay);
  }
  gc.Start();
  loop_.AdvanceTime(10 * kInterval);

  EXPECT_EQ(gc.pending(), 0);
  EXPECT_TRUE(Exists(outside));
  EXPECT_TRUE(Exists(root_));
}

TEST_F(SandboxGcTest, SymlinkedParentLeadingOutsideIsRefusedAtRemoval) {
  SandboxGc& gc = MakeGc();
  const std::string outside = dir_ + "/outside";
  std::filesystem::create_directories(outside + "/victim");
  std::filesystem::create_symlink(outside, root_ + "/fw");

  gc.Schedule(root_ + "/fw/victim", Now());
  loop_.AdvanceTime(kDelay);

  EXPECT_TRUE(Exists(outside + "/victim"));
  EXPECT_EQ(gc.pending(), 0);
}

TEST_F(SandboxGcTest, SandboxThatIsASymlinkLosesOnlyTheLink) {
  SandboxGc& gc = MakeGc();
  const std::string outside = dir_ + "/outside";
  std::filesystem::create_directories(outside + "/keep");
  std::filesystem::create_directories(root_ + "/fw");
  std::filesystem::create_symlink(outside, root_ + "/fw/task");

  gc.Schedule(root_ + "/fw/task", Now());
  loop_.AdvanceTime(kDelay);

  EXPECT_FALSE(Exists(root_ + "/fw/task"));
  EXPECT_TRUE(Exists(outside + "/keep"));
}

TEST_F(SandboxGcTest, ResultsAfterDestructionAreDropped) {
  MakeGc();
  const std::string sandbox = MakeSandbox("fw/task");
  gc_->Schedule(sandbox, Now());
  gc_.reset();

  loop_.AdvanceTime(2 * kDelay);

  EXPECT_TRUE(Exists(sandbox));
  EXPECT_EQ(loop_.pending_timers(), 0);
}

}  // namespace
}  // namespace rz::agent
