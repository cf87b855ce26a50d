#include "agent/checkpoint_store.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "leveldb/env.h"

namespace rz::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

#define ASSERT_OK(expr)                         \
  do {                                          \
    const absl::Status rz_status_ = (expr);     \
    ASSERT_TRUE(rz_status_.ok()) << rz_status_; \
  } while (false)

// A fresh directory under /tmp, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/rz-checkpoint-test-XXXXXX";
    CHECK(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A LevelDB environment whose files fail to sync while `fail_syncs` is set.
class FailingEnv : public leveldb::EnvWrapper {
 public:
  FailingEnv() : leveldb::EnvWrapper(leveldb::Env::Default()) {}

  std::atomic<bool> fail_syncs{false};

  leveldb::Status NewWritableFile(const std::string& name,
                                  leveldb::WritableFile** result) override {
    return Wrap(target()->NewWritableFile(name, result), result);
  }
  leveldb::Status NewAppendableFile(const std::string& name,
                                    leveldb::WritableFile** result) override {
    return Wrap(target()->NewAppendableFile(name, result), result);
  }

 private:
  class File : public leveldb::WritableFile {
   public:
    File(leveldb::WritableFile* file, std::atomic<bool>& fail) : file_(file), fail_(fail) {}
    leveldb::Status Append(const leveldb::Slice& data) override { return file_->Append(data); }
    leveldb::Status Close() override { return file_->Close(); }
    leveldb::Status Flush() override { return file_->Flush(); }
    leveldb::Status Sync() override {
      if (fail_) {
        return leveldb::Status::IOError("injected sync failure");
      }
      return file_->Sync();
    }

   private:
    std::unique_ptr<leveldb::WritableFile> file_;
    std::atomic<bool>& fail_;
  };

  leveldb::Status Wrap(leveldb::Status status, leveldb::WritableFile** result) {
    if (status.ok()) {
      *result = new File(*result, fail_syncs);
    }
    return status;
  }
};

std::unique_ptr<CheckpointStore> OpenOrDie(const std::string& dir,
                                           CheckpointStoreOptions options = {}) {
  absl::StatusOr<std::unique_ptr<CheckpointStore>> store = CheckpointStore::Open(dir, options);
  CHECK(store.ok()) << store.status();
  return *std::move(store);
}

// Writes `batch` and waits for its result.
absl::Status WriteAndWait(CheckpointStore& store, CheckpointBatch batch) {
  absl::Status result = absl::InternalError("done never ran");
  absl::Notification done;
  store.Write(std::move(batch), [&](absl::Status status) {
    result = std::move(status);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
}

Recovered LoadOrDie(CheckpointStore& store) {
  absl::StatusOr<Recovered> recovered = store.Load();
  CHECK(recovered.ok()) << recovered.status();
  return *std::move(recovered);
}

rz::v1::FrameworkInfo Framework(const std::string& id, const std::string& name = "web") {
  rz::v1::FrameworkInfo framework;
  framework.set_id(id);
  framework.set_name(name);
  return framework;
}

rz::v1::TaskCheckpoint Task(const std::string& framework_id, const std::string& task_id) {
  rz::v1::TaskCheckpoint checkpoint;
  checkpoint.mutable_task()->set_framework_id(framework_id);
  checkpoint.mutable_task()->set_task_id(task_id);
  checkpoint.mutable_task()->set_name("name-" + task_id);
  checkpoint.mutable_info()->set_task_id(task_id);
  checkpoint.set_container_id("c-" + task_id);
  return checkpoint;
}

rz::v1::TaskStatus Status(const std::string& framework_id, const std::string& task_id,
                          const std::string& message) {
  rz::v1::TaskStatus status;
  status.set_framework_id(framework_id);
  status.set_task_id(task_id);
  status.set_message(message);
  return status;
}

using TaskKey = std::pair<FrameworkId, TaskId>;

std::vector<std::pair<uint64_t, std::string>> Messages(const Recovered& recovered,
                                                       const TaskKey& key) {
  std::vector<std::pair<uint64_t, std::string>> out;
  auto it = recovered.tasks.find(key);
  if (it == recovered.tasks.end()) {
    return out;
  }
  for (const auto& [sequence, status] : it->second.pending_updates) {
    out.emplace_back(sequence, status.message());
  }
  return out;
}

// Holds the writer thread inside a `done` callback so that batches written meanwhile queue up
// and are committed together once released.
class WriterHold {
 public:
  explicit WriterHold(CheckpointStore& store) {
    store.Write(CheckpointBatch(), [this](const absl::Status& /*status*/) {
      entered_.Notify();
      release_.WaitForNotification();
    });
    entered_.WaitForNotification();
  }
  void Release() { release_.Notify(); }

 private:
  absl::Notification entered_;
  absl::Notification release_;
};

TEST(CheckpointStoreTest, EveryRecordTypeSurvivesReopen) {
  TempDir dir;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    ASSERT_THAT(LoadOrDie(*store).skipped, IsEmpty());
    CheckpointBatch batch;
    rz::v1::AgentCheckpoint agent;
    agent.mutable_info()->set_id("agent-1");
    batch.PutAgent(agent);
    batch.PutFramework(Framework("f1"));
    batch.PutFramework(Framework("f2", "batch"));
    batch.PutTask(Task("f1", "t1"));
    batch.PutTask(Task("f2", "t1"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 7, Status("f1", "t1", "running"));
    EXPECT_FALSE(batch.empty());
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);

  EXPECT_THAT(recovered.skipped, IsEmpty());
  ASSERT_TRUE(recovered.agent.has_value());
  EXPECT_EQ(recovered.agent->info().id(), "agent-1");
  ASSERT_THAT(recovered.frameworks, SizeIs(2));
  EXPECT_EQ(recovered.frameworks.at(FrameworkId("f2")).name(), "batch");
  ASSERT_THAT(recovered.tasks, SizeIs(2));
  const Recovered::RecoveredTask& task = recovered.tasks.at({FrameworkId("f1"), TaskId("t1")});
  EXPECT_EQ(task.checkpoint.task().name(), "name-t1");
  EXPECT_EQ(task.checkpoint.container_id(), "c-t1");
  EXPECT_THAT(Messages(recovered, {FrameworkId("f1"), TaskId("t1")}),
              ElementsAre(std::pair<uint64_t, std::string>(7, "running")));
  EXPECT_THAT(recovered.tasks.at({FrameworkId("f2"), TaskId("t1")}).pending_updates, IsEmpty());
  EXPECT_EQ(recovered.max_sequence, 7);
}

TEST(CheckpointStoreTest, LaterPutsReplaceAndDeleteFrameworkRemovesOnlyTheFramework) {
  TempDir dir;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch first;
    first.PutFramework(Framework("f1", "old"));
    first.PutFramework(Framework("f2"));
    first.PutTask(Task("f2", "t1"));
    ASSERT_OK(WriteAndWait(*store, std::move(first)));
    CheckpointBatch second;
    second.PutFramework(Framework("f1", "new"));
    second.DeleteFramework(FrameworkId("f2"));
    ASSERT_OK(WriteAndWait(*store, std::move(second)));
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);
  ASSERT_THAT(recovered.frameworks, SizeIs(1));
  EXPECT_EQ(recovered.frameworks.at(FrameworkId("f1")).name(), "new");
  EXPECT_THAT(recovered.tasks, SizeIs(1));
}

TEST(CheckpointStoreTest, UpdatesLoadInNumericSequenceOrder) {
  TempDir dir;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch batch;
    batch.PutTask(Task("f1", "t1"));
    // As text "10" < "9"; padding makes LevelDB's order numeric.
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 10, Status("f1", "t1", "ten"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 9, Status("f1", "t1", "nine"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 100, Status("f1", "t1", "hundred"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), UINT64_MAX, Status("f1", "t1", "max"));
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);
  using P = std::pair<uint64_t, std::string>;
  EXPECT_THAT(Messages(recovered, {FrameworkId("f1"), TaskId("t1")}),
              ElementsAre(P(9, "nine"), P(10, "ten"), P(100, "hundred"), P(UINT64_MAX, "max")));
  EXPECT_EQ(recovered.max_sequence, UINT64_MAX);
}

TEST(CheckpointStoreTest, RemoveUpdateDeletesOnlyThatUpdate) {
  TempDir dir;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch batch;
    batch.PutTask(Task("f1", "t1"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 1, Status("f1", "t1", "one"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 2, Status("f1", "t1", "two"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 3, Status("f1", "t1", "three"));
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
    CheckpointBatch ack;
    ack.RemoveUpdate(FrameworkId("f1"), TaskId("t1"), 1);
    ack.RemoveUpdate(FrameworkId("f1"), TaskId("t1"), 3);
    ASSERT_OK(WriteAndWait(*store, std::move(ack)));
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);
  EXPECT_THAT(Messages(recovered, {FrameworkId("f1"), TaskId("t1")}),
              ElementsAre(std::pair<uint64_t, std::string>(2, "two")));
  EXPECT_EQ(recovered.max_sequence, 2);
}

TEST(CheckpointStoreTest, DeleteTaskRemovesItsUpdatesIncludingOnesQueuedBeforeIt) {
  TempDir dir;
  const TaskId t10("t10");  // Its keys share the text prefix "update/f1/t1".
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch batch;
    batch.PutTask(Task("f1", "t1"));
    batch.PutTask(Task("f1", "t10"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 1, Status("f1", "t1", "committed"));
    batch.AppendUpdate(FrameworkId("f1"), t10, 2, Status("f1", "t10", "kept"));
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));

    // Batches committed in one group: the delete must see the update queued before it.
    WriterHold hold(*store);
    CheckpointBatch append;
    append.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 3, Status("f1", "t1", "same group"));
    std::vector<absl::Status> results;
    store->Write(std::move(append), [&](const absl::Status& s) { results.push_back(s); });
    CheckpointBatch remove;
    remove.DeleteTask(FrameworkId("f1"), TaskId("t1"));
    store->Write(std::move(remove), [&](const absl::Status& s) { results.push_back(s); });
    hold.Release();
    store->Flush();
    ASSERT_THAT(results, SizeIs(2));
    ASSERT_OK(results[0]);
    ASSERT_OK(results[1]);
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);
  EXPECT_THAT(recovered.skipped, IsEmpty());  // No orphaned update of t1 was left behind.
  EXPECT_FALSE(recovered.tasks.contains({FrameworkId("f1"), TaskId("t1")}));
  EXPECT_THAT(Messages(recovered, {FrameworkId("f1"), t10}),
              ElementsAre(std::pair<uint64_t, std::string>(2, "kept")));
}

TEST(CheckpointStoreTest, ThousandBackToBackWritesCompleteInOrderAndAreDurable) {
  TempDir dir;
  constexpr int kWrites = 1000;
  std::vector<int> completed;
  std::vector<absl::Status> statuses;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch task;
    task.PutTask(Task("f1", "t1"));
    ASSERT_OK(WriteAndWait(*store, std::move(task)));
    for (int i = 0; i < kWrites; ++i) {
      CheckpointBatch batch;
      batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), i + 1,
                         Status("f1", "t1", absl::StrCat("u", i)));
      // `done` runs on the writer thread, one at a time, so no lock is needed here.
      store->Write(std::move(batch), [&completed, &statuses, i](absl::Status status) {
        completed.push_back(i);
        statuses.push_back(std::move(status));
      });
    }
    store->Flush();
    std::cout << "1000 back-to-back writes took " << store->stats().commits - 1
              << " LevelDB commits\n";
  }
  ASSERT_THAT(completed, SizeIs(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_EQ(completed[i], i);
    ASSERT_OK(statuses[i]);
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);
  const auto& updates = recovered.tasks.at({FrameworkId("f1"), TaskId("t1")}).pending_updates;
  ASSERT_THAT(updates, SizeIs(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_EQ(updates[i].first, static_cast<uint64_t>(i + 1));
    ASSERT_EQ(updates[i].second.message(), absl::StrCat("u", i));
  }
}

TEST(CheckpointStoreTest, BatchesQueuedWhileTheWriterIsBusyCommitAsOneWrite) {
  TempDir dir;
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  WriterHold hold(*store);
  const uint64_t commits_before = store->stats().commits;
  std::vector<int> order;
  for (int i = 0; i < 50; ++i) {
    CheckpointBatch batch;
    batch.PutFramework(Framework(absl::StrCat("f", i)));
    store->Write(std::move(batch), [&order, i](const absl::Status& status) {
      EXPECT_TRUE(status.ok()) << status;
      order.push_back(i);
    });
  }
  hold.Release();
  store->Flush();
  EXPECT_EQ(store->stats().commits, commits_before + 1);
  ASSERT_THAT(order, SizeIs(50));
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  EXPECT_THAT(LoadOrDie(*store).frameworks, SizeIs(50));
}

TEST(CheckpointStoreTest, FailedWriteFailsEveryBatchOfItsGroupNamingTheStore) {
  TempDir dir;
  FailingEnv env;
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path(), {.sync = true, .env = &env});
  WriterHold hold(*store);
  env.fail_syncs = true;
  std::vector<absl::Status> results;
  auto record = [&results](absl::Status status) { results.push_back(std::move(status)); };
  CheckpointBatch a;
  a.PutFramework(Framework("f1"));
  store->Write(std::move(a), record);
  CheckpointBatch invalid;
  invalid.PutFramework(Framework("bad/id"));
  store->Write(std::move(invalid), record);
  CheckpointBatch b;
  b.PutFramework(Framework("f2"));
  store->Write(std::move(b), record);
  hold.Release();
  store->Flush();

  ASSERT_THAT(results, SizeIs(3));
  EXPECT_EQ(results[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(results[0].message(), HasSubstr(dir.path()));
  EXPECT_THAT(results[0].message(), HasSubstr("injected sync failure"));
  EXPECT_EQ(results[1].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(results[2], results[0]);
}

TEST(CheckpointStoreTest, GarbageRecordsAreSkippedAndReportedWhileOthersLoad) {
  TempDir dir;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch batch;
    batch.PutFramework(Framework("f1"));
    batch.PutTask(Task("f1", "t1"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 4, Status("f1", "t1", "good"));
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
  }
  {
    leveldb::Options options;
    leveldb::DB* raw = nullptr;
    ASSERT_TRUE(leveldb::DB::Open(options, dir.path(), &raw).ok());
    std::unique_ptr<leveldb::DB> db(raw);
    // A length-delimited field 1 whose length runs past the end: no message parses it.
    const std::string garbage("\x0a\xff\xff\x01", 4);
    ASSERT_TRUE(db->Put(leveldb::WriteOptions(), "framework/f2", garbage).ok());
    ASSERT_TRUE(db->Put(leveldb::WriteOptions(), "agent", garbage).ok());
    ASSERT_TRUE(
        db->Put(leveldb::WriteOptions(), "update/f1/t1/00000000000000000005", garbage).ok());
    ASSERT_TRUE(db->Put(leveldb::WriteOptions(), "bogus/key", "x").ok());
    ASSERT_TRUE(db->Put(leveldb::WriteOptions(), "update/f1/t1/12", "x").ok());
    ASSERT_TRUE(
        db->Put(leveldb::WriteOptions(), "framework/f3", Framework("other").SerializeAsString())
            .ok());
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);

  EXPECT_FALSE(recovered.agent.has_value());
  ASSERT_THAT(recovered.frameworks, SizeIs(1));
  EXPECT_TRUE(recovered.frameworks.contains(FrameworkId("f1")));
  EXPECT_THAT(Messages(recovered, {FrameworkId("f1"), TaskId("t1")}),
              ElementsAre(std::pair<uint64_t, std::string>(4, "good")));
  EXPECT_EQ(recovered.max_sequence, 5);
  std::vector<std::string> skipped = recovered.skipped;
  std::sort(skipped.begin(), skipped.end());
  EXPECT_THAT(skipped,
              ElementsAre(HasSubstr("'agent': unparseable"), HasSubstr("'bogus/key': unknown key"),
                          HasSubstr("'framework/f2': unparseable"),
                          HasSubstr("'framework/f3': key/value mismatch"),
                          HasSubstr("'update/f1/t1/00000000000000000005': unparseable"),
                          HasSubstr("'update/f1/t1/12': unknown key")));
}

TEST(CheckpointStoreTest, UpdateWithoutTaskIsSkippedAndGoneAfterReopen) {
  TempDir dir;
  const TaskId t2("t2");
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch batch;
    batch.PutTask(Task("f1", "t1"));
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 1, Status("f1", "t1", "kept"));
    batch.AppendUpdate(FrameworkId("f1"), t2, 2, Status("f1", "t2", "orphan"));
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
  }
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    Recovered recovered = LoadOrDie(*store);
    EXPECT_THAT(recovered.skipped,
                ElementsAre(HasSubstr("'update/f1/t2/00000000000000000002': update without task")));
    EXPECT_FALSE(recovered.tasks.contains({FrameworkId("f1"), t2}));
    EXPECT_EQ(recovered.max_sequence, 2);
  }
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  Recovered recovered = LoadOrDie(*store);
  EXPECT_THAT(recovered.skipped, IsEmpty());
  EXPECT_THAT(Messages(recovered, {FrameworkId("f1"), TaskId("t1")}),
              ElementsAre(std::pair<uint64_t, std::string>(1, "kept")));
}

