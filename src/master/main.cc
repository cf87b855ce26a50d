// rz-master: the master daemon. Standalone (the registry in LevelDB under --work_dir), or one of
// several masters contending for leadership through ZooKeeper (--zk).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/resources.h"
#include "glog/logging.h"
#include "master/master_daemon.h"

ABSL_FLAG(std::string, ip, "0.0.0.0", "Address the gRPC and REST servers bind.");
ABSL_FLAG(std::string, hostname, "",
          "Name agents, schedulers and the CLI reach this master by (default: the host name).");
ABSL_FLAG(int, port, 5050, "gRPC port (Scheduler, AgentLink, Operator); 0 picks a free one.");
ABSL_FLAG(int, http_port, 5080, "REST port; 0 picks a free one.");
ABSL_FLAG(std::string, work_dir, "",
          "Directory for the master's files; the leveldb registry is kept in <work_dir>/registry.");
ABSL_FLAG(std::string, registry, "leveldb",
          "Where frameworks, agents, weights, quota and maintenance are kept across restarts: "
          "'leveldb' (in --work_dir) or 'in_memory' (nothing survives a restart).");
ABSL_FLAG(std::string, endpoints_file, "",
          "If set, write the bound gRPC and REST addresses here as JSON once serving.");
ABSL_FLAG(absl::Duration, allocation_interval, absl::Seconds(1),
          "Time between periodic allocation passes.");
ABSL_FLAG(absl::Duration, offer_timeout, absl::Seconds(60),
          "Rescind offers not answered within this long; 0 disables.");
ABSL_FLAG(absl::Duration, agent_ping_interval, absl::Seconds(15), "Time between agent pings.");
ABSL_FLAG(absl::Duration, agent_ping_timeout, absl::Seconds(75),
          "Disconnect an agent that answers no ping for this long.");
ABSL_FLAG(std::string, min_allocatable_resources, "cpus:0.01|mem:32",
          "Smallest offer worth making: alternatives separated by '|', each a resource list; an "
          "offer must hold one alternative in full.");
ABSL_FLAG(std::string, fair_share_excluded_resources, "",
          "Comma-separated scalar resource names left out of dominant-share computation "
          "(e.g. gpus).");
ABSL_FLAG(absl::Duration, agent_reregister_timeout, absl::Seconds(75),
          "Report the tasks of a disconnected agent unreachable after this long.");
ABSL_FLAG(int64_t, max_completed_tasks, 1000,
          "Terminal tasks kept for /state (oldest dropped first).");
ABSL_FLAG(int64_t, max_completed_frameworks, 50,
          "Removed frameworks kept for /state (oldest dropped first).");
ABSL_FLAG(int64_t, max_unreachable_agents, 1000,
          "Unreachable agents kept (with their tasks); beyond this the oldest are forgotten.");
ABSL_FLAG(int64_t, max_gone_agents, 1000,
          "Gone agents remembered (and refused if they return); beyond this the oldest are "
          "forgotten.");
ABSL_FLAG(std::string, zk, "",
          "zk://host:port[,host:port...]/path: contend for leadership through this ZooKeeper "
          "ensemble and keep the registry there (high availability). Empty: standalone.");
ABSL_FLAG(absl::Duration, zk_session_timeout, absl::Seconds(10),
          "ZooKeeper session timeout: how long after a leader dies another master takes over.");
ABSL_FLAG(double, recovery_agent_removal_limit, 1.0,
          "After a failover, the largest fraction of the registry's agents that may be marked "
          "unreachable for not reregistering in time; above it the master marks none and "
          "says so loudly (a sign of a network partition, not of dead agents).");
ABSL_FLAG(std::string, agent_removal_rate_limit, "",
          "N/DURATION, e.g. 100/1s: at most N agents marked unreachable per DURATION after a "
          "failover. Empty: no limit.");
ABSL_FLAG(int64_t, max_operator_event_subscribers, 100,
          "Open operator event streams (Operator.Subscribe) allowed; more are refused with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_queued_operator_events, 1000,
          "Events an operator event stream may fall behind before it is disconnected.");

