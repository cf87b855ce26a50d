// ZooKeeperEnsemble: 1 or 3 REAL ZooKeeper servers (Debian's `zookeeper` package: Java
// QuorumPeerMain) on free loopback ports, in a temporary directory, for tests.
//
// Each server gets its own data dir and zoo.cfg (tickTime 500 ms, so session timeouts of 1 to
// 30 s are allowed; the AdminServer off; the `ruok` and `srvr` four-letter words allowed) and
// logs to `<dir>/<i>/zk.log`. Start() returns once every server serves clients (a 3-server
// ensemble has elected its leader). Kill/Stop/Restart take a server down and bring it back
// with the same data dir and ports. The destructor kills every server it started, by PID, and
// removes the directory.
//
// If Java or the ZooKeeper jar is missing, Start() fails saying to run deploy/install-deps.sh.
//
// Thread rule: not thread-safe; the test thread drives it. Servers are started with
// PR_SET_PDEATHSIG, so they die with the thread that started them: start and restart them from
// the test's main thread (gtest runs tests and SetUpTestSuite there).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rz::testing {

class ZooKeeperEnsemble {
 public:
  // Starts `size` (1 or 3) servers and waits up to `timeout` until they serve.
  static absl::StatusOr<std::unique_ptr<ZooKeeperEnsemble>> Start(
      int size = 1, absl::Duration timeout = absl::Seconds(30));
  ~ZooKeeperEnsemble();

  ZooKeeperEnsemble(const ZooKeeperEnsemble&) = delete;
  ZooKeeperEnsemble& operator=(const ZooKeeperEnsemble&) = delete;

  int size() const { return static_cast<int>(servers_.size()); }
  // "127.0.0.1:p1,127.0.0.1:p2,...": every server, running or not.
  std::string connect_string() const;
  // "zk://127.0.0.1:p1,.../<path>".
  std::string url(const std::string& path) const;
  const std::string& dir() const { return dir_; }
  int client_port(int i) const { return servers_[i].client_port; }
  bool running(int i) const { return servers_[i].pid > 0; }

  // SIGKILL to server `i` (like a crash), then reaps it.
  absl::Status Kill(int i);
  // SIGTERM, then SIGKILL if it has not exited within 5 s.
  absl::Status Stop(int i);
  // Starts server `i` again with its data dir and ports; waits until its client port answers
  // `ruok` (it may not serve yet: a lone ensemble member waits for a quorum, see WaitServing).
  absl::Status Restart(int i, absl::Duration timeout = absl::Seconds(30));
  // Waits until server `i` serves clients (standalone, leader or follower).
  absl::Status WaitServing(int i, absl::Duration timeout);

  // The answer of four-letter word `command` ("ruok", "srvr") from server `i`; empty if none.
  std::string FourLetterWord(int i, const std::string& command) const;

 private:
  struct Server {
    std::string dir;
    int client_port = 0;
    int quorum_port = 0;
    int election_port = 0;
    pid_t pid = -1;
  };

  ZooKeeperEnsemble() = default;
  absl::Status Launch(int i);
  absl::Status WaitAnswering(int i, absl::Duration timeout);
  void Reap(int i);

  std::string dir_;
  std::vector<Server> servers_;
};

}  // namespace rz::testing
