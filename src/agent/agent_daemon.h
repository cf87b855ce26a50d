// AgentDaemon wires one agent together: its event loop, worker pool, checkpoint store,
// containerizer (cgroups when available), fetcher, sandbox GC, master link, the Agent state
// machine and the REST server. rz-agent's main() and the in-process test cluster both use it.
//
// Start() recovers before it dials the master: it loads the checkpoint (<work_dir>/meta), finds
// the containers that survived (<work_dir>/containers), destroys orphans, and hands the result
// to the Agent; /state answers 503 meanwhile.
//
// Thread rule: Start/Stop from the owning thread; accessors are thread-safe once started.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/checkpoint_store.h"
#include "agent/containerizer/cgroup_fs.h"
#include "agent/containerizer/linux_containerizer.h"
#include "agent/fetcher.h"
#include "agent/gc.h"
#include "agent/master_link.h"
#include "agent/state_snapshot.h"
#include "common/http_server.h"
#include "common/resources.h"
#include "common/thread_event_loop.h"
#include "common/worker_pool.h"

namespace rz::agent {

struct AgentDaemonOptions {
  // The masters' gRPC address(es): "host:port", "host:port,host:port,..." or "zk://..." (see
  // common/master_detector.h); the link follows whichever leads.
  std::string master = "127.0.0.1:5050";
  std::string ip = "0.0.0.0";  // Address the REST server binds.
  std::string hostname;        // Advertised; defaults to gethostname().
  int http_port = 5081;        // 0 picks a free port.
  std::string work_dir;        // Must exist; canonical.
  Resources resources;         // What the agent offers.
  std::vector<std::pair<std::string, std::string>> attributes;  // Text attributes.
  absl::Duration default_kill_grace_period = absl::Seconds(3);
  absl::Duration registration_backoff_max = absl::Seconds(10);
  // If set, {"http": "http://HOST:PORT"} is written here (atomically) once serving.
  std::string endpoints_file;

  // Isolation: "cgroups" (the default when root), "none" (plain process trees), or "auto"
  // (cgroups when they can be used, none otherwise).
  std::string isolation = "auto";
  // Each hierarchy's root for the agent's cgroups; empty = the agent's own cgroup.
  std::string cgroups_root;
  // The parent cgroup (under the root) of this agent's containers; empty = "rz-<hash of the
  // work dir>", so that several agents on one machine never touch each other's containers.
  std::string cgroups_parent;
  // The rz-containerizer-init binary; empty = next to this executable.
  std::string containerizer_init;
  std::string default_task_user = "nobody";
  bool allow_root_tasks = false;
  uint64_t default_pids_max = 0;
  uint64_t log_max_bytes = 10 << 20;
  int log_max_files = 5;
  absl::Duration usage_interval = absl::Seconds(10);
  absl::Duration gc_delay = absl::Hours(24 * 7);
  double gc_disk_watermark = 0.9;
  uint64_t fetcher_cache_max_bytes = uint64_t{2} << 30;
  bool checkpoint_sync = true;
  // Kill every container when the agent stops (tests, `rz local`); normally they outlive it.
  bool destroy_containers_on_stop = false;
  // Test seam: run tasks through this containerizer (not owned; it must outlive the daemon)
  // instead of a LinuxContainerizer. The in-process test cluster passes a fake.
  Containerizer* containerizer = nullptr;
};

class AgentDaemon {
 public:
  explicit AgentDaemon(AgentDaemonOptions options);
  ~AgentDaemon();  // Stops if running.

  AgentDaemon(const AgentDaemon&) = delete;
  AgentDaemon& operator=(const AgentDaemon&) = delete;

  // Binds the REST server, recovers, and starts dialling the master. Returns InvalidArgument
  // for a malformed `master` spec, Unavailable naming an address that cannot be bound,
  // FailedPrecondition when the checkpoint belongs to an agent with other resources or attributes,
  // or the error of opening the checkpoint, setting up cgroups or writing the endpoints file.
  absl::Status Start();

  // Stops the master link, the REST server and the loop. Running containers keep running; a
  // restarted agent with the same work dir recovers them. Idempotent.
  void Stop();

  // How tasks are isolated, e.g. "cgroups v1 (...) under /x" or "none"; set by Start().
  const std::string& isolation() const { return isolation_description_; }

  const std::string& http_address() const { return http_address_; }
  // The latest published agent state (thread-safe).
  std::shared_ptr<const v1::AgentStateResponse> state() const { return snapshot_.Get(); }

 private:
  const AgentDaemonOptions options_;
  ThreadEventLoop loop_;
  StateSnapshot snapshot_;
  HttpServer http_;
  RealCgroupFs cgroup_fs_;
  std::unique_ptr<CheckpointStore> store_;
  std::unique_ptr<LinuxContainerizer> linux_containerizer_;
  Containerizer* containerizer_ = nullptr;  // linux_containerizer_ or options_.containerizer.
  std::unique_ptr<Fetcher> fetcher_;
  std::unique_ptr<SandboxGc> gc_;
  std::unique_ptr<MasterLink> link_;
  std::unique_ptr<Agent> agent_;
  std::string http_address_;
  std::string isolation_description_;
  bool running_ = false;
  bool stopped_ = false;
  // Last: destroyed first, so no blocking work outlives what it uses.
  WorkerPool pool_{4};
};

}  // namespace rz::agent
