#include "master/snapshot.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_convert.h"
#include "google/protobuf/util/json_util.h"

namespace rz::master {

std::string RenderJson(const google::protobuf::Message& message) {
  // The same options as ProtoJsonResponse, so views splice into the documents it renders.
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  if (auto status = google::protobuf::util::MessageToJsonString(message, &json, options);
      !status.ok()) {
    return ErrorJson(absl::InternalError(
        absl::StrCat("cannot render ", message.GetTypeName(), " as JSON: ", status.ToString())));
  }
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
