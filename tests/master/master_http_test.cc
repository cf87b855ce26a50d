// The master's read API: REST endpoints against a MasterDaemon on loopback (content, filters,
// pagination edges, malformed input, weights and quota updates), the gRPC read RPCs against the
// same daemon (same data), and the incremental snapshot against sums recomputed from scratch.
//
// The daemon's state is made by simulated agents: register messages (with tasks and their
// frameworks) handed to the master on its loop with capturing outboxes, as agents that
// reregister after a master failover report what they run.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "master/master_daemon.h"
#include "master/state_reads.h"
#include "master_test_fixture.h"
#include "nlohmann/json.hpp"
#include "rz/v1/operator.grpc.pb.h"

namespace rz::master {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::ElementsAre;
using ::testing::Ge;

// Agents a0..a(n-1); agent i runs tasks t<i>-<j> of framework fw-<j % 2> in role "analytics"
// (fw-0) or "batch" (fw-1), each cpus:1;mem:10, the last task of every agent TASK_STAGING and
// the others TASK_RUNNING.
class MasterHttpTest : public ::testing::Test {
 protected:
  static constexpr int kAgents = 4;
  static constexpr int kTasksPerAgent = 6;

  void SetUp() override {
    MasterDaemonOptions options;
    options.ip = "127.0.0.1";
    options.hostname = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    options.registry = RegistryBackend::kInMemory;
    options.master.offer_timeout = absl::ZeroDuration();
    options.flags = {{"port", "0"}, {"zk_password", "hunter2"}, {"allocation_interval", "1s"}};
    daemon_ = std::make_unique<MasterDaemon>(options);
    ASSERT_TRUE(daemon_->Start().ok());
    http_ = std::make_unique<httplib::Client>(daemon_->http_address());
    for (int i = 0; i < kAgents; ++i) {
      RegisterAgent(i);
    }
    // Registration completes once the registry has stored the agents (off the loop).
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (daemon_->master().state()->agents.size() < static_cast<size_t>(kAgents) ||
           daemon_->master().state()->tasks.size() <
               static_cast<size_t>(kAgents * kTasksPerAgent)) {
      ASSERT_LT(absl::Now(), deadline) << "agents did not register";
      absl::SleepFor(absl::Milliseconds(5));
    }
    Sync();
  }

  void TearDown() override { daemon_->Stop(); }

  // Waits until everything posted to the master's loop so far ran (and what it published).
  void Sync() {
    for (int round = 0; round < 2; ++round) {  // The first round's work may publish again.
      absl::Notification done;
      daemon_->loop().Post([&done] { done.Notify(); });
      done.WaitForNotification();
    }
  }

  static std::string AgentName(int i) { return absl::StrCat("a", i); }
  static std::string FrameworkName(int j) { return absl::StrCat("fw-", j); }

  void RegisterAgent(int i) {
    v1::AgentMessage message;
    v1::AgentMessage::Register* reg = message.mutable_register_();
    reg->mutable_info()->set_id(AgentName(i));
    reg->mutable_info()->set_hostname(absl::StrCat("host", i));
    ToProto(Res("cpus:16;mem:1000"), reg->mutable_info()->mutable_resources());
    for (int j = 0; j < 2; ++j) {
      v1::FrameworkInfo* framework = reg->add_frameworks();
      framework->set_id(FrameworkName(j));
      framework->set_name(FrameworkName(j));
      framework->add_roles(j == 0 ? "analytics" : "batch");
      framework->set_failover_timeout_seconds(3600);
    }
    for (int t = 0; t < kTasksPerAgent; ++t) {
      v1::Task* task = reg->add_tasks();
      task->set_task_id(absl::StrCat("t", i, "-", t));
      task->set_name(task->task_id());
      task->set_framework_id(FrameworkName(t % 2));
      task->set_role(t % 2 == 0 ? "analytics" : "batch");
      task->set_state(t == kTasksPerAgent - 1 ? v1::TASK_STAGING : v1::TASK_RUNNING);
      ToProto(Res("cpus:1;mem:10"), task->mutable_resources());
    }
    auto outbox = std::make_shared<AgentStream>();
    outboxes_.push_back(outbox);
    daemon_->loop().Post([this, message, outbox, i] {
      daemon_->master().HandleAgentMessage(StreamId(absl::StrCat("link-", i)), message, outbox);
    });
  }

