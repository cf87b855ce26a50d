// ZooKeeperSession: one ZooKeeper session (one zhandle_t of the multi-threaded C client) with
// blocking operations that return absl::Status naming the znode, and session state changes and
// watches delivered as callbacks on the session's own event thread.
//
// States: kConnecting (no server reachable yet, or the connection was lost and the C client is
// reconnecting: the session and its ephemeral znodes live on), kConnected, kExpired (final).
// The server expires a session it has not heard from for the session timeout, but a client
// that cannot reach any server never hears of it. So this class also declares the session
// expired itself once it has been disconnected for a whole negotiated session timeout (by then
// the ensemble has expired it, or has no quorum and so cannot have elected anyone else), and
// closes the handle. An expired session stays expired: make a new one.
//
// Thread rule: thread-safe. Every operation blocks on the network until ZooKeeper answers or
// the connection is lost: call them from worker threads (or from this session's callbacks),
// never from an event loop. Callbacks (`on_state`, watches) run one at a time on the session's
// event thread, in the order ZooKeeper delivered them; they may call this session's
// operations but must not destroy the session.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/thread_event_loop.h"

typedef struct _zhandle zhandle_t;  // NOLINT: the C client's own typedef.

namespace rz::zk {

enum class SessionState { kConnecting, kConnected, kExpired };
const char* SessionStateName(SessionState state);

// What identifies a session to the server; a second handle made with it takes the session
// over (tests use that to expire a session on purpose, see ExpireSession()).
struct SessionCredentials {
  int64_t id = 0;
  std::string password;  // 16 bytes.
};

struct ZnodeStat {
  int32_t version = 0;  // Data version: 0 at creation, +1 per set.
  int32_t children_version = 0;
  int64_t ephemeral_owner = 0;  // Session id of the owner; 0 for persistent znodes.
  int32_t data_length = 0;
  int32_t num_children = 0;
};

struct Znode {
  std::string data;
  ZnodeStat stat;
};

enum class WatchEventType { kCreated, kDeleted, kChanged, kChildren };
struct WatchEvent {
  WatchEventType type;
  std::string path;
};
// A one-shot watch: called once, on the session's event thread, when the watched znode (or
// its children) changes. Never called if the session expires or is closed first.
using Watch = std::function<void(const WatchEvent&)>;

enum class CreateMode { kPersistent, kEphemeral, kPersistentSequential, kEphemeralSequential };

// One operation of a Multi().
struct ZkOp {
  enum class Type { kCreate, kDelete, kSet, kCheck };
  Type type = Type::kCheck;
  std::string path;
  std::string data;      // kCreate, kSet.
  int32_t version = -1;  // kDelete, kSet, kCheck: the expected data version; -1: any.
  CreateMode mode = CreateMode::kPersistent;  // kCreate.

  static ZkOp Create(std::string path, std::string data,
                     CreateMode mode = CreateMode::kPersistent) {
    return {Type::kCreate, std::move(path), std::move(data), -1, mode};
  }
  static ZkOp Delete(std::string path, int32_t version) {
    return {Type::kDelete, std::move(path), "", version};
  }
  static ZkOp Set(std::string path, std::string data, int32_t version) {
    return {Type::kSet, std::move(path), std::move(data), version};
  }
  // With version -1, checks only that the znode exists.
  static ZkOp Check(std::string path, int32_t version) {
    return {Type::kCheck, std::move(path), "", version};
  }
};

// Which operation of a failed Multi() failed, and with which ZooKeeper error code (ZNONODE,
// ZNODEEXISTS, ZBADVERSION, ... from zookeeper.h).
struct MultiFailure {
  size_t index = 0;
  int code = 0;
};

class ZooKeeperSession {
 public:
  struct Options {
    std::string servers;  // "host:port,host:port" (ZooKeeperUrl::connect_string()).
    absl::Duration session_timeout = absl::Seconds(10);
    // Called on the session's event thread on every state change.
    std::function<void(SessionState)> on_state;
    // Takes over an existing session instead of starting a new one.
    std::optional<SessionCredentials> resume;
  };

  // Starts connecting and returns at once (see WaitConnected()). InvalidArgument if `servers`
  // is empty or the C client rejects it.
  static absl::StatusOr<std::unique_ptr<ZooKeeperSession>> Start(Options options);

  // Closes the session: the server deletes its ephemeral znodes at once (if it can reach one).
  // Waits for a callback that is running to return. REQUIRES: not called from a callback.
  ~ZooKeeperSession();

  ZooKeeperSession(const ZooKeeperSession&) = delete;
  ZooKeeperSession& operator=(const ZooKeeperSession&) = delete;

