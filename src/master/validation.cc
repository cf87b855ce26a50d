#include "master/validation.h"

#include <algorithm>

#include "absl/container/btree_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/resources.h"
#include "glog/logging.h"

namespace rz::master {

namespace {

constexpr size_t kMaxRoleLength = 256;

}  // namespace

bool IsValidRole(const std::string& role) {
  if (role == kDefaultRole) {
    return true;
  }
  if (role.empty() || role.size() > kMaxRoleLength || role.front() == '/' || role.back() == '/') {
    return false;
  }
  for (const absl::string_view segment : absl::StrSplit(role, '/')) {
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    for (char c : segment) {
      if (!(absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.')) {
        return false;
      }
    }
  }
  return true;
}

absl::Status ValidateFrameworkInfo(const v1::FrameworkInfo& info) {
  absl::btree_set<std::string> seen;
  for (const std::string& role : info.roles()) {
    if (!IsValidRole(role)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid role '", role, "'"));
    }
    if (!seen.insert(role).second) {
      return absl::InvalidArgumentError(absl::StrCat("role '", role, "' is given twice"));
    }
  }
  if (info.max_outstanding_offers() < 0) {
    return absl::InvalidArgumentError("max_outstanding_offers must not be negative");
  }
  if (!(info.failover_timeout_seconds() >= 0) ||
      info.failover_timeout_seconds() > 365.0 * 24 * 3600) {
    return absl::InvalidArgumentError(absl::StrCat("invalid failover_timeout_seconds ",
                                                   info.failover_timeout_seconds(),
                                                   ": must be between 0 and one year"));
  }
  return absl::OkStatus();
}

absl::Duration RefuseFor(const v1::Filters& filters, absl::Duration fallback) {
  if (!filters.has_refuse_seconds()) {
    return fallback;
  }
  const double s = filters.refuse_seconds();
  if (!(s > 0)) {
    return absl::ZeroDuration();
  }
  return absl::Seconds(std::min(s, 365.0 * 24 * 3600));
}

void RefuseSubscription(const v1::FrameworkInfo& info, Outbox<v1::Event>& outbox,
                        const absl::Status& status) {
  LOG(WARNING) << "refusing subscription of framework '" << info.id() << "' (" << info.name()
               << "): " << status.message();
  v1::Event event;
  event.mutable_error()->set_message(std::string(status.message()));
  outbox.Send(std::move(event));
  outbox.Close(status);
}

}  // namespace rz::master
