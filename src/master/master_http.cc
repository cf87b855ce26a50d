// The master's REST read endpoints and the weight and quota updates:
//
//   GET /state?framework_id=&agent_id=   State (filters restrict agents, frameworks, tasks,
//                                         completed tasks and offers to the one named)
//   GET /state-summary                   StateSummary (no task detail)
//   GET /agents                          Agents
//   GET /frameworks                      Frameworks
//   GET /tasks?limit=&offset=&framework_id=&agent_id=&state=   Tasks (a page; see state_reads.h)
//   GET /roles                           Roles
//   GET /weights, PUT /weights           {"weights": [WeightInfo]}, UpdateWeightsRequest
//   GET /quota, PUT /quota               {"quotas": [QuotaConfig]}, UpdateQuotaRequest
//   GET /health, /version, /flags
//   GET /redirect                        307 to the leading master (this one, while standalone)
//
// Errors are {"code": "<CODE>", "message": "..."} with the matching HTTP status: 400 for bad
// query parameters or bodies, 404 for unknown paths, 405 for wrong methods, 409 for a quota
// below consumption without force, 503 when the loop does not answer an update in time.
//
// Thread rule: handlers run on HTTP threads. Reads render the published snapshot there (views
// carry their JSON, rendered once) and never touch the loop; updates parse their body there,
// post the call to the loop and wait (bounded) for its answer.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/proto_json.h"
#include "common/status_convert.h"
#include "common/status_macros.h"
#include "common/version.h"
#include "google/protobuf/util/json_util.h"
#include "master/master_daemon.h"
#include "master/master_http_util.h"
#include "master/metrics.h"
#include "master/state_reads.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

constexpr char kIndex[] = R"(<!doctype html>
<html><head><meta charset="utf-8"><title>rechenzentrum master</title></head>
<body><h1>rechenzentrum master</h1>
<p>The web UI arrives in a later release. REST endpoints (see docs/api.md):</p>
<ul>
<li><a href="/health">/health</a></li>
<li><a href="/version">/version</a></li>
<li><a href="/state-summary">/state-summary</a></li>
<li><a href="/state">/state</a></li>
<li><a href="/agents">/agents</a></li>
<li><a href="/frameworks">/frameworks</a></li>
<li><a href="/tasks">/tasks</a></li>
<li><a href="/roles">/roles</a></li>
<li><a href="/weights">/weights</a></li>
<li><a href="/quota">/quota</a></li>
<li><a href="/flags">/flags</a></li>
<li><a href="/metrics">/metrics</a></li>
</ul></body></html>
)";

HttpResponse Error(const absl::Status& status) {
  return HttpResponse{.status = ToHttpCode(status), .body = ErrorJson(status)};
}

HttpResponse Json(std::string body) { return HttpResponse{.body = std::move(body)}; }

