// Helpers shared by the master's REST handlers (master_http*.cc): JSON bodies, error answers,
// and running an action on the master's loop.
//
// Thread rule: called on HTTP threads. RunOnLoop posts to the loop and blocks the HTTP thread
// (never the loop) until the action completes.
#pragma once

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/http_server.h"
#include "google/protobuf/util/json_util.h"
#include "master/master.h"

namespace rz::master {

// {"code", "message"} with the HTTP status of `status`.
HttpResponse ErrorResponse(const absl::Status& status);

// Parses the request's JSON body into `request`: InvalidArgument for an empty body, unknown
// fields or malformed JSON, naming the request type.
template <typename Request>
absl::Status ParseJsonBody(const HttpRequest& http, Request* request) {
  if (http.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        http.method, " ", http.path, " needs a JSON body (", Request::descriptor()->name(), ")"));
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

// Runs `call` on the master's loop and answers {} or the error it completes with (once the
// change is stored and applied); 503 if the master does not answer within 30 seconds or stops.
HttpResponse RunOnLoop(Master& master, std::function<void(Master&, Master::Completion)> call);

// RunOnLoop for an action method of the master.
template <typename Request>
HttpResponse RunOnLoop(Master& master, std::shared_ptr<const Request> request,
                       void (Master::*method)(const Request&, Master::Completion)) {
  return RunOnLoop(master, [request, method](Master& m, Master::Completion done) {
    (m.*method)(*request, std::move(done));
  });
}

}  // namespace rz::master
