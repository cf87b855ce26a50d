// SchedulerClient against a fake Scheduler service on a real loopback gRPC server (port 0):
// subscription outcomes, event delivery (queue and callback), call headers, and the synthetic
// ERROR event for a stream that ends.
#include "scheduler_api/scheduler_client.h"

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rz/v1/scheduler.grpc.pb.h"

namespace rz::scheduler {
namespace {

using ::testing::HasSubstr;

// Answers Subscribe with SUBSCRIBED (or ERROR, if told to refuse), then streams whatever the
// test pushes until the test ends the stream; records every unary call. Thread-safe.
class FakeScheduler final : public rz::v1::Scheduler::Service {
 public:
  grpc::Status Subscribe(grpc::ServerContext* context, const rz::v1::SubscribeRequest* request,
                         grpc::ServerWriter<rz::v1::Event>* writer) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      subscribed_name_ = request->framework_info().name();
    }
    rz::v1::Event first;
    first.set_sequence(1);
    if (silent_) {
      std::unique_lock<std::mutex> lock(mu_);
      while (!context->IsCancelled() && !end_.has_value()) {
        cv_.wait_for(lock, std::chrono::milliseconds(10));
      }
      return grpc::Status::CANCELLED;
    }
    if (!refusal_.empty()) {
      first.mutable_error()->set_message(refusal_);
      writer->Write(first);
      return grpc::Status::OK;
    }
    first.mutable_subscribed()->set_framework_id("fw-1");
    first.mutable_subscribed()->set_stream_id("stream-1");
    writer->Write(first);
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait_for(lock, std::chrono::milliseconds(10));
      while (!outbox_.empty()) {
        rz::v1::Event event = std::move(outbox_.front());
        outbox_.pop_front();
        writer->Write(event);
      }
      if (end_.has_value()) {
        return *end_;
      }
      if (context->IsCancelled()) {
        return grpc::Status::CANCELLED;
      }
    }
  }

  grpc::Status Decline(grpc::ServerContext*, const rz::v1::DeclineRequest* request,
                       rz::v1::CallResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    declines_.push_back(*request);
    return grpc::Status::OK;
  }

  grpc::Status Acknowledge(grpc::ServerContext*, const rz::v1::AcknowledgeRequest* request,
                           rz::v1::CallResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    acknowledgements_.push_back(*request);
    return grpc::Status::OK;
  }

  grpc::Status Kill(grpc::ServerContext*, const rz::v1::KillRequest*,
                    rz::v1::CallResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown task 't9'");
  }

  void Push(rz::v1::Event event) {
    std::lock_guard<std::mutex> lock(mu_);
    outbox_.push_back(std::move(event));
    cv_.notify_all();
  }

  void EndStream(grpc::Status status) {
    std::lock_guard<std::mutex> lock(mu_);
    end_ = std::move(status);
    cv_.notify_all();
  }

  void RefuseWith(std::string message) { refusal_ = std::move(message); }
  void StaySilent() { silent_ = true; }

  std::vector<rz::v1::DeclineRequest> declines() {
    std::lock_guard<std::mutex> lock(mu_);
    return declines_;
  }
  std::vector<rz::v1::AcknowledgeRequest> acknowledgements() {
    std::lock_guard<std::mutex> lock(mu_);
    return acknowledgements_;
  }
  std::string subscribed_name() {
    std::lock_guard<std::mutex> lock(mu_);
    return subscribed_name_;
  }

 private:
  std::string refusal_;  // Set before the server starts, as is silent_.
  bool silent_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<rz::v1::Event> outbox_;
  std::optional<grpc::Status> end_;
  std::vector<rz::v1::DeclineRequest> declines_;
  std::vector<rz::v1::AcknowledgeRequest> acknowledgements_;
  std::string subscribed_name_;
};

class SchedulerClientTest : public ::testing::Test {
 protected:
  void StartServer() {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = absl::StrCat("127.0.0.1:", port);
  }

  void TearDown() override {
    client_.reset();  // Cancels the stream, so the server's handler returns.
    if (server_ != nullptr) {
      service_.EndStream(grpc::Status::OK);
      server_->Shutdown();
    }
  }

  SchedulerClient& MakeClient(SchedulerClientOptions options = {}) {
    rz::v1::FrameworkInfo info;
    info.set_name("test-framework");
    client_ = std::make_unique<SchedulerClient>(address_, info, std::move(options));
    return *client_;
  }

  static rz::v1::Event OfferEvent(const std::string& offer_id) {
    rz::v1::Event event;
    event.mutable_offers()->add_offers()->set_id(offer_id);
    return event;
  }

  FakeScheduler service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<SchedulerClient> client_;
};

TEST_F(SchedulerClientTest, SubscribeRecordsTheIdsAndQueuesEventsInOrder) {
  StartServer();
  SchedulerClient& client = MakeClient();
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());
  EXPECT_EQ(client.framework_id(), FrameworkId("fw-1"));
  EXPECT_EQ(client.stream_id(), StreamId("stream-1"));
  EXPECT_EQ(service_.subscribed_name(), "test-framework");

  service_.Push(OfferEvent("o1"));
  service_.Push(OfferEvent("o2"));
  std::optional<rz::v1::Event> subscribed = client.NextEvent(absl::Seconds(10));
  ASSERT_TRUE(subscribed.has_value());
  EXPECT_TRUE(subscribed->has_subscribed());
  std::optional<rz::v1::Event> first = client.NextEvent(absl::Seconds(10));
  std::optional<rz::v1::Event> second = client.NextEvent(absl::Seconds(10));
  ASSERT_TRUE(first.has_value() && second.has_value());
  EXPECT_EQ(first->offers().offers(0).id(), "o1");
  EXPECT_EQ(second->offers().offers(0).id(), "o2");
  EXPECT_FALSE(client.NextEvent(absl::Milliseconds(20)).has_value());
}

