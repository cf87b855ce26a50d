// The agent's REST endpoints, served by rz::HttpServer. JSON bodies use the protobuf JSON
// mapping of common/proto_json.h (snake_case names, default values printed). Every error answers
// with a JSON body {"error": "<message>", "code": "<CODE>", "message": "<message>"}.
//
//   GET /health      {"healthy":true,"recovering":<bool>}
//   GET /state       AgentStateResponse; 503 (UNAVAILABLE, "agent is recovering") while the
//                    snapshot says the agent recovers its checkpointed state.
//   GET /containers  a JSON array of ContainerState, one per container, with its statistics.
//   GET /monitor/statistics
//                    a JSON array of {"framework_id", "task_id", "container_id", "statistics"}
//                    (statistics: ResourceStatistics), one per container.
//   GET /files/browse?path=P  or  ?framework_id=F&task_id=T[&path=P]
//                    a JSON array of the entries of directory P, sorted by name:
//                    {"path", "name", "size", "mode" ("drwxr-xr-x"), "mtime" (seconds since the
//                    epoch), "is_dir"}. `path` is P joined with the name, so it can be passed back.
//                    Symbolic links are listed as links (mode "l..."), never followed.
//   GET /files/read?path=P  or  ?framework_id=F&task_id=T&path=P  [&offset=O][&length=N]
//                    raw bytes (application/octet-stream) of regular file P from byte O, at most
//                    min(N, kMaxReadLength) of them (N defaults to kMaxReadLength); header
//                    X-Rz-File-Size holds the whole file's size. Reading past the end is empty.
//
// Naming a file: with `framework_id` and `task_id`, P is relative to that task's sandbox (empty
// or "." for the sandbox itself) and the task must be in the snapshot (active or completed);
// otherwise P names a path under <work_dir>/sandboxes, either absolute (as ContainerState.sandbox
// prints it) or relative to that directory, and must lie inside some task's sandbox
// (<framework>/<task>/...); the sandbox must exist.
//
// Confinement: a path is served only if it resolves inside its task's sandbox. 403
// (PERMISSION_DENIED, naming the reason) for a ".." component, an absolute path outside the
// sandboxes directory or a path above a sandbox, and a path whose symbolic links (anywhere along
// it) lead out of the sandbox. The file is then opened component by component from the sandbox's
// directory without following symbolic links, so swapping a directory for a link after the check
// cannot escape either (it answers 403). Symbolic links that stay inside the sandbox are
// followed. 404 for an unknown task, a missing sandbox or file, or the wrong kind of file (a
// directory for /files/read, a file for /files/browse). 400 for a missing parameter or a bad
// offset or length.
//
// Thread rule: handlers run on the HTTP server's threads; they read only the StateSnapshot and
// the filesystem, never agent loop state.
#pragma once

#include <cstdint>
#include <string>

#include "agent/state_snapshot.h"
#include "common/http_server.h"

namespace rz::agent {

// The most bytes one /files/read answers with; clients read larger files in chunks.
inline constexpr int64_t kMaxReadLength = int64_t{1024} * 1024;

// Registers the handlers above on `server`. `snapshot` must outlive the server; `work_dir` is
// the agent's work directory (sandboxes live under <work_dir>/sandboxes).
// REQUIRES: called before server.Start().
void RegisterHttpHandlers(HttpServer& server, const StateSnapshot& snapshot,
                          const std::string& work_dir);

// The `ls -l` style mode string of `st_mode`, e.g. "drwxr-xr-x", "-rw-r--r--", "lrwxrwxrwx".
std::string FileModeString(uint32_t st_mode);

}  // namespace rz::agent
