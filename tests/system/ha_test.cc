// High availability with real processes: three rz-master processes contend through a real
// three-node ZooKeeper ensemble; three rz-agents and a scheduler (the client library) follow the
// leader through ZooKeeper. The leading master is killed with SIGKILL several times while tasks
// run: each time another master takes over, the agents reregister and the scheduler
// resubscribes, the tasks keep running, none is lost or launched twice, and status updates still
// flow. Every wait is a condition with a deadline; every process is stopped by its pid.
#include <signal.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/master_client.h"
#include "common/task_states.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "scheduler_api/scheduler_client.h"
#include "testing/zookeeper_ensemble.h"
#include "tests/system/system_fixture.h"

namespace rz {
namespace {

using namespace ::rz::system_test;  // NOLINT(build/namespaces): the fixture's helpers.
using ::rz::scheduler::SchedulerClient;
using ::rz::scheduler::SchedulerClientOptions;

constexpr int kMasters = 3;
constexpr int kAgents = 3;
// From the kill to a new leader serving with every agent back: a 2 s session timeout, the
// election, the registry read, and the agents' and scheduler's reconnection, with room for a
// loaded CI machine.
constexpr absl::Duration kFailoverTimeout = absl::Seconds(45);

// The pid in a master's id ("<hostname>:<port>-<pid>", see MasterDaemon::Start).
std::optional<pid_t> PidOf(const v1::MasterInfo& info) {
  const size_t dash = info.id().rfind('-');
  int pid = 0;
  if (dash == std::string::npos || !absl::SimpleAtoi(info.id().substr(dash + 1), &pid)) {
    return std::nullopt;
  }
  return pid;
}

class HaTest : public SystemTestBase {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<testing::ZooKeeperEnsemble>> ensemble =
        testing::ZooKeeperEnsemble::Start(3);
    ASSERT_TRUE(ensemble.ok()) << ensemble.status();
    ensemble_ = *std::move(ensemble);
    zk_ = ensemble_->url("/rz-ha-test");
    for (int i = 0; i < kMasters; ++i) {
      ASSERT_NO_FATAL_FAILURE(StartMaster(i));
    }
    for (int i = 1; i <= kAgents; ++i) {
      StartAgent(i);
    }
    ASSERT_TRUE(WaitUntil(
        [&] {
          absl::StatusOr<v1::State> state = cli::GetState(zk_, absl::Seconds(2));
          return state.ok() && cli::RegisteredAgentCount(*state) == kAgents;
        },
        kStartTimeout))
        << "the agents did not register with a leading master";
  }

  void TearDown() override {
    scheduler_.reset();
    SystemTestBase::TearDown();  // Stops every daemon by pid.
    for (int i = 1; i <= kAgents; ++i) {
      DestroyCgroupTree(CgroupsParent(i));
    }
    ensemble_.reset();
  }

  void StartMaster(int i) {
    const std::string dir = absl::StrCat(temp_.path(), "/master-", i);
    std::filesystem::create_directories(dir);
    const std::string endpoints = absl::StrCat(dir, "/endpoints.json");
    std::filesystem::remove(endpoints);
    masters_[i] =
        &Spawn(absl::StrCat("rz-master ", i),
               {Binary("src/master/rz-master"), "--ip=127.0.0.1", "--hostname=127.0.0.1",
                "--port=0", "--http_port=0", absl::StrCat("--zk=", zk_), "--zk_session_timeout=2s",
                "--allocation_interval=200ms", absl::StrCat("--endpoints_file=", endpoints)},
               absl::StrCat(dir, "/master.log"));
    ASSERT_TRUE(WaitUntil([&] { return !ReadOrEmpty(endpoints).empty(); }, kStartTimeout))
        << "rz-master " << i << " wrote no endpoints file";
  }

  void StartAgent(int i) {
    const std::string dir = absl::StrCat(temp_.path(), "/agent-", i);
    std::filesystem::create_directories(dir);
    Spawn(absl::StrCat("rz-agent ", i),
          {Binary("src/agent/rz-agent"), absl::StrCat("--master=", zk_), "--ip=127.0.0.1",
           "--hostname=127.0.0.1", "--http_port=0", "--resources=cpus:1;mem:256",
           absl::StrCat("--work_dir=", dir), absl::StrCat("--cgroups_parent=", CgroupsParent(i)),
           "--registration_backoff_max=1s", "--destroy_containers_on_stop",
           absl::StrCat("--endpoints_file=", dir, "/endpoints.json")},
          absl::StrCat(dir, "/agent.log"));
  }

  static std::string CgroupsParent(int index) {
    return absl::StrCat("rz-ha-", ::getpid(), "-", index);
  }

