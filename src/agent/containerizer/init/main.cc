// rz-containerizer-init: the first process of every container. The agent spawns it inside the
// container's cgroups, releases it through the sync pipe, and learns how the task ended from the
// status file it writes; see README.md for the protocol.
//
// Thread rule: single-threaded. Every event (child exits, forwarded signals, task output)
// arrives through one poll() loop over a signalfd and the output pipes. The init forks the task
// (the init is tiny, so fork is cheap) and the forked child only calls what is safe after fork in
// a single-threaded process.
//
// Start-up latency matters (the agent waits on it), so this links only libc, the static runtime
// library and static Abseil; no glog, protobuf or gRPC.

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "agent/containerizer/init/runtime_files.h"

namespace rz::agent {
namespace {

constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

// After the task's main process exits, daemons it left behind may hold its output pipes open;
// stop draining them after this long.
constexpr int64_t kDrainMillis = 200;

constexpr std::string_view kDiagPrefix = "rz-containerizer-init: ";

std::string Str(std::string_view s) { return std::string(s); }

std::string ErrnoText(int error) {
  char buffer[128];
  return ::strerror_r(error, buffer, sizeof(buffer));  // GNU variant: returns the text.
}

// The sandbox, for init.log; set once the arguments are parsed.
std::string g_sandbox;

// Appends one line to <sandbox>/init.log (opened on first use), or to stderr if that fails.
void Diag(std::string_view message) {
  static int fd = -2;
  if (fd == -2) {
    const std::string path = absl::StrCat(g_sandbox, "/", kInitLogFileName);
    fd = g_sandbox.empty() ? -1
                           : ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  const std::string line = absl::StrCat(Str(kDiagPrefix), Str(message), "\n");
  // Best effort: there is nowhere else to report a failure to write the diagnostics.
  [[maybe_unused]] ssize_t ignored =
      ::write(fd >= 0 ? fd : STDERR_FILENO, line.data(), line.size());
}

int64_t NowMillis() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int ExitCodeForErrno(int error) { return error == ENOENT ? kTaskExitNotFound : kTaskExitCannotRun; }

// The agent passes stdin as /dev/null, but pipes created below must never land on 0-2 (dup2 onto
// the same fd would keep them close-on-exec), so fill any gap.
void EnsureStandardFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      const int null_fd = ::open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != fd) {
        ::dup2(null_fd, fd);
        ::close(null_fd);
      }
    }
  }
}

sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (int sig : kForwardedSignals) {
    sigaddset(&set, sig);
  }
  return set;
}

bool IsForwarded(int sig) {
  for (int forwarded : kForwardedSignals) {
    if (sig == forwarded) {
      return true;
    }
  }
  return false;
}

struct TaskUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

// One of the task's output files, rotated when a size cap is set.
class LogFile {
 public:
  // `owner` (nullptr: keep the init's user) must outlive the LogFile.
  LogFile(std::string path, std::optional<uint64_t> max_bytes, int max_files, const TaskUser* owner)
      : path_(std::move(path)), max_bytes_(max_bytes), max_files_(max_files), owner_(owner) {}

  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  ~LogFile() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

  // What failed and its errno.
  struct Error {
    int error = 0;
    std::string what;
  };

  // Opens (appending to) or creates the file, owned by the task's user.
  std::optional<Error> Open() { return OpenFile(/*truncate=*/false); }

  int fd() const { return fd_; }

  // Appends `data`, rotating first whenever it would push the file past the cap. A single
  // write larger than the cap is split so that no file exceeds it.
  void Write(std::string_view data) {
    while (!data.empty()) {
      if (max_bytes_ && size_ > 0 && size_ + data.size() > *max_bytes_) {
        Rotate();
      }
      size_t n = data.size();
      if (max_bytes_) {
        n = std::min<uint64_t>(n, *max_bytes_ - std::min(size_, *max_bytes_));
      }
      if (fd_ < 0) {
        return;  // Reopening failed (already reported); drop output rather than block the task.
      }
      while (n > 0) {
        const ssize_t written = ::write(fd_, data.data(), n);
        if (written < 0 && errno == EINTR) {
          continue;
        }
        if (written < 0) {
          ReportOnce(absl::StrCat("writing '", path_, "': ", ErrnoText(errno)));
          return;
        }
        data.remove_prefix(static_cast<size_t>(written));
        size_ += static_cast<uint64_t>(written);
        n -= static_cast<size_t>(written);
      }
    }
  }

