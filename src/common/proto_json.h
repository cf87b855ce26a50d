// The one JSON rendering of protobuf messages that every REST endpoint uses: the protobuf JSON
// mapping with the proto's own snake_case field names, and fields at their default value
// printed (so `"registered": false` and `"task_count": 0` are visible).
//
// Thread rule: pure function; thread-safe.
#pragma once

#include "common/http_server.h"
#include "google/protobuf/message.h"

namespace rz {

// 200 with the JSON body, or 500 with a JSON error naming the failure.
HttpResponse ProtoJsonResponse(const google::protobuf::Message& message);

}  // namespace rz
