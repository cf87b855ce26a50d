// MasterTest: the fixture of the master state-machine tests. The Master runs on a
// ManualEventLoop, schedulers and agents are capturing outboxes, time is a manual clock.
// No gRPC, no threads, no sleeps. Each tests/master/*_test.cc file includes this.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/resources.h"
#include "common/resources_proto.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "master/master.h"
#include "testing/fake_registry_store.h"
#include "testing/manual_event_loop.h"

namespace rz::master {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

template <typename T>
class CapturingOutbox final : public Outbox<T> {
 public:
  void Send(T message) override {
    if (!closed) {
      messages.push_back(std::move(message));
    }
  }
  void Close(absl::Status status) override {
    if (!closed) {
      closed = true;
      close_status = status;
    }
  }
  std::vector<T> Take() { return std::exchange(messages, {}); }

  std::vector<T> messages;
  bool closed = false;
  absl::Status close_status;
};

using SchedulerStream = CapturingOutbox<v1::Event>;
using AgentStream = CapturingOutbox<v1::MasterMessage>;

inline Resources Res(const std::string& text) { return *Resources::Parse(text); }

class MasterTest : public ::testing::Test {
 protected:
  MasterTest() : master_(loop_, Options(), Info(), registry_) {
    loop_.Post([this] { master_.Start(Info()); });
    loop_.RunUntilIdle();
  }

  static MasterOptions Options() {
    MasterOptions options;
    options.offer_timeout = absl::Seconds(30);
    // Longer than any other timer these tests drive, so heartbeats stay out of their way.
    options.heartbeat_interval = absl::Seconds(100);
    return options;
  }
  static v1::MasterInfo Info() {
    v1::MasterInfo info;
    info.set_id("m1");
    info.set_hostname("127.0.0.1");
    return info;
  }

  struct Agent {
    StreamId link;
    std::shared_ptr<AgentStream> stream;
    std::string id;
  };

  Agent AddAgent(const std::string& resources, const std::string& hostname = "h1") {
    Agent agent{StreamId(absl::StrCat("link-", ++links_)), std::make_shared<AgentStream>(), ""};
    v1::AgentMessage message;
    v1::AgentInfo* info = message.mutable_register_()->mutable_info();
    info->set_hostname(hostname);
    info->set_http_address("http://" + hostname + ":5081");
    ToProto(Res(resources), info->mutable_resources());
    master_.HandleAgentMessage(agent.link, message, agent.stream);
    loop_.RunUntilIdle();
    std::vector<v1::MasterMessage> replies = agent.stream->Take();
    EXPECT_THAT(replies, SizeIs(1));
    if (!replies.empty()) {
      EXPECT_TRUE(replies[0].has_registered());
      agent.id = replies[0].registered().agent_id();
    }
    return agent;
  }

  struct Scheduler {
    StreamId stream_id;
    std::shared_ptr<SchedulerStream> stream;
    std::string framework_id;
    v1::CallHeader header() const {
      v1::CallHeader h;
      h.set_framework_id(framework_id);
      h.set_stream_id(stream_id.value());
      return h;
    }
  };

  Scheduler Subscribe(const std::string& role = "*", const std::string& id = "",
                      double failover_timeout = 0) {
    Scheduler scheduler{StreamId(absl::StrCat("stream-", ++streams_)),
                        std::make_shared<SchedulerStream>(), ""};
    v1::SubscribeRequest request;
    request.mutable_framework_info()->set_name("test");
    request.mutable_framework_info()->set_id(id);
    request.mutable_framework_info()->add_roles(role);
    request.mutable_framework_info()->set_failover_timeout_seconds(failover_timeout);
    master_.Subscribe(request, scheduler.stream_id, scheduler.stream);
    loop_.RunUntilIdle();
    if (!scheduler.stream->messages.empty() && scheduler.stream->messages[0].has_subscribed()) {
      scheduler.framework_id = scheduler.stream->messages[0].subscribed().framework_id();
      scheduler.stream->messages.erase(scheduler.stream->messages.begin());
    }
    return scheduler;
  }

