#include "agent/agent_daemon.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "agent/http_api.h"
#include "common/file_util.h"
#include "common/host.h"
#include "common/version.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace rz::agent {
AgentDaemon::AgentDaemon(AgentDaemonOptions options)
    : options_(std::move(options)), launcher_(PosixLauncher::CurrentProcessOptions()) {}

AgentDaemon::~AgentDaemon() { Stop(); }

absl::Status AgentDaemon::Start() {
  const std::string hostname = options_.hostname.empty() ? LocalHostname() : options_.hostname;
  RegisterHttpHandlers(http_, snapshot_, options_.work_dir);
  absl::StatusOr<int> port = http_.Start(options_.ip, options_.http_port);
  if (!port.ok()) {
    return port.status();
  }
  http_address_ = absl::StrCat("http://", hostname, ":", *port);

  link_ = std::make_unique<MasterLink>(
      MasterLink::Options{.master_address = options_.master,
                          .max_backoff = options_.registration_backoff_max},
      loop_);
  agent_ = std::make_unique<Agent>(
      AgentOptions{.hostname = hostname,
                   .http_address = http_address_,
                   .master_address = options_.master,
                   .work_dir = options_.work_dir,
                   .resources = options_.resources,
                   .attributes = options_.attributes,
                   .version = kVersion,
                   .default_kill_grace_period = options_.default_kill_grace_period},
      loop_, launcher_,
      [this](absl::AnyInvocable<void() &&> task) { pool_.Submit(std::move(task)); }, *link_,
      snapshot_);
  loop_.Start();
  loop_.Post([this] { agent_->Start(); });
  link_->Start({.on_connected = [this] { agent_->OnMasterConnected(); },
                .on_message = [this](v1::MasterMessage m) { agent_->OnMasterMessage(m); },
                .on_disconnected = [this] { agent_->OnMasterDisconnected(); }});
  running_ = true;
  LOG(INFO) << "rz-agent " << kVersion << " serving " << http_address_ << " (work dir "
            << options_.work_dir << ", resources " << options_.resources.ToString() << "), master "
            << options_.master;

  if (!options_.endpoints_file.empty()) {
    const nlohmann::json endpoints = {{"http", http_address_}};
    if (absl::Status status = WriteFileAtomically(options_.endpoints_file, endpoints.dump());
        !status.ok()) {
      Stop();
      return status;
    }
  }
  return absl::OkStatus();
}

void AgentDaemon::Stop() {
  if (!running_) {
    http_.Stop();
    return;
  }
  running_ = false;
  link_->Stop();
  http_.Stop();
  loop_.Stop();
}

}  // namespace rz::agent
