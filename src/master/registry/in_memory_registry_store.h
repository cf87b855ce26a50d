// InMemoryRegistryStore: a RegistryStore in a map, for `--registry=in_memory` (nothing survives
// the process) and as the base of the tests' FakeRegistryStore. Same semantics as the LevelDB
// store: versions, compare-and-set, atomic batches.
//
// Thread rule: thread-safe; never blocks for long.
#pragma once

#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "master/registry/registry_store.h"

namespace rz::master {

class InMemoryRegistryStore final : public RegistryStore {
 public:
  absl::StatusOr<std::optional<RegistryRecord>> Get(const std::string& key) override;
  absl::StatusOr<std::vector<RegistryRecord>> List(const std::string& prefix) override;
  absl::StatusOr<std::vector<uint64_t>> Apply(const std::vector<RegistryWrite>& writes) override;

 private:
  absl::Mutex mu_;
  // Key → (version, value).
  std::map<std::string, std::pair<uint64_t, std::string>> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::master
