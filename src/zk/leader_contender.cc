#include "zk/leader_contender.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "glog/logging.h"
#include "zk/election.h"
#include "zk/zookeeper_url.h"

namespace rz::zk {
namespace {

// How soon a step that failed because ZooKeeper was unreachable is tried again (a reconnection
// also retries it at once).
constexpr absl::Duration kRetryDelay = absl::Milliseconds(200);

}  // namespace

LeaderContender::LeaderContender(Options options, Callbacks callbacks)
    : options_(std::move(options)), callbacks_(std::move(callbacks)) {
  loop_.Start();
}

LeaderContender::~LeaderContender() {
  Withdraw();
  loop_.Stop();
}

void LeaderContender::Contend() {
  loop_.Post([this] {
    if (active_) {
      return;
    }
    active_ = true;
    {
      absl::MutexLock lock(&mu_);
      contending_ = true;
    }
    StartSession();
  });
}

void LeaderContender::Withdraw() {
  CHECK(!loop_.IsLoopThread()) << "LeaderContender::Withdraw() called from a callback";
  absl::Notification done;
  loop_.Post([this, &done] {
    if (active_) {
      LOG(INFO) << "withdrawing from the leader election at '" << options_.path << "'";
      End(absl::OkStatus());
    }
    done.Notify();
  });
  done.WaitForNotification();
}

void LeaderContender::StartSession() {
  if (absl::Status status = ValidateZnodePath(options_.path); !status.ok()) {
    End(status);
    return;
  }
  const uint64_t generation = ++generation_;
  absl::StatusOr<std::unique_ptr<ZooKeeperSession>> session = ZooKeeperSession::Start({
      .servers = options_.servers,
      .session_timeout = options_.session_timeout,
      .on_state =
          [this, generation](SessionState state) {
            loop_.Post([this, generation, state] { OnSessionState(generation, state); });
          },
  });
  if (!session.ok()) {
    End(session.status());
    return;
  }
  session_ = *std::move(session);
}

void LeaderContender::OnSessionState(uint64_t generation, SessionState state) {
  if (generation != generation_ || !active_) {
    return;
  }
  switch (state) {
    case SessionState::kConnected: {
      {
        absl::MutexLock lock(&mu_);
        credentials_ = session_->credentials();
      }
      Advance(generation);
      break;
    }
    case SessionState::kConnecting:
      // The session and the znode live on while the client reconnects; a leader stays leader
      // until the session expires.
      break;
    case SessionState::kExpired:
      End(absl::UnavailableError(absl::StrCat("the ZooKeeper session of the candidacy ",
                                              znode_.empty() ? options_.path : znode_,
                                              " expired")));
      break;
  }
}

void LeaderContender::Advance(uint64_t generation) {
  if (generation != generation_ || !active_) {
    return;
  }
  if (znode_.empty()) {
    if (absl::Status status = session_->CreatePath(options_.path); !status.ok()) {
      Fail(generation, status);
      return;
    }
    // A create whose answer was lost with the connection may still have happened: adopt a
    // znode this session owns rather than leave a second one ahead of everyone else.
    const std::optional<SessionCredentials> credentials = session_->credentials();
    absl::StatusOr<std::vector<std::string>> children = session_->Children(options_.path);
    if (!children.ok()) {
      Fail(generation, children.status());
      return;
    }
    for (const std::string& name : SortCandidates(*children)) {
      const std::string path = absl::StrCat(options_.path, "/", name);
      absl::StatusOr<std::optional<ZnodeStat>> stat = session_->Exists(path);
      if (!stat.ok()) {
        Fail(generation, stat.status());
        return;
      }
      if (stat->has_value() && credentials.has_value() &&
          (*stat)->ephemeral_owner == credentials->id) {
        znode_ = path;
        break;
      }
    }
    if (znode_.empty()) {
      absl::StatusOr<std::string> created =
          session_->Create(absl::StrCat(options_.path, "/", kCandidatePrefix),
                           MasterInfoToJson(options_.info), CreateMode::kEphemeralSequential);
      if (!created.ok()) {
        Fail(generation, created.status());
        return;
      }
      znode_ = *created;
    }
    LOG(INFO) << "contending for leadership as '" << znode_ << "'";
    Publish();
  }
  if (!own_watch_armed_) {
    // Someone deleting our znode (an operator, or the server ending the session) must end
    // the candidacy even while we lead and have no predecessor to watch.
    absl::StatusOr<std::optional<ZnodeStat>> own =
        session_->Exists(znode_, [this, generation](const WatchEvent& event) {
          loop_.Post([this, generation, event] { OnOwnZnodeEvent(generation, event); });
        });
    if (!own.ok()) {
      Fail(generation, own.status());
      return;
    }
    own_watch_armed_ = true;
    if (!own->has_value()) {
      End(absl::FailedPreconditionError(absl::StrCat("election znode '", znode_, "' was deleted")));
      return;
    }
  }
  Check(generation);
}

void LeaderContender::Check(uint64_t generation) {
  // A predecessor may vanish between listing and watching it; then list again.
  while (generation == generation_ && active_) {
    absl::StatusOr<std::vector<std::string>> children = session_->Children(options_.path);
    if (!children.ok()) {
      Fail(generation, children.status());
      return;
    }
    const std::vector<std::string> candidates = SortCandidates(*children);
    const std::string own_name = znode_.substr(znode_.rfind('/') + 1);
    auto own = std::find(candidates.begin(), candidates.end(), own_name);
    if (own == candidates.end()) {
      End(absl::FailedPreconditionError(absl::StrCat("election znode '", znode_, "' was deleted")));
      return;
    }
    if (own == candidates.begin()) {
      if (!elected_) {
        elected_ = true;
        watched_predecessor_.clear();
        Publish();
        LOG(INFO) << "elected leader as '" << znode_ << "'";
        if (callbacks_.elected) {
          callbacks_.elected(znode_);
        }
      }
      return;
    }
    const std::string predecessor = absl::StrCat(options_.path, "/", *(own - 1));
    if (predecessor == watched_predecessor_) {
      return;  // Already watched; the C client keeps the watch across reconnections.
    }
    absl::StatusOr<std::optional<ZnodeStat>> stat =
        session_->Exists(predecessor, [this, generation, predecessor](const WatchEvent& /*event*/) {
          loop_.Post([this, generation, predecessor] {
            {
              absl::MutexLock lock(&mu_);
              ++watch_events_;
            }
            if (generation != generation_) {
              return;
            }
            if (watched_predecessor_ == predecessor) {
              watched_predecessor_.clear();
            }
            Check(generation);
          });
        });
    if (!stat.ok()) {
      Fail(generation, stat.status());
      return;
    }
    if (stat->has_value()) {
      watched_predecessor_ = predecessor;
      Publish();
      VLOG(1) << "'" << znode_ << "' watches its predecessor '" << predecessor << "'";
      return;
    }
    // Gone already: the exists watch stays set (on a znode nobody will create again; it is
    // dropped with the session), so list again.
  }
}

void LeaderContender::OnOwnZnodeEvent(uint64_t generation, const WatchEvent& event) {
  {
    absl::MutexLock lock(&mu_);
    ++watch_events_;
  }
  if (generation != generation_ || !active_) {
    return;
  }
  own_watch_armed_ = false;
  if (event.type == WatchEventType::kDeleted) {
    End(absl::FailedPreconditionError(absl::StrCat("election znode '", znode_, "' was deleted")));
    return;
  }
  Advance(generation);  // Re-arms the watch.
}

void LeaderContender::Fail(uint64_t generation, const absl::Status& status) {
  if (absl::IsUnavailable(status)) {
    // Unreachable: a reconnection (or the timer) tries again; an expiry ends the candidacy
    // through OnSessionState.
    VLOG(1) << "leader election step failed, retrying: " << status;
    RetryLater(generation);
    return;
  }
  LOG(WARNING) << "leader election at '" << options_.path << "' failed: " << status;
  End(status);
}

void LeaderContender::RetryLater(uint64_t generation) {
  if (retry_pending_) {
    return;
  }
  retry_pending_ = true;
  loop_.PostAfter(kRetryDelay, [this, generation] {
    retry_pending_ = false;
    if (generation == generation_ && active_ && session_ != nullptr &&
        session_->state() == SessionState::kConnected) {
      Advance(generation);
    }
  });
}

void LeaderContender::End(const absl::Status& why) {
  if (!active_) {
    return;
  }
  active_ = false;
  elected_ = false;
  ++generation_;  // Events of the old session are stale from now on.
  znode_.clear();
  watched_predecessor_.clear();
  own_watch_armed_ = false;
  // Closing the session deletes the znode at once if a server is reachable.
  session_.reset();
  {
    absl::MutexLock lock(&mu_);
    contending_ = false;
    leading_ = false;
    published_znode_.clear();
    published_predecessor_.clear();
    credentials_.reset();
  }
  if (!why.ok()) {
    LOG(WARNING) << "lost the leader election at '" << options_.path << "': " << why;
    if (callbacks_.lost) {
      callbacks_.lost(why);
    }
  }
}

void LeaderContender::Publish() {
  absl::MutexLock lock(&mu_);
  leading_ = elected_;
  published_znode_ = znode_;
  published_predecessor_ = watched_predecessor_;
}

bool LeaderContender::contending() const {
  absl::MutexLock lock(&mu_);
  return contending_;
}

bool LeaderContender::leading() const {
  absl::MutexLock lock(&mu_);
  return leading_;
}

std::optional<std::string> LeaderContender::znode() const {
  absl::MutexLock lock(&mu_);
  if (published_znode_.empty()) {
    return std::nullopt;
  }
  return published_znode_;
}

std::optional<std::string> LeaderContender::predecessor() const {
  absl::MutexLock lock(&mu_);
  if (published_predecessor_.empty()) {
    return std::nullopt;
  }
  return published_predecessor_;
}

std::optional<SessionCredentials> LeaderContender::session_credentials() const {
  absl::MutexLock lock(&mu_);
  return credentials_;
}

uint64_t LeaderContender::watch_events() const {
  absl::MutexLock lock(&mu_);
  return watch_events_;
}

}  // namespace rz::zk
