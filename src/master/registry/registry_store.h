// RegistryStore: the seam under the master's registry. A flat map of keyed records, each with
// a version, and atomic batches of compare-and-set writes. Standalone masters use
// LevelDbRegistryStore; the HA issue adds a ZooKeeper backend whose versions fence a deposed
// leader; tests use FakeRegistryStore (tests/testing/fake_registry_store.h).
//
// Versions: a record written for the first time gets version 1; every later put of the same key
// adds one. A deleted record is gone: putting it again starts at 1.
//
// Thread rule: implementations are thread-safe, but every call blocks on disk or network, so
// never call them on an event loop (Registry runs them on its worker).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rz::master {

struct RegistryRecord {
  std::string key;
  std::string value;
  uint64_t version = 0;
};

// What a write expects of the record's current version.
class ExpectedVersion {
 public:
  static ExpectedVersion Any() { return ExpectedVersion(kAny, 0); }
  static ExpectedVersion Absent() { return ExpectedVersion(kAbsent, 0); }
  static ExpectedVersion Exactly(uint64_t version) { return ExpectedVersion(kExactly, version); }

  // True if a record currently at `current` (nullopt: no record) meets the expectation.
  bool Matches(std::optional<uint64_t> current) const {
    switch (kind_) {
      case kAny:
        return true;
      case kAbsent:
        return !current.has_value();
      case kExactly:
        return current.has_value() && *current == version_;
    }
    return false;
  }
  std::string ToString() const;
  // The version an Exactly() expectation names; nullopt for Any() and Absent().
  std::optional<uint64_t> exact_version() const {
    return kind_ == kExactly ? std::optional<uint64_t>(version_) : std::nullopt;
  }

 private:
  enum Kind { kAny, kAbsent, kExactly };
  ExpectedVersion(Kind kind, uint64_t version) : kind_(kind), version_(version) {}
  Kind kind_;
  uint64_t version_;
};

struct RegistryWrite {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  std::string key;
  std::string value;  // kPut only.
  ExpectedVersion expected = ExpectedVersion::Any();

  static RegistryWrite Put(std::string key, std::string value,
                           ExpectedVersion expected = ExpectedVersion::Any()) {
    return {Type::kPut, std::move(key), std::move(value), expected};
  }
  // Deleting a record that does not exist is not an error when `expected` allows it.
  static RegistryWrite Delete(std::string key, ExpectedVersion expected = ExpectedVersion::Any()) {
    return {Type::kDelete, std::move(key), "", expected};
  }
};

class RegistryStore {
 public:
  virtual ~RegistryStore() = default;

  // The record at `key`, or nullopt if there is none. DataLoss names the key of an unreadable
  // record; Unavailable means the store cannot be reached.
  virtual absl::StatusOr<std::optional<RegistryRecord>> Get(const std::string& key) = 0;

  // Every record whose key starts with `prefix` (empty: all), in key order. DataLoss names the
  // first unreadable record.
  virtual absl::StatusOr<std::vector<RegistryRecord>> List(const std::string& prefix) = 0;

  // Applies every write or none: if any write's expectation fails, returns Aborted naming its
  // key and changes nothing. Returns the new version of each write in order (0 for a delete).
  // InvalidArgument if a key is empty or appears twice in `writes`.
  virtual absl::StatusOr<std::vector<uint64_t>> Apply(const std::vector<RegistryWrite>& writes) = 0;
};

// Checks what every store must refuse before touching anything: empty or repeated keys.
absl::Status ValidateWrites(const std::vector<RegistryWrite>& writes);

// Aborted naming `key`, its version and the expectation that failed.
absl::Status VersionConflict(const std::string& key, std::optional<uint64_t> current,
                             const ExpectedVersion& expected);

}  // namespace rz::master
