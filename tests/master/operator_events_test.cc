// The operator event stream: what the master emits as scenarios run (MasterTest, manual clock),
// then the real gRPC stream against a MasterDaemon on loopback: order, the subscriber cap, a
// slow consumer disconnected, and the metrics endpoints of a live daemon.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "master/master_daemon.h"
#include "master/master_test_fixture.h"
#include "nlohmann/json.hpp"
#include "rz/v1/operator.grpc.pb.h"
#include "rz/v1/scheduler.grpc.pb.h"

namespace rz::master {
namespace {

using OperatorStream = CapturingOutbox<v1::OperatorEvent>;

std::vector<v1::OperatorEvent::Type> Types(const std::vector<v1::OperatorEvent>& events) {
  std::vector<v1::OperatorEvent::Type> types;
  for (const v1::OperatorEvent& event : events) {
    types.push_back(event.type());
  }
  return types;
}

class OperatorEventsTest : public MasterTest {
 protected:
  std::shared_ptr<OperatorStream> SubscribeOperator() {
    auto stream = std::make_shared<OperatorStream>();
    master_.SubscribeOperatorEvents(StreamId(absl::StrCat("op-", ++operators_)), stream);
    loop_.RunUntilIdle();
    return stream;
  }
  int operators_ = 0;
};

TEST_F(OperatorEventsTest, SubscribedCarriesTheCurrentState) {
  Agent agent = AddAgent("cpus:4;mem:1024");
  Scheduler s = Subscribe();
  std::shared_ptr<OperatorStream> op = SubscribeOperator();
  ASSERT_THAT(op->messages, SizeIs(1));
  const v1::OperatorEvent& subscribed = op->messages[0];
  ASSERT_EQ(subscribed.type(), v1::OperatorEvent::SUBSCRIBED);
  ASSERT_EQ(subscribed.subscribed().state().agents_size(), 1);
  EXPECT_EQ(subscribed.subscribed().state().agents(0).info().id(), agent.id);
  ASSERT_EQ(subscribed.subscribed().state().frameworks_size(), 1);
  EXPECT_EQ(subscribed.subscribed().state().frameworks(0).info().id(), s.framework_id);
  EXPECT_EQ(subscribed.subscribed().heartbeat_interval_seconds(), 100);
}

TEST_F(OperatorEventsTest, TaskLifecycleArrivesInOrder) {
  std::shared_ptr<OperatorStream> op = SubscribeOperator();
  op->Take();  // SUBSCRIBED

  Agent agent = AddAgent("cpus:4;mem:1024");
  std::vector<v1::OperatorEvent> events = op->Take();
  ASSERT_THAT(Types(events), ::testing::ElementsAre(v1::OperatorEvent::AGENT_ADDED));
  EXPECT_EQ(events[0].agent_added().agent().info().id(), agent.id);
  EXPECT_EQ(events[0].agent_added().agent().status(), v1::AgentState::REGISTERED);

  Scheduler s = Subscribe();
  events = op->Take();
  ASSERT_THAT(Types(events), ::testing::Contains(v1::OperatorEvent::FRAMEWORK_ADDED));
  EXPECT_EQ(events[0].type(), v1::OperatorEvent::FRAMEWORK_ADDED);
  EXPECT_EQ(events[0].framework_added().framework().info().id(), s.framework_id);
  EXPECT_TRUE(events[0].framework_added().framework().connected());

  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:64")}).ok());
  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_RUNNING, "u1");
  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_FINISHED, "u2");

  // Offer and resource bookkeeping changes publish too, but are not operator news.
  events = op->Take();
  ASSERT_THAT(Types(events),
              ::testing::ElementsAre(v1::OperatorEvent::TASK_ADDED, v1::OperatorEvent::TASK_UPDATED,
                                     v1::OperatorEvent::TASK_UPDATED));
  EXPECT_EQ(events[0].task_added().task().task_id(), "t1");
  EXPECT_EQ(events[0].task_added().task().state(), v1::TASK_STAGING);
  EXPECT_EQ(events[1].task_updated().state(), v1::TASK_RUNNING);
  EXPECT_EQ(events[1].task_updated().framework_id(), s.framework_id);
  EXPECT_EQ(events[1].task_updated().status().task_id(), "t1");
  EXPECT_EQ(events[2].task_updated().state(), v1::TASK_FINISHED);
}

