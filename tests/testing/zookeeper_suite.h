// ZooKeeperSuiteTest: a GoogleTest fixture whose suite shares one real ZooKeeper server (started
// once per suite, about a second) and whose tests each take a fresh root path (NextPath), so
// they do not see each other's znodes.
//
// Thread rule: gtest's main thread only (ZooKeeperEnsemble's servers die with the thread that
// started them; SetUpTestSuite runs on the main thread).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "testing/zookeeper_ensemble.h"

namespace rz::testing {

class ZooKeeperSuiteTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<ZooKeeperEnsemble>> started = ZooKeeperEnsemble::Start(1);
    ASSERT_TRUE(started.ok()) << started.status();
    ensemble_ = started->release();
  }
  static void TearDownTestSuite() {
    delete ensemble_;
    ensemble_ = nullptr;
  }
  // Derived SetUp()s call this first and return if HasFatalFailure().
  void SetUp() override {
    ASSERT_NE(ensemble_, nullptr) << "no ZooKeeper server (see the suite's setup failure)";
  }

  // "/<prefix>-<n>": a path no other test of this process used.
  static std::string NextPath(const std::string& prefix) {
    static std::atomic<int> next{0};
    return absl::StrCat("/", prefix, "-", next++);
  }

  static inline ZooKeeperEnsemble* ensemble_ = nullptr;
};

}  // namespace rz::testing
