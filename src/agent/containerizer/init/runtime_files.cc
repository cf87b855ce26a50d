#include "agent/containerizer/init/runtime_files.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rz::agent {
namespace {

struct RlimitName {
  const char* name;
  int resource;
};

constexpr RlimitName kRlimitNames[] = {
    {"AS", RLIMIT_AS},           {"CORE", RLIMIT_CORE},         {"CPU", RLIMIT_CPU},
    {"DATA", RLIMIT_DATA},       {"FSIZE", RLIMIT_FSIZE},       {"LOCKS", RLIMIT_LOCKS},
    {"MEMLOCK", RLIMIT_MEMLOCK}, {"MSGQUEUE", RLIMIT_MSGQUEUE}, {"NICE", RLIMIT_NICE},
    {"NOFILE", RLIMIT_NOFILE},   {"NPROC", RLIMIT_NPROC},       {"RSS", RLIMIT_RSS},
    {"RTPRIO", RLIMIT_RTPRIO},   {"RTTIME", RLIMIT_RTTIME},     {"SIGPENDING", RLIMIT_SIGPENDING},
    {"STACK", RLIMIT_STACK},
};

constexpr std::string_view kUnlimited = "unlimited";

// Abseil here has its own string_view; our API speaks std::string_view.
std::string Str(std::string_view s) { return std::string(s); }

std::string ValidRlimitTypes() {
  std::string out;
  for (const RlimitName& entry : kRlimitNames) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", entry.name);
  }
  return out;
}

const char* RlimitTypeName(int resource) {
  for (const RlimitName& entry : kRlimitNames) {
    if (entry.resource == resource) {
      return entry.name;
    }
  }
  return nullptr;
}

// Parses a whole decimal number; std::nullopt on anything else (sign, spaces, overflow).
std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

std::optional<int> ParseInt(std::string_view text) {
  int value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

// A limit is a number or "unlimited" (returned as nullopt inside the outer optional).
absl::StatusOr<std::optional<uint64_t>> ParseLimitValue(std::string_view flag,
                                                        std::string_view what,
                                                        std::string_view text) {
  if (text == kUnlimited) {
    return std::optional<uint64_t>();
  }
  std::optional<uint64_t> value = ParseUnsigned(text);
  if (!value) {
    return absl::InvalidArgumentError(absl::StrCat("--rlimit='", Str(flag), "': ", Str(what),
                                                   " limit '", Str(text),
                                                   "' is not a number or 'unlimited'"));
  }
  return value;
}

std::string FormatLimitValue(rlim_t value) {
  return value == RLIM_INFINITY ? std::string(kUnlimited) : absl::StrCat(value);
}

absl::Status ErrnoError(int error, std::string_view what, const std::string& path) {
  return absl::ErrnoToStatus(error, absl::StrCat(Str(what), " '", path, "'"));
}

// Writes all of `data` to `fd`, retrying short writes and EINTR. Returns errno or 0.
int WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return errno;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return 0;
}

}  // namespace

absl::StatusOr<RlimitSpec> ParseRlimit(std::string_view type, std::optional<uint64_t> soft,
                                       std::optional<uint64_t> hard) {
  const RlimitName* found = nullptr;
  for (const RlimitName& entry : kRlimitNames) {
    if (type == entry.name) {
      found = &entry;
      break;
    }
  }
  if (found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown rlimit type '", Str(type), "' (valid: ", ValidRlimitTypes(), ")"));
  }
  // RLIM_INFINITY is the largest rlim_t, so a number can only collide with it, never exceed.
  for (const auto& [what, value] : {std::pair{"soft", soft}, std::pair{"hard", hard}}) {
    if (value && *value >= static_cast<uint64_t>(RLIM_INFINITY)) {
      return absl::InvalidArgumentError(absl::StrCat("rlimit ", found->name, ": ", what, " limit ",
                                                     *value, " is too large (use 'unlimited')"));
    }
  }
  RlimitSpec spec{.resource = found->resource,
                  .soft = soft ? static_cast<rlim_t>(*soft) : RLIM_INFINITY,
                  .hard = hard ? static_cast<rlim_t>(*hard) : RLIM_INFINITY};
  if (spec.soft > spec.hard) {
    return absl::InvalidArgumentError(
        absl::StrCat("rlimit ", found->name, ": soft limit ", FormatLimitValue(spec.soft),
                     " exceeds hard limit ", FormatLimitValue(spec.hard)));
  }
  return spec;
}

