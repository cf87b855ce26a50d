// ZooKeeperMasterDetector: a MasterDetector that follows the leader election through
// ZooKeeper. It watches the children of the election path and reports the MasterInfo held by
// the lowest `master_` znode (election.h), with `leader` set; nullopt while there is none,
// while the path does not exist, while the lowest znode cannot be read as a MasterInfo (logged,
// naming the znode), and after the detector's own session expired until it has read the
// election again with a new session. A connection loss alone keeps the last known leader.
//
// Thread rule: see MasterDetector (common/master_detector.h). The detector runs on its own
// thread, where `on_change` is called.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/master_detector.h"
#include "common/thread_event_loop.h"
#include "zk/zookeeper_session.h"

namespace rz::zk {

class ZooKeeperMasterDetector final : public MasterDetector {
 public:
  struct Options {
    std::string servers;  // ZooKeeperUrl::connect_string().
    std::string path;     // ZooKeeperUrl::path.
    absl::Duration session_timeout = absl::Seconds(10);
  };

  // From a `zk://host:port,.../path` url; InvalidArgument names what is wrong with it.
  static absl::StatusOr<std::unique_ptr<ZooKeeperMasterDetector>> Create(
      const std::string& url, absl::Duration session_timeout = absl::Seconds(10));

  explicit ZooKeeperMasterDetector(Options options);
  ~ZooKeeperMasterDetector() override;

  void Start(std::function<void(std::optional<v1::MasterInfo>)> on_change) override;
  std::optional<v1::MasterInfo> leader() const override;
  // The leader's election znode; nullopt when no leader is known.
  std::optional<std::string> leader_znode() const;

 private:
  // All below run on loop_.
  void StartSession();
  void OnSessionState(uint64_t generation, SessionState state);
  void Refresh(uint64_t generation);
  void RetryLater(uint64_t generation);
  void SetLeader(std::optional<v1::MasterInfo> info, const std::string& znode);

  const Options options_;
  ThreadEventLoop loop_;

  // Loop state.
  std::function<void(std::optional<v1::MasterInfo>)> on_change_;
  std::unique_ptr<ZooKeeperSession> session_;
  uint64_t generation_ = 0;
  bool children_watch_armed_ = false;
  bool path_watch_armed_ = false;
  bool retry_pending_ = false;
  bool stopped_ = false;

  mutable absl::Mutex mu_;
  std::optional<v1::MasterInfo> leader_ ABSL_GUARDED_BY(mu_);
  std::string leader_znode_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::zk
