#include "testing/in_process_cluster.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/resources_proto.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace rz::testing {

InProcessCluster::InProcessCluster(InProcessClusterOptions options)
    : options_(std::move(options)) {}

InProcessCluster::~InProcessCluster() {
  for (AgentSlot& slot : agents_) {
    slot.daemon.reset();
  }
  master_.reset();
  agents_.clear();  // Containerizers go after the agents that use them.
  if (!root_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }
}

agent::AgentDaemonOptions InProcessCluster::AgentOptions(const AgentSlot& slot) const {
  return agent::AgentDaemonOptions{.master = master_->grpc_address(),
                                   .ip = "127.0.0.1",
                                   .hostname = "127.0.0.1",
                                   .http_port = 0,
                                   .work_dir = slot.work_dir,
                                   .resources = *Resources::Parse(options_.agent_resources),
                                   .default_kill_grace_period = absl::Seconds(1),
                                   .registration_backoff_max = absl::Milliseconds(200),
                                   .default_task_user = "",
                                   .usage_interval = absl::Hours(1),
                                   .checkpoint_sync = false,
                                   .containerizer = slot.containerizer.get()};
}

absl::Status InProcessCluster::Start() {
  char dir[] = "/tmp/rz-cluster-XXXXXX";
  if (mkdtemp(dir) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  root_ = dir;
  chmod(dir, 0755);

  master::MasterDaemonOptions master_options;
  master_options.ip = "127.0.0.1";
  master_options.hostname = "127.0.0.1";
  master_options.port = 0;
  master_options.http_port = 0;
  master_options.registry = master::RegistryBackend::kInMemory;
  master_options.master = options_.master;
  if (options_.manual_clock) {
    master_options.clock = &clock_;
  }
  // The real standalone registry, so that a test can restart the master on it.
  master_options.registry = master::RegistryBackend::kLevelDb;
  master_options.work_dir = absl::StrCat(root_, "/master");
  std::filesystem::create_directories(master_options.work_dir);
  master_options_ = master_options;
  master_ = std::make_unique<master::MasterDaemon>(master_options);
  if (absl::Status status = master_->Start(); !status.ok()) {
    return status;
  }

  auto port_of = [](const std::string& address) {
    int port = 0;
    (void)absl::SimpleAtoi(address.substr(address.rfind(':') + 1), &port);
    return port;
  };
  grpc_port_ = port_of(master_->grpc_address());
  http_port_ = port_of(master_->http_address());

  for (int i = 0; i < options_.agents; ++i) {
    AgentSlot& slot = agents_.emplace_back();
    slot.work_dir = absl::StrCat(root_, "/agent-", i);
    std::filesystem::create_directories(slot.work_dir);
    slot.containerizer = std::make_unique<ClusterContainerizer>();
    slot.daemon = std::make_unique<agent::AgentDaemon>(AgentOptions(slot));
    if (absl::Status status = slot.daemon->Start(); !status.ok()) {
      return status;
    }
  }
  const bool registered = WaitFor([&] {
    std::shared_ptr<const v1::State> state = this->state();
    int count = 0;
    for (const v1::AgentState& agent : state->agents()) {
      count += agent.status() == v1::AgentState::REGISTERED ? 1 : 0;
    }
    return count == options_.agents;
  });
  return registered ? absl::OkStatus()
                    : absl::DeadlineExceededError("agents did not register in time");
}

absl::Status InProcessCluster::RestartMaster() {
  master_.reset();
  // The new master listens on the same ports so that agents and schedulers find it again.
  master::MasterDaemonOptions options = master_options_;
  options.port = grpc_port_;
  options.http_port = http_port_;
  master_ = std::make_unique<master::MasterDaemon>(options);
  return master_->Start();
}

void InProcessCluster::AdvanceMasterClock(absl::Duration d) {
  clock_.Advance(d);
  // Timers now due run in the loop batch after this wake-up; the barrier runs in the next.
  OnMasterLoop([] {});
  OnMasterLoop([] {});
}

void InProcessCluster::OnMasterLoop(std::function<void()> f) {
  absl::Notification done;
  master_->loop().Post([&] {
    f();
    done.Notify();
  });
  done.WaitForNotificationWithTimeout(kClusterDeadline);
}

std::string InProcessCluster::agent_id(int i) const {
  if (agents_[i].daemon == nullptr) {
    return agents_[i].last_id;
  }
  std::string id = agents_[i].daemon->state()->info().id();
  return id.empty() ? agents_[i].last_id : id;
}

void InProcessCluster::StopAgent(int i) {
  agents_[i].last_id = agent_id(i);
  agents_[i].daemon.reset();
  agents_[i].containerizer->Detach();
}

absl::Status InProcessCluster::RestartAgent(int i) {
  StopAgent(i);
  AgentSlot& slot = agents_[i];
  slot.daemon = std::make_unique<agent::AgentDaemon>(AgentOptions(slot));
  if (absl::Status status = slot.daemon->Start(); !status.ok()) {
    return status;
  }
  const bool registered = WaitFor([&] {
    const std::string id = agent_id(i);
    const auto held = state();  // Keeps the snapshot alive for the loop.
    for (const v1::AgentState& agent : held->agents()) {
      if (agent.info().id() == id) {
        return agent.status() == v1::AgentState::REGISTERED;
      }
    }
    return false;
  });
  return registered ? absl::OkStatus()
                    : absl::DeadlineExceededError("agent did not reregister in time");
}

std::unique_ptr<scheduler::SchedulerClient> InProcessCluster::Subscribe(
    v1::FrameworkInfo info, scheduler::SchedulerClientOptions options) {
  if (info.name().empty()) {
    info.set_name("test");
  }
  auto client = std::make_unique<scheduler::SchedulerClient>(master_->grpc_address(),
                                                             std::move(info), std::move(options));
  absl::Status status = client->Subscribe(kClusterDeadline);
  if (!status.ok()) {
    ADD_FAILURE() << "subscription refused: " << status;
    return nullptr;
  }
  return client;
}

std::pair<int, std::string> InProcessCluster::HttpGet(const std::string& path) const {
  httplib::Client client(master_->http_address());
  httplib::Result result = client.Get(path);
  if (!result) {
    return {0, httplib::to_string(result.error())};
  }
  return {result->status, result->body};
}

std::pair<int, std::string> InProcessCluster::HttpPost(const std::string& path,
                                                       const std::string& body,
                                                       const std::string& method) const {
  httplib::Client client(master_->http_address());
  httplib::Result result = method == "PUT" ? client.Put(path, body, "application/json")
                                           : client.Post(path, body, "application/json");
  if (!result) {
    return {0, httplib::to_string(result.error())};
  }
  return {result->status, result->body};
}

std::vector<v1::Offer> NextOffers(scheduler::SchedulerClient& client, absl::Duration deadline) {
  std::optional<v1::Event> event = NextEventWhere(
      client, [](const v1::Event& e) { return e.offers().offers_size() > 0; }, deadline);
  if (!event.has_value()) {
    return {};
  }
  return {event->offers().offers().begin(), event->offers().offers().end()};
}

std::optional<v1::TaskStatus> NextUpdate(scheduler::SchedulerClient& client,
                                         const std::string& task_id, bool ack,
                                         absl::Duration deadline) {
  std::optional<v1::Event> event = NextEventWhere(
      client,
      [&](const v1::Event& e) {
        return e.has_update() && e.update().status().task_id() == task_id;
      },
      deadline);
  if (!event.has_value()) {
    return std::nullopt;
  }
  if (ack) {
    EXPECT_TRUE(client.Acknowledge(event->update().status()).ok());
  }
  return event->update().status();
}

v1::TaskInfo ClusterTask(const std::string& id, const std::string& resources,
                         const std::string& command) {
  v1::TaskInfo task;
  task.set_task_id(id);
  task.set_name(id);
  task.mutable_command()->set_shell(true);
  task.mutable_command()->set_value(command);
  ToProto(*Resources::Parse(resources), task.mutable_resources());
  return task;
}

}  // namespace rz::testing
