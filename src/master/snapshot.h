// The master's published state, built so that publishing costs what changed and reading never
// waits on the loop.
//
// Every task, agent, framework and offer is an immutable View (its proto plus its JSON, rendered
// once, on first use, by whichever reader thread needs it). A MasterSnapshot holds the views in
// ChunkedMaps: sorted maps cut into chunks that consecutive snapshots share, so publishing a
// batch in which k entities changed copies O(k) chunks plus an O(n / kChunk) spine instead of the
// whole state. Tasks are kept sorted by (framework_id, task_id) and a second time by
// (agent_id, framework_id, task_id), so a page of /tasks, with or without a framework or agent
// filter, is found by binary search and renders only its own tasks.
//
// Thread rule: a published MasterSnapshot is immutable and may be read from any thread.
// ChunkedMap mutation (the loop, while building the next snapshot) never changes a chunk that a
// published snapshot still holds: such chunks are copied first.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "common/ids.h"
#include "common/resources.h"
#include "google/protobuf/message.h"
#include "rz/v1/common.pb.h"
#include "rz/v1/operator.pb.h"

namespace rz::master {

// The protobuf JSON mapping every master endpoint uses (proto field names, defaults printed),
// rendered by AppendProtoJson (common/proto_json.h).
std::string RenderJson(const google::protobuf::Message& message);

// An agent as /state-summary shows it: without its `usage` statistics (most of an agent's
// JSON; /agents and /state keep them).
std::string RenderAgentSummaryJson(const v1::AgentState& agent);

template <typename Proto>
class View {
 public:
  explicit View(Proto proto) : proto_(std::move(proto)) {}
  View(const View&) = delete;
  View& operator=(const View&) = delete;

  const Proto& proto() const { return proto_; }
  // Rendered on the first call, then shared by every reader of every snapshot holding the view.
  const std::string& json() const {
    absl::call_once(once_, [this] { json_ = RenderJson(proto_); });
    return json_;
  }
  // The view's JSON in /state-summary, cached the same way: agents without `usage`, every other
  // entity as json().
  const std::string& summary_json() const {
    if constexpr (std::is_same_v<Proto, v1::AgentState>) {
      absl::call_once(summary_once_, [this] { summary_json_ = RenderAgentSummaryJson(proto_); });
      return summary_json_;
    } else {
      return json();
    }
  }

 private:
  const Proto proto_;
  mutable absl::once_flag once_;
  mutable std::string json_;
  mutable absl::once_flag summary_once_;
  mutable std::string summary_json_;
};

using TaskView = View<v1::Task>;
using AgentView = View<v1::AgentState>;
using FrameworkView = View<v1::FrameworkState>;
using OfferView = View<v1::Offer>;
using TaskViewPtr = std::shared_ptr<const TaskView>;
using AgentViewPtr = std::shared_ptr<const AgentView>;
using FrameworkViewPtr = std::shared_ptr<const FrameworkView>;
using OfferViewPtr = std::shared_ptr<const OfferView>;

using TaskKey = std::pair<FrameworkId, TaskId>;
using AgentTaskKey = std::pair<AgentId, TaskKey>;

// A sorted map K → shared_ptr<const V> whose copies share unchanged chunks.
template <typename K, typename V>
class ChunkedMap {
 public:
  using Value = std::shared_ptr<const V>;
  using Entry = std::pair<K, Value>;

  size_t size() const { return ends_.empty() ? 0 : ends_.back(); }
  bool empty() const { return size() == 0; }

  // The entry at sorted position `pos` (< size()). Valid after Freeze().
  const Entry& at(size_t pos) const {
    const size_t chunk = std::upper_bound(ends_.begin(), ends_.end(), pos) - ends_.begin();
    const size_t start = chunk == 0 ? 0 : ends_[chunk - 1];
    return chunks_[chunk]->at(pos - start);
  }

