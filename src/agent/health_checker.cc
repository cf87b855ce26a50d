#include "agent/health_checker.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS, so C++ would mangle pidfd_open().
extern "C" {
#include <sys/pidfd.h>
}

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstring>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/spawn_attributes.h"
#include "glog/logging.h"
#include "httplib.h"

namespace rz::agent {
namespace {

using rz::v1::HealthCheck;

constexpr absl::Duration kDefaultDelay = absl::Seconds(15);
constexpr absl::Duration kDefaultInterval = absl::Seconds(10);
constexpr absl::Duration kDefaultTimeout = absl::Seconds(20);
constexpr absl::Duration kDefaultGracePeriod = absl::Seconds(10);
constexpr uint32_t kDefaultConsecutiveFailures = 3;

// util-linux; part of every Debian system.
constexpr char kSetpriv[] = "/usr/bin/setpriv";

struct ProbeResult {
  bool healthy = false;
  std::string message;
};

// strerror_r: probes run concurrently on worker threads.
std::string ErrnoText(int error) {
  char buffer[256];
  return ::strerror_r(error, buffer, sizeof(buffer));
}

std::string TimedOut(absl::Duration timeout) {
  return absl::StrCat("timed out after ", absl::FormatDuration(timeout));
}

// Milliseconds left until `deadline` for poll(), rounded up so a wait never ends early.
int PollMillis(absl::Time deadline) {
  const absl::Duration left = deadline - RealClock::Get().Now();
  if (left <= absl::ZeroDuration()) {
    return 0;
  }
  return static_cast<int>(std::min<int64_t>(
      absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), INT_MAX));
}

absl::Status CheckSeconds(const char* field, double seconds) {
  if (!std::isfinite(seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("health_check.", field, ": ", seconds, " is not a finite duration"));
  }
  if (seconds < 0.0) {
    return absl::InvalidArgumentError(
        absl::StrCat("health_check.", field, ": ", seconds, " is negative"));
  }
  return absl::OkStatus();
}

absl::Status CheckPort(const char* field, uint32_t port) {
  if (port == 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("health_check.", field, ": ", port, " is not a port"));
  }
  return absl::OkStatus();
}

// Brackets an IPv6 literal so it can precede ":port".
std::string HostPort(const std::string& host, uint32_t port) {
  if (host.find(':') != std::string::npos) {
    return absl::StrCat("[", host, "]:", port);
  }
  return absl::StrCat(host, ":", port);
}

