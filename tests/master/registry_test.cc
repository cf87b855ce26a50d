// Registry: the typed, asynchronous layer over a RegistryStore. The master loop and the worker
// are ManualEventLoops (the worker a separate one, so a test decides when the store runs), except
// where a real worker thread shows that writes held in the store block nothing on the loop.
#include "master/registry/registry.h"

#include <string>
#include <vector>

#include "common/thread_event_loop.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fake_registry_store.h"
#include "testing/manual_event_loop.h"

namespace rz::master {
namespace {

using ::rz::testing::ManualEventLoop;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

v1::RegistryFramework Framework(const std::string& id, const std::string& name = "f") {
  v1::RegistryFramework framework;
  framework.mutable_info()->set_id(id);
  framework.mutable_info()->set_name(name);
  return framework;
}

v1::WeightInfo Weight(const std::string& role, double weight) {
  v1::WeightInfo info;
  info.set_role(role);
  info.set_weight(weight);
  return info;
}

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : registry_(loop_, worker_, store_) { EXPECT_TRUE(registry_.Recover().ok()); }

  // Queues a write whose completion appends its status (as "ok" or the message) to `results_`.
  void Write(RegistryBatch batch, const std::string& name) {
    registry_.Write(std::move(batch), [this, name](absl::Status status) {
      results_.push_back(name + ":" + (status.ok() ? "ok" : std::string(status.message())));
    });
  }
  void RunAll() {
    worker_.RunUntilIdle();
    loop_.RunUntilIdle();
  }

