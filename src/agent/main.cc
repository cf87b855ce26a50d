// rz-agent: the agent daemon. Wires the Agent state machine to its event loop, worker pool,
// checkpoint store, containerizer, master link and REST server, then runs until SIGINT or
// SIGTERM. Running containers outlive the agent; a restart with the same work dir recovers them.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/agent_daemon.h"
#include "agent/agent_resources.h"
#include "common/flags.h"
#include "common/logging.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, master, "127.0.0.1:5050",
          "the masters' gRPC address: host:port, host:port,host:port,... (the agent follows the "
          "one that leads) or zk://host:port,.../path (ZooKeeper)");
ABSL_FLAG(std::string, ip, "0.0.0.0", "address the HTTP server binds");
ABSL_FLAG(std::string, hostname, "",
          "hostname the agent advertises (default: this machine's hostname)");
ABSL_FLAG(int, http_port, 5081, "HTTP port; 0 picks a free one");
ABSL_FLAG(std::string, work_dir, "/var/lib/rz/agent", "directory for sandboxes (created)");
ABSL_FLAG(std::string, resources, "",
          "resources to offer, text (cpus:4;mem:2048;ports:[31000-32000]) or JSON; names not "
          "given are detected");
ABSL_FLAG(std::string, attributes, "",
          "text attributes schedulers can constrain offers on, e.g. rack:r1;zone:eu-1");
ABSL_FLAG(absl::Duration, default_kill_grace_period, absl::Seconds(3),
          "time between SIGTERM and SIGKILL when a kill names no grace period");
ABSL_FLAG(std::string, endpoints_file, "",
          "if set, write {\"http\":\"http://HOST:PORT\"} here once the HTTP port is bound");
ABSL_FLAG(absl::Duration, registration_backoff_max, absl::Seconds(10),
          "longest wait between attempts to reach the master");
ABSL_FLAG(std::string, isolation, "auto",
          "cgroups (fail without them), none (plain process trees), or auto (cgroups when "
          "running as root and the host has them)");
ABSL_FLAG(std::string, cgroups_root, "",
          "root of the agent's cgroups in every hierarchy, e.g. /rz (default: the agent's own "
          "cgroup, as for a delegated systemd service)");
ABSL_FLAG(std::string, cgroups_parent, "",
          "parent cgroup of this agent's containers under the root (default: rz-<hash of the "
          "work dir>)");
ABSL_FLAG(std::string, containerizer_init, "",
          "path of rz-containerizer-init (default: next to rz-agent)");
ABSL_FLAG(std::string, default_task_user, "nobody",
          "unix user for tasks that name none, when the agent runs as root");
ABSL_FLAG(bool, allow_root_tasks, false, "allow tasks to run as root");
ABSL_FLAG(uint64_t, default_pids_max, 0,
          "pids.max of containers whose task sets no \"pids\" limit; 0 = unlimited");
ABSL_FLAG(uint64_t, sandbox_log_max_bytes, 10 << 20,
          "rotate a task's stdout/stderr above this size; 0 = never");
ABSL_FLAG(int, sandbox_log_max_files, 5, "rotated stdout/stderr files kept per task");
ABSL_FLAG(absl::Duration, usage_interval, absl::Seconds(10),
          "how often container usage is sampled and pushed to the master; 0 = never");
ABSL_FLAG(absl::Duration, gc_delay, absl::Hours(24 * 7),
          "how long a finished task's sandbox is kept (less under disk pressure)");
ABSL_FLAG(double, gc_disk_watermark, 0.9,
          "fraction of the work dir's disk in use above which sandboxes are removed early");
ABSL_FLAG(uint64_t, fetcher_cache_max_bytes, uint64_t{2} << 30,
          "size bound of the fetcher's URI cache in the work dir");
ABSL_FLAG(bool, destroy_containers_on_stop, false,
          "kill every container when the agent stops (for local clusters and tests); normally "
          "containers outlive the agent and a restart recovers them");
ABSL_FLAG(bool, checkpoint_sync, true,
          "fsync every checkpoint write (survives a machine crash, not just an agent crash)");

namespace {

constexpr char kUsage[] = "rz-agent: runs tasks for a rechenzentrum master. Flags:";

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "rz-agent: %s\n", message.c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  // Block the stop signals before any thread exists so every thread inherits the mask and only
  // sigwait() below sees them. Tasks get an empty mask from the launcher.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  rz::InitLogging(argv[0]);
  rz::ParseFlags(argc, argv, kUsage);

