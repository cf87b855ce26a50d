#include "cli/local_command.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/master_client.h"
#include "cli/process.h"
#include "nlohmann/json.hpp"

namespace rz::cli {
namespace {

constexpr absl::Duration kStartDeadline = absl::Seconds(30);
constexpr absl::Duration kStopGrace = absl::Seconds(5);
constexpr int kLogTailLines = 20;

void Say(const std::string& line) { std::fprintf(stderr, "rz local: %s\n", line.c_str()); }

absl::Status MakeDirs(const std::string& path) {
  std::string prefix;
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    prefix = path.substr(0, pos);
    if (!prefix.empty() && mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("creating '", prefix, "'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> AbsolutePath(const std::string& path) {
  char* resolved = realpath(path.c_str(), nullptr);
  if (resolved == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("resolving '", path, "'"));
  }
  std::string out(resolved);
  free(resolved);
  return out;
}

// One daemon of the cluster.
struct Daemon {
  std::string name;  // "master", "agent 2"
  std::string log_path;
  Subprocess process;
};

class LocalCluster {
 public:
  explicit LocalCluster(const LocalOptions& options) : options_(options) {}

  int Run() {
    // Wait for signals synchronously; the children get a clean mask (see SpawnOptions).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    if (absl::Status status = Start(); !status.ok()) {
      Say(std::string(status.message()));
      StopAll();
      return absl::IsCancelled(status) ? 130 : 1;
    }
    PrintWelcome();

    while (true) {
      timespec timeout = {.tv_sec = 1, .tv_nsec = 0};
      const int sig = sigtimedwait(&signals, nullptr, &timeout);
      if (sig == SIGINT || sig == SIGTERM) {
        std::printf("\nrz local: stopping the cluster (%s)\n",
                    sig == SIGINT ? "SIGINT" : "SIGTERM");
        std::fflush(stdout);
        StopAll();
        std::printf("rz local: stopped; logs are kept in %s\n", work_dir_.c_str());
        return 0;
      }
      if (Daemon* dead = FindDead()) {
        ReportDeath(*dead);
        StopAll();
        return 1;
      }
    }
  }

 private:
  absl::Status Start() {
    const absl::Time deadline = absl::Now() + kStartDeadline;
    absl::StatusOr<std::string> master_bin = Locate("rz-master");
    if (!master_bin.ok()) {
      return master_bin.status();
    }
    absl::StatusOr<std::string> agent_bin = Locate("rz-agent");
    if (!agent_bin.ok()) {
      return agent_bin.status();
    }
    if (absl::Status status = PrepareWorkDir(); !status.ok()) {
      return status;
    }

    const std::string master_dir = absl::StrCat(work_dir_, "/master");
    const std::string endpoints = absl::StrCat(master_dir, "/endpoints.json");
    if (absl::Status status = MakeDirs(master_dir); !status.ok()) {
      return status;
    }
    unlink(endpoints.c_str());
    if (absl::Status status = Launch(
            "master",
            {*master_bin, "--ip=127.0.0.1", "--hostname=127.0.0.1",
             absl::StrCat("--port=", options_.master_port),
             absl::StrCat("--http_port=", options_.master_http_port),
             absl::StrCat("--work_dir=", master_dir), absl::StrCat("--endpoints_file=", endpoints)},
            absl::StrCat(master_dir, "/master.log"));
        !status.ok()) {
      return status;
    }
    if (absl::Status status = WaitForMasterEndpoints(endpoints, deadline); !status.ok()) {
      return status;
    }

    for (int i = 0; i < options_.agents; ++i) {
      const std::string agent_dir = absl::StrCat(work_dir_, "/agent-", i + 1);
      if (absl::Status status = MakeDirs(agent_dir); !status.ok()) {
        return status;
      }
      const int http_port = options_.agent_http_port == 0 ? 0 : options_.agent_http_port + i;
      std::vector<std::string> argv = {
          *agent_bin, absl::StrCat("--master=", master_grpc_), "--ip=127.0.0.1",
          "--hostname=127.0.0.1", absl::StrCat("--http_port=", http_port),
          absl::StrCat("--work_dir=", agent_dir),
          // A local cluster is a session: its containers end with it.
          "--destroy_containers_on_stop",
          absl::StrCat("--endpoints_file=", agent_dir, "/endpoints.json")};
      if (!options_.agent_resources.empty()) {
        argv.push_back(absl::StrCat("--resources=", options_.agent_resources));
      }
      if (absl::Status status = Launch(absl::StrCat("agent ", i + 1), std::move(argv),
                                       absl::StrCat(agent_dir, "/agent.log"));
          !status.ok()) {
        return status;
      }
    }
    return WaitForAgents(deadline);
  }

  absl::StatusOr<std::string> Locate(const std::string& name) {
    std::vector<std::string> dirs;
    if (!options_.bin_dir.empty()) {
      dirs.push_back(options_.bin_dir);
    }
    if (absl::StatusOr<std::string> self = SelfDirectory(); self.ok()) {
      const std::string subdir = name == "rz-master" ? "master" : "agent";
      dirs.push_back(absl::StrCat(*self, "/../", subdir));
      dirs.push_back(*self);
    }
    absl::StatusOr<std::string> path = FindProgram(name, dirs);
    if (!path.ok()) {
      return absl::NotFoundError(absl::StrCat(path.status().message(), "; pass --bin_dir"));
    }
    return AbsolutePath(*path);
  }

  absl::Status PrepareWorkDir() {
    if (options_.work_dir.empty()) {
      char templ[] = "/tmp/rz-local-XXXXXX";
      if (mkdtemp(templ) == nullptr) {
        return absl::ErrnoToStatus(errno, "creating a work dir under /tmp");
      }
      work_dir_ = templ;
      // Agents running as root run tasks as another user, who must reach the sandboxes below.
      if (::chmod(templ, 0755) != 0) {
        return absl::ErrnoToStatus(errno, absl::StrCat("making ", templ, " searchable"));
      }
      return absl::OkStatus();
    }
    if (absl::Status status = MakeDirs(options_.work_dir); !status.ok()) {
      return status;
    }
    absl::StatusOr<std::string> absolute = AbsolutePath(options_.work_dir);
    if (!absolute.ok()) {
      return absolute.status();
    }
    work_dir_ = *absolute;
    return absl::OkStatus();
  }

  absl::Status Launch(std::string name, std::vector<std::string> argv, std::string log_path) {
    SpawnOptions spawn;
    spawn.argv = std::move(argv);
    spawn.stdout_path = log_path;
    spawn.stderr_path = log_path;
    // Own process group: a Ctrl-C reaches only us, and we stop the daemons in order.
    spawn.new_process_group = true;
    absl::StatusOr<Subprocess> process = Subprocess::Spawn(spawn);
    if (!process.ok()) {
      return absl::Status(process.status().code(),
                          absl::StrCat("starting the ", name, ": ", process.status().message()));
    }
    daemons_.push_back(std::make_unique<Daemon>(
        Daemon{std::move(name), std::move(log_path), *std::move(process)}));
    return absl::OkStatus();
  }

  absl::Status WaitForMasterEndpoints(const std::string& path, absl::Time deadline) {
    while (true) {
      if (Interrupted()) {
        return absl::CancelledError("interrupted while starting; stopping");
      }
      if (Daemon* dead = FindDead()) {
        ReportDeath(*dead);
        return absl::UnavailableError("the master did not start");
      }
      if (absl::StatusOr<std::string> text = ReadFile(path); text.ok()) {
        nlohmann::json endpoints =
            nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (endpoints.is_object() && endpoints.contains("grpc") && endpoints["grpc"].is_string()) {
          master_grpc_ = endpoints["grpc"].get<std::string>();
          master_http_ = endpoints.value("http", std::string());
          if (master_http_.empty()) {
            master_http_ = absl::StrCat("http://127.0.0.1:", options_.master_http_port);
          }
          return absl::OkStatus();
        }
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(
            "the master wrote no endpoints file '", path, "' within ",
            absl::FormatDuration(kStartDeadline), "; its log: ", daemons_.front()->log_path));
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
  }

  absl::Status WaitForAgents(absl::Time deadline) {
    int registered = 0;
    std::string last_error;
    while (true) {
      if (Interrupted()) {
        return absl::CancelledError("interrupted while starting; stopping");
      }
      if (Daemon* dead = FindDead()) {
        ReportDeath(*dead);
        return absl::UnavailableError(absl::StrCat("the ", dead->name, " did not start"));
      }
      absl::StatusOr<rz::v1::State> state = GetState(master_grpc_, absl::Seconds(2));
      if (state.ok()) {
        registered = RegisteredAgentCount(*state);
        if (registered >= options_.agents) {
          return absl::OkStatus();
        }
      } else {
        last_error = std::string(state.status().message());
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat("only ", registered, " of ", options_.agents, " agents registered within ",
                         absl::FormatDuration(kStartDeadline),
                         last_error.empty() ? "" : absl::StrCat(" (last error: ", last_error, ")"),
                         "; logs are in ", work_dir_));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // Consumes a pending SIGINT/SIGTERM (blocked since Run() began) without waiting.
  static bool Interrupted() {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    timespec zero = {.tv_sec = 0, .tv_nsec = 0};
    return sigtimedwait(&stop, nullptr, &zero) > 0;
  }

  Daemon* FindDead() {
    for (const std::unique_ptr<Daemon>& daemon : daemons_) {
      if (daemon->process.Poll().has_value()) {
        return daemon.get();
      }
    }
    return nullptr;
  }

  void ReportDeath(Daemon& daemon) {
    const int status = *daemon.process.Poll();
    Say(absl::StrCat("the ", daemon.name, " (pid ", daemon.process.pid(), ") ",
                     DescribeWaitStatus(status), "; last lines of ", daemon.log_path, ":"));
    const std::string tail = TailFile(daemon.log_path, kLogTailLines);
    std::fprintf(stderr, "%s\n", tail.empty() ? "(empty)" : tail.c_str());
  }

  void StopAll() {
    std::vector<Subprocess*> processes;
    // Agents first in the list; StopAll signals every one before waiting on any.
    for (auto it = daemons_.rbegin(); it != daemons_.rend(); ++it) {
      processes.push_back(&(*it)->process);
    }
    cli::StopAll(processes, kStopGrace);
  }

  void PrintWelcome() {
    std::string self = "rz";
    if (absl::StatusOr<std::string> dir = SelfDirectory(); dir.ok()) {
      self = absl::StrCat(*dir, "/rz");
    }
    const std::string master_flag =
        master_grpc_ == "127.0.0.1:5050" ? "" : absl::StrCat(" --master=", master_grpc_);
    std::string pids;
    for (const std::unique_ptr<Daemon>& daemon : daemons_) {
      absl::StrAppend(&pids, pids.empty() ? "" : ", ", daemon->name, " ", daemon->process.pid());
    }
    std::printf(
        "rz local: 1 master and %d agent%s are up\n"
        "  master (gRPC): %s\n"
        "  web:           %s\n"
        "  work dir:      %s (logs: master/master.log, agent-N/agent.log)\n"
        "  pids:          %s\n"
        "submit work with:\n"
        "  %s%s run -- echo hello\n"
        "  %s%s agents\n"
        "press Ctrl-C to stop the cluster\n",
        options_.agents, options_.agents == 1 ? "" : "s", master_grpc_.c_str(),
        master_http_.c_str(), work_dir_.c_str(), pids.c_str(), self.c_str(), master_flag.c_str(),
        self.c_str(), master_flag.c_str());
    std::fflush(stdout);
  }

  const LocalOptions& options_;
  std::string work_dir_;
  std::string master_grpc_;
  std::string master_http_;
  std::vector<std::unique_ptr<Daemon>> daemons_;  // The master first, then the agents.
};

}  // namespace

int RunLocalCluster(const LocalOptions& options) {
  if (options.agents < 1) {
    Say("--agents must be at least 1");
    return 2;
  }
  LocalCluster cluster(options);
  return cluster.Run();
}

}  // namespace rz::cli