  static std::vector<v1::Offer> Offers(std::vector<v1::Event> events) {
    std::vector<v1::Offer> offers;
    for (const v1::Event& event : events) {
      for (const v1::Offer& offer : event.offers().offers()) {
        offers.push_back(offer);
      }
    }
    return offers;
  }
  static std::vector<v1::TaskStatus> Updates(const std::vector<v1::Event>& events) {
    std::vector<v1::TaskStatus> updates;
    for (const v1::Event& event : events) {
      if (event.has_update()) {
        updates.push_back(event.update().status());
      }
    }
    return updates;
  }

  static v1::TaskInfo Task(const std::string& id, const std::string& resources) {
    v1::TaskInfo task;
    task.set_task_id(id);
    task.set_name(id);
    task.mutable_command()->set_shell(true);
    task.mutable_command()->set_value("true");
    ToProto(Res(resources), task.mutable_resources());
    return task;
  }

  absl::Status Launch(const Scheduler& s, std::vector<std::string> offer_ids,
                      std::vector<v1::TaskInfo> tasks, double refuse_seconds = 5,
                      bool group = false) {
    v1::AcceptRequest request;
    *request.mutable_header() = s.header();
    for (const std::string& id : offer_ids) {
      request.add_offer_ids(id);
    }
    v1::Operation* op = request.add_operations();
    op->set_type(group ? v1::Operation::LAUNCH_GROUP : v1::Operation::LAUNCH);
    for (v1::TaskInfo& task : tasks) {
      *(group ? op->mutable_launch_group()->add_tasks() : op->mutable_launch()->add_tasks()) =
          std::move(task);
    }
    request.mutable_filters()->set_refuse_seconds(refuse_seconds);
    return Act(&Master::Accept, request);
  }

  void AgentUpdate(const Agent& agent, const std::string& framework_id, const std::string& task_id,
                   v1::TaskState state, const std::string& uuid) {
    v1::AgentMessage message;
    v1::TaskStatus* status = message.mutable_status_update()->mutable_status();
    status->set_framework_id(framework_id);
    status->set_task_id(task_id);
    status->set_state(state);
    status->set_source(v1::TaskStatus::SOURCE_AGENT);
    status->set_uuid(uuid);
    master_.HandleAgentMessage(agent.link, message, agent.stream);
    loop_.RunUntilIdle();
  }

  // Runs an action that is stored before it is applied (weights, quota, operator actions,
  // ACCEPT) and the registry writes it waits for; returns its outcome.
  template <typename Request>
  absl::Status Act(Master& master, void (Master::*method)(const Request&, Master::Completion),
                   const Request& request) {
    std::optional<absl::Status> result;
    (master.*method)(request, [&result](absl::Status status) { result = status; });
    loop_.RunUntilIdle();
    return result.value_or(absl::InternalError("the action did not complete"));
  }
  template <typename Request>
  absl::Status Act(void (Master::*method)(const Request&, Master::Completion),
                   const Request& request) {
    return Act(master_, method, request);
  }
  absl::Status UpdateWeights(const v1::UpdateWeightsRequest& request) {
    return Act(&Master::UpdateWeights, request);
  }
  absl::Status UpdateQuota(const v1::UpdateQuotaRequest& request) {
    return Act(&Master::UpdateQuota, request);
  }

  testing::ManualEventLoop loop_;
  // The registry writes on the master's own loop here, so RunUntilIdle() also completes its
  // writes; tests/master/master_registry_test.cc holds them on a separate worker loop.
  FakeRegistryStore store_;
  Registry registry_{loop_, loop_, store_};
  Master master_;
  int links_ = 0;
  int streams_ = 0;
};

}  // namespace rz::master
