// Master: operator actions (weights, quota, ...).
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/random_id.h"
#include "common/resources_proto.h"
#include "common/status_macros.h"
#include "common/task_states.h"
#include "glog/logging.h"
#include "master/allocator_adapter.h"
#include "master/master.h"
#include "master/validation.h"

namespace rz::master {

// ---------------------------------------------------------------------------------------------
// Operators

absl::Status Master::UpdateWeights(const v1::UpdateWeightsRequest& request) {
  DCHECK(loop_.IsLoopThread());
  for (const v1::WeightInfo& weight : request.weights()) {
    if (!IsValidRole(weight.role())) {
      return absl::InvalidArgumentError(absl::StrCat("invalid role '", weight.role(), "'"));
    }
    if (!(weight.weight() > 0) || weight.weight() > 1e9) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weight of role '", weight.role(), "' must be in (0, 1e9], not ", weight.weight()));
    }
  }
  for (const v1::WeightInfo& weight : request.weights()) {
    RZ_CHECK_OK(allocator_.SetWeight(weight.role(), weight.weight()));
    LOG(INFO) << "weight of role '" << weight.role() << "' set to " << weight.weight();
  }
  RescindAllOffers();
  return absl::OkStatus();
}

absl::Status Master::UpdateQuota(const v1::UpdateQuotaRequest& request) {
  DCHECK(loop_.IsLoopThread());
  std::vector<std::pair<std::string, allocator::Quota>> quotas;
  for (const v1::QuotaConfig& config : request.quotas()) {
    if (!IsValidRole(config.role()) || config.role() == kDefaultRole) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid role '", config.role(), "' for quota"));
    }
    RZ_ASSIGN_OR_RETURN(allocator::Quota quota, ToQuota(config));
    for (const ResourceEntry& guaranteed : quota.guarantee.entries()) {
      bool limited = std::find(quota.zero_limit.begin(), quota.zero_limit.end(), guaranteed.name) !=
                     quota.zero_limit.end();
      for (const ResourceEntry& limit : quota.limit.entries()) {
        limited = limited || limit.name == guaranteed.name;
      }
      if (limited &&
          quota.guarantee.ScalarFixed(guaranteed.name) > quota.limit.ScalarFixed(guaranteed.name)) {
        return absl::InvalidArgumentError(absl::StrCat("quota of role '", config.role(),
                                                       "': guarantee of '", guaranteed.name,
                                                       "' exceeds its limit"));
      }
    }
    quotas.emplace_back(config.role(), std::move(quota));
  }
  for (const auto& [role, quota] : quotas) {
    RZ_RETURN_IF_ERROR(allocator_.SetQuota(role, quota));
    LOG(INFO) << "quota of role '" << role << "' set: guarantee " << quota.guarantee.ToString()
              << ", limit " << quota.limit.ToString();
  }
  RescindAllOffers();
  return absl::OkStatus();
}

void Master::RescindAllOffers() {
  std::vector<OfferId> offers;
  for (const auto& [id, offer] : offers_) {
    offers.push_back(id);
  }
  for (const OfferId& id : offers) {
    RemoveOffer(id, /*rescind=*/true, absl::ZeroDuration());
  }
  TriggerAllocation();
  PublishSoon();
}

}  // namespace rz::master
