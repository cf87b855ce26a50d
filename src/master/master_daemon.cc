#include "master/master_daemon.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/host.h"
#include "common/version.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"

namespace rz::master {
MasterDaemon::MasterDaemon(MasterDaemonOptions options) : options_(std::move(options)) {}

MasterDaemon::~MasterDaemon() { Stop(); }

absl::Status MasterDaemon::Start() {
  const std::string hostname = options_.hostname.empty() ? LocalHostname() : options_.hostname;
  master_ = std::make_unique<Master>(loop_, options_.master, v1::MasterInfo());
  scheduler_service_ = std::make_unique<SchedulerService>(loop_, *master_);
  agent_link_service_ = std::make_unique<AgentLinkService>(loop_, *master_);
  operator_service_ = std::make_unique<OperatorService>(loop_, *master_);

  grpc::ServerBuilder builder;
  int grpc_port = 0;
  builder.AddListeningPort(absl::StrCat(options_.ip, ":", options_.port),
                           grpc::InsecureServerCredentials(), &grpc_port);
  builder.RegisterService(scheduler_service_.get());
  builder.RegisterService(agent_link_service_.get());
  builder.RegisterService(operator_service_.get());
  // Notice dead peers (agents, schedulers) on idle streams within about 30 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || grpc_port == 0) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot bind gRPC address '", options_.ip, ":", options_.port, "'"));
  }

  RegisterMasterHttp(*master_, http_);
  absl::StatusOr<int> http_port = http_.Start(options_.ip, options_.http_port);
  if (!http_port.ok()) {
    server_->Shutdown();
    server_.reset();
    return http_port.status();
  }

  grpc_address_ = absl::StrCat(hostname, ":", grpc_port);
  http_address_ = absl::StrCat("http://", hostname, ":", *http_port);
  v1::MasterInfo info;
  info.set_id(absl::StrCat(hostname, ":", grpc_port, "-", getpid()));
  info.set_hostname(hostname);
  info.set_grpc_address(grpc_address_);
  info.set_http_address(http_address_);
  info.set_version(kVersion);
  // Calls that reached the loop's queue first are handled before Start(); see Master::Start.
  loop_.Post([this, info = std::move(info)]() mutable { master_->Start(std::move(info)); });
  loop_.Start();
  running_ = true;

  LOG(INFO) << "rz-master " << kVersion << " serving gRPC on " << grpc_address_ << " and REST on "
            << http_address_;
  if (!options_.endpoints_file.empty()) {
    nlohmann::json endpoints = {{"grpc", grpc_address_}, {"http", http_address_}};
    if (absl::Status status = WriteFileAtomically(options_.endpoints_file, endpoints.dump());
        !status.ok()) {
      Stop();
      return status;
    }
  }
  return absl::OkStatus();
}

void MasterDaemon::Stop() {
  if (!running_) {
    return;
  }
  running_ = false;
  // Streams are cancelled at the deadline; the loop still runs so unary calls can finish.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  http_.Stop();
  loop_.Stop();
}

}  // namespace rz::master
