#include "agent/http_api.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "agent/sandbox.h"
#include "common/proto_json.h"
#include "common/status_convert.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace rz::agent {
namespace {

constexpr char kRecovering[] = "agent is recovering";

// A file descriptor closed when it goes out of scope.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }

 private:
  void Reset() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = -1;
  }

  int fd_ = -1;
};

// The agent's error bodies carry the message under both "error" (as every rz endpoint does) and
// "message".
HttpResponse Error(const absl::Status& status) {
  nlohmann::json body = nlohmann::json::parse(ErrorJson(status));
  body["message"] = std::string(status.message());
  return HttpResponse{.status = ToHttpCode(status), .body = body.dump()};
}

std::optional<std::string> Param(const HttpRequest& request, const std::string& name) {
  auto it = request.params.find(name);
  if (it == request.params.end()) {
    return std::nullopt;
  }
  return it->second;
}

// Parses the optional non-negative integer parameter `name`, or returns `fallback`.
absl::StatusOr<int64_t> IntParam(const HttpRequest& request, const std::string& name,
                                 int64_t fallback) {
  const std::optional<std::string> text = Param(request, name);
  if (!text.has_value()) {
    return fallback;
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(*text, &value) || value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("parameter '", name, "' must be a non-negative integer, not '", *text, "'"));
  }
  return value;
}

bool KnowsTask(const rz::v1::AgentStateResponse& state, const std::string& framework_id,
               const std::string& task_id) {
  for (const auto* tasks : {&state.tasks(), &state.completed_tasks()}) {
    for (const rz::v1::Task& task : *tasks) {
      if (task.framework_id() == framework_id && task.task_id() == task_id) {
        return true;
      }
    }
  }
  return false;
}

// The components of `path` without empty and "." ones.
std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> components;
  for (const std::string& component :
       std::vector<std::string>(absl::StrSplit(path, '/', absl::SkipEmpty()))) {
    if (component != ".") {
      components.push_back(component);
    }
  }
  return components;
}

// SplitPath() of a path from a request. PermissionDenied for "..": no request may climb,
// whatever it would climb to.
absl::StatusOr<std::vector<std::string>> RequestComponents(const std::string& path) {
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError("path contains a NUL byte");
  }
  std::vector<std::string> components = SplitPath(path);
  if (std::find(components.begin(), components.end(), "..") != components.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("path '", path, "' contains '..', which could leave the sandbox"));
  }
  return components;
}

// Whether `path` starts with the components `prefix`; if so, strips them from `path`.
bool StripPrefix(const std::vector<std::string>& prefix, std::vector<std::string>& path) {
  if (prefix.size() > path.size() || !std::equal(prefix.begin(), prefix.end(), path.begin())) {
    return false;
  }
  path.erase(path.begin(), path.begin() + static_cast<std::ptrdiff_t>(prefix.size()));
  return true;
}

// Resolves `path` (symbolic links followed) into `out`. Returns 0 or the errno of realpath().
int RealPath(const std::string& path, std::string& out) {
  char buffer[PATH_MAX];
  if (::realpath(path.c_str(), buffer) == nullptr) {
    return errno;
  }
  out = buffer;
  return 0;
}

// A path inside one task's sandbox, as a request named it.
struct SandboxPath {
  std::string framework_id;
  std::string task_id;
  std::vector<std::string> relative;  // Below the sandbox; empty for the sandbox itself.
  std::string requested;              // The `path` parameter as given ("" if absent).
};

