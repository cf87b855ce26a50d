// InProcessCluster: one MasterDaemon and N AgentDaemons in this process, talking real gRPC and
// HTTP on loopback ports the kernel picks. Agents run tasks through ClusterContainerizer (no
// processes), and the master's loop can run on a manual clock so tests drive its timers
// (offer timeout, pings, failover and reregistration timeouts) without waiting for them.
// Schedulers are SchedulerClients from src/scheduler_api, the library frameworks use.
//
// Waits are on conditions with deadlines: real threads are involved.
//
// Thread rule: call from the test thread. The daemons run their own threads.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/agent_daemon.h"
#include "common/clock.h"
#include "master/master_daemon.h"
#include "rz/v1/scheduler.pb.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/fake_containerizer.h"

namespace rz::testing {

// How long WaitFor and the event helpers wait before giving up.
inline constexpr absl::Duration kClusterDeadline = absl::Seconds(20);

// Polls `condition` every few milliseconds until it holds or `deadline` passes.
template <typename F>
bool WaitFor(F condition, absl::Duration deadline = kClusterDeadline) {
  const absl::Time until = absl::Now() + deadline;
  while (absl::Now() < until) {
    if (condition()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return condition();
}

struct InProcessClusterOptions {
  int agents = 1;
  // Each agent's resources, in Resources::Parse form.
  std::string agent_resources = "cpus:4;mem:4096;ports:[31000-31099]";
  // Drive the master's clock by hand (AdvanceMasterClock) instead of real time.
  bool manual_clock = true;
  master::MasterOptions master;
};

class InProcessCluster {
 public:
  explicit InProcessCluster(InProcessClusterOptions options);
  ~InProcessCluster();  // Stops schedulers, agents, then the master; removes the work dirs.

  InProcessCluster(const InProcessCluster&) = delete;
  InProcessCluster& operator=(const InProcessCluster&) = delete;

  // Starts the master and every agent and waits until all agents are registered.
  absl::Status Start();

  master::MasterDaemon& master() { return *master_; }
  std::shared_ptr<const v1::State> state() const { return master_->master().snapshot(); }

  // Stops the master and starts a new one on the same ports and registry (a master restart).
  absl::Status RestartMaster();

  // Moves the master's clock forward and wakes its loop so due timers fire now. Then waits
  // until the loop has run everything due (a round trip through the loop).
  void AdvanceMasterClock(absl::Duration d);
  // Runs `f` on the master's loop and waits for it: a barrier after calls posted before it.
  void OnMasterLoop(std::function<void()> f);

  int agent_count() const { return static_cast<int>(agents_.size()); }
  agent::AgentDaemon* agent(int i) { return agents_[i].daemon.get(); }
  ClusterContainerizer& containerizer(int i) { return *agents_[i].containerizer; }
  // The agent's id ("" before it registered once).
  std::string agent_id(int i) const;
  // Stops agent `i` (its containers keep "running" in its containerizer).
  void StopAgent(int i);
  // Starts agent `i` again on the same work dir: it recovers its running containers and
  // reregisters. Waits until the master lists it registered.
  absl::Status RestartAgent(int i);

  // A subscribed scheduler for `info` (name defaults to "test"); nullptr and a test failure if
  // the subscription is refused.
  std::unique_ptr<scheduler::SchedulerClient> Subscribe(
      v1::FrameworkInfo info, scheduler::SchedulerClientOptions options = {});

  // GET or POST on the master's REST server: {status, body}.
  std::pair<int, std::string> HttpGet(const std::string& path) const;
  std::pair<int, std::string> HttpPost(const std::string& path, const std::string& body,
                                       const std::string& method = "POST") const;

 private:
  struct AgentSlot {
    std::string work_dir;
    std::unique_ptr<ClusterContainerizer> containerizer;
    std::unique_ptr<agent::AgentDaemon> daemon;
    std::string last_id;  // The id the agent had when it was last stopped.
  };
  agent::AgentDaemonOptions AgentOptions(const AgentSlot& slot) const;

  const InProcessClusterOptions options_;
  std::string root_;
  ManualClock clock_{absl::Now()};
  master::MasterDaemonOptions master_options_;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::unique_ptr<master::MasterDaemon> master_;
  std::vector<AgentSlot> agents_;
};

// The next event on `client` that satisfies `want`, skipping others; nullopt at the deadline.
template <typename F>
std::optional<v1::Event> NextEventWhere(scheduler::SchedulerClient& client, F want,
                                        absl::Duration deadline = kClusterDeadline) {
  const absl::Time until = absl::Now() + deadline;
  while (absl::Now() < until) {
    std::optional<v1::Event> event = client.NextEvent(until - absl::Now());
    if (event.has_value() && want(*event)) {
      return event;
    }
  }
  return std::nullopt;
}

// The offers of the next OFFERS event (empty at the deadline).
std::vector<v1::Offer> NextOffers(scheduler::SchedulerClient& client,
                                  absl::Duration deadline = kClusterDeadline);

// The next update of `task_id` (nullopt at the deadline); acknowledges it if `ack`.
std::optional<v1::TaskStatus> NextUpdate(scheduler::SchedulerClient& client,
                                         const std::string& task_id, bool ack = true,
                                         absl::Duration deadline = kClusterDeadline);

// A command task using `resources`; the command runs until killed unless it is "exit <n>".
v1::TaskInfo ClusterTask(const std::string& id, const std::string& resources = "cpus:1;mem:128",
                         const std::string& command = "run");

}  // namespace rz::testing
