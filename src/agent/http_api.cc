#include "agent/http_api.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "agent/sandbox.h"
#include "common/proto_json.h"
#include "common/status_convert.h"

namespace rz::agent {
namespace {

HttpResponse Error(const absl::Status& status) {
  return HttpResponse{.status = ToHttpCode(status), .body = ErrorJson(status)};
}

// Parses the optional non-negative integer parameter `name`, or returns `fallback`.
absl::StatusOr<int64_t> IntParam(const HttpRequest& request, const std::string& name,
                                 int64_t fallback) {
  auto it = request.params.find(name);
  if (it == request.params.end()) {
    return fallback;
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(it->second, &value) || value < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "parameter '", name, "' must be a non-negative integer, not '", it->second, "'"));
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

HttpResponse ReadFile(const StateSnapshot& snapshot, const std::string& work_dir,
                      const HttpRequest& request) {
  std::string params[3];
  const char* names[3] = {"framework_id", "task_id", "path"};
  for (int i = 0; i < 3; ++i) {
    auto it = request.params.find(names[i]);
    if (it == request.params.end()) {
      return Error(absl::InvalidArgumentError(absl::StrCat("missing parameter '", names[i], "'")));
    }
    params[i] = it->second;
  }
  const std::string& framework_id = params[0];
  const std::string& task_id = params[1];
  const std::string& path = params[2];
  if (!IsSafePathComponent(framework_id) || !IsSafePathComponent(task_id)) {
    return Error(absl::InvalidArgumentError("invalid framework or task id"));
  }
  if (absl::Status valid = ValidateSandboxRelativePath(path); !valid.ok()) {
    return Error(valid);
  }
  absl::StatusOr<int64_t> offset = IntParam(request, "offset", 0);
  if (!offset.ok()) {
    return Error(offset.status());
  }
  absl::StatusOr<int64_t> length = IntParam(request, "length", kMaxReadLength);
  if (!length.ok()) {
    return Error(length.status());
  }
  if (!KnowsTask(*snapshot.Get(), framework_id, task_id)) {
    return Error(absl::NotFoundError(
        absl::StrCat("unknown task '", task_id, "' of framework '", framework_id, "'")));
  }

  // A task may plant symlinks in its sandbox; only files that really lie inside it are served.
  const std::filesystem::path sandbox =
      SandboxDir(work_dir, FrameworkId(framework_id), TaskId(task_id));
  std::error_code error;
  const std::filesystem::path real_sandbox = std::filesystem::canonical(sandbox, error);
  const std::filesystem::path real_file =
      error ? std::filesystem::path() : std::filesystem::canonical(sandbox / path, error);
  const absl::Status not_found = absl::NotFoundError(
      absl::StrCat("no file '", path, "' in the sandbox of task '", task_id, "'"));
  if (error) {
    return Error(not_found);
  }
  const std::string prefix = real_sandbox.string() + "/";
  if (real_file.string().compare(0, prefix.size(), prefix) != 0) {
    return Error(absl::InvalidArgumentError(absl::StrCat("path '", path, "' leaves the sandbox")));
  }

  const int fd = ::open(real_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error(not_found);
  }
  std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* f) {
    ::close(*f);
    delete f;
  });
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return Error(not_found);
  }
  HttpResponse response{.content_type = "application/octet-stream"};
  response.headers["X-Rz-File-Size"] = absl::StrCat(st.st_size);
  const int64_t size = static_cast<int64_t>(st.st_size);
  const int64_t want = std::min({*length, kMaxReadLength, std::max<int64_t>(0, size - *offset)});
  response.body.resize(static_cast<size_t>(want));
  int64_t done = 0;
  while (done < want) {
    const ssize_t n = ::pread(fd, response.body.data() + done, want - done, *offset + done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return Error(
          absl::InternalError(absl::StrCat("cannot read '", path, "': ", std::strerror(errno))));
    }
    if (n == 0) {
      break;  // The file shrank.
    }
    done += n;
  }
  response.body.resize(static_cast<size_t>(done));
  return response;
}

}  // namespace

void RegisterHttpHandlers(HttpServer& server, const StateSnapshot& snapshot,
                          const std::string& work_dir) {
  server.Get("/health",
             [](const HttpRequest&) { return HttpResponse{.body = R"({"healthy":true})"}; });
  server.Get("/state",
             [&snapshot](const HttpRequest&) { return ProtoJsonResponse(*snapshot.Get()); });
  server.Get("/files/read", [&snapshot, work_dir](const HttpRequest& request) {
    return ReadFile(snapshot, work_dir, request);
  });
}

}  // namespace rz::agent