// Reads the file-naming parameters (see the header). `path_required`: /files/read needs a path
// even with framework_id and task_id.
absl::StatusOr<SandboxPath> ParseSandboxPath(const HttpRequest& request,
                                             const StateSnapshot& snapshot,
                                             const std::string& work_dir, bool path_required) {
  SandboxPath result;
  const std::optional<std::string> framework_id = Param(request, "framework_id");
  const std::optional<std::string> task_id = Param(request, "task_id");
  const std::optional<std::string> path = Param(request, "path");
  result.requested = path.value_or("");

  if (framework_id.has_value() || task_id.has_value()) {
    if (!framework_id.has_value() || !task_id.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("missing parameter '", framework_id.has_value() ? "task_id" : "framework_id",
                       "': give both framework_id and task_id, or neither and an absolute path"));
    }
    if (!IsSafePathComponent(*framework_id) || !IsSafePathComponent(*task_id)) {
      return absl::InvalidArgumentError("invalid framework or task id");
    }
    if (path_required && !path.has_value()) {
      return absl::InvalidArgumentError("missing parameter 'path'");
    }
    if (!result.requested.empty() && result.requested.front() == '/') {
      return absl::PermissionDeniedError(absl::StrCat(
          "path '", result.requested,
          "' is absolute; with framework_id and task_id it must be relative to the sandbox"));
    }
    RZ_ASSIGN_OR_RETURN(result.relative, RequestComponents(result.requested));
    if (!KnowsTask(*snapshot.Get(), *framework_id, *task_id)) {
      return absl::NotFoundError(
          absl::StrCat("unknown task '", *task_id, "' of framework '", *framework_id, "'"));
    }
    result.framework_id = *framework_id;
    result.task_id = *task_id;
    return result;
  }

  if (!path.has_value() || path->empty()) {
    return absl::InvalidArgumentError("missing parameter 'path'");
  }
  RZ_ASSIGN_OR_RETURN(std::vector<std::string> components, RequestComponents(*path));
  if (path->front() == '/') {
    // The sandboxes directory as the agent names it (ContainerState.sandbox) or as the kernel
    // resolves it (the work dir may lie behind a symbolic link).
    const std::string root = absl::StrCat(work_dir, "/sandboxes");
    bool inside = StripPrefix(SplitPath(root), components);
    if (!inside) {
      if (std::string real_root; RealPath(root, real_root) == 0) {
        inside = StripPrefix(SplitPath(real_root), components);
      }
    }
    if (!inside) {
      return absl::PermissionDeniedError(
          absl::StrCat("path '", *path, "' is outside the sandboxes directory '", root, "'"));
    }
  }
  if (components.size() < 2) {
    return absl::PermissionDeniedError(
        absl::StrCat("path '", *path, "' is not inside a task's sandbox (<framework>/<task>/...)"));
  }
  if (!IsSafePathComponent(components[0]) || !IsSafePathComponent(components[1])) {
    return absl::InvalidArgumentError(absl::StrCat("path '", *path, "' names an invalid sandbox"));
  }
  result.framework_id = components[0];
  result.task_id = components[1];
  result.relative.assign(components.begin() + 2, components.end());
  return result;
}

struct OpenedFile {
  UniqueFd fd;
  struct stat st;
};

// Opens directory `name` below `dir` without following a symbolic link. A link in its place
// answers PermissionDenied.
absl::StatusOr<UniqueFd> OpenDirectoryAt(int dir, const std::string& name,
                                         const std::string& what) {
  const int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    return UniqueFd(fd);
  }
  const int error = errno;
  if (error == ENOENT) {
    return absl::NotFoundError(absl::StrCat(what, " does not exist"));
  }
  if (error == ELOOP || error == ENOTDIR) {
    return absl::PermissionDeniedError(
        absl::StrCat(what, " is not a directory (a symbolic link is not followed here)"));
  }
  return absl::ErrnoToStatus(error, absl::StrCat("cannot open ", what));
}