  struct Reply {
    int status = 0;
    nlohmann::json body;
    std::string raw;
  };

  Reply Get(const std::string& path) {
    httplib::Result result = http_->Get(path);
    EXPECT_TRUE(result) << path;
    if (!result) {
      return {};
    }
    return {result->status, nlohmann::json::parse(result->body, nullptr, false), result->body};
  }
  Reply Put(const std::string& path, const std::string& body) {
    httplib::Result result = http_->Put(path, body, "application/json");
    EXPECT_TRUE(result) << path;
    if (!result) {
      return {};
    }
    return {result->status, nlohmann::json::parse(result->body, nullptr, false), result->body};
  }

  // A 4xx/5xx reply must carry {"code", "message"}; returns the message.
  static std::string ErrorMessage(const Reply& reply) {
    EXPECT_TRUE(reply.body.is_object()) << reply.raw;
    if (!reply.body.is_object() || !reply.body.contains("message") ||
        !reply.body.contains("code")) {
      ADD_FAILURE() << "no code/message in " << reply.raw;
      return "";
    }
    return reply.body["message"].get<std::string>();
  }

  static std::vector<std::string> TaskIds(const nlohmann::json& tasks) {
    std::vector<std::string> ids;
    for (const auto& task : tasks) {
      ids.push_back(task["task_id"].get<std::string>());
    }
    return ids;
  }

