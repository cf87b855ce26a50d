// System tests: real rz-master and rz-agent processes on loopback, started with posix_spawn
// from the build tree (${RZ_BUILD_DIR}), and driven only through their public faces — the rz
// CLI as a subprocess, the Operator gRPC API and the REST endpoints. Every wait is a condition
// polled against a deadline; every process a test starts is stopped by its pid in TearDown.
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/master_client.h"
#include "cli/process.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/system/system_fixture.h"

namespace rz {
namespace {

using namespace ::rz::system_test;  // NOLINT(build/namespaces): the fixture's helpers.

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// One master and one agent (cpus:2;mem:1024), up and registered before each test.
class ClusterTest : public SystemTestBase {
 protected:
  void TearDown() override {
    SystemTestBase::TearDown();
    for (int index = 1; index <= agents_started_; ++index) {
      DestroyCgroupTree(CgroupsParent(index));
    }
  }

  void SetUp() override {
    const std::string master_dir = absl::StrCat(temp_.path(), "/master");
    std::filesystem::create_directories(master_dir);
    const std::string endpoints = absl::StrCat(master_dir, "/endpoints.json");
    cli::Subprocess& master =
        Spawn("rz-master",
              {Binary("src/master/rz-master"), "--ip=127.0.0.1", "--hostname=127.0.0.1", "--port=0",
               "--http_port=0", absl::StrCat("--work_dir=", master_dir),
               absl::StrCat("--endpoints_file=", endpoints)},
              absl::StrCat(master_dir, "/master.log"));

    nlohmann::json parsed;
    ASSERT_TRUE(WaitUntil(
        [&] {
          parsed = nlohmann::json::parse(ReadOrEmpty(endpoints), nullptr, false);
          return (parsed.is_object() && parsed.contains("grpc")) || master.Poll().has_value();
        },
        kStartTimeout))
        << "rz-master wrote no endpoints file " << endpoints;
    ASSERT_FALSE(master.Poll().has_value()) << "rz-master exited at start";
    master_grpc_ = parsed["grpc"].get<std::string>();
    master_http_ = parsed.value("http", "");
    ASSERT_THAT(master_http_, HasSubstr("http://"));

    StartAgent();
    ASSERT_NO_FATAL_FAILURE(WaitForRegisteredAgents(1));
  }

  // Starts agent `index` (a new one when 0) with its work dir <temp>/agent-<index>; restarting
  // an index reuses its work dir, as an operator restarting the daemon would.
  cli::Subprocess& StartAgent(int index = 0, const std::string& attributes = "") {
    if (index == 0) {
      index = ++agents_started_;
    }
    const std::string dir = absl::StrCat(temp_.path(), "/agent-", index);
    std::filesystem::create_directories(dir);
    return Spawn(
        absl::StrCat("rz-agent ", index),
        {Binary("src/agent/rz-agent"), absl::StrCat("--master=", master_grpc_), "--ip=127.0.0.1",
         "--hostname=127.0.0.1", "--http_port=0", "--resources=cpus:2;mem:1024",
         absl::StrCat("--work_dir=", dir), absl::StrCat("--cgroups_parent=", CgroupsParent(index)),
         "--usage_interval=1s", "--registration_backoff_max=1s", "--destroy_containers_on_stop",
         absl::StrCat("--attributes=", attributes),
         absl::StrCat("--endpoints_file=", dir, "/endpoints.json")},
        absl::StrCat(dir, "/agent.log"));
  }

  // The parent cgroup of agent `index`'s containers: unique to this test process.
  static std::string CgroupsParent(int index) {
    return absl::StrCat("rz-system-", ::getpid(), "-", index);
  }

  void WaitForRegisteredAgents(int count) {
    absl::StatusOr<rz::v1::State> state;
    ASSERT_TRUE(WaitUntil(
        [&] {
          state = cli::GetState(master_grpc_, absl::Seconds(2));
          return state.ok() && cli::RegisteredAgentCount(*state) >= count;
        },
        kStartTimeout))
        << count << " agent(s) did not register; last GetState: "
        << (state.ok() ? state->ShortDebugString() : state.status().ToString());
    state_ = *state;
  }

