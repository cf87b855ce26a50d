#include "agent/posix_launcher.h"

#include <fcntl.h>
#include <pwd.h>
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
#include <cstdlib>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "glog/logging.h"

namespace rz::agent {
namespace {

constexpr uint64_t kWakeToken = 0;  // epoll data of the eventfd; handles start at 1.

std::string ErrnoText(int error) { return std::strerror(error); }

// Returns `file` resolved against `path` (a PATH value) the way execvp would, or NotFound.
// Relative PATH entries are taken relative to the sandbox, the task's working directory.
absl::StatusOr<std::string> SearchPath(const std::string& file, const std::string& path,
                                       const std::string& sandbox) {
  if (file.find('/') != std::string::npos) {
    return file;
  }
  for (const std::string& entry : std::vector<std::string>(absl::StrSplit(path, ':'))) {
    std::string dir = entry.empty() ? sandbox : entry;
    if (dir.front() != '/') {
      dir = absl::StrCat(sandbox, "/", dir);
    }
    const std::string candidate = absl::StrCat(dir, "/", file);
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("executable '", file, "' not found in PATH '", path, "'"));
}

// Owns the posix_spawn attribute objects so every return path destroys them.
class SpawnAttributes {
 public:
  SpawnAttributes() {
    posix_spawn_file_actions_init(&actions_);
    posix_spawnattr_init(&attr_);
  }
  ~SpawnAttributes() {
    posix_spawn_file_actions_destroy(&actions_);
    posix_spawnattr_destroy(&attr_);
  }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;

  posix_spawn_file_actions_t* actions() { return &actions_; }
  posix_spawnattr_t* attr() { return &attr_; }

 private:
  posix_spawn_file_actions_t actions_;
  posix_spawnattr_t attr_;
};

}  // namespace

PosixLauncher::Options PosixLauncher::CurrentProcessOptions() {
  Options options;
  if (const char* path = std::getenv("PATH"); path != nullptr && *path != '\0') {
    options.path = path;
  }
  if (const struct passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) {
    options.agent_user = pw->pw_name;
    if (pw->pw_dir != nullptr && *pw->pw_dir != '\0') {
      options.home = pw->pw_dir;
    }
  }
  return options;
}

PosixLauncher::PosixLauncher(Options options)
    : options_(std::move(options)),
      epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  PCHECK(epoll_fd_ >= 0) << "epoll_create1";
  PCHECK(wake_fd_ >= 0) << "eventfd";
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeToken;
  PCHECK(::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) == 0) << "epoll_ctl";
  reaper_ = std::thread([this] { Reap(); });
}

PosixLauncher::~PosixLauncher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  const uint64_t one = 1;
  PCHECK(::write(wake_fd_, &one, sizeof(one)) == sizeof(one)) << "eventfd write";
  reaper_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [handle, child] : children_) {
    ::close(child.pidfd);
  }
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