TEST(CheckpointStoreTest, InvalidIdsFailTheBatchWithoutWritingAnyOfIt) {
  TempDir dir;
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  const std::string too_long(256, 'x');
  struct Case {
    std::string name;
    CheckpointBatch batch;
    std::string expected;
  };
  std::vector<Case> cases;
  auto add = [&cases](std::string name, std::string expected, auto fill) {
    Case c{std::move(name), CheckpointBatch(), std::move(expected)};
    c.batch.PutFramework(Framework("written-" + c.name));  // Valid: must not be written.
    fill(c.batch);
    cases.push_back(std::move(c));
  };
  add("slash", "invalid task id 'a/b': contains '/'", [](CheckpointBatch& b) {
    b.AppendUpdate(FrameworkId("f1"), TaskId("a/b"), 1, rz::v1::TaskStatus());
  });
  add("empty", "invalid framework id '': is empty",
      [](CheckpointBatch& b) { b.PutFramework(Framework("")); });
  add("long", "is longer than 255 bytes",
      [&too_long](CheckpointBatch& b) { b.DeleteTask(FrameworkId(too_long), TaskId("t1")); });
  add("task", "invalid task id 'x/y'", [](CheckpointBatch& b) { b.PutTask(Task("f1", "x/y")); });
  add("mismatch", "carries task id 't9'", [](CheckpointBatch& b) {
    b.AppendUpdate(FrameworkId("f1"), TaskId("t1"), 1, Status("f1", "t9", ""));
  });

  for (Case& c : cases) {
    EXPECT_FALSE(c.batch.empty());
    const absl::Status status = WriteAndWait(*store, std::move(c.batch));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << status;
    EXPECT_THAT(status.message(), HasSubstr(c.expected)) << c.name;
  }
  // A 256-byte id would flood logs: only a prefix is quoted.
  CheckpointBatch long_batch;
  long_batch.RemoveUpdate(FrameworkId(too_long), TaskId("t1"), 1);
  EXPECT_LT(long_batch.status().message().size(), 200);

  Recovered recovered = LoadOrDie(*store);
  EXPECT_THAT(recovered.frameworks, IsEmpty());
  EXPECT_THAT(recovered.tasks, IsEmpty());
  EXPECT_EQ(recovered.max_sequence, 0);
}

