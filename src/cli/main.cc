// rz: the command-line tool. Subcommands: run, agents, frameworks, tasks, local (see kUsage).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "cli/local_command.h"
#include "cli/master_client.h"
#include "cli/run_command.h"
#include "common/flags.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, master, "127.0.0.1:5050",
          "the masters' gRPC address: host:port, host:port,host:port,... or "
          "zk://host:port,.../path; commands go to the leader (also RZ_MASTER)");
// rz run
ABSL_FLAG(double, cpus, 0.1, "rz run: CPUs for the task");
ABSL_FLAG(double, mem, 32, "rz run: memory for the task, in MB");
ABSL_FLAG(std::string, role, "*", "rz run: the role to run under");
ABSL_FLAG(std::string, name, "", "rz run: task name (default: from the command)");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(60),
          "rz run: how long to wait for an offer that fits");
ABSL_FLAG(std::string, user, "", "rz run: unix user to run the task as (default: the agent's)");
// rz local
ABSL_FLAG(int, agents, 3, "rz local: number of agents");
ABSL_FLAG(std::string, work_dir, "",
          "rz local: directory for the daemons' work dirs and logs (default: a fresh "
          "/tmp/rz-local-XXXXXX)");
ABSL_FLAG(int, master_port, 5050, "rz local: the master's gRPC port (0: pick a free one)");
ABSL_FLAG(int, master_http_port, 5080, "rz local: the master's HTTP port (0: pick a free one)");
ABSL_FLAG(int, agent_http_port, 5081,
          "rz local: the first agent's HTTP port; the others use the next ones (0: free ports)");
ABSL_FLAG(std::string, bin_dir, "",
          "rz local: directory holding rz-master and rz-agent (default: next to rz, then PATH)");
ABSL_FLAG(std::string, agent_resources, "",
          "rz local: --resources for every agent, e.g. cpus:2;mem:2048 (default: detected)");

namespace {

constexpr int kExitUsage = 2;

constexpr char kUsage[] = R"(rz: the rechenzentrum command-line tool

usage:
  rz run [--cpus N] [--mem MB] [--role R] [--name NAME] [--timeout 60s] [--user U] -- CMD [ARGS...]
      run CMD as a task on the cluster; its stdout is copied here and its exit code becomes
      rz's (125: rz itself failed, 130: interrupted). One argument runs under /bin/sh -c.
  rz agents | frameworks | tasks
      print the master's agents, frameworks or tasks as a table
  rz local [--agents 3] [--work_dir DIR] [--master_port 5050] [--master_http_port 5080]
           [--agent_http_port 5081] [--bin_dir DIR] [--agent_resources R]
      run a master and N agents on this machine until Ctrl-C

global flags:
  --master MASTERS     the masters' gRPC address (default 127.0.0.1:5050; also RZ_MASTER):
                       host:port, a list host:port,host:port,... or zk://host:port,.../path;
                       commands go to the one that leads
every flag can also be set as RZ_<FLAG> in the environment; --helpfull lists them all
)";

int Usage(const std::string& problem) {
  if (!problem.empty()) {
    std::fprintf(stderr, "rz: %s\n\n", problem.c_str());
  }
  std::fputs(kUsage, stderr);
  return kExitUsage;
}

int ShowState(const std::string& what) {
  absl::StatusOr<rz::v1::State> state = rz::cli::GetState(absl::GetFlag(FLAGS_master));
  if (!state.ok()) {
    std::fprintf(stderr, "rz %s: %s\n", what.c_str(),
                 std::string(state.status().message()).c_str());
    return 1;
  }
  std::string table;
  if (what == "agents") {
    table = rz::cli::AgentsTable(*state);
  } else if (what == "frameworks") {
    table = rz::cli::FrameworksTable(*state);
  } else {
    table = rz::cli::TasksTable(*state);
  }
  std::fputs(table.c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args = rz::ParseFlags(argc, argv, kUsage);
  FLAGS_logtostderr = true;
  // The libraries' progress (e.g. which master leads) is not the tool's output; problems are.
  FLAGS_minloglevel = google::GLOG_WARNING;
  google::InitGoogleLogging(argv[0]);

  if (args.size() < 2) {
    return Usage("no subcommand given");
  }
  const std::string& command = args[1];
  const std::vector<std::string> rest(args.begin() + 2, args.end());

  if (command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "run") {
    if (rest.empty()) {
      return Usage("run: no command given (put it after --)");
    }
    rz::cli::RunOptions options;
    options.master = absl::GetFlag(FLAGS_master);
    options.cpus = absl::GetFlag(FLAGS_cpus);
    options.mem = absl::GetFlag(FLAGS_mem);
    options.role = absl::GetFlag(FLAGS_role);
    options.name = absl::GetFlag(FLAGS_name);
    options.timeout = absl::GetFlag(FLAGS_timeout);
    options.user = absl::GetFlag(FLAGS_user);
    options.command = rest;
    return rz::cli::RunTask(options);
  }
  if (command == "agents" || command == "frameworks" || command == "tasks") {
    if (!rest.empty()) {
      return Usage(absl::StrCat(command, ": unexpected argument '", rest.front(), "'"));
    }
    return ShowState(command);
  }
  if (command == "local") {
    if (!rest.empty()) {
      return Usage(absl::StrCat("local: unexpected argument '", rest.front(), "'"));
    }
    rz::cli::LocalOptions options;
    options.agents = absl::GetFlag(FLAGS_agents);
    options.work_dir = absl::GetFlag(FLAGS_work_dir);
    options.master_port = absl::GetFlag(FLAGS_master_port);
    options.master_http_port = absl::GetFlag(FLAGS_master_http_port);
    options.agent_http_port = absl::GetFlag(FLAGS_agent_http_port);
    options.bin_dir = absl::GetFlag(FLAGS_bin_dir);
    options.agent_resources = absl::GetFlag(FLAGS_agent_resources);
    return rz::cli::RunLocalCluster(options);
  }
  return Usage(absl::StrCat("unknown subcommand '", command, "'"));
}