  // The position of the first entry for which `before(key)` is false, `before` being true for
  // a prefix of the sorted keys (e.g. `key < x`). Valid after Freeze().
  template <typename Pred>
  size_t PartitionPoint(Pred before) const {
    const auto chunk_it = std::partition_point(
        chunks_.begin(), chunks_.end(),
        [&](const std::shared_ptr<Chunk>& chunk) { return before(chunk->back().first); });
    if (chunk_it == chunks_.end()) {
      return size();
    }
    const size_t chunk = chunk_it - chunks_.begin();
    const size_t start = chunk == 0 ? 0 : ends_[chunk - 1];
    const Chunk& entries = **chunk_it;
    return start + (std::partition_point(entries.begin(), entries.end(),
                                         [&](const Entry& entry) { return before(entry.first); }) -
                    entries.begin());
  }

  Value Find(const K& key) const {
    const auto chunk_it = std::partition_point(
        chunks_.begin(), chunks_.end(),
        [&](const std::shared_ptr<Chunk>& chunk) { return chunk->back().first < key; });
    if (chunk_it == chunks_.end()) {
      return nullptr;
    }
    const Chunk& entries = **chunk_it;
    auto it = std::partition_point(entries.begin(), entries.end(),
                                   [&](const Entry& entry) { return entry.first < key; });
    return it != entries.end() && it->first == key ? it->second : nullptr;
  }

  // Visits entries in key order.
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& chunk : chunks_) {
      for (const Entry& entry : *chunk) {
        f(entry);
      }
    }
  }

  // Inserts or replaces. Loop only; call Freeze() before publishing.
  void Set(const K& key, Value value) {
    if (chunks_.empty()) {
      chunks_.push_back(std::make_shared<Chunk>(1, Entry(key, std::move(value))));
      return;
    }
    size_t chunk = std::partition_point(chunks_.begin(), chunks_.end(),
                                        [&](const std::shared_ptr<Chunk>& c) {
                                          return !c->empty() && c->back().first < key;
                                        }) -
                   chunks_.begin();
    if (chunk == chunks_.size()) {
      --chunk;  // Past every key: append to the last chunk.
    }
    Chunk& entries = Own(chunk);
    auto it = std::partition_point(entries.begin(), entries.end(),
                                   [&](const Entry& entry) { return entry.first < key; });
    if (it != entries.end() && it->first == key) {
      it->second = std::move(value);
      return;
    }
    entries.insert(it, Entry(key, std::move(value)));
    if (entries.size() >= 2 * kChunk) {
      auto tail = std::make_shared<Chunk>(entries.begin() + kChunk, entries.end());
      entries.resize(kChunk);
      chunks_.insert(chunks_.begin() + chunk + 1, std::move(tail));
    }
  }

  void Erase(const K& key) {
    const size_t chunk = std::partition_point(chunks_.begin(), chunks_.end(),
                                              [&](const std::shared_ptr<Chunk>& c) {
                                                return !c->empty() && c->back().first < key;
                                              }) -
                         chunks_.begin();
    if (chunk == chunks_.size()) {
      return;
    }
    {
      const Chunk& entries = *chunks_[chunk];
      auto it = std::partition_point(entries.begin(), entries.end(),
                                     [&](const Entry& entry) { return entry.first < key; });
      if (it == entries.end() || !(it->first == key)) {
        return;
      }
    }
    Chunk& entries = Own(chunk);
    entries.erase(std::partition_point(entries.begin(), entries.end(),
                                       [&](const Entry& entry) { return entry.first < key; }));
    if (entries.empty()) {
      chunks_.erase(chunks_.begin() + chunk);
    }
  }

  // Recomputes positions after mutations.
  void Freeze() {
    ends_.resize(chunks_.size());
    size_t total = 0;
    for (size_t i = 0; i < chunks_.size(); ++i) {
      total += chunks_[i]->size();
      ends_[i] = total;
    }
  }

 private:
  static constexpr size_t kChunk = 256;
  using Chunk = std::vector<Entry>;

  // The chunk, copied first if another map (a published snapshot) shares it. A use count of 1
  // means no other map holds it, and none can get it but through this one.
  Chunk& Own(size_t chunk) {
    if (chunks_[chunk].use_count() > 1) {
      chunks_[chunk] = std::make_shared<Chunk>(*chunks_[chunk]);
    }
    return *chunks_[chunk];
  }

  std::vector<std::shared_ptr<Chunk>> chunks_;  // None empty.
  std::vector<size_t> ends_;                    // Cumulative sizes, set by Freeze().
};

