#include "agent/containerizer/linux_containerizer.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS, so C++ would mangle pidfd_open().
extern "C" {
#include <sys/pidfd.h>
}

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "agent/containerizer/init/runtime_files.h"
#include "common/file_util.h"
#include "common/spawn_attributes.h"
#include "glog/logging.h"

namespace rz::agent {
namespace {

constexpr uint64_t kWakeToken = 0;  // epoll data of the eventfd; tokens start at 1.
constexpr char kInitPidFile[] = "init.pid";
constexpr char kCgroupFile[] = "cgroup";

std::string ErrnoText(int error) { return std::strerror(error); }

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat(path, ": ", ErrnoText(error)));
    }
    return absl::InternalError(absl::StrCat(path, ": ", ErrnoText(error)));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Field 22 of /proc/<pid>/stat: the process's start time in clock ticks since boot. Together
// with the pid and the boot id it names one process for good.
std::optional<uint64_t> ProcessStartTime(pid_t pid) {
  auto stat = ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) {
    return std::nullopt;
  }
  // The command name (field 2) is in parentheses and may contain spaces: skip past its end.
  const size_t close = stat->rfind(')');
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(*stat).substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state), so field 22 is fields[19].
  uint64_t start = 0;
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) {
    return std::nullopt;
  }
  return start;
}

// The init.pid record: "<pid> <start time> <boot id>".
struct InitRecord {
  pid_t pid = 0;
  uint64_t start_time = 0;
  std::string boot_id;
};

absl::StatusOr<InitRecord> ReadInitRecord(const std::string& runtime_dir) {
  const std::string path = absl::StrCat(runtime_dir, "/", kInitPidFile);
  auto text = ReadSmallFile(path);
  if (!text.ok()) {
    return text.status();
  }
  std::vector<std::string> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(*text), ' ', absl::SkipEmpty());
  InitRecord record;
  if (fields.size() != 3 || !absl::SimpleAtoi(fields[0], &record.pid) || record.pid <= 0 ||
      !absl::SimpleAtoi(fields[1], &record.start_time)) {
    return absl::DataLossError(absl::StrCat(path, ": malformed record '", *text, "'"));
  }
  record.boot_id = fields[2];
  return record;
}

std::string MiB(uint64_t bytes) {
  return absl::StrFormat("%.1f MiB", static_cast<double>(bytes) / (1 << 20));
}

// Sends `signal` to every process group led by a child of `pid` (the tasks an init started
// with setsid()), then to `pid` itself.
void SignalProcessTree(pid_t pid, int signal) {
  auto children = ReadSmallFile(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
  if (children.ok()) {
    for (absl::string_view field : absl::StrSplit(*children, ' ', absl::SkipEmpty())) {
      pid_t child = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(field), &child) && child > 0) {
        ::kill(-child, signal);
        ::kill(child, signal);
      }
    }
  }
  ::kill(pid, signal);
}

}  // namespace

std::string LinuxContainerizer::HostBootId() {
  auto text = ReadSmallFile("/proc/sys/kernel/random/boot_id");
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : std::string();
}

LinuxContainerizer::LinuxContainerizer(Options options, std::unique_ptr<Cgroups> cgroups)
    : options_(std::move(options)),
      cgroups_(std::move(cgroups)),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      cleanup_(2) {
  PCHECK(epoll_fd_ >= 0) << "epoll_create1";
  PCHECK(wake_fd_ >= 0) << "eventfd";
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeToken;
  PCHECK(::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) == 0) << "epoll_ctl";
  reaper_ = std::thread([this] { Reap(); });
}

LinuxContainerizer::~LinuxContainerizer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  PCHECK(::write(wake_fd_, &one, sizeof(one)) == sizeof(one)) << "eventfd write";
  reaper_.join();
  absl::MutexLock lock(&mu_);
  // Running containers stay running: a restarted agent recovers them.
  for (auto& [token, container] : watched_) {
    ::close(container->pidfd);
  }
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

std::string LinuxContainerizer::CgroupName(const ContainerSpec& spec) const {
  if (!cgroups_) {
    return "";
  }
  if (spec.group_id.empty()) {
    return absl::StrCat(options_.cgroup_parent, "/", spec.container_id);
  }
  return absl::StrCat(options_.cgroup_parent, "/", spec.group_id, "/", spec.container_id);
}

