// StaticMasterDetector finds the leader among a fixed list of masters (`--master=h1:p,h2:p,...`)
// by asking them: the Operator service's GetVersion, which the leader answers and every other
// master refuses with UNAVAILABLE (plus the `rz-leader` hint when it knows the leader; see
// master_detector.h).
//
// - One address is trivially the leader: it is reported at Start() and never asked, so a client
//   given one master behaves exactly as it did before masters could fail over. Only when a
//   client reports a hint naming another master does the detector start asking (that master and
//   the configured one), as it does for a list.
// - With several, it asks them round-robin until one leads (a hint is followed at once), backing
//   off between fruitless rounds (initial_backoff doubling to max_backoff) and reporting nullopt
//   meanwhile. Once a leader is known it asks it again every probe_interval, so a change of
//   leader is noticed within about probe_interval + probe_timeout; a reported hint wakes it at
//   once.
//
// Thread rule: thread-safe. Start() starts one thread that does all asking and calls
// `on_change`; the destructor stops and joins it.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/master_detector.h"
#include "rz/v1/operator.grpc.pb.h"

namespace rz {

// Parses a static master list: "host:port" or "host:port,host:port,..." (IPv6 as
// "[::1]:5050"). Returns the addresses in order, or InvalidArgument naming `spec` and the bad
// entry (empty entry, missing or bad port, duplicate).
absl::StatusOr<std::vector<std::string>> ParseMasterList(const std::string& spec);

class StaticMasterDetector final : public MasterDetector {
 public:
  struct Options {
    // How often the known leader is asked again whether it still leads.
    absl::Duration probe_interval = absl::Seconds(1);
    // Deadline of one question; a master that does not answer in time does not lead.
    absl::Duration probe_timeout = absl::Seconds(1);
    // Pause after a round in which no master led, doubling up to max_backoff.
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(2);
  };

  // REQUIRES: `masters` is not empty; each entry is host:port (see ParseMasterList).
  explicit StaticMasterDetector(std::vector<std::string> masters);
  StaticMasterDetector(std::vector<std::string> masters, Options options);
  ~StaticMasterDetector() override;

  StaticMasterDetector(const StaticMasterDetector&) = delete;
  StaticMasterDetector& operator=(const StaticMasterDetector&) = delete;

  // REQUIRES: not started.
  void Start(std::function<void(std::optional<v1::MasterInfo>)> on_change) override;
  std::optional<v1::MasterInfo> leader() const override;
  // Queues `grpc_address` to be asked first; ignored if it is not host:port.
  void ReportLeaderHint(absl::string_view grpc_address) override;

 private:
  enum class Answer { kLeads, kRefuses, kNoAnswer };
  struct Probe {
    Answer answer;
    std::optional<std::string> hint;  // With kRefuses: the leader that master named.
  };

  void Run();
  // One round: the hints, the last leader, then every configured master from the round-robin
  // position, following each hint at once. Returns the address of the leader, if one answered.
  std::optional<std::string> FindLeader(std::vector<std::string> first);
  Probe Ask(const std::string& address);
  // Calls on_change_ if the leader differs from the last one reported (always the first time).
  void Report(const std::optional<std::string>& address);

  const std::vector<std::string> masters_;
  const Options options_;
  std::function<void(std::optional<v1::MasterInfo>)> on_change_;  // Set by Start().

  // Used by the thread only.
  absl::flat_hash_map<std::string, std::unique_ptr<v1::Operator::Stub>> stubs_;
  size_t next_ = 0;  // Round-robin position in masters_.

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Asking is needed: several masters, or a hint named a master other than the only one.
  bool asking_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> hints_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::MasterInfo> leader_ ABSL_GUARDED_BY(mu_);
  bool reported_ ABSL_GUARDED_BY(mu_) = false;  // on_change_ has been called.
  // The question in flight, cancelled by the destructor so that it need not wait for it.
  grpc::ClientContext* question_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace rz
