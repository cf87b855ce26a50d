#include "master/snapshot.h"

#include <string>

#include "common/proto_json.h"

namespace rz::master {

std::string RenderJson(const google::protobuf::Message& message) { return ProtoJson(message); }

std::string RenderAgentSummaryJson(const v1::AgentState& agent) {
  std::string json;
  AppendProtoJsonWithout(agent, v1::AgentState::kUsageFieldNumber, &json);
  return json;
}

std::shared_ptr<const v1::State> MasterSnapshot::AsState() const {
  absl::call_once(state_once_, [this] {
    auto state = std::make_shared<v1::State>(*extras);
    *state->mutable_master() = master;
    agents.ForEach([&](const auto& entry) { *state->add_agents() = entry.second->proto(); });
    frameworks.ForEach(
        [&](const auto& entry) { *state->add_frameworks() = entry.second->proto(); });
    for (const FrameworkViewPtr& done : *completed_frameworks) {
      *state->add_completed_frameworks() = done->proto();
    }
    state->mutable_tasks()->Reserve(static_cast<int>(tasks.size()));
    tasks.ForEach([&](const auto& entry) { *state->add_tasks() = entry.second->proto(); });
    for (const TaskViewPtr& done : *completed_tasks) {
      *state->add_completed_tasks() = done->proto();
    }
    offers.ForEach([&](const auto& entry) { *state->add_offers() = entry.second->proto(); });
    state_ = std::move(state);
  });
  return state_;
}

}  // namespace rz::master
