// Conversions between Resources and the wire type rz.v1.Resource, and the parser for the
// agent's --resources flag (text form or JSON). This is the one place resources cross the
// proto boundary.
//
// Thread rule: pure functions; thread-safe.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "common/resources.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "rz/v1/common.pb.h"

namespace rz {

// Converts wire resources. Each entry's role is the role of its last (outermost) reservation,
// or "*" when it has none; `allocation_role` is ignored. Scalars are rounded to 0.001. Entries
// with the same name and role are merged. Returns InvalidArgument naming the resource (and its
// index) for an empty or invalid name, no value set, a negative, non-finite or out-of-range
// scalar, an inverted range, an invalid set item or role, or a name used with two types.
absl::StatusOr<Resources> FromProto(
    const google::protobuf::RepeatedPtrField<rz::v1::Resource>& resources);

// Replaces the contents of `*out` with one rz.v1.Resource per entry of `resources`, in
// canonical order. A role other than "*" becomes a single STATIC reservation for that role.
// REQUIRES: `out` is not null.
void ToProto(const Resources& resources, google::protobuf::RepeatedPtrField<rz::v1::Resource>* out);

// Parses the value of a --resources flag. After trimming whitespace, text starting with '[' is
// a JSON array of rz.v1.Resource in the protobuf JSON mapping:
//   [{"name":"cpus","scalar":2},{"name":"ports","ranges":{"range":[{"begin":1,"end":9}]}}]
// text starting with '{' is a JSON object of unreserved scalars: {"cpus":2,"mem":1024}
// and anything else is the text form of Resources::Parse(). Returns InvalidArgument for
// malformed JSON (naming the byte offset and token), a bad element (naming its index) or any
// error of FromProto() or Resources::Parse().
absl::StatusOr<Resources> ParseResourcesFlag(std::string_view text);

}  // namespace rz