TEST_F(SchedulerClientTest, UnaryCallsCarryTheFrameworkAndStreamIds) {
  StartServer();
  SchedulerClient& client = MakeClient();
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());

  ASSERT_TRUE(client.Decline({OfferId("o1"), OfferId("o2")}, 30).ok());

  std::vector<rz::v1::DeclineRequest> declines = service_.declines();
  ASSERT_EQ(declines.size(), 1u);
  EXPECT_EQ(declines[0].header().framework_id(), "fw-1");
  EXPECT_EQ(declines[0].header().stream_id(), "stream-1");
  EXPECT_THAT(declines[0].offer_ids(), ::testing::ElementsAre("o1", "o2"));
  EXPECT_EQ(declines[0].filters().refuse_seconds(), 30);
}

TEST_F(SchedulerClientTest, AcknowledgeSendsOnlyStatusesWithAUuid) {
  StartServer();
  SchedulerClient& client = MakeClient();
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());
  rz::v1::TaskStatus without_uuid;
  without_uuid.set_task_id("t1");
  rz::v1::TaskStatus with_uuid;
  with_uuid.set_task_id("t2");
  with_uuid.set_agent_id("a1");
  with_uuid.set_uuid("0123456789abcdef");

  ASSERT_TRUE(client.Acknowledge(without_uuid).ok());
  ASSERT_TRUE(client.Acknowledge(with_uuid).ok());

  std::vector<rz::v1::AcknowledgeRequest> acks = service_.acknowledgements();
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].task_id(), "t2");
  EXPECT_EQ(acks[0].agent_id(), "a1");
  EXPECT_EQ(acks[0].uuid(), "0123456789abcdef");
}

TEST_F(SchedulerClientTest, CallErrorsKeepTheirCodeAndNameTheMaster) {
  StartServer();
  SchedulerClient& client = MakeClient();
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());

  absl::Status status = client.Kill(TaskId("t9"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(status.message()), HasSubstr("unknown task 't9'"));
  EXPECT_THAT(std::string(status.message()), HasSubstr(address_));
}

TEST_F(SchedulerClientTest, CallsBeforeSubscribeFailWithFailedPrecondition) {
  StartServer();
  SchedulerClient& client = MakeClient();
  EXPECT_EQ(client.Decline({OfferId("o1")}).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(service_.declines().empty());
}

TEST_F(SchedulerClientTest, SubscribeToAnUnreachableMasterIsUnavailableNamingTheAddress) {
  address_ = "127.0.0.1:1";  // Nothing listens on port 1.
  SchedulerClient& client = MakeClient();
  absl::Status status = client.Subscribe(absl::Seconds(10));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("127.0.0.1:1"));
}

TEST_F(SchedulerClientTest, SubscribeGivesUpWhenTheMasterDoesNotAnswerInTime) {
  service_.StaySilent();
  StartServer();
  SchedulerClient& client = MakeClient();
  absl::Status status = client.Subscribe(absl::Milliseconds(200));
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(address_));
  EXPECT_EQ(client.Subscribe(absl::Seconds(1)).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerClientTest, RefusedSubscriptionReturnsTheMastersMessage) {
  service_.RefuseWith("role 'secret' is not allowed");
  StartServer();
  SchedulerClient& client = MakeClient();
  absl::Status status = client.Subscribe(absl::Seconds(10));
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("role 'secret' is not allowed"));
  EXPECT_TRUE(client.framework_id().empty());
}

TEST_F(SchedulerClientTest, StreamThatEndsIsReportedAsASyntheticErrorEvent) {
  StartServer();
  SchedulerClient& client = MakeClient();
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());
  ASSERT_TRUE(client.NextEvent(absl::Seconds(10)).has_value());  // SUBSCRIBED.

  service_.EndStream(grpc::Status(grpc::StatusCode::UNAVAILABLE, "master is going away"));

  std::optional<rz::v1::Event> event = client.NextEvent(absl::Seconds(10));
  ASSERT_TRUE(event.has_value());
  ASSERT_TRUE(event->has_error()) << event->ShortDebugString();
  EXPECT_THAT(event->error().message(), HasSubstr("master is going away"));
}

TEST_F(SchedulerClientTest, CallbackReceivesEventsInsteadOfTheQueue) {
  StartServer();
  std::mutex mu;
  std::condition_variable cv;
  std::vector<rz::v1::Event> seen;
  SchedulerClientOptions options;
  options.on_event = [&](const rz::v1::Event& event) {
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(event);
    cv.notify_all();
  };
  SchedulerClient& client = MakeClient(std::move(options));
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());

  service_.Push(OfferEvent("o1"));

  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return seen.size() >= 2; }));
  EXPECT_TRUE(seen[0].has_subscribed());
  EXPECT_EQ(seen[1].offers().offers(0).id(), "o1");
  lock.unlock();
  EXPECT_FALSE(client.NextEvent(absl::Milliseconds(10)).has_value());
}

TEST_F(SchedulerClientTest, CloseStopsDeliveryWithoutASyntheticError) {
  StartServer();
  SchedulerClient& client = MakeClient();
  ASSERT_TRUE(client.Subscribe(absl::Seconds(10)).ok());
  ASSERT_TRUE(client.NextEvent(absl::Seconds(10)).has_value());  // SUBSCRIBED.

  client.Close();
  client.Close();  // Idempotent.

  EXPECT_FALSE(client.NextEvent(absl::Milliseconds(50)).has_value());
}

}  // namespace
}  // namespace rz::scheduler