  // The leader's state, as any client sees it (following ZooKeeper).
  absl::StatusOr<v1::State> LeaderState() { return cli::GetState(zk_, absl::Seconds(2)); }

  // Waits for the next status update of the scheduler, acknowledging it.
  std::optional<v1::TaskStatus> NextUpdate(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::optional<v1::Event> event = scheduler_->NextEvent(deadline - absl::Now());
      if (!event.has_value()) {
        return std::nullopt;
      }
      if (event->has_offers()) {
        for (const v1::Offer& offer : event->offers().offers()) {
          offers_.push_back(offer);
        }
      }
      if (event->has_update()) {
        EXPECT_TRUE(scheduler_->Acknowledge(event->update().status()).ok());
        return event->update().status();
      }
    }
    return std::nullopt;
  }

  std::unique_ptr<testing::ZooKeeperEnsemble> ensemble_;
  std::string zk_;
  cli::Subprocess* masters_[kMasters] = {};
  std::unique_ptr<SchedulerClient> scheduler_;
  std::vector<v1::Offer> offers_;
};

TEST_F(HaTest, KillingTheLeaderRepeatedlyLosesNoTaskAndNoUpdate) {
  v1::FrameworkInfo info;
  info.set_name("ha-test");
  info.add_roles("*");
  info.set_failover_timeout_seconds(600);
  SchedulerClientOptions options;
  options.resubscribe = true;
  options.resubscribe_backoff_max = absl::Seconds(1);
  scheduler_ = std::make_unique<SchedulerClient>(zk_, info, options);
  ASSERT_TRUE(scheduler_->Subscribe(kStartTimeout).ok());

  // One task per agent.
  std::set<std::string> offered_agents;
  const absl::Time deadline = absl::Now() + kStartTimeout;
  while (offered_agents.size() < kAgents && absl::Now() < deadline) {
    std::optional<v1::Event> event = scheduler_->NextEvent(absl::Seconds(1));
    if (!event.has_value() || !event->has_offers()) {
      continue;
    }
    for (const v1::Offer& offer : event->offers().offers()) {
      if (offered_agents.insert(offer.agent_id()).second) {
        v1::TaskInfo task;
        task.set_name("sleeper");
        task.set_task_id(absl::StrCat("task-", offered_agents.size()));
        task.set_agent_id(offer.agent_id());
        task.mutable_command()->set_shell(true);
        task.mutable_command()->set_value("sleep 600");
        v1::Resource* cpus = task.add_resources();
        cpus->set_name("cpus");
        cpus->set_scalar(0.1);
        v1::Resource* mem = task.add_resources();
        mem->set_name("mem");
        mem->set_scalar(32);
        ASSERT_TRUE(scheduler_->Launch({OfferId(offer.id())}, {task}, 600).ok());
      } else {
        ASSERT_TRUE(scheduler_->Decline({OfferId(offer.id())}, 600).ok());
      }
    }
  }
  ASSERT_EQ(offered_agents.size(), static_cast<size_t>(kAgents));

  // Every update the scheduler sees, by task.
  std::map<std::string, std::vector<v1::TaskState>> updates;
  auto running = [&] {
    int n = 0;
    for (const auto& [id, states] : updates) {
      n += !states.empty() && states.back() == v1::TASK_RUNNING;
    }
    return n;
  };
  while (running() < kAgents) {
    std::optional<v1::TaskStatus> status = NextUpdate(kStartTimeout);
    ASSERT_TRUE(status.has_value()) << "tasks did not all start";
    updates[status->task_id()].push_back(status->state());
  }

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("failover ", round + 1));
    absl::StatusOr<v1::State> before = LeaderState();
    ASSERT_TRUE(before.ok()) << before.status();
    const std::string old_leader = before->master().id();
    std::optional<pid_t> pid = PidOf(before->master());
    ASSERT_TRUE(pid.has_value()) << old_leader;
    int killed = -1;
    for (int i = 0; i < kMasters; ++i) {
      if (masters_[i]->pid() == *pid) {
        killed = i;
      }
    }
    ASSERT_NE(killed, -1) << "the leader " << old_leader << " is none of the test's masters";
    const absl::Time kill_time = absl::Now();
    ASSERT_EQ(::kill(*pid, SIGKILL), 0);
    ASSERT_TRUE(masters_[killed]->WaitFor(absl::Seconds(10)).has_value());

    // Another master leads, every agent is back with its task running, the scheduler is back.
    absl::StatusOr<v1::State> after;
    const bool recovered = WaitUntil(
        [&] {
          after = LeaderState();
          if (!after.ok() || after->master().id() == old_leader ||
              cli::RegisteredAgentCount(*after) != kAgents || after->frameworks_size() != 1 ||
              !after->frameworks(0).connected()) {
            return false;
          }
          int running_tasks = 0;
          for (const v1::Task& task : after->tasks()) {
            running_tasks += task.state() == v1::TASK_RUNNING;
          }
          return running_tasks == kAgents;
        },
        kFailoverTimeout);
    ASSERT_TRUE(recovered) << "no recovery after killing " << old_leader << "; last state: "
                           << (after.ok() ? after->ShortDebugString() : after.status().ToString());
    LOG(INFO) << "failover " << round + 1 << ": " << after->master().id() << " leads, with every "
              << "agent and the scheduler back, " << absl::Now() - kill_time << " after the kill";
    EXPECT_EQ(after->tasks_size(), kAgents);  // Each task once: none launched twice.
    EXPECT_EQ(after->completed_tasks_size(), 0);
    ASSERT_NO_FATAL_FAILURE(StartMaster(killed));  // Three masters again.
  }

  // Updates still flow through the third leader: killing a task reports TASK_KILLED, and
  // nothing but STARTING, RUNNING and that task's KILLING and KILLED was ever sent.
  ASSERT_TRUE(scheduler_->Kill(TaskId("task-1")).ok());
  std::optional<v1::TaskState> killed;
  const absl::Time kill_deadline = absl::Now() + kStartTimeout;
  while (!killed.has_value() && absl::Now() < kill_deadline) {
    std::optional<v1::TaskStatus> status = NextUpdate(kill_deadline - absl::Now());
    if (!status.has_value()) {
      break;
    }
    updates[status->task_id()].push_back(status->state());
    if (status->task_id() == "task-1" && IsTerminal(status->state())) {
      killed = status->state();
    }
  }
  EXPECT_EQ(killed, v1::TASK_KILLED);
  for (const auto& [id, states] : updates) {
    for (v1::TaskState state : states) {
      EXPECT_TRUE(state == v1::TASK_STARTING || state == v1::TASK_RUNNING ||
                  (id == "task-1" && (state == v1::TASK_KILLING || state == v1::TASK_KILLED)))
          << id << " got " << v1::TaskState_Name(state);
    }
  }
}