// The group a command check runs as when only a uid is given: the user's primary group, so the
// check never keeps the agent's (root) group.
std::optional<gid_t> PrimaryGroup(uid_t uid) {
  struct passwd pw;
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwuid_r(uid, &pw, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return pw.pw_gid;
}

// Runs the check command to completion or until `timeout`, then SIGKILLs its process group so
// nothing it started outlives the check.
//
// The command is spawned, never forked: posix_spawn (clone with CLONE_VM|CLONE_VFORK in glibc)
// is safe in the multithreaded agent and does not copy its address space. posix_spawn cannot
// switch users, and doing setgroups/setresgid/setresuid ourselves in a vfork child is unsafe:
// glibc's set*id broadcast the change to every thread of the process, and a vfork child shares
// the parent's memory and thread list. So when the check must run as another user, we spawn
// util-linux `setpriv`, which switches ids in its own process and then execs the command.
ProbeResult RunCommand(const HealthCheck& check, const HealthChecker::Target& target,
                       absl::Duration timeout) {
  const rz::v1::CommandInfo& command = check.command();

  // Later entries override earlier ones: the check's variables beat the task's.
  std::map<std::string, std::string> environment;
  for (const std::string& entry : target.environment) {
    const size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      continue;
    }
    environment[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& variable : command.environment().variables()) {
    environment[variable.name()] = variable.value();
  }

  std::vector<std::string> args;
  const uid_t own_uid = ::geteuid();
  const gid_t own_gid = ::getegid();
  if ((target.uid.has_value() && *target.uid != own_uid) ||
      (target.gid.has_value() && *target.gid != own_gid)) {
    const uid_t uid = target.uid.value_or(own_uid);
    std::optional<gid_t> gid = target.gid;
    if (!gid.has_value()) {
      gid = PrimaryGroup(uid);
      if (!gid.has_value()) {
        return {false, absl::StrCat("uid ", uid, " has no passwd entry to take a group from")};
      }
    }
    args = {kSetpriv, absl::StrCat("--reuid=", uid), absl::StrCat("--regid=", *gid),
            "--clear-groups", "--"};
  }
  if (command.shell()) {
    args.insert(args.end(), {"/bin/sh", "-c", command.value()});
  } else {
    // The shell resolves `value` against the check's PATH (not the agent's) and execs it with
    // arguments[1..]; arguments[0] cannot survive the exec, so argv[0] is `value`.
    args.insert(args.end(), {"/bin/sh", "-c", R"(exec "$0" "$@")", command.value()});
    for (int i = 1; i < command.arguments_size(); ++i) {
      args.push_back(command.arguments(i));
    }
  }

  std::vector<std::string> env_strings;
  env_strings.reserve(environment.size());
  for (const auto& [name, value] : environment) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (std::string& entry : env_strings) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  SpawnAttributes spawn;
  posix_spawn_file_actions_addopen(spawn.actions(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(spawn.actions(), STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(spawn.actions(), STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(spawn.actions(), STDERR_FILENO + 1);
  if (!target.sandbox.empty()) {
    posix_spawn_file_actions_addchdir_np(spawn.actions(), target.sandbox.c_str());
  }
  // Own process group (pgid = pid) so a timeout kills everything the check started; an empty
  // signal mask and default dispositions, whatever the agent's threads block or ignore.
  spawn.NewProcessGroupWithCleanSignals();

  const absl::Time deadline = RealClock::Get().Now() + timeout;
  pid_t pid = 0;
  const int rc =
      ::posix_spawn(&pid, argv[0], spawn.actions(), spawn.attr(), argv.data(), envp.data());
  if (rc != 0) {
    return {false, absl::StrCat("cannot start health check command '", args[0], "' in '",
                                target.sandbox, "': ", ErrnoText(rc))};
  }

  bool timed_out = false;
  const int pidfd = ::pidfd_open(pid, 0);
  if (pidfd < 0) {
    // Cannot happen on kernels >= 5.3 while the child is unreaped; kill it rather than wait
    // without a bound.
    LOG(ERROR) << "pidfd_open(" << pid << "): " << ErrnoText(errno);
    timed_out = true;
  } else {
    pollfd fd{.fd = pidfd, .events = POLLIN, .revents = 0};
    while (true) {
      const int ready = ::poll(&fd, 1, PollMillis(deadline));
      if (ready > 0) {
        break;
      }
      if (ready == 0) {
        timed_out = true;
        break;
      }
      PCHECK(errno == EINTR) << "poll on pidfd";
    }
    ::close(pidfd);
  }

  // The leader is unreaped (alive or a zombie), so its pid, the group id, names no other group.
  ::kill(-pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    PCHECK(errno == EINTR) << "waitpid(" << pid << ")";
  }

  if (timed_out) {
    return {false, TimedOut(timeout)};
  }
  if (WIFEXITED(status)) {
    return {WEXITSTATUS(status) == 0,
            absl::StrCat("command exited with status ", WEXITSTATUS(status))};
  }
  const char* name = ::sigabbrev_np(WTERMSIG(status));
  return {false, absl::StrCat(
                     "command was killed by signal ",
                     name != nullptr ? absl::StrCat("SIG", name) : absl::StrCat(WTERMSIG(status)))};
}

// A local probe: https is accepted without verifying the certificate, since the task serves
// it on its own host and usually with a certificate issued for its public name.
ProbeResult GetHttp(const HealthCheck& check, const HealthChecker::Target& target,
                    absl::Duration timeout) {
  const std::string scheme = check.http().scheme().empty() ? "http" : check.http().scheme();
  const std::string path = check.http().path().empty() ? "/" : check.http().path();
  const std::string base = absl::StrCat(scheme, "://", HostPort(target.host, check.http().port()));
  const std::string url = absl::StrCat(base, path);

  httplib::Client client(base);
  if (!client.is_valid()) {
    return {false, absl::StrCat("GET ", url, ": cannot make an HTTP client")};
  }
  const int64_t seconds = absl::ToInt64Seconds(timeout);
  const int64_t micros = absl::ToInt64Microseconds(timeout - absl::Seconds(seconds));
  client.set_connection_timeout(seconds, micros);
  client.set_read_timeout(seconds, micros);
  client.set_write_timeout(seconds, micros);
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
  client.enable_server_certificate_verification(false);
#endif

  const absl::Time start = RealClock::Get().Now();
  const httplib::Result response = client.Get(path);
  if (!response) {
    if (RealClock::Get().Now() - start >= timeout) {
      return {false, TimedOut(timeout)};
    }
    return {false, absl::StrCat("GET ", url, ": ", httplib::to_string(response.error()))};
  }
  const int code = response->status;
  return {code >= 200 && code < 400, absl::StrCat("HTTP ", code)};
}

// Tries each address of the target host in turn, all within one deadline.
ProbeResult ConnectTcp(const HealthCheck& check, const HealthChecker::Target& target,
                       absl::Duration timeout) {
  const std::string where = HostPort(target.host, check.tcp().port());
  const absl::Time deadline = RealClock::Get().Now() + timeout;

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* addresses = nullptr;
  const int gai = ::getaddrinfo(target.host.c_str(), absl::StrCat(check.tcp().port()).c_str(),
                                &hints, &addresses);
  if (gai != 0) {
    return {false, absl::StrCat("connect to ", where, ": ", ::gai_strerror(gai))};
  }

  std::string error = "no address";
  for (const addrinfo* address = addresses; address != nullptr; address = address->ai_next) {
    const int fd = ::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            address->ai_protocol);
    if (fd < 0) {
      error = ErrnoText(errno);
      continue;
    }
    int result = ::connect(fd, address->ai_addr, address->ai_addrlen) == 0 ? 0 : errno;
    if (result == EINPROGRESS) {
      pollfd pfd{.fd = fd, .events = POLLOUT, .revents = 0};
      int ready = 0;
      do {
        ready = ::poll(&pfd, 1, PollMillis(deadline));
      } while (ready < 0 && errno == EINTR);
      if (ready == 0) {
        ::close(fd);
        ::freeaddrinfo(addresses);
        return {false, TimedOut(timeout)};
      }
      socklen_t length = sizeof(result);
      if (ready < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &result, &length) != 0) {
        result = errno;
      }
    }
    ::close(fd);
    if (result == 0) {
      ::freeaddrinfo(addresses);
      return {true, absl::StrCat("connected to ", where)};
    }
    error = ErrnoText(result);
  }
  ::freeaddrinfo(addresses);
  return {false, absl::StrCat("connect to ", where, ": ", error)};
}

ProbeResult Probe(const HealthCheck& check, const HealthChecker::Target& target,
                  absl::Duration timeout) {
  switch (check.type()) {
    case HealthCheck::COMMAND:
      return RunCommand(check, target, timeout);
    case HealthCheck::HTTP:
      return GetHttp(check, target, timeout);
    case HealthCheck::TCP:
      return ConnectTcp(check, target, timeout);
    default:
      // The constructor requires a validated check.
      LOG(FATAL) << "unvalidated health check type " << check.type();
  }
  return {};
}

}  // namespace

absl::Status ValidateHealthCheck(const HealthCheck& check) {
  switch (check.type()) {
    case HealthCheck::COMMAND:
      if (check.command().value().empty()) {
        return absl::InvalidArgumentError(
            "health_check.command.value: a COMMAND check needs a command");
      }
      break;
    case HealthCheck::HTTP: {
      if (absl::Status status = CheckPort("http.port", check.http().port()); !status.ok()) {
        return status;
      }
      const std::string& scheme = check.http().scheme();
      if (!scheme.empty() && scheme != "http" && scheme != "https") {
        return absl::InvalidArgumentError(
            absl::StrCat("health_check.http.scheme: '", scheme, "' is not http or https"));
      }
      const std::string& path = check.http().path();
      if (!path.empty() && path.front() != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat("health_check.http.path: '", path, "' does not start with '/'"));
      }
      break;
    }
    case HealthCheck::TCP:
      if (absl::Status status = CheckPort("tcp.port", check.tcp().port()); !status.ok()) {
        return status;
      }
      break;
    case HealthCheck::TYPE_UNSPECIFIED:
      return absl::InvalidArgumentError("health_check.type: must be COMMAND, HTTP or TCP");
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("health_check.type: ", check.type(), " is not a check type"));
  }
  // A body for another type is almost certainly a mistake in the request; say so rather than
  // silently check something else.
  const std::string type = HealthCheck::Type_Name(check.type());
  if (check.has_command() && check.type() != HealthCheck::COMMAND) {
    return absl::InvalidArgumentError(
        absl::StrCat("health_check.command: set on a ", type, " check"));
  }
  if (check.has_http() && check.type() != HealthCheck::HTTP) {
    return absl::InvalidArgumentError(absl::StrCat("health_check.http: set on a ", type, " check"));
  }
  if (check.has_tcp() && check.type() != HealthCheck::TCP) {
    return absl::InvalidArgumentError(absl::StrCat("health_check.tcp: set on a ", type, " check"));
  }

  for (const auto& [field, seconds] :
       {std::pair<const char*, double>{"delay_seconds", check.delay_seconds()},
        {"interval_seconds", check.interval_seconds()},
        {"timeout_seconds", check.timeout_seconds()},
        {"grace_period_seconds", check.grace_period_seconds()}}) {
    if (absl::Status status = CheckSeconds(field, seconds); !status.ok()) {
      return status;
    }
  }
  // 0 means "the default" in the proto, so these hold today; they guard the defaults.
  const HealthCheckTiming timing = TimingOf(check);
  if (timing.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("health_check.timeout_seconds: must be positive");
  }
  if (timing.consecutive_failures < 1) {
    return absl::InvalidArgumentError("health_check.consecutive_failures: must be at least 1");
  }
  return absl::OkStatus();
}