absl::StatusOr<RlimitSpec> ParseRlimitFlag(std::string_view value) {
  const size_t first = value.find(':');
  const size_t second = first == std::string_view::npos ? first : value.find(':', first + 1);
  if (second == std::string_view::npos || value.find(':', second + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rlimit='", Str(value), "': expected TYPE:SOFT:HARD"));
  }
  const std::string_view type = value.substr(0, first);
  auto soft = ParseLimitValue(value, "soft", value.substr(first + 1, second - first - 1));
  if (!soft.ok()) {
    return soft.status();
  }
  auto hard = ParseLimitValue(value, "hard", value.substr(second + 1));
  if (!hard.ok()) {
    return hard.status();
  }
  absl::StatusOr<RlimitSpec> spec = ParseRlimit(type, *soft, *hard);
  if (!spec.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--rlimit='", Str(value), "': ", spec.status().message()));
  }
  return spec;
}

std::string FormatRlimitFlag(const RlimitSpec& spec) {
  const char* name = RlimitTypeName(spec.resource);
  return absl::StrCat(name == nullptr ? "?" : name, ":", FormatLimitValue(spec.soft), ":",
                      FormatLimitValue(spec.hard));
}

std::vector<std::string> BuildInitArgv(const InitArgs& args) {
  std::vector<std::string> argv = {
      args.init_path,
      absl::StrCat("--runtime_dir=", args.runtime_dir),
      absl::StrCat("--sync_fd=", args.sync_fd),
      absl::StrCat("--sandbox=", args.sandbox),
  };
  if (args.user) {
    argv.push_back(absl::StrCat("--user=", *args.user));
  }
  if (args.pid_namespace) {
    argv.emplace_back("--pid_namespace");
  }
  for (const RlimitSpec& spec : args.rlimits) {
    argv.push_back(absl::StrCat("--rlimit=", FormatRlimitFlag(spec)));
  }
  for (const std::string& file : args.join_cgroups) {
    argv.push_back(absl::StrCat("--join_cgroup=", file));
  }
  if (args.log_max_bytes) {
    argv.push_back(absl::StrCat("--log_max_bytes=", *args.log_max_bytes));
  }
  argv.push_back(absl::StrCat("--log_max_files=", args.log_max_files));
  argv.emplace_back("--");
  argv.insert(argv.end(), args.command.begin(), args.command.end());
  return argv;
}

absl::StatusOr<InitArgs> ParseInitArgv(int argc, char** argv) {
  InitArgs args;
  if (argc < 1) {
    return absl::InvalidArgumentError("empty command line");
  }
  args.init_path = argv[0];
  bool seen_runtime_dir = false, seen_sync_fd = false, seen_sandbox = false;
  bool seen_log_max_bytes = false, seen_log_max_files = false;
  bool seen_separator = false;
  auto once = [](bool& seen, std::string_view flag) -> absl::Status {
    if (seen) {
      return absl::InvalidArgumentError(absl::StrCat("--", Str(flag), " given more than once"));
    }
    seen = true;
    return absl::OkStatus();
  };
  int i = 1;
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      seen_separator = true;
      ++i;
      break;
    }
    if (arg == "--pid_namespace") {
      if (args.pid_namespace) {
        return absl::InvalidArgumentError("--pid_namespace given more than once");
      }
      args.pid_namespace = true;
      continue;
    }
    const size_t eq = arg.find('=');
    if (arg.substr(0, 2) != "--" || eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown argument '", Str(arg), "' (flags are --name=value)"));
    }
    const std::string_view name = arg.substr(2, eq - 2);
    const std::string_view value = arg.substr(eq + 1);
    absl::Status status;
    if (name == "runtime_dir" || name == "sandbox") {
      status = once(name == "runtime_dir" ? seen_runtime_dir : seen_sandbox, name);
      if (status.ok() && value.empty()) {
        status = absl::InvalidArgumentError(absl::StrCat("--", Str(name), " is empty"));
      }
      (name == "runtime_dir" ? args.runtime_dir : args.sandbox) = Str(value);
    } else if (name == "sync_fd") {
      status = once(seen_sync_fd, name);
      std::optional<int> fd = ParseInt(value);
      if (status.ok() && (!fd || *fd < 0)) {
        status = absl::InvalidArgumentError(
            absl::StrCat("--sync_fd='", Str(value), "' is not a file descriptor number"));
      }
      args.sync_fd = fd.value_or(-1);
    } else if (name == "user") {
      bool seen_user = args.user.has_value();
      status = once(seen_user, name);
      if (status.ok() && value.empty()) {
        status = absl::InvalidArgumentError("--user is empty");
      }
      args.user = Str(value);
    } else if (name == "rlimit") {
      absl::StatusOr<RlimitSpec> spec = ParseRlimitFlag(value);
      if (spec.ok()) {
        args.rlimits.push_back(*spec);
      }
      status = spec.status();
    } else if (name == "join_cgroup") {
      if (value.empty() || value.front() != '/') {
        status = absl::InvalidArgumentError(
            absl::StrCat("--join_cgroup='", Str(value), "' is not an absolute path"));
      }
      args.join_cgroups.push_back(Str(value));
    } else if (name == "log_max_bytes") {
      status = once(seen_log_max_bytes, name);
      std::optional<uint64_t> bytes = ParseUnsigned(value);
      if (status.ok() && (!bytes || *bytes == 0)) {
        status = absl::InvalidArgumentError(
            absl::StrCat("--log_max_bytes='", Str(value), "' is not a positive number of bytes"));
      }
      args.log_max_bytes = bytes;
    } else if (name == "log_max_files") {
      status = once(seen_log_max_files, name);
      std::optional<int> files = ParseInt(value);
      if (status.ok() && (!files || *files < 0)) {
        status = absl::InvalidArgumentError(
            absl::StrCat("--log_max_files='", Str(value), "' is not a non-negative number"));
      }
      args.log_max_files = files.value_or(kDefaultLogMaxFiles);
    } else {
      status = absl::InvalidArgumentError(absl::StrCat("unknown argument '", Str(arg), "'"));
    }
    if (!status.ok()) {
      return status;
    }
  }
  for (; i < argc; ++i) {
    args.command.emplace_back(argv[i]);
  }
  if (!seen_runtime_dir) {
    return absl::InvalidArgumentError("missing --runtime_dir");
  }
  if (!seen_sync_fd) {
    return absl::InvalidArgumentError("missing --sync_fd");
  }
  if (!seen_sandbox) {
    return absl::InvalidArgumentError("missing --sandbox");
  }
  if (!seen_separator || args.command.empty()) {
    return absl::InvalidArgumentError("missing the task's command after '--'");
  }
  if (args.command.front().empty()) {
    return absl::InvalidArgumentError("the task's command (argv[0] after '--') is empty");
  }
  return args;
}