  // Runs the rz CLI against this cluster.
  CommandResult Rz(std::vector<std::string> args) {
    std::vector<std::string> argv = {Binary("src/cli/rz"), absl::StrCat("--master=", master_grpc_)};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(std::move(argv), kCommandTimeout);
  }

  std::string master_grpc_;
  std::string master_http_;
  rz::v1::State state_;  // As of the last WaitForRegisteredAgents().
  int agents_started_ = 0;
};

TEST_F(ClusterTest, RunPrintsTheTasksStdoutAndExitsZero) {
  CommandResult result = Rz({"run", "--", "sh", "-c", "echo hi"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "hi\n") << result.err;
  EXPECT_THAT(result.err, HasSubstr("TASK_FINISHED"));
}

TEST_F(ClusterTest, RunOfEchoPrintsItsArguments) {
  CommandResult result = Rz({"run", "--", "echo", "hello"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(result.out, "hello\n") << result.err;
}

TEST_F(ClusterTest, RunExitsWithTheTasksExitCode) {
  CommandResult result = Rz({"run", "--", "false"});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("TASK_FAILED"));

  CommandResult seven = Rz({"run", "--", "sh -c 'exit 7'"});
  EXPECT_EQ(seven.exit_code, 7) << seven.err;
}

TEST_F(ClusterTest, RunFailsAtOnceWhenNoAgentCanFitTheRequest) {
  CommandResult result = Rz({"run", "--cpus", "1000", "--", "true"});
  EXPECT_EQ(result.exit_code, 125) << result.err;
  EXPECT_LT(result.elapsed, absl::Seconds(10));
  EXPECT_THAT(result.err, HasSubstr("cpus"));
  EXPECT_THAT(result.err, HasSubstr("no agent can fit"));
  EXPECT_THAT(result.out, IsEmpty());
}

TEST_F(ClusterTest, InterruptedRunKillsItsTaskAndExits130) {
  cli::SpawnOptions options;
  options.argv = {Binary("src/cli/rz"),
                  absl::StrCat("--master=", master_grpc_),
                  "run",
                  "--name",
                  "sleeper",
                  "--",
                  "sleep",
                  "300"};
  options.stdout_path = absl::StrCat(temp_.path(), "/sleeper.out");
  options.stderr_path = absl::StrCat(temp_.path(), "/sleeper.err");
  options.env = ChildEnvironment();
  absl::StatusOr<cli::Subprocess> rz = cli::Subprocess::Spawn(options);
  ASSERT_TRUE(rz.ok()) << rz.status();

  auto sleeper_state = [&]() -> std::optional<rz::v1::TaskState> {
    absl::StatusOr<rz::v1::State> state = cli::GetState(master_grpc_, absl::Seconds(2));
    if (!state.ok()) {
      return std::nullopt;
    }
    for (const auto* tasks : {&state->tasks(), &state->completed_tasks()}) {
      for (const rz::v1::Task& task : *tasks) {
        if (absl::StartsWith(task.task_id(), "sleeper-")) {
          return task.state();
        }
      }
    }
    return std::nullopt;
  };
  ASSERT_TRUE(WaitUntil([&] { return sleeper_state() == rz::v1::TASK_RUNNING; }, kStartTimeout))
      << ReadOrEmpty(options.stderr_path);

  rz->Signal(SIGINT);
  std::optional<int> status = rz->WaitFor(absl::Seconds(20));
  ASSERT_TRUE(status.has_value()) << "rz run did not exit after SIGINT";
  EXPECT_EQ(cli::ExitCodeOf(*status), 130) << ReadOrEmpty(options.stderr_path);
  EXPECT_THAT(ReadOrEmpty(options.stderr_path), HasSubstr("TASK_KILLED"));
  EXPECT_TRUE(WaitUntil([&] { return sleeper_state() == rz::v1::TASK_KILLED; }, kStartTimeout))
      << "the master does not report the task killed";
}

TEST_F(ClusterTest, FinishedTaskIsListedByRzTasks) {
  CommandResult run = Rz({"run", "--name", "listed", "--", "true"});
  ASSERT_EQ(run.exit_code, 0) << run.err;

  CommandResult tasks = Rz({"tasks"});
  EXPECT_EQ(tasks.exit_code, 0) << tasks.err;
  EXPECT_THAT(tasks.out, HasSubstr("STATE"));
  EXPECT_THAT(tasks.out, HasSubstr("listed-"));
  EXPECT_THAT(tasks.out, HasSubstr("TASK_FINISHED"));

  CommandResult frameworks = Rz({"frameworks"});
  EXPECT_EQ(frameworks.exit_code, 0) << frameworks.err;
  EXPECT_THAT(frameworks.out, HasSubstr("rz-run listed"));
}

TEST_F(ClusterTest, RzAgentsListsTheRegisteredAgents) {
  StartAgent();
  ASSERT_NO_FATAL_FAILURE(WaitForRegisteredAgents(2));

  CommandResult result = Rz({"agents"});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  const std::vector<std::string> lines = NonEmptyLines(result.out);
  ASSERT_EQ(lines.size(), 3u) << result.out;
  EXPECT_THAT(lines[0], HasSubstr("HOSTNAME"));
  for (const rz::v1::AgentState& agent : state_.agents()) {
    EXPECT_THAT(result.out, HasSubstr(agent.info().id()));
  }
  EXPECT_THAT(lines[1], HasSubstr("127.0.0.1"));
  EXPECT_THAT(lines[1], HasSubstr("REGISTERED"));
  EXPECT_THAT(lines[1], HasSubstr("1024"));
}

TEST_F(ClusterTest, MasterAnswersUnknownPathsWithJson404) {
  httplib::Client client(master_http_);
  httplib::Result result = client.Get("/nope");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 404);
  nlohmann::json body = nlohmann::json::parse(result->body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << result->body;
  EXPECT_TRUE(body.contains("error")) << result->body;
}

TEST_F(ClusterTest, MasterStateEndpointListsTheAgent) {
  ASSERT_EQ(state_.agents_size(), 1);
  const std::string agent_id = state_.agents(0).info().id();

  httplib::Client client(master_http_);
  httplib::Result result = client.Get("/state");
  ASSERT_TRUE(result) << httplib::to_string(result.error());
  EXPECT_EQ(result->status, 200);
  nlohmann::json body = nlohmann::json::parse(result->body, nullptr, false);
  ASSERT_TRUE(body.is_object()) << result->body;
  ASSERT_TRUE(body.contains("agents") && body["agents"].is_array()) << result->body;
  bool listed = false;
  for (const nlohmann::json& agent : body["agents"]) {
    listed = listed || (agent.contains("info") && agent["info"].value("id", "") == agent_id);
  }
  EXPECT_TRUE(listed) << "agent '" << agent_id << "' not in " << result->body;
}

// Finds a task by name prefix in the master's state.
std::optional<rz::v1::Task> FindTask(const rz::v1::State& state, const std::string& prefix) {
  for (const auto* tasks : {&state.tasks(), &state.completed_tasks()}) {
    for (const rz::v1::Task& task : *tasks) {
      if (absl::StartsWith(task.task_id(), prefix)) {
        return task;
      }
    }
  }
  return std::nullopt;
}

// SCENARIOS G7 and the restart test: `kill -9` of the agent while its task runs; the
// restarted agent (same work dir) keeps its id, finds the container, reports the task RUNNING,
// then FINISHED/FAILED with the real exit code; nothing is launched twice or left behind.
TEST_F(ClusterTest, AnAgentKilledWithSigkillRecoversItsRunningTask) {
  const std::string shared = absl::StrCat(temp_.path(), "/shared");
  std::filesystem::create_directories(shared);
  std::filesystem::permissions(shared, std::filesystem::perms::all);
  const std::string go = absl::StrCat(shared, "/go");
  const std::string starts = absl::StrCat(shared, "/starts");

  cli::SpawnOptions options;
  options.argv = {Binary("src/cli/rz"),
                  absl::StrCat("--master=", master_grpc_),
                  "run",
                  "--name",
                  "survivor",
                  "--",
                  "sh",
                  "-c",
                  absl::StrCat("echo started >> ", starts, "; while [ ! -e ", go,
                               " ]; do sleep 0.1; done; exit 3")};
  options.stdout_path = absl::StrCat(temp_.path(), "/survivor.out");
  options.stderr_path = absl::StrCat(temp_.path(), "/survivor.err");
  options.env = ChildEnvironment();
  absl::StatusOr<cli::Subprocess> rz = cli::Subprocess::Spawn(options);
  ASSERT_TRUE(rz.ok()) << rz.status();

  auto task_state = [&]() -> std::optional<rz::v1::TaskState> {
    absl::StatusOr<rz::v1::State> state = cli::GetState(master_grpc_, absl::Seconds(2));
    if (!state.ok()) {
      return std::nullopt;
    }
    std::optional<rz::v1::Task> task = FindTask(*state, "survivor-");
    return task ? std::optional(task->state()) : std::nullopt;
  };
  ASSERT_TRUE(WaitUntil([&] { return task_state() == rz::v1::TASK_RUNNING; }, kStartTimeout))
      << ReadOrEmpty(options.stderr_path);
  const std::string agent_id = state_.agents(0).info().id();

  // kill -9: no chance to clean up.
  ASSERT_EQ(daemons_.back().name, "rz-agent 1");
  daemons_.back().process.Signal(SIGKILL);
  ASSERT_TRUE(daemons_.back().process.WaitFor(absl::Seconds(10)).has_value());
  StartAgent(1);

  // Back with the same id and the task still running (never relaunched).
  ASSERT_TRUE(WaitUntil(
      [&] {
        absl::StatusOr<rz::v1::State> state = cli::GetState(master_grpc_, absl::Seconds(2));
        return state.ok() && state->agents_size() == 1 &&
               state->agents(0).info().id() == agent_id &&
               state->agents(0).status() == rz::v1::AgentState::REGISTERED;
      },
      kStartTimeout));
  EXPECT_EQ(task_state(), rz::v1::TASK_RUNNING);

  // The agent's REST API shows the recovered container, with usage.
  const std::string agent_dir = absl::StrCat(temp_.path(), "/agent-1");
  nlohmann::json endpoints;
  ASSERT_TRUE(WaitUntil(
      [&] {
        endpoints =
            nlohmann::json::parse(ReadOrEmpty(agent_dir + "/endpoints.json"), nullptr, false);
        return endpoints.is_object() && endpoints.contains("http");
      },
      kStartTimeout));
  httplib::Client agent_http(endpoints["http"].get<std::string>());
  nlohmann::json containers;
  ASSERT_TRUE(WaitUntil(
      [&] {
        httplib::Result result = agent_http.Get("/containers");
        if (!result || result->status != 200) {
          return false;
        }
        containers = nlohmann::json::parse(result->body, nullptr, false);
        return containers.is_array() && containers.size() == 1;
      },
      kStartTimeout))
      << containers.dump();

  std::ofstream(go).put('x');
  std::optional<int> status = rz->WaitFor(kCommandTimeout);
  ASSERT_TRUE(status.has_value()) << "rz run did not exit";
  EXPECT_EQ(cli::ExitCodeOf(*status), 3) << ReadOrEmpty(options.stderr_path);
  EXPECT_EQ(task_state(), rz::v1::TASK_FAILED);
  EXPECT_EQ(ReadOrEmpty(starts), "started\n") << "the task was launched more than once";

  // Nothing left behind: no container cgroup under the agent's parent, no container listed.
  std::string pids_root;  // This process's (and so the agent's) cgroup in the pids hierarchy.
  for (absl::string_view line : absl::StrSplit(ReadOrEmpty("/proc/self/cgroup"), '\n')) {
    if (absl::StartsWith(line, "") && absl::StrContains(line, ":pids:")) {
      pids_root = std::string(line.substr(line.find(":pids:") + 6));
    }
  }
  const std::string parent =
      absl::StrCat("/sys/fs/cgroup/pids", pids_root == "/" ? "" : pids_root, "/", CgroupsParent(1));
  EXPECT_TRUE(WaitUntil(
      [&] {
        std::error_code error;
        if (!std::filesystem::exists(parent, error)) {
          return true;
        }
        for (const auto& entry : std::filesystem::directory_iterator(parent, error)) {
          if (entry.is_directory()) {
            return false;
          }
        }
        return true;
      },
      kStartTimeout));
}

// A checkpoint LevelDB cannot open (its CURRENT names a manifest that is gone) is repaired and
// reported, never a crash loop: the agent starts, registers and runs tasks.
TEST_F(ClusterTest, AnAgentWithADamagedCheckpointStillStarts) {
  const std::string dir = absl::StrCat(temp_.path(), "/agent-2");
  std::filesystem::create_directories(dir + "/meta");
  std::ofstream(dir + "/meta/CURRENT") << "MANIFEST-000042\n";
  std::ofstream(dir + "/meta/000041.log") << "not a log record";
  ++agents_started_;
  StartAgent(2);
  ASSERT_NO_FATAL_FAILURE(WaitForRegisteredAgents(2));
  EXPECT_FALSE(daemons_.back().process.Poll().has_value()) << "rz-agent 2 exited";
}

// Offer constraints may have placed running tasks by the agent's attributes: a restart with
// other attributes is refused with one line saying what to do, instead of silently reusing the
// old agent id.
TEST_F(ClusterTest, AnAgentRestartedWithOtherAttributesIsRefused) {
  const std::string agent_id = state_.agents(0).info().id();
  ASSERT_EQ(daemons_.back().name, "rz-agent 1");
  daemons_.back().process.Signal(SIGTERM);
  ASSERT_TRUE(daemons_.back().process.WaitFor(absl::Seconds(20)).has_value());

  cli::Subprocess& agent = StartAgent(1, "rack:r2");
  std::optional<int> status = agent.WaitFor(kStartTimeout);
  ASSERT_TRUE(status.has_value()) << "rz-agent started with other attributes";
  EXPECT_EQ(cli::ExitCodeOf(*status), 1);
  const std::string log = ReadOrEmpty(absl::StrCat(temp_.path(), "/agent-1/agent.log"));
  EXPECT_THAT(log, HasSubstr(agent_id));
  EXPECT_THAT(log, HasSubstr("rack:r2"));
  EXPECT_THAT(log, HasSubstr("/meta"));
}

// Daemons started without a cluster around them.
class DaemonTest : public SystemTestBase {};

TEST_F(DaemonTest, AgentRejectsMalformedResourcesWithOneLine) {
  const std::string dir = absl::StrCat(temp_.path(), "/agent");
  std::filesystem::create_directories(dir);
  CommandResult result =
      RunProgram({Binary("src/agent/rz-agent"), "--master=127.0.0.1:1", "--http_port=0",
                  "--hostname=127.0.0.1", absl::StrCat("--work_dir=", dir), "--resources=cpus:abc"},
                 absl::Seconds(20));
  EXPECT_EQ(result.exit_code, 1);
  const std::vector<std::string> lines = NonEmptyLines(result.err);
  ASSERT_EQ(lines.size(), 1u) << result.err;
  EXPECT_THAT(lines[0], HasSubstr("abc"));
}

}  // namespace
}  // namespace rz