HealthCheckTiming TimingOf(const HealthCheck& check) {
  return HealthCheckTiming{
      .delay = check.has_delay_seconds() ? absl::Seconds(check.delay_seconds()) : kDefaultDelay,
      .interval =
          check.has_interval_seconds() ? absl::Seconds(check.interval_seconds()) : kDefaultInterval,
      .timeout = check.has_timeout_seconds() && check.timeout_seconds() > 0
                     ? absl::Seconds(check.timeout_seconds())
                     : kDefaultTimeout,
      .grace_period = check.has_grace_period_seconds() ? absl::Seconds(check.grace_period_seconds())
                                                       : kDefaultGracePeriod,
      .consecutive_failures = check.has_consecutive_failures() && check.consecutive_failures() > 0
                                  ? check.consecutive_failures()
                                  : kDefaultConsecutiveFailures,
  };
}

HealthChecker::HealthChecker(EventLoop& loop, BlockingRunner run_blocking, HealthCheck check,
                             Target target, Callback on_result)
    : loop_(loop),
      run_blocking_(std::move(run_blocking)),
      check_(std::move(check)),
      timing_(TimingOf(check_)),
      target_(std::move(target)),
      on_result_(std::move(on_result)) {
  DCHECK(ValidateHealthCheck(check_).ok()) << ValidateHealthCheck(check_);
}

