// AgentDaemon wires one agent together: its event loop, worker pool, process launcher, master
// link, the Agent state machine and the REST server. rz-agent's main() and the in-process test
// cluster both use it.
//
// Thread rule: Start/Stop from the owning thread; accessors are thread-safe once started.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/master_link.h"
#include "agent/posix_launcher.h"
#include "agent/state_snapshot.h"
#include "common/http_server.h"
#include "common/resources.h"
#include "common/thread_event_loop.h"
#include "common/worker_pool.h"

namespace rz::agent {

struct AgentDaemonOptions {
  std::string master = "127.0.0.1:5050";  // host:port of the master's gRPC server.
  std::string ip = "0.0.0.0";             // Address the REST server binds.
  std::string hostname;                   // Advertised; defaults to gethostname().
  int http_port = 5081;                   // 0 picks a free port.
  std::string work_dir;                   // Must exist; canonical.
  Resources resources;                    // What the agent offers.
  std::vector<std::pair<std::string, std::string>> attributes;  // Text attributes.
  absl::Duration default_kill_grace_period = absl::Seconds(3);
  absl::Duration registration_backoff_max = absl::Seconds(10);
  // If set, {"http": "http://HOST:PORT"} is written here (atomically) once serving.
  std::string endpoints_file;
};

class AgentDaemon {
 public:
  explicit AgentDaemon(AgentDaemonOptions options);
  ~AgentDaemon();  // Stops if running.

  AgentDaemon(const AgentDaemon&) = delete;
  AgentDaemon& operator=(const AgentDaemon&) = delete;

  // Binds the REST server and starts dialling the master. Returns Unavailable naming an
  // address that cannot be bound, or the error of writing the endpoints file.
  absl::Status Start();

  // Stops the master link, the REST server and the loop. Running tasks keep running (the
  // containerizer issue recovers them on restart). Idempotent.
  void Stop();

  const std::string& http_address() const { return http_address_; }
  // The latest published agent state (thread-safe).
  std::shared_ptr<const v1::AgentStateResponse> state() const { return snapshot_.Get(); }

 private:
  const AgentDaemonOptions options_;
  ThreadEventLoop loop_;
  StateSnapshot snapshot_;
  HttpServer http_;
  PosixLauncher launcher_;
  WorkerPool pool_{2};
  std::unique_ptr<MasterLink> link_;
  std::unique_ptr<Agent> agent_;
  std::string http_address_;
  bool running_ = false;
};

}  // namespace rz::agent