  ManualEventLoop loop_;
  ManualEventLoop worker_;
  FakeRegistryStore store_;
  Registry registry_;
  std::vector<std::string> results_;
};

TEST_F(RegistryTest, CompletionsRunOnTheLoopInOrderOnlyAfterTheStoreWrote) {
  RegistryBatch first;
  first.PutFramework(Framework("f1"));
  Write(std::move(first), "first");
  RegistryBatch second;
  second.PutWeight(Weight("dev", 2));
  Write(std::move(second), "second");
  EXPECT_EQ(registry_.pending(), 2u);
  loop_.RunUntilIdle();
  EXPECT_THAT(results_, IsEmpty());  // The worker has not run: nothing is durable yet.
  EXPECT_FALSE(store_.Peek("framework/f1").has_value());
  worker_.RunUntilIdle();
  EXPECT_TRUE(store_.Peek("framework/f1").has_value());
  EXPECT_THAT(results_, IsEmpty());  // Completions wait for the loop.
  loop_.RunUntilIdle();
  EXPECT_THAT(results_, ElementsAre("first:ok", "second:ok"));
  EXPECT_EQ(registry_.pending(), 0u);
}

TEST_F(RegistryTest, WritesQueuedWhileTheStoreIsBusyAreCommittedTogether) {
  for (int i = 0; i < 5; ++i) {
    RegistryBatch batch;
    batch.PutFramework(Framework("f" + std::to_string(i)));
    Write(std::move(batch), std::to_string(i));
  }
  // The same framework twice: the later record wins and expects the version before both.
  RegistryBatch again;
  again.PutFramework(Framework("f0", "renamed"));
  Write(std::move(again), "again");
  RunAll();
  EXPECT_EQ(store_.applies(), 1);
  EXPECT_THAT(results_, ElementsAre("0:ok", "1:ok", "2:ok", "3:ok", "4:ok", "again:ok"));
  v1::RegistryFramework stored;
  ASSERT_TRUE(stored.ParseFromString(store_.Peek("framework/f0")->value));
  EXPECT_EQ(stored.info().name(), "renamed");
  EXPECT_EQ(store_.Peek("framework/f0")->version, 1u);

  // A later write of a key expects the version stored by the group.
  RegistryBatch update;
  update.PutFramework(Framework("f0", "third"));
  Write(std::move(update), "update");
  RunAll();
  EXPECT_EQ(store_.applies(), 2);
  EXPECT_EQ(results_.back(), "update:ok");
  EXPECT_EQ(store_.Peek("framework/f0")->version, 2u);
}

TEST_F(RegistryTest, AGroupCommitStaysUnderHalfAMegabyte) {
  // 40 frameworks of 30 KB each: 1.2 MB queued, more than ZooKeeper takes in one request.
  const std::string big(30 * 1024, 'x');
  for (int i = 0; i < 40; ++i) {
    RegistryBatch batch;
    batch.PutFramework(Framework("f" + std::to_string(i), big));
    Write(std::move(batch), std::to_string(i));
  }
  RunAll();
  EXPECT_EQ(store_.applies(), 3);  // 17 + 17 + 6 batches of about 30 KB.
  ASSERT_EQ(results_.size(), 40u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(results_[i], std::to_string(i) + ":ok");
    EXPECT_TRUE(store_.Peek("framework/f" + std::to_string(i)).has_value());
  }
}

TEST_F(RegistryTest, AFailedWriteReportsItsErrorAndStoresNothing) {
  RegistryBatch before;
  before.PutWeight(Weight("dev", 1));
  Write(std::move(before), "before");
  RunAll();
  store_.FailApplies(absl::UnavailableError("disk on fire"));
  RegistryBatch failing;
  failing.PutWeight(Weight("dev", 5));
  failing.PutFramework(Framework("f1"));
  Write(std::move(failing), "failing");
  RunAll();
  ASSERT_EQ(results_.size(), 2u);
  EXPECT_THAT(results_[1], HasSubstr("disk on fire"));
  EXPECT_THAT(results_[1], HasSubstr("weight/dev"));
  EXPECT_THAT(results_[1], HasSubstr("framework/f1"));
  v1::WeightInfo stored;
  ASSERT_TRUE(stored.ParseFromString(store_.Peek("weight/dev")->value));
  EXPECT_EQ(stored.weight(), 1);
  EXPECT_FALSE(store_.Peek("framework/f1").has_value());
  // The registry still works, and expects the version that is really stored.
  RegistryBatch after;
  after.PutWeight(Weight("dev", 3));
  Write(std::move(after), "after");
  RunAll();
  EXPECT_EQ(results_.back(), "after:ok");
  EXPECT_EQ(store_.Peek("weight/dev")->version, 2u);
}

TEST_F(RegistryTest, ARecordChangedBehindItsBackFailsTheWriteAsAborted) {
  RegistryBatch mine;
  mine.PutFramework(Framework("f1"));
  Write(std::move(mine), "mine");
  RunAll();
  // Another writer (a new leader) updates the record.
  ASSERT_TRUE(store_.Apply({RegistryWrite::Put("framework/f1", "theirs")}).ok());
  RegistryBatch stale;
  stale.PutFramework(Framework("f1", "stale"));
  Write(std::move(stale), "stale");
  RunAll();
  EXPECT_THAT(results_.back(), HasSubstr("framework/f1"));
  EXPECT_EQ(store_.Peek("framework/f1")->value, "theirs");
}

TEST_F(RegistryTest, RecoverReadsEveryKindOfRecord) {
  RegistryBatch batch;
  batch.PutFramework(Framework("f1"));
  v1::RegistryAgent agent;
  agent.mutable_info()->set_id("a1");
  agent.set_state(v1::RegistryAgent::UNREACHABLE);
  batch.PutAgent(agent);
  batch.PutWeight(Weight("dev", 3));
  v1::QuotaConfig quota;
  quota.set_role("dev");
  quota.add_limits()->set_name("cpus");
  batch.PutQuota(quota);
  v1::RegistryMaintenance maintenance;
  maintenance.add_down_machines()->set_hostname("h1");
  batch.PutMaintenance(maintenance);
  Write(std::move(batch), "all");
  RunAll();

  ManualEventLoop loop;
  Registry restarted(loop, loop, store_);
  absl::StatusOr<RegistryState> state = restarted.Recover();
  ASSERT_TRUE(state.ok()) << state.status();
  ASSERT_EQ(state->frameworks.size(), 1u);
  EXPECT_EQ(state->frameworks[0].info().id(), "f1");
  ASSERT_EQ(state->agents.size(), 1u);
  EXPECT_EQ(state->agents[0].state(), v1::RegistryAgent::UNREACHABLE);
  ASSERT_EQ(state->weights.size(), 1u);
  EXPECT_EQ(state->weights[0].weight(), 3);
  ASSERT_EQ(state->quotas.size(), 1u);
  EXPECT_EQ(state->maintenance.down_machines(0).hostname(), "h1");

  // A quota without guarantees and limits deletes the record.
  RegistryBatch clear;
  v1::QuotaConfig none;
  none.set_role("dev");
  clear.PutQuota(none);
  bool done = false;
  restarted.Write(std::move(clear), [&](absl::Status status) { done = status.ok(); });
  loop.RunUntilIdle();
  EXPECT_TRUE(done);
  EXPECT_FALSE(store_.Peek("quota/dev").has_value());
}

TEST_F(RegistryTest, RecoverReportsAnUnreadableRecordAsDataLoss) {
  ASSERT_TRUE(store_.Apply({RegistryWrite::Put("framework/f1", "\xff\xff garbage")}).ok());
  ManualEventLoop loop;
  Registry restarted(loop, loop, store_);
  absl::StatusOr<RegistryState> state = restarted.Recover();
  ASSERT_EQ(state.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(state.status().message(), HasSubstr("framework/f1"));

  // A record filed under the wrong key is as bad.
  FakeRegistryStore other;
  v1::RegistryFramework framework = Framework("f2");
  ASSERT_TRUE(
      other.Apply({RegistryWrite::Put("framework/f3", framework.SerializeAsString())}).ok());
  Registry misfiled(loop, loop, other);
  EXPECT_EQ(misfiled.Recover().status().code(), absl::StatusCode::kDataLoss);
}

TEST(RegistryThreadTest, AWriteHeldInTheStoreLetsTheLoopRunAndLaterWritesGroup) {
  FakeRegistryStore store;
  ManualEventLoop loop;
  ThreadEventLoop worker;
  worker.Start();
  {
    Registry registry(loop, worker, store);
    ASSERT_TRUE(registry.Recover().ok());
    store.Hold();
    std::vector<std::string> done;
    for (int i = 0; i < 3; ++i) {
      RegistryBatch batch;
      batch.PutWeight(Weight("r" + std::to_string(i), 1));
      registry.Write(std::move(batch), [&done, i](absl::Status status) {
        done.push_back(std::to_string(i) + (status.ok() ? ":ok" : ":error"));
      });
      if (i == 0) {
        store.AwaitAppliesStarted(1);  // The first commit is in the store, held.
      }
    }
    loop.RunUntilIdle();
    EXPECT_THAT(done, IsEmpty());
    store.Release();
    worker.Stop();  // Runs what is queued: the held commit, then one commit of the other two.
    loop.RunUntilIdle();
    EXPECT_THAT(done, ElementsAre("0:ok", "1:ok", "2:ok"));
    EXPECT_EQ(store.applies(), 2);
  }
}

}  // namespace
}  // namespace rz::master
