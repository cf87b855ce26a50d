// LinuxContainerizer with real cgroups (v1 here), the real rz-containerizer-init and real
// processes. Needs root; skips with a message otherwise. Every test removes the cgroups and
// processes it creates: its containers live under a parent cgroup unique to the test.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "agent/containerizer/cgroup_fs.h"
#include "agent/containerizer/linux_containerizer.h"
#include "gtest/gtest.h"
#include "testing/build_dir.h"

namespace rz::agent {
namespace {

using State = RecoveredContainer::State;

// Collects exits reported by the containerizer.
class Exits {
 public:
  Containerizer::ExitCallback For(const std::string& id) {
    return [this, id](Termination termination) {
      absl::MutexLock lock(&mu_);
      exits_[id] = std::move(termination);
    };
  }

  // Waits up to `timeout` for the exit of `id`.
  std::optional<Termination> Wait(const std::string& id,
                                  absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return exits_.contains(id); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout)) {
      return std::nullopt;
    }
    return exits_.at(id);
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, Termination> exits_ ABSL_GUARDED_BY(mu_);
};

// True while `pid` runs. A dead child of this process (an init the test spawned through a
// containerizer it then destroyed, as if the agent had died) is reaped here, as the system's
// init would reap it once a real agent is gone.
bool Alive(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == pid) {
    return false;
  }
  return ::kill(pid, 0) == 0;
}

bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return condition();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

class ContainerizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root for cgroups and user switching";
    }
    init_ = testing::ContainerizerInitPath();
    if (init_.empty() || !std::filesystem::exists(init_)) {
      GTEST_SKIP() << "rz-containerizer-init not found (RZ_BUILD_DIR unset?)";
    }
    auto cgroups = Cgroups::DetectHost(fs_, "");
    if (!cgroups.ok()) {
      GTEST_SKIP() << "no usable cgroups: " << cgroups.status();
    }
    version_ = (*cgroups)->version();
    char dir[] = "/tmp/rz-containerizer-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ::chmod(dir, 0755);
    parent_ = absl::StrCat("rz-test-", ::getpid(), "-", counter_++);
    containerizer_ = Make();
  }

  void TearDown() override {
    if (containerizer_ != nullptr) {
      containerizer_->DestroyAll(absl::Seconds(20));
      containerizer_.reset();
    }
    // Whatever a test left (e.g. after recovering nothing) goes with its parent cgroup.
    if (!parent_.empty()) {
      if (auto cgroups = Cgroups::DetectHost(fs_, ""); cgroups.ok()) {
        EXPECT_TRUE((*cgroups)->Destroy(parent_).ok());
      }
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  std::unique_ptr<LinuxContainerizer> Make() {
    auto cgroups = Cgroups::DetectHost(fs_, "");
    EXPECT_TRUE(cgroups.ok()) << cgroups.status();
    return std::make_unique<LinuxContainerizer>(
        LinuxContainerizer::Options{.init_path = init_,
                                    .runtime_root = dir_ + "/containers",
                                    .cgroup_parent = parent_,
                                    .boot_id = LinuxContainerizer::HostBootId()},
        *std::move(cgroups));
  }

  ContainerSpec Spec(const std::string& id, const std::string& shell_command) {
    const std::string sandbox = absl::StrCat(dir_, "/sandboxes/", id);
    std::filesystem::create_directories(sandbox);
    ::chmod(sandbox.c_str(), 0777);
    ContainerSpec spec;
    spec.container_id = id;
    spec.framework_id = FrameworkId("fw");
    spec.task_id = TaskId(id);
    spec.agent_id = AgentId("agent");
    spec.command.set_shell(true);
    spec.command.set_value(shell_command);
    spec.sandbox = sandbox;
    spec.user = "nobody";
    spec.cpus = 0.5;
    spec.mem_mb = 64;
    return spec;
  }

  // The directory of `parent_/<name>` in the pids hierarchy (v1) or the unified tree (v2).
  std::string CgroupDir(const std::string& name) {
    auto cgroups = Cgroups::DetectHost(fs_, "");
    if (!cgroups.ok()) {
      return "";
    }
    const std::vector<std::string> paths = (*cgroups)->Paths(absl::StrCat(parent_, "/", name));
    for (const std::string& path : paths) {
      if (path.find("/pids") != std::string::npos) {
        return path;
      }
    }
    return paths.empty() ? "" : paths.front();
  }

  std::string Sandbox(const std::string& id) { return absl::StrCat(dir_, "/sandboxes/", id); }

  // Tests that read v1 interface files directly skip on a v2 host (v2 paths are covered by the
  // fake tree in cgroups_test).
  bool IsV1() const { return version_ == 1; }

  RealCgroupFs fs_;
  int version_ = 0;
  std::string init_;
  std::string dir_;
  std::string parent_;
  Exits exits_;
  std::unique_ptr<LinuxContainerizer> containerizer_;
  static inline int counter_ = 0;
};

TEST_F(ContainerizerTest, ATaskRunsAsItsUserAndItsExitStatusIsReported) {
  ASSERT_TRUE(
      containerizer_->Launch(Spec("c1", "id -un; echo $RZ_TASK_ID; exit 3"), exits_.For("c1"))
          .ok());
  std::optional<Termination> exit = exits_.Wait("c1");
  ASSERT_TRUE(exit.has_value());
  ASSERT_TRUE(exit->wait_status.has_value());
  EXPECT_TRUE(WIFEXITED(*exit->wait_status));
  EXPECT_EQ(WEXITSTATUS(*exit->wait_status), 3);
  EXPECT_FALSE(exit->limitation);
  EXPECT_EQ(ReadFile(Sandbox("c1") + "/stdout"), "nobody\nc1\n");
  // The container's cgroups and runtime directory are gone with it.
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/containers/c1"));
  EXPECT_FALSE(std::filesystem::exists(CgroupDir("c1")));
}

TEST_F(ContainerizerTest, CpuAndMemoryLimitsAreWrittenToTheCgroups) {
  if (!IsV1()) {
    GTEST_SKIP() << "reads cgroup v1 files";
  }
  ContainerSpec spec = Spec("c1", "sleep 30");
  spec.cpus = 0.5;
  spec.cpus_limit = 0.5;
  spec.mem_mb = 64;
  spec.pids_max = 50;
  ASSERT_TRUE(containerizer_->Launch(spec, exits_.For("c1")).ok());
  std::optional<Containerizer::Description> description = containerizer_->Describe("c1");
  ASSERT_TRUE(description.has_value());
  std::string cpu_dir;
  std::string memory_dir;
  std::string pids_dir;
  for (const std::string& dir : description->cgroups) {
    if (dir.starts_with("/sys/fs/cgroup/cpu/")) cpu_dir = dir;
    if (dir.starts_with("/sys/fs/cgroup/memory/")) memory_dir = dir;
    if (dir.starts_with("/sys/fs/cgroup/pids/")) pids_dir = dir;
  }
  ASSERT_FALSE(cpu_dir.empty());
  EXPECT_EQ(absl::StripAsciiWhitespace(ReadFile(cpu_dir + "/cpu.shares")), "512");
  EXPECT_EQ(absl::StripAsciiWhitespace(ReadFile(cpu_dir + "/cpu.cfs_quota_us")), "50000");
  EXPECT_EQ(absl::StripAsciiWhitespace(ReadFile(cpu_dir + "/cpu.cfs_period_us")), "100000");
  EXPECT_EQ(absl::StripAsciiWhitespace(ReadFile(memory_dir + "/memory.limit_in_bytes")),
            "67108864");
  EXPECT_EQ(absl::StripAsciiWhitespace(ReadFile(pids_dir + "/pids.max")), "50");
  absl::Status killed = containerizer_->Kill("c1", SIGKILL);
  ASSERT_TRUE(killed.ok()) << killed;
  ASSERT_TRUE(exits_.Wait("c1").has_value());
}

TEST_F(ContainerizerTest, AMemoryHogFailsWithTheMemoryReasonAndTheLimitInTheMessage) {
  ContainerSpec spec =
      Spec("hog", "dd if=/dev/zero of=/dev/null bs=300M count=1");  // A 300 MB buffer.
  spec.mem_mb = 64;
  ASSERT_TRUE(containerizer_->Launch(spec, exits_.For("hog")).ok());
  std::optional<Termination> exit = exits_.Wait("hog");
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->limitation);
  EXPECT_EQ(exit->reason, rz::v1::TaskStatus::REASON_CONTAINER_LIMITATION_MEMORY);
  EXPECT_NE(exit->message.find("memory limit 64.0 MiB"), std::string::npos) << exit->message;
  EXPECT_NE(exit->message.find("peak usage"), std::string::npos) << exit->message;
}