TEST_F(HaTest, LosingZooKeeperQuorumStopsTheMastersAndItsReturnElectsALeader) {
  absl::StatusOr<v1::State> before = LeaderState();
  ASSERT_TRUE(before.ok()) << before.status();
  const std::string leader = before->master().id();

  // One ZooKeeper node down: nothing visible. The same master leads throughout.
  ASSERT_TRUE(ensemble_->Kill(0).ok());
  const absl::Time quiet_until = absl::Now() + absl::Seconds(5);
  while (absl::Now() < quiet_until) {
    absl::StatusOr<v1::State> state = LeaderState();
    ASSERT_TRUE(state.ok()) << state.status();
    ASSERT_EQ(state->master().id(), leader);
    ASSERT_EQ(cli::RegisteredAgentCount(*state), kAgents);
    absl::SleepFor(absl::Milliseconds(200));
  }

  // Two down: no quorum. Within a session timeout every master stops serving: none answers
  // the state with 200 (the leader steps down and restarts itself, waiting for ZooKeeper; the
  // others redirect to nobody).
  ASSERT_TRUE(ensemble_->Kill(1).ok());
  auto any_master_serves = [&] {
    for (int i = 0; i < kMasters; ++i) {
      nlohmann::json endpoints = nlohmann::json::parse(
          ReadOrEmpty(absl::StrCat(temp_.path(), "/master-", i, "/endpoints.json")), nullptr,
          false);
      if (!endpoints.is_object() || !endpoints.contains("http")) {
        continue;
      }
      httplib::Client client(endpoints["http"].get<std::string>());
      client.set_connection_timeout(1);
      client.set_read_timeout(2);
      httplib::Result result = client.Get("/state-summary");
      if (result && result->status == 200) {
        return true;
      }
    }
    return false;
  };
  ASSERT_TRUE(WaitUntil([&] { return !any_master_serves(); }, absl::Seconds(20)))
      << "a master still serves without a ZooKeeper quorum";

  // Quorum back: a leader is elected and the agents return to it.
  ASSERT_TRUE(ensemble_->Restart(0).ok());
  ASSERT_TRUE(ensemble_->Restart(1).ok());
  absl::StatusOr<v1::State> after;
  ASSERT_TRUE(WaitUntil(
      [&] {
        after = LeaderState();
        return after.ok() && cli::RegisteredAgentCount(*after) == kAgents;
      },
      kFailoverTimeout))
      << "no leader with every agent back after ZooKeeper returned: "
      << (after.ok() ? after->master().id() : after.status().ToString());
}

