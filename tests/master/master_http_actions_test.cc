// The master's REST actions (drain, deactivate, reactivate, gone, teardown, maintenance, machine
// down/up) against a MasterDaemon on loopback: the effect shows in /state, and every action
// answers malformed bodies 400, unknown targets 404 and wrong states 409 with {"code","message"}.
// The Operator gRPC action RPCs are checked against the same daemon.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "master/master_daemon.h"
#include "master_test_fixture.h"
#include "nlohmann/json.hpp"
#include "rz/v1/operator.grpc.pb.h"

namespace rz::master {
namespace {

class MasterHttpActionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MasterDaemonOptions options;
    options.ip = "127.0.0.1";
    options.hostname = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    options.registry = RegistryBackend::kInMemory;
    options.master.offer_timeout = absl::ZeroDuration();
    daemon_ = std::make_unique<MasterDaemon>(options);
    ASSERT_TRUE(daemon_->Start().ok());
    http_ = std::make_unique<httplib::Client>(daemon_->http_address());
    RegisterAgent("a0", "host0", /*with_task=*/true);
    RegisterAgent("a1", "host1", /*with_task=*/false);
    // An agent is admitted once its record is stored, on the registry's own thread: wait for
    // both (a deadline, not a fixed sleep).
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (daemon_->master().snapshot()->agents_size() < 2 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ASSERT_EQ(daemon_->master().snapshot()->agents_size(), 2);
  }

  void TearDown() override { daemon_->Stop(); }

  void Sync() {
    for (int round = 0; round < 2; ++round) {
      absl::Notification done;
      daemon_->loop().Post([&done] { done.Notify(); });
      done.WaitForNotification();
    }
  }

  void RegisterAgent(const std::string& id, const std::string& hostname, bool with_task) {
    v1::AgentMessage message;
    v1::AgentMessage::Register* reg = message.mutable_register_();
    reg->mutable_info()->set_id(id);
    reg->mutable_info()->set_hostname(hostname);
    ToProto(Res("cpus:4;mem:1000"), reg->mutable_info()->mutable_resources());
    if (with_task) {
      v1::FrameworkInfo* framework = reg->add_frameworks();
      framework->set_id("fw");
      framework->set_name("fw");
      framework->add_roles("*");
      framework->set_failover_timeout_seconds(3600);
      v1::Task* task = reg->add_tasks();
      task->set_task_id("t1");
      task->set_framework_id("fw");
      task->set_role("*");
      task->set_state(v1::TASK_RUNNING);
      ToProto(Res("cpus:1;mem:10"), task->mutable_resources());
    }
    auto outbox = std::make_shared<AgentStream>();
    outboxes_[id] = outbox;
    daemon_->loop().Post([this, message, outbox, id] {
      daemon_->master().HandleAgentMessage(StreamId("link-" + id), message, outbox);
    });
  }

  struct Reply {
    int status = 0;
    nlohmann::json body;
    std::string raw;
  };

  Reply Post(const std::string& path, const std::string& body) {
    httplib::Result result = http_->Post(path, body, "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) {
      return {};
    }
    Sync();
    return {result->status, nlohmann::json::parse(result->body, nullptr, false), result->body};
  }
  Reply Get(const std::string& path) {
    httplib::Result result = http_->Get(path);
    EXPECT_TRUE(result) << path;
    if (!result) {
      return {};
    }
    return {result->status, nlohmann::json::parse(result->body, nullptr, false), result->body};
  }

  // Asserts an error reply with `status` and {"code", "message"}; returns the message.
  static std::string Error(const Reply& reply, int status) {
    EXPECT_EQ(reply.status, status) << reply.raw;
    if (!reply.body.is_object() || !reply.body.contains("message") ||
        !reply.body.contains("code")) {
      ADD_FAILURE() << "no code/message in " << reply.raw;
      return "";
    }
    return reply.body["message"].get<std::string>();
  }

  nlohmann::json Agent(const std::string& id) {
    Reply state = Get("/state");
    for (const auto& agent : state.body["agents"]) {
      if (agent["info"]["id"] == id) {
        return agent;
      }
    }
    return nullptr;
  }