absl::StatusOr<LaunchHandle> PosixLauncher::Launch(const LaunchSpec& spec, ExitCallback on_exit) {
  if (!spec.user.empty() && spec.user != options_.agent_user) {
    return absl::FailedPreconditionError(absl::StrCat(
        "switching to user '", spec.user,
        "' needs the containerizer; the plain launcher runs tasks as the agent's user '",
        options_.agent_user, "'"));
  }

  // Later entries override earlier ones: the task's variables beat PATH/HOME, and the RZ_
  // variables beat the task's.
  std::map<std::string, std::string> environment = {{"PATH", options_.path},
                                                    {"HOME", options_.home}};
  for (const auto& variable : spec.command.environment().variables()) {
    environment[variable.name()] = variable.value();
  }
  environment["RZ_SANDBOX"] = spec.sandbox;
  environment["RZ_TASK_ID"] = spec.task_id.value();
  environment["RZ_FRAMEWORK_ID"] = spec.framework_id.value();
  environment["RZ_AGENT_ID"] = spec.agent_id.value();

  std::string file;
  std::vector<std::string> args;
  if (spec.command.shell()) {
    file = "/bin/sh";
    args = {"sh", "-c", spec.command.value()};
  } else {
    if (spec.command.value().empty()) {
      return absl::InvalidArgumentError("command has no executable");
    }
    auto resolved = SearchPath(spec.command.value(), environment["PATH"], spec.sandbox);
    if (!resolved.ok()) {
      return resolved.status();
    }
    file = *std::move(resolved);
    args.assign(spec.command.arguments().begin(), spec.command.arguments().end());
    if (args.empty()) {
      args.push_back(spec.command.value());
    }
  }

  std::vector<std::string> env_strings;
  env_strings.reserve(environment.size());
  for (const auto& [name, value] : environment) {
    env_strings.push_back(absl::StrCat(name, "=", value));
  }
  std::vector<char*> argv;
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& entry : env_strings) {
    envp.push_back(entry.data());
  }
  envp.push_back(nullptr);

  const std::string stdout_path = absl::StrCat(spec.sandbox, "/stdout");
  const std::string stderr_path = absl::StrCat(spec.sandbox, "/stderr");
  SpawnAttributes spawn;
  posix_spawn_file_actions_addopen(spawn.actions(), STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(spawn.actions(), STDOUT_FILENO, stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_addopen(spawn.actions(), STDERR_FILENO, stderr_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  // The agent's own descriptors (sockets, pidfds) must not leak into tasks, whether or not the
  // libraries that opened them asked for O_CLOEXEC.
  posix_spawn_file_actions_addclosefrom_np(spawn.actions(), STDERR_FILENO + 1);
  posix_spawn_file_actions_addchdir_np(spawn.actions(), spec.sandbox.c_str());

  // A process group of its own (pgid = pid) so a kill reaches everything the task started.
  // The agent's main thread blocks SIGTERM/SIGINT and libraries ignore SIGPIPE; a task must
  // start with an empty mask and default dispositions or it could not be killed gracefully.
  posix_spawnattr_setflags(spawn.attr(),
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(spawn.attr(), 0);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(spawn.attr(), &empty);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(spawn.attr(), &all);

  pid_t pid = 0;
  const int rc =
      ::posix_spawn(&pid, file.c_str(), spawn.actions(), spawn.attr(), argv.data(), envp.data());
  if (rc != 0) {
    const std::string message =
        absl::StrCat("cannot start '", file, "' in '", spec.sandbox, "': ", ErrnoText(rc));
    return rc == ENOENT ? absl::NotFoundError(message) : absl::InternalError(message);
  }

  const int pidfd = ::pidfd_open(pid, 0);
  if (pidfd < 0) {
    // Cannot happen on kernels >= 5.3 while the child is unreaped; do not leave it unwatched.
    const int error = errno;
    ::kill(-pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return absl::InternalError(absl::StrCat("pidfd_open: ", ErrnoText(error)));
  }

  absl::MutexLock lock(&mu_);
  const LaunchHandle handle = next_handle_++;
  children_.emplace(handle, Child{.pid = pid, .pidfd = pidfd, .on_exit = std::move(on_exit)});
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = handle;
  PCHECK(::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pidfd, &event) == 0) << "epoll_ctl";
  VLOG(1) << "started task " << spec.task_id << " as pid " << pid;
  return handle;
}

absl::Status PosixLauncher::Kill(LaunchHandle handle, int signal) {
  absl::MutexLock lock(&mu_);
  auto it = children_.find(handle);
  if (it == children_.end()) {
    return absl::NotFoundError(absl::StrCat("process of launch ", handle, " has exited"));
  }
  // The leader is unreaped (alive or a zombie), so its pid, which is the group id, cannot
  // name another group.
  if (::kill(-it->second.pid, signal) != 0) {
    const int error = errno;
    if (error == ESRCH) {
      return absl::NotFoundError(absl::StrCat("process group ", it->second.pid, " is gone"));
    }
    return absl::InternalError(
        absl::StrCat("kill(-", it->second.pid, ", ", signal, "): ", ErrnoText(error)));
  }
  return absl::OkStatus();
}

void PosixLauncher::Reap() {
  constexpr int kMaxEvents = 16;
  epoll_event events[kMaxEvents];
  while (true) {
    const int n = ::epoll_wait(epoll_fd_, events, kMaxEvents, -1);
    if (n < 0) {
      PCHECK(errno == EINTR) << "epoll_wait";
      continue;
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t handle = events[i].data.u64;
      if (handle == kWakeToken) {
        absl::MutexLock lock(&mu_);
        if (stopping_) {
          return;
        }
        continue;
      }
      ExitCallback on_exit;
      int status = 0;
      {
        absl::MutexLock lock(&mu_);
        auto it = children_.find(handle);
        if (it == children_.end()) {
          continue;
        }
        const pid_t reaped = ::waitpid(it->second.pid, &status, WNOHANG);
        if (reaped == 0) {
          continue;  // Readable pidfd means exited; be robust anyway.
        }
        if (reaped < 0) {
          PLOG(ERROR) << "waitpid(" << it->second.pid << ")";
          status = 0xff00;  // Report exit status 255 rather than losing the task.
        }
        ::close(it->second.pidfd);  // Also removes it from the epoll set.
        on_exit = std::move(it->second.on_exit);
        children_.erase(it);
      }
      std::move(on_exit)(status);
    }
  }
}

}  // namespace rz::agent
