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
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "common/proto_json.h"
#include "master/master_daemon.h"
#include "master/master_http_util.h"

namespace rz::master {
namespace {

template <typename Request>
void RegisterAction(Master& master, HttpServer& http, const std::string& path,
                    void (Master::*method)(const Request&, Master::Completion)) {
  http.Post(path, [&master, method](const HttpRequest& http_request) {
    auto request = std::make_shared<Request>();
    if (absl::Status status = ParseJsonBody(http_request, request.get()); !status.ok()) {
      return ErrorResponse(status);
    }
    return RunOnLoop<Request>(master, std::move(request), method);
  });
}

}  // namespace

void RegisterMasterHttpActions(Master& master, HttpServer& http) {
  RegisterAction(master, http, "/agents/drain", &Master::DrainAgent);
  RegisterAction(master, http, "/agents/deactivate", &Master::DeactivateAgent);
  RegisterAction(master, http, "/agents/reactivate", &Master::ReactivateAgent);
  RegisterAction(master, http, "/agents/gone", &Master::MarkAgentGone);
  http.Post("/frameworks/teardown", [&master](const HttpRequest& http_request) {
    auto request = std::make_shared<v1::TeardownFrameworkRequest>();
    if (absl::Status status = ParseJsonBody(http_request, request.get()); !status.ok()) {
      return ErrorResponse(status);
    }
    return RunOnLoop(master, [request](Master& m, Master::Completion done) {
      std::move(done)(m.TeardownFramework(*request));
    });
  });
  RegisterAction(master, http, "/machine/down", &Master::StartMaintenance);
  RegisterAction(master, http, "/machine/up", &Master::StopMaintenance);
  http.Get("/maintenance/schedule", [&master](const HttpRequest&) {
    return ProtoJsonResponse(master.maintenance_snapshot()->maintenance_schedule());
  });
  http.Post("/maintenance/schedule", [&master](const HttpRequest& http_request) {
    auto request = std::make_shared<v1::UpdateMaintenanceScheduleRequest>();
    if (absl::Status status = ParseJsonBody(http_request, request->mutable_schedule());
        !status.ok()) {
      return ErrorResponse(status);
    }
    return RunOnLoop<v1::UpdateMaintenanceScheduleRequest>(master, std::move(request),
                                                           &Master::UpdateMaintenanceSchedule);
  });
  http.Get("/maintenance/status", [&master](const HttpRequest&) {
    return ProtoJsonResponse(master.maintenance_snapshot()->maintenance_status());
  });
}

}  // namespace rz::master