absl::StatusOr<pid_t> LinuxContainerizer::Launch(const ContainerSpec& spec, ExitCallback on_exit) {
  if (spec.container_id.empty() || spec.container_id.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid container id '", spec.container_id, "'"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (by_id_.contains(spec.container_id)) {
      return absl::AlreadyExistsError(
          absl::StrCat("container ", spec.container_id, " already exists"));
    }
  }

  // The task's argv and environment. Later entries override earlier ones: the task's
  // variables beat PATH/HOME, and the RZ_ variables beat the task's.
  std::map<std::string, std::string> environment = {{"PATH", options_.path}};
  if (spec.user.empty()) {
    environment["HOME"] = options_.home;  // The init sets the user's home otherwise.
  }
  for (const auto& variable : spec.command.environment().variables()) {
    environment[variable.name()] = variable.value();
  }
  for (const auto& [name, value] : spec.environment) {
    environment[name] = value;
  }
  environment["RZ_SANDBOX"] = spec.sandbox;
  environment["RZ_TASK_ID"] = spec.task_id.value();
  environment["RZ_FRAMEWORK_ID"] = spec.framework_id.value();
  environment["RZ_AGENT_ID"] = spec.agent_id.value();
  environment["RZ_CONTAINER_ID"] = spec.container_id;

  InitArgs args;
  args.init_path = options_.init_path;
  args.runtime_dir = absl::StrCat(options_.runtime_root, "/", spec.container_id);
  args.sandbox = spec.sandbox;
  if (!spec.user.empty()) {
    args.user = spec.user;
  }
  args.pid_namespace = spec.container.pid_namespace();
  for (const rz::v1::RLimit& limit : spec.container.rlimits()) {
    auto parsed = ParseRlimit(
        limit.type(), limit.has_soft() ? std::optional<uint64_t>(limit.soft()) : std::nullopt,
        limit.has_hard() ? std::optional<uint64_t>(limit.hard()) : std::nullopt);
    if (!parsed.ok()) {
      return parsed.status();
    }
    args.rlimits.push_back(*parsed);
  }
  if (options_.log_max_bytes > 0) {
    args.log_max_bytes = options_.log_max_bytes;
    args.log_max_files = options_.log_max_files;
  }
  if (spec.command.shell()) {
    args.command = {"/bin/sh", "-c", spec.command.value()};
  } else {
    if (spec.command.value().empty()) {
      return absl::InvalidArgumentError("command has no executable");
    }
    args.command.assign(spec.command.arguments().begin(), spec.command.arguments().end());
    if (args.command.empty()) {
      args.command.push_back(spec.command.value());
    } else {
      args.command[0] = spec.command.value();  // argv[0] names the executable to run.
    }
  }

  // The runtime directory, then the cgroups.
  std::error_code error;
  std::filesystem::create_directories(options_.runtime_root, error);
  if (::mkdir(args.runtime_dir.c_str(), 0700) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot create ", args.runtime_dir, ": ", ErrnoText(errno)));
  }
  auto container = std::make_unique<Container>();
  container->id = spec.container_id;
  container->cgroup = CgroupName(spec);
  container->runtime_dir = args.runtime_dir;
  container->child = true;
  // Undoes everything on a failed launch.
  auto undo = [&](absl::Status status) {
    if (!container->cgroup.empty()) {
      DestroyCgroup(container->cgroup);
    }
    std::filesystem::remove_all(container->runtime_dir, error);
    return status;
  };
  if (cgroups_) {
    if (absl::Status status = WriteFileAtomically(
            absl::StrCat(container->runtime_dir, "/", kCgroupFile), container->cgroup);
        !status.ok()) {
      return undo(status);
    }
    if (absl::Status status = cgroups_->Create(container->cgroup); !status.ok()) {
      return undo(status);
    }
    CgroupLimits limits;
    if (spec.cpus > 0) {
      limits.cpu_shares_cpus = spec.cpus;
    }
    limits.cpu_limit_cpus = spec.cpus_limit;
    const double mem_mb = spec.mem_limit_mb.value_or(spec.mem_mb);
    if (mem_mb > 0) {
      limits.memory_limit_bytes = static_cast<uint64_t>(mem_mb * (1 << 20));
      container->mem_limit_bytes = *limits.memory_limit_bytes;
    }
    limits.pids_max = spec.pids_max;
    if (absl::Status status = cgroups_->Apply(container->cgroup, limits); !status.ok()) {
      return undo(status);
    }
  }

  // On cgroups v1 the init moves itself (a write of "0" to each `tasks` file): a process moving
  // itself skips the kernel's threadgroup lock, which an agent-side write of the pid to
  // cgroup.procs waits on for an RCU grace period (~10 ms here). v2 has no `tasks` file.
  const bool self_join = cgroups_ && cgroups_->version() == 1;
  if (self_join) {
    for (const std::string& dir : cgroups_->Paths(container->cgroup)) {
      args.join_cgroups.push_back(absl::StrCat(dir, "/tasks"));
    }
  }

  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) {
    return undo(absl::InternalError(absl::StrCat("pipe2: ", ErrnoText(errno))));
  }
  // The child's copy of the read end must survive exec: dup it without O_CLOEXEC in the child.
  constexpr int kChildSyncFd = 3;
  args.sync_fd = kChildSyncFd;
  std::vector<std::string> argv_strings = BuildInitArgv(args);
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  env_strings.reserve(environment.size());
  for (const auto& [name, value] : environment) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& entry : env_strings) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  const std::string init_log = absl::StrCat(container->runtime_dir, "/init.stderr");
  SpawnAttributes spawn;
  posix_spawn_file_actions_addopen(spawn.actions(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(spawn.actions(), STDOUT_FILENO, init_log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(spawn.actions(), STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_adddup2(spawn.actions(), sync[0], kChildSyncFd);
  // The agent's own descriptors (sockets, pidfds) must not leak into containers.
  posix_spawn_file_actions_addclosefrom_np(spawn.actions(), kChildSyncFd + 1);
  // A process group of its own; an empty signal mask and default dispositions (the agent's
  // main thread blocks SIGTERM/SIGINT and libraries ignore SIGPIPE).
  spawn.NewProcessGroupWithCleanSignals();

  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, options_.init_path.c_str(), spawn.actions(), spawn.attr(),
                               argv.data(), envp.data());
  ::close(sync[0]);
  if (rc != 0) {
    ::close(sync[1]);
    return undo(absl::InternalError(
        absl::StrCat("cannot start ", options_.init_path, ": ", ErrnoText(rc))));
  }
  container->pid = pid;
  // From here a failure must also stop the init: closing the pipe without a byte makes it
  // exit without running anything.
  auto abort_init = [&](absl::Status status) {
    ::close(sync[1]);
    int ignored = 0;
    ::waitpid(pid, &ignored, 0);
    return undo(status);
  };
  if (cgroups_ && !self_join) {
    if (absl::Status status = cgroups_->Place(container->cgroup, pid); !status.ok()) {
      return abort_init(status);
    }
  }
  const std::optional<uint64_t> start_time = ProcessStartTime(pid);
  if (!start_time) {
    return abort_init(absl::InternalError(absl::StrCat("cannot read /proc/", pid, "/stat")));
  }
  if (absl::Status status =
          WriteFileAtomically(absl::StrCat(container->runtime_dir, "/", kInitPidFile),
                              absl::StrCat(pid, " ", *start_time, " ", options_.boot_id, "\n"));
      !status.ok()) {
    return abort_init(status);
  }
  container->pidfd = ::pidfd_open(pid, 0);
  if (container->pidfd < 0) {
    return abort_init(absl::InternalError(absl::StrCat("pidfd_open: ", ErrnoText(errno))));
  }
  const char go = 1;
  if (::write(sync[1], &go, 1) != 1) {
    const int write_error = errno;
    ::close(container->pidfd);
    return abort_init(
        absl::InternalError(absl::StrCat("cannot release the init: ", ErrnoText(write_error))));
  }
  ::close(sync[1]);
  container->on_exit = std::move(on_exit);
  VLOG(1) << "container " << spec.container_id << " for task " << spec.task_id << " is pid " << pid;
  Watch(std::move(container));
  return pid;
}

void LinuxContainerizer::Watch(std::unique_ptr<Container> container) {
  absl::MutexLock lock(&mu_);
  const uint64_t token = next_token_++;
  by_id_[container->id] = token;
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = token;
  PCHECK(::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, container->pidfd, &event) == 0) << "epoll_ctl";
  watched_.emplace(token, std::move(container));
}

void LinuxContainerizer::Reap() {
  constexpr int kMaxEvents = 16;
  epoll_event events[kMaxEvents];
  while (true) {
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, -1);
    if (n < 0) {
      PCHECK(errno == EINTR) << "epoll_wait";
      continue;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t token = events[i].data.u64;
      if (token == kWakeToken) {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          return;
        }
        continue;
      }
      std::unique_ptr<Container> container;
      std::optional<int> status;
      {
        absl::MutexLock lock(&mu_);
        auto it = watched_.find(token);
        if (it == watched_.end()) {
          continue;
        }
        if (it->second->child) {
          int wait_status = 0;
          const pid_t reaped = ::waitpid(it->second->pid, &wait_status, WNOHANG);
          if (reaped == 0) {
            continue;  // A readable pidfd means exited; be robust anyway.
          }
          if (reaped > 0) {
            status = wait_status;
          }
        }
        ::close(it->second->pidfd);  // Also removes it from the epoll set.
        it->second->pidfd = -1;
        container = std::move(it->second);
        watched_.erase(it);
        // The id stays in by_id_ (pointing nowhere) until Finish() is done, so that a Kill
        // meanwhile still reaches the cgroup and a relaunch of the same id waits.
      }
      cleanup_.Submit([this, container = std::move(container), status]() mutable {
        Finish(std::move(container), status);
      });
    }
  }
}