  std::unique_ptr<v1::Operator::Stub> Operator() {
    return v1::Operator::NewStub(
        grpc::CreateChannel(daemon_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  template <typename Message>
  static Message Parse(const std::string& json) {
    Message message;
    auto status = google::protobuf::util::JsonStringToMessage(json, &message);
    EXPECT_TRUE(status.ok()) << status.ToString() << " in " << json.substr(0, 200);
    return message;
  }

  std::unique_ptr<MasterDaemon> daemon_;
  std::unique_ptr<httplib::Client> http_;
  std::vector<std::shared_ptr<AgentStream>> outboxes_;
};

TEST_F(MasterHttpTest, StateSummaryHasCountsButNoTasks) {
  Reply reply = Get("/state-summary");
  ASSERT_EQ(reply.status, 200) << reply.raw;
  EXPECT_EQ(reply.body["agents"].size(), static_cast<size_t>(kAgents));
  EXPECT_EQ(reply.body["frameworks"].size(), 2u);
  EXPECT_FALSE(reply.body.contains("tasks"));
  // int64 fields follow the protobuf JSON mapping: strings.
  EXPECT_EQ(reply.body["task_count"], std::to_string(kAgents * kTasksPerAgent));
  EXPECT_EQ(reply.body["tasks_by_state"]["TASK_RUNNING"],
            std::to_string(kAgents * (kTasksPerAgent - 1)));
  EXPECT_EQ(reply.body["tasks_by_state"]["TASK_STAGING"], std::to_string(kAgents));
  // Used resources are summed per agent and framework from their tasks.
  const nlohmann::json& agent = reply.body["agents"][0];
  EXPECT_EQ(agent["task_count"], kTasksPerAgent);
  v1::AgentState parsed = Parse<v1::AgentState>(agent.dump());
  EXPECT_EQ(*FromProto(parsed.used()), Res("cpus:6;mem:60"));
  v1::FrameworkState framework = Parse<v1::FrameworkState>(reply.body["frameworks"][0].dump());
  EXPECT_EQ(framework.task_count(), kAgents * kTasksPerAgent / 2);
  EXPECT_EQ(*FromProto(framework.used()), Res("cpus:12;mem:120"));
}

TEST_F(MasterHttpTest, StateIsCompleteAndFilterable) {
  Reply all = Get("/state");
  ASSERT_EQ(all.status, 200) << all.raw.substr(0, 300);
  v1::State state = Parse<v1::State>(all.raw);
  EXPECT_EQ(state.agents_size(), kAgents);
  EXPECT_EQ(state.tasks_size(), kAgents * kTasksPerAgent);
  EXPECT_EQ(state.master().hostname(), "127.0.0.1");
  EXPECT_GT(state.counters().size(), 0u);
  // The same as the in-process snapshot.
  EXPECT_TRUE(MessageDifferencer::Equivalent(state, *daemon_->master().snapshot()));

  Reply by_framework = Get("/state?framework_id=fw-1");
  ASSERT_EQ(by_framework.status, 200);
  v1::State one = Parse<v1::State>(by_framework.raw);
  ASSERT_EQ(one.frameworks_size(), 1);
  EXPECT_EQ(one.frameworks(0).info().id(), "fw-1");
  EXPECT_EQ(one.tasks_size(), kAgents * kTasksPerAgent / 2);
  for (const v1::Task& task : one.tasks()) {
    EXPECT_EQ(task.framework_id(), "fw-1");
  }

  Reply by_agent = Get("/state?agent_id=a2&framework_id=fw-0");
  ASSERT_EQ(by_agent.status, 200);
  v1::State both = Parse<v1::State>(by_agent.raw);
  ASSERT_EQ(both.agents_size(), 1);
  EXPECT_EQ(both.agents(0).info().id(), "a2");
  EXPECT_EQ(both.tasks_size(), kTasksPerAgent / 2);
  for (const v1::Task& task : both.tasks()) {
    EXPECT_EQ(task.agent_id(), "a2");
    EXPECT_EQ(task.framework_id(), "fw-0");
  }

  Reply unknown = Get("/state?framework_id=nope");
  ASSERT_EQ(unknown.status, 200);
  EXPECT_TRUE(unknown.body["tasks"].empty());
  EXPECT_TRUE(unknown.body["frameworks"].empty());

  Reply typo = Get("/state?framework=fw-1");
  EXPECT_EQ(typo.status, 400);
  EXPECT_THAT(ErrorMessage(typo), HasSubstr("unknown query parameter 'framework'"));
}

TEST_F(MasterHttpTest, TasksPaginationEdges) {
  const int total = kAgents * kTasksPerAgent;
  Reply first = Get("/tasks?limit=10&offset=0");
  ASSERT_EQ(first.status, 200) << first.raw;
  EXPECT_EQ(first.body["total"], std::to_string(total));
  EXPECT_EQ(first.body["limit"], 10);
  ASSERT_EQ(first.body["tasks"].size(), 10u);
  // Ordered by (framework_id, task_id).
  std::vector<std::string> ids = TaskIds(first.body["tasks"]);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end())) << first.raw;
  EXPECT_EQ(first.body["tasks"][0]["framework_id"], "fw-0");

  Reply last = Get(absl::StrCat("/tasks?limit=10&offset=", total - 4));
  ASSERT_EQ(last.status, 200);
  EXPECT_EQ(last.body["tasks"].size(), 4u);
  EXPECT_EQ(last.body["tasks"].back()["framework_id"], "fw-1");

  Reply past = Get("/tasks?offset=1000");
  ASSERT_EQ(past.status, 200);
  EXPECT_TRUE(past.body["tasks"].empty());
  EXPECT_EQ(past.body["total"], std::to_string(total));

  Reply zero = Get("/tasks?limit=0");
  ASSERT_EQ(zero.status, 200);
  EXPECT_TRUE(zero.body["tasks"].empty());
  EXPECT_EQ(zero.body["total"], std::to_string(total));

  Reply defaulted = Get("/tasks");
  EXPECT_EQ(defaulted.body["limit"], kDefaultTasksLimit);
  EXPECT_EQ(defaulted.body["tasks"].size(), static_cast<size_t>(total));

  Reply clamped = Get("/tasks?limit=5000");
  ASSERT_EQ(clamped.status, 200);
  EXPECT_EQ(clamped.body["limit"], kMaxTasksLimit);
  Reply huge = Get("/tasks?limit=99999999999999999999999");
  ASSERT_EQ(huge.status, 200);
  EXPECT_EQ(huge.body["limit"], kMaxTasksLimit);

  for (const char* bad : {"/tasks?limit=-1", "/tasks?limit=abc", "/tasks?offset=-3",
                          "/tasks?offset=1.5", "/tasks?limit="}) {
    Reply reply = Get(bad);
    EXPECT_EQ(reply.status, 400) << bad;
    EXPECT_THAT(ErrorMessage(reply), HasSubstr("must be a non-negative integer")) << bad;
  }
  Reply state = Get("/tasks?state=TASK_BOGUS");
  EXPECT_EQ(state.status, 400);
  EXPECT_THAT(ErrorMessage(state), HasSubstr("unknown task state 'TASK_BOGUS'"));
  Reply param = Get("/tasks?page=2");
  EXPECT_EQ(param.status, 400);
  EXPECT_THAT(ErrorMessage(param), HasSubstr("'page'"));
}

TEST_F(MasterHttpTest, TasksFilters) {
  Reply staging = Get("/tasks?state=staging&limit=2&offset=1");
  ASSERT_EQ(staging.status, 200) << staging.raw;
  EXPECT_EQ(staging.body["total"], std::to_string(kAgents));
  ASSERT_EQ(staging.body["tasks"].size(), 2u);
  for (const auto& task : staging.body["tasks"]) {
    EXPECT_EQ(task["state"], "TASK_STAGING");
  }

  Reply framework = Get("/tasks?framework_id=fw-1&limit=1000");
  EXPECT_EQ(framework.body["total"], std::to_string(kAgents * kTasksPerAgent / 2));
  for (const auto& task : framework.body["tasks"]) {
    EXPECT_EQ(task["framework_id"], "fw-1");
  }

  Reply agent = Get("/tasks?agent_id=a1");
  EXPECT_EQ(agent.body["total"], std::to_string(kTasksPerAgent));
  EXPECT_THAT(TaskIds(agent.body["tasks"]),
              ElementsAre("t1-0", "t1-2", "t1-4", "t1-1", "t1-3", "t1-5"));

  Reply agent_framework = Get("/tasks?agent_id=a3&framework_id=fw-0&state=TASK_RUNNING");
  EXPECT_THAT(TaskIds(agent_framework.body["tasks"]), ElementsAre("t3-0", "t3-2", "t3-4"));

  Reply nobody = Get("/tasks?agent_id=a9");
  EXPECT_EQ(nobody.status, 200);
  EXPECT_EQ(nobody.body["total"], "0");
}

TEST_F(MasterHttpTest, AgentsFrameworksRolesAndSmallEndpoints) {
  Reply agents = Get("/agents");
  ASSERT_EQ(agents.status, 200);
  ASSERT_EQ(agents.body["agents"].size(), static_cast<size_t>(kAgents));
  EXPECT_EQ(agents.body["agents"][0]["info"]["id"], "a0");
  EXPECT_EQ(agents.body["agents"][0]["status"], "REGISTERED");

  Reply frameworks = Get("/frameworks");
  ASSERT_EQ(frameworks.status, 200);
  ASSERT_EQ(frameworks.body["frameworks"].size(), 2u);
  EXPECT_EQ(frameworks.body["frameworks"][0]["connected"], false);
  EXPECT_TRUE(frameworks.body["completed_frameworks"].empty());

  Reply roles = Get("/roles");
  ASSERT_EQ(roles.status, 200);
  v1::Roles parsed = Parse<v1::Roles>(roles.raw);
  bool analytics = false;
  for (const v1::RoleInfo& role : parsed.roles()) {
    if (role.role() == "analytics") {
      analytics = true;
      EXPECT_EQ(*FromProto(role.consumed()), Res("cpus:12;mem:120"));
    }
  }
  EXPECT_TRUE(analytics) << roles.raw;

  EXPECT_EQ(Get("/health").body["healthy"], true);
  EXPECT_FALSE(Get("/version").body["version"].get<std::string>().empty());
  Reply flags = Get("/flags");
  EXPECT_EQ(flags.body["flags"]["port"], "0");
  EXPECT_EQ(flags.body["flags"]["zk_password"], "***");
  EXPECT_EQ(flags.raw.find("hunter2"), std::string::npos);

  httplib::Result redirect = http_->Get("/redirect");
  ASSERT_TRUE(redirect);
  EXPECT_EQ(redirect->status, 307);
  EXPECT_EQ(redirect->get_header_value("Location"), daemon_->http_address());

  Reply missing = Get("/no/such/thing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body["code"], "NOT_FOUND");
  EXPECT_THAT(ErrorMessage(missing), HasSubstr("/no/such/thing"));
  httplib::Result wrong_method = http_->Post("/state", "{}", "application/json");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
}

TEST_F(MasterHttpTest, PutWeights) {
  for (const char* bad : {"", "{", "[1,2]", R"({"weights": "heavy"})",
                          R"({"weights": [{"role": "a", "weight": "x"}]})",
                          R"({"weights": [{"role": "a", "wieght": 2}]})"}) {
    Reply reply = Put("/weights", bad);
    EXPECT_EQ(reply.status, 400) << bad;
    EXPECT_FALSE(ErrorMessage(reply).empty()) << bad;
  }
  Reply role = Put("/weights", R"({"weights": [{"role": "/bad//role", "weight": 2}]})");
  EXPECT_EQ(role.status, 400);
  EXPECT_THAT(ErrorMessage(role), HasSubstr("invalid role"));
  Reply zero = Put("/weights", R"({"weights": [{"role": "batch", "weight": 0}]})");
  EXPECT_EQ(zero.status, 400);

  Reply ok = Put("/weights", R"({"weights": [{"role": "batch", "weight": 2.5}]})");
  ASSERT_EQ(ok.status, 200) << ok.raw;
  Sync();
  Reply weights = Get("/weights");
  bool found = false;
  for (const auto& weight : weights.body["weights"]) {
    if (weight["role"] == "batch") {
      found = true;
      EXPECT_EQ(weight["weight"], 2.5);
    }
  }
  EXPECT_TRUE(found) << weights.raw;
}

TEST_F(MasterHttpTest, PutQuotaRefusesLimitBelowConsumptionUnlessForced) {
  for (const char* bad :
       {"nope", R"({"quotas": {}})", R"({"quotas": [{"role": "batch", "limits": "cpus:1"}]})"}) {
    Reply reply = Put("/quota", bad);
    EXPECT_EQ(reply.status, 400) << bad;
    EXPECT_FALSE(ErrorMessage(reply).empty());
  }
  Reply role = Put("/quota", R"({"quotas": [{"role": "*", "guarantees": []}]})");
  EXPECT_EQ(role.status, 400);
  EXPECT_THAT(ErrorMessage(role), HasSubstr("invalid role"));

  // "analytics" consumes cpus:12.
  const std::string below =
      R"({"quotas": [{"role": "analytics", "limits": [{"name": "cpus", "scalar": 4}]}]})";
  Reply refused = Put("/quota", below);
  EXPECT_EQ(refused.status, 409) << refused.raw;
  EXPECT_EQ(refused.body["code"], "FAILED_PRECONDITION");
  EXPECT_THAT(ErrorMessage(refused), HasSubstr("below its current consumption"));
  EXPECT_TRUE(Get("/quota").body["quotas"].empty());

  Reply above = Put("/quota",
                    R"({"quotas": [{"role": "batch", "guarantees": [{"name": "cpus", "scalar": 2}],
                      "limits": [{"name": "cpus", "scalar": 20}]}]})");
  EXPECT_EQ(above.status, 200) << above.raw;
  Reply forced =
      Put("/quota", absl::StrCat(below.substr(0, below.size() - 1), R"(,"force":true})"));
  EXPECT_EQ(forced.status, 200) << forced.raw;
  Sync();
  Reply quota = Get("/quota");
  ASSERT_EQ(quota.body["quotas"].size(), 2u) << quota.raw;
  EXPECT_FALSE(quota.body.contains("force"));
}

TEST_F(MasterHttpTest, GrpcReadsServeTheSameData) {
  std::unique_ptr<v1::Operator::Stub> stub = Operator();
  auto call = [&](auto method, const auto& request, auto* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return (stub.get()->*method)(&context, request, response);
  };

  v1::StateSummary summary;
  ASSERT_TRUE(
      call(&v1::Operator::Stub::GetStateSummary, v1::GetStateSummaryRequest(), &summary).ok());
  EXPECT_TRUE(
      MessageDifferencer::Equivalent(summary, Parse<v1::StateSummary>(Get("/state-summary").raw)));
  EXPECT_EQ(summary.task_count(), kAgents * kTasksPerAgent);

  v1::GetStateRequest state_request;
  state_request.set_agent_id("a1");
  v1::State state;
  ASSERT_TRUE(call(&v1::Operator::Stub::GetState, state_request, &state).ok());
  EXPECT_TRUE(
      MessageDifferencer::Equivalent(state, Parse<v1::State>(Get("/state?agent_id=a1").raw)));
  EXPECT_EQ(state.tasks_size(), kTasksPerAgent);

  v1::GetTasksRequest tasks_request;
  tasks_request.set_limit(5);
  tasks_request.set_offset(3);
  tasks_request.set_framework_id("fw-1");
  v1::Tasks tasks;
  ASSERT_TRUE(call(&v1::Operator::Stub::GetTasks, tasks_request, &tasks).ok());
  EXPECT_TRUE(MessageDifferencer::Equivalent(
      tasks, Parse<v1::Tasks>(Get("/tasks?limit=5&offset=3&framework_id=fw-1").raw)));
  EXPECT_EQ(tasks.tasks_size(), 5);

  tasks_request.set_limit(-1);
  grpc::Status bad = call(&v1::Operator::Stub::GetTasks, tasks_request, &tasks);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("limit"));