TEST_F(HaTest, AFrameworkThatNeverReturnsIsTornDownAtItsOriginalDeadlineAcrossAFailover) {
  v1::FrameworkInfo info;
  info.set_name("leaves");
  info.add_roles("*");
  info.set_failover_timeout_seconds(10);
  scheduler_ = std::make_unique<SchedulerClient>(zk_, info);
  ASSERT_TRUE(scheduler_->Subscribe(kStartTimeout).ok());
  const std::string framework_id = scheduler_->framework_id().value();
  scheduler_.reset();  // Disconnects for good.
  const absl::Time disconnected = absl::Now();
  absl::StatusOr<v1::State> state;
  ASSERT_TRUE(WaitUntil(
      [&] {
        state = LeaderState();
        return state.ok() && state->frameworks_size() == 1 && !state->frameworks(0).connected();
      },
      absl::Seconds(10)));

  // Six seconds into its ten, the leader dies. Its successor must tear the framework down at
  // the deadline the first one set (disconnect + 10 s), not ten seconds after taking over.
  absl::SleepFor(disconnected + absl::Seconds(6) - absl::Now());
  std::optional<pid_t> pid = PidOf(state->master());
  ASSERT_TRUE(pid.has_value());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  bool removed = false;
  ASSERT_TRUE(WaitUntil(
      [&] {
        state = LeaderState();
        if (!state.ok()) {
          return false;
        }
        for (const v1::FrameworkState& done : state->completed_frameworks()) {
          removed = removed || done.info().id() == framework_id;
        }
        return removed;
      },
      absl::Seconds(30)));
  const absl::Duration after_disconnect = absl::Now() - disconnected;
  LOG(INFO) << "framework torn down " << after_disconnect << " after it disconnected";
  EXPECT_GE(after_disconnect, absl::Seconds(9.5));
  // A deadline restarted by the failover would fall at about 6 + 2 (takeover) + 10 = 18 s.
  EXPECT_LT(after_disconnect, absl::Seconds(14));
}

TEST_F(HaTest, AFrozenLeaderIsReplacedAndStepsDownWhenItWakes) {
  absl::StatusOr<v1::State> before = LeaderState();
  ASSERT_TRUE(before.ok()) << before.status();
  const std::string old_leader = before->master().id();
  std::optional<pid_t> pid = PidOf(before->master());
  ASSERT_TRUE(pid.has_value());
  int frozen = -1;
  for (int i = 0; i < kMasters; ++i) {
    if (masters_[i]->pid() == *pid) {
      frozen = i;
    }
  }
  ASSERT_NE(frozen, -1);

  // Alive but silent: its session expires and another master takes over.
  ASSERT_EQ(::kill(*pid, SIGSTOP), 0);
  absl::StatusOr<v1::State> after;
  ASSERT_TRUE(WaitUntil(
      [&] {
        after = LeaderState();
        return after.ok() && after->master().id() != old_leader &&
               cli::RegisteredAgentCount(*after) == kAgents;
      },
      kFailoverTimeout))
      << "no new leader while " << old_leader << " was frozen";
  const std::string new_leader = after->master().id();
  const std::string new_leader_http = after->master().http_address();

  // Woken, the old leader finds its session expired, steps down and restarts (same pid) as a
  // standby that redirects to the new leader, which keeps leading undisturbed.
  const std::string endpoints = absl::StrCat(temp_.path(), "/master-", frozen, "/endpoints.json");
  std::filesystem::remove(endpoints);
  ASSERT_EQ(::kill(*pid, SIGCONT), 0);
  ASSERT_TRUE(WaitUntil([&] { return !ReadOrEmpty(endpoints).empty(); }, kFailoverTimeout))
      << "the old leader did not restart";
  EXPECT_EQ(masters_[frozen]->Poll(), std::nullopt);  // The same process, re-executed.
  nlohmann::json parsed = nlohmann::json::parse(ReadOrEmpty(endpoints), nullptr, false);
  ASSERT_TRUE(parsed.is_object() && parsed.contains("http"));
  httplib::Client client(parsed["http"].get<std::string>());
  std::string location;
  ASSERT_TRUE(WaitUntil(
      [&] {
        httplib::Result redirect = client.Get("/state-summary");
        if (!redirect || redirect->status != 307) {
          return false;
        }
        location = redirect->get_header_value("Location");
        return true;
      },
      kStartTimeout));
  EXPECT_EQ(location, new_leader_http + "/state-summary");
  absl::StatusOr<v1::State> later = LeaderState();
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(later->master().id(), new_leader);
  EXPECT_EQ(cli::RegisteredAgentCount(*later), kAgents);
}

}  // namespace
}  // namespace rz