TEST(CheckpointStoreTest, FlushReturnsAfterEveryEarlierBatchIsDone) {
  TempDir dir;
  int done = 0;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path(), {.sync = false});
    store->Flush();  // Nothing queued: returns at once.
    WriterHold hold(*store);
    for (int i = 0; i < 20; ++i) {
      CheckpointBatch batch;
      batch.PutFramework(Framework(absl::StrCat("f", i)));
      store->Write(std::move(batch), [&done](const absl::Status& status) {
        EXPECT_TRUE(status.ok()) << status;
        ++done;
      });
    }
    hold.Release();
    store->Flush();
    EXPECT_EQ(done, 20);
    // A batch written after the flush is still completed by the destructor.
    CheckpointBatch last;
    last.PutFramework(Framework("last"));
    store->Write(std::move(last), [&done](const absl::Status& /*status*/) { ++done; });
  }
  EXPECT_EQ(done, 21);
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  EXPECT_THAT(LoadOrDie(*store).frameworks, SizeIs(21));
}

TEST(CheckpointStoreTest, EmptyBatchAndWritesFromDoneCompleteInOrder) {
  TempDir dir;
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
  std::vector<std::string> order;
  absl::Notification second_done;
  CheckpointBatch empty;
  EXPECT_TRUE(empty.empty());
  store->Write(std::move(empty), [&](const absl::Status& status) {
    EXPECT_TRUE(status.ok()) << status;
    order.emplace_back("empty");
    // Write() from a callback queues behind the current group instead of deadlocking.
    CheckpointBatch nested;
    nested.PutFramework(Framework("f1"));
    store->Write(std::move(nested), [&](const absl::Status& nested_status) {
      EXPECT_TRUE(nested_status.ok()) << nested_status;
      order.emplace_back("nested");
      second_done.Notify();
    });
  });
  second_done.WaitForNotification();
  store->Flush();
  EXPECT_THAT(order, ElementsAre("empty", "nested"));
  EXPECT_THAT(LoadOrDie(*store).frameworks, SizeIs(1));
}

