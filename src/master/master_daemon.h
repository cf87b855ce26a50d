// MasterDaemon wires one master together: its event loop, the Master state machine, the gRPC
// server (Scheduler, AgentLink, Operator) and the REST server. rz-master's main() and the
// in-process test cluster both use it.
//
// Thread rule: Start/Stop from the owning thread; accessors are thread-safe once started.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/http_server.h"
#include "common/thread_event_loop.h"
#include "master/grpc_services.h"
#include "master/master.h"

namespace grpc {
class Server;
}

namespace rz::master {

struct MasterDaemonOptions {
  std::string ip = "0.0.0.0";  // Address both servers bind.
  std::string hostname;        // Advertised; defaults to gethostname().
  int port = 5050;             // gRPC; 0 picks a free port.
  int http_port = 5080;        // REST; 0 picks a free port.
  // If set, {"grpc": "HOST:PORT", "http": "http://HOST:PORT"} is written here (atomically)
  // once both servers listen.
  std::string endpoints_file;
  MasterOptions master;
};

class MasterDaemon {
 public:
  explicit MasterDaemon(MasterDaemonOptions options);
  ~MasterDaemon();  // Stops if running.

  MasterDaemon(const MasterDaemon&) = delete;
  MasterDaemon& operator=(const MasterDaemon&) = delete;

  // Binds both servers and starts serving. Returns Unavailable naming an address that
  // cannot be bound, or the error of writing the endpoints file.
  absl::Status Start();

  // Cancels every stream, stops the servers, then the loop. Idempotent.
  void Stop();

  // host:port for gRPC clients and http://host:port for REST, once started.
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& http_address() const { return http_address_; }

  Master& master() { return *master_; }
  EventLoop& loop() { return loop_; }

 private:
  const MasterDaemonOptions options_;
  ThreadEventLoop loop_;
  std::unique_ptr<Master> master_;
  std::unique_ptr<SchedulerService> scheduler_service_;
  std::unique_ptr<AgentLinkService> agent_link_service_;
  std::unique_ptr<OperatorService> operator_service_;
  std::unique_ptr<grpc::Server> server_;
  HttpServer http_;
  std::string grpc_address_;
  std::string http_address_;
  bool running_ = false;
};

// Registers the master's REST endpoints on `http`. Handlers read `master.snapshot()` only.
void RegisterMasterHttp(Master& master, HttpServer& http);

}  // namespace rz::master
