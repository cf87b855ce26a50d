#include "agent/checkpoint_store.h"

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "glog/logging.h"
#include "leveldb/db.h"
#include "leveldb/env.h"
#include "leveldb/iterator.h"
#include "leveldb/options.h"
#include "leveldb/write_batch.h"

namespace rz::agent {
namespace {

constexpr char kAgentKey[] = "agent";
constexpr char kFrameworkPrefix[] = "framework/";
constexpr char kTaskPrefix[] = "task/";
constexpr char kUpdatePrefix[] = "update/";
constexpr size_t kMaxIdBytes = 255;
constexpr size_t kSequenceDigits = 20;  // Enough for every uint64_t.

// Ids end up in error messages and logs: quote a bounded prefix of them.
std::string Quote(const std::string& id) {
  constexpr size_t kShown = 64;
  if (id.size() <= kShown) {
    return absl::StrCat("'", id, "'");
  }
  return absl::StrCat("'", id.substr(0, kShown), "...' (", id.size(), " bytes)");
}

std::string ValidIdProblem(const std::string& id) {
  if (id.empty()) {
    return "is empty";
  }
  if (id.find('/') != std::string::npos) {
    return "contains '/'";
  }
  if (id.size() > kMaxIdBytes) {
    return absl::StrCat("is longer than ", kMaxIdBytes, " bytes");
  }
  return "";
}

absl::Status ValidateId(const char* what, const std::string& id) {
  const std::string problem = ValidIdProblem(id);
  if (problem.empty()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid ", what, " id ", Quote(id), ": ", problem));
}

std::string FrameworkKey(const std::string& framework_id) {
  return absl::StrCat(kFrameworkPrefix, framework_id);
}

std::string TaskKey(const std::string& framework_id, const std::string& task_id) {
  return absl::StrCat(kTaskPrefix, framework_id, "/", task_id);
}

std::string UpdatePrefix(const std::string& framework_id, const std::string& task_id) {
  return absl::StrCat(kUpdatePrefix, framework_id, "/", task_id, "/");
}

std::string UpdateKey(const std::string& framework_id, const std::string& task_id,
                      uint64_t sequence) {
  return absl::StrCat(UpdatePrefix(framework_id, task_id), absl::StrFormat("%020u", sequence));
}

std::string Serialize(const google::protobuf::MessageLite& message) {
  std::string value;
  // Serializing a valid in-memory message cannot fail (no required fields in proto3).
  CHECK(message.SerializeToString(&value));
  return value;
}

// Splits `rest` (a key without its prefix) into exactly `n` '/'-separated ids, each valid.
// Returns false otherwise.
bool SplitIds(const std::string& rest, size_t n, std::vector<std::string>& out) {
  out = absl::StrSplit(rest, '/');
  if (out.size() != n) {
    return false;
  }
  return std::all_of(out.begin(), out.end(),
                     [](const std::string& id) { return ValidIdProblem(id).empty(); });
}

bool ParseSequence(const std::string& text, uint64_t& sequence) {
  return text.size() == kSequenceDigits &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
         absl::SimpleAtoi(text, &sequence);
}

// Builds the messages of `Recovered` from LevelDB records, one record at a time.
class RecordLoader {
 public:
  explicit RecordLoader(Recovered& out) : out_(out) {}

  void Add(const std::string& key, const std::string& value) {
    if (key == kAgentKey) {
      rz::v1::AgentCheckpoint agent;
      if (!agent.ParseFromString(value)) {
        Skip(key, "unparseable AgentCheckpoint");
        return;
      }
      out_.agent = std::move(agent);
    } else if (absl::StartsWith(key, kFrameworkPrefix)) {
      AddFramework(key, key.substr(sizeof(kFrameworkPrefix) - 1), value);
    } else if (absl::StartsWith(key, kTaskPrefix)) {
      AddTask(key, key.substr(sizeof(kTaskPrefix) - 1), value);
    } else if (absl::StartsWith(key, kUpdatePrefix)) {
      AddUpdate(key, key.substr(sizeof(kUpdatePrefix) - 1), value);
    } else {
      Skip(key, "unknown key");
    }
  }

  // Attaches updates to their tasks once every task is known. Returns the keys of updates
  // without a task.
  std::vector<std::string> Finish() {
    std::vector<std::string> orphans;
    for (auto& [key, update] : updates_) {
      auto task = out_.tasks.find(update.task);
      if (task == out_.tasks.end()) {
        Skip(key, "update without task");
        orphans.push_back(key);
        continue;
      }
      task->second.pending_updates.emplace_back(update.sequence, std::move(update.status));
    }
    for (auto& [task_key, task] : out_.tasks) {
      std::sort(task.pending_updates.begin(), task.pending_updates.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
    }
    return orphans;
  }

  void Skip(const std::string& key, const std::string& why) {
    out_.skipped.push_back(absl::StrCat("'", absl::CHexEscape(key), "': ", why));
  }

 private:
  struct Update {
    std::pair<FrameworkId, TaskId> task;
    uint64_t sequence = 0;
    rz::v1::TaskStatus status;
  };

  void AddFramework(const std::string& key, const std::string& rest, const std::string& value) {
    std::vector<std::string> ids;
    if (!SplitIds(rest, 1, ids)) {
      Skip(key, "unknown key (bad framework id)");
      return;
    }
    rz::v1::FrameworkInfo framework;
    if (!framework.ParseFromString(value)) {
      Skip(key, "unparseable FrameworkInfo");
      return;
    }
    if (framework.id() != ids[0]) {
      Skip(key,
           absl::StrCat("key/value mismatch: the record is framework ", Quote(framework.id())));
      return;
    }
    out_.frameworks[FrameworkId(ids[0])] = std::move(framework);
  }

  void AddTask(const std::string& key, const std::string& rest, const std::string& value) {
    std::vector<std::string> ids;
    if (!SplitIds(rest, 2, ids)) {
      Skip(key, "unknown key (bad task key)");
      return;
    }
    rz::v1::TaskCheckpoint checkpoint;
    if (!checkpoint.ParseFromString(value)) {
      Skip(key, "unparseable TaskCheckpoint");
      return;
    }
    if (checkpoint.task().framework_id() != ids[0] || checkpoint.task().task_id() != ids[1]) {
      Skip(key, absl::StrCat("key/value mismatch: the record is task ",
                             Quote(checkpoint.task().task_id()), " of framework ",
                             Quote(checkpoint.task().framework_id())));
      return;
    }
    out_.tasks[{FrameworkId(ids[0]), TaskId(ids[1])}].checkpoint = std::move(checkpoint);
  }

  void AddUpdate(const std::string& key, const std::string& rest, const std::string& value) {
    std::vector<std::string> parts = absl::StrSplit(rest, '/');
    uint64_t sequence = 0;
    if (parts.size() != 3 || !ValidIdProblem(parts[0]).empty() ||
        !ValidIdProblem(parts[1]).empty() || !ParseSequence(parts[2], sequence)) {
      Skip(key, "unknown key (bad update key)");
      return;
    }
    // Even an update that is skipped below used its number: never hand it out again.
    out_.max_sequence = std::max(out_.max_sequence, sequence);
    rz::v1::TaskStatus status;
    if (!status.ParseFromString(value)) {
      Skip(key, "unparseable TaskStatus");
      return;
    }
    if ((!status.framework_id().empty() && status.framework_id() != parts[0]) ||
        (!status.task_id().empty() && status.task_id() != parts[1])) {
      Skip(key,
           absl::StrCat("key/value mismatch: the record is an update of task ",
                        Quote(status.task_id()), " of framework ", Quote(status.framework_id())));
      return;
    }
    updates_.emplace_back(
        key, Update{{FrameworkId(parts[0]), TaskId(parts[1])}, sequence, std::move(status)});
  }

  Recovered& out_;
  std::vector<std::pair<std::string, Update>> updates_;
};

}  // namespace

bool CheckpointBatch::Check(absl::Status status) {
  if (status.ok()) {
    return true;
  }
  if (error_.ok()) {
    error_ = std::move(status);
  }
  return false;
}

void CheckpointBatch::PutAgent(const rz::v1::AgentCheckpoint& agent) {
  ops_.push_back({Op::Kind::kPut, kAgentKey, Serialize(agent), ""});
}

void CheckpointBatch::PutFramework(const rz::v1::FrameworkInfo& framework) {
  if (!Check(ValidateId("framework", framework.id()))) {
    return;
  }
  ops_.push_back({Op::Kind::kPut, FrameworkKey(framework.id()), Serialize(framework), ""});
}

void CheckpointBatch::DeleteFramework(const FrameworkId& framework_id) {
  if (!Check(ValidateId("framework", framework_id.value()))) {
    return;
  }
  ops_.push_back({Op::Kind::kDelete, FrameworkKey(framework_id.value()), "", ""});
}

void CheckpointBatch::PutTask(const rz::v1::TaskCheckpoint& checkpoint) {
  const std::string& framework_id = checkpoint.task().framework_id();
  const std::string& task_id = checkpoint.task().task_id();
  if (!Check(ValidateId("framework", framework_id)) || !Check(ValidateId("task", task_id))) {
    return;
  }
  if (!checkpoint.info().task_id().empty() && checkpoint.info().task_id() != task_id) {
    Check(absl::InvalidArgumentError(absl::StrCat("checkpoint of task ", Quote(task_id),
                                                  " carries the TaskInfo of task ",
                                                  Quote(checkpoint.info().task_id()))));
    return;
  }
  ops_.push_back({Op::Kind::kPut, TaskKey(framework_id, task_id), Serialize(checkpoint), ""});
}

void CheckpointBatch::DeleteTask(const FrameworkId& framework_id, const TaskId& task_id) {
  if (!Check(ValidateId("framework", framework_id.value())) ||
      !Check(ValidateId("task", task_id.value()))) {
    return;
  }
  ops_.push_back({Op::Kind::kDeleteTask, TaskKey(framework_id.value(), task_id.value()), "",
                  UpdatePrefix(framework_id.value(), task_id.value())});
}

void CheckpointBatch::AppendUpdate(const FrameworkId& framework_id, const TaskId& task_id,
                                   uint64_t sequence, const rz::v1::TaskStatus& status) {
  if (!Check(ValidateId("framework", framework_id.value())) ||
      !Check(ValidateId("task", task_id.value()))) {
    return;
  }
  if ((!status.framework_id().empty() && status.framework_id() != framework_id.value()) ||
      (!status.task_id().empty() && status.task_id() != task_id.value())) {
    Check(absl::InvalidArgumentError(absl::StrCat("update for task ", Quote(task_id.value()),
                                                  " of framework ", Quote(framework_id.value()),
                                                  " carries task id ", Quote(status.task_id()),
                                                  " of framework ", Quote(status.framework_id()))));
    return;
  }
  ops_.push_back({Op::Kind::kPut, UpdateKey(framework_id.value(), task_id.value(), sequence),
                  Serialize(status), UpdatePrefix(framework_id.value(), task_id.value())});
}

void CheckpointBatch::RemoveUpdate(const FrameworkId& framework_id, const TaskId& task_id,
                                   uint64_t sequence) {
  if (!Check(ValidateId("framework", framework_id.value())) ||
      !Check(ValidateId("task", task_id.value()))) {
    return;
  }
  ops_.push_back(
      {Op::Kind::kDelete, UpdateKey(framework_id.value(), task_id.value(), sequence), "", ""});
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Open(const std::string& dir,
                                                                       Options options) {
  std::error_code error;
  if (std::filesystem::exists(dir, error) && !std::filesystem::is_directory(dir, error)) {
    return absl::FailedPreconditionError(
        absl::StrCat("opening checkpoint store '", dir, "': not a directory"));
  }
  leveldb::Options db_options;
  db_options.create_if_missing = true;
  if (options.env != nullptr) {
    db_options.env = options.env;
  }
  leveldb::DB* db = nullptr;
  leveldb::Status status = leveldb::DB::Open(db_options, dir, &db);
  const char* after = "";
  if (status.IsCorruption()) {
    // The agent cannot recover its tasks without its checkpoints, so salvage what LevelDB can
    // rather than refuse to start; records lost here show up as tasks the master reconciles.
    LOG(ERROR) << "checkpoint store '" << dir << "' is corrupt (" << status.ToString()
               << "); repairing it, some records may be lost";
    const leveldb::Status repaired = leveldb::RepairDB(dir, db_options);
    if (!repaired.ok()) {
      LOG(ERROR) << "repairing checkpoint store '" << dir << "' failed: " << repaired.ToString();
    }
    status = leveldb::DB::Open(db_options, dir, &db);
    after = " after repairing it";
  }
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("opening checkpoint store '", dir, "'", after, ": ", status.ToString()));
  }
  return std::unique_ptr<CheckpointStore>(
      new CheckpointStore(dir, options, std::unique_ptr<leveldb::DB>(db)));
}

CheckpointStore::CheckpointStore(std::string dir, Options options, std::unique_ptr<leveldb::DB> db)
    : dir_(std::move(dir)),
      options_(options),
      db_(std::move(db)),
      writer_([this] { WriterLoop(); }) {}

CheckpointStore::~CheckpointStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  writer_.join();  // The writer drains the queue before it returns.
}

absl::StatusOr<Recovered> CheckpointStore::Load() {
  Recovered recovered;
  RecordLoader loader(recovered);
  leveldb::ReadOptions read_options;
  read_options.verify_checksums = true;
  read_options.fill_cache = false;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(read_options));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    loader.Add(it->key().ToString(), it->value().ToString());
  }
  if (!it->status().ok()) {
    // LevelDB skips blocks it cannot read and reports that at the end; what it could read is
    // loaded, the rest is reported like any other unusable record.
    recovered.skipped.push_back(absl::StrCat("checkpoint store '", dir_,
                                             "' has unreadable data: ", it->status().ToString()));
  }
  it.reset();

  const std::vector<std::string> orphans = loader.Finish();
  if (!orphans.empty()) {
    leveldb::WriteBatch batch;
    for (const std::string& key : orphans) {
      batch.Delete(key);
    }
    leveldb::WriteOptions write_options;
    write_options.sync = options_.sync;
    const leveldb::Status status = db_->Write(write_options, &batch);
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "checkpoint store '", dir_, "': deleting updates without a task: ", status.ToString()));
    }
    LOG(WARNING) << "checkpoint store '" << dir_ << "': deleted " << orphans.size()
                 << " status update(s) without a task";
  }
  for (const std::string& line : recovered.skipped) {
    LOG(WARNING) << "checkpoint store '" << dir_ << "': skipped " << line;
  }
  return recovered;
}

