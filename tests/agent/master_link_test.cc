// MasterLink against an in-process fake master over real gRPC on loopback (port 0).
#include "agent/master_link.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/thread_event_loop.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rz/v1/agent.grpc.pb.h"

namespace rz::agent {
namespace {

using ::rz::v1::AgentMessage;
using ::rz::v1::MasterMessage;

constexpr absl::Duration kDeadline = absl::Seconds(20);

// Registers every stream, pings it, and ends the first stream with an error after the pong.
class FakeMaster final : public rz::v1::AgentLink::Service {
 public:
  grpc::Status Connect(grpc::ServerContext* /*context*/,
                       grpc::ServerReaderWriter<MasterMessage, AgentMessage>* stream) override {
    int stream_number = 0;
    {
      absl::MutexLock lock(&mu_);
      stream_number = ++streams_;
    }
    AgentMessage message;
    while (stream->Read(&message)) {
      absl::MutexLock lock(&mu_);
      received_.push_back({stream_number, message});
      if (message.has_register_()) {
        MasterMessage registered;
        registered.mutable_registered()->set_agent_id("a1");
        MasterMessage ping;
        ping.mutable_ping()->set_nonce(stream_number);
        mu_.Unlock();
        stream->Write(registered);
        stream->Write(ping);
        mu_.Lock();
      } else if (message.has_pong() && stream_number == 1) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "going away");
      }
    }
    return grpc::Status::OK;
  }

  struct Received {
    int stream;
    AgentMessage message;
  };

  // Waits until `count` messages have arrived; returns them.
  std::vector<Received> WaitForMessages(size_t count) {
    absl::MutexLock lock(&mu_);
    wanted_ = count;
    mu_.AwaitWithTimeout(absl::Condition(this, &FakeMaster::HasWanted), kDeadline);
    return received_;
  }

 private:
  absl::Mutex mu_;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
  size_t wanted_ ABSL_GUARDED_BY(mu_) = 0;

  bool HasWanted() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return received_.size() >= wanted_; }
};

TEST(MasterLinkTest, RegistersFirstOnEveryStreamAndRedialsAfterTheStreamEnds) {
  FakeMaster master;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&master);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_GT(port, 0);

  ThreadEventLoop loop;
  loop.Start();
  MasterLink link({.master_address = "127.0.0.1:" + std::to_string(port),
                   .initial_backoff = absl::Milliseconds(10),
                   .max_backoff = absl::Milliseconds(50)},
                  loop);
  std::string agent_id;  // Loop-only, like the agent's state.
  link.Start({.on_connected =
                  [&] {
                    AgentMessage early;
                    early.mutable_pong()->set_nonce(999);  // Before Register: must be dropped.
                    link.Send(early);
                    AgentMessage reg;
                    reg.mutable_register_()->mutable_info()->set_id(agent_id);
                    link.Send(reg);
                  },
              .on_message =
                  [&](MasterMessage message) {
                    if (message.has_registered()) {
                      agent_id = message.registered().agent_id();
                    } else if (message.has_ping()) {
                      AgentMessage pong;
                      pong.mutable_pong()->set_nonce(message.ping().nonce());
                      link.Send(pong);
                    }
                  },
              .on_disconnected = [] {}});

  std::vector<FakeMaster::Received> received = master.WaitForMessages(4);
  link.Stop();
  server->Shutdown();
  loop.Stop();

  ASSERT_EQ(received.size(), 4u);
  EXPECT_EQ(received[0].stream, 1);
  ASSERT_TRUE(received[0].message.has_register_());
  EXPECT_EQ(received[0].message.register_().info().id(), "");
  EXPECT_EQ(received[1].stream, 1);
  ASSERT_TRUE(received[1].message.has_pong());
  EXPECT_EQ(received[1].message.pong().nonce(), 1u);
  // The second stream reregisters with the id the first one assigned.
  EXPECT_EQ(received[2].stream, 2);
  ASSERT_TRUE(received[2].message.has_register_());
  EXPECT_EQ(received[2].message.register_().info().id(), "a1");
  EXPECT_EQ(received[3].stream, 2);
  ASSERT_TRUE(received[3].message.has_pong());
  EXPECT_EQ(received[3].message.pong().nonce(), 2u);
}

}  // namespace
}  // namespace rz::agent
