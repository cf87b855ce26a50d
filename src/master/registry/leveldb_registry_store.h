// LevelDbRegistryStore: the standalone master's registry in LevelDB (<work_dir>/registry).
// Each value is stored as an 8-byte little-endian version followed by the record's bytes.
// Every Apply is one synced LevelDB write batch, so a batch survives a crash whole or not at
// all; a mutex makes the check of expectations and the write one step within this process
// (LevelDB's own lock keeps other processes out of the directory).
//
// Thread rule: thread-safe; every call blocks on disk.
#pragma once

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "master/registry/registry_store.h"

namespace leveldb {
class DB;
}  // namespace leveldb

namespace rz::master {

class LevelDbRegistryStore final : public RegistryStore {
 public:
  // Opens (creating if needed) the store in `dir`. Unavailable names the directory if LevelDB
  // cannot open it (e.g. another master holds its lock).
  static absl::StatusOr<std::unique_ptr<LevelDbRegistryStore>> Open(const std::string& dir);
  ~LevelDbRegistryStore() override;

  absl::StatusOr<std::optional<RegistryRecord>> Get(const std::string& key) override;
  absl::StatusOr<std::vector<RegistryRecord>> List(const std::string& prefix) override;
  absl::StatusOr<std::vector<uint64_t>> Apply(const std::vector<RegistryWrite>& writes) override;

 private:
  LevelDbRegistryStore(std::string dir, std::unique_ptr<leveldb::DB> db);

  const std::string dir_;
  absl::Mutex mu_;
  std::unique_ptr<leveldb::DB> db_ ABSL_PT_GUARDED_BY(mu_);
};

}  // namespace rz::master