Termination LinuxContainerizer::Conclude(const Container& container,
                                         std::optional<int> waited_status) {
  Termination termination;
  auto recorded = ReadStatusFile(container.runtime_dir);
  if (recorded.ok()) {
    termination.wait_status = recorded->wait_status;
    termination.message = recorded->message;
  } else if (waited_status) {
    // The init died before recording the task's end (killed with its container). Its own
    // status says how.
    termination.wait_status = *waited_status;
    if (WIFSIGNALED(*waited_status)) {
      termination.message =
          absl::StrCat("container init killed by signal ", WTERMSIG(*waited_status));
    }
  } else {
    termination.reason = rz::v1::TaskStatus::REASON_CONTAINER_RECOVERY_FAILED;
    termination.message = absl::StrCat(
        "container init (pid ", container.pid,
        ") ended without recording the task's exit status: ", recorded.status().message());
  }

  if (cgroups_ && !container.cgroup.empty()) {
    if (auto oom = cgroups_->OomKilled(container.cgroup); oom.ok() && *oom) {
      termination.reason = rz::v1::TaskStatus::REASON_CONTAINER_LIMITATION_MEMORY;
      termination.limitation = true;
      uint64_t peak = 0;
      if (auto stats = cgroups_->Statistics(container.cgroup); stats.ok()) {
        peak = stats->mem_peak_bytes();
      }
      termination.message =
          absl::StrCat("memory limit ", MiB(container.mem_limit_bytes), " exceeded (peak usage ",
                       MiB(peak), "); the kernel's OOM killer stopped the task");
    } else if (auto pids = cgroups_->PidsLimitHit(container.cgroup);
               pids.ok() && *pids && termination.wait_status && *termination.wait_status != 0) {
      termination.reason = rz::v1::TaskStatus::REASON_CONTAINER_LIMITATION_PIDS;
      termination.limitation = true;
      termination.message =
          absl::StrCat("the task hit its process limit (pids.max) and exited with status ",
                       ExitCodeOf(*termination.wait_status));
    }
  }
  return termination;
}