  std::unique_ptr<MasterDaemon> daemon_;
  std::unique_ptr<httplib::Client> http_;
  std::map<std::string, std::shared_ptr<AgentStream>> outboxes_;
};

TEST_F(MasterHttpActionsTest, DeactivateAndReactivateShowInState) {
  ASSERT_EQ(Post("/agents/deactivate", R"({"agent_id": "a1"})").status, 200);
  EXPECT_EQ(Agent("a1")["deactivated"], true);
  EXPECT_THAT(Error(Post("/agents/deactivate", R"({"agent_id": "a1"})"), 409),
              HasSubstr("already deactivated"));
  ASSERT_EQ(Post("/agents/reactivate", R"({"agent_id": "a1"})").status, 200);
  EXPECT_EQ(Agent("a1")["deactivated"], false);
  EXPECT_THAT(Error(Post("/agents/reactivate", R"({"agent_id": "a1"})"), 409),
              HasSubstr("neither deactivated nor draining"));
}

TEST_F(MasterHttpActionsTest, DrainShowsDrainingAndKillsWithTheCappedGrace) {
  Reply reply = Post("/agents/drain", R"({"agent_id": "a0", "max_grace_period_seconds": 7})");
  ASSERT_EQ(reply.status, 200) << reply.raw;
  nlohmann::json agent = Agent("a0");
  EXPECT_EQ(agent["drain"]["state"], "DRAINING");
  EXPECT_EQ(agent["drain"]["config"]["max_grace_period_seconds"], 7);
  bool killed = false;
  for (const v1::MasterMessage& message : outboxes_["a0"]->messages) {
    if (message.has_kill_task()) {
      killed = true;
      EXPECT_EQ(message.kill_task().task_id(), "t1");
      EXPECT_DOUBLE_EQ(message.kill_task().kill_policy().grace_period_seconds(), 7);
    }
  }
  EXPECT_TRUE(killed);
  // An agent with no task is drained at once.
  ASSERT_EQ(Post("/agents/drain", R"({"agent_id": "a1"})").status, 200);
  EXPECT_EQ(Agent("a1")["drain"]["state"], "DRAINED");
  EXPECT_THAT(Error(Post("/agents/drain", R"({"agent_id": "a1"})"), 409),
              HasSubstr("already drained"));
}

TEST_F(MasterHttpActionsTest, GoneAgentsLeaveTheAgentsListAndTheirTasksAreGoneByOperator) {
  ASSERT_EQ(Post("/agents/gone", R"({"agent_id": "a0"})").status, 200);
  EXPECT_TRUE(Agent("a0").is_null());
  Reply state = Get("/state");
  ASSERT_EQ(state.body["gone_agents"].size(), 1u);
  EXPECT_EQ(state.body["gone_agents"][0]["status"], "GONE");
  ASSERT_EQ(state.body["completed_tasks"].size(), 1u);
  EXPECT_EQ(state.body["completed_tasks"][0]["state"], "TASK_GONE_BY_OPERATOR");
  EXPECT_THAT(Error(Post("/agents/gone", R"({"agent_id": "a0"})"), 409), HasSubstr("gone"));
  EXPECT_THAT(Error(Post("/agents/drain", R"({"agent_id": "a0"})"), 409), HasSubstr("gone"));
}

TEST_F(MasterHttpActionsTest, TeardownRemovesTheFramework) {
  ASSERT_EQ(Post("/frameworks/teardown", R"({"framework_id": "fw"})").status, 200);
  Reply state = Get("/state");
  EXPECT_TRUE(state.body["frameworks"].empty()) << state.raw;
  EXPECT_EQ(state.body["completed_frameworks"].size(), 1u);
  EXPECT_THAT(Error(Post("/frameworks/teardown", R"({"framework_id": "fw"})"), 409),
              HasSubstr("already removed"));
  EXPECT_THAT(Error(Post("/frameworks/teardown", R"({"framework_id": "nope"})"), 404),
              HasSubstr("nope"));
}

TEST_F(MasterHttpActionsTest, EveryActionAnswersUnknownTargetsAndMalformedBodies) {
  for (const std::string path :
       {"/agents/drain", "/agents/deactivate", "/agents/reactivate", "/agents/gone"}) {
    EXPECT_THAT(Error(Post(path, R"({"agent_id": "nope"})"), 404), HasSubstr("nope")) << path;
    EXPECT_THAT(Error(Post(path, "{not json"), 400), HasSubstr("malformed")) << path;
    EXPECT_THAT(Error(Post(path, R"({"agent": "a0"})"), 400), HasSubstr("malformed")) << path;
    EXPECT_THAT(Error(Post(path, ""), 400), HasSubstr("JSON body")) << path;
    EXPECT_THAT(Error(Post(path, "{}"), 400), HasSubstr("agent_id")) << path;
  }
  for (const std::string path :
       {"/frameworks/teardown", "/maintenance/schedule", "/machine/down", "/machine/up"}) {
    EXPECT_THAT(Error(Post(path, "[1, 2"), 400), HasSubstr("malformed")) << path;
  }
  EXPECT_EQ(
      Error(Post("/agents/drain", R"({"agent_id": "a0", "max_grace_period_seconds": "soon"})"), 400)
          .empty(),
      false);
  // The daemon is still up.
  EXPECT_EQ(Get("/health").status, 200);
}

TEST_F(MasterHttpActionsTest, MaintenanceScheduleStatusAndMachineDownUp) {
  EXPECT_TRUE(Get("/maintenance/schedule").body["windows"].empty());
  Reply reply = Post("/maintenance/schedule", R"({"windows": [{
      "machines": [{"hostname": "host0"}],
      "unavailability": {"start": 4102444800, "duration_seconds": 3600}}]})");
  ASSERT_EQ(reply.status, 200) << reply.raw;
  Reply schedule = Get("/maintenance/schedule");
  ASSERT_EQ(schedule.status, 200);
  ASSERT_EQ(schedule.body["windows"].size(), 1u);
  EXPECT_EQ(schedule.body["windows"][0]["machines"][0]["hostname"], "host0");
  Reply status = Get("/maintenance/status");
  ASSERT_EQ(status.body["draining_machines"].size(), 1u) << status.raw;
  EXPECT_EQ(Agent("a0")["unavailability"]["start"], 4102444800.0);

  EXPECT_THAT(Error(Post("/machine/down", R"({"machines": [{"hostname": "host1"}]})"), 409),
              HasSubstr("not in the maintenance schedule"));
  EXPECT_THAT(Error(Post("/machine/up", R"({"machines": [{"hostname": "host0"}]})"), 409),
              HasSubstr("not DOWN"));
  EXPECT_THAT(Error(Post("/maintenance/schedule", R"({"windows": [{"machines": []}]})"), 400),
              HasSubstr("no machines"));

  ASSERT_EQ(Post("/machine/down", R"({"machines": [{"hostname": "host0"}]})").status, 200);
  status = Get("/maintenance/status");
  ASSERT_EQ(status.body["down_machines"].size(), 1u) << status.raw;
  EXPECT_TRUE(Agent("a0").is_null());
  ASSERT_EQ(Post("/machine/up", R"({"machines": [{"hostname": "host0"}]})").status, 200);
  EXPECT_TRUE(Get("/maintenance/status").body["down_machines"].empty());
  EXPECT_TRUE(Get("/maintenance/schedule").body["windows"].empty());
}