absl::Status WriteStatusFile(const std::string& dir, int wait_status, std::string_view message) {
  std::string line(message);
  for (char& c : line) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  const std::string contents = absl::StrCat("exit_status=", wait_status, "\nmessage=", line, "\n");
  const std::string tmp = absl::StrCat(dir, "/", kStatusTempFileName);
  const std::string path = absl::StrCat(dir, "/", kStatusFileName);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return ErrnoError(errno, "creating", tmp);
  }
  int error = WriteAll(fd, contents);
  if (error == 0 && ::fsync(fd) != 0) {
    error = errno;
  }
  if (::close(fd) != 0 && error == 0) {
    error = errno;
  }
  if (error != 0) {
    ::unlink(tmp.c_str());
    return ErrnoError(error, "writing", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = errno;
    ::unlink(tmp.c_str());
    return ErrnoError(error, "renaming to", path);
  }
  // Make the rename itself durable so a crash right after the init exits keeps the status.
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
  return absl::OkStatus();
}

absl::StatusOr<InitExit> ReadStatusFile(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kStatusFileName);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat("status file '", path, "' does not exist"));
    }
    return ErrnoError(error, "opening", path);
  }
  std::string contents;
  char buffer[4096];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      return ErrnoError(error, "reading", path);
    }
    if (n == 0) {
      break;
    }
    contents.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);

  auto malformed = [&](std::string_view why) {
    return absl::DataLossError(absl::StrCat("status file '", path, "' is malformed: ", Str(why)));
  };
  if (contents.empty() || contents.back() != '\n') {
    return malformed("truncated (no final newline)");
  }
  std::optional<int> wait_status;
  std::optional<std::string> message;
  std::string_view rest = contents;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    const std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 1);
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      return malformed(absl::StrCat("line '", Str(line), "' is not key=value"));
    }
    const std::string_view key = line.substr(0, eq);
    const std::string_view value = line.substr(eq + 1);
    if (key == "exit_status") {
      wait_status = ParseInt(value);
      if (!wait_status) {
        return malformed(absl::StrCat("exit_status '", Str(value), "' is not a number"));
      }
    } else if (key == "message") {
      message = Str(value);
    }
    // Unknown keys are skipped so a newer init can add fields.
  }
  if (!wait_status) {
    return malformed("no exit_status");
  }
  if (!message) {
    return malformed("no message");
  }
  return InitExit{.wait_status = *wait_status, .message = std::move(*message)};
}

int ExitCodeOf(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    return 128 + WTERMSIG(wait_status);
  }
  return WEXITSTATUS(wait_status);
}

}  // namespace rz::agent