TEST_F(ContainerizerTest, ACpuLimitOfAFifthHoldsABusyLoopToAboutAFifthOfACpu) {
  ContainerSpec spec = Spec("busy", "while :; do :; done");
  spec.cpus = 0.2;
  spec.cpus_limit = 0.2;
  ASSERT_TRUE(containerizer_->Launch(spec, exits_.For("busy")).ok());
  absl::StatusOr<rz::v1::ResourceStatistics> before = containerizer_->Usage("busy");
  ASSERT_TRUE(before.ok()) << before.status();
  const absl::Time start = absl::Now();
  absl::SleepFor(absl::Seconds(2));  // Measures a rate over real time; not a synchronisation.
  absl::StatusOr<rz::v1::ResourceStatistics> after = containerizer_->Usage("busy");
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  ASSERT_TRUE(after.ok()) << after.status();
  const double used = (after->cpus_user_time_secs() + after->cpus_system_time_secs()) -
                      (before->cpus_user_time_secs() + before->cpus_system_time_secs());
  // cpuacct.stat counts in ticks of 10 ms: allow 25% plus two ticks of slack.
  EXPECT_LE(used / elapsed, 0.2 * 1.25 + 0.02) << "used " << used << " s in " << elapsed << " s";
  EXPECT_GT(used, 0.05);
  EXPECT_GT(after->cpus_nr_throttled(), 0u);
  EXPECT_DOUBLE_EQ(after->cpus_limit(), 0.2);
  ASSERT_TRUE(containerizer_->Kill("busy", SIGKILL).ok());
  ASSERT_TRUE(exits_.Wait("busy").has_value());
}

TEST_F(ContainerizerTest, AForkBombIsStoppedByPidsMaxAndItsContainerFailsWithThePidsReason) {
  // Forks sleepers until fork fails; the shell then gives up ("Cannot fork") and exits.
  ContainerSpec spec =
      Spec("bomb", "i=0; while [ $i -lt 1000 ]; do sleep 300 & i=$((i+1)); done; wait");
  spec.pids_max = 32;
  ASSERT_TRUE(containerizer_->Launch(spec, exits_.For("bomb")).ok());
  std::optional<Termination> exit = exits_.Wait("bomb");
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(exit->limitation);
  EXPECT_EQ(exit->reason, rz::v1::TaskStatus::REASON_CONTAINER_LIMITATION_PIDS);
  EXPECT_NE(exit->message.find("process limit"), std::string::npos) << exit->message;
  // Its 31 sleepers died with it.
  EXPECT_FALSE(std::filesystem::exists(CgroupDir("bomb")));
  ASSERT_TRUE(containerizer_->Launch(Spec("after", "exit 0"), exits_.For("after")).ok());
  ASSERT_TRUE(exits_.Wait("after").has_value());  // The containerizer carries on.
}