  v1::Agents agents;
  ASSERT_TRUE(call(&v1::Operator::Stub::GetAgents, v1::GetAgentsRequest(), &agents).ok());
  EXPECT_TRUE(MessageDifferencer::Equivalent(agents, Parse<v1::Agents>(Get("/agents").raw)));
  v1::Frameworks frameworks;
  ASSERT_TRUE(
      call(&v1::Operator::Stub::GetFrameworks, v1::GetFrameworksRequest(), &frameworks).ok());
  EXPECT_TRUE(
      MessageDifferencer::Equivalent(frameworks, Parse<v1::Frameworks>(Get("/frameworks").raw)));
  v1::Flags flags;
  ASSERT_TRUE(call(&v1::Operator::Stub::GetFlags, v1::GetFlagsRequest(), &flags).ok());
  EXPECT_EQ(flags.flags().at("zk_password"), "***");
  v1::Version version;
  ASSERT_TRUE(call(&v1::Operator::Stub::GetVersion, v1::GetVersionRequest(), &version).ok());
  EXPECT_EQ(version.version(), Get("/version").body["version"]);
}

// Publication is incremental: after tasks start, finish and are removed, agents disconnect and
// offers come and go, the published sums and counts equal those recomputed from the tasks.
class SnapshotTest : public MasterTest {
 protected:
  void ExpectConsistent() {
    std::shared_ptr<const v1::State> state = master_.snapshot();
    std::map<std::string, Resources> used_by_agent;
    std::map<std::string, Resources> used_by_framework;
    std::map<std::string, int> tasks_by_agent;
    for (const v1::Task& task : state->tasks()) {
      ++tasks_by_agent[task.agent_id()];
      if (!IsTerminal(task.state())) {
        used_by_agent[task.agent_id()] += *FromProto(task.resources());
        used_by_framework[task.framework_id()] += *FromProto(task.resources());
      }
    }
    std::map<std::string, Resources> offered_by_agent;
    for (const v1::Offer& offer : state->offers()) {
      Resources resources = *FromProto(offer.resources());
      offered_by_agent[offer.agent_id()] += resources;
    }
    for (const v1::AgentState& agent : state->agents()) {
      const std::string& id = agent.info().id();
      EXPECT_EQ(FromProto(agent.used())->ScalarFixed("cpus"), used_by_agent[id].ScalarFixed("cpus"))
          << id;
      EXPECT_EQ(FromProto(agent.offered())->ScalarFixed("cpus"),
                offered_by_agent[id].ScalarFixed("cpus"))
          << id;
      EXPECT_EQ(agent.task_count(), tasks_by_agent[id]) << id;
    }
    for (const v1::FrameworkState& framework : state->frameworks()) {
      EXPECT_EQ(FromProto(framework.used())->ScalarFixed("cpus"),
                used_by_framework[framework.info().id()].ScalarFixed("cpus"));
    }
    std::shared_ptr<const MasterSnapshot> snapshot = master_.state();
    int64_t counted = 0;
    for (const auto& [name, count] : snapshot->tasks_by_state) {
      counted += count;
    }
    EXPECT_EQ(counted, state->tasks_size());
    EXPECT_EQ(snapshot->tasks.size(), snapshot->tasks_by_agent.size());
  }
};

