// MasterDetector tells a client (agent, scheduler library, CLI) which master currently leads.
// Several rz-master processes may run; exactly one leads, and only the leader serves. Clients
// dial `leader()->grpc_address()`.
//
// Implementations: StaticMasterDetector (a fixed list of masters that it asks; see
// static_master_detector.h) and ZooKeeperMasterDetector (src/zk; follows the election znodes).
// CreateMasterDetector() picks one from the `--master` spec.
//
// Thread rule: Start is called once by the owner. `on_change` runs on the detector's own thread
// (never the caller's): it must only hand off (post to a loop, set a field under a lock), never
// block or call back into the detector. leader() and ReportLeaderHint() are thread-safe. The
// destructor stops the detector; no `on_change` runs after it returns.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "rz/v1/common.pb.h"

namespace grpc {
class ClientContext;
class Status;
}  // namespace grpc

namespace rz {

class MasterDetector {
 public:
  virtual ~MasterDetector() = default;

  // Calls `on_change` with the leader (nullopt: none known) now and on every change,
  // from the detector's own thread; the callback must only hand off.
  virtual void Start(std::function<void(std::optional<v1::MasterInfo>)> on_change) = 0;
  virtual std::optional<v1::MasterInfo> leader() const = 0;

  // A client that a non-leading master refused with the `rz-leader` hint (see
  // kLeaderMetadataKey and LeaderHint()) reports the hinted gRPC address here, so that a
  // detector which learns the leader by asking masters can switch at once. Detectors with an
  // authoritative source (ZooKeeper) may ignore it; the default does. Thread-safe, never blocks.
  virtual void ReportLeaderHint(absl::string_view /*grpc_address*/) {}
};

// The gRPC trailing metadata key with which a non-leading master names the leader: it answers
// every Scheduler, AgentLink and Operator call and stream with status UNAVAILABLE and, when it
// knows the leader, `rz-leader: <host:port of the leader's gRPC server>`. A leader that steps
// down ends its streams the same way.
inline constexpr char kLeaderMetadataKey[] = "rz-leader";

// The leader a master named when it refused a call: the `rz-leader` trailing metadata of a
// finished call whose `status` is UNAVAILABLE; nullopt otherwise (another status, no or empty
// metadata). REQUIRES: the call has finished (its status is known).
std::optional<std::string> LeaderHint(const grpc::ClientContext& context,
                                      const grpc::Status& status);

// "host:port", "host:port,host:port,..." (static list) or "zk://..." (ZooKeeper).
// Returns InvalidArgument naming the spec and what is wrong with it (empty, a bad host:port, an
// unknown scheme); the detector is not started.
absl::StatusOr<std::unique_ptr<MasterDetector>> CreateMasterDetector(const std::string& spec);

// Starts `detector` and waits up to `timeout` for it to name a leader. Returns Unavailable
// naming `what` (e.g. the spec) if none is known by then. For one-shot tools (the CLI).
// REQUIRES: `detector` not started.
absl::StatusOr<v1::MasterInfo> WaitForLeader(MasterDetector& detector, absl::Duration timeout,
                                             absl::string_view what);

}  // namespace rz
