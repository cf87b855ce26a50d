#include "master/registry/leveldb_registry_store.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "leveldb/db.h"
#include "leveldb/write_batch.h"

namespace rz::master {
namespace {

constexpr size_t kVersionBytes = 8;

std::string Encode(uint64_t version, const std::string& value) {
  std::string out(kVersionBytes, '\0');
  for (size_t i = 0; i < kVersionBytes; ++i) {
    out[i] = static_cast<char>((version >> (8 * i)) & 0xff);
  }
  out += value;
  return out;
}

absl::StatusOr<RegistryRecord> Decode(std::string key, const std::string& stored) {
  if (stored.size() < kVersionBytes) {
    return absl::DataLossError(
        absl::StrCat("registry record '", key, "' is truncated (", stored.size(), " bytes)"));
  }
  uint64_t version = 0;
  for (size_t i = 0; i < kVersionBytes; ++i) {
    version |= static_cast<uint64_t>(static_cast<unsigned char>(stored[i])) << (8 * i);
  }
  if (version == 0) {
    return absl::DataLossError(absl::StrCat("registry record '", key, "' has version 0"));
  }
  return RegistryRecord{std::move(key), stored.substr(kVersionBytes), version};
}

absl::Status FromLevelDb(const leveldb::Status& status, const std::string& what) {
  if (status.IsCorruption()) {
    return absl::DataLossError(absl::StrCat(what, ": ", status.ToString()));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", status.ToString()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<LevelDbRegistryStore>> LevelDbRegistryStore::Open(
    const std::string& dir) {
  leveldb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  leveldb::DB* db = nullptr;
  const leveldb::Status status = leveldb::DB::Open(options, dir, &db);
  if (!status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot open the registry in '", dir, "': ", status.ToString()));
  }
  return std::unique_ptr<LevelDbRegistryStore>(
      new LevelDbRegistryStore(dir, std::unique_ptr<leveldb::DB>(db)));
}

LevelDbRegistryStore::LevelDbRegistryStore(std::string dir, std::unique_ptr<leveldb::DB> db)
    : dir_(std::move(dir)), db_(std::move(db)) {}

LevelDbRegistryStore::~LevelDbRegistryStore() = default;

absl::StatusOr<std::optional<RegistryRecord>> LevelDbRegistryStore::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  std::string stored;
  const leveldb::Status status = db_->Get(leveldb::ReadOptions(), key, &stored);
  if (status.IsNotFound()) {
    return std::nullopt;
  }
  if (!status.ok()) {
    return FromLevelDb(status, absl::StrCat("reading registry record '", key, "'"));
  }
  absl::StatusOr<RegistryRecord> record = Decode(key, stored);
  if (!record.ok()) {
    return record.status();
  }
  return std::optional<RegistryRecord>(*std::move(record));
}

absl::StatusOr<std::vector<RegistryRecord>> LevelDbRegistryStore::List(const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  leveldb::ReadOptions options;
  options.verify_checksums = true;
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(options));
  std::vector<RegistryRecord> records;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    absl::StatusOr<RegistryRecord> record = Decode(it->key().ToString(), it->value().ToString());
    if (!record.ok()) {
      return record.status();
    }
    records.push_back(*std::move(record));
  }
  if (!it->status().ok()) {
    return FromLevelDb(it->status(), absl::StrCat("listing registry records '", prefix, "*'"));
  }
  return records;
}

absl::StatusOr<std::vector<uint64_t>> LevelDbRegistryStore::Apply(
    const std::vector<RegistryWrite>& writes) {
  if (absl::Status status = ValidateWrites(writes); !status.ok()) {
    return status;
  }
  absl::MutexLock lock(&mu_);
  leveldb::WriteBatch batch;
  std::vector<uint64_t> versions;
  for (const RegistryWrite& write : writes) {
    std::string stored;
    std::optional<uint64_t> current;
    const leveldb::Status status = db_->Get(leveldb::ReadOptions(), write.key, &stored);
    if (status.ok()) {
      // An unreadable version may still be overwritten when the caller expects nothing of it.
      absl::StatusOr<RegistryRecord> record = Decode(write.key, stored);
      if (record.ok()) {
        current = record->version;
      } else if (!write.expected.Matches(std::nullopt) || !write.expected.Matches(1)) {
        return record.status();
      }
    } else if (!status.IsNotFound()) {
      return FromLevelDb(status, absl::StrCat("reading registry record '", write.key, "'"));
    }
    if (!write.expected.Matches(current)) {
      return VersionConflict(write.key, current, write.expected);
    }
    if (write.type == RegistryWrite::Type::kPut) {
      const uint64_t version = current.value_or(0) + 1;
      batch.Put(write.key, Encode(version, write.value));
      versions.push_back(version);
    } else {
      batch.Delete(write.key);
      versions.push_back(0);
    }
  }
  leveldb::WriteOptions options;
  options.sync = true;
  const leveldb::Status status = db_->Write(options, &batch);
  if (!status.ok()) {
    return FromLevelDb(status, absl::StrCat("writing the registry in '", dir_, "'"));
  }
  return versions;
}

}  // namespace rz::master