void CheckpointStore::Write(CheckpointBatch batch, Done done) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(Pending{std::move(batch), std::move(done), /*flush=*/false});
}

void CheckpointStore::Flush() {
  absl::Notification written;
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(Pending{CheckpointBatch(),
                             [&written](const absl::Status& /*status*/) { written.Notify(); },
                             /*flush=*/true});
  }
  written.WaitForNotification();
}

CheckpointStore::Stats CheckpointStore::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void CheckpointStore::WriterLoop() {
  while (true) {
    std::vector<Pending> group;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CheckpointStore* store) ABSL_EXCLUSIVE_LOCKS_REQUIRED(store->mu_) {
            return store->stopping_ || !store->queue_.empty();
          },
          this));
      if (queue_.empty()) {
        return;  // Stopping and drained.
      }
      group.swap(queue_);
    }
    Commit(group);
  }
}

void CheckpointStore::Commit(std::vector<Pending>& group) {
  std::vector<absl::Status> results(group.size());
  std::vector<bool> written(group.size(), false);
  std::map<std::string, std::vector<std::string>> group_updates;
  leveldb::WriteBatch commit;
  bool force_sync = false;
  bool has_writes = false;
  size_t batches = 0;
  for (size_t i = 0; i < group.size(); ++i) {
    Pending& pending = group[i];
    if (pending.flush) {
      force_sync = true;
      continue;
    }
    ++batches;
    if (!pending.batch.status().ok()) {
      results[i] = pending.batch.status();
      continue;
    }
    leveldb::WriteBatch one;
    results[i] = Build(pending.batch, group_updates, one);
    if (results[i].ok() && !pending.batch.ops_.empty()) {
      commit.Append(one);
      written[i] = true;
      has_writes = true;
    }
  }

  // With `sync` every commit already syncs, so a flush needs no write of its own.
  const bool needs_sync_write = force_sync && !options_.sync;
  bool committed = false;
  if (has_writes || needs_sync_write) {
    leveldb::WriteOptions write_options;
    write_options.sync = options_.sync || force_sync;
    const leveldb::Status status = db_->Write(write_options, &commit);
    committed = true;
    if (!status.ok()) {
      const absl::Status failed = absl::UnavailableError(absl::StrCat(
          "checkpoint store '", dir_, "': writing ", batches, " batch(es): ", status.ToString()));
      LOG(ERROR) << failed;
      for (size_t i = 0; i < group.size(); ++i) {
        if (written[i]) {
          results[i] = failed;
        }
      }
    }
  }
  {
    absl::MutexLock lock(&mu_);
    stats_.batches += batches;
    stats_.commits += committed ? 1 : 0;
  }
  for (size_t i = 0; i < group.size(); ++i) {
    std::move(group[i].done)(std::move(results[i]));
  }
}

