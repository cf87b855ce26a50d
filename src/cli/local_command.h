// `rz local`: a whole cluster on this machine for development — one rz-master and N rz-agent
// processes on 127.0.0.1, each with its own work dir and log file under one directory. It
// prints where the master listens and how to submit work, runs until SIGINT/SIGTERM, then
// stops exactly the processes it started (SIGTERM, SIGKILL after 5 s) and exits 0. If a daemon
// dies, its log tail is printed, the others are stopped, and it exits 1.
//
// Thread rule: RunLocalCluster() is called once, from main(), before any other thread exists
// (it blocks SIGINT/SIGTERM/SIGCHLD in the calling thread so it can wait for them).
#pragma once

#include <string>

namespace rz::cli {

struct LocalOptions {
  int agents = 3;
  std::string work_dir;         // Empty: a fresh /tmp/rz-local-XXXXXX.
  int master_port = 5050;       // 0 picks a free one.
  int master_http_port = 5080;  // 0 picks a free one.
  int agent_http_port = 5081;   // Agent i gets this + i; 0 gives each a free one.
  std::string bin_dir;          // Where rz-master and rz-agent are; empty: next to `rz`.
  std::string agent_resources;  // --resources for every agent; empty: the agent's default.
};

// Returns the process exit code.
int RunLocalCluster(const LocalOptions& options);

}  // namespace rz::cli
