// REST: operator dynamic reservations. POST /reserve and POST /unreserve take a
// ReserveResourcesRequest / UnreserveResourcesRequest (operator.proto) as JSON:
//   {"agent_id": "...", "resources": [{"name": "cpus", "scalar": 1,
//                                      "reservations": [{"role": "eng"}]}]}
// 200 {} on success; 400 for a malformed body or invalid resources, 404 for an unknown agent,
// 409 when the resources are not free (reserve) or not reserved and free (unreserve).
//
// Thread rule: handlers run on HTTP threads; each posts the action to the master's loop and
// waits for its answer (never the other way round).
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "master/master_daemon.h"
#include "master/master_http_util.h"

namespace rz::master {
namespace {

template <typename Request>
HttpResponse PostReservation(Master& master, const HttpRequest& http,
                             void (Master::*method)(const Request&, Master::Completion)) {
  auto request = std::make_shared<Request>();
  if (absl::Status status = ParseJsonBody(http, request.get()); !status.ok()) {
    return ErrorResponse(status);
  }
  if (request->agent_id().empty()) {
    return ErrorResponse(
        absl::InvalidArgumentError(absl::StrCat("body of POST ", http.path, " names no agent_id")));
  }
  return RunOnLoop<Request>(master, std::move(request), method);
}

}  // namespace

void RegisterReservationHttp(Master& master, HttpServer& http) {
  http.Post("/reserve", [&master](const HttpRequest& request) {
    return PostReservation(master, request, &Master::ReserveResources);
  });
  http.Post("/unreserve", [&master](const HttpRequest& request) {
    return PostReservation(master, request, &Master::UnreserveResources);
  });
}

}  // namespace rz::master
