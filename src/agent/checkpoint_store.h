// CheckpointStore is the agent's durable state: its id and boot, the frameworks and tasks it
// runs, and every status update not yet acknowledged, in LevelDB at <work_dir>/meta. A
// restarted agent reads it all back with Load() to recover its containers and reregister.
//
// Records and keys (the values are the messages of rz/v1/checkpoint.proto and common.proto):
//   "agent"                                       rz::v1::AgentCheckpoint
//   "framework/<framework_id>"                    rz::v1::FrameworkInfo
//   "task/<framework_id>/<task_id>"               rz::v1::TaskCheckpoint
//   "update/<framework_id>/<task_id>/<sequence>"  rz::v1::TaskStatus (unacknowledged)
// Sequences are zero-padded to 20 digits so LevelDB's key order is numeric order. Ids used in
// keys are non-empty, contain no '/' and are at most 255 bytes.
//
// Writes are asynchronous: the agent's loop hands a CheckpointBatch to Write() and gets its
// result in a callback. One writer thread applies batches in the order Write() was called; it
// commits every batch waiting in the queue as one LevelDB write (group commit), so a burst of
// small batches costs one fsync. Each batch is atomic: all of it is written or none.
//
// Thread rule: Open() and Load() block (run them on a worker, not on a loop). Write() and
// Flush() are thread-safe; Write() never blocks. `done` callbacks run on the writer thread, in
// the order of the Write() calls, one at a time; they must not block (post to a loop instead).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/ids.h"
#include "rz/v1/checkpoint.pb.h"
#include "rz/v1/common.pb.h"

namespace leveldb {
class DB;
class Env;
class WriteBatch;
}  // namespace leveldb

namespace rz::agent {

// A set of record changes applied atomically by CheckpointStore::Write(). Values are serialized
// when added, so the batch owns copies and the caller may change its messages afterwards. An
// invalid id makes the whole batch invalid: Write() then fails it without writing any of it.
//
// Thread rule: a value type; not thread-safe, hand it over with std::move.
class CheckpointBatch {
 public:
  CheckpointBatch() = default;
  CheckpointBatch(CheckpointBatch&&) = default;
  CheckpointBatch& operator=(CheckpointBatch&&) = default;

  void PutAgent(const rz::v1::AgentCheckpoint& agent);
  // Keyed by `framework.id()`.
  void PutFramework(const rz::v1::FrameworkInfo& framework);
  // Deletes the framework record only; its tasks are deleted with DeleteTask().
  void DeleteFramework(const FrameworkId& framework_id);
  // Keyed by `checkpoint.task().framework_id()` and `checkpoint.task().task_id()`; a non-empty
  // `checkpoint.info().task_id()` must name the same task.
  void PutTask(const rz::v1::TaskCheckpoint& checkpoint);
  // Deletes the task record and every update record of the task, including updates appended
  // by batches written before this one.
  void DeleteTask(const FrameworkId& framework_id, const TaskId& task_id);
  // Non-empty `status.framework_id()` and `status.task_id()` must match the key's ids.
  void AppendUpdate(const FrameworkId& framework_id, const TaskId& task_id, uint64_t sequence,
                    const rz::v1::TaskStatus& status);
  void RemoveUpdate(const FrameworkId& framework_id, const TaskId& task_id, uint64_t sequence);

  // True if nothing was added; an invalid addition also makes the batch non-empty.
  bool empty() const { return ops_.empty() && error_.ok(); }

  // OK, or InvalidArgument naming the first invalid id added.
  const absl::Status& status() const { return error_; }

 private:
  friend class CheckpointStore;

  struct Op {
    enum class Kind { kPut, kDelete, kDeleteTask };
    Kind kind;
    std::string key;            // kPut, kDelete: the record's key; kDeleteTask: the task's key.
    std::string value;          // kPut only.
    std::string update_prefix;  // kDeleteTask: "update/<fw>/<task>/".
  };

  // Records the first error; returns false if `status` is not OK.
  bool Check(absl::Status status);

