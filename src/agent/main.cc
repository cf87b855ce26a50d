// rz-agent: the agent daemon. Wires the Agent state machine to its event loop, worker pool,
// process launcher, master link and REST server, then runs until SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/agent_resources.h"
#include "agent/http_api.h"
#include "agent/master_link.h"
#include "agent/posix_launcher.h"
#include "agent/state_snapshot.h"
#include "common/flags.h"
#include "common/http_server.h"
#include "common/logging.h"
#include "common/thread_event_loop.h"
#include "common/worker_pool.h"
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

std::string LocalHostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') {
    return "localhost";
  }
  return name;
}

// Written to a temporary file and renamed, so a reader never sees a partial file.
absl::Status WriteEndpointsFile(const std::string& path, const std::string& http_address) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "{\"http\":\"" << http_address << "\"}\n";
    out.close();
    if (!out) {
      return absl::InternalError(absl::StrCat("cannot write '", tmp, "'"));
    }
  }
  std::error_code error;
  std::filesystem::rename(tmp, path, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot rename '", tmp, "' to '", path, "': ", error.message()));
  }
  return absl::OkStatus();
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
  if (absl::GetFlag(FLAGS_http_port) < 0 || absl::GetFlag(FLAGS_http_port) > 65535) {
    Die(absl::StrCat("--http_port: invalid port ", absl::GetFlag(FLAGS_http_port)));
  }
  std::string hostname = absl::GetFlag(FLAGS_hostname);
  if (hostname.empty()) {
    hostname = LocalHostname();
  }

  rz::ThreadEventLoop loop;
  rz::agent::StateSnapshot snapshot;
  rz::HttpServer http;
  rz::agent::RegisterHttpHandlers(http, snapshot, work_dir);
  absl::StatusOr<int> port = http.Start(absl::GetFlag(FLAGS_ip), absl::GetFlag(FLAGS_http_port));
  if (!port.ok()) {
    Die(std::string(port.status().message()));
  }
  const std::string http_address = absl::StrCat("http://", hostname, ":", *port);
  if (const std::string path = absl::GetFlag(FLAGS_endpoints_file); !path.empty()) {
    if (absl::Status written = WriteEndpointsFile(path, http_address); !written.ok()) {
      Die(absl::StrCat("--endpoints_file: ", written.message()));
    }
  }

  rz::agent::PosixLauncher launcher(rz::agent::PosixLauncher::CurrentProcessOptions());
  rz::WorkerPool pool(2);
  rz::agent::MasterLink link({.master_address = absl::GetFlag(FLAGS_master),
                              .max_backoff = absl::GetFlag(FLAGS_registration_backoff_max)},
                             loop);
  rz::agent::Agent agent(
      {.hostname = hostname,
       .http_address = http_address,
       .master_address = absl::GetFlag(FLAGS_master),
       .work_dir = work_dir,
       .resources = *resources,
       .version = RZ_VERSION,
       .default_kill_grace_period = absl::GetFlag(FLAGS_default_kill_grace_period)},
      loop, launcher, [&pool](absl::AnyInvocable<void() &&> task) { pool.Submit(std::move(task)); },
      link, snapshot);

  loop.Start();
  loop.Post([&agent] { agent.Start(); });
  link.Start({.on_connected = [&agent] { agent.OnMasterConnected(); },
              .on_message = [&agent](rz::v1::MasterMessage m) { agent.OnMasterMessage(m); },
              .on_disconnected = [&agent] { agent.OnMasterDisconnected(); }});
  LOG(INFO) << "rz-agent " << RZ_VERSION << " serving " << http_address << " (work dir " << work_dir
            << ", resources " << resources->ToString() << "), master "
            << absl::GetFlag(FLAGS_master);

  int signal = 0;
  sigwait(&stop_signals, &signal);
  LOG(INFO) << "received signal " << signal << "; stopping (running tasks keep running)";
  link.Stop();
  http.Stop();
  loop.Stop();
  return 0;
}
