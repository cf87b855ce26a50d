#include "master/allocator_adapter.h"

#include <regex.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/resources_proto.h"

namespace rz::master {
namespace {

absl::StatusOr<allocator::AttributeConstraint> ToConstraint(
    const v1::AttributeConstraint& constraint) {
  using Op = allocator::AttributeConstraint::Op;
  allocator::AttributeConstraint out{.attribute = constraint.attribute(),
                                     .value = constraint.value()};
  if (constraint.attribute().empty()) {
    return absl::InvalidArgumentError("offer constraint names no attribute");
  }
  switch (constraint.op()) {
    case v1::AttributeConstraint::EXISTS:
      out.op = Op::kExists;
      break;
    case v1::AttributeConstraint::NOT_EXISTS:
      out.op = Op::kNotExists;
      break;
    case v1::AttributeConstraint::EQUALS:
      out.op = Op::kEquals;
      break;
    case v1::AttributeConstraint::NOT_EQUALS:
      out.op = Op::kNotEquals;
      break;
    case v1::AttributeConstraint::MATCHES: {
      out.op = Op::kMatches;
      // Validate here so a bad pattern is the scheduler's error, not the allocator's.
      regex_t compiled;
      const std::string anchored = absl::StrCat("^(", constraint.value(), ")$");
      if (regcomp(&compiled, anchored.c_str(), REG_EXTENDED | REG_NOSUB) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("offer constraint on attribute '", constraint.attribute(),
                         "' has an invalid pattern '", constraint.value(), "'"));
      }
      regfree(&compiled);
      break;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("offer constraint on attribute '",
                                                     constraint.attribute(), "' has no valid op"));
  }
  return out;
}

std::string RangesText(const v1::Ranges& ranges) {
  std::vector<std::string> parts;
  for (const v1::Range& range : ranges.range()) {
    parts.push_back(absl::StrCat(range.begin(), "-", range.end()));
  }
  return absl::StrCat("[", absl::StrJoin(parts, ","), "]");
}

}  // namespace

std::vector<std::string> RolesOf(const v1::FrameworkInfo& info) {
  if (info.roles().empty()) {
    return {"*"};
  }
  return std::vector<std::string>(info.roles().begin(), info.roles().end());
}

absl::StatusOr<allocator::FrameworkOptions> ToFrameworkOptions(const v1::FrameworkInfo& info,
                                                               bool active) {
  allocator::FrameworkOptions options;
  options.roles = RolesOf(info);
  options.active = active;
  if (info.max_outstanding_offers() < 0) {
    return absl::InvalidArgumentError("max_outstanding_offers must not be negative");
  }
  options.max_outstanding_offers = info.max_outstanding_offers();
  for (const auto& [role, filters] : info.offer_filters()) {
    if (std::find(options.roles.begin(), options.roles.end(), role) == options.roles.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("offer_filters name role '", role, "' which the framework is not in"));
    }
    for (const v1::AttributeConstraint& constraint : filters.constraints()) {
      absl::StatusOr<allocator::AttributeConstraint> converted = ToConstraint(constraint);
      if (!converted.ok()) {
        return converted.status();
      }
      options.constraints[role].push_back(*std::move(converted));
    }
    for (const v1::OfferFilters::Quantities& quantities : filters.min_allocatable()) {
      absl::StatusOr<Resources> resources = FromProto(quantities.resources());
      if (!resources.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("min_allocatable of role '", role, "': ", resources.status().message()));
      }
      options.min_allocatable[role].push_back(*std::move(resources));
    }
  }
  return options;
}

allocator::Attributes ToAttributes(
    const google::protobuf::RepeatedPtrField<v1::Attribute>& attributes) {
  allocator::Attributes out;
  for (const v1::Attribute& attribute : attributes) {
    std::string text;
    switch (attribute.value_case()) {
      case v1::Attribute::kText:
        text = attribute.text();
        break;
      case v1::Attribute::kScalar:
        text = absl::StrCat(attribute.scalar());
        break;
      case v1::Attribute::kRanges:
        text = RangesText(attribute.ranges());
        break;
      case v1::Attribute::kSet:
        text = absl::StrCat("{", absl::StrJoin(attribute.set().item(), ","), "}");
        break;
      case v1::Attribute::VALUE_NOT_SET:
        break;
    }
    out[attribute.name()] = std::move(text);
  }
  return out;
}

absl::StatusOr<allocator::Quota> ToQuota(const v1::QuotaConfig& config) {
  allocator::Quota quota;
  auto convert = [&](const google::protobuf::RepeatedPtrField<v1::Resource>& resources,
                     const char* what, Resources* out) -> absl::Status {
    for (const v1::Resource& resource : resources) {
      if (resource.value_case() != v1::Resource::kScalar || resource.reservations_size() > 0) {
        return absl::InvalidArgumentError(absl::StrCat("quota ", what, " of role '", config.role(),
                                                       "': resource '", resource.name(),
                                                       "' must be an unreserved scalar"));
      }
    }
    absl::StatusOr<Resources> parsed = FromProto(resources);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("quota ", what, " of role '", config.role(),
                                                     "': ", parsed.status().message()));
    }
    *out = *std::move(parsed);
    return absl::OkStatus();
  };
  if (absl::Status status = convert(config.guarantees(), "guarantees", &quota.guarantee);
      !status.ok()) {
    return status;
  }
  if (absl::Status status = convert(config.limits(), "limits", &quota.limit); !status.ok()) {
    return status;
  }
  // Resources drops zero amounts; a limit of 0 (nothing at all) must survive.
  for (const v1::Resource& limit : config.limits()) {
    if (limit.scalar() == 0) {
      quota.zero_limit.push_back(limit.name());
    }
  }
  return quota;
}

void ToRoleInfo(const allocator::RoleStats& stats, v1::RoleInfo* out) {
  out->set_role(stats.role);
  out->set_weight(stats.weight);
  ToProto(stats.allocated, out->mutable_allocated());
  ToProto(stats.reserved, out->mutable_reserved());
  ToProto(stats.consumed, out->mutable_consumed());
  out->mutable_quota()->set_role(stats.role);
  ToProto(stats.quota.guarantee, out->mutable_quota()->mutable_guarantees());
  ToProto(stats.quota.limit, out->mutable_quota()->mutable_limits());
  for (const std::string& name : stats.quota.zero_limit) {
    v1::Resource* zero = out->mutable_quota()->add_limits();
    zero->set_name(name);
    zero->set_scalar(0);
  }
  out->set_cycles_since_last_offer(stats.cycles_since_last_offer);
}

}  // namespace rz::master
