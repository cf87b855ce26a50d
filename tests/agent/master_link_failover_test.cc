// A real AgentDaemon (fake containerizer) following the leading master between two fake masters
// on loopback gRPC (port 0): when the leader changes, the agent reregisters at the new one with
// its id and its running task. Both ways a change reaches the agent are covered: the detector
// asking the listed masters, and a leader that steps down ending the stream with the
// `rz-leader` hint.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "agent/agent_daemon.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rz/v1/agent.grpc.pb.h"
#include "testing/fake_containerizer.h"
#include "testing/fake_leadership.h"

namespace rz::agent {
namespace {

using ::rz::testing::FakeMasterServer;
using ::rz::testing::Leadership;
using ::rz::v1::AgentMessage;
using ::rz::v1::MasterMessage;

constexpr absl::Duration kDeadline = absl::Seconds(20);

// One master's AgentLink. While it leads it registers the agent as "agent-1", runs task "t1" of
// framework "fw-1" on the first registration it sees, and acknowledges every status update.
// When it no longer leads it ends the stream the next time the agent speaks (StepDown() makes
// it speak: a ping) with UNAVAILABLE and the hint, as a stepping-down master does, unless it
// keeps streams (a deposed leader that has not noticed). Refuses new streams while not leading.
class FakeAgentLinkMaster final : public v1::AgentLink::Service {
 public:
  FakeAgentLinkMaster(const Leadership& leadership, std::string name, bool run_task)
      : leadership_(leadership), name_(std::move(name)), run_task_(run_task) {}

  grpc::Status Connect(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<MasterMessage, AgentMessage>* stream) override {
    if (grpc::Status status = leadership_.Check(context, name_); !status.ok()) {
      return status;
    }
    {
      absl::MutexLock lock(&mu_);
      stream_ = stream;
    }
    grpc::Status result = grpc::Status::OK;
    AgentMessage message;
    while (stream->Read(&message)) {
      std::vector<MasterMessage> replies;
      {
        absl::MutexLock lock(&mu_);
        received_.push_back(message);
        if (message.has_register_()) {
          MasterMessage registered;
          registered.mutable_registered()->set_agent_id("agent-1");
          replies.push_back(registered);
          if (run_task_ && !task_sent_) {
            task_sent_ = true;
            replies.push_back(RunTask());
          }
        } else if (message.has_status_update()) {
          // Acknowledged at once, as the framework would, so the next update follows.
          const v1::TaskStatus& status = message.status_update().status();
          MasterMessage ack;
          ack.mutable_acknowledge()->set_framework_id(status.framework_id());
          ack.mutable_acknowledge()->set_task_id(status.task_id());
          ack.mutable_acknowledge()->set_uuid(status.uuid());
          replies.push_back(ack);
        }
      }
      for (const MasterMessage& reply : replies) {
        Write(reply);
      }
      if (!keep_streams_ && !leadership_.Leads(name_)) {
        result = leadership_.Refuse(context, name_);
        break;
      }
    }
    // No Write (StepDown's) may be under way once the handler returns.
    absl::MutexLock write_lock(&write_mu_);
    absl::MutexLock lock(&mu_);
    if (stream_ == stream) {
      stream_ = nullptr;
    }
    return result;
  }

  // Pings the agent on the open stream so that the handler sees the change of leader.
  void StepDown() {
    MasterMessage ping;
    ping.mutable_ping()->set_nonce(7);
    Write(ping);
  }

  void KeepStreamsWhenDeposed() {
    absl::MutexLock lock(&mu_);
    keep_streams_ = true;
  }

  // Waits until a message satisfying `want` has arrived; returns the first such message.
  template <typename F>
  std::optional<AgentMessage> WaitFor(F want) {
    const absl::Time until = absl::Now() + kDeadline;
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        for (const AgentMessage& message : received_) {
          if (want(message)) {
            return message;
          }
        }
      }
      if (absl::Now() >= until) {
        return std::nullopt;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  // Every message received, for failure messages.
  std::string Received() {
    absl::MutexLock lock(&mu_);
    std::string out;
    for (const AgentMessage& message : received_) {
      absl::StrAppend(&out, message.ShortDebugString(), "\n");
    }
    return out;
  }

  int registrations() {
    absl::MutexLock lock(&mu_);
    int count = 0;
    for (const AgentMessage& message : received_) {
      count += message.has_register_() ? 1 : 0;
    }
    return count;
  }

 private:
  static MasterMessage RunTask() {
    MasterMessage run;
    v1::FrameworkInfo* framework = run.mutable_run_task()->mutable_framework();
    framework->set_id("fw-1");
    framework->set_name("failover");
    v1::TaskInfo* task = run.mutable_run_task()->mutable_task();
    task->set_task_id("t1");
    task->set_name("t1");
    task->set_agent_id("agent-1");
    task->mutable_command()->set_shell(true);
    task->mutable_command()->set_value("run");
    ToProto(*Resources::Parse("cpus:1;mem:128"), task->mutable_resources());
    return run;
  }

  void Write(const MasterMessage& message) {
    absl::MutexLock write_lock(&write_mu_);
    grpc::ServerReaderWriter<MasterMessage, AgentMessage>* stream;
    {
      absl::MutexLock lock(&mu_);
      stream = stream_;
    }
    if (stream != nullptr) {
      stream->Write(message);
    }
  }

  const Leadership& leadership_;
  const std::string name_;
  const bool run_task_;
  absl::Mutex write_mu_;  // One Write at a time (the handler's and StepDown's).
  absl::Mutex mu_;
  grpc::ServerReaderWriter<MasterMessage, AgentMessage>* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool keep_streams_ ABSL_GUARDED_BY(mu_) = false;
  bool task_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<AgentMessage> received_ ABSL_GUARDED_BY(mu_);
};

bool IsRunningUpdateOfT1(const AgentMessage& message) {
  return message.has_status_update() && message.status_update().status().task_id() == "t1" &&
         message.status_update().status().state() == v1::TASK_RUNNING;
}

bool IsReregistrationWithT1(const AgentMessage& message) {
  if (!message.has_register_() || message.register_().info().id() != "agent-1") {
    return false;
  }
  for (const v1::Task& task : message.register_().tasks()) {
    if (task.task_id() == "t1" && task.framework_id() == "fw-1") {
      return true;
    }
  }
  return false;
}

class MasterLinkFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rz-link-failover-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    work_dir_ = dir;
    leadership_.Lead("m1");
  }