TEST(CheckpointStoreTest, OpenOfARegularFileFailsNamingIt) {
  TempDir dir;
  const std::string file = dir.Sub("meta");
  std::ofstream(file) << "not a database";
  absl::StatusOr<std::unique_ptr<CheckpointStore>> store = CheckpointStore::Open(file);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("'" + file + "': not a directory"));
}

TEST(CheckpointStoreTest, OpenUnderARegularFileFailsWithLevelDbsMessage) {
  TempDir dir;
  const std::string file = dir.Sub("file");
  std::ofstream(file) << "x";
  const std::string path = file + "/meta";
  absl::StatusOr<std::unique_ptr<CheckpointStore>> store = CheckpointStore::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr("opening checkpoint store '" + path + "': "));
  EXPECT_THAT(store.status().message(), HasSubstr("Not a directory"));
}

TEST(CheckpointStoreTest, CorruptStoreIsRepairedOnOpen) {
  TempDir dir;
  {
    std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path());
    CheckpointBatch batch;
    batch.PutFramework(Framework("f1"));
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
  }
  // LevelDB reports a CURRENT file without its final newline as corruption.
  std::ofstream(dir.Sub("CURRENT"), std::ios::trunc) << "garbage";
  absl::StatusOr<std::unique_ptr<CheckpointStore>> store = CheckpointStore::Open(dir.path());
  ASSERT_TRUE(store.ok()) << store.status();
  Recovered recovered = LoadOrDie(**store);
  EXPECT_TRUE(recovered.frameworks.contains(FrameworkId("f1")));
}