  std::vector<Op> ops_;
  absl::Status error_;
};

struct CheckpointStoreOptions {
  // fsync every group commit. Without it a machine crash (not an agent crash) may lose the
  // last writes.
  bool sync = true;
  // The LevelDB environment; nullptr means leveldb::Env::Default(). Tests inject faults here.
  // Must outlive the store.
  leveldb::Env* env = nullptr;
};

// Everything Load() read back.
struct Recovered {
  struct RecoveredTask {
    rz::v1::TaskCheckpoint checkpoint;
    // Unacknowledged updates of the task, in sequence order.
    std::vector<std::pair<uint64_t, rz::v1::TaskStatus>> pending_updates;
  };

  std::optional<rz::v1::AgentCheckpoint> agent;
  std::map<FrameworkId, rz::v1::FrameworkInfo> frameworks;
  std::map<std::pair<FrameworkId, TaskId>, RecoveredTask> tasks;
  // The largest update sequence found in any update key (also of skipped updates), 0 if none:
  // new updates are numbered above it.
  uint64_t max_sequence = 0;
  // One line per record that was not loaded: its key and why (unparseable, unknown key,
  // update without task, key/value mismatch), plus LevelDB read errors.
  std::vector<std::string> skipped;
};

class CheckpointStore {
 public:
  using Options = CheckpointStoreOptions;
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // Opens (creating if missing) the store in directory `dir` and starts its writer thread.
  // A store LevelDB reports corrupt is repaired once (logged as an error) and opened again.
  // Returns FailedPrecondition if `dir` exists and is not a directory, Unavailable naming
  // `dir` and LevelDB's message if it cannot be opened (including after a repair).
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Open(const std::string& dir,
                                                               Options options = {});

  // Flushes every queued batch, then stops the writer thread.
  ~CheckpointStore();

  CheckpointStore(const CheckpointStore&) = delete;
  CheckpointStore& operator=(const CheckpointStore&) = delete;

  // Reads every record. Records that cannot be used are skipped and listed in `skipped`;
  // updates whose task record is missing are also deleted from the store. Returns Unavailable
  // only if the orphaned updates cannot be deleted.
  // REQUIRES: no Write() has been made yet (the writer must be idle).
  absl::StatusOr<Recovered> Load();

  // Queues `batch`; never blocks. `done` runs on the writer thread once the batch is durable
  // (OK), or with InvalidArgument naming the bad id if the batch is invalid (nothing of it is
  // written), or Unavailable naming the store if the LevelDB write failed (then every batch
  // committed together with it fails too). Callbacks run in the order of the Write() calls.
  // An empty batch completes OK in order, writing nothing.
  void Write(CheckpointBatch batch, Done done);

  // Blocks until every batch queued before the call is written and its `done` has run, and,
  // even with `sync = false`, the LevelDB log is synced to disk.
  // REQUIRES: not called from a `done` callback (the writer thread would wait on itself).
  void Flush();

  const std::string& dir() const { return dir_; }

  // Counters since Open, for metrics and tests.
  struct Stats {
    uint64_t batches = 0;  // Batches completed (any outcome).
    uint64_t commits = 0;  // LevelDB writes made by the writer thread.
  };
  Stats stats() const;

 private:
  struct Pending {
    CheckpointBatch batch;
    Done done;
    bool flush = false;  // A Flush() marker: forces a synced write.
  };

  CheckpointStore(std::string dir, Options options, std::unique_ptr<leveldb::DB> db);

  void WriterLoop();
  void Commit(std::vector<Pending>& group);
  // Adds `batch`'s operations to `out`. `group_updates` holds the update keys put by earlier
  // batches of the same group, which DeleteTask must delete although LevelDB has not seen them.
  absl::Status Build(const CheckpointBatch& batch,
                     std::map<std::string, std::vector<std::string>>& group_updates,
                     leveldb::WriteBatch& out);

  const std::string dir_;
  const Options options_;
  const std::unique_ptr<leveldb::DB> db_;

  mutable absl::Mutex mu_;
  std::vector<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(mu_);

  std::thread writer_;  // Last: starts after everything it reads is constructed.
};

}  // namespace rz::agent