TEST_F(SnapshotTest, IncrementalSumsMatchTheTasks) {
  Agent agent = AddAgent("cpus:4;mem:1024");
  Agent other = AddAgent("cpus:2;mem:512", "h2");
  Scheduler scheduler = Subscribe();
  loop_.RunUntilIdle();
  std::vector<v1::Offer> offers = Offers(scheduler.stream->Take());
  ASSERT_THAT(offers, SizeIs(2));
  ExpectConsistent();
  for (const v1::Offer& offer : offers) {
    const std::string prefix = offer.agent_id() == agent.id ? "x" : "y";
    ASSERT_TRUE(Launch(scheduler, {offer.id()},
                       {Task(prefix + "1", "cpus:1;mem:10"), Task(prefix + "2", "cpus:1;mem:10")})
                    .ok());
  }
  ExpectConsistent();
  EXPECT_EQ(master_.state()->tasks.size(), 4u);
  AgentUpdate(agent, scheduler.framework_id, "x1", v1::TASK_RUNNING, "u1");
  AgentUpdate(agent, scheduler.framework_id, "x2", v1::TASK_FINISHED, "u2");
  ExpectConsistent();
  // Acknowledged: the finished task moves to the history.
  v1::AcknowledgeRequest ack;
  *ack.mutable_header() = scheduler.header();
  ack.set_agent_id(agent.id);
  ack.set_task_id("x2");
  ack.set_uuid("u2");
  ASSERT_TRUE(master_.Acknowledge(ack).ok());
  loop_.RunUntilIdle();
  ExpectConsistent();
  EXPECT_THAT(*master_.state()->completed_tasks, SizeIs(Ge(1u)));
  master_.AgentLinkClosed(other.link);
  loop_.RunUntilIdle();
  ExpectConsistent();
  EXPECT_EQ(master_.state()->agents.Find(AgentId(other.id))->proto().status(),
            v1::AgentState::DISCONNECTED);
  EXPECT_GE(master_.state()->publish_duration, absl::ZeroDuration());
}

