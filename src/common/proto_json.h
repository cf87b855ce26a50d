// The one JSON rendering of protobuf messages that every REST endpoint uses: the protobuf JSON
// mapping with the proto's own snake_case field names, and fields at their default value
// printed (so `"registered": false` and `"task_count": 0` are visible).
//
// AppendProtoJson walks the message with Descriptor/Reflection and appends straight to the
// output. It renders the same JSON value as protobuf's MessageToJsonString with
// preserve_proto_field_names and always_print_primitive_fields (about 20x faster; the master
// renders 100k tasks on the first /state). Differences are in spelling only, never in the parsed
// value: doubles are printed in their shortest round-trip form (protobuf: %.15g, else %.17g;
// the digits may differ, the number never), and map entries keep their reflection order. Like
// protobuf: int64/uint64 as strings, enums by name (unknown numbers as numbers), NaN/Infinity as
// strings, bytes as padded base64, unset message fields, unset oneof members and unset proto3
// `optional` fields omitted, invalid UTF-8 bytes dropped, and the characters protobuf escapes (C0
// and C1 controls, '"', '\\', '<', '>', DEL, U+2028 and the other invisible format characters)
// escaped exactly as protobuf does. Well-known types (google.protobuf.*) are rendered by protobuf
// itself.
//
// Thread rule: pure functions; thread-safe.
#pragma once

#include <string>

#include "common/http_server.h"
#include "google/protobuf/message.h"

namespace rz {

// Appends the JSON object for `message` to `*out`.
void AppendProtoJson(const google::protobuf::Message& message, std::string* out);

// As AppendProtoJson, leaving out `message`'s own field number `omitted_field` (for a lighter
// view of a message, e.g. an agent without its usage statistics).
void AppendProtoJsonWithout(const google::protobuf::Message& message, int omitted_field,
                            std::string* out);

// The JSON object for `message`.
std::string ProtoJson(const google::protobuf::Message& message);

// 200 with the JSON body.
HttpResponse ProtoJsonResponse(const google::protobuf::Message& message);

}  // namespace rz
