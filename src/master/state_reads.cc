#include "master/state_reads.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

using Fragments = std::vector<const std::string*>;

// A JSON object: the fields of `base` except those named in `arrays`, plus each array of
// already rendered elements. `base` is small (scalars, master info, bounded extras), so it is
// rendered and re-parsed; the arrays, which hold the bulk, are only concatenated.
std::string Compose(const google::protobuf::Message& base,
                    const std::vector<std::pair<std::string_view, Fragments>>& arrays) {
  nlohmann::json fields = nlohmann::json::parse(RenderJson(base), nullptr,
                                                /*allow_exceptions=*/false);
  if (!fields.is_object()) {
    fields = nlohmann::json::object();
  }
  size_t size = 2;
  for (const auto& [name, elements] : arrays) {
    fields.erase(std::string(name));
    size += name.size() + 6;
    for (const std::string* element : elements) {
      size += element->size() + 1;
    }
  }
  const std::string head = fields.dump();  // "{...}"
  std::string out;
  out.reserve(size + head.size());
  out.append(head, 0, head.size() - 1);
  bool first_field = head.size() == 2;
  for (const auto& [name, elements] : arrays) {
    if (!first_field) {
      out.push_back(',');
    }
    first_field = false;
    out.push_back('"');
    out.append(name);
    out.append("\":[");
    for (size_t i = 0; i < elements.size(); ++i) {
      if (i > 0) {
        out.push_back(',');
      }
      out.append(*elements[i]);
    }
    out.push_back(']');
  }
  out.push_back('}');
  return out;
}

template <typename K, typename V>
Fragments AllJson(const ChunkedMap<K, V>& map) {
  Fragments out;
  out.reserve(map.size());
  map.ForEach([&](const auto& entry) { out.push_back(&entry.second->json()); });
  return out;
}

// The views as /state-summary shows them (agents without usage).
template <typename K, typename V>
Fragments AllSummaryJson(const ChunkedMap<K, V>& map) {
  Fragments out;
  out.reserve(map.size());
  map.ForEach([&](const auto& entry) { out.push_back(&entry.second->summary_json()); });
  return out;
}

template <typename V>
Fragments AllJson(const std::vector<std::shared_ptr<const V>>& views) {
  Fragments out;
  out.reserve(views.size());
  for (const auto& view : views) {
    out.push_back(&view->json());
  }
  return out;
}

// Half-open position ranges of the snapshot's task maps.
struct Range {
  size_t begin = 0;
  size_t end = 0;
};

Range FrameworkRange(const MasterSnapshot& snapshot, const FrameworkId& framework) {
  return {
      snapshot.tasks.PartitionPoint([&](const TaskKey& key) { return key.first < framework; }),
      snapshot.tasks.PartitionPoint([&](const TaskKey& key) { return !(framework < key.first); })};
}

Range AgentRange(const MasterSnapshot& snapshot, const AgentId& agent,
                 const FrameworkId& framework) {
  if (framework.empty()) {
    return {snapshot.tasks_by_agent.PartitionPoint(
                [&](const AgentTaskKey& key) { return key.first < agent; }),
            snapshot.tasks_by_agent.PartitionPoint(
                [&](const AgentTaskKey& key) { return !(agent < key.first); })};
  }
  auto before = [&](const AgentTaskKey& key) {
    return key.first < agent || (key.first == agent && key.second.first < framework);
  };
  auto not_after = [&](const AgentTaskKey& key) {
    return key.first < agent || (key.first == agent && !(framework < key.second.first));
  };
  return {snapshot.tasks_by_agent.PartitionPoint(before),
          snapshot.tasks_by_agent.PartitionPoint(not_after)};
}

// The tasks, completed tasks and offers of `request`'s filters.
bool Matches(const v1::GetStateRequest& request, const std::string& framework_id,
             const std::string& agent_id) {
  return (request.framework_id().empty() || request.framework_id() == framework_id) &&
         (request.agent_id().empty() || request.agent_id() == agent_id);
}

struct StateParts {
  std::vector<AgentViewPtr> agents;
  std::vector<FrameworkViewPtr> frameworks;
  std::vector<FrameworkViewPtr> completed_frameworks;
  std::vector<TaskViewPtr> tasks;
  std::vector<TaskViewPtr> completed_tasks;
  std::vector<OfferViewPtr> offers;
};

