#include "master/master_daemon.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
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
  const bool ha = !options_.zk.empty();
  absl::StatusOr<RegistryState> recovered;
  if (ha) {
    // The registry is read once elected (TakeLeadership); until then this master redirects.
    absl::StatusOr<zk::ZooKeeperUrl> url = zk::ZooKeeperUrl::Parse(options_.zk);
    if (!url.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--zk: ", url.status().message()));
    }
    zk_url_ = *url;
    absl::StatusOr<std::unique_ptr<ZooKeeperRegistryStore>> store;
    while (true) {
      store = ZooKeeperRegistryStore::Open(
          {.servers = zk_url_.connect_string(),
           .path = zk_url_.path,
           .session_timeout = options_.zk_session_timeout,
           .connect_timeout = std::max(options_.zk_session_timeout, absl::Seconds(10))});
      if (store.ok() || store.status().code() != absl::StatusCode::kUnavailable ||
          !options_.wait_for_zookeeper) {
        break;
      }
      LOG(WARNING) << "cannot reach ZooKeeper yet (" << store.status().message()
                   << "); trying again";
      if (!options_.wait_for_zookeeper()) {
        break;
      }
    }
    if (!store.ok()) {
      return store.status();
    }
    zk_store_ = store->get();
    registry_store_ = *std::move(store);
    registry_worker_.Start();
    registry_ = std::make_unique<Registry>(loop_, registry_worker_, *registry_store_);
  } else {
    // The registry is read before anything serves, so the master starts from what it knew.
    recovered = OpenRegistry();
    if (!recovered.ok()) {
      return recovered.status();
    }
  }
  master_ = std::make_unique<Master>(loop_, options_.master, v1::MasterInfo(), *registry_);
  absl::Status recovery;
  if (!ha) {
    loop_.Post(
        [this, state = *std::move(recovered), &recovery] { recovery = master_->Recover(state); });
  }
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

  int grpc_port = 0;
  server_ = BuildServer(absl::StrCat(options_.ip, ":", options_.port), /*standby=*/ha, &grpc_port);
  if (server_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind gRPC address '", options_.ip, ":", options_.port, "'"));
  }
  grpc_port_ = grpc_port;
  if (ha) {
    http_.SetGate([this](const HttpRequest& request) -> std::optional<HttpResponse> {
      return leading_.load() ? std::nullopt : StandbyHttpAnswer(leader_, request);
    });
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
  info.set_start_time(static_cast<double>(absl::ToUnixMicros(absl::Now())) / 1e6);
  if (ha) {
    return StartContending(std::move(info));
  }
  leading_ = true;
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
  if (absl::Status status = WriteEndpoints(); !status.ok()) {
    Stop();
    return status;
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

absl::Status MasterDaemon::StartContending(v1::MasterInfo info) {
  info_ = std::move(info);
  leader_.SetSelf(http_address_);
  loop_.Start();
  control_.Start();
  running_ = true;
  LOG(INFO) << "rz-master " << kVersion << " contending for leadership at " << options_.zk
            << "; serving gRPC on " << grpc_address_ << " and REST on " << http_address_
            << " (redirecting to the leader until elected)";
  detector_ = std::make_unique<zk::ZooKeeperMasterDetector>(
      zk::ZooKeeperMasterDetector::Options{.servers = zk_url_.connect_string(),
                                           .path = zk_url_.path,
                                           .session_timeout = options_.zk_session_timeout});
  detector_->Start([this](std::optional<v1::MasterInfo> leader) {
    LOG(INFO) << "leading master: "
              << (leader.has_value() ? leader->grpc_address() : std::string("none known"));
    leader_.Set(std::move(leader));
  });
  contender_ = std::make_unique<zk::LeaderContender>(
      zk::LeaderContender::Options{.servers = zk_url_.connect_string(),
                                   .path = zk_url_.path,
                                   .session_timeout = options_.zk_session_timeout,
                                   .info = info_},
      zk::LeaderContender::Callbacks{.elected =
                                         [this](const std::string& znode) {
                                           control_.Post([this, znode] { TakeLeadership(znode); });
                                         },
                                     .lost =
                                         [this](const absl::Status& why) {
                                           control_.Post([this, why] { LoseLeadership(why); });
                                         }});
  contender_->Contend();
  if (absl::Status status = WriteEndpoints(); !status.ok()) {
    Stop();
    return status;
  }
  return absl::OkStatus();
}

absl::Status MasterDaemon::WriteEndpoints() const {
  if (options_.endpoints_file.empty()) {
    return absl::OkStatus();
  }
  nlohmann::json endpoints = {{"grpc", grpc_address_}, {"http", http_address_}};
  return WriteFileAtomically(options_.endpoints_file, endpoints.dump());
}

std::unique_ptr<grpc::Server> MasterDaemon::BuildServer(const std::string& address, bool standby,
                                                        int* bound_port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), bound_port);
  if (standby) {
    // A generic service serves one server in its life: a new one for each standby server.
    standby_service_ = std::make_unique<StandbyGrpcService>(leader_);
    builder.RegisterCallbackGenericService(standby_service_.get());
  } else {
    builder.RegisterService(scheduler_service_.get());
    builder.RegisterService(agent_link_service_.get());
    builder.RegisterService(operator_service_.get());
  }
  // Notice dead peers (agents, schedulers) on idle streams within about 30 s.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *bound_port == 0) {
    return nullptr;
  }
  return server;
}