// One published state of the master.
struct MasterSnapshot {
  v1::MasterInfo master;
  ChunkedMap<AgentId, AgentView> agents;
  ChunkedMap<FrameworkId, FrameworkView> frameworks;
  // Active tasks (not yet removed into the completed history), by (framework_id, task_id).
  ChunkedMap<TaskKey, TaskView> tasks;
  // The same task views by (agent_id, framework_id, task_id).
  ChunkedMap<AgentTaskKey, TaskView> tasks_by_agent;
  ChunkedMap<OfferId, OfferView> offers;
  // Terminal tasks and removed frameworks, most recent last, bounded.
  std::shared_ptr<const std::vector<TaskViewPtr>> completed_tasks =
      std::make_shared<std::vector<TaskViewPtr>>();
  std::shared_ptr<const std::vector<FrameworkViewPtr>> completed_frameworks =
      std::make_shared<std::vector<FrameworkViewPtr>>();
  // Active tasks by state name (e.g. "TASK_RUNNING").
  std::map<std::string, int64_t> tasks_by_state;
  std::map<std::string, int64_t> counters;
  // The bounded remainder of v1::State that has no view of its own (gone agents, maintenance);
  // its agents, frameworks, tasks and offers fields stay empty.
  std::shared_ptr<const v1::State> extras = std::make_shared<v1::State>();
  std::shared_ptr<const v1::Roles> roles = std::make_shared<v1::Roles>();
  // What building this snapshot cost the loop.
  absl::Duration publish_duration;

  // The whole state as one message, built on first use (on the calling thread) and cached.
  std::shared_ptr<const v1::State> AsState() const;

 private:
  mutable absl::once_flag state_once_;
  mutable std::shared_ptr<const v1::State> state_;
};

// What changed between two consecutive snapshots: (before, after) views; a null before is an
// addition, a null after a removal. Several changes of one entity in one loop batch coalesce.
struct SnapshotDelta {
  std::vector<std::pair<TaskViewPtr, TaskViewPtr>> tasks;
  std::vector<std::pair<AgentViewPtr, AgentViewPtr>> agents;
  std::vector<std::pair<FrameworkViewPtr, FrameworkViewPtr>> frameworks;
};

// The loop's side of publication: the maps of the next snapshot, what changed since the last
// one, and the sums kept incrementally so publishing never walks every task or offer.
// Thread rule: loop only.
struct SnapshotBuilder {
  ChunkedMap<AgentId, AgentView> agents;
  ChunkedMap<FrameworkId, FrameworkView> frameworks;
  ChunkedMap<TaskKey, TaskView> tasks;
  ChunkedMap<AgentTaskKey, TaskView> tasks_by_agent;
  ChunkedMap<OfferId, OfferView> offers;
  std::shared_ptr<const std::vector<TaskViewPtr>> completed_tasks =
      std::make_shared<std::vector<TaskViewPtr>>();
  std::shared_ptr<const std::vector<FrameworkViewPtr>> completed_frameworks =
      std::make_shared<std::vector<FrameworkViewPtr>>();

  // Changed since the last publication.
  absl::btree_set<TaskKey> dirty_tasks;
  absl::flat_hash_set<AgentId> dirty_agents;
  absl::flat_hash_set<FrameworkId> dirty_frameworks;
  absl::flat_hash_set<OfferId> dirty_offers;
  bool history_dirty = false;
  bool all_dirty = true;  // The first publication builds everything.

  // What a task (while not terminal) or an offer adds to the used / offered sums, as of the
  // last publication.
  struct Share {
    AgentId agent;
    FrameworkId framework;
    std::string role;
    Resources resources;
  };
  absl::flat_hash_map<TaskKey, Share> task_shares;
  absl::flat_hash_map<OfferId, Share> offer_shares;
  absl::flat_hash_map<AgentId, Resources> agent_used;
  absl::flat_hash_map<AgentId, Resources> agent_offered;
  absl::flat_hash_map<FrameworkId, Resources> framework_used;
  absl::flat_hash_map<FrameworkId, Resources> framework_offered;
  absl::flat_hash_map<std::string, Resources> role_offered;
  std::map<std::string, int64_t> tasks_by_state;

  std::vector<std::function<void(const SnapshotDelta&)>> observers;
};

}  // namespace rz::master
