#include "master/standby.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/master_detector.h"
#include "common/status_convert.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

// Percent-encodes all but RFC 3986's unreserved characters.
std::string QueryEscape(const std::string& text) {
  std::string out;
  for (const unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

void KnownLeader::Set(std::optional<v1::MasterInfo> leader) {
  absl::MutexLock lock(&mu_);
  leader_ = std::move(leader);
}

std::optional<v1::MasterInfo> KnownLeader::Get() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

grpc::ServerGenericBidiReactor* StandbyGrpcService::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  // Finished at once; deletes itself when gRPC is done with it.
  class Refusal : public grpc::ServerGenericBidiReactor {
   public:
    Refusal(grpc::GenericCallbackServerContext* context,
            const std::optional<v1::MasterInfo>& leader) {
      std::string message = "this master is not the leader; no leading master is known yet";
      if (leader.has_value() && !leader->grpc_address().empty()) {
        context->AddTrailingMetadata(kLeaderMetadataKey, leader->grpc_address());
        message = absl::StrCat("this master is not the leader; the leader is at ",
                               leader->grpc_address());
      }
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, message));
    }
    void OnDone() override { delete this; }
  };
  return new Refusal(context, leader_.Get());
}

void KnownLeader::SetSelf(std::string http_address) {
  absl::MutexLock lock(&mu_);
  self_ = std::move(http_address);
}

std::string KnownLeader::self() const {
  absl::MutexLock lock(&mu_);
  return self_;
}

std::optional<HttpResponse> StandbyHttpAnswer(const KnownLeader& leader,
                                              const HttpRequest& request) {
  // About this process, whichever master leads.
  if (request.path == "/health" || request.path == "/version" || request.path == "/flags" ||
      request.path == "/metrics" || request.path == "/metrics/snapshot") {
    return std::nullopt;
  }
  const std::optional<v1::MasterInfo> known = leader.Get();
  if (!known.has_value() || known->http_address().empty()) {
    return HttpResponse{
        .status = 503,
        .body = ErrorJson(absl::UnavailableError(
            "this master is not the leader and no leading master is known yet; retry"))};
  }
  if (known->http_address() == leader.self()) {
    return HttpResponse{.status = 503,
                        .body = ErrorJson(absl::UnavailableError(
                            "this master was just elected and is taking over; retry"))};
  }
  std::string location = known->http_address();
  if (request.path != "/redirect") {
    absl::StrAppend(&location, request.path);
    if (!request.params.empty()) {
      std::vector<std::string> pairs;
      for (const auto& [name, value] : request.params) {
        pairs.push_back(absl::StrCat(QueryEscape(name), "=", QueryEscape(value)));
      }
      absl::StrAppend(&location, "?", absl::StrJoin(pairs, "&"));
    }
  }
  HttpResponse response{.status = 307, .body = nlohmann::json({{"location", location}}).dump()};
  response.headers["Location"] = location;
  return response;
}

}  // namespace rz::master