// Opens what `target` names. The check runs twice: realpath() decides whether the path, its
// symbolic links followed, stays inside the sandbox; then the resolved path is opened from the
// sandbox's own directory one component at a time with O_NOFOLLOW. If a component was swapped for
// a link in between, that open fails instead of following it.
absl::StatusOr<OpenedFile> OpenInSandbox(const std::string& work_dir, const SandboxPath& target) {
  const std::string sandbox_name = absl::StrCat("the sandbox of task '", target.task_id,
                                                "' of framework '", target.framework_id, "'");
  const std::string display = target.requested.empty() ? "." : target.requested;
  const int root =
      ::open(absl::StrCat(work_dir, "/sandboxes").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    return absl::NotFoundError(absl::StrCat(sandbox_name, " does not exist"));
  }
  UniqueFd root_fd(root);
  RZ_ASSIGN_OR_RETURN(UniqueFd framework_fd,
                      OpenDirectoryAt(root_fd.get(), target.framework_id, sandbox_name));
  RZ_ASSIGN_OR_RETURN(UniqueFd sandbox_fd,
                      OpenDirectoryAt(framework_fd.get(), target.task_id, sandbox_name));

  std::vector<std::string> real_relative;
  if (!target.relative.empty()) {
    const std::string sandbox =
        SandboxDir(work_dir, FrameworkId(target.framework_id), TaskId(target.task_id));
    std::string real_sandbox;
    if (const int error = RealPath(sandbox, real_sandbox); error != 0) {
      return absl::ErrnoToStatus(error, absl::StrCat("cannot resolve ", sandbox_name));
    }
    std::string real;
    const int error =
        RealPath(absl::StrCat(sandbox, "/", absl::StrJoin(target.relative, "/")), real);
    switch (error) {
      case 0:
        break;
      case ENOENT:
      case ENOTDIR:  // A file where the path needs a directory.
        return absl::NotFoundError(absl::StrCat("no file '", display, "' in ", sandbox_name));
      case ELOOP:
        return absl::PermissionDeniedError(
            absl::StrCat("path '", display, "' has a loop of symbolic links"));
      case EACCES:
        return absl::PermissionDeniedError(
            absl::StrCat("path '", display, "' in ", sandbox_name, " is not accessible"));
      default:
        return absl::ErrnoToStatus(error, absl::StrCat("cannot resolve '", display, "'"));
    }
    real_relative = SplitPath(real);
    if (!StripPrefix(SplitPath(real_sandbox), real_relative)) {
      return absl::PermissionDeniedError(absl::StrCat("path '", display, "' leads out of ",
                                                      sandbox_name, " through a symbolic link"));
    }
  }

  UniqueFd current = std::move(sandbox_fd);
  for (size_t i = 0; i < real_relative.size(); ++i) {
    const bool last = i + 1 == real_relative.size();
    // O_NONBLOCK: opening a FIFO a task planted must not hang the handler.
    const int flags = last ? O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
                           : O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    const int fd = ::openat(current.get(), real_relative[i].c_str(), flags);
    if (fd < 0) {
      const int error = errno;
      if (error == ENOENT) {
        return absl::NotFoundError(absl::StrCat("no file '", display, "' in ", sandbox_name));
      }
      if (error == ELOOP || error == ENOTDIR) {
        return absl::PermissionDeniedError(
            absl::StrCat("path '", display,
                         "' changed while it was opened; a symbolic link on it is not followed"));
      }
      return absl::ErrnoToStatus(error, absl::StrCat("cannot open '", display, "'"));
    }
    current = UniqueFd(fd);
  }
  OpenedFile opened{.fd = std::move(current), .st = {}};
  if (::fstat(opened.fd.get(), &opened.st) != 0) {
    const int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat("cannot stat '", display, "'"));
  }
  return opened;
}

