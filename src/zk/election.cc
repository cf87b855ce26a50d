#include "zk/election.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace rz::zk {
namespace {

// The sequence number ZooKeeper appended, or -1 if `name` is not a candidate.
int64_t SequenceOf(const std::string& name) {
  if (!absl::StartsWith(name, kCandidatePrefix)) {
    return -1;
  }
  int64_t sequence = -1;
  const std::string digits = name.substr(sizeof(kCandidatePrefix) - 1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
      !absl::SimpleAtoi(digits, &sequence)) {
    return -1;
  }
  return sequence;
}

}  // namespace

std::vector<std::string> SortCandidates(const std::vector<std::string>& children) {
  std::vector<std::pair<int64_t, std::string>> candidates;
  for (const std::string& child : children) {
    const int64_t sequence = SequenceOf(child);
    if (sequence >= 0) {
      candidates.emplace_back(sequence, child);
    }
  }
  std::sort(candidates.begin(), candidates.end());
  std::vector<std::string> sorted;
  sorted.reserve(candidates.size());
  for (auto& [sequence, name] : candidates) {
    sorted.push_back(std::move(name));
  }
  return sorted;
}

std::string MasterInfoToJson(const v1::MasterInfo& info) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  // Printing a well-formed message cannot fail.
  (void)google::protobuf::util::MessageToJsonString(info, &json, options);
  return json;
}

absl::StatusOr<v1::MasterInfo> MasterInfoFromJson(const std::string& json,
                                                  const std::string& znode) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;  // Written by a newer master.
  v1::MasterInfo info;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &info, options);
  if (!status.ok()) {
    return absl::DataLossError(
        absl::StrCat("election znode '", znode,
                     "' does not hold a MasterInfo as JSON: ", std::string(status.message())));
  }
  return info;
}

}  // namespace rz::zk