// The filtered parts of /state (only used with a filter; the unfiltered state walks the maps).
StateParts FilteredParts(const MasterSnapshot& snapshot, const v1::GetStateRequest& request) {
  StateParts parts;
  const FrameworkId framework(request.framework_id());
  const AgentId agent(request.agent_id());
  if (!agent.empty()) {
    if (AgentViewPtr view = snapshot.agents.Find(agent)) {
      parts.agents.push_back(std::move(view));
    }
  } else {
    snapshot.agents.ForEach([&](const auto& entry) { parts.agents.push_back(entry.second); });
  }
  auto framework_matches = [&](const FrameworkViewPtr& view) {
    return framework.empty() || view->proto().info().id() == framework.value();
  };
  snapshot.frameworks.ForEach([&](const auto& entry) {
    if (framework_matches(entry.second)) {
      parts.frameworks.push_back(entry.second);
    }
  });
  for (const FrameworkViewPtr& done : *snapshot.completed_frameworks) {
    if (framework_matches(done)) {
      parts.completed_frameworks.push_back(done);
    }
  }
  if (!agent.empty()) {
    const Range range = AgentRange(snapshot, agent, framework);
    for (size_t i = range.begin; i < range.end; ++i) {
      parts.tasks.push_back(snapshot.tasks_by_agent.at(i).second);
    }
  } else {
    const Range range = FrameworkRange(snapshot, framework);
    for (size_t i = range.begin; i < range.end; ++i) {
      parts.tasks.push_back(snapshot.tasks.at(i).second);
    }
  }
  for (const TaskViewPtr& done : *snapshot.completed_tasks) {
    if (Matches(request, done->proto().framework_id(), done->proto().agent_id())) {
      parts.completed_tasks.push_back(done);
    }
  }
  snapshot.offers.ForEach([&](const auto& entry) {
    if (Matches(request, entry.second->proto().framework_id(), entry.second->proto().agent_id())) {
      parts.offers.push_back(entry.second);
    }
  });
  return parts;
}

bool Filtered(const v1::GetStateRequest& request) {
  return !request.framework_id().empty() || !request.agent_id().empty();
}

// The snapshot's scalar parts of State: master, counters and the bounded extras.
v1::State StateBase(const MasterSnapshot& snapshot) {
  v1::State base = *snapshot.extras;
  *base.mutable_master() = snapshot.master;
  return base;
}

v1::StateSummary SummaryBase(const MasterSnapshot& snapshot) {
  v1::StateSummary summary;
  *summary.mutable_master() = snapshot.master;
  summary.mutable_counters()->insert(snapshot.counters.begin(), snapshot.counters.end());
  summary.set_task_count(static_cast<int64_t>(snapshot.tasks.size()));
  summary.mutable_tasks_by_state()->insert(snapshot.tasks_by_state.begin(),
                                           snapshot.tasks_by_state.end());
  summary.set_completed_task_count(static_cast<int64_t>(snapshot.completed_tasks->size()));
  summary.set_offer_count(static_cast<int64_t>(snapshot.offers.size()));
  return summary;
}

template <typename V>
Fragments JsonOf(const std::vector<std::shared_ptr<const V>>& views) {
  return AllJson(views);
}

}  // namespace

absl::StatusOr<TasksPage> QueryTasks(const MasterSnapshot& snapshot,
                                     const v1::GetTasksRequest& request) {
  if (request.has_limit() && request.limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit must be a non-negative integer, not ", request.limit()));
  }
  if (request.offset() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("offset must be a non-negative integer, not ", request.offset()));
  }
  TasksPage page;
  page.offset = request.offset();
  page.limit = request.has_limit() ? std::min(request.limit(), kMaxTasksLimit) : kDefaultTasksLimit;
  const FrameworkId framework(request.framework_id());
  const AgentId agent(request.agent_id());
  const bool by_agent = !agent.empty();
  Range range;
  if (by_agent) {
    range = AgentRange(snapshot, agent, framework);
  } else if (!framework.empty()) {
    range = FrameworkRange(snapshot, framework);
  } else {
    range = {0, snapshot.tasks.size()};
  }
  auto at = [&](size_t pos) -> const TaskViewPtr& {
    return by_agent ? snapshot.tasks_by_agent.at(pos).second : snapshot.tasks.at(pos).second;
  };
  if (request.state() == v1::TASK_STATE_UNSPECIFIED) {
    page.total = static_cast<int64_t>(range.end - range.begin);
    const size_t first = range.begin + std::min<size_t>(page.offset, range.end - range.begin);
    const size_t last = std::min<size_t>(first + page.limit, range.end);
    for (size_t i = first; i < last; ++i) {
      page.tasks.push_back(at(i));
    }
    return page;
  }
  // By state: count every match in the range, keep those of the page.
  int64_t seen = 0;
  for (size_t i = range.begin; i < range.end; ++i) {
    const TaskViewPtr& task = at(i);
    if (task->proto().state() != request.state()) {
      continue;
    }
    if (seen >= page.offset && seen < static_cast<int64_t>(page.offset) + page.limit) {
      page.tasks.push_back(task);
    }
    ++seen;
  }
  page.total = seen;
  return page;
}

