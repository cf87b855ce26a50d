// A master, an agent and a scheduler in this process over real gRPC and HTTP on loopback
// (H3 of issue 5): a scheduler whose event stream breaks mid-flow resubscribes by itself with
// its last sequence and loses no status update; MESSAGE reaches the task's sandbox; operator
// reservations over REST and gRPC. Waits are on conditions with deadlines.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "agent/agent_daemon.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "master/master_daemon.h"
#include "nlohmann/json.hpp"
#include "rz/v1/operator.grpc.pb.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/build_dir.h"
#include "testing/in_process_cluster.h"

namespace rz {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(30);

bool WaitFor(const std::function<bool()>& condition) {
  return testing::WaitFor(condition, kDeadline);
}

class ResumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rz-resume-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    work_dir_ = dir;
    master::MasterDaemonOptions master_options;
    master_options.ip = "127.0.0.1";
    master_options.hostname = "127.0.0.1";
    master_options.port = 0;
    master_options.http_port = 0;
    master_options.registry = master::RegistryBackend::kInMemory;
    master_ = std::make_unique<master::MasterDaemon>(master_options);
    ASSERT_TRUE(master_->Start().ok());
    agent_ = std::make_unique<agent::AgentDaemon>(
        agent::AgentDaemonOptions{.master = master_->grpc_address(),
                                  .ip = "127.0.0.1",
                                  .hostname = "127.0.0.1",
                                  .http_port = 0,
                                  .work_dir = work_dir_,
                                  .resources = *Resources::Parse("cpus:4;mem:1024"),
                                  .default_kill_grace_period = absl::Seconds(2),
                                  .containerizer_init = testing::ContainerizerInitPath(),
                                  .destroy_containers_on_stop = true});
    ASSERT_TRUE(agent_->Start().ok());
    ASSERT_TRUE(WaitFor([&] {
      auto state = master_->master().snapshot();
      return state->agents_size() == 1 && state->agents(0).status() == v1::AgentState::REGISTERED;
    }));
    agent_id_ = master_->master().snapshot()->agents(0).info().id();
  }

  void TearDown() override {
    scheduler_.reset();
    agent_.reset();
    master_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(work_dir_, ignored);
  }

  void StartScheduler(bool resubscribe) {
    v1::FrameworkInfo info;
    info.set_name("resume-test");
    info.set_failover_timeout_seconds(60);
    scheduler::SchedulerClientOptions options;
    options.resubscribe = resubscribe;
    // Long enough for the tasks to report while the scheduler is away.
    options.resubscribe_backoff = absl::Milliseconds(700);
    scheduler_ =
        std::make_unique<scheduler::SchedulerClient>(master_->grpc_address(), info, options);
    ASSERT_TRUE(scheduler_->Subscribe(kDeadline).ok());
  }

  template <typename F>
  std::optional<v1::Event> NextEventWhere(F want) {
    const absl::Time deadline = absl::Now() + kDeadline;
    while (absl::Now() < deadline) {
      std::optional<v1::Event> event = scheduler_->NextEvent(deadline - absl::Now());
      if (event.has_value() && want(*event)) {
        return event;
      }
    }
    return std::nullopt;
  }

  v1::Offer NextOffer() {
    std::optional<v1::Event> event =
        NextEventWhere([](const v1::Event& e) { return e.offers().offers_size() > 0; });
    EXPECT_TRUE(event.has_value());
    return event.has_value() ? event->offers().offers(0) : v1::Offer();
  }

  static v1::TaskInfo ShellTask(const std::string& id, const std::string& command) {
    v1::TaskInfo task;
    task.set_task_id(id);
    task.set_name(id);
    task.mutable_command()->set_shell(true);
    task.mutable_command()->set_value(command);
    ToProto(*Resources::Parse("cpus:0.5;mem:64"), task.mutable_resources());
    return task;
  }

  std::string work_dir_;
  std::string agent_id_;
  std::unique_ptr<master::MasterDaemon> master_;
  std::unique_ptr<agent::AgentDaemon> agent_;
  std::unique_ptr<scheduler::SchedulerClient> scheduler_;
};