absl::Status MasterDaemon::ReplaceServer(bool standby) {
  server_->Shutdown(std::chrono::system_clock::now());
  server_.reset();
  const std::string address = absl::StrCat(options_.ip, ":", grpc_port_);
  for (int attempt = 0; server_ == nullptr && attempt < 50; ++attempt) {
    int port = 0;
    server_ = BuildServer(address, standby, &port);
    if (server_ == nullptr) {
      absl::SleepFor(absl::Milliseconds(20));  // The old listener is still closing.
    }
  }
  if (server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot bind gRPC address '", address, "' for the ",
                                               standby ? "standby" : "leading", " master"));
  }
  return absl::OkStatus();
}

void MasterDaemon::TakeLeadership(const std::string& znode) {
  if (!running_) {
    return;
  }
  const absl::Time start = absl::Now();
  LOG(WARNING) << "elected leading master (" << znode << "); recovering the registry";
  zk_store_->SetFence(znode);
  absl::StatusOr<RegistryState> state = registry_->Recover();
  if (!state.ok()) {
    LOG(ERROR) << "cannot read the registry after the election: " << state.status();
    LoseLeadership(state.status());
    return;
  }
  absl::Status recovery;
  absl::Notification recovered;
  loop_.Post([this, &state, &recovery, &recovered] {
    recovery = master_->Recover(*state);
    if (recovery.ok()) {
      v1::MasterInfo info = info_;
      info.set_leader(true);
      master_->Start(std::move(info));
    }
    recovered.Notify();
  });
  recovered.WaitForNotification();
  if (!recovery.ok()) {
    LOG(ERROR) << "cannot recover from the registry: " << recovery;
    was_leading_ = true;  // The master may hold part of the registry: start afresh.
    LoseLeadership(recovery);
    return;
  }
  // The standby server gives its port to the master's services.
  was_leading_ = true;
  if (absl::Status status = ReplaceServer(/*standby=*/false); !status.ok()) {
    LOG(ERROR) << status;
    LoseLeadership(status);
    return;
  }
  leading_ = true;
  LOG(WARNING) << "leading master: serving " << absl::Now() - start << " after the election ("
               << state->frameworks.size() << " frameworks, " << state->agents.size()
               << " agents in the registry)";
}

void MasterDaemon::LoseLeadership(const absl::Status& why) {
  if (!running_) {
    return;
  }
  leading_ = false;
  zk_store_->ClearFence();
  if (!was_leading_) {
    // A candidacy that never led: nothing to undo, contend again.
    LOG(WARNING) << "candidacy ended (" << why << "); contending again";
    contender_->Contend();
    return;
  }
  LOG(ERROR) << "LOST LEADERSHIP (" << why
             << "); stepping down: no more offers, registry writes or streams";
  absl::Notification stopped;
  loop_.Post([this, why, &stopped] {
    master_->StepDown(absl::UnavailableError(
        absl::StrCat("this master lost its leadership (", why.message(), ")")));
    stopped.Notify();
  });
  stopped.WaitForNotificationWithTimeout(absl::Seconds(5));
  if (absl::Status status = ReplaceServer(/*standby=*/true); !status.ok()) {
    LOG(ERROR) << status;
  }
  if (options_.on_lost_leadership) {
    options_.on_lost_leadership(why);
  }
}

void MasterDaemon::Stop() {
  if (!running_) {
    return;
  }
  running_ = false;
  // The election first: a clean stop hands leadership over at once.
  contender_.reset();
  detector_.reset();
  control_.Stop();
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
  server_.reset();
  // Writes already handed to the registry finish before it goes; their completions stay
  // queued on the stopped loop.
  registry_worker_.Stop();
}

}  // namespace rz::master