absl::Status CheckpointStore::Build(const CheckpointBatch& batch,
                                    std::map<std::string, std::vector<std::string>>& group_updates,
                                    leveldb::WriteBatch& out) {
  std::vector<std::pair<std::string, std::string>> appended;  // (prefix, key), kept on success.
  for (const CheckpointBatch::Op& op : batch.ops_) {
    switch (op.kind) {
      case CheckpointBatch::Op::Kind::kPut:
        out.Put(op.key, op.value);
        if (!op.update_prefix.empty()) {
          appended.emplace_back(op.update_prefix, op.key);
        }
        break;
      case CheckpointBatch::Op::Kind::kDelete:
        out.Delete(op.key);
        break;
      case CheckpointBatch::Op::Kind::kDeleteTask: {
        out.Delete(op.key);
        // The writer thread is the only writer once Load() is done, so LevelDB holds exactly
        // what earlier groups committed; earlier batches of this group are in `group_updates`
        // and earlier operations of this batch in `appended`.
        std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(leveldb::ReadOptions()));
        for (it->Seek(op.update_prefix); it->Valid() && it->key().starts_with(op.update_prefix);
             it->Next()) {
          out.Delete(it->key());
        }
        if (!it->status().ok()) {
          return absl::UnavailableError(absl::StrCat("checkpoint store '", dir_,
                                                     "': listing the updates of ", op.key, ": ",
                                                     it->status().ToString()));
        }
        auto group_keys = group_updates.find(op.update_prefix);
        if (group_keys != group_updates.end()) {
          for (const std::string& key : group_keys->second) {
            out.Delete(key);
          }
        }
        for (const auto& [prefix, key] : appended) {
          if (prefix == op.update_prefix) {
            out.Delete(key);
          }
        }
        break;
      }
    }
  }
  // Deleting a key that is already gone is harmless, so keys are never removed from here.
  for (auto& [prefix, key] : appended) {
    group_updates[prefix].push_back(std::move(key));
  }
  return absl::OkStatus();
}

}  // namespace rz::agent
