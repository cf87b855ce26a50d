// FakeRegistryStore: an in-memory RegistryStore with the semantics of the real ones (versions,
// compare-and-set, atomic batches), for tests. It can fail writes on demand, hold writes until
// released, and mark a record unreadable.
//
// Thread rule: thread-safe. A held Apply() blocks its caller until Release(); use holding only
// with a Registry whose worker is a thread of its own.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "master/registry/in_memory_registry_store.h"
#include "master/registry/registry_store.h"

namespace rz::master {

class FakeRegistryStore final : public RegistryStore {
 public:
  absl::StatusOr<std::optional<RegistryRecord>> Get(const std::string& key) override {
    if (IsCorrupt(key)) {
      return Unreadable(key);
    }
    return inner_.Get(key);
  }

  absl::StatusOr<std::vector<RegistryRecord>> List(const std::string& prefix) override {
    absl::StatusOr<std::vector<RegistryRecord>> records = inner_.List(prefix);
    if (records.ok()) {
      for (const RegistryRecord& record : *records) {
        if (IsCorrupt(record.key)) {
          return Unreadable(record.key);
        }
      }
    }
    return records;
  }

  absl::StatusOr<std::vector<uint64_t>> Apply(const std::vector<RegistryWrite>& writes) override {
    {
      absl::MutexLock lock(&mu_);
      ++applies_started_;
      mu_.Await(absl::Condition(
          +[](FakeRegistryStore* self)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) { return !self->holding_; },
          this));
      ++applies_;
      if (!fail_with_.ok()) {
        absl::Status status = fail_with_;
        if (fail_count_ > 0 && --fail_count_ == 0) {
          fail_with_ = absl::OkStatus();
        }
        return status;
      }
    }
    absl::StatusOr<std::vector<uint64_t>> versions = inner_.Apply(writes);
    if (versions.ok()) {
      absl::MutexLock lock(&mu_);
      for (const RegistryWrite& write : writes) {
        corrupt_.erase(write.key);  // Rewritten: readable again.
      }
    }
    return versions;
  }

  // The next `count` Apply calls (0: all until ClearFailure) fail with `status` and change
  // nothing.
  void FailApplies(absl::Status status, int count = 1) {
    absl::MutexLock lock(&mu_);
    fail_with_ = std::move(status);
    fail_count_ = count;
  }
  void ClearFailure() {
    absl::MutexLock lock(&mu_);
    fail_with_ = absl::OkStatus();
  }

  // Apply calls block from Hold() until Release().
  void Hold() {
    absl::MutexLock lock(&mu_);
    holding_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    holding_ = false;
  }
  // Blocks until `count` Apply calls have started (held ones included).
  void AwaitAppliesStarted(int count) {
    absl::MutexLock lock(&mu_);
    struct Arg {
      const int* started;
      int count;
    } arg{&applies_started_, count};
    mu_.Await(absl::Condition(
        +[](Arg* a) { return *a->started >= a->count; }, &arg));
  }

  // Reads of `key` fail with DataLoss until it is written again.
  void Corrupt(const std::string& key) {
    absl::MutexLock lock(&mu_);
    corrupt_.insert(key);
  }

  // Apply calls that got past a hold (failed ones included).
  int applies() const {
    absl::MutexLock lock(&mu_);
    return applies_;
  }
  // The record at `key`, ignoring corruption, for assertions.
  std::optional<RegistryRecord> Peek(const std::string& key) {
    absl::StatusOr<std::optional<RegistryRecord>> record = inner_.Get(key);
    return record.ok() ? *record : std::nullopt;
  }
  size_t size() {
    absl::StatusOr<std::vector<RegistryRecord>> records = inner_.List("");
    return records.ok() ? records->size() : 0;
  }

 private:
  static absl::Status Unreadable(const std::string& key) {
    return absl::DataLossError(absl::StrCat("registry record '", key, "' is unreadable"));
  }
  bool IsCorrupt(const std::string& key) const {
    absl::MutexLock lock(&mu_);
    return corrupt_.contains(key);
  }

  InMemoryRegistryStore inner_;
  mutable absl::Mutex mu_;
  std::set<std::string> corrupt_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_with_ ABSL_GUARDED_BY(mu_);
  int fail_count_ ABSL_GUARDED_BY(mu_) = 0;
  bool holding_ ABSL_GUARDED_BY(mu_) = false;
  int applies_started_ ABSL_GUARDED_BY(mu_) = 0;
  int applies_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rz::master