void LinuxContainerizer::Finish(std::unique_ptr<Container> container,
                                std::optional<int> waited_status) {
  Termination termination = Conclude(*container, waited_status);
  // Whatever the task left behind (daemons, children of a dead init) dies with the container.
  if (!container->cgroup.empty()) {
    DestroyCgroup(container->cgroup);
    // The last container of a group takes the group's parent cgroup with it.
    const size_t slash = container->cgroup.rfind('/');
    const std::string parent = container->cgroup.substr(0, slash);
    if (parent != options_.cgroup_parent) {
      if (auto siblings = cgroups_->List(parent); siblings.ok() && siblings->empty()) {
        DestroyCgroup(parent);
      }
    }
  }
  std::error_code error;
  std::filesystem::remove_all(container->runtime_dir, error);
  if (error) {
    LOG(WARNING) << "cannot remove " << container->runtime_dir << ": " << error.message();
  }
  {
    absl::MutexLock lock(&mu_);
    by_id_.erase(container->id);
  }
  if (container->on_exit) {
    std::move(container->on_exit)(std::move(termination));
  }
}

absl::Status LinuxContainerizer::KillAll(const std::string& cgroup, pid_t pid) {
  if (cgroups_ && !cgroup.empty()) {
    absl::Status status = cgroups_->KillAll(cgroup);
    // NotFound: the container exited meanwhile and its cleanup removed the cgroup.
    return absl::IsNotFound(status) ? absl::OkStatus() : status;
  }
  SignalProcessTree(pid, SIGKILL);
  return absl::OkStatus();
}