// InvalidArgument naming the first query parameter not in `known`.
absl::Status CheckParams(const HttpRequest& request, std::initializer_list<const char*> known) {
  for (const auto& [name, value] : request.params) {
    bool ok = false;
    for (const char* k : known) {
      ok = ok || name == k;
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          known.size() == 0
              ? absl::StrCat(request.path, " takes no query parameters, got '", name, "'")
              : absl::StrCat("unknown query parameter '", name, "' for ", request.path,
                             " (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

// A non-negative integer parameter; values above INT32_MAX are clamped (a limit is clamped
// further by QueryTasks).
absl::Status ParseCount(const HttpRequest& request, const char* name, std::optional<int32_t>* out) {
  auto it = request.params.find(name);
  if (it == request.params.end()) {
    return absl::OkStatus();
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < 0) {
    // SimpleAtoi also fails on values beyond int64: accept long digit strings as "huge".
    const bool digits =
        !it->second.empty() && it->second.find_first_not_of("0123456789") == std::string::npos;
    if (!digits) {
      return absl::InvalidArgumentError(absl::StrCat(
          "query parameter '", name, "' must be a non-negative integer, not '", it->second, "'"));
    }
    value = INT32_MAX;
  }
  *out = static_cast<int32_t>(std::min<int64_t>(value, INT32_MAX));
  return absl::OkStatus();
}

// TASK_RUNNING, task_running or running.
absl::StatusOr<v1::TaskState> ParseTaskState(const std::string& text) {
  std::string name = absl::AsciiStrToUpper(text);
  if (name.rfind("TASK_", 0) != 0) {
    name = absl::StrCat("TASK_", name);
  }
  v1::TaskState state;
  if (!v1::TaskState_Parse(name, &state) || state == v1::TASK_STATE_UNSPECIFIED) {
    std::vector<std::string> names;
    for (int i = 1; i < v1::TaskState_descriptor()->value_count(); ++i) {
      names.push_back(v1::TaskState_descriptor()->value(i)->name());
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown task state '", text, "' (known: ", absl::StrJoin(names, ", "), ")"));
  }
  return state;
}

absl::StatusOr<v1::GetTasksRequest> ParseTasksRequest(const HttpRequest& http) {
  RZ_RETURN_IF_ERROR(CheckParams(http, {"limit", "offset", "framework_id", "agent_id", "state"}));
  v1::GetTasksRequest request;
  std::optional<int32_t> limit;
  std::optional<int32_t> offset;
  RZ_RETURN_IF_ERROR(ParseCount(http, "limit", &limit));
  RZ_RETURN_IF_ERROR(ParseCount(http, "offset", &offset));
  if (limit.has_value()) {
    request.set_limit(*limit);
  }
  request.set_offset(offset.value_or(0));
  if (auto it = http.params.find("framework_id"); it != http.params.end()) {
    request.set_framework_id(it->second);
  }
  if (auto it = http.params.find("agent_id"); it != http.params.end()) {
    request.set_agent_id(it->second);
  }
  if (auto it = http.params.find("state"); it != http.params.end()) {
    RZ_ASSIGN_OR_RETURN(v1::TaskState state, ParseTaskState(it->second));
    request.set_state(state);
  }
  return request;
}

}  // namespace

void RegisterMasterHttp(Master& master, HttpServer& http,
                        const std::map<std::string, std::string>& flags) {
  http.Get("/", [](const HttpRequest&) {
    return HttpResponse{.content_type = "text/html; charset=utf-8", .body = kIndex};
  });
  http.Get("/health", [](const HttpRequest&) {
    return Json(nlohmann::json({{"healthy", true}, {"version", kVersion}}).dump());
  });
  http.Get("/version", [](const HttpRequest&) {
    v1::Version version;
    version.set_version(kVersion);
    return Json(RenderJson(version));
  });
  http.Get("/flags",
           [shown = FlagsProto(flags)](const HttpRequest&) { return Json(RenderJson(shown)); });
  http.Get("/redirect", [&master](const HttpRequest&) {
    // Standalone, this master leads; the HA issue points this at the elected leader.
    const std::string& leader = master.state()->master.http_address();
    if (leader.empty()) {
      return Error(absl::UnavailableError("no leading master is known yet"));
    }
    HttpResponse response{.status = 307, .body = nlohmann::json({{"location", leader}}).dump()};
    response.headers["Location"] = leader;
    return response;
  });
  http.Get("/state", [&master](const HttpRequest& http_request) {
    if (absl::Status status = CheckParams(http_request, {"framework_id", "agent_id"});
        !status.ok()) {
      return Error(status);
    }
    v1::GetStateRequest request;
    if (auto it = http_request.params.find("framework_id"); it != http_request.params.end()) {
      request.set_framework_id(it->second);
    }
    if (auto it = http_request.params.find("agent_id"); it != http_request.params.end()) {
      request.set_agent_id(it->second);
    }
    return Json(StateJson(*master.state(), request));
  });
  http.Get("/state-summary", [&master](const HttpRequest& http_request) {
    if (absl::Status status = CheckParams(http_request, {}); !status.ok()) {
      return Error(status);
    }
    return Json(StateSummaryJson(*master.state()));
  });
  http.Get("/agents", [&master](const HttpRequest&) { return Json(AgentsJson(*master.state())); });
  http.Get("/frameworks",
           [&master](const HttpRequest&) { return Json(FrameworksJson(*master.state())); });
  http.Get("/tasks", [&master](const HttpRequest& http_request) {
    absl::StatusOr<v1::GetTasksRequest> request = ParseTasksRequest(http_request);
    if (!request.ok()) {
      return Error(request.status());
    }
    absl::StatusOr<TasksPage> page = QueryTasks(*master.state(), *request);
    if (!page.ok()) {
      return Error(page.status());
    }
    return Json(TasksJson(*page));
  });
  http.Get("/roles",
           [&master](const HttpRequest&) { return Json(RenderJson(*master.state()->roles)); });
  http.Get("/weights", [&master](const HttpRequest&) {
    v1::UpdateWeightsRequest weights;
    for (const v1::RoleInfo& role : master.state()->roles->roles()) {
      v1::WeightInfo* weight = weights.add_weights();
      weight->set_role(role.role());
      weight->set_weight(role.weight());
    }
    return Json(RenderJson(weights));
  });
  http.Put("/weights", [&master](const HttpRequest& http_request) {
    auto request = std::make_shared<v1::UpdateWeightsRequest>();
    if (absl::Status status = ParseJsonBody(http_request, request.get()); !status.ok()) {
      return Error(status);
    }
    return RunOnLoop(master, [request](Master& m, Master::Completion done) {
      m.UpdateWeights(*request, std::move(done));
    });
  });
  http.Get("/quota", [&master](const HttpRequest&) {
    v1::UpdateQuotaRequest quotas;
    for (const v1::RoleInfo& role : master.state()->roles->roles()) {
      if (role.quota().guarantees_size() > 0 || role.quota().limits_size() > 0) {
        v1::QuotaConfig* quota = quotas.add_quotas();
        *quota = role.quota();
        quota->set_role(role.role());
      }
    }
    quotas.clear_force();
    nlohmann::json body = nlohmann::json::parse(RenderJson(quotas), nullptr, false);
    if (body.is_object()) {
      body.erase("force");  // A request field, meaningless in the answer.
    }
    return Json(body.dump());
  });
  http.Put("/quota", [&master](const HttpRequest& http_request) {
    auto request = std::make_shared<v1::UpdateQuotaRequest>();
    if (absl::Status status = ParseJsonBody(http_request, request.get()); !status.ok()) {
      return Error(status);
    }
    return RunOnLoop(master, [request](Master& m, Master::Completion done) {
      m.UpdateQuota(*request, std::move(done));
    });
  });
  RegisterMasterHttpActions(master, http);  // H4
  RegisterMetricsHttp(master, http);
  RegisterReservationHttp(master, http);  // master_http_reservations.cc
  RegisterEventsHttp(master, http);       // master_http_events.cc
}

}  // namespace rz::master
