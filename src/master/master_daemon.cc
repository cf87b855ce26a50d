#include "master/master_daemon.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/file_util.h"
#include "common/host.h"
#include "common/version.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "master/registry/in_memory_registry_store.h"
#include "master/registry/leveldb_registry_store.h"
#include "nlohmann/json.hpp"

namespace rz::master {
MasterDaemon::MasterDaemon(MasterDaemonOptions options)
    : options_(std::move(options)),
      loop_(options_.clock != nullptr ? *options_.clock : RealClock::Get()) {}

absl::Status MasterDaemon::Start() {
  const std::string hostname = options_.hostname.empty() ? LocalHostname() : options_.hostname;
  // The registry is read before anything serves, so the master starts from what it knew.
  absl::StatusOr<RegistryState> recovered = OpenRegistry();
  if (!recovered.ok()) {
    return recovered.status();
  }
  master_ = std::make_unique<Master>(loop_, options_.master, v1::MasterInfo(), *registry_);
  absl::Status recovery;
  loop_.Post(
      [this, state = *std::move(recovered), &recovery] { recovery = master_->Recover(state); });
  scheduler_service_ = std::make_unique<SchedulerService>(loop_, *master_);
  agent_link_service_ = std::make_unique<AgentLinkService>(loop_, *master_);
  operator_service_ = std::make_unique<OperatorService>(loop_, *master_);
  operator_service_->SetFlags(options_.flags);
  // Metrics of the loop and of REST latency (master/metrics.h).
  MasterMetrics& metrics = master_->metrics();
  loop_.SetLagObserver([&metrics](absl::Duration lag, size_t) { metrics.LoopLag(lag); });
  metrics.SetLoopStatsSource([this] {
    const ThreadEventLoop::Stats stats = loop_.stats();
    return LoopStats{.queue_depth = static_cast<int64_t>(stats.queue_depth),
                     .oldest_queued_seconds = absl::ToDoubleSeconds(stats.oldest_queued_age)};
  });
  http_.SetObserver(
      [&metrics](const std::string& method, const std::string& route, int status,
                 absl::Duration latency) { metrics.HttpRequest(method, route, status, latency); });

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

  RegisterMasterHttp(*master_, http_, options_.flags);
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
  // Calls that reached the loop's queue before Start() run after the recovery above.
  absl::Notification recovered_on_loop;
  loop_.Post([this, info = std::move(info), &recovered_on_loop]() mutable {
    recovered_on_loop.Notify();
    master_->Start(std::move(info));
  });
  loop_.Start();
  running_ = true;
  recovered_on_loop.WaitForNotification();
  if (!recovery.ok()) {
    Stop();
    return absl::Status(recovery.code(),
                        absl::StrCat("recovering from the registry: ", recovery.message()));
  }

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

absl::StatusOr<RegistryState> MasterDaemon::OpenRegistry() {
  if (options_.registry == RegistryBackend::kInMemory) {
    LOG(WARNING) << "the registry is in memory: a restarted master forgets frameworks, agents, "
                    "weights, quota and maintenance";
    registry_store_ = std::make_unique<InMemoryRegistryStore>();
  } else {
    if (options_.work_dir.empty()) {
      return absl::InvalidArgumentError(
          "the leveldb registry needs a work dir (--work_dir), or use --registry=in_memory");
    }
    const std::string dir = absl::StrCat(options_.work_dir, "/registry");
    std::error_code error;
    std::filesystem::create_directories(options_.work_dir, error);
    if (error) {
      return absl::UnavailableError(
          absl::StrCat("cannot create the work dir '", options_.work_dir, "': ", error.message()));
    }
    absl::StatusOr<std::unique_ptr<LevelDbRegistryStore>> store = LevelDbRegistryStore::Open(dir);
    if (!store.ok()) {
      return store.status();
    }
    registry_store_ = *std::move(store);
  }
  registry_worker_.Start();
  registry_ = std::make_unique<Registry>(loop_, registry_worker_, *registry_store_);
  return registry_->Recover();
}

void MasterDaemon::Stop() {
  if (!running_) {
    return;
  }
  running_ = false;
  // Operator event streams end first: a REST stream holds an HTTP thread until it ends.
  absl::Notification closed;
  loop_.Post([this, &closed] {
    master_->CloseOperatorEventStreams(absl::UnavailableError("the master is stopping"));
    closed.Notify();
  });
  closed.WaitForNotificationWithTimeout(absl::Seconds(5));
  // Streams are cancelled at the deadline; the loop still runs so unary calls can finish.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  http_.Stop();
  loop_.Stop();
}

MasterDaemon::~MasterDaemon() {
  Stop();
  // Writes already handed to the registry finish before it goes; their completions stay
  // queued on the stopped loop.
  registry_worker_.Stop();
}

}  // namespace rz::master
