#include "master/registry/registry_store.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace rz::master {

std::string ExpectedVersion::ToString() const {
  switch (kind_) {
    case kAny:
      return "any version";
    case kAbsent:
      return "no record";
    case kExactly:
      return absl::StrCat("version ", version_);
  }
  return "?";
}

absl::Status ValidateWrites(const std::vector<RegistryWrite>& writes) {
  absl::flat_hash_set<std::string> keys;
  for (const RegistryWrite& write : writes) {
    if (write.key.empty()) {
      return absl::InvalidArgumentError("registry write with an empty key");
    }
    if (!keys.insert(write.key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("registry key '", write.key, "' written twice in one batch"));
    }
  }
  return absl::OkStatus();
}

absl::Status VersionConflict(const std::string& key, std::optional<uint64_t> current,
                             const ExpectedVersion& expected) {
  return absl::AbortedError(absl::StrCat(
      "registry record '", key, "' is at ",
      current.has_value() ? absl::StrCat("version ", *current) : std::string("no record"),
      ", expected ", expected.ToString()));
}

}  // namespace rz::master
