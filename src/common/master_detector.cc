#include "common/master_detector.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/static_master_detector.h"
#include "common/status_macros.h"
#include "grpcpp/grpcpp.h"
#include "zk/zookeeper_master_detector.h"

namespace rz {
namespace {

constexpr char kSpecForms[] =
    "expected host:port, a comma-separated list host:port,host:port,... or "
    "zk://host:port,.../path";

}  // namespace

std::optional<std::string> LeaderHint(const grpc::ClientContext& context,
                                      const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) {
    return std::nullopt;
  }
  const std::multimap<grpc::string_ref, grpc::string_ref>& metadata =
      context.GetServerTrailingMetadata();
  const auto it = metadata.find(kLeaderMetadataKey);
  if (it == metadata.end() || it->second.empty()) {
    return std::nullopt;
  }
  return std::string(it->second.data(), it->second.size());
}

absl::StatusOr<std::unique_ptr<MasterDetector>> CreateMasterDetector(const std::string& spec) {
  const std::string trimmed(absl::StripAsciiWhitespace(spec));
  if (trimmed.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("the master is not set: ", kSpecForms));
  }
  if (absl::StartsWith(trimmed, "zk://")) {
    const std::string rest = trimmed.substr(5);
    const size_t slash = rest.find('/');
    if (slash == std::string::npos || slash + 1 >= rest.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "master '", trimmed, "': a ZooKeeper URL needs a path, as in zk://host:port/rz"));
    }
    RZ_RETURN_IF_ERROR(ParseMasterList(rest.substr(0, slash)).status());
    RZ_ASSIGN_OR_RETURN(std::unique_ptr<zk::ZooKeeperMasterDetector> detector,
                        zk::ZooKeeperMasterDetector::Create(trimmed));
    return std::unique_ptr<MasterDetector>(std::move(detector));
  }
  if (const size_t scheme = trimmed.find("://"); scheme != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("master '", trimmed, "': unknown scheme '",
                                                   trimmed.substr(0, scheme), "://'; ",
                                                   kSpecForms));
  }
  RZ_ASSIGN_OR_RETURN(std::vector<std::string> masters, ParseMasterList(trimmed));
  return std::make_unique<StaticMasterDetector>(std::move(masters));
}

absl::StatusOr<v1::MasterInfo> WaitForLeader(MasterDetector& detector, absl::Duration timeout,
                                             absl::string_view what) {
  // Shared with the callback, which may run after this returns.
  struct Found {
    absl::Mutex mu;
    std::optional<v1::MasterInfo> leader ABSL_GUARDED_BY(mu);
  };
  auto found = std::make_shared<Found>();
  detector.Start([found](std::optional<v1::MasterInfo> leader) {
    absl::MutexLock lock(&found->mu);
    if (leader.has_value()) {
      found->leader = std::move(leader);
    }
  });
  absl::MutexLock lock(&found->mu);
  found->mu.AwaitWithTimeout(
      absl::Condition(
          +[](std::optional<v1::MasterInfo>* leader) { return leader->has_value(); },
          &found->leader),
      timeout);
  if (!found->leader.has_value()) {
    return absl::UnavailableError(absl::StrCat("no leading master found at '", what, "' within ",
                                               absl::FormatDuration(timeout)));
  }
  return *found->leader;
}

}  // namespace rz