namespace {

int Fail(const std::string& what) {
  std::fprintf(stderr, "rz-master: %s\n", what.c_str());
  return 1;
}

// "N/DURATION" (100/1s, 1/20m) → (N, DURATION).
absl::StatusOr<std::pair<int64_t, absl::Duration>> ParseRateLimit(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  int64_t count = 0;
  absl::Duration period;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &count) || count <= 0 ||
      !absl::ParseDuration(parts[1], &period) || period <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", text, "' is not N/DURATION with N > 0 and a positive duration (e.g. 100/1s)"));
  }
  return std::make_pair(count, period);
}

}  // namespace

int main(int argc, char** argv) {
  rz::ParseFlags(argc, argv, "rz-master [--port=5050] [--http_port=5080] [flags]");
  rz::InitLogging(argv[0]);

  auto positive = [](absl::Duration d) { return d > absl::ZeroDuration(); };
  if (!positive(absl::GetFlag(FLAGS_allocation_interval))) {
    return Fail("--allocation_interval must be positive");
  }
  if (absl::GetFlag(FLAGS_offer_timeout) < absl::ZeroDuration()) {
    return Fail("--offer_timeout must not be negative");
  }
  if (!positive(absl::GetFlag(FLAGS_agent_ping_interval)) ||
      !positive(absl::GetFlag(FLAGS_agent_ping_timeout)) ||
      !positive(absl::GetFlag(FLAGS_agent_reregister_timeout))) {
    return Fail("agent ping and reregister durations must be positive");
  }
  for (int port : {absl::GetFlag(FLAGS_port), absl::GetFlag(FLAGS_http_port)}) {
    if (port < 0 || port > 65535) {
      return Fail("ports must be between 0 and 65535");
    }
  }

  rz::master::MasterDaemonOptions options;
  options.master.allocator.min_allocatable.clear();
  for (absl::string_view alternative :
       absl::StrSplit(absl::GetFlag(FLAGS_min_allocatable_resources), '|', absl::SkipEmpty())) {
    absl::StatusOr<rz::Resources> parsed = rz::Resources::Parse(std::string(alternative));
    if (!parsed.ok()) {
      return Fail(absl::StrCat("--min_allocatable_resources: ", parsed.status().message()));
    }
    options.master.allocator.min_allocatable.push_back(*std::move(parsed));
  }
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_fair_share_excluded_resources),
                                               ',', absl::SkipWhitespace())) {
    options.master.allocator.fair_share_excluded.emplace_back(absl::StripAsciiWhitespace(name));
  }
  options.ip = absl::GetFlag(FLAGS_ip);
  options.hostname = absl::GetFlag(FLAGS_hostname);
  options.port = absl::GetFlag(FLAGS_port);
  options.http_port = absl::GetFlag(FLAGS_http_port);
  options.endpoints_file = absl::GetFlag(FLAGS_endpoints_file);
  // What GET /flags shows: the flags defined here and in common (logging); secrets are masked
  // by the endpoint.
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), "master/main.cc") ||
        absl::StrContains(flag->Filename(), "common/")) {
      options.flags.emplace(std::string(name), flag->CurrentValue());
    }
  }
  options.work_dir = absl::GetFlag(FLAGS_work_dir);
  options.zk = absl::GetFlag(FLAGS_zk);
  options.zk_session_timeout = absl::GetFlag(FLAGS_zk_session_timeout);
  if (!positive(options.zk_session_timeout)) {
    return Fail("--zk_session_timeout must be positive");
  }
  options.master.recovery_agent_removal_limit = absl::GetFlag(FLAGS_recovery_agent_removal_limit);
  if (!(options.master.recovery_agent_removal_limit >= 0 &&
        options.master.recovery_agent_removal_limit <= 1)) {
    return Fail("--recovery_agent_removal_limit must be a fraction between 0 and 1");
  }
  if (const std::string limit = absl::GetFlag(FLAGS_agent_removal_rate_limit); !limit.empty()) {
    absl::StatusOr<std::pair<int64_t, absl::Duration>> rate = ParseRateLimit(limit);
    if (!rate.ok()) {
      return Fail(absl::StrCat("--agent_removal_rate_limit: ", rate.status().message()));
    }
    options.master.agent_removals_per_period = rate->first;
    options.master.agent_removal_period = rate->second;
  }
  if (!options.zk.empty()) {
    // The registry is in ZooKeeper; --registry and --work_dir do not apply.
  } else if (const std::string registry = absl::GetFlag(FLAGS_registry); registry == "leveldb") {
    if (options.work_dir.empty()) {
      return Fail("--registry=leveldb needs --work_dir (or use --registry=in_memory)");
    }
    options.registry = rz::master::RegistryBackend::kLevelDb;
  } else if (registry == "in_memory") {
    options.registry = rz::master::RegistryBackend::kInMemory;
  } else {
    return Fail(absl::StrCat("--registry must be 'leveldb' or 'in_memory', not '", registry, "'"));
  }
  options.master.allocation_interval = absl::GetFlag(FLAGS_allocation_interval);
  options.master.offer_timeout = absl::GetFlag(FLAGS_offer_timeout);
  options.master.agent_ping_interval = absl::GetFlag(FLAGS_agent_ping_interval);
  options.master.agent_ping_timeout = absl::GetFlag(FLAGS_agent_ping_timeout);
  options.master.agent_reregister_timeout = absl::GetFlag(FLAGS_agent_reregister_timeout);
  for (const auto& [flag, value, target] :
       {std::tuple{"--max_completed_tasks", absl::GetFlag(FLAGS_max_completed_tasks),
                   &options.master.max_completed_tasks},
        std::tuple{"--max_completed_frameworks", absl::GetFlag(FLAGS_max_completed_frameworks),
                   &options.master.max_completed_frameworks},
        std::tuple{"--max_unreachable_agents", absl::GetFlag(FLAGS_max_unreachable_agents),
                   &options.master.max_unreachable_agents},
        std::tuple{"--max_gone_agents", absl::GetFlag(FLAGS_max_gone_agents),
                   &options.master.max_gone_agents},
        std::tuple{"--max_operator_event_subscribers",
                   absl::GetFlag(FLAGS_max_operator_event_subscribers),
                   &options.master.max_operator_event_subscribers},
        std::tuple{"--max_queued_operator_events", absl::GetFlag(FLAGS_max_queued_operator_events),
                   &options.master.max_queued_operator_events}}) {
    if (value < 0) {
      return Fail(absl::StrCat(flag, " must not be negative"));
    }
    *target = static_cast<size_t>(value);
  }
  if (options.master.max_queued_operator_events == 0) {
    // A subscriber could not hold even one event and would be dropped at its first.
    return Fail("--max_queued_operator_events must be positive");
  }

  // Block the stop signals before any thread starts so only sigwait() below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGUSR1);  // Sent to itself on losing leadership (below).
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  // A master that lost its leadership has stepped down; it restarts itself (same pid, same
  // flags) so that it contends again from a clean state rather than a half-torn-down one.
  options.on_lost_leadership = [](const absl::Status&) { kill(getpid(), SIGUSR1); };
  // Waiting for ZooKeeper at start (after a restart on losing it, say) stays interruptible.
  bool stop_requested = false;
  options.wait_for_zookeeper = [&stop_signals, &stop_requested] {
    const timespec pause = {.tv_sec = 1, .tv_nsec = 0};
    if (sigtimedwait(&stop_signals, nullptr, &pause) > 0) {
      stop_requested = true;
      return false;
    }
    return true;
  };
  rz::master::MasterDaemon daemon(options);
  if (absl::Status status = daemon.Start(); !status.ok()) {
    if (stop_requested) {
      return 0;
    }
    return Fail(std::string(status.message()));
  }
  int signal = 0;
  sigwait(&stop_signals, &signal);
  if (signal == SIGUSR1) {
    LOG(WARNING) << "rz-master restarting to contend for leadership again";
    daemon.Stop();
    google::FlushLogFiles(google::GLOG_INFO);
    execv("/proc/self/exe", argv);
    PLOG(ERROR) << "cannot restart rz-master";
    return 1;
  }
  LOG(INFO) << "rz-master stopping on signal " << signal;
  daemon.Stop();
  return 0;
}
