// Registry: the master's durable state (DESIGN.md §6) as typed records over a RegistryStore.
// The master decides on its loop, hands the change to Write() and applies it (and answers the
// caller) only in the completion, once it is durable.
//
// Records (keys and messages in proto/rz/v1/registry.proto): one per framework, agent, role
// weight and role quota, and one for maintenance. Recover() reads them all once at start.
//
// Writes: Write() queues a RegistryBatch and returns; the store calls run on `worker`, never on
// the master's loop. Batches that queue up while the store is busy are committed as one store
// Apply (group commit); a failed commit fails every batch in it with the store's error, and
// none of their changes is stored. Completions run on `loop`, in the order of the Write()
// calls. Each write expects the version it last saw of each key (compare-and-set), so a record
// changed behind this registry's back (another master) fails the write with Aborted.
//
// Thread rule: Write() and pending() are loop-only; Recover() blocks and must run before the
// first Write() and not on a loop that the store waits for. The store is used only on `worker`
// (and by Recover()). Destroy the Registry after `worker` has stopped running its closures.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/event_loop.h"
#include "common/ids.h"
#include "google/protobuf/message.h"
#include "master/registry/registry_store.h"
#include "rz/v1/operator.pb.h"
#include "rz/v1/registry.pb.h"

namespace rz::master {

// Key prefixes of the registry's records.
inline constexpr char kFrameworkPrefix[] = "framework/";
inline constexpr char kAgentPrefix[] = "agent/";
inline constexpr char kWeightPrefix[] = "weight/";
inline constexpr char kQuotaPrefix[] = "quota/";
inline constexpr char kMaintenanceKey[] = "maintenance";

// Record changes that are stored together or not at all. Values are serialized when added.
// A later change of the same key in one batch replaces the earlier one.
//
// Thread rule: a value type; hand it over with std::move.
class RegistryBatch {
 public:
  void PutFramework(const v1::RegistryFramework& framework);
  void DeleteFramework(const FrameworkId& id);
  void PutAgent(const v1::RegistryAgent& agent);
  void DeleteAgent(const AgentId& id);
  void PutWeight(const v1::WeightInfo& weight);
  // A config without guarantees and limits deletes the role's quota record.
  void PutQuota(const v1::QuotaConfig& quota);
  void PutMaintenance(const v1::RegistryMaintenance& maintenance);

  bool empty() const { return changes_.empty(); }
  // The keys' and values' size: what a commit of this batch sends.
  size_t bytes() const;
  // The keys changed, for error messages: "framework/f1, agent/a2".
  std::string Keys() const;

 private:
  friend class Registry;
  void Put(std::string key, const google::protobuf::Message& value);
  void Delete(std::string key);

  // Key → serialized value, or nullopt for a delete; in the order first added.
  std::vector<std::pair<std::string, std::optional<std::string>>> changes_;
};

// Everything Recover() found.
struct RegistryState {
  std::vector<v1::RegistryFramework> frameworks;
  std::vector<v1::RegistryAgent> agents;
  std::vector<v1::WeightInfo> weights;
  std::vector<v1::QuotaConfig> quotas;
  v1::RegistryMaintenance maintenance;
};

class Registry {
 public:
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // `loop` runs the completions (the master's loop); `worker` runs the store calls. Neither
  // nor `store` is owned; all must outlive the Registry. In unit tests `worker` may be `loop`.
  Registry(EventLoop& loop, EventLoop& worker, RegistryStore& store);

  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Reads every record. DataLoss names a record that cannot be parsed or whose key does not
  // match its contents; the store's error otherwise. Blocks.
  absl::StatusOr<RegistryState> Recover();

  // Stores `batch`, then runs `done` on the loop with OK, or with the error (the key names and
  // the store's message) if nothing of it was stored. An empty batch completes OK in order.
  void Write(RegistryBatch batch, Done done);

  // Writes handed to Write() whose completion has not run yet.
  size_t pending() const { return pending_; }

 private:
  struct Queued {
    RegistryBatch batch;
    Done done;
  };
  // On the worker: commits what is queued (up to kMaxGroupBytes) as one Apply and posts the
  // completions.
  void Drain();
  static constexpr size_t kMaxGroupBytes = 512 * 1024;

  EventLoop& loop_;
  EventLoop& worker_;
  RegistryStore& store_;
  size_t pending_ = 0;  // Loop-only.

  absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);

  // Worker-only after Recover(): the version this registry last stored of each key (absent:
  // it knows no record), which the next write of the key expects.
  absl::flat_hash_map<std::string, uint64_t> versions_;
};

}  // namespace rz::master
