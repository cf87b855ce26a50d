#include "cli/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

extern char** environ;

namespace rz::cli {
namespace {

// Polling interval while waiting for a child: short enough that tests and `rz local` react
// promptly, long enough to cost nothing.
constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

std::vector<char*> CStrings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) {
    out.push_back(const_cast<char*>(s.c_str()));
  }
  out.push_back(nullptr);
  return out;
}

// posix_spawn's file actions and attributes, destroyed on every path out of Spawn().
struct SpawnState {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnState() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnState() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

absl::StatusOr<Subprocess> Subprocess::Spawn(const SpawnOptions& options) {
  if (options.argv.empty()) {
    return absl::InvalidArgumentError("no program to start");
  }
  SpawnState state;
  // No O_CLOEXEC: these descriptors are the ones the program must keep across exec.
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC;
  if (options.null_stdin) {
    posix_spawn_file_actions_addopen(&state.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  }
  if (!options.stdout_path.empty()) {
    posix_spawn_file_actions_addopen(&state.actions, STDOUT_FILENO, options.stdout_path.c_str(),
                                     kFlags, 0644);
  }
  if (!options.stderr_path.empty()) {
    if (options.stderr_path == options.stdout_path) {
      posix_spawn_file_actions_adddup2(&state.actions, STDOUT_FILENO, STDERR_FILENO);
    } else {
      posix_spawn_file_actions_addopen(&state.actions, STDERR_FILENO, options.stderr_path.c_str(),
                                       kFlags, 0644);
    }
  }

  // The parent may block signals (rz local waits for them with sigtimedwait) or ignore them;
  // the child must start clean either way.
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&state.attr, &empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigdefault(&state.attr, &defaults);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (options.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&state.attr, 0);
  }
  posix_spawnattr_setflags(&state.attr, flags);

  std::vector<char*> argv = CStrings(options.argv);
  std::vector<char*> env_storage;
  char** envp = environ;
  if (options.env.has_value()) {
    env_storage = CStrings(*options.env);
    envp = env_storage.data();
  }
  pid_t pid = -1;
  const int error =
      posix_spawn(&pid, options.argv[0].c_str(), &state.actions, &state.attr, argv.data(), envp);
  if (error != 0) {
    return absl::ErrnoToStatus(error, absl::StrCat("starting '", options.argv[0], "'"));
  }
  return Subprocess(pid);
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), wait_status_(std::exchange(other.wait_status_, {})) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0 && !wait_status_.has_value()) {
      Stop(absl::ZeroDuration());
    }
    pid_ = std::exchange(other.pid_, -1);
    wait_status_ = std::exchange(other.wait_status_, {});
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0 && !wait_status_.has_value()) {
    Stop(absl::ZeroDuration());
  }
}

std::optional<int> Subprocess::Poll() {
  if (pid_ <= 0) {
    return 0;  // Moved from: nothing runs.
  }
  if (wait_status_.has_value()) {
    return wait_status_;
  }
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == pid_) {
    wait_status_ = status;
  } else if (r < 0) {
    // ECHILD: someone else reaped it (cannot happen for our own children unless SIGCHLD is
    // ignored); report it as gone rather than running forever.
    wait_status_ = 0;
  }
  return wait_status_;
}

std::optional<int> Subprocess::WaitFor(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (std::optional<int> status = Poll()) {
      return status;
    }
    if (absl::Now() >= deadline) {
      return std::nullopt;
    }
    absl::SleepFor(kPollInterval);
  }
}

void Subprocess::Signal(int signal) {
  if (pid_ > 0 && !Poll().has_value()) {
    kill(pid_, signal);
  }
}

int Subprocess::Stop(absl::Duration grace) {
  if (std::optional<int> status = Poll()) {
    return *status;
  }
  // Never signal pid <= 0: kill(0 or -1, ...) would hit a whole group or every process.
  CHECK_GT(pid_, 0);
  if (grace > absl::ZeroDuration()) {
    kill(pid_, SIGTERM);
    if (std::optional<int> status = WaitFor(grace)) {
      return *status;
    }
  }
  kill(pid_, SIGKILL);
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, 0);
  } while (r < 0 && errno == EINTR);
  wait_status_ = r == pid_ ? status : 0;
  return *wait_status_;
}

void StopAll(const std::vector<Subprocess*>& processes, absl::Duration grace) {
  for (Subprocess* process : processes) {
    process->Signal(SIGTERM);
  }
  const absl::Time deadline = absl::Now() + grace;
  for (Subprocess* process : processes) {
    process->WaitFor(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  }
  for (Subprocess* process : processes) {
    process->Stop(absl::ZeroDuration());
  }
}

int ExitCodeOf(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return WEXITSTATUS(wait_status);
  }
  if (WIFSIGNALED(wait_status)) {
    return 128 + WTERMSIG(wait_status);
  }
  return 128;
}

std::string DescribeWaitStatus(int wait_status) {
  if (WIFEXITED(wait_status)) {
    return absl::StrCat("exited with status ", WEXITSTATUS(wait_status));
  }
  if (WIFSIGNALED(wait_status)) {
    return absl::StrCat("was killed by signal ", WTERMSIG(wait_status), " (",
                        strsignal(WTERMSIG(wait_status)), ")");
  }
  return absl::StrCat("ended with wait status ", wait_status);
}

std::string TailFile(const std::string& path, int lines) {
  std::ifstream in(path);
  if (!in) {
    return "";
  }
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(in, line)) {
    tail.push_back(std::move(line));
    if (static_cast<int>(tail.size()) > lines) {
      tail.pop_front();
    }
  }
  return absl::StrJoin(tail, "\n");
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::ErrnoToStatus(errno, absl::StrCat("reading '", path, "'"));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::StatusOr<std::string> SelfDirectory() {
  char buffer[4096];
  const ssize_t n = readlink("/proc/self/exe", buffer, sizeof(buffer) - 1);
  if (n <= 0) {
    return absl::ErrnoToStatus(errno, "reading /proc/self/exe");
  }
  std::string path(buffer, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

absl::StatusOr<std::string> FindProgram(const std::string& name,
                                        const std::vector<std::string>& dirs) {
  std::vector<std::string> tried;
  auto usable = [](const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
  };
  for (const std::string& dir : dirs) {
    const std::string path = absl::StrCat(dir, "/", name);
    if (usable(path)) {
      return path;
    }
    tried.push_back(path);
  }
  const char* path_env = std::getenv("PATH");
  if (path_env != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path_env, ':', absl::SkipEmpty())) {
      const std::string path = absl::StrCat(dir, "/", name);
      if (usable(path)) {
        return path;
      }
    }
    tried.push_back("$PATH");
  }
  return absl::NotFoundError(
      absl::StrCat("cannot find '", name, "' (looked in ", absl::StrJoin(tried, ", "), ")"));
}

}  // namespace rz::cli
