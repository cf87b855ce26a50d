// MasterDaemon wires one master together: its event loop, the Master state machine, the gRPC
// server (Scheduler, AgentLink, Operator) and the REST server. rz-master's main() and the
// in-process test cluster both use it.
//
// Thread rule: Start/Stop from the owning thread; accessors are thread-safe once started.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "common/http_server.h"
#include "common/thread_event_loop.h"
#include "master/grpc_services.h"
#include "master/master.h"
#include "master/registry/registry.h"
#include "master/registry/zookeeper_registry_store.h"
#include "master/standby.h"
#include "zk/leader_contender.h"
#include "zk/zookeeper_master_detector.h"
#include "zk/zookeeper_url.h"

namespace grpc {
class Server;
}

namespace rz::master {

// Where the master keeps its registry (frameworks, agents, weights, quota, maintenance).
enum class RegistryBackend {
  kLevelDb,   // <work_dir>/registry: survives restarts. Needs `work_dir`.
  kInMemory,  // Nothing survives a restart (tests, throwaway clusters).
};

struct MasterDaemonOptions {
  std::string ip = "0.0.0.0";  // Address both servers bind.
  std::string hostname;        // Advertised; defaults to gethostname().
  int port = 5050;             // gRPC; 0 picks a free port.
  int http_port = 5080;        // REST; 0 picks a free port.
  // If set, {"grpc": "HOST:PORT", "http": "http://HOST:PORT"} is written here (atomically)
  // once both servers listen.
  std::string endpoints_file;
  MasterOptions master;
  // The command line's flags by name, shown by GET /flags and GetFlags (secrets masked).
  std::map<std::string, std::string> flags;
  // The master loop's clock (not owned); null is the real clock. Tests pass a ManualClock.
  const Clock* clock = nullptr;
  // --- Registry (H1) ---
  RegistryBackend registry = RegistryBackend::kLevelDb;
  std::string work_dir;  // Required by kLevelDb.
  // --- High availability ---
  // zk://host:port,.../path: contend for leadership through ZooKeeper and keep the registry
  // there (`registry` is then ignored). Empty: standalone, this master leads.
  std::string zk;
  absl::Duration zk_session_timeout = absl::Seconds(10);
  // Called once, on a daemon thread, when this master loses the leadership it held (its
  // ZooKeeper session expired or its election znode went). It has stopped serving and closed
  // its streams by then; rz-master then restarts itself to contend again with a clean state.
  // Without it the master stays a standby that redirects to the leader.
  std::function<void(const absl::Status&)> on_lost_leadership;
  // Start() with `zk`: while the ensemble cannot be reached, called between attempts to
  // connect; it waits a while and returns true to try again, false to give up (Start() then
  // returns the Unavailable error). Null: give up at once.
  std::function<bool()> wait_for_zookeeper;
};

class MasterDaemon {
 public:
  explicit MasterDaemon(MasterDaemonOptions options);
  ~MasterDaemon();  // Stops if running.

  MasterDaemon(const MasterDaemon&) = delete;
  MasterDaemon& operator=(const MasterDaemon&) = delete;

  // Opens and recovers the registry, binds both servers and starts serving. Returns
  // InvalidArgument if the LevelDB registry has no work_dir, the registry's error (Unavailable:
  // cannot open it, e.g. another master uses it; DataLoss: an unreadable record), Unavailable
  // naming an address that cannot be bound, or the error of writing the endpoints file.
  absl::Status Start();

  // Cancels every stream, stops the servers, then the loop. Idempotent.
  void Stop();

  // host:port for gRPC clients and http://host:port for REST, once started.
  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& http_address() const { return http_address_; }

  Master& master() { return *master_; }
  EventLoop& loop() { return loop_; }
  // Whether this master leads (always, when standalone). Thread-safe.
  bool leading() const { return leading_.load(); }

 private:
  // Opens the store of options_.registry, starts its worker and reads it (blocking).
  absl::StatusOr<RegistryState> OpenRegistry();
  // Binds the gRPC server on `address`: the master's services, or (standby) the service that
  // refuses every call with the leader's address. Null if it cannot bind.
  std::unique_ptr<grpc::Server> BuildServer(const std::string& address, bool standby,
                                            int* bound_port);
  // High availability (on control_): the election's outcomes.
  absl::Status StartContending(v1::MasterInfo info);
  // Writes options_.endpoints_file, if set.
  absl::Status WriteEndpoints() const;
  // Rebinds the gRPC port with the master's services or the standby's (control_ only).
  absl::Status ReplaceServer(bool standby);
  void TakeLeadership(const std::string& znode);
  void LoseLeadership(const absl::Status& why);

  const MasterDaemonOptions options_;
  ThreadEventLoop loop_;
  // Registry (H1): the store, and the worker thread that writes it off the loop. Declared
  // before master_ so they outlive it.
  std::unique_ptr<RegistryStore> registry_store_;
  ThreadEventLoop registry_worker_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<Master> master_;
  std::unique_ptr<SchedulerService> scheduler_service_;
  std::unique_ptr<AgentLinkService> agent_link_service_;
  std::unique_ptr<OperatorService> operator_service_;
  std::unique_ptr<grpc::Server> server_;
  // High availability: the election, the leader as last heard of, and the thread that acts on
  // the election (recovery reads the registry: never on the loop).
  std::atomic<bool> leading_{false};
  KnownLeader leader_;
  std::unique_ptr<StandbyGrpcService> standby_service_;
  zk::ZooKeeperUrl zk_url_;
  ZooKeeperRegistryStore* zk_store_ = nullptr;  // registry_store_, when it is ZooKeeper.
  std::unique_ptr<zk::ZooKeeperMasterDetector> detector_;
  std::unique_ptr<zk::LeaderContender> contender_;
  ThreadEventLoop control_;
  v1::MasterInfo info_;
  int grpc_port_ = 0;
  bool was_leading_ = false;  // control_ only.
  HttpServer http_;
  std::string grpc_address_;
  std::string http_address_;
  std::atomic<bool> running_{false};
};

// Registers the master's REST endpoints on `http` (master_http.cc). Reads use the published
// snapshot only; `flags` is what GET /flags shows (secrets masked).
void RegisterMasterHttp(Master& master, HttpServer& http,
                        const std::map<std::string, std::string>& flags = {});
// The POST actions (drain, deactivate, reactivate, gone, teardown, machine down/up) and the
// maintenance endpoints (master_http_actions.cc); called by RegisterMasterHttp.
void RegisterMasterHttpActions(Master& master, HttpServer& http);
// POST /reserve and POST /unreserve (master_http_reservations.cc); called by RegisterMasterHttp.
void RegisterReservationHttp(Master& master, HttpServer& http);
// GET /api/v1/events, the operator event stream as JSON lines (master_http_events.cc); called by
// RegisterMasterHttp.
void RegisterEventsHttp(Master& master, HttpServer& http);

}  // namespace rz::master