TEST_F(ContainerizerTest, KillEscalationLeavesNoProcessBehindDaemonsIncluded) {
  // The task ignores SIGTERM and leaves a double-forked daemon in a session of its own.
  ASSERT_TRUE(
      containerizer_
          ->Launch(Spec("stubborn",
                        "trap '' TERM; (setsid sh -c 'echo $$ > daemon.pid; exec sleep 300' &); "
                        "while :; do sleep 1; done"),
                   exits_.For("stubborn"))
          .ok());
  const std::string pid_file = Sandbox("stubborn") + "/daemon.pid";
  ASSERT_TRUE(WaitUntil([&] { return !ReadFile(pid_file).empty(); }));
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadFile(pid_file)), &daemon));
  ASSERT_TRUE(Alive(daemon));
  ASSERT_TRUE(containerizer_->Kill("stubborn", SIGTERM).ok());
  EXPECT_FALSE(exits_.Wait("stubborn", absl::Milliseconds(300)).has_value());  // Ignored.
  ASSERT_TRUE(containerizer_->Kill("stubborn", SIGKILL).ok());
  ASSERT_TRUE(exits_.Wait("stubborn").has_value());
  EXPECT_TRUE(WaitUntil([&] { return !Alive(daemon); })) << "daemon " << daemon << " escaped";
}

TEST_F(ContainerizerTest, SigtermReachesTheTaskThroughTheInit) {
  ASSERT_TRUE(
      containerizer_
          ->Launch(Spec("t", "trap 'exit 7' TERM; while :; do sleep 0.05; done"), exits_.For("t"))
          .ok());
  absl::SleepFor(absl::Milliseconds(200));  // Lets the shell install its trap.
  ASSERT_TRUE(containerizer_->Kill("t", SIGTERM).ok());
  std::optional<Termination> exit = exits_.Wait("t");
  ASSERT_TRUE(exit.has_value() && exit->wait_status.has_value());
  EXPECT_EQ(WEXITSTATUS(*exit->wait_status), 7);
}

TEST_F(ContainerizerTest, ARestartedAgentRecoversARunningContainerAndItsLaterExit) {
  const std::string marker = Sandbox("long") + "/go";
  ASSERT_TRUE(containerizer_
                  ->Launch(Spec("long", absl::StrCat("while [ ! -e ", marker,
                                                     " ]; do sleep 0.05; done; exit 4")),
                           exits_.For("long"))
                  .ok());
  const pid_t pid = containerizer_->Describe("long")->pid;
  containerizer_.reset();  // The agent goes away; the container does not.
  ASSERT_TRUE(Alive(pid));

  containerizer_ = Make();
  Exits recovered_exits;
  auto recovered = containerizer_->Recover(
      {"long"}, [&](const std::string& id) { return recovered_exits.For(id); });
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  ASSERT_EQ(recovered->count("long"), 1u);
  EXPECT_EQ(recovered->at("long").state, State::kRunning);
  EXPECT_EQ(recovered->at("long").pid, pid);

  std::ofstream(marker).put('x');
  std::optional<Termination> exit = recovered_exits.Wait("long");
  ASSERT_TRUE(exit.has_value() && exit->wait_status.has_value());
  EXPECT_EQ(WEXITSTATUS(*exit->wait_status), 4);
  EXPECT_FALSE(exits_.Wait("long", absl::Milliseconds(10)).has_value());  // Old callback: never.
}

TEST_F(ContainerizerTest, AContainerThatEndedWhileTheAgentWasDownReportsItsRealExitStatus) {
  ASSERT_TRUE(containerizer_->Launch(Spec("quick", "sleep 0.3; exit 5"), exits_.For("quick")).ok());
  const pid_t pid = containerizer_->Describe("quick")->pid;
  containerizer_.reset();
  ASSERT_TRUE(WaitUntil([&] { return !Alive(pid); }));

  containerizer_ = Make();
  auto recovered =
      containerizer_->Recover({"quick"}, [&](const std::string& id) { return exits_.For(id); });
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  ASSERT_EQ(recovered->count("quick"), 1u);
  const RecoveredContainer& quick = recovered->at("quick");
  EXPECT_EQ(quick.state, State::kExited);
  ASSERT_TRUE(quick.termination.wait_status.has_value());
  EXPECT_EQ(WEXITSTATUS(*quick.termination.wait_status), 5);
  EXPECT_FALSE(std::filesystem::exists(CgroupDir("quick")));
}

