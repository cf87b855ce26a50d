// The master's REST actions on agents, frameworks and maintenance (the Operator RPCs of the same
// names, same messages through the protobuf JSON mapping):
//
//   POST /agents/drain        DrainAgentRequest     {"agent_id", "max_grace_period_seconds",
//                                                    "mark_gone"}
//   POST /agents/deactivate   DeactivateAgentRequest {"agent_id"}
//   POST /agents/reactivate   ReactivateAgentRequest {"agent_id"}
//   POST /agents/gone         MarkAgentGoneRequest   {"agent_id"}
//   POST /frameworks/teardown TeardownFrameworkRequest {"framework_id"}
//   GET  /maintenance/schedule                       MaintenanceSchedule
//   POST /maintenance/schedule MaintenanceSchedule (replaces the schedule)
//   GET  /maintenance/status                         MaintenanceStatus
//   POST /machine/down        StartMaintenanceRequest {"machines": [{"hostname", "ip"}]}
//   POST /machine/up          StopMaintenanceRequest  {"machines": [...]}
//
// Actions answer 200 with {} or a JSON error {"code", "message"}: 400 for a malformed body,
// 404 for an unknown agent or framework, 409 when the target's state forbids the action.
//
// Thread rule: handlers run on HTTP threads. An action parses its body there, posts the Master
// call to the loop and waits (bounded) for its answer; the loop never waits on HTTP. Reads use
// the published snapshot.
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/proto_json.h"
#include "common/status_convert.h"
#include "google/protobuf/util/json_util.h"
#include "master/master_daemon.h"

namespace rz::master {
namespace {

// How long an HTTP thread waits for the loop before answering 503.
constexpr auto kActionTimeout = std::chrono::seconds(30);

HttpResponse ErrorResponse(const absl::Status& status) {
  return HttpResponse{.status = ToHttpCode(status), .body = ErrorJson(status)};
}

template <typename Request>
absl::Status ParseBody(const HttpRequest& http, Request* request) {
  if (http.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("POST ", http.path, " needs a JSON body (",
                                                   Request::descriptor()->name(), ")"));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (auto status = google::protobuf::util::JsonStringToMessage(http.body, request, options);
      !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("malformed ", Request::descriptor()->name(),
                                                   " body: ", std::string(status.message())));
  }
  return absl::OkStatus();
}

// Runs `call` on the master's loop and answers with its status.
HttpResponse RunOnLoop(Master& master, std::function<absl::Status(Master&)> call) {
  auto done = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> result = done->get_future();
  master.loop().Post([&master, call = std::move(call), done] { done->set_value(call(master)); });
  if (result.wait_for(kActionTimeout) != std::future_status::ready) {
    return ErrorResponse(absl::UnavailableError("the master did not answer in time"));
  }
  absl::Status status = result.get();
  if (!status.ok()) {
    return ErrorResponse(status);
  }
  return HttpResponse{.body = "{}"};
}

template <typename Request>
void RegisterAction(Master& master, HttpServer& http, const std::string& path,
                    absl::Status (Master::*method)(const Request&)) {
  http.Post(path, [&master, method](const HttpRequest& http_request) {
    auto request = std::make_shared<Request>();
    if (absl::Status status = ParseBody(http_request, request.get()); !status.ok()) {
      return ErrorResponse(status);
    }
    return RunOnLoop(master, [request, method](Master& m) { return (m.*method)(*request); });
  });
}

}  // namespace

void RegisterMasterHttpActions(Master& master, HttpServer& http) {
  RegisterAction(master, http, "/agents/drain", &Master::DrainAgent);
  RegisterAction(master, http, "/agents/deactivate", &Master::DeactivateAgent);
  RegisterAction(master, http, "/agents/reactivate", &Master::ReactivateAgent);
  RegisterAction(master, http, "/agents/gone", &Master::MarkAgentGone);
  RegisterAction(master, http, "/frameworks/teardown", &Master::TeardownFramework);
  RegisterAction(master, http, "/machine/down", &Master::StartMaintenance);
  RegisterAction(master, http, "/machine/up", &Master::StopMaintenance);
  http.Get("/maintenance/schedule", [&master](const HttpRequest&) {
    return ProtoJsonResponse(master.maintenance_snapshot()->maintenance_schedule());
  });
  http.Post("/maintenance/schedule", [&master](const HttpRequest& http_request) {
    auto request = std::make_shared<v1::UpdateMaintenanceScheduleRequest>();
    if (absl::Status status = ParseBody(http_request, request->mutable_schedule()); !status.ok()) {
      return ErrorResponse(status);
    }
    return RunOnLoop(master,
                     [request](Master& m) { return m.UpdateMaintenanceSchedule(*request); });
  });
  http.Get("/maintenance/status", [&master](const HttpRequest&) {
    return ProtoJsonResponse(master.maintenance_snapshot()->maintenance_status());
  });
}

}  // namespace rz::master
