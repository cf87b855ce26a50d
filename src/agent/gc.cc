#include "agent/gc.h"

#include <stdlib.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace rz::agent {
namespace {

// `path` made absolute-normal without a trailing slash, or nullopt if it is relative.
std::optional<std::filesystem::path> Normalize(const std::string& path) {
  std::filesystem::path normal = std::filesystem::path(path).lexically_normal();
  if (!normal.is_absolute()) {
    return std::nullopt;
  }
  if (!normal.has_filename() && normal != normal.root_path()) {
    normal = normal.parent_path();  // "/a/b/" → "/a/b"
  }
  return normal;
}

// True if `path` is strictly below `root`, comparing whole components.
bool IsStrictlyBelow(const std::filesystem::path& root, const std::filesystem::path& path) {
  auto r = root.begin();
  auto p = path.begin();
  for (; r != root.end(); ++r, ++p) {
    if (r->empty()) {
      continue;  // A trailing separator of the root.
    }
    if (p == path.end() || *p != *r) {
      return false;
    }
  }
  return p != path.end() && !p->empty();
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  std::unique_ptr<char, void (*)(void*)> real(realpath(path.c_str(), nullptr), free);
  if (real == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("resolving '", path, "'"));
  }
  return std::string(real.get());
}

// Runs on the blocking runner. The parent directory is resolved again here: a symlink between
// `root` and the sandbox would otherwise lead the removal somewhere else.
absl::Status RemoveSandbox(const std::string& root, const std::string& path) {
  absl::StatusOr<std::string> real_root = RealPath(root);
  if (!real_root.ok()) {
    return real_root.status();
  }
  const std::filesystem::path sandbox(path);
  absl::StatusOr<std::string> real_parent = RealPath(sandbox.parent_path().string());
  if (absl::IsNotFound(real_parent.status())) {
    return absl::OkStatus();  // Already gone, parent and all.
  }
  if (!real_parent.ok()) {
    return real_parent.status();
  }
  const std::filesystem::path target = std::filesystem::path(*real_parent) / sandbox.filename();
  if (!IsStrictlyBelow(*real_root, target)) {
    return absl::PermissionDeniedError(absl::StrCat("refusing to remove '", path,
                                                    "': it resolves to '", target.string(),
                                                    "', outside '", *real_root, "'"));
  }
  // remove_all() removes a symlink itself, never what it points to.
  std::error_code error;
  std::filesystem::remove_all(target, error);
  if (error) {
    return absl::InternalError(absl::StrCat("removing '", target.string(), "': ", error.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> StatvfsUsage(const std::string& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("statvfs of '", path, "'"));
  }
  if (st.f_blocks == 0) {
    return absl::InternalError(absl::StrCat("statvfs of '", path, "' reports no blocks"));
  }
  return 1.0 - static_cast<double>(st.f_bavail) / static_cast<double>(st.f_blocks);
}

}  // namespace

SandboxGc::SandboxGc(SandboxGcOptions options, EventLoop& loop, BlockingRunner run_blocking)
    : options_(std::move(options)), loop_(loop), run_blocking_(std::move(run_blocking)) {}

SandboxGc::~SandboxGc() {
  // On the loop thread, or on any thread once the loop no longer runs closures (a daemon
  // stopping); CancelTimer is thread-safe either way.
  if (check_timer_ != 0) {
    loop_.CancelTimer(check_timer_);
  }
  for (const auto& [path, entry] : entries_) {
    if (entry.timer != 0) {
      loop_.CancelTimer(entry.timer);
    }
  }
}

absl::Duration SandboxGc::EffectiveDelay(absl::Duration gc_delay, double usage, double watermark) {
  if (usage >= watermark) {
    return absl::ZeroDuration();
  }
  return gc_delay * std::clamp(1.0 - usage / watermark, 0.0, 1.0);
}

void SandboxGc::Start() {
  DCHECK(loop_.IsLoopThread());
  if (started_) {
    return;
  }
  started_ = true;
  CheckDisk();
}

void SandboxGc::Schedule(const std::string& path, absl::Time finished_at) {
  DCHECK(loop_.IsLoopThread());
  const std::optional<std::filesystem::path> normal = Normalize(path);
  const std::optional<std::filesystem::path> root = Normalize(options_.root);
  if (!normal.has_value() || !root.has_value() || !IsStrictlyBelow(*root, *normal)) {
    LOG(ERROR) << "sandbox gc: refusing to schedule '" << path
               << "': not below the sandboxes root '" << options_.root << "'";
    return;
  }
  const std::string key = normal->string();
  Entry& entry = entries_[key];
  if (entry.removing) {
    LOG(WARNING) << "sandbox gc: '" << key << "' is scheduled again while being removed";
  }
  if (entry.timer != 0) {
    loop_.CancelTimer(entry.timer);
  }
  entry = Entry{.finished_at = finished_at, .generation = next_generation_++};
  const absl::Duration delay =
      std::max(absl::ZeroDuration(), finished_at + options_.gc_delay - loop_.clock().Now());
  entry.timer = loop_.PostAfter(
      delay, [this, alive = std::weak_ptr<bool>(alive_), key, generation = entry.generation] {
        if (!alive.expired()) {
          OnTimer(key, generation);
        }
      });
  VLOG(1) << "sandbox gc: '" << key << "' goes in " << delay;
}

bool SandboxGc::Unschedule(const std::string& path) {
  DCHECK(loop_.IsLoopThread());
  const std::optional<std::filesystem::path> normal = Normalize(path);
  if (!normal.has_value()) {
    return false;
  }
  auto it = entries_.find(normal->string());
  if (it == entries_.end()) {
    return false;
  }
  if (it->second.removing) {
    LOG(WARNING) << "sandbox gc: cannot keep '" << it->first << "': its removal has begun";
    return false;
  }
  if (it->second.timer != 0) {
    loop_.CancelTimer(it->second.timer);
  }
  entries_.erase(it);
  return true;
}

size_t SandboxGc::pending() const {
  DCHECK(loop_.IsLoopThread());
  return entries_.size();
}

void SandboxGc::ArmCheck() {
  check_timer_ =
      loop_.PostAfter(options_.disk_check_interval, [this, alive = std::weak_ptr<bool>(alive_)] {
        if (!alive.expired()) {
          check_timer_ = 0;
          CheckDisk();
        }
      });
}

void SandboxGc::CheckDisk() {
  if (check_in_flight_) {
    return;
  }
  check_in_flight_ = true;
  std::function<absl::StatusOr<double>()> probe = options_.disk_usage;
  if (!probe) {
    probe = [root = options_.root] { return StatvfsUsage(root); };
  }
  run_blocking_([this, alive = std::weak_ptr<bool>(alive_), &loop = loop_,
                 probe = std::move(probe)]() mutable {
    absl::StatusOr<double> usage = probe();
    loop.Post([this, alive = std::move(alive), usage = std::move(usage)] {
      if (!alive.expired()) {
        OnDiskUsage(usage);
      }
    });
  });
}

void SandboxGc::OnDiskUsage(const absl::StatusOr<double>& usage) {
  check_in_flight_ = false;
  if (!usage.ok()) {
    LOG(WARNING) << "sandbox gc: cannot measure disk usage: " << usage.status();
    ArmCheck();
    return;
  }
  if (*usage >= options_.disk_watermark) {
    auto oldest = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (!it->second.removing &&
          (oldest == entries_.end() || it->second.finished_at < oldest->second.finished_at)) {
        oldest = it;
      }
    }
    if (oldest == entries_.end()) {
      // Once per episode: the disk may stay full for hours.
      LOG_IF(WARNING, !warned_nothing_to_remove_)
          << "sandbox gc: disk usage " << *usage << " is at or above the watermark "
          << options_.disk_watermark << " and no sandbox is left to remove";
      warned_nothing_to_remove_ = true;
      ArmCheck();
      return;
    }
    LOG(INFO) << "sandbox gc: disk usage " << *usage << " is at or above the watermark "
              << options_.disk_watermark << "; removing '" << oldest->first << "' early";
    Remove(oldest->first, oldest->second, /*recheck=*/true);
    return;
  }
  warned_nothing_to_remove_ = false;
  const absl::Duration delay = EffectiveDelay(options_.gc_delay, *usage, options_.disk_watermark);
  const absl::Time now = loop_.clock().Now();
  for (auto& [path, entry] : entries_) {
    if (!entry.removing && entry.finished_at + delay <= now) {
      Remove(path, entry, /*recheck=*/false);
    }
  }
  ArmCheck();
}