TEST_F(ContainerizerTest, OrphanContainersAreDestroyedAtRecovery) {
  if (!IsV1()) {
    GTEST_SKIP() << "makes a stray cgroup in the v1 pids hierarchy";
  }
  ASSERT_TRUE(containerizer_->Launch(Spec("orphan", "sleep 300"), exits_.For("orphan")).ok());
  const pid_t pid = containerizer_->Describe("orphan")->pid;
  containerizer_.reset();
  // A cgroup with no runtime directory at all is an orphan too.
  const std::string stray = CgroupDir("stray");
  ASSERT_EQ(::mkdir(stray.c_str(), 0755), 0);

  containerizer_ = Make();
  auto recovered =
      containerizer_->Recover({}, [&](const std::string& id) { return exits_.For(id); });
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_TRUE(recovered->empty());
  EXPECT_TRUE(WaitUntil([&] { return !Alive(pid); }));
  EXPECT_FALSE(std::filesystem::exists(CgroupDir("orphan")));
  EXPECT_FALSE(std::filesystem::exists(stray));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/containers/orphan"));
}

TEST_F(ContainerizerTest, ARecordedPidOfAnotherBootIsNeverTakenForALiveContainer) {
  ASSERT_TRUE(containerizer_->Launch(Spec("old", "sleep 300"), exits_.For("old")).ok());
  const pid_t pid = containerizer_->Describe("old")->pid;
  containerizer_.reset();
  // Rewrite the record as if it came from another boot (the pid may be reused after a reboot).
  const std::string record = dir_ + "/containers/old/init.pid";
  std::string text = ReadFile(record);
  text = text.substr(0, text.rfind(' ')) + " 00000000-0000-0000-0000-000000000000\n";
  std::ofstream(record) << text;

  containerizer_ = Make();
  auto recovered =
      containerizer_->Recover({"old"}, [&](const std::string& id) { return exits_.For(id); });
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  ASSERT_EQ(recovered->count("old"), 1u);
  EXPECT_EQ(recovered->at("old").state, State::kExited);
  EXPECT_EQ(recovered->at("old").termination.reason, rz::v1::TaskStatus::REASON_AGENT_REBOOTED);
  // This boot's process is not the container of the other boot; clean it up by hand.
  ::kill(pid, SIGKILL);
}

TEST_F(ContainerizerTest, ALaunchThatCannotStartLeavesNothingBehind) {
  ContainerSpec spec = Spec("bad", "true");
  spec.container.add_rlimits()->set_type("NOT_A_LIMIT");
  absl::StatusOr<pid_t> pid = containerizer_->Launch(spec, exits_.For("bad"));
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.status().message().find("NOT_A_LIMIT"), std::string::npos) << pid.status();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/containers/bad"));
  EXPECT_FALSE(std::filesystem::exists(CgroupDir("bad")));
}

TEST_F(ContainerizerTest, TasksOfAGroupShareAParentCgroupThatGoesWithTheLastOne) {
  ContainerSpec a = Spec("a", "sleep 0.2");
  a.group_id = "g";
  ContainerSpec b = Spec("b", "sleep 0.4");
  b.group_id = "g";
  ASSERT_TRUE(containerizer_->Launch(a, exits_.For("a")).ok());
  ASSERT_TRUE(containerizer_->Launch(b, exits_.For("b")).ok());
  const std::string group = CgroupDir("g");
  EXPECT_TRUE(std::filesystem::exists(group + "/a"));
  EXPECT_TRUE(std::filesystem::exists(group + "/b"));
  ASSERT_TRUE(exits_.Wait("a").has_value());
  ASSERT_TRUE(exits_.Wait("b").has_value());
  EXPECT_FALSE(std::filesystem::exists(group));
}

}  // namespace
}  // namespace rz::agent
