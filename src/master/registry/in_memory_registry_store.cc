#include "master/registry/in_memory_registry_store.h"

#include "absl/strings/match.h"

namespace rz::master {

absl::StatusOr<std::optional<RegistryRecord>> InMemoryRegistryStore::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = records_.find(key);
  if (it == records_.end()) {
    return std::nullopt;
  }
  return std::optional<RegistryRecord>(RegistryRecord{key, it->second.second, it->second.first});
}

absl::StatusOr<std::vector<RegistryRecord>> InMemoryRegistryStore::List(const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  std::vector<RegistryRecord> records;
  for (auto it = records_.lower_bound(prefix);
       it != records_.end() && absl::StartsWith(it->first, prefix); ++it) {
    records.push_back(RegistryRecord{it->first, it->second.second, it->second.first});
  }
  return records;
}

absl::StatusOr<std::vector<uint64_t>> InMemoryRegistryStore::Apply(
    const std::vector<RegistryWrite>& writes) {
  if (absl::Status status = ValidateWrites(writes); !status.ok()) {
    return status;
  }
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> versions;
  for (const RegistryWrite& write : writes) {
    auto it = records_.find(write.key);
    std::optional<uint64_t> current;
    if (it != records_.end()) {
      current = it->second.first;
    }
    if (!write.expected.Matches(current)) {
      return VersionConflict(write.key, current, write.expected);
    }
    versions.push_back(write.type == RegistryWrite::Type::kPut ? current.value_or(0) + 1 : 0);
  }
  for (size_t i = 0; i < writes.size(); ++i) {
    if (writes[i].type == RegistryWrite::Type::kPut) {
      records_[writes[i].key] = {versions[i], writes[i].value};
    } else {
      records_.erase(writes[i].key);
    }
  }
  return versions;
}

}  // namespace rz::master