v1::State StateProto(const MasterSnapshot& snapshot, const v1::GetStateRequest& request) {
  if (!Filtered(request)) {
    return *snapshot.AsState();
  }
  v1::State state = StateBase(snapshot);
  const StateParts parts = FilteredParts(snapshot, request);
  for (const auto& view : parts.agents) {
    *state.add_agents() = view->proto();
  }
  for (const auto& view : parts.frameworks) {
    *state.add_frameworks() = view->proto();
  }
  for (const auto& view : parts.completed_frameworks) {
    *state.add_completed_frameworks() = view->proto();
  }
  for (const auto& view : parts.tasks) {
    *state.add_tasks() = view->proto();
  }
  for (const auto& view : parts.completed_tasks) {
    *state.add_completed_tasks() = view->proto();
  }
  for (const auto& view : parts.offers) {
    *state.add_offers() = view->proto();
  }
  return state;
}

std::string StateJson(const MasterSnapshot& snapshot, const v1::GetStateRequest& request) {
  const v1::State base = StateBase(snapshot);
  if (!Filtered(request)) {
    return Compose(base, {{"agents", AllJson(snapshot.agents)},
                          {"frameworks", AllJson(snapshot.frameworks)},
                          {"completed_frameworks", AllJson(*snapshot.completed_frameworks)},
                          {"tasks", AllJson(snapshot.tasks)},
                          {"completed_tasks", AllJson(*snapshot.completed_tasks)},
                          {"offers", AllJson(snapshot.offers)}});
  }
  const StateParts parts = FilteredParts(snapshot, request);
  return Compose(base, {{"agents", JsonOf(parts.agents)},
                        {"frameworks", JsonOf(parts.frameworks)},
                        {"completed_frameworks", JsonOf(parts.completed_frameworks)},
                        {"tasks", JsonOf(parts.tasks)},
                        {"completed_tasks", JsonOf(parts.completed_tasks)},
                        {"offers", JsonOf(parts.offers)}});
}

v1::StateSummary StateSummaryProto(const MasterSnapshot& snapshot) {
  v1::StateSummary summary = SummaryBase(snapshot);
  snapshot.agents.ForEach([&](const auto& entry) {
    v1::AgentState* agent = summary.add_agents();
    *agent = entry.second->proto();
    agent->clear_usage();  // As in StateSummaryJson: the summary has no usage detail.
  });
  snapshot.frameworks.ForEach(
      [&](const auto& entry) { *summary.add_frameworks() = entry.second->proto(); });
  for (const auto& view : *snapshot.completed_frameworks) {
    *summary.add_completed_frameworks() = view->proto();
  }
  return summary;
}

std::string StateSummaryJson(const MasterSnapshot& snapshot) {
  return Compose(SummaryBase(snapshot),
                 {{"agents", AllSummaryJson(snapshot.agents)},
                  {"frameworks", AllJson(snapshot.frameworks)},
                  {"completed_frameworks", AllJson(*snapshot.completed_frameworks)}});
}

v1::Agents AgentsProto(const MasterSnapshot& snapshot) {
  v1::Agents agents;
  snapshot.agents.ForEach([&](const auto& entry) { *agents.add_agents() = entry.second->proto(); });
  return agents;
}

std::string AgentsJson(const MasterSnapshot& snapshot) {
  return Compose(v1::Agents(), {{"agents", AllJson(snapshot.agents)}});
}

v1::Frameworks FrameworksProto(const MasterSnapshot& snapshot) {
  v1::Frameworks frameworks;
  snapshot.frameworks.ForEach(
      [&](const auto& entry) { *frameworks.add_frameworks() = entry.second->proto(); });
  for (const auto& view : *snapshot.completed_frameworks) {
    *frameworks.add_completed_frameworks() = view->proto();
  }
  return frameworks;
}

std::string FrameworksJson(const MasterSnapshot& snapshot) {
  return Compose(v1::Frameworks(),
                 {{"frameworks", AllJson(snapshot.frameworks)},
                  {"completed_frameworks", AllJson(*snapshot.completed_frameworks)}});
}

v1::Tasks TasksProto(const TasksPage& page) {
  v1::Tasks tasks;
  for (const TaskViewPtr& task : page.tasks) {
    *tasks.add_tasks() = task->proto();
  }
  tasks.set_total(page.total);
  tasks.set_offset(page.offset);
  tasks.set_limit(page.limit);
  return tasks;
}

std::string TasksJson(const TasksPage& page) {
  v1::Tasks base;
  base.set_total(page.total);
  base.set_offset(page.offset);
  base.set_limit(page.limit);
  return Compose(base, {{"tasks", AllJson(page.tasks)}});
}

v1::Flags FlagsProto(const std::map<std::string, std::string>& flags) {
  v1::Flags out;
  for (const auto& [name, value] : flags) {
    const std::string lower = absl::AsciiStrToLower(name);
    bool secret = false;
    for (const char* word : {"password", "secret", "token", "credential", "key"}) {
      secret = secret || absl::StrContains(lower, word);
    }
    (*out.mutable_flags())[name] = secret && !value.empty() ? "***" : value;
  }
  return out;
}

}  // namespace rz::master