 private:
  std::optional<Error> OpenFile(bool truncate) {
    const int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0);
    fd_ = ::open(path_.c_str(), flags, 0644);
    if (fd_ < 0) {
      return Error{errno, absl::StrCat("opening '", path_, "'")};
    }
    if (owner_ && owner_->uid != ::geteuid() && ::fchown(fd_, owner_->uid, owner_->gid) != 0) {
      Error error{errno, absl::StrCat("giving '", path_, "' to user '", owner_->name, "'")};
      ::close(fd_);
      fd_ = -1;
      return error;
    }
    struct stat st;
    size_ = ::fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return std::nullopt;
  }

  // stdout.{K-1} -> stdout.K, ..., stdout -> stdout.1; the oldest falls off the end.
  void Rotate() {
    ::close(fd_);
    fd_ = -1;
    if (max_files_ == 0) {
      ::unlink(path_.c_str());
    } else {
      for (int i = max_files_ - 1; i >= 1; --i) {
        const std::string from = absl::StrCat(path_, ".", i);
        const std::string to = absl::StrCat(path_, ".", i + 1);
        if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
          ReportOnce(absl::StrCat("renaming '", from, "': ", ErrnoText(errno)));
        }
      }
      const std::string first = absl::StrCat(path_, ".1");
      if (::rename(path_.c_str(), first.c_str()) != 0) {
        ReportOnce(absl::StrCat("renaming '", path_, "': ", ErrnoText(errno)));
      }
    }
    if (std::optional<Error> error = OpenFile(/*truncate=*/true)) {
      ReportOnce(absl::StrCat(error->what, " after rotating: ", ErrnoText(error->error)));
    }
  }

  void ReportOnce(const std::string& message) {
    if (!reported_) {
      reported_ = true;
      Diag(message);
    }
  }

  const std::string path_;
  const std::optional<uint64_t> max_bytes_;
  const int max_files_;
  const TaskUser* const owner_;
  int fd_ = -1;
  uint64_t size_ = 0;
  bool reported_ = false;
};

// The read end of one of the task's output pipes.
struct OutputStream {
  int fd = -1;
  LogFile* file = nullptr;
  bool open() const { return fd >= 0; }
};

// Reads what is available from `stream` into its file; closes it at EOF.
void Pump(OutputStream& stream) {
  static char buffer[64 * 1024];
  while (stream.open()) {
    const ssize_t n = ::read(stream.fd, buffer, sizeof(buffer));
    if (n > 0) {
      stream.file->Write(std::string_view(buffer, static_cast<size_t>(n)));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EAGAIN) {
      return;
    }
    ::close(stream.fd);
    stream.fd = -1;
  }
}

// Reports why the task could not start and exits the child with 127 or 126.
[[noreturn]] void FailTask(int report_fd, int error, const std::string& what) {
  const std::string message = absl::StrCat(what, ": ", ErrnoText(error));
  [[maybe_unused]] ssize_t ignored = ::write(report_fd, message.data(), message.size());
  ::_exit(ExitCodeForErrno(error));
}