TEST_F(OperatorEventsTest, FrameworkUpdatedOnDisconnectAndReconnect) {
  Scheduler s = Subscribe("*", "", /*failover_timeout=*/60);
  std::shared_ptr<OperatorStream> op = SubscribeOperator();
  op->Take();

  master_.SchedulerStreamClosed(s.stream_id);
  loop_.RunUntilIdle();
  std::vector<v1::OperatorEvent> events = op->Take();
  ASSERT_THAT(Types(events), ::testing::ElementsAre(v1::OperatorEvent::FRAMEWORK_UPDATED));
  EXPECT_FALSE(events[0].framework_updated().framework().connected());

  Scheduler again = Subscribe("*", s.framework_id, 60);
  events = op->Take();
  ASSERT_THAT(Types(events), ::testing::ElementsAre(v1::OperatorEvent::FRAMEWORK_UPDATED));
  EXPECT_TRUE(events[0].framework_updated().framework().connected());
  EXPECT_EQ(events[0].framework_updated().framework().info().id(), s.framework_id);
}

TEST_F(OperatorEventsTest, TeardownKillsTasksAndRemovesTheFramework) {
  Agent agent = AddAgent("cpus:4;mem:1024");
  Scheduler s = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:64")}).ok());
  AgentUpdate(agent, s.framework_id, "t1", v1::TASK_RUNNING, "u1");
  std::shared_ptr<OperatorStream> op = SubscribeOperator();
  op->Take();

  v1::TeardownRequest teardown;
  *teardown.mutable_header() = s.header();
  ASSERT_TRUE(master_.Teardown(teardown).ok());
  loop_.RunUntilIdle();
  std::vector<v1::OperatorEvent> events = op->Take();
  // The task got its terminal update and left the active set in one batch: still announced.
  ASSERT_THAT(Types(events), ::testing::UnorderedElementsAre(v1::OperatorEvent::FRAMEWORK_REMOVED,
                                                             v1::OperatorEvent::TASK_UPDATED));
  for (const v1::OperatorEvent& event : events) {
    if (event.type() == v1::OperatorEvent::TASK_UPDATED) {
      EXPECT_EQ(event.task_updated().state(), v1::TASK_KILLED);
      EXPECT_EQ(event.task_updated().status().task_id(), "t1");
    }
  }
}

TEST_F(OperatorEventsTest, AgentRemovedWhenUnreachable) {
  Agent agent = AddAgent("cpus:4;mem:1024");
  std::shared_ptr<OperatorStream> op = SubscribeOperator();
  op->Take();
  master_.AgentLinkClosed(agent.link);
  loop_.RunUntilIdle();
  // Disconnected is not removed: it may come back within the reregister timeout.
  EXPECT_THAT(Types(op->Take()),
              ::testing::Not(::testing::Contains(v1::OperatorEvent::AGENT_REMOVED)));
  loop_.AdvanceTime(absl::Seconds(76));
  std::vector<v1::OperatorEvent> events = op->Take();
  ASSERT_THAT(Types(events), ::testing::Contains(v1::OperatorEvent::AGENT_REMOVED));
  for (const v1::OperatorEvent& event : events) {
    if (event.type() == v1::OperatorEvent::AGENT_REMOVED) {
      EXPECT_EQ(event.agent_removed().agent_id(), agent.id);
      EXPECT_EQ(event.agent_removed().status(), v1::AgentState::UNREACHABLE);
    }
  }
}

TEST_F(OperatorEventsTest, HeartbeatsWhileSubscribed) {
  std::shared_ptr<OperatorStream> op = SubscribeOperator();
  op->Take();
  loop_.AdvanceTime(absl::Seconds(100));
  EXPECT_THAT(Types(op->Take()), ::testing::Contains(v1::OperatorEvent::HEARTBEAT));
  master_.OperatorEventStreamClosed(StreamId("op-1"));
  loop_.AdvanceTime(absl::Seconds(200));
  EXPECT_THAT(op->Take(), IsEmpty());
}

