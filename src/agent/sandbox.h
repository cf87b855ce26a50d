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

}  // namespace rz::agent
