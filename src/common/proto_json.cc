#include "common/proto_json.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_convert.h"
#include "google/protobuf/util/json_util.h"

namespace rz {

HttpResponse ProtoJsonResponse(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string body;
  if (auto status = google::protobuf::util::MessageToJsonString(message, &body, options);
      !status.ok()) {
    return HttpResponse{
        .status = 500,
        .body = ErrorJson(absl::InternalError(absl::StrCat("cannot render ", message.GetTypeName(),
                                                           " as JSON: ", status.ToString())))};
  }
  return HttpResponse{.body = std::move(body)};
}

}  // namespace rz