TEST_F(OperatorEventsTest, SubscriberCapRefusesWithResourceExhausted) {
  const size_t limit = Options().max_operator_event_subscribers;
  std::vector<std::shared_ptr<OperatorStream>> streams;
  for (size_t i = 0; i < limit; ++i) {
    streams.push_back(SubscribeOperator());
    ASSERT_FALSE(streams.back()->closed);
  }
  std::shared_ptr<OperatorStream> extra = SubscribeOperator();
  EXPECT_TRUE(extra->closed);
  EXPECT_EQ(extra->close_status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(extra->close_status.message(), HasSubstr(absl::StrCat("limit is ", limit)));
  EXPECT_THAT(extra->close_status.message(), HasSubstr("--max_operator_event_subscribers"));
  EXPECT_THAT(extra->messages, IsEmpty());

  // A closed stream frees its place.
  master_.OperatorEventStreamClosed(StreamId("op-1"));
  loop_.RunUntilIdle();
  std::shared_ptr<OperatorStream> again = SubscribeOperator();
  EXPECT_FALSE(again->closed);
  ASSERT_THAT(again->messages, SizeIs(1));
  EXPECT_EQ(again->messages[0].type(), v1::OperatorEvent::SUBSCRIBED);
}

// ---------------------------------------------------------------------------------------------
// Real gRPC on loopback.

class OperatorStreamTest : public ::testing::Test {
 protected:
  void StartDaemon(size_t max_subscribers, size_t max_queued) {
    MasterDaemonOptions options;
    options.ip = "127.0.0.1";
    options.hostname = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    options.registry = RegistryBackend::kInMemory;
    options.master.max_operator_event_subscribers = max_subscribers;
    options.master.max_queued_operator_events = max_queued;
    options.registry = RegistryBackend::kInMemory;
    daemon_ = std::make_unique<MasterDaemon>(options);
    ASSERT_TRUE(daemon_->Start().ok());
    grpc::ChannelArguments args;
    // Keep the flow-control window at its initial 64 KiB so an unread stream backs up soon.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    channel_ = grpc::CreateCustomChannel(daemon_->grpc_address(),
                                         grpc::InsecureChannelCredentials(), args);
    operator_ = v1::Operator::NewStub(channel_);
    scheduler_ = v1::Scheduler::NewStub(channel_);
  }

  struct Subscription {
    std::unique_ptr<grpc::ClientContext> context = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<grpc::ClientReader<v1::OperatorEvent>> reader;
  };
  Subscription Subscribe() {
    Subscription s;
    s.context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    s.reader = operator_->Subscribe(s.context.get(), v1::OperatorSubscribeRequest());
    return s;
  }

  struct Framework {
    std::unique_ptr<grpc::ClientContext> context = std::make_unique<grpc::ClientContext>();
    std::unique_ptr<grpc::ClientReader<v1::Event>> reader;
    std::string id;
  };
  // Subscribes a framework and waits for its SUBSCRIBED.
  Framework AddFramework(const std::string& name) {
    Framework f;
    v1::SubscribeRequest request;
    request.mutable_framework_info()->set_name(name);
    request.mutable_framework_info()->add_roles("*");
    f.reader = scheduler_->Subscribe(f.context.get(), request);
    v1::Event event;
    EXPECT_TRUE(f.reader->Read(&event));
    EXPECT_TRUE(event.has_subscribed());
    f.id = event.subscribed().framework_id();
    return f;
  }

  void TearDown() override {
    if (daemon_ != nullptr) {
      daemon_->Stop();
    }
  }

  std::unique_ptr<MasterDaemon> daemon_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Operator::Stub> operator_;
  std::unique_ptr<v1::Scheduler::Stub> scheduler_;
};

TEST_F(OperatorStreamTest, EventsArriveInOrderAndTheCapHolds) {
  StartDaemon(/*max_subscribers=*/1, /*max_queued=*/1000);
  Subscription first = Subscribe();
  v1::OperatorEvent event;
  ASSERT_TRUE(first.reader->Read(&event));
  EXPECT_EQ(event.type(), v1::OperatorEvent::SUBSCRIBED);

  Subscription second = Subscribe();
  EXPECT_FALSE(second.reader->Read(&event));
  grpc::Status refused = second.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("--max_operator_event_subscribers"));

  Framework a = AddFramework("a");
  Framework b = AddFramework("b");
  std::vector<std::string> added;
  while (added.size() < 2) {
    ASSERT_TRUE(first.reader->Read(&event));
    if (event.type() == v1::OperatorEvent::FRAMEWORK_ADDED) {
      added.push_back(event.framework_added().framework().info().id());
    }
  }
  EXPECT_THAT(added, ::testing::ElementsAre(a.id, b.id));

  // Once the first subscriber leaves, a new one is admitted (the close reaches the loop
  // asynchronously, so retry until a deadline).
  first.context->TryCancel();
  first.reader->Finish();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool admitted = false;
  while (!admitted && std::chrono::steady_clock::now() < deadline) {
    Subscription next = Subscribe();
    if (next.reader->Read(&event)) {
      admitted = event.type() == v1::OperatorEvent::SUBSCRIBED;
      next.context->TryCancel();
    }
    next.reader->Finish();
    if (!admitted) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_TRUE(admitted);
  a.context->TryCancel();
  b.context->TryCancel();
}