TEST_F(ResumeTest, AStreamBrokenWhileTasksReportResumesWithoutLosingAnUpdate) {
  StartScheduler(/*resubscribe=*/true);
  const v1::Offer offer = NextOffer();
  std::vector<v1::TaskInfo> tasks;
  for (int i = 0; i < 3; ++i) {
    tasks.push_back(ShellTask(absl::StrCat("t", i), absl::StrCat("sleep 0.", 2 + i)));
  }
  ASSERT_TRUE(scheduler_->Launch({OfferId(offer.id())}, tasks).ok());

  // Every update is acknowledged; the stream is cut right after the first one.
  std::map<std::string, std::vector<v1::TaskState>> states;
  std::set<std::string> finished;
  int subscribed = 0;
  bool broken = false;
  uint64_t previous = 0;
  const absl::Time deadline = absl::Now() + kDeadline;
  while (finished.size() < tasks.size() && absl::Now() < deadline) {
    std::optional<v1::Event> event = scheduler_->NextEvent(absl::Milliseconds(100));
    if (!event.has_value()) {
      continue;
    }
    ASSERT_FALSE(event->has_error()) << event->error().message();
    EXPECT_GT(event->sequence(), previous) << "sequence numbers must keep increasing";
    previous = event->sequence();
    if (event->has_subscribed()) {
      ++subscribed;
    }
    if (!event->has_update()) {
      continue;
    }
    const v1::TaskStatus& status = event->update().status();
    states[status.task_id()].push_back(status.state());
    // An acknowledgement sent while the client resubscribes is refused (its stream is not
    // current); the update is unacknowledged, so it comes again after the resubscription.
    const absl::Status acked = scheduler_->Acknowledge(status);
    EXPECT_TRUE(acked.ok() || broken) << acked;
    if (IsTerminal(status.state())) {
      EXPECT_EQ(status.state(), v1::TASK_FINISHED) << status.message();
      if (acked.ok()) {
        finished.insert(status.task_id());
      }
    }
    if (!broken) {
      broken = true;
      scheduler_->BreakStreamForTesting();
    }
  }
  EXPECT_EQ(finished.size(), tasks.size());
  EXPECT_EQ(subscribed, 1) << "the client must resubscribe by itself";
  for (const v1::TaskInfo& task : tasks) {
    EXPECT_THAT(states[task.task_id()], ::testing::Contains(v1::TASK_FINISHED)) << task.task_id();
  }
  EXPECT_GT(scheduler_->last_sequence(), 0u);
  // Everything was acknowledged: the master forgets the tasks.
  EXPECT_TRUE(WaitFor([&] { return master_->master().snapshot()->tasks_size() == 0; }));
}

TEST_F(ResumeTest, AMessageReachesTheTasksSandbox) {
  StartScheduler(/*resubscribe=*/false);
  const v1::Offer offer = NextOffer();
  // The task waits for its message, decodes it and checks it.
  ASSERT_TRUE(
      scheduler_
          ->Launch({OfferId(offer.id())}, {ShellTask("reader",
                                                     "f=$RZ_SANDBOX/.rz/messages; "
                                                     "while [ ! -s $f ]; do sleep 0.05; done; "
                                                     "test \"$(base64 -d $f)\" = 'hello task'")})
          .ok());
  // The agent sends a task's next update once the previous one is acknowledged.
  ASSERT_TRUE(NextEventWhere([&](const v1::Event& e) {
                if (e.has_update()) {
                  EXPECT_TRUE(scheduler_->Acknowledge(e.update().status()).ok());
                }
                return e.has_update() && e.update().status().state() == v1::TASK_RUNNING;
              }).has_value());
  absl::Status status = scheduler_->Message(TaskId("reader"), "hello task");
  ASSERT_TRUE(status.ok()) << status;
  std::optional<v1::Event> done = NextEventWhere(
      [](const v1::Event& e) { return e.has_update() && IsTerminal(e.update().status().state()); });
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->update().status().state(), v1::TASK_FINISHED)
      << done->update().status().message();
  std::ifstream file(absl::StrCat(work_dir_, "/sandboxes/", scheduler_->framework_id().value(),
                                  "/reader/.rz/messages"));
  std::string line;
  ASSERT_TRUE(std::getline(file, line));
  EXPECT_EQ(line, "aGVsbG8gdGFzaw==");

  EXPECT_EQ(scheduler_->Message(TaskId("nobody"), "x").code(), absl::StatusCode::kNotFound);
}

