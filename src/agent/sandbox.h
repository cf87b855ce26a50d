// Sandbox paths: where a task's files live (<work_dir>/sandboxes/<framework_id>/<task_id>/) and
// the checks that keep ids and file paths from untrusted input inside that tree.
//
// Thread rule: pure functions, except CreateSandbox(), which blocks on the filesystem (call it
// from a worker, never from the event loop).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "common/ids.h"

namespace rz::agent {

// True if `id` can name a directory: non-empty, at most 255 bytes, not "." or "..", and free of
// '/' and NUL.
bool IsSafePathComponent(const std::string& id);

// <work_dir>/sandboxes/<framework_id>/<task_id>. REQUIRES: both ids are IsSafePathComponent().
std::string SandboxDir(const std::string& work_dir, const FrameworkId& framework_id,
                       const TaskId& task_id);

// Returns InvalidArgument unless `path` is a non-empty relative path without "..", empty
// components that would make it absolute, or NUL bytes.
absl::Status ValidateSandboxRelativePath(const std::string& path);

// Creates `dir` and its parents. Returns Internal with the errno text on failure.
absl::Status CreateSandbox(const std::string& dir);

// Where scheduler MESSAGEs for a task are delivered, relative to its sandbox: one line per
// message, the data in base64 (RFC 4648, with padding), appended in the order they arrive.
inline constexpr char kMessagesFile[] = ".rz/messages";

// Appends `data` as one base64 line to `<sandbox>/.rz/messages`, creating `.rz` (mode 0755)
// and the file (mode 0644) as needed, both owned by `uid`/`gid` when they are not -1. Blocks on
// the filesystem (call it from a worker). Returns Internal with the errno text on failure.
absl::Status AppendMessage(const std::string& sandbox, const std::string& data, int uid = -1,
                           int gid = -1);

}  // namespace rz::agent