void SandboxGc::OnTimer(const std::string& path, uint64_t generation) {
  auto it = entries_.find(path);
  if (it == entries_.end() || it->second.generation != generation || it->second.removing) {
    return;
  }
  it->second.timer = 0;
  Remove(path, it->second, /*recheck=*/false);
}

void SandboxGc::Remove(const std::string& path, Entry& entry, bool recheck) {
  entry.removing = true;
  if (entry.timer != 0) {
    loop_.CancelTimer(entry.timer);
    entry.timer = 0;
  }
  run_blocking_([this, alive = std::weak_ptr<bool>(alive_), &loop = loop_, root = options_.root,
                 path, generation = entry.generation, recheck]() mutable {
    absl::Status status = RemoveSandbox(root, path);
    loop.Post([this, alive = std::move(alive), path = std::move(path), generation,
               status = std::move(status), recheck] {
      if (!alive.expired()) {
        OnRemoved(path, generation, status, recheck);
      }
    });
  });
}

void SandboxGc::OnRemoved(const std::string& path, uint64_t generation, const absl::Status& status,
                          bool recheck) {
  auto it = entries_.find(path);
  if (it != entries_.end() && it->second.generation == generation) {
    entries_.erase(it);
  }
  if (status.ok()) {
    LOG(INFO) << "sandbox gc: removed '" << path << "'";
  } else {
    LOG(ERROR) << "sandbox gc: " << status;
  }
  if (recheck) {
    CheckDisk();
  }
}

}  // namespace rz::agent