TEST_F(OperatorStreamTest, SlowConsumerIsDisconnected) {
  StartDaemon(/*max_subscribers=*/10, /*max_queued=*/2);
  Subscription slow = Subscribe();
  v1::OperatorEvent event;
  ASSERT_TRUE(slow.reader->Read(&event));
  ASSERT_EQ(event.type(), v1::OperatorEvent::SUBSCRIBED);

  // Each FRAMEWORK_ADDED carries a 256 KiB name: a few of them exceed the 64 KiB window the
  // unread stream allows, so the master's outbox for it fills.
  const std::string big(256 * 1024, 'x');
  std::vector<Framework> frameworks;
  for (int i = 0; i < 8; ++i) {
    frameworks.push_back(AddFramework(big));
  }
  int received = 0;
  while (slow.reader->Read(&event)) {
    ++received;
  }
  grpc::Status status = slow.reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("slow consumer"));
  EXPECT_LT(received, 8);

  // The master serves on, and a fresh subscriber gets the whole state.
  Subscription fresh = Subscribe();
  ASSERT_TRUE(fresh.reader->Read(&event));
  EXPECT_EQ(event.type(), v1::OperatorEvent::SUBSCRIBED);
  EXPECT_EQ(event.subscribed().state().frameworks_size(), 8);
  fresh.context->TryCancel();
  fresh.reader->Finish();
  for (Framework& f : frameworks) {
    f.context->TryCancel();
  }
}

TEST_F(OperatorStreamTest, MetricsOfALiveDaemon) {
  StartDaemon(10, 1000);
  Framework f = AddFramework("m");
  // A DECLINE of an unknown offer is fine and counted for the framework.
  v1::DeclineRequest decline;
  decline.mutable_header()->set_framework_id(f.id);
  v1::CallResponse response;
  {
    grpc::ClientContext context;
    scheduler_->Decline(&context, decline, &response);  // PermissionDenied: no stream id.
  }

  const std::string http = daemon_->http_address();
  httplib::Client client(http.substr(http.find("//") + 2));
  auto first = client.Get("/metrics");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200);
  EXPECT_THAT(first->get_header_value("Content-Type"), HasSubstr("text/plain"));
  EXPECT_THAT(first->body, HasSubstr("rz_master_event_loop_queue_depth "));
  EXPECT_THAT(first->body, HasSubstr("rz_master_event_loop_lag_seconds_count "));
  EXPECT_THAT(first->body, HasSubstr(absl::StrCat(
                               "rz_master_framework_calls_total{call=\"DECLINE\",framework_id=\"",
                               f.id, "\"} 1")));
  EXPECT_THAT(first->body, HasSubstr("rz_master_grpc_call_duration_seconds_count{code="
                                     "\"PERMISSION_DENIED\",method=\"Scheduler.Decline\"} 1"));

  auto snapshot = client.Get("/metrics/snapshot");
  ASSERT_TRUE(snapshot);
  EXPECT_EQ(snapshot->status, 200);
  nlohmann::json json = nlohmann::json::parse(snapshot->body);
  // The first scrape of /metrics was timed.
  EXPECT_EQ(json.at("rz_master_http_request_duration_seconds_count{code=\"200\",endpoint="
                    "\"/metrics\",method=\"GET\"}")
                .get<double>(),
            1);
  EXPECT_EQ(json.at("rz_master_frameworks{state=\"connected\"}").get<double>(), 1);

  grpc::ClientContext context;
  v1::Metrics metrics;
  ASSERT_TRUE(operator_->GetMetrics(&context, v1::GetMetricsRequest(), &metrics).ok());
  bool lag = false;
  for (const v1::MetricFamily& family : metrics.families()) {
    if (family.name() == "rz_master_event_loop_lag_seconds") {
      lag = true;
      EXPECT_EQ(family.type(), v1::MetricFamily::HISTOGRAM);
      EXPECT_GT(family.metrics(0).count(), 0u);
    }
  }
  EXPECT_TRUE(lag);
  f.context->TryCancel();
}

// GET /api/v1/events streams the same events as JSON lines, and the daemon stops with a stream
// open.
TEST_F(OperatorStreamTest, RestStreamSendsJsonLines) {
  StartDaemon(10, 1000);
  const std::string http = daemon_->http_address();
  httplib::Client client(http.substr(http.find("//") + 2));
  std::mutex mu;
  std::string received;
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    client.Get("/api/v1/events", [&](const char* data, size_t size) {
      std::lock_guard<std::mutex> lock(mu);
      received.append(data, size);
      return !stop.load();
    });
  });
  auto lines = [&] {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<nlohmann::json> out;
    for (absl::string_view line : absl::StrSplit(received, '\n', absl::SkipEmpty())) {
      out.push_back(nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false));
    }
    return out;
  };
  auto saw = [&](const std::string& type) {
    for (const nlohmann::json& line : lines()) {
      if (line.is_object() && line.value("type", "") == type) {
        return true;
      }
    }
    return false;
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!saw("SUBSCRIBED") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(saw("SUBSCRIBED"));
  Framework f = AddFramework("rest");
  while (!saw("FRAMEWORK_ADDED") && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(saw("FRAMEWORK_ADDED"));
  for (const nlohmann::json& line : lines()) {
    EXPECT_FALSE(line.is_discarded()) << "every line is one JSON event";
  }
  stop = true;
  daemon_.reset();  // Must not hang on the open stream.
  reader.join();
}

}  // namespace
}  // namespace rz::master
