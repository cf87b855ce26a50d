// The agent's REST endpoints, served by rz::HttpServer:
//   GET /health      {"healthy":true}
//   GET /state       AgentStateResponse in the protobuf JSON mapping (lowerCamelCase names,
//                    fields with default values included)
//   GET /files/read?framework_id=F&task_id=T&path=P[&offset=O][&length=N]
//                    raw bytes of P inside the task's sandbox (active or completed task while
//                    the sandbox exists), header X-Rz-File-Size = the whole file's size. At most
//                    kMaxReadLength bytes per call (the default length). 400 for a bad path or
//                    number, 404 for an unknown task or file, each with a JSON error body.
//
// Thread rule: handlers run on the HTTP server's threads; they read only the StateSnapshot and
// the filesystem, never agent loop state.
#pragma once

#include <cstdint>
#include <string>

#include "agent/state_snapshot.h"
#include "common/http_server.h"

namespace rz::agent {

inline constexpr int64_t kMaxReadLength = 16 * 1024 * 1024;

// Registers the handlers above on `server`. `snapshot` must outlive the server.
// REQUIRES: called before server.Start().
void RegisterHttpHandlers(HttpServer& server, const StateSnapshot& snapshot,
                          const std::string& work_dir);

}  // namespace rz::agent
