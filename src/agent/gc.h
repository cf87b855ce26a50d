// SandboxGc removes the sandboxes of finished tasks: each one `gc_delay` after its task
// finished, and sooner when the disk fills up.
//
// Delay rule. A periodic check (every `disk_check_interval`, and once at Start()) measures the
// work directory's filesystem usage `u`:
//   - u < watermark: every scheduled sandbox older than
//       EffectiveDelay(u) = gc_delay * (1 - u / watermark)
//     is removed. An empty disk keeps the full delay; the delay shrinks linearly to zero as
//     usage approaches the watermark. Without checks each sandbox goes at finished_at + gc_delay.
//   - u >= watermark: the oldest scheduled sandbox (by finish time) is removed at once and usage
//     is measured again, one sandbox at a time, until usage is below the watermark or nothing is
//     left to remove.
//
// Safety: only paths strictly below `root` are ever removed. Schedule() refuses (and logs)
// other paths, and the removal itself resolves symlinks in the parent directory again and
// refuses a sandbox that would resolve outside `root`. A sandbox that is already gone counts as
// removed; removal errors are logged and the sandbox is forgotten.
//
// Thread rule: loop-only. Every method runs on `loop` (DCHECKed), including the destructor.
// Filesystem work (removal, the disk usage probe) runs on `run_blocking` and posts back; results
// arriving after destruction are dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/event_loop.h"

namespace rz::agent {

// Runs a closure off the event loop (production: WorkerPool::Submit). The same type as in
// agent.h.
using BlockingRunner = std::function<void(absl::AnyInvocable<void() &&>)>;

struct SandboxGcOptions {
  // The sandboxes root (<work_dir>/sandboxes). Nothing outside it is ever removed.
  std::string root;
  absl::Duration gc_delay = absl::Hours(24 * 7);
  // Fraction of the filesystem in use at or above which sandboxes are removed at once.
  double disk_watermark = 0.9;
  absl::Duration disk_check_interval = absl::Minutes(1);
  // Returns the used fraction (0..1) of the filesystem holding `root`. Runs on `run_blocking`.
  // Unset: statvfs() of `root`, counting blocks reserved for root as used.
  std::function<absl::StatusOr<double>()> disk_usage;
};

class SandboxGc {
 public:
  // `loop` must outlive the collector; `run_blocking` may outlive it.
  SandboxGc(SandboxGcOptions options, EventLoop& loop, BlockingRunner run_blocking);
  ~SandboxGc();

  SandboxGc(const SandboxGc&) = delete;
  SandboxGc& operator=(const SandboxGc&) = delete;

  // Starts the periodic disk check, running the first one now. Idempotent.
  void Start();

  // Removes the directory `path` (recursively) at `finished_at + gc_delay`, or sooner under
  // disk pressure. Scheduling a path again replaces its time. A path that is not strictly below
  // `root` (after lexical normalization) is refused and logged.
  void Schedule(const std::string& path, absl::Time finished_at);

  // Keeps `path`. Returns true if it was scheduled and its removal had not begun; false if it
  // was unknown or is being removed right now.
  bool Unschedule(const std::string& path);

  // Sandboxes scheduled and not yet removed (including those being removed).
  size_t pending() const;

  // The delay rule above, for `usage` below `watermark`; zero at or above it.
  static absl::Duration EffectiveDelay(absl::Duration gc_delay, double usage, double watermark);

 private:
  struct Entry {
    absl::Time finished_at;
    uint64_t generation = 0;  // Tells a stale timer or removal result from the current one.
    TimerId timer = 0;
    bool removing = false;
  };

  void ArmCheck();
  void CheckDisk();
  void OnDiskUsage(const absl::StatusOr<double>& usage);
  void OnTimer(const std::string& path, uint64_t generation);
  // Starts removing `path` on the runner; with `recheck`, measures the disk again afterwards.
  void Remove(const std::string& path, Entry& entry, bool recheck);
  void OnRemoved(const std::string& path, uint64_t generation, const absl::Status& status,
                 bool recheck);

  const SandboxGcOptions options_;
  EventLoop& loop_;
  const BlockingRunner run_blocking_;
  // Posted closures hold a weak reference and do nothing once the collector is gone.
  const std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  std::map<std::string, Entry> entries_;  // By normalized path.
  uint64_t next_generation_ = 1;
  bool started_ = false;
  bool check_in_flight_ = false;
  bool warned_nothing_to_remove_ = false;
  TimerId check_timer_ = 0;
};

}  // namespace rz::agent
