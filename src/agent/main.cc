// rz-agent: the agent daemon. Wires the Agent state machine to its event loop, worker pool,
// process launcher, master link and REST server, then runs until SIGINT or SIGTERM.
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

ABSL_FLAG(std::string, master, "127.0.0.1:5050", "host:port of the master's gRPC server");
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
       .endpoints_file = absl::GetFlag(FLAGS_endpoints_file)});
  if (absl::Status status = daemon.Start(); !status.ok()) {
    Die(std::string(status.message()));
  }

  int signal = 0;
  sigwait(&stop_signals, &signal);
  LOG(INFO) << "received signal " << signal << "; stopping (running tasks keep running)";
  daemon.Stop();
  return 0;
}
