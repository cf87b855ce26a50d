// HealthChecker runs one task's health check (rz::v1::HealthCheck: a command, an HTTP GET or a
// TCP connect) periodically and tells the agent what the task's health is, and when the task
// must be killed because it failed too many checks in a row.
//
// Thread rule: loop-only. Every method and the result callback run on the agent's EventLoop;
// timers use the loop's clock. The blocking part of a check (spawning and waiting for a
// command, the HTTP request, the TCP connect) runs through the BlockingRunner and posts its
// result back to the loop. At most one check is in flight; the next one starts `interval` after
// the previous one finished.
//
// Reporting rule: a failure calls back with healthy=false unless it happened within the grace
// period before the first success (such failures are neither counted nor reported). A success
// calls back only when the state changes (the first success, or a success after failures).
// When the counted failures in a row reach `consecutive_failures`, the callback has kill=true
// and the checker has stopped itself.
//
// The per-check timeout is wall time on the worker, since it bounds real I/O; the loop's clock
// drives everything else (delay, interval, grace period).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/event_loop.h"
#include "rz/v1/common.pb.h"

namespace rz::agent {

// Runs a closure off the event loop (production: WorkerPool::Submit). Same type as in agent.h.
using BlockingRunner = std::function<void(absl::AnyInvocable<void() &&>)>;

// Returns OK if `check` can run: the type is set and its body matches it (COMMAND: a command
// value; HTTP and TCP: a port in 1..65535; HTTP: scheme "http" or "https", a path starting with
// '/'); no body of another type is set; durations are finite and non-negative. Otherwise
// InvalidArgument naming the field, e.g. "health_check.http.port: 0 is not a port".
absl::Status ValidateHealthCheck(const rz::v1::HealthCheck& check);

// What a HealthCheck means once the proto defaults (0 = unset) are applied.
struct HealthCheckTiming {
  absl::Duration delay;         // Before the first check; default 15 s.
  absl::Duration interval;      // From the end of one check to the start of the next; default 10 s.
  absl::Duration timeout;       // Per check; default 20 s.
  absl::Duration grace_period;  // Default 10 s, measured from Start().
  uint32_t consecutive_failures;  // Default 3.
};
HealthCheckTiming TimingOf(const rz::v1::HealthCheck& check);

// One report to the agent.
struct HealthResult {
  bool healthy = false;
  // Counted failures in a row, this one included; 0 when healthy.
  uint32_t consecutive_failures = 0;
  // The failure limit is reached: kill the task. The checker has stopped.
  bool kill = false;
  // What the last check saw, e.g. "command exited with status 1", "HTTP 503",
  // "connect to 127.0.0.1:8080: Connection refused", "timed out after 1s".
  std::string message;
};

class HealthChecker {
 public:
  // Where and as whom the checks run.
  struct Target {
    // The task's sandbox: the working directory of command checks.
    std::string sandbox;
    // The task's environment ("K=V"); the check command's own variables override it.
    std::vector<std::string> environment;
    // Run command checks as this user/group (the agent must be root to switch).
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    // Where HTTP and TCP checks connect.
    std::string host = "127.0.0.1";
  };

  using Callback = std::function<void(const HealthResult&)>;

  // `loop` must outlive the checker and every check in flight (the runner's closures post to
  // it). `on_result` runs on the loop; it may call Stop() or destroy the checker.
  // REQUIRES: ValidateHealthCheck(check).ok().
  HealthChecker(EventLoop& loop, BlockingRunner run_blocking, rz::v1::HealthCheck check,
                Target target, Callback on_result);
  ~HealthChecker();

  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Schedules the first check `delay` from now. REQUIRES: called at most once, before Stop().
  void Start();

  // Final: cancels the next check; a check in flight may finish on its worker but its result
  // is dropped, and the callback never runs again. The checker may be destroyed right after,
  // even while a check still runs. Idempotent.
  void Stop();

  // False once stopped (by Stop() or after a kill result).
  bool active() const { return alive_ != nullptr; }

 private:
  void ScheduleCheck(absl::Duration delay);
  void RunCheck();
  void OnCheckDone(absl::Time started, bool healthy, std::string message);
  // Calls `on_result_`; returns false if the callback stopped or destroyed the checker.
  bool Report(const HealthResult& result);

  EventLoop& loop_;
  const BlockingRunner run_blocking_;
  const rz::v1::HealthCheck check_;
  const HealthCheckTiming timing_;
  const Target target_;
  const Callback on_result_;

  // Closures posted to the loop or the runner hold it weakly; Stop() and the destructor reset
  // it, so those closures find it expired and do nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool started_ = false;
  std::optional<TimerId> timer_;
  absl::Time start_time_;
  bool had_success_ = false;
  uint32_t consecutive_failures_ = 0;
};

}  // namespace rz::agent