  std::error_code error;
  const std::string work_dir_flag = absl::GetFlag(FLAGS_work_dir);
  if (work_dir_flag.empty()) {
    Die("--work_dir: must not be empty");
  }
  std::filesystem::create_directories(work_dir_flag, error);
  if (error) {
    Die(absl::StrCat("--work_dir: cannot create '", work_dir_flag, "': ", error.message()));
  }
  const std::string work_dir = std::filesystem::canonical(work_dir_flag).string();

  absl::StatusOr<rz::agent::MachineInfo> machine = rz::agent::DetectMachine(work_dir);
  if (!machine.ok()) {
    Die(absl::StrCat("--work_dir: ", machine.status().message()));
  }
  absl::StatusOr<rz::Resources> resources = rz::agent::ResolveResources(
      absl::GetFlag(FLAGS_resources), rz::agent::DefaultResources(*machine));
  if (!resources.ok()) {
    Die(std::string(resources.status().message()));
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> attributes =
      rz::agent::ParseAttributes(absl::GetFlag(FLAGS_attributes));
  if (!attributes.ok()) {
    Die(std::string(attributes.status().message()));
  }
  if (absl::GetFlag(FLAGS_sandbox_log_max_files) < 1 ||
      absl::GetFlag(FLAGS_sandbox_log_max_files) > 100) {
    Die(absl::StrCat("--sandbox_log_max_files: must be between 1 and 100, not ",
                     absl::GetFlag(FLAGS_sandbox_log_max_files)));
  }
  if (!(absl::GetFlag(FLAGS_gc_disk_watermark) > 0 &&
        absl::GetFlag(FLAGS_gc_disk_watermark) <= 1)) {
    Die(absl::StrCat("--gc_disk_watermark: must be in (0, 1], not ",
                     absl::GetFlag(FLAGS_gc_disk_watermark)));
  }
  if (absl::GetFlag(FLAGS_http_port) < 0 || absl::GetFlag(FLAGS_http_port) > 65535) {
    Die(absl::StrCat("--http_port: invalid port ", absl::GetFlag(FLAGS_http_port)));
  }
  rz::agent::AgentDaemon daemon(
      {.master = absl::GetFlag(FLAGS_master),
       .ip = absl::GetFlag(FLAGS_ip),
       .hostname = absl::GetFlag(FLAGS_hostname),
       .http_port = absl::GetFlag(FLAGS_http_port),
       .work_dir = work_dir,
       .resources = *resources,
       .attributes = *attributes,
       .default_kill_grace_period = absl::GetFlag(FLAGS_default_kill_grace_period),
       .registration_backoff_max = absl::GetFlag(FLAGS_registration_backoff_max),
       .endpoints_file = absl::GetFlag(FLAGS_endpoints_file),
       .isolation = absl::GetFlag(FLAGS_isolation),
       .cgroups_root = absl::GetFlag(FLAGS_cgroups_root),
       .cgroups_parent = absl::GetFlag(FLAGS_cgroups_parent),
       .containerizer_init = absl::GetFlag(FLAGS_containerizer_init),
       .default_task_user = absl::GetFlag(FLAGS_default_task_user),
       .allow_root_tasks = absl::GetFlag(FLAGS_allow_root_tasks),
       .default_pids_max = absl::GetFlag(FLAGS_default_pids_max),
       .log_max_bytes = absl::GetFlag(FLAGS_sandbox_log_max_bytes),
       .log_max_files = absl::GetFlag(FLAGS_sandbox_log_max_files),
       .usage_interval = absl::GetFlag(FLAGS_usage_interval),
       .gc_delay = absl::GetFlag(FLAGS_gc_delay),
       .gc_disk_watermark = absl::GetFlag(FLAGS_gc_disk_watermark),
       .fetcher_cache_max_bytes = absl::GetFlag(FLAGS_fetcher_cache_max_bytes),
       .checkpoint_sync = absl::GetFlag(FLAGS_checkpoint_sync),
       .destroy_containers_on_stop = absl::GetFlag(FLAGS_destroy_containers_on_stop)});
  if (absl::Status status = daemon.Start(); !status.ok()) {
    Die(std::string(status.message()));
  }

  int signal = 0;
  sigwait(&stop_signals, &signal);
  LOG(INFO) << "received signal " << signal << "; stopping (running containers keep running)";
  daemon.Stop();
  return 0;
}
