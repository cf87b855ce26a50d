// REST: operator dynamic reservations. POST /reserve and POST /unreserve take a
// ReserveResourcesRequest / UnreserveResourcesRequest (operator.proto) as JSON:
//   {"agent_id": "...", "resources": [{"name": "cpus", "scalar": 1,
//                                      "reservations": [{"role": "eng"}]}]}
// 200 {} on success; 400 for a malformed body or invalid resources, 404 for an unknown agent,
// 409 when the resources are not free (reserve) or not reserved and free (unreserve).
//
// Thread rule: handlers run on HTTP threads; each posts the action to the master's loop and
// waits for its answer (never the other way round).
#include <future>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_convert.h"
#include "google/protobuf/util/json_util.h"
#include "master/master_daemon.h"

namespace rz::master {
namespace {

constexpr auto kActionTimeout = std::chrono::seconds(30);

HttpResponse StatusResponse(const absl::Status& status) {
  if (status.ok()) {
    return HttpResponse{.body = "{}"};
  }
  return HttpResponse{.status = ToHttpCode(status), .body = ErrorJson(status)};
}

template <typename Request>
HttpResponse PostReservation(Master& master, const HttpRequest& http,
                             absl::Status (Master::*method)(const Request&)) {
  auto request = std::make_shared<Request>();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (http.body.empty()) {
    return StatusResponse(absl::InvalidArgumentError(
        absl::StrCat("POST ", http.path, " needs a JSON body with agent_id and resources")));
  }
  if (auto parsed = google::protobuf::util::JsonStringToMessage(http.body, request.get(), options);
      !parsed.ok()) {
    return StatusResponse(absl::InvalidArgumentError(
        absl::StrCat("malformed body of POST ", http.path, ": ", parsed.message().ToString())));
  }
  if (request->agent_id().empty()) {
    return StatusResponse(
        absl::InvalidArgumentError(absl::StrCat("body of POST ", http.path, " names no agent_id")));
  }
  auto result = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> answer = result->get_future();
  master.loop().Post(
      [&master, request, result, method] { result->set_value((master.*method)(*request)); });
  if (answer.wait_for(kActionTimeout) != std::future_status::ready) {
    return StatusResponse(
        absl::DeadlineExceededError("the master did not answer within 30 seconds"));
  }
  return StatusResponse(answer.get());
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