TEST_F(ResumeTest, OperatorReservationsOverRestAndGrpc) {
  httplib::Client http(master_->http_address());
  auto post = [&](const std::string& path, const std::string& body) {
    httplib::Result result = http.Post(path, body, "application/json");
    EXPECT_TRUE(result) << path;
    return result ? std::pair<int, std::string>(result->status, result->body)
                  : std::pair<int, std::string>(0, "");
  };
  int code = 0;
  std::string body;
  // Malformed bodies.
  std::tie(code, body) = post("/reserve", "not json");
  EXPECT_EQ(code, 400);
  EXPECT_THAT(body, HasSubstr("malformed ReserveResourcesRequest body"));
  EXPECT_EQ(nlohmann::json::parse(body)["code"], "INVALID_ARGUMENT");
  std::tie(code, body) = post("/unreserve", "");
  EXPECT_EQ(code, 400);
  std::tie(code, body) = post("/reserve", R"({"agent_id": "a", "bogus": 1})");
  EXPECT_EQ(code, 400);
  std::tie(code, body) = post("/reserve", R"({"resources": []})");
  EXPECT_EQ(code, 400);
  EXPECT_THAT(body, HasSubstr("agent_id"));
  std::tie(code, body) =
      post("/reserve", absl::StrCat(R"({"agent_id": ")", agent_id_,
                                    R"(", "resources": [{"name": "cpus", "scalar": 1}]})"));
  EXPECT_EQ(code, 400);
  EXPECT_THAT(body, HasSubstr("carries no reservation role"));
  std::tie(code, body) = post(
      "/reserve",
      R"({"agent_id": "nope", "resources": [{"name": "cpus", "scalar": 1, "reservations": [{"role": "eng"}]}]})");
  EXPECT_EQ(code, 404);

  const std::string cpus_eng =
      R"("resources": [{"name": "cpus", "scalar": 1, "reservations": [{"role": "eng"}]}]})";
  std::tie(code, body) =
      post("/reserve", absl::StrCat(R"({"agent_id": ")", agent_id_, R"(", )", cpus_eng));
  EXPECT_EQ(code, 200) << body;
  ASSERT_TRUE(
      WaitFor([&] { return master_->master().snapshot()->agents(0).reserved_size() == 1; }));
  EXPECT_EQ(*FromProto(master_->master().snapshot()->agents(0).reserved()),
            *Resources::Parse("cpus(eng):1"));
  std::tie(code, body) = post(
      "/reserve",
      absl::StrCat(
          R"({"agent_id": ")", agent_id_,
          R"(", "resources": [{"name": "cpus", "scalar": 9, "reservations": [{"role": "eng"}]}]})"));
  EXPECT_EQ(code, 409);
  EXPECT_THAT(body, HasSubstr("is not free"));

  // gRPC: unreserve what is not reserved (FAILED_PRECONDITION), then what is.
  auto stub = v1::Operator::NewStub(
      grpc::CreateChannel(master_->grpc_address(), grpc::InsecureChannelCredentials()));
  v1::UnreserveResourcesRequest unreserve;
  unreserve.set_agent_id(agent_id_);
  ToProto(*Resources::Parse("mem(eng):1"), unreserve.mutable_resources());
  v1::UpdateResponse response;
  {
    grpc::ClientContext context;
    grpc::Status status = stub->UnreserveResources(&context, unreserve, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("not dynamically reserved"));
  }
  std::tie(code, body) = post(
      "/unreserve",
      absl::StrCat(
          R"({"agent_id": ")", agent_id_,
          R"(", "resources": [{"name": "mem", "scalar": 1, "reservations": [{"role": "eng"}]}]})"));
  EXPECT_EQ(code, 409);
  ToProto(*Resources::Parse("cpus(eng):1"), unreserve.mutable_resources());
  {
    grpc::ClientContext context;
    grpc::Status status = stub->UnreserveResources(&context, unreserve, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_TRUE(master_->master().snapshot()->agents(0).reserved().empty() || WaitFor([&] {
                return master_->master().snapshot()->agents(0).reserved_size() == 0;
              }));
  v1::ReserveResourcesRequest reserve;
  reserve.set_agent_id(agent_id_);
  ToProto(*Resources::Parse("mem(ops):128"), reserve.mutable_resources());
  {
    grpc::ClientContext context;
    grpc::Status status = stub->ReserveResources(&context, reserve, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  ASSERT_TRUE(
      WaitFor([&] { return master_->master().snapshot()->agents(0).reserved_size() == 1; }));
}

}  // namespace
}  // namespace rz
