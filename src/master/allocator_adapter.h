// The one place that converts between the API's protobuf types and the allocator's value
// types (the allocator sees no protobuf).
//
// Thread rule: pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "allocator/hierarchical_allocator.h"
#include "rz/v1/common.pb.h"
#include "rz/v1/operator.pb.h"

namespace rz::master {

// The framework's roles; "*" when it names none.
std::vector<std::string> RolesOf(const v1::FrameworkInfo& info);

// Roles, offer filters (constraints, minimum allocatable per role) and the offer cap. Returns
// InvalidArgument naming the problem (a filter for a role the framework is not in, a bad
// constraint, malformed minimum resources).
absl::StatusOr<allocator::FrameworkOptions> ToFrameworkOptions(const v1::FrameworkInfo& info,
                                                               bool active);

// Attributes in text form: scalars printed as numbers, ranges as [b-e,...], sets as {a,b}.
allocator::Attributes ToAttributes(
    const google::protobuf::RepeatedPtrField<v1::Attribute>& attributes);

// InvalidArgument for a non-scalar or reserved entry, or a malformed resource.
absl::StatusOr<allocator::Quota> ToQuota(const v1::QuotaConfig& config);

void ToRoleInfo(const allocator::RoleStats& stats, v1::RoleInfo* out);

}  // namespace rz::master