  SessionState state() const;
  // Blocks until connected. Unavailable naming the servers after `timeout`; FailedPrecondition
  // if the session expired.
  absl::Status WaitConnected(absl::Duration timeout) const;
  // The session's id and password; nullopt before the first connection.
  std::optional<SessionCredentials> credentials() const;
  // The timeout the server granted (the requested one until connected).
  absl::Duration negotiated_timeout() const;
  const std::string& servers() const { return options_.servers; }

  // Creates `path` with `data`; returns the path created (with the sequence suffix for
  // sequential modes). With `create_parents`, missing ancestors are created as persistent
  // empty znodes first. AlreadyExists, NotFound (parent missing), Unavailable (connection or
  // session lost), each naming the path.
  absl::StatusOr<std::string> Create(const std::string& path, const std::string& data,
                                     CreateMode mode = CreateMode::kPersistent,
                                     bool create_parents = false);
  // Creates `path` and its ancestors as persistent empty znodes where missing. OK if present.
  absl::Status CreatePath(const std::string& path);
  // The znode's data and stat, nullopt if it does not exist. `watch` (optional) fires on the
  // next change or deletion of an existing znode.
  absl::StatusOr<std::optional<Znode>> Get(const std::string& path, Watch watch = nullptr);
  // Get() of many znodes in one pipeline (requests sent before answers are awaited). Entries
  // are nullopt for znodes that do not exist.
  absl::StatusOr<std::vector<std::optional<Znode>>> GetMany(const std::vector<std::string>& paths);
  // Sets the data if the version is `expected_version` (-1: any). Aborted if it differs,
  // NotFound if the znode does not exist.
  absl::StatusOr<ZnodeStat> Set(const std::string& path, const std::string& data,
                                int32_t expected_version = -1);
  // Deletes the znode if its version is `expected_version` (-1: any). NotFound, Aborted,
  // FailedPrecondition (it has children).
  absl::Status Delete(const std::string& path, int32_t expected_version = -1);
  // The znode's stat or nullopt. `watch` fires when it is created, changed or deleted.
  absl::StatusOr<std::optional<ZnodeStat>> Exists(const std::string& path, Watch watch = nullptr);
  // The names (not paths) of the znode's children, unsorted. NotFound if it does not exist.
  // `watch` fires when a child is added or removed, or the znode is deleted.
  absl::StatusOr<std::vector<std::string>> Children(const std::string& path, Watch watch = nullptr);
  // Runs every op or none. Returns the created path of each op (empty for non-creates). On
  // failure the status names the failing op's path and, if `failure` is given, says which op
  // failed with which code.
  absl::StatusOr<std::vector<std::string>> Multi(const std::vector<ZkOp>& ops,
                                                 MultiFailure* failure = nullptr);

  // Maps a ZooKeeper return code to a status whose message starts with `what`.
  static absl::Status ToStatus(int code, absl::string_view what);

 private:
  explicit ZooKeeperSession(Options options);

  // The C client's watcher; `zh`'s context is the session.
  static void OnEvent(zhandle_t* zh, int type, int state, const char* path, void* context);
  // The C client's watcher for one-shot watches; `context` is the watch id.
  static void OnWatch(zhandle_t* zh, int type, int state, const char* path, void* context);
  // Hands a fired watch to the event thread.
  void DeliverWatch(uintptr_t id, WatchEvent event);
  // Runs on events_: applies a state change reported by the C client.
  void HandleState(int zk_state);
  // Runs on events_: local expiry after a full session timeout without a connection.
  void ExpireIfStillDisconnected(uint64_t disconnect_generation);
  // Marks the session expired (once), closes the handle and reports it.
  void Expire(const char* why);
  void Report(SessionState state);
  // Registers `watch` and returns the context value for the C client (0: none).
  uintptr_t AddWatch(Watch watch);
  void DropWatch(uintptr_t id);

  const Options options_;
  ThreadEventLoop events_;

  // Readers: operations in flight; writer: closing the handle.
  mutable absl::Mutex handle_mu_;
  zhandle_t* zh_ ABSL_GUARDED_BY(handle_mu_) = nullptr;

  mutable absl::Mutex mu_;
  SessionState state_ ABSL_GUARDED_BY(mu_) = SessionState::kConnecting;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool ever_connected_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<SessionCredentials> credentials_ ABSL_GUARDED_BY(mu_);
  absl::Duration negotiated_timeout_ ABSL_GUARDED_BY(mu_);
  uint64_t disconnect_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uintptr_t next_watch_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uintptr_t, Watch> watches_ ABSL_GUARDED_BY(mu_);
};

// Expires the session `credentials` on purpose, the classic way: a second handle takes the
// session over and closes it, so the server deletes its ephemeral znodes at once and the
// first handle is told its session expired when it next reaches a server. For tests and
// operator tooling.
absl::Status ExpireSession(const std::string& servers, const SessionCredentials& credentials,
                           absl::Duration timeout = absl::Seconds(10));

}  // namespace rz::zk