void LinuxContainerizer::DestroyCgroup(const std::string& cgroup) {
  if (absl::Status status = cgroups_->Destroy(cgroup); !status.ok()) {
    LOG(ERROR) << "cannot destroy cgroup " << cgroup << ": " << status;
  }
}

absl::Status LinuxContainerizer::Kill(const std::string& container_id, int signal) {
  std::string cgroup;
  pid_t pid = 0;
  {
    absl::MutexLock lock(&mu_);
    auto id = by_id_.find(container_id);
    if (id == by_id_.end()) {
      return absl::NotFoundError(absl::StrCat("container ", container_id, " is gone"));
    }
    auto it = watched_.find(id->second);
    if (it == watched_.end()) {
      return absl::NotFoundError(absl::StrCat("container ", container_id, " has exited"));
    }
    cgroup = it->second->cgroup;
    pid = it->second->pid;
    if (signal == SIGKILL) {
      // The init first, under the lock so that the reaper cannot reap it (and its pid be
      // reused) meanwhile: it may not have moved into its cgroups yet.
      ::kill(pid, SIGKILL);
    } else {
      // The init is unreaped while watched (or verified by start time at recovery), so the
      // pid names it. It forwards the signal to the task.
      if (::kill(pid, signal) != 0 && errno != ESRCH) {
        return absl::InternalError(
            absl::StrCat("kill(", pid, ", ", signal, "): ", ErrnoText(errno)));
      }
      return absl::OkStatus();
    }
  }
  return KillAll(cgroup, pid);
}

void LinuxContainerizer::DestroyAll(absl::Duration timeout) {
  std::vector<std::pair<std::string, pid_t>> targets;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [token, container] : watched_) {
      targets.emplace_back(container->cgroup, container->pid);
      ::kill(container->pid, SIGKILL);  // Unreaped while watched: the pid names the init.
    }
  }
  for (const auto& [cgroup, pid] : targets) {
    if (absl::Status status = KillAll(cgroup, pid); !status.ok()) {
      LOG(ERROR) << "cannot kill container in " << cgroup << ": " << status;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    auto gone = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return by_id_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&gone), timeout)) {
      LOG(ERROR) << by_id_.size() << " containers outlived DestroyAll()";
      return;
    }
  }
  // Nothing of this agent is left: its parent cgroup goes too.
  if (cgroups_) {
    if (auto children = cgroups_->List(options_.cgroup_parent);
        children.ok() && children->empty()) {
      DestroyCgroup(options_.cgroup_parent);
    }
  }
}

absl::StatusOr<rz::v1::ResourceStatistics> LinuxContainerizer::Usage(
    const std::string& container_id) {
  std::string cgroup;
  {
    absl::MutexLock lock(&mu_);
    auto id = by_id_.find(container_id);
    if (id == by_id_.end() || !watched_.contains(id->second)) {
      return absl::NotFoundError(absl::StrCat("container ", container_id, " is gone"));
    }
    cgroup = watched_.at(id->second)->cgroup;
  }
  if (!cgroups_ || cgroup.empty()) {
    return absl::UnimplementedError("usage statistics need cgroups");
  }
  return cgroups_->Statistics(cgroup);
}

std::optional<Containerizer::Description> LinuxContainerizer::Describe(
    const std::string& container_id) {
  Description description;
  std::string cgroup;
  {
    absl::MutexLock lock(&mu_);
    auto id = by_id_.find(container_id);
    if (id == by_id_.end() || !watched_.contains(id->second)) {
      return std::nullopt;
    }
    const Container& container = *watched_.at(id->second);
    description.pid = container.pid;
    cgroup = container.cgroup;
  }
  if (cgroups_ && !cgroup.empty()) {
    description.cgroups = cgroups_->Paths(cgroup);
  }
  return description;
}

void LinuxContainerizer::DestroyOrphan(const std::string& runtime_dir, const std::string& cgroup) {
  if (cgroups_ && !cgroup.empty()) {
    DestroyCgroup(cgroup);
  } else if (auto record = ReadInitRecord(runtime_dir);
             record.ok() && record->boot_id == options_.boot_id &&
             ProcessStartTime(record->pid) == record->start_time) {
    SignalProcessTree(record->pid, SIGKILL);
  }
  std::error_code error;
  std::filesystem::remove_all(runtime_dir, error);
}