// Not an assertion: prints the figures of this machine for the report.
void Measure(bool sync) {
  TempDir dir;
  std::unique_ptr<CheckpointStore> store = OpenOrDie(dir.path(), {.sync = sync});
  CheckpointBatch task;
  task.PutTask(Task("f1", "t1"));
  ASSERT_OK(WriteAndWait(*store, std::move(task)));
  const rz::v1::TaskStatus status = Status("f1", "t1", "TASK_RUNNING");

  // Latency: one batch in flight at a time.
  constexpr int kSamples = 300;
  std::vector<absl::Duration> latencies;
  for (int i = 0; i < kSamples; ++i) {
    CheckpointBatch batch;
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), i + 1, status);
    const absl::Time start = absl::Now();
    ASSERT_OK(WriteAndWait(*store, std::move(batch)));
    latencies.push_back(absl::Now() - start);
  }
  std::sort(latencies.begin(), latencies.end());

  // Throughput: batches issued back to back, group commit coalescing them.
  constexpr int kBatches = 5000;
  const uint64_t commits_before = store->stats().commits;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kBatches; ++i) {
    CheckpointBatch batch;
    batch.AppendUpdate(FrameworkId("f1"), TaskId("t1"), kSamples + i + 1, status);
    store->Write(std::move(batch), [](const absl::Status& s) { CHECK(s.ok()) << s; });
  }
  store->Flush();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const std::string mode = sync ? "sync" : "nosync";
  std::cout << "RESULT checkpoint_write_p50_latency_" << mode << " "
            << absl::ToDoubleMicroseconds(latencies[kSamples / 2]) << " us\n"
            << "RESULT checkpoint_write_throughput_" << mode << " " << kBatches / seconds
            << " batches/s\n"
            << "(" << kBatches << " batches in " << store->stats().commits - commits_before
            << " commits)\n";
}

TEST(CheckpointStoreTest, PrintWriteThroughputAndLatency) {
  Measure(/*sync=*/true);
  Measure(/*sync=*/false);
}

}  // namespace
}  // namespace rz::agent