  void TearDown() override {
    if (agent_ != nullptr) {
      agent_->Stop();
      agent_.reset();
    }
    leadership_.Lead("");
    server1_.Shutdown();
    server2_.Shutdown();
    std::error_code error;
    std::filesystem::remove_all(work_dir_, error);
  }

  absl::Status StartAgent(const std::string& master) {
    agent_ = std::make_unique<AgentDaemon>(
        AgentDaemonOptions{.master = master,
                           .ip = "127.0.0.1",
                           .hostname = "127.0.0.1",
                           .http_port = 0,
                           .work_dir = work_dir_,
                           .resources = *Resources::Parse("cpus:4;mem:4096"),
                           .registration_backoff_max = absl::Milliseconds(200),
                           .default_task_user = "",
                           .usage_interval = absl::Hours(1),
                           .checkpoint_sync = false,
                           .containerizer = &containerizer_});
    return agent_->Start();
  }

  std::string List() const { return absl::StrCat(server1_.address(), ",", server2_.address()); }

  Leadership leadership_;
  FakeAgentLinkMaster m1_{leadership_, "m1", /*run_task=*/true};
  FakeAgentLinkMaster m2_{leadership_, "m2", /*run_task=*/false};
  FakeMasterServer server1_{leadership_, "m1", {&m1_}};
  FakeMasterServer server2_{leadership_, "m2", {&m2_}};
  std::string work_dir_;
  rz::testing::ClusterContainerizer containerizer_;
  std::unique_ptr<AgentDaemon> agent_;
};

TEST_F(MasterLinkFailoverTest, ReregistersWithItsTasksAtTheLeaderTheDetectorFinds) {
  // m1 has not noticed it was deposed: only the detector, asking the list, can tell.
  m1_.KeepStreamsWhenDeposed();
  ASSERT_TRUE(StartAgent(List()).ok());
  ASSERT_TRUE(m1_.WaitFor(IsRunningUpdateOfT1).has_value()) << m1_.Received();
  EXPECT_EQ(m2_.registrations(), 0);

  leadership_.Lead("m2");
  std::optional<AgentMessage> reregistration = m2_.WaitFor(IsReregistrationWithT1);
  ASSERT_TRUE(reregistration.has_value());
  EXPECT_EQ(reregistration->register_().tasks_size(), 1);
  EXPECT_EQ(reregistration->register_().tasks(0).state(), v1::TASK_RUNNING);
  ASSERT_EQ(reregistration->register_().frameworks_size(), 1);
  EXPECT_EQ(reregistration->register_().frameworks(0).id(), "fw-1");
  // The task is not launched again anywhere.
  EXPECT_EQ(containerizer_.launches(), 1);
}

TEST_F(MasterLinkFailoverTest, FollowsTheHintOfALeaderThatStepsDown) {
  // Only m1 is named: the agent can learn of m2 only from m1's hint.
  ASSERT_TRUE(StartAgent(server1_.address()).ok());
  ASSERT_TRUE(m1_.WaitFor(IsRunningUpdateOfT1).has_value()) << m1_.Received();

  leadership_.Lead("m2");
  m1_.StepDown();
  std::optional<AgentMessage> reregistration = m2_.WaitFor(IsReregistrationWithT1);
  ASSERT_TRUE(reregistration.has_value());
  EXPECT_EQ(reregistration->register_().tasks(0).state(), v1::TASK_RUNNING);
  EXPECT_EQ(containerizer_.launches(), 1);
}

TEST_F(MasterLinkFailoverTest, ReregistersAtTheFirstLeaderWhenItComesBack) {
  ASSERT_TRUE(StartAgent(List()).ok());
  ASSERT_TRUE(m1_.WaitFor(IsRunningUpdateOfT1).has_value()) << m1_.Received();
  leadership_.Lead("m2");
  m1_.StepDown();
  ASSERT_TRUE(m2_.WaitFor(IsReregistrationWithT1).has_value());
  const int at_m1 = m1_.registrations();

  // And back: m2 steps down in favour of m1.
  leadership_.Lead("m1");
  m2_.StepDown();
  ASSERT_GE(at_m1, 1);
  const absl::Time until = absl::Now() + kDeadline;
  while (m1_.registrations() <= at_m1 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GT(m1_.registrations(), at_m1);
}

TEST_F(MasterLinkFailoverTest, AMalformedMasterSpecFailsTheStart) {
  const absl::Status status = StartAgent("127.0.0.1:5050,nonsense");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("--master"));
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("nonsense"));
  agent_.reset();
}

}  // namespace
}  // namespace rz::agent