absl::StatusOr<std::map<std::string, RecoveredContainer>> LinuxContainerizer::Recover(
    const std::set<std::string>& known,
    const std::function<ExitCallback(const std::string& container_id)>& make_callback) {
  std::map<std::string, RecoveredContainer> result;
  std::set<std::string> seen_cgroups;

  std::error_code error;
  std::filesystem::create_directories(options_.runtime_root, error);
  std::vector<std::string> ids;
  for (const auto& entry : std::filesystem::directory_iterator(options_.runtime_root, error)) {
    if (entry.is_directory()) {
      ids.push_back(entry.path().filename().string());
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot list ", options_.runtime_root, ": ", error.message()));
  }

  for (const std::string& id : ids) {
    const std::string runtime_dir = absl::StrCat(options_.runtime_root, "/", id);
    std::string cgroup;
    if (auto text = ReadSmallFile(absl::StrCat(runtime_dir, "/", kCgroupFile)); text.ok()) {
      cgroup = std::string(absl::StripAsciiWhitespace(*text));
      seen_cgroups.insert(cgroup);
    }
    if (!known.contains(id)) {
      LOG(WARNING) << "destroying orphan container " << id << " (not in the checkpoint)";
      DestroyOrphan(runtime_dir, cgroup);
      continue;
    }

    auto container = std::make_unique<Container>();
    container->id = id;
    container->cgroup = cgroups_ ? cgroup : "";
    container->runtime_dir = runtime_dir;

    RecoveredContainer recovered;
    auto record = ReadInitRecord(runtime_dir);
    if (record.ok() && !options_.boot_id.empty() && record->boot_id != options_.boot_id) {
      recovered.termination.reason = rz::v1::TaskStatus::REASON_AGENT_REBOOTED;
      recovered.termination.message = "the machine rebooted; the container died with it";
      std::filesystem::remove_all(runtime_dir, error);
      result[id] = std::move(recovered);
      continue;
    }
    if (record.ok() && ProcessStartTime(record->pid) == record->start_time) {
      const int pidfd = ::pidfd_open(record->pid, 0);
      if (pidfd >= 0) {
        container->pid = record->pid;
        container->pidfd = pidfd;
        container->on_exit = make_callback(id);
        recovered.state = RecoveredContainer::State::kRunning;
        recovered.pid = record->pid;
        result[id] = recovered;
        Watch(std::move(container));
        continue;
      }
    }
    if (!record.ok() && !absl::IsNotFound(record.status())) {
      LOG(WARNING) << "container " << id << ": " << record.status();
    }
    // The init is gone: the status file (if any) says how the task ended.
    if (record.ok()) {
      container->pid = record->pid;
    }
    recovered.termination = Conclude(*container, std::nullopt);
    if (!record.ok()) {
      recovered.termination.reason = rz::v1::TaskStatus::REASON_CONTAINER_RECOVERY_FAILED;
      recovered.termination.message =
          absl::StrCat("the container never started: ", record.status().message());
    }
    if (!container->cgroup.empty()) {
      DestroyCgroup(container->cgroup);
    }
    std::filesystem::remove_all(runtime_dir, error);
    result[id] = std::move(recovered);
  }

  // Cgroups under our parent that no runtime directory explains are orphans too.
  if (cgroups_) {
    auto children = cgroups_->List(options_.cgroup_parent);
    if (children.ok()) {
      for (const std::string& child : *children) {
        const std::string name = absl::StrCat(options_.cgroup_parent, "/", child);
        if (seen_cgroups.contains(name) || known.contains(child)) {
          continue;
        }
        // A group's parent cgroup holds only known containers' cgroups: keep it if one of
        // them is still there.
        bool holds_known = false;
        for (const std::string& cgroup : seen_cgroups) {
          if (cgroup.starts_with(name + "/") && known.contains(cgroup.substr(name.size() + 1))) {
            holds_known = true;
          }
        }
        if (!holds_known) {
          LOG(WARNING) << "destroying orphan cgroup " << name;
          DestroyCgroup(name);
        }
      }
    } else if (!absl::IsNotFound(children.status())) {
      LOG(WARNING) << "cannot list cgroups under " << options_.cgroup_parent << ": "
                   << children.status();
    }
  }
  return result;
}

}  // namespace rz::agent