// A published snapshot is immutable: later publications do not change what a reader holds.
TEST_F(SnapshotTest, PublishedSnapshotsDoNotChange) {
  Agent agent = AddAgent("cpus:4;mem:1024");
  Scheduler scheduler = Subscribe();
  std::vector<v1::Offer> offers = Offers(scheduler.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  std::vector<v1::TaskInfo> tasks;
  for (int i = 0; i < 600; ++i) {  // More than two chunks.
    tasks.push_back(Task(absl::StrCat("t", 1000 + i), "cpus:0.001;mem:1"));
  }
  ASSERT_TRUE(Launch(scheduler, {offers[0].id()}, tasks).ok());
  std::shared_ptr<const MasterSnapshot> before = master_.state();
  ASSERT_EQ(before->tasks.size(), 600u);
  const std::string json = before->tasks.at(300).second->json();
  AgentUpdate(agent, scheduler.framework_id, "t1300", v1::TASK_RUNNING, "u");
  std::shared_ptr<const MasterSnapshot> after = master_.state();
  EXPECT_EQ(before->tasks.at(300).second->proto().state(), v1::TASK_STAGING);
  EXPECT_EQ(before->tasks.at(300).second->json(), json);
  EXPECT_EQ(after->tasks.at(300).second->proto().state(), v1::TASK_RUNNING);
  // Unchanged views are shared, not copied.
  EXPECT_EQ(before->tasks.at(10).second, after->tasks.at(10).second);
  EXPECT_EQ(after->tasks.Find(TaskKey(FrameworkId(scheduler.framework_id), TaskId("t1599")))
                ->proto()
                .task_id(),
            "t1599");
}

}  // namespace
}  // namespace rz::master
