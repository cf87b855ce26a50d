// LeaderContender: one master's candidacy in the ZooKeeper leader election.
//
// Contend() starts a ZooKeeper session and creates the ephemeral sequential znode
// `<path>/master_<seq>` holding the master's MasterInfo as JSON (election.h). The lowest
// sequence leads. Each contender watches only its predecessor (the next lower znode), so a
// departure wakes exactly one contender, never the whole herd. When the predecessor goes, the
// contender lists the candidates again: it leads if it is now the lowest, else it watches its
// new predecessor.
//
// A candidacy ends, with one `lost` callback, when the session expires (ZooKeeper said so, or
// the session was disconnected for a whole session timeout, see ZooKeeperSession) or the
// contender's znode is deleted. A mere connection loss ends nothing: the session and the znode
// live on while the C client reconnects. After `lost`, Contend() again: it starts a new session
// and a new znode at the back of the queue.
//
// Thread rule: public methods are thread-safe. The contender runs on its own thread; the
// callbacks are called there, one at a time, and must only hand off (post to the master's
// loop); they may call Contend() but not Withdraw() or the destructor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/thread_event_loop.h"
#include "rz/v1/common.pb.h"
#include "zk/zookeeper_session.h"

namespace rz::zk {

class LeaderContender {
 public:
  struct Options {
    std::string servers;  // ZooKeeperUrl::connect_string().
    std::string path;     // ZooKeeperUrl::path: the election's parent znode (created if missing).
    absl::Duration session_timeout = absl::Seconds(10);
    v1::MasterInfo info;  // What the znode holds: what clients learn about the leader.
  };
  struct Callbacks {
    // This contender leads. `znode` is its election znode: the registry's write fence
    // (ZooKeeperRegistryStore::SetFence). Called at most once per candidacy.
    std::function<void(const std::string& znode)> elected;
    // The candidacy ended (whether or not it had been elected): Unavailable when the session
    // expired, FailedPrecondition when the znode was deleted. Called at most once per
    // candidacy; not called after Withdraw().
    std::function<void(const absl::Status& why)> lost;
  };

  LeaderContender(Options options, Callbacks callbacks);
  // Withdraws (see Withdraw()).
  ~LeaderContender();

  LeaderContender(const LeaderContender&) = delete;
  LeaderContender& operator=(const LeaderContender&) = delete;

  // Starts a candidacy unless one is running. Returns at once; the outcome arrives through the
  // callbacks. Bad options (no servers, a bad path) end the candidacy with `lost`.
  void Contend();

  // Ends the candidacy without a `lost` callback: closes the session, so the znode disappears
  // at once and the next contender is elected without waiting for a session timeout. Blocks
  // until done. REQUIRES: not called from a callback.
  void Withdraw();

  // Observers, for status pages and tests.
  bool contending() const;
  bool leading() const;
  // This candidacy's znode, once created.
  std::optional<std::string> znode() const;
  // The candidate whose znode this contender watches, once it watches one (none while it
  // leads).
  std::optional<std::string> predecessor() const;
  // The current session's credentials (tests expire the session with them).
  std::optional<SessionCredentials> session_credentials() const;
  // Watch notifications received so far (predecessor or own znode): a contender whose
  // predecessor did not change receives none.
  uint64_t watch_events() const;

 private:
  // All below run on loop_.
  void StartSession();
  void OnSessionState(uint64_t generation, SessionState state);
  // Creates (or finds, after a connection loss) the znode, then Check()s. Idempotent.
  void Advance(uint64_t generation);
  // Leads if lowest, else watches the predecessor.
  void Check(uint64_t generation);
  void OnOwnZnodeEvent(uint64_t generation, const WatchEvent& event);
  void RetryLater(uint64_t generation);
  // Ends the candidacy; reports `why` through `lost` unless it is OK (a withdrawal).
  void End(const absl::Status& why);
  // Handles a failed step: retries when ZooKeeper is unreachable, ends the candidacy else.
  void Fail(uint64_t generation, const absl::Status& status);
  void Publish();

  const Options options_;
  const Callbacks callbacks_;
  ThreadEventLoop loop_;

  // Loop state.
  std::unique_ptr<ZooKeeperSession> session_;
  uint64_t generation_ = 0;  // Bumped per session; stale events carry an older one.
  bool active_ = false;
  bool elected_ = false;
  bool retry_pending_ = false;
  std::string znode_;
  std::string watched_predecessor_;
  bool own_watch_armed_ = false;

  // Published copies for the observers.
  mutable absl::Mutex mu_;
  bool contending_ ABSL_GUARDED_BY(mu_) = false;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;
  std::string published_znode_ ABSL_GUARDED_BY(mu_);
  std::string published_predecessor_ ABSL_GUARDED_BY(mu_);
  std::optional<SessionCredentials> credentials_ ABSL_GUARDED_BY(mu_);
  uint64_t watch_events_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rz::zk