HealthChecker::~HealthChecker() { Stop(); }

void HealthChecker::Start() {
  DCHECK(loop_.IsLoopThread());
  CHECK(!started_) << "HealthChecker::Start() called twice";
  CHECK(alive_ != nullptr) << "HealthChecker::Start() after Stop()";
  started_ = true;
  start_time_ = loop_.clock().Now();
  ScheduleCheck(timing_.delay);
}

void HealthChecker::Stop() {
  DCHECK(loop_.IsLoopThread());
  if (timer_.has_value()) {
    loop_.CancelTimer(*timer_);
    timer_.reset();
  }
  // Expires every weak copy: a timer that already fired and a result already posted both find
  // the checker gone.
  alive_.reset();
}

void HealthChecker::ScheduleCheck(absl::Duration delay) {
  timer_ = loop_.PostAfter(delay, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) {
      return;
    }
    timer_.reset();
    RunCheck();
  });
}

void HealthChecker::RunCheck() {
  const absl::Time started = loop_.clock().Now();
  // The probe gets copies: the checker may be destroyed while it runs.
  run_blocking_([loop = &loop_, check = check_, target = target_, timeout = timing_.timeout,
                 started, this, alive = std::weak_ptr<bool>(alive_)]() mutable {
    ProbeResult result = Probe(check, target, timeout);
    loop->Post([this, alive = std::move(alive), started, result = std::move(result)]() mutable {
      if (alive.expired()) {
        return;
      }
      OnCheckDone(started, result.healthy, std::move(result.message));
    });
  });
}

void HealthChecker::OnCheckDone(absl::Time started, bool healthy, std::string message) {
  DCHECK(loop_.IsLoopThread());
  if (healthy) {
    const bool changed = !had_success_ || consecutive_failures_ > 0;
    had_success_ = true;
    consecutive_failures_ = 0;
    if (changed && !Report({.healthy = true,
                            .consecutive_failures = 0,
                            .kill = false,
                            .message = std::move(message)})) {
      return;
    }
  } else if (!had_success_ && started < start_time_ + timing_.grace_period) {
    VLOG(1) << "health check failed within the grace period (not counted): " << message;
  } else {
    ++consecutive_failures_;
    HealthResult result{.healthy = false,
                        .consecutive_failures = consecutive_failures_,
                        .kill = consecutive_failures_ >= timing_.consecutive_failures,
                        .message = std::move(message)};
    if (result.kill) {
      // Stop first: the callback kills the task and may destroy the checker.
      const Callback callback = on_result_;
      Stop();
      callback(result);
      return;
    }
    if (!Report(result)) {
      return;
    }
  }
  ScheduleCheck(timing_.interval);
}

bool HealthChecker::Report(const HealthResult& result) {
  // Copies, because the callback may destroy the checker (and with it `on_result_`).
  const std::weak_ptr<bool> alive = alive_;
  const Callback callback = on_result_;
  callback(result);
  return !alive.expired();
}

}  // namespace rz::agent
