// The one place that maps absl::Status to the codes of each transport (gRPC, HTTP) and back.
//
// Thread rule: pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace rz {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// 200 for OK; 400, 404, 409, 403, 401, 503, 429, 500, ... for the error codes.
int ToHttpCode(const absl::Status& status);

// {"code": "<CODE_NAME>", "message": "<message>", "error": "<message>"}
std::string ErrorJson(const absl::Status& status);

}  // namespace rz