// The forked task child: sets the process up and execs the command. Never returns. A failure is
// written to `report_fd` (close-on-exec, so a successful exec just closes it) as one line.
[[noreturn]] void RunTask(const InitArgs& args, const std::optional<TaskUser>& user, int out_fd,
                          int err_fd, int report_fd) {
  auto fail = [report_fd](int error, const std::string& what) { FailTask(report_fd, error, what); };

  ::setsid();
  sigset_t empty;
  sigemptyset(&empty);
  ::pthread_sigmask(SIG_SETMASK, &empty, nullptr);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) {
      // Fails harmlessly for the signals glibc reserves.
      ::signal(sig, SIG_DFL);  // NOLINT(concurrency-mt-unsafe): single-threaded process
    }
  }
  if (::dup2(out_fd, STDOUT_FILENO) < 0 || ::dup2(err_fd, STDERR_FILENO) < 0) {
    fail(errno, "redirecting stdout/stderr");
  }
  if (::chdir(args.sandbox.c_str()) != 0) {
    fail(errno, absl::StrCat("changing to sandbox '", args.sandbox, "'"));
  }
  for (const RlimitSpec& spec : args.rlimits) {
    const rlimit limit{.rlim_cur = spec.soft, .rlim_max = spec.hard};
    if (::setrlimit(spec.resource, &limit) != 0) {
      fail(errno, absl::StrCat("setting rlimit ", FormatRlimitFlag(spec)));
    }
  }
  if (user) {
    // Already running as the user (an unprivileged agent running its own tasks): nothing to do.
    if (::geteuid() != user->uid || ::getegid() != user->gid) {
      if (::initgroups(user->name.c_str(), user->gid) != 0) {
        fail(errno, absl::StrCat("setting the groups of user '", user->name, "'"));
      }
      if (::setgid(user->gid) != 0) {
        fail(errno, absl::StrCat("setgid(", user->gid, ") for user '", user->name, "'"));
      }
      if (::setuid(user->uid) != 0) {
        fail(errno, absl::StrCat("setuid(", user->uid, ") for user '", user->name, "'"));
      }
      if (::getuid() != user->uid || ::geteuid() != user->uid || ::getgid() != user->gid ||
          ::getegid() != user->gid) {
        fail(EPERM, absl::StrCat("switching to user '", user->name, "' left other ids in place"));
      }
      if (user->uid != 0 && (::setuid(0) == 0 || ::seteuid(0) == 0)) {
        fail(EPERM, absl::StrCat("user '", user->name, "' could regain root"));
      }
    }
    // NOLINTNEXTLINE(concurrency-mt-unsafe): the forked child has one thread.
    if (::getenv("HOME") == nullptr && ::setenv("HOME", user->home.c_str(), 1) != 0) {
      fail(errno, "setting HOME");
    }
  }
  // Descriptors the agent leaked into the init must not reach the task.
  ::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);

  std::vector<char*> argv;
  for (const std::string& arg : args.command) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  FailTask(report_fd, errno, absl::StrCat("exec '", args.command.front(), "'"));
}

// Records the outcome, writes the status file and returns the init's exit code.
int Finish(const InitArgs& args, int wait_status, const std::string& message) {
  if (!message.empty()) {
    Diag(message);
  }
  if (absl::Status status = WriteStatusFile(args.runtime_dir, wait_status, message); !status.ok()) {
    Diag(absl::StrCat("cannot write the status file: ", status.message()));
  }
  return ExitCodeOf(wait_status);
}

int FailBeforeStart(const InitArgs& args, int error, const std::string& what) {
  return Finish(args, W_EXITCODE(ExitCodeForErrno(error), 0),
                absl::StrCat(what, ": ", ErrnoText(error)));
}

// Reads the child's start-failure report until EOF (exec succeeded or the child exited).
std::string ReadStartReport(int fd) {
  std::string report;
  char buffer[512];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return report;
    }
    report.append(buffer, static_cast<size_t>(n));
  }
}

