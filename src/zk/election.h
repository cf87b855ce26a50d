// What LeaderContender and ZooKeeperMasterDetector agree on: how candidates are named, ordered
// and described.
//
// Each contending master owns one ephemeral sequential znode `<path>/master_<10-digit seq>`
// holding its `rz.v1.MasterInfo` as JSON (snake_case field names). The candidate with the
// lowest sequence number leads. Other children of `<path>` (such as `registry`) are ignored.
//
// Thread rule: pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rz/v1/common.pb.h"

namespace rz::zk {

inline constexpr char kCandidatePrefix[] = "master_";

// The candidate names among `children`, lowest sequence number (the leader) first.
std::vector<std::string> SortCandidates(const std::vector<std::string>& children);

std::string MasterInfoToJson(const v1::MasterInfo& info);
// DataLoss naming `znode` if `json` is not a MasterInfo.
absl::StatusOr<v1::MasterInfo> MasterInfoFromJson(const std::string& json,
                                                  const std::string& znode);

}  // namespace rz::zk
