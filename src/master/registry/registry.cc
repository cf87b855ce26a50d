#include "master/registry/registry.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace rz::master {
namespace {

template <typename Message>
absl::StatusOr<Message> Parse(const RegistryRecord& record) {
  Message message;
  if (!message.ParseFromString(record.value)) {
    return absl::DataLossError(absl::StrCat("registry record '", record.key,
                                            "' cannot be parsed as ",
                                            Message::descriptor()->full_name()));
  }
  return message;
}

absl::Status KeyMismatch(const RegistryRecord& record, const std::string& found) {
  return absl::DataLossError(absl::StrCat("registry record '", record.key, "' holds '", found,
                                          "', which belongs under another key"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// RegistryBatch

void RegistryBatch::Put(std::string key, const google::protobuf::Message& value) {
  std::string bytes;
  // Deterministic so a record rewritten unchanged is byte-identical.
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    value.SerializeToCodedStream(&coded);
  }
  for (auto& change : changes_) {
    if (change.first == key) {
      change.second = std::move(bytes);
      return;
    }
  }
  changes_.emplace_back(std::move(key), std::move(bytes));
}

void RegistryBatch::Delete(std::string key) {
  for (auto& change : changes_) {
    if (change.first == key) {
      change.second.reset();
      return;
    }
  }
  changes_.emplace_back(std::move(key), std::nullopt);
}

void RegistryBatch::PutFramework(const v1::RegistryFramework& framework) {
  Put(absl::StrCat(kFrameworkPrefix, framework.info().id()), framework);
}

void RegistryBatch::DeleteFramework(const FrameworkId& id) {
  Delete(absl::StrCat(kFrameworkPrefix, id.value()));
}

void RegistryBatch::PutAgent(const v1::RegistryAgent& agent) {
  Put(absl::StrCat(kAgentPrefix, agent.info().id()), agent);
}

void RegistryBatch::DeleteAgent(const AgentId& id) {
  Delete(absl::StrCat(kAgentPrefix, id.value()));
}

void RegistryBatch::PutWeight(const v1::WeightInfo& weight) {
  Put(absl::StrCat(kWeightPrefix, weight.role()), weight);
}

void RegistryBatch::PutQuota(const v1::QuotaConfig& quota) {
  if (quota.guarantees().empty() && quota.limits().empty()) {
    Delete(absl::StrCat(kQuotaPrefix, quota.role()));
  } else {
    Put(absl::StrCat(kQuotaPrefix, quota.role()), quota);
  }
}

void RegistryBatch::PutMaintenance(const v1::RegistryMaintenance& maintenance) {
  Put(kMaintenanceKey, maintenance);
}

std::string RegistryBatch::Keys() const {
  return absl::StrJoin(changes_, ", ", [](std::string* out, const auto& change) {
    absl::StrAppend(out, change.first);
  });
}

// ---------------------------------------------------------------------------------------------
// Registry

Registry::Registry(EventLoop& loop, EventLoop& worker, RegistryStore& store)
    : loop_(loop), worker_(worker), store_(store) {}

absl::StatusOr<RegistryState> Registry::Recover() {
  absl::StatusOr<std::vector<RegistryRecord>> records = store_.List("");
  if (!records.ok()) {
    return records.status();
  }
  RegistryState state;
  versions_.clear();
  for (const RegistryRecord& record : *records) {
    versions_[record.key] = record.version;
    const std::string& key = record.key;
    if (absl::StartsWith(key, kFrameworkPrefix)) {
      absl::StatusOr<v1::RegistryFramework> framework = Parse<v1::RegistryFramework>(record);
      if (!framework.ok()) {
        return framework.status();
      }
      if (absl::StrCat(kFrameworkPrefix, framework->info().id()) != key) {
        return KeyMismatch(record, framework->info().id());
      }
      state.frameworks.push_back(*std::move(framework));
    } else if (absl::StartsWith(key, kAgentPrefix)) {
      absl::StatusOr<v1::RegistryAgent> agent = Parse<v1::RegistryAgent>(record);
      if (!agent.ok()) {
        return agent.status();
      }
      if (absl::StrCat(kAgentPrefix, agent->info().id()) != key) {
        return KeyMismatch(record, agent->info().id());
      }
      state.agents.push_back(*std::move(agent));
    } else if (absl::StartsWith(key, kWeightPrefix)) {
      absl::StatusOr<v1::WeightInfo> weight = Parse<v1::WeightInfo>(record);
      if (!weight.ok()) {
        return weight.status();
      }
      if (absl::StrCat(kWeightPrefix, weight->role()) != key) {
        return KeyMismatch(record, weight->role());
      }
      state.weights.push_back(*std::move(weight));
    } else if (absl::StartsWith(key, kQuotaPrefix)) {
      absl::StatusOr<v1::QuotaConfig> quota = Parse<v1::QuotaConfig>(record);
      if (!quota.ok()) {
        return quota.status();
      }
      if (absl::StrCat(kQuotaPrefix, quota->role()) != key) {
        return KeyMismatch(record, quota->role());
      }
      state.quotas.push_back(*std::move(quota));
    } else if (key == kMaintenanceKey) {
      absl::StatusOr<v1::RegistryMaintenance> maintenance = Parse<v1::RegistryMaintenance>(record);
      if (!maintenance.ok()) {
        return maintenance.status();
      }
      state.maintenance = *std::move(maintenance);
    } else {
      // A newer release may add records; this one keeps them untouched.
      LOG(WARNING) << "ignoring unknown registry record '" << key << "'";
    }
  }
  return state;
}

size_t RegistryBatch::bytes() const {
  size_t total = 0;
  for (const auto& [key, value] : changes_) {
    total += key.size() + (value.has_value() ? value->size() : 0);
  }
  return total;
}

void Registry::Write(RegistryBatch batch, Done done) {
  DCHECK(loop_.IsLoopThread());
  ++pending_;
  {
    absl::MutexLock lock(&mu_);
    queue_.push_back(Queued{std::move(batch), std::move(done)});
  }
  // One Drain per Write; a Drain that finds the queue empty (an earlier one took its batch)
  // does nothing. Whatever queued while the store was busy goes in one commit.
  worker_.Post([this] { Drain(); });
}

void Registry::Drain() {
  // Everything queued goes in one commit, up to kMaxGroupBytes (ZooKeeper refuses requests
  // over 1 MB): the rest is left for the next Drain (one is posted per Write).
  std::deque<Queued> group;
  {
    absl::MutexLock lock(&mu_);
    size_t bytes = 0;
    while (!queue_.empty()) {
      const size_t size = queue_.front().batch.bytes();
      if (!group.empty() && bytes + size > kMaxGroupBytes) {
        break;
      }
      bytes += size;
      group.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  if (group.empty()) {
    return;
  }
  // Merge in order: a later change of a key replaces an earlier one, and each key expects the
  // version last stored, which is what a sequence of single commits would have expected.
  std::vector<RegistryWrite> writes;
  absl::flat_hash_map<std::string, size_t> index;
  for (const Queued& queued : group) {
    for (const auto& [key, value] : queued.batch.changes_) {
      auto known = versions_.find(key);
      const ExpectedVersion expected = known == versions_.end()
                                           ? ExpectedVersion::Absent()
                                           : ExpectedVersion::Exactly(known->second);
      RegistryWrite write = value.has_value() ? RegistryWrite::Put(key, *value, expected)
                                              : RegistryWrite::Delete(key, expected);
      auto [it, inserted] = index.emplace(key, writes.size());
      if (inserted) {
        writes.push_back(std::move(write));
      } else {
        write.expected = writes[it->second].expected;
        writes[it->second] = std::move(write);
      }
    }
  }
  absl::Status status;
  if (!writes.empty()) {
    absl::StatusOr<std::vector<uint64_t>> versions = store_.Apply(writes);
    if (versions.ok()) {
      for (size_t i = 0; i < writes.size(); ++i) {
        if (writes[i].type == RegistryWrite::Type::kPut) {
          versions_[writes[i].key] = (*versions)[i];
        } else {
          versions_.erase(writes[i].key);
        }
      }
    } else {
      status = versions.status();
      // The store may have applied the batch before failing to say so (a connection lost
      // after a ZooKeeper multi): what it holds now is what later writes must expect.
      for (const RegistryWrite& write : writes) {
        absl::StatusOr<std::optional<RegistryRecord>> current = store_.Get(write.key);
        if (!current.ok()) {
          continue;  // Unreachable still: the next failure tries again.
        }
        if (current->has_value()) {
          versions_[write.key] = (*current)->version;
        } else {
          versions_.erase(write.key);
        }
      }
    }
  }
  for (Queued& queued : group) {
    absl::Status result = status;
    if (!result.ok()) {
      result = absl::Status(
          result.code(),
          absl::StrCat("writing registry records ", queued.batch.Keys(), ": ", status.message()));
    }
    loop_.Post([this, done = std::move(queued.done), result]() mutable {
      --pending_;
      std::move(done)(result);
    });
  }
}

}  // namespace rz::master