// Steps 3-6 of the protocol: sets up output, starts the task, reaps, forwards signals, drains
// output and writes the status file. `in_pid_namespace` means this is pid 1 of a new namespace.
// REQUIRES: HandledSignals() are blocked.
int RunContainer(const InitArgs& args, bool in_pid_namespace) {
  std::optional<TaskUser> user;
  if (args.user) {
    errno = 0;
    const passwd* pw = ::getpwnam(args.user->c_str());  // NOLINT(concurrency-mt-unsafe)
    if (pw == nullptr) {
      const std::string why = errno == 0 ? "no such user" : ErrnoText(errno);
      return Finish(args, W_EXITCODE(kTaskExitCannotRun, 0),
                    absl::StrCat("unknown user '", *args.user, "': ", why));
    }
    user = TaskUser{.name = *args.user, .uid = pw->pw_uid, .gid = pw->pw_gid, .home = pw->pw_dir};
  }

  LogFile out(absl::StrCat(args.sandbox, "/", kStdoutFileName), args.log_max_bytes,
              args.log_max_files, user ? &*user : nullptr);
  LogFile err(absl::StrCat(args.sandbox, "/", kStderrFileName), args.log_max_bytes,
              args.log_max_files, user ? &*user : nullptr);
  for (LogFile* file : {&out, &err}) {
    if (std::optional<LogFile::Error> error = file->Open()) {
      return FailBeforeStart(args, error->error, error->what);
    }
  }

  // Without a cap the task writes straight into the files; with one, the init sits in between.
  OutputStream streams[2];
  int task_out = out.fd();
  int task_err = err.fd();
  if (args.log_max_bytes) {
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
      return FailBeforeStart(args, errno, "creating the stdout pipe");
    }
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
      return FailBeforeStart(args, errno, "creating the stderr pipe");
    }
    streams[0] = {.fd = out_pipe[0], .file = &out};
    streams[1] = {.fd = err_pipe[0], .file = &err};
    ::fcntl(out_pipe[0], F_SETFL, O_NONBLOCK);
    ::fcntl(err_pipe[0], F_SETFL, O_NONBLOCK);
    task_out = out_pipe[1];
    task_err = err_pipe[1];
  }

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    return FailBeforeStart(args, errno, "creating the report pipe");
  }
  const sigset_t handled = HandledSignals();
  const int signal_fd = ::signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    return FailBeforeStart(args, errno, "creating the signalfd");
  }
  // Outside a pid namespace, orphans of the task would go to the host's init; adopt them.
  if (!in_pid_namespace && ::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return FailBeforeStart(args, errno, "becoming a child subreaper");
  }

  const pid_t task = ::fork();
  if (task < 0) {
    return FailBeforeStart(args, errno, "forking the task");
  }
  if (task == 0) {
    RunTask(args, user, task_out, task_err, report[1]);
  }
  ::close(report[1]);
  if (args.log_max_bytes) {
    ::close(task_out);
    ::close(task_err);
  }
  const std::string start_error = ReadStartReport(report[0]);
  ::close(report[0]);

  std::optional<int> task_status;
  int64_t drain_deadline = 0;
  auto reap = [&] {
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == task) {
        task_status = status;
        drain_deadline = NowMillis() + kDrainMillis;
      }
    }
  };
  while (true) {
    int timeout = -1;
    if (task_status) {
      if (!streams[0].open() && !streams[1].open()) {
        break;
      }
      const int64_t left = drain_deadline - NowMillis();
      if (left <= 0) {
        Diag(
            "the task's output pipes are still open (a process it left behind?); not draining"
            " further");
        break;
      }
      timeout = static_cast<int>(left);
    }
    pollfd fds[3] = {{.fd = signal_fd, .events = POLLIN},
                     {.fd = streams[0].fd, .events = POLLIN},
                     {.fd = streams[1].fd, .events = POLLIN}};
    if (::poll(fds, 3, timeout) < 0) {
      if (errno == EINTR) {
        continue;
      }
      Diag(absl::StrCat("poll: ", ErrnoText(errno)));
      break;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (::read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (sig == SIGCHLD) {
          reap();
        } else if (IsForwarded(sig)) {
          // In a pid namespace everything but us belongs to the container; otherwise the task's
          // process group (it called setsid()).
          if (::kill(in_pid_namespace ? -1 : -task, sig) != 0 && errno != ESRCH) {
            Diag(absl::StrCat("forwarding signal ", sig, ": ", ErrnoText(errno)));
          }
        }
      }
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i + 1].revents != 0) {
        Pump(streams[i]);
      }
    }
  }
  reap();
  if (!task_status) {
    // Only reached if poll() failed, which it cannot for valid descriptors.
    int status = 0;
    while (::waitpid(task, &status, 0) < 0 && errno == EINTR) {
    }
    task_status = status;
  }
  for (OutputStream& stream : streams) {
    if (stream.open()) {
      ::close(stream.fd);
    }
  }
  ::close(signal_fd);
  return Finish(args, *task_status, start_error);
}