double Seconds(const struct timespec& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

std::string JoinDisplayPath(const std::string& base, const std::string& name) {
  std::string trimmed = base;
  while (trimmed.size() > 1 && trimmed.back() == '/') {
    trimmed.pop_back();
  }
  if (trimmed.empty()) {
    return name;
  }
  return trimmed == "/" ? absl::StrCat("/", name) : absl::StrCat(trimmed, "/", name);
}

absl::StatusOr<std::string> ListDirectory(OpenedFile opened, const std::string& requested) {
  if (!S_ISDIR(opened.st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("'", requested, "' is not a directory"));
  }
  DIR* dir = ::fdopendir(opened.fd.get());
  if (dir == nullptr) {
    const int error = errno;
    return absl::ErrnoToStatus(error, absl::StrCat("cannot list '", requested, "'"));
  }
  opened.fd.Release();  // `dir` owns it now.
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
  std::vector<std::pair<std::string, struct stat>> entries;
  // readdir() is safe on a stream no other thread uses.
  while (const struct dirent* entry = ::readdir(dir)) {  // NOLINT(concurrency-mt-unsafe)
    const std::string name = entry->d_name;
    if (name == "." || name == "..") {
      continue;
    }
    struct stat st;
    if (::fstatat(::dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;  // Removed since readdir() saw it.
    }
    entries.emplace_back(name, st);
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  nlohmann::json listing = nlohmann::json::array();
  for (const auto& [name, st] : entries) {
    listing.push_back({{"path", JoinDisplayPath(requested, name)},
                       {"name", name},
                       {"size", static_cast<int64_t>(st.st_size)},
                       {"mode", FileModeString(st.st_mode)},
                       {"mtime", Seconds(st.st_mtim)},
                       {"is_dir", S_ISDIR(st.st_mode)}});
  }
  // Names are bytes; a name that is not UTF-8 is replaced rather than failing the listing.
  return listing.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpResponse BrowseFiles(const StateSnapshot& snapshot, const std::string& work_dir,
                         const HttpRequest& request) {
  absl::StatusOr<SandboxPath> target =
      ParseSandboxPath(request, snapshot, work_dir, /*path_required=*/false);
  if (!target.ok()) {
    return Error(target.status());
  }
  absl::StatusOr<OpenedFile> opened = OpenInSandbox(work_dir, *target);
  if (!opened.ok()) {
    return Error(opened.status());
  }
  absl::StatusOr<std::string> listing = ListDirectory(std::move(*opened), target->requested);
  if (!listing.ok()) {
    return Error(listing.status());
  }
  return HttpResponse{.body = std::move(*listing)};
}

HttpResponse ReadFile(const StateSnapshot& snapshot, const std::string& work_dir,
                      const HttpRequest& request) {
  absl::StatusOr<SandboxPath> target =
      ParseSandboxPath(request, snapshot, work_dir, /*path_required=*/true);
  if (!target.ok()) {
    return Error(target.status());
  }
  absl::StatusOr<int64_t> offset = IntParam(request, "offset", 0);
  if (!offset.ok()) {
    return Error(offset.status());
  }
  absl::StatusOr<int64_t> length = IntParam(request, "length", kMaxReadLength);
  if (!length.ok()) {
    return Error(length.status());
  }
  absl::StatusOr<OpenedFile> opened = OpenInSandbox(work_dir, *target);
  if (!opened.ok()) {
    return Error(opened.status());
  }
  const std::string& path = target->requested;
  if (!S_ISREG(opened->st.st_mode)) {
    return Error(absl::NotFoundError(absl::StrCat("'", path, "' is not a regular file")));
  }
  const int fd = opened->fd.get();
  const auto size = static_cast<int64_t>(opened->st.st_size);
  const int64_t want = std::min({*length, kMaxReadLength, std::max<int64_t>(0, size - *offset)});
  HttpResponse response{.content_type = "application/octet-stream"};
  response.headers["X-Rz-File-Size"] = absl::StrCat(size);
  response.body.resize(static_cast<size_t>(want));
  int64_t done = 0;
  while (done < want) {
    const ssize_t n = ::pread(fd, response.body.data() + done, want - done, *offset + done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int error = errno;
      return Error(absl::ErrnoToStatus(error, absl::StrCat("cannot read '", path, "'")));
    }
    if (n == 0) {
      break;  // The file shrank.
    }
    done += n;
  }
  response.body.resize(static_cast<size_t>(done));
  return response;
}

// Renders each message with the one protobuf JSON mapping, as a JSON array.
template <typename Message>
HttpResponse ProtoJsonArray(const google::protobuf::RepeatedPtrField<Message>& messages) {
  std::vector<std::string> bodies;
  bodies.reserve(messages.size());
  for (const Message& message : messages) {
    HttpResponse one = ProtoJsonResponse(message);
    if (one.status != 200) {
      return one;
    }
    bodies.push_back(std::move(one.body));
  }
  return HttpResponse{.body = absl::StrCat("[", absl::StrJoin(bodies, ","), "]")};
}

HttpResponse Statistics(const rz::v1::AgentStateResponse& state) {
  nlohmann::json entries = nlohmann::json::array();
  for (const rz::v1::ContainerState& container : state.containers()) {
    HttpResponse statistics = ProtoJsonResponse(container.statistics());
    if (statistics.status != 200) {
      return statistics;
    }
    entries.push_back({{"framework_id", container.framework_id()},
                       {"task_id", container.task_id()},
                       {"container_id", container.container_id()},
                       {"statistics", nlohmann::json::parse(statistics.body)}});
  }
  return HttpResponse{.body = entries.dump()};
}

}  // namespace

std::string FileModeString(uint32_t st_mode) {
  std::string mode = "----------";
  switch (st_mode & S_IFMT) {
    case S_IFDIR:
      mode[0] = 'd';
      break;
    case S_IFLNK:
      mode[0] = 'l';
      break;
    case S_IFIFO:
      mode[0] = 'p';
      break;
    case S_IFSOCK:
      mode[0] = 's';
      break;
    case S_IFCHR:
      mode[0] = 'c';
      break;
    case S_IFBLK:
      mode[0] = 'b';
      break;
    default:
      break;
  }
  constexpr char kLetters[] = "rwx";
  for (int i = 0; i < 9; ++i) {
    if ((st_mode & (0400u >> i)) != 0) {
      mode[1 + i] = kLetters[i % 3];
    }
  }
  // setuid, setgid and sticky replace the execute letter: lower case if it is also executable.
  const auto special = [&mode, st_mode](uint32_t bit, int index, char executable, char plain) {
    if ((st_mode & bit) != 0) {
      mode[index] = mode[index] == 'x' ? executable : plain;
    }
  };
  special(S_ISUID, 3, 's', 'S');
  special(S_ISGID, 6, 's', 'S');
  special(S_ISVTX, 9, 't', 'T');
  return mode;
}

void RegisterHttpHandlers(HttpServer& server, const StateSnapshot& snapshot,
                          const std::string& work_dir) {
  server.Get("/health", [&snapshot](const HttpRequest&) {
    return HttpResponse{
        .body = nlohmann::json({{"healthy", true}, {"recovering", snapshot.Get()->recovering()}})
                    .dump()};
  });
  server.Get("/state", [&snapshot](const HttpRequest&) {
    std::shared_ptr<const rz::v1::AgentStateResponse> state = snapshot.Get();
    if (state->recovering()) {
      return Error(absl::UnavailableError(kRecovering));
    }
    return ProtoJsonResponse(*state);
  });
  server.Get("/containers", [&snapshot](const HttpRequest&) {
    return ProtoJsonArray(snapshot.Get()->containers());
  });
  server.Get("/monitor/statistics",
             [&snapshot](const HttpRequest&) { return Statistics(*snapshot.Get()); });
  server.Get("/files/browse", [&snapshot, work_dir](const HttpRequest& request) {
    return BrowseFiles(snapshot, work_dir, request);
  });
  server.Get("/files/read", [&snapshot, work_dir](const HttpRequest& request) {
    return ReadFile(snapshot, work_dir, request);
  });
}

}  // namespace rz::agent
