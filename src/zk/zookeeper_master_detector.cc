#include "zk/zookeeper_master_detector.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "glog/logging.h"
#include "zk/election.h"
#include "zk/zookeeper_url.h"

namespace rz::zk {
namespace {

constexpr absl::Duration kRetryDelay = absl::Milliseconds(200);

}  // namespace

absl::StatusOr<std::unique_ptr<ZooKeeperMasterDetector>> ZooKeeperMasterDetector::Create(
    const std::string& url, absl::Duration session_timeout) {
  absl::StatusOr<ZooKeeperUrl> parsed = ZooKeeperUrl::Parse(url);
  if (!parsed.ok()) {
    return parsed.status();
  }
  return std::make_unique<ZooKeeperMasterDetector>(
      Options{parsed->connect_string(), parsed->path, session_timeout});
}

ZooKeeperMasterDetector::ZooKeeperMasterDetector(Options options) : options_(std::move(options)) {
  loop_.Start();
}

ZooKeeperMasterDetector::~ZooKeeperMasterDetector() {
  absl::Notification done;
  loop_.Post([this, &done] {
    stopped_ = true;
    ++generation_;
    session_.reset();
    done.Notify();
  });
  done.WaitForNotification();
  loop_.Stop();
}

void ZooKeeperMasterDetector::Start(std::function<void(std::optional<v1::MasterInfo>)> on_change) {
  loop_.Post([this, on_change = std::move(on_change)]() mutable {
    on_change_ = std::move(on_change);
    if (on_change_) {
      on_change_(leader());
    }
    StartSession();
  });
}

std::optional<v1::MasterInfo> ZooKeeperMasterDetector::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

std::optional<std::string> ZooKeeperMasterDetector::leader_znode() const {
  absl::MutexLock lock(&mu_);
  if (!leader_.has_value()) {
    return std::nullopt;
  }
  return leader_znode_;
}

void ZooKeeperMasterDetector::StartSession() {
  if (stopped_) {
    return;
  }
  const uint64_t generation = ++generation_;
  children_watch_armed_ = false;
  path_watch_armed_ = false;
  session_.reset();
  absl::StatusOr<std::unique_ptr<ZooKeeperSession>> session = ZooKeeperSession::Start({
      .servers = options_.servers,
      .session_timeout = options_.session_timeout,
      .on_state =
          [this, generation](SessionState state) {
            loop_.Post([this, generation, state] { OnSessionState(generation, state); });
          },
  });
  if (!session.ok()) {
    // Only bad options get here (an unreachable ensemble just keeps connecting).
    LOG(ERROR) << "cannot follow the leader at '" << options_.path << "': " << session.status();
    return;
  }
  session_ = *std::move(session);
}

void ZooKeeperMasterDetector::OnSessionState(uint64_t generation, SessionState state) {
  if (generation != generation_ || stopped_) {
    return;
  }
  switch (state) {
    case SessionState::kConnected:
      Refresh(generation);
      break;
    case SessionState::kConnecting:
      break;  // The last known leader most likely still leads.
    case SessionState::kExpired:
      SetLeader(std::nullopt, "");
      StartSession();
      break;
  }
}

void ZooKeeperMasterDetector::Refresh(uint64_t generation) {
  if (generation != generation_ || stopped_ || session_ == nullptr) {
    return;
  }
  auto refresh_watch = [this, generation](bool* armed) {
    return [this, generation, armed](const WatchEvent& /*event*/) {
      loop_.Post([this, generation, armed] {
        if (generation != generation_) {
          return;
        }
        *armed = false;
        Refresh(generation);
      });
    };
  };
  // The lowest candidate may vanish between listing and reading it; then list again.
  for (int attempt = 0; attempt < 10; ++attempt) {
    Watch children_watch;
    if (!children_watch_armed_) {
      children_watch = refresh_watch(&children_watch_armed_);
    }
    absl::StatusOr<std::vector<std::string>> children =
        session_->Children(options_.path, std::move(children_watch));
    if (absl::IsNotFound(children.status())) {
      // No election yet: wait for the path to appear.
      SetLeader(std::nullopt, "");
      if (!path_watch_armed_) {
        absl::StatusOr<std::optional<ZnodeStat>> stat =
            session_->Exists(options_.path, refresh_watch(&path_watch_armed_));
        if (!stat.ok()) {
          RetryLater(generation);
          return;
        }
        path_watch_armed_ = true;
        if (stat->has_value()) {
          continue;  // Created meanwhile.
        }
      }
      return;
    }
    if (!children.ok()) {
      VLOG(1) << "reading the election at '" << options_.path << "': " << children.status();
      RetryLater(generation);
      return;
    }
    children_watch_armed_ = true;
    const std::vector<std::string> candidates = SortCandidates(*children);
    if (candidates.empty()) {
      SetLeader(std::nullopt, "");
      return;
    }
    const std::string znode = absl::StrCat(options_.path, "/", candidates.front());
    {
      absl::MutexLock lock(&mu_);
      if (leader_.has_value() && leader_znode_ == znode) {
        return;  // Unchanged.
      }
    }
    absl::StatusOr<std::optional<Znode>> data = session_->Get(znode);
    if (!data.ok()) {
      RetryLater(generation);
      return;
    }
    if (!data->has_value()) {
      continue;
    }
    absl::StatusOr<v1::MasterInfo> info = MasterInfoFromJson((*data)->data, znode);
    if (!info.ok()) {
      LOG(WARNING) << "no leader known: " << info.status();
      SetLeader(std::nullopt, "");
      return;
    }
    info->set_leader(true);
    SetLeader(*std::move(info), znode);
    return;
  }
  RetryLater(generation);
}

void ZooKeeperMasterDetector::RetryLater(uint64_t generation) {
  if (retry_pending_) {
    return;
  }
  retry_pending_ = true;
  loop_.PostAfter(kRetryDelay, [this, generation] {
    retry_pending_ = false;
    if (generation == generation_ && session_ != nullptr &&
        session_->state() == SessionState::kConnected) {
      Refresh(generation);
    }
  });
}

void ZooKeeperMasterDetector::SetLeader(std::optional<v1::MasterInfo> info,
                                        const std::string& znode) {
  {
    absl::MutexLock lock(&mu_);
    const bool same =
        info.has_value() == leader_.has_value() &&
        (!info.has_value() ||
         (znode == leader_znode_ && info->SerializeAsString() == leader_->SerializeAsString()));
    if (same) {
      return;
    }
    leader_ = info;
    leader_znode_ = znode;
  }
  if (info.has_value()) {
    LOG(INFO) << "leading master: " << info->grpc_address() << " ('" << znode << "')";
  } else {
    LOG(INFO) << "no leading master known at '" << options_.path << "'";
  }
  if (on_change_) {
    on_change_(std::move(info));
  }
}

}  // namespace rz::zk
