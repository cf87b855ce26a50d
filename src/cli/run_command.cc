#include "cli/run_command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstdio>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/master_client.h"
#include "common/host.h"
#include "common/ids.h"
#include "common/random_id.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "glog/logging.h"
#include "httplib.h"
#include "scheduler_api/scheduler_client.h"

namespace rz::cli {
namespace {

// Offers we do not use are refused for this long, so the allocator offers them elsewhere.
constexpr double kRefuseSeconds = 30.0;
// After an interrupt, how long the task gets to reach a terminal state.
constexpr absl::Duration kKillWait = absl::Seconds(10);
constexpr absl::Duration kSubscribeTimeout = absl::Seconds(15);
constexpr absl::Duration kPollSlice = absl::Milliseconds(100);
// /files/read returns at most this much per request.
constexpr int64_t kReadChunk = 1 << 20;

volatile std::sig_atomic_t g_interrupted = 0;

void OnInterrupt(int /*signal*/) { g_interrupted = 1; }

void InstallInterruptHandlers() {
  struct sigaction action = {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

void Say(const std::string& line) { std::fprintf(stderr, "rz run: %s\n", line.c_str()); }

// Only the requested names, for messages like "largest agent offers cpus:2;mem:7000".
Resources Project(const Resources& total, const Resources& request) {
  Resources out;
  for (const ResourceEntry& entry : request.entries()) {
    (void)out.AddScalar(entry.name, total.ScalarFixed(entry.name));
  }
  return out;
}

// Checks the request against every registered agent's total, so a request no agent can ever
// satisfy fails at once instead of waiting for the offer timeout.
absl::Status CheckSomeAgentFits(const std::string& master, const Resources& request) {
  absl::StatusOr<rz::v1::State> state = GetState(master);
  if (!state.ok()) {
    return state.status();
  }
  std::optional<Resources> largest;
  for (const rz::v1::AgentState& agent : state->agents()) {
    if (agent.status() != rz::v1::AgentState::REGISTERED) {
      continue;
    }
    const Resources total = AgentTotal(agent);
    if (ScalarsFit(total, request)) {
      return absl::OkStatus();
    }
    const Resources projected = Project(total, request);
    if (!largest.has_value() ||
        std::make_pair(projected.ScalarFixed("cpus"), projected.ScalarFixed("mem")) >
            std::make_pair(largest->ScalarFixed("cpus"), largest->ScalarFixed("mem"))) {
      largest = projected;
    }
  }
  if (!largest.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no agent is registered with the master at '", master, "'"));
  }
  return absl::ResourceExhaustedError(absl::StrCat("no agent can fit ", request.ToString(),
                                                   " (largest agent offers ", largest->ToString(),
                                                   ")"));
}

// The resources to launch with if `offer` can hold the request: unreserved first, else
// reserved for `role`.
std::optional<Resources> FitInOffer(const rz::v1::Offer& offer, const Resources& request,
                                    const std::string& role) {
  absl::StatusOr<Resources> offered = FromProto(offer.resources());
  if (!offered.ok()) {
    return std::nullopt;
  }
  if (offered->Contains(request)) {
    return request;
  }
  if (role != kDefaultRole) {
    const Resources reserved = request.WithRole(role);
    if (offered->Contains(reserved)) {
      return reserved;
    }
  }
  return std::nullopt;
}

// Copies a sandbox file of the task from the agent's /files/read to `out`, chunk by chunk.
absl::Status CopySandboxFile(const std::string& agent_http, const FrameworkId& framework,
                             const TaskId& task, const std::string& path, std::FILE* out) {
  httplib::Client client(agent_http);
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  int64_t offset = 0;
  while (true) {
    httplib::Params params = {{"framework_id", framework.value()},
                              {"task_id", task.value()},
                              {"path", path},
                              {"offset", absl::StrCat(offset)},
                              {"length", absl::StrCat(kReadChunk)}};
    httplib::Result result = client.Get("/files/read", params, httplib::Headers());
    if (!result) {
      return absl::UnavailableError(absl::StrCat("cannot reach agent at '", agent_http,
                                                 "': ", httplib::to_string(result.error())));
    }
    if (result->status == 404) {
      return absl::NotFoundError(
          absl::StrCat(path, " not found on agent at '", agent_http, "': ", result->body));
    }
    if (result->status != 200) {
      return absl::InternalError(absl::StrCat("agent at '", agent_http, "' answered ",
                                              result->status, ": ", result->body));
    }
    const std::string& body = result->body;
    if (!body.empty()) {
      std::fwrite(body.data(), 1, body.size(), out);
    }
    offset += static_cast<int64_t>(body.size());
    int64_t size = -1;
    if (result->has_header("X-Rz-File-Size") &&
        !absl::SimpleAtoi(result->get_header_value("X-Rz-File-Size"), &size)) {
      size = -1;
    }
    if (body.empty() || (size >= 0 && offset >= size)) {
      break;
    }
  }
  std::fflush(out);
  return absl::OkStatus();
}

// One run of one task; owns the scheduler client for its lifetime.
class TaskRun {
 public:
  TaskRun(const RunOptions& options, Resources request)
      : options_(options),
        request_(std::move(request)),
        name_(options.name.empty() ? DefaultTaskName(options.command) : options.name),
        task_id_(absl::StrCat(name_, "-", NewUuid().substr(0, 8))) {}

  int Run() {
    rz::v1::FrameworkInfo info;
    info.set_name(absl::StrCat("rz-run ", name_));
    info.add_roles(options_.role);
    info.set_user(options_.user);
    info.set_failover_timeout_seconds(0);
    info.set_hostname(LocalHostname());
    client_ = std::make_unique<scheduler::SchedulerClient>(options_.master, info);
    if (absl::Status status = client_->Subscribe(kSubscribeTimeout); !status.ok()) {
      Say(std::string(status.message()));
      return kExitRzFailed;
    }

    const absl::Time offer_deadline = absl::Now() + options_.timeout;
    std::optional<absl::Time> kill_deadline;
    while (true) {
      if (g_interrupted && !kill_deadline.has_value()) {
        if (!launched_.has_value()) {
          Say("interrupted before the task was launched");
          return End(kExitInterrupted);
        }
        Say(absl::StrCat("interrupted; killing task '", task_id_.value(), "'"));
        if (absl::Status status = client_->Kill(task_id_, AgentId(launched_->agent_id()));
            !status.ok()) {
          Say(std::string(status.message()));
        }
        kill_deadline = absl::Now() + kKillWait;
      }
      if (kill_deadline.has_value() && absl::Now() > *kill_deadline) {
        Say(absl::StrCat("task '", task_id_.value(), "' did not end within ",
                         absl::FormatDuration(kKillWait), " of the kill"));
        return End(kExitInterrupted);
      }
      if (!launched_.has_value() && absl::Now() > offer_deadline) {
        Say(absl::StrCat("no offer that fits ", request_.ToString(), " arrived within ",
                         absl::FormatDuration(options_.timeout)));
        return End(kExitRzFailed);
      }

      std::optional<rz::v1::Event> event = client_->NextEvent(kPollSlice);
      if (!event.has_value()) {
        continue;
      }
      if (event->has_offers()) {
        if (std::optional<int> code = HandleOffers(event->offers())) {
          return End(*code);
        }
      } else if (event->has_update()) {
        if (std::optional<int> code = HandleUpdate(event->update().status())) {
          return End(kill_deadline.has_value() ? kExitInterrupted : *code);
        }
      } else if (event->has_error()) {
        Say(absl::StrCat("error from the master: ", event->error().message()));
        return End(kExitRzFailed);
      } else if (event->has_failure() && launched_.has_value() &&
                 event->failure().agent_id() == launched_->agent_id()) {
        Say(absl::StrCat("agent '", event->failure().agent_id(),
                         "' failed: ", event->failure().message()));
      }
    }
  }

 private:
  // Launches on the first fitting offer and declines the rest. Returns an exit code if the
  // run must end.
  std::optional<int> HandleOffers(const rz::v1::Event::Offers& offers) {
    std::vector<OfferId> declined;
    for (const rz::v1::Offer& offer : offers.offers()) {
      std::optional<Resources> resources;
      if (!launched_.has_value()) {
        resources = FitInOffer(offer, request_, options_.role);
      }
      if (!resources.has_value()) {
        declined.emplace_back(offer.id());
        continue;
      }
      rz::v1::TaskInfo task;
      task.set_name(name_);
      task.set_task_id(task_id_.value());
      task.set_agent_id(offer.agent_id());
      ToProto(*resources, task.mutable_resources());
      *task.mutable_command() = BuildCommand(options_.command);
      task.mutable_command()->set_user(options_.user);
      if (absl::Status status = client_->Launch({OfferId(offer.id())}, {task}, kRefuseSeconds);
          !status.ok()) {
        Say(absl::StrCat("launching task '", task_id_.value(), "' failed: ", status.message()));
        return kExitRzFailed;
      }
      launched_ = offer;
      // One task is all this framework wants; stop the offers (a master without SUPPRESS is
      // fine: the declines below keep their resources away for kRefuseSeconds).
      (void)client_->Suppress();
    }
    if (!declined.empty()) {
      (void)client_->Decline(declined, kRefuseSeconds);
    }
    return std::nullopt;
  }

  // Prints and acknowledges the update. Returns the exit code once the task is terminal.
  std::optional<int> HandleUpdate(const rz::v1::TaskStatus& status) {
    if (absl::Status ack = client_->Acknowledge(status); !ack.ok()) {
      Say(std::string(ack.message()));
    }
    if (status.task_id() != task_id_.value()) {
      return std::nullopt;
    }
    if (status.state() != last_state_ || status.message() != last_message_) {
      last_state_ = status.state();
      last_message_ = status.message();
      const std::string host = launched_.has_value() && !launched_->hostname().empty()
                                   ? absl::StrCat(" (", launched_->hostname(), ")")
                                   : "";
      Say(absl::StrCat("task '", task_id_.value(), "' ", TaskStateName(status.state()),
                       " on agent '", status.agent_id(), "'", host,
                       status.message().empty() ? "" : absl::StrCat(": ", status.message())));
    }
    // An UNKNOWN answer also ends `rz run`: the master has nothing more to say of the task.
    if (!IsTerminal(status.state()) && status.state() != rz::v1::TASK_UNKNOWN) {
      return std::nullopt;
    }
    if (status.state() == rz::v1::TASK_FINISHED || status.state() == rz::v1::TASK_FAILED ||
        status.state() == rz::v1::TASK_KILLED) {
      CopyOutput(status);
    }
    return ExitCodeForStatus(status);
  }

  void CopyOutput(const rz::v1::TaskStatus& status) {
    std::string agent_http = launched_.has_value() ? launched_->agent_http_address() : "";
    if (agent_http.empty()) {
      agent_http = AgentHttpFromState(status.agent_id());
    }
    if (agent_http.empty()) {
      Say(absl::StrCat("cannot fetch the output: no HTTP address known for agent '",
                       status.agent_id(), "'"));
      return;
    }
    const FrameworkId framework = client_->framework_id();
    if (absl::Status copied = CopySandboxFile(agent_http, framework, task_id_, "stdout", stdout);
        !copied.ok()) {
      Say(absl::StrCat("cannot fetch stdout of task '", task_id_.value(), "': ", copied.message()));
    }
    // stderr is a courtesy: a missing file is not worth a complaint.
    (void)CopySandboxFile(agent_http, framework, task_id_, "stderr", stderr);
  }

  std::string AgentHttpFromState(const std::string& agent_id) {
    absl::StatusOr<rz::v1::State> state = GetState(options_.master);
    if (!state.ok()) {
      return "";
    }
    for (const rz::v1::AgentState& agent : state->agents()) {
      if (agent.info().id() == agent_id) {
        return agent.info().http_address();
      }
    }
    return "";
  }

  // Tears the framework down (its task with it, if still running) and returns `code`.
  int End(int code) {
    if (absl::Status status = client_->Teardown(); !status.ok()) {
      VLOG(1) << "teardown: " << status;
    }
    client_->Close();
    return code;
  }

  const RunOptions& options_;
  const Resources request_;
  const std::string name_;
  const TaskId task_id_;
  std::unique_ptr<scheduler::SchedulerClient> client_;
  std::optional<rz::v1::Offer> launched_;  // The offer the task was launched on.
  rz::v1::TaskState last_state_ = rz::v1::TASK_STATE_UNSPECIFIED;
  std::string last_message_;
};

}  // namespace

rz::v1::CommandInfo BuildCommand(const std::vector<std::string>& args) {
  rz::v1::CommandInfo command;
  if (args.size() == 1) {
    command.set_shell(true);
    command.set_value(args[0]);
    return command;
  }
  command.set_shell(false);
  command.set_value(args[0]);
  for (const std::string& arg : args) {
    command.add_arguments(arg);
  }
  return command;
}

std::string DefaultTaskName(const std::vector<std::string>& args) {
  std::string first = args.empty() ? "" : args[0];
  if (const size_t space = first.find_first_of(" \t"); space != std::string::npos) {
    first.resize(space);
  }
  if (const size_t slash = first.rfind('/'); slash != std::string::npos) {
    first = first.substr(slash + 1);
  }
  std::string name;
  for (char c : first) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (ok) {
      name += c;
    }
  }
  while (!name.empty() && name.front() == '.') {
    name.erase(name.begin());
  }
  return name.empty() ? "task" : name;
}

int ExitCodeForStatus(const rz::v1::TaskStatus& status) {
  if (status.state() == rz::v1::TASK_FINISHED) {
    return 0;
  }
  if (status.state() == rz::v1::TASK_FAILED && status.has_exit_status()) {
    const int wait_status = status.exit_status();
    if (WIFEXITED(wait_status)) {
      return WEXITSTATUS(wait_status);
    }
    if (WIFSIGNALED(wait_status)) {
      return 128 + WTERMSIG(wait_status);
    }
  }
  return kExitRzFailed;
}

int RunTask(const RunOptions& options) {
  if (options.command.empty()) {
    Say("no command given (usage: rz run [flags] -- CMD [ARGS...])");
    return kExitRzFailed;
  }
  Resources request;
  const int64_t cpus = ToFixed(options.cpus);
  const int64_t mem = ToFixed(options.mem);
  if (cpus <= 0 || mem <= 0) {
    Say(absl::StrCat("--cpus and --mem must be positive (got cpus ", options.cpus, ", mem ",
                     options.mem, ")"));
    return kExitRzFailed;
  }
  (void)request.AddScalar("cpus", cpus);
  (void)request.AddScalar("mem", mem);

  if (absl::Status status = CheckSomeAgentFits(options.master, request); !status.ok()) {
    Say(std::string(status.message()));
    return kExitRzFailed;
  }
  InstallInterruptHandlers();
  TaskRun run(options, std::move(request));
  return run.Run();
}

}  // namespace rz::cli