TEST_F(MasterHttpActionsTest, OperatorRpcsAnswerWithTheSameCodes) {
  auto stub = v1::Operator::NewStub(
      grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  v1::UpdateResponse response;
  {
    grpc::ClientContext context;
    v1::DeactivateAgentRequest request;
    request.set_agent_id("a1");
    EXPECT_TRUE(stub->DeactivateAgent(&context, request, &response).ok());
  }
  {
    grpc::ClientContext context;
    v1::DeactivateAgentRequest request;
    request.set_agent_id("a1");
    EXPECT_EQ(stub->DeactivateAgent(&context, request, &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  {
    grpc::ClientContext context;
    v1::MarkAgentGoneRequest request;
    request.set_agent_id("nope");
    EXPECT_EQ(stub->MarkAgentGone(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext context;
    v1::UpdateMaintenanceScheduleRequest request;
    v1::MaintenanceWindow* window = request.mutable_schedule()->add_windows();
    window->add_machines()->set_hostname("host1");
    window->mutable_unavailability()->set_start(4102444800);
    EXPECT_TRUE(stub->UpdateMaintenanceSchedule(&context, request, &response).ok());
  }
  Sync();
  {
    grpc::ClientContext context;
    v1::MaintenanceSchedule schedule;
    ASSERT_TRUE(
        stub->GetMaintenanceSchedule(&context, v1::GetMaintenanceScheduleRequest(), &schedule)
            .ok());
    ASSERT_EQ(schedule.windows_size(), 1);
    EXPECT_EQ(schedule.windows(0).machines(0).hostname(), "host1");
  }
  EXPECT_EQ(Agent("a1")["deactivated"], true);
}

}  // namespace
}  // namespace rz::master