// --pid_namespace: this process stays outside, the forked child becomes pid 1 inside and runs
// RunContainer(). REQUIRES: HandledSignals() are blocked.
int RunOutsidePidNamespace(const InitArgs& args) {
  if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) {
    return FailBeforeStart(args, errno, "creating pid and mount namespaces");
  }
  // Without this the new /proc mount would propagate back to the host's mount namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return FailBeforeStart(args, errno, "making mounts private");
  }
  const pid_t inner = ::fork();
  if (inner < 0) {
    return FailBeforeStart(args, errno, "forking the namespace init");
  }
  if (inner == 0) {
    if (::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
      ::_exit(FailBeforeStart(args, errno, "mounting /proc"));
    }
    ::_exit(RunContainer(args, /*in_pid_namespace=*/true));
  }

  const sigset_t handled = HandledSignals();
  int inner_status = 0;
  while (true) {
    siginfo_t info;
    const int sig = ::sigwaitinfo(&handled, &info);
    if (sig < 0) {
      continue;  // EINTR
    }
    if (sig == SIGCHLD) {
      const pid_t pid = ::waitpid(inner, &inner_status, WNOHANG);
      if (pid == inner) {
        break;
      }
    } else if (::kill(inner, sig) != 0 && errno != ESRCH) {
      Diag(absl::StrCat("forwarding signal ", sig, ": ", ErrnoText(errno)));
    }
  }
  // The inner init writes the status; if it was killed first, record how it died.
  if (absl::StatusOr<InitExit> recorded = ReadStatusFile(args.runtime_dir);
      absl::IsNotFound(recorded.status())) {
    return Finish(args, inner_status,
                  WIFSIGNALED(inner_status)
                      ? absl::StrCat("the init in the pid namespace was killed by signal ",
                                     WTERMSIG(inner_status))
                      : "the init in the pid namespace exited without a status");
  }
  return ExitCodeOf(inner_status);
}

int Main(int argc, char** argv) {
  EnsureStandardFds();
  absl::StatusOr<InitArgs> parsed = ParseInitArgv(argc, argv);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%.*s%.*s\n", static_cast<int>(kDiagPrefix.size()), kDiagPrefix.data(),
                 static_cast<int>(parsed.status().message().size()),
                 parsed.status().message().data());
    return kInitExitBadArguments;
  }
  const InitArgs& args = *parsed;

  char byte;
  ssize_t n;
  do {
    n = ::read(args.sync_fd, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    std::fprintf(stderr, "%.*s--sync_fd=%d: %s\n", static_cast<int>(kDiagPrefix.size()),
                 kDiagPrefix.data(), args.sync_fd, ErrnoText(errno).c_str());
    return kInitExitBadArguments;
  }
  ::close(args.sync_fd);
  if (n == 0) {
    return kInitExitAgentGaveUp;
  }
  // Into the container's cgroups before anything else runs.
  for (const std::string& file : args.join_cgroups) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) {
      const std::string message = "cannot join cgroup (" + file + "): " + ErrnoText(errno);
      if (fd >= 0) {
        ::close(fd);
      }
      std::fprintf(stderr, "%.*s%s\n", static_cast<int>(kDiagPrefix.size()), kDiagPrefix.data(),
                   message.c_str());
      (void)WriteStatusFile(args.runtime_dir, kTaskExitCannotRun << 8, message);
      return kTaskExitCannotRun;
    }
    ::close(fd);
  }

  g_sandbox = args.sandbox;
  const sigset_t handled = HandledSignals();
  ::pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // NOLINT(concurrency-mt-unsafe): single-threaded process
  if (args.pid_namespace) {
    // Once the namespace's init is gone this process can no longer fork (its children would
    // join the dead namespace), so skip exit-time hooks that might (LeakSanitizer's tracer).
    ::_exit(RunOutsidePidNamespace(args));
  }
  return RunContainer(args, /*in_pid_namespace=*/false);
}

}  // namespace
}  // namespace rz::agent

int main(int argc, char** argv) { return rz::agent::Main(argc, argv); }
