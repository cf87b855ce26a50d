#include "testing/zookeeper_ensemble.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace rz::testing {
namespace {

constexpr char kZooKeeperJar[] = "/usr/share/java/zookeeper.jar";
constexpr char kSlf4jSimpleJar[] = "/usr/share/java/slf4j-simple.jar";
constexpr char kInstallHint[] =
    "the ZooKeeper server is needed by this test: run deploy/install-deps.sh (Debian packages "
    "zookeeper, zookeeper-bin and a Java runtime)";

std::string ErrnoText(int error) {
  char text[256];
  return strerror_r(error, text, sizeof(text));  // GNU variant: returns the text.
}

// The java binary on PATH, or empty.
std::string FindJava() {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe): read only
  for (absl::string_view dir : absl::StrSplit(path == nullptr ? "/usr/bin:/bin" : path, ':')) {
    std::string candidate = absl::StrCat(dir, "/java");
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

// Reserves `count` distinct free loopback ports: all are bound at once, then released.
absl::StatusOr<std::vector<int>> FreePorts(int count) {
  std::vector<int> fds;
  std::vector<int> ports;
  absl::Status status;
  for (int i = 0; i < count && status.ok(); ++i) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      status = absl::InternalError(absl::StrCat("cannot reserve a port: ", ErrnoText(errno)));
    } else {
      ports.push_back(ntohs(address.sin_port));
    }
    if (fd >= 0) {
      fds.push_back(fd);
    }
  }
  for (const int fd : fds) {
    close(fd);
  }
  if (!status.ok()) {
    return status;
  }
  return ports;
}

std::string Tail(const std::string& file, size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) {
    all.push_back(line);
  }
  const auto from = static_cast<std::ptrdiff_t>(all.size() > lines ? all.size() - lines : 0);
  return absl::StrJoin(all.begin() + from, all.end(), "\n");
}

}  // namespace

absl::StatusOr<std::unique_ptr<ZooKeeperEnsemble>> ZooKeeperEnsemble::Start(
    int size, absl::Duration timeout) {
  if (size != 1 && size != 3) {
    return absl::InvalidArgumentError("a test ZooKeeper ensemble has 1 or 3 servers");
  }
  if (access(kZooKeeperJar, R_OK) != 0 || access(kSlf4jSimpleJar, R_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(kZooKeeperJar, " or ", kSlf4jSimpleJar, " is missing; ", kInstallHint));
  }
  if (FindJava().empty()) {
    return absl::FailedPreconditionError(absl::StrCat("no java on PATH; ", kInstallHint));
  }
  std::unique_ptr<ZooKeeperEnsemble> ensemble(new ZooKeeperEnsemble);
  std::string pattern = "/tmp/rz-zk-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", ErrnoText(errno)));
  }
  ensemble->dir_ = pattern;
  absl::StatusOr<std::vector<int>> ports = FreePorts(3 * size);
  if (!ports.ok()) {
    return ports.status();
  }
  ensemble->servers_.resize(size);
  for (int i = 0; i < size; ++i) {
    Server& server = ensemble->servers_[i];
    server.dir = absl::StrCat(ensemble->dir_, "/", i + 1);
    const size_t first = size_t{3} * static_cast<size_t>(i);
    server.client_port = (*ports)[first];
    server.quorum_port = (*ports)[first + 1];
    server.election_port = (*ports)[first + 2];
  }
  for (int i = 0; i < size; ++i) {
    const Server& server = ensemble->servers_[i];
    std::filesystem::create_directories(server.dir + "/data");
    std::ofstream config(server.dir + "/zoo.cfg");
    // tickTime 500 ms: the server accepts session timeouts from 2 ticks (1 s); maxSessionTimeout
    // is raised so that clients asking for the usual 10 s get it. No fsync: test data.
    config << "tickTime=500\n"
           << "initLimit=10\n"
           << "syncLimit=5\n"
           << "minSessionTimeout=1000\n"
           << "maxSessionTimeout=30000\n"
           << "dataDir=" << server.dir << "/data\n"
           << "clientPort=" << server.client_port << "\n"
           << "clientPortAddress=127.0.0.1\n"
           << "maxClientCnxns=0\n"
           << "admin.enableServer=false\n"
           << "4lw.commands.whitelist=ruok,srvr,stat,mntr\n"
           << "forceSync=no\n";
    if (size > 1) {
      for (int j = 0; j < size; ++j) {
        const Server& peer = ensemble->servers_[j];
        config << "server." << j + 1 << "=127.0.0.1:" << peer.quorum_port << ":"
               << peer.election_port << "\n";
      }
      std::ofstream(server.dir + "/data/myid") << i + 1 << "\n";
    }
  }
  for (int i = 0; i < size; ++i) {
    if (absl::Status status = ensemble->Launch(i); !status.ok()) {
      return status;
    }
  }
  const absl::Time deadline = absl::Now() + timeout;
  for (int i = 0; i < size; ++i) {
    if (absl::Status status = ensemble->WaitServing(i, deadline - absl::Now()); !status.ok()) {
      return status;
    }
  }
  return ensemble;
}

ZooKeeperEnsemble::~ZooKeeperEnsemble() {
  for (int i = 0; i < size(); ++i) {
    if (running(i)) {
      kill(servers_[i].pid, SIGKILL);
      Reap(i);
    }
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string ZooKeeperEnsemble::connect_string() const {
  std::vector<std::string> servers;
  for (const Server& server : servers_) {
    servers.push_back(absl::StrCat("127.0.0.1:", server.client_port));
  }
  return absl::StrJoin(servers, ",");
}

std::string ZooKeeperEnsemble::url(const std::string& path) const {
  return absl::StrCat("zk://", connect_string(), path);
}

absl::Status ZooKeeperEnsemble::Launch(int i) {
  Server& server = servers_[i];
  const std::string java = FindJava();
  const std::string classpath = absl::StrCat(kZooKeeperJar, ":", kSlf4jSimpleJar);
  const std::string config = server.dir + "/zoo.cfg";
  const std::string log = server.dir + "/zk.log";
  // Fast JVM start: the servers live for seconds, so no optimizing JIT and a small heap.
  std::vector<std::string> args = {java,
                                   "-Xmx256m",
                                   "-XX:+UseSerialGC",
                                   "-XX:TieredStopAtLevel=1",
                                   "-cp",
                                   classpath,
                                   "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                                   config};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (std::string& arg : args) {
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", ErrnoText(errno)));
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
      _exit(1);
    }
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) {
      _exit(126);
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    close_range(3, ~0U, 0);
    execv(argv[0], argv.data());
    _exit(127);
  }
  server.pid = pid;
  return WaitAnswering(i, absl::Seconds(30));
}

absl::Status ZooKeeperEnsemble::WaitAnswering(int i, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (FourLetterWord(i, "ruok") == "imok") {
      return absl::OkStatus();
    }
    int status = 0;
    if (servers_[i].pid > 0 && waitpid(servers_[i].pid, &status, WNOHANG) == servers_[i].pid) {
      servers_[i].pid = -1;
      return absl::InternalError(absl::StrCat("ZooKeeper server ", i, " exited at start; log:\n",
                                              Tail(servers_[i].dir + "/zk.log", 30)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "ZooKeeper server ", i, " did not answer 'ruok' within ", absl::FormatDuration(timeout),
          "; log:\n", Tail(servers_[i].dir + "/zk.log", 30)));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status ZooKeeperEnsemble::WaitServing(int i, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const std::string answer = FourLetterWord(i, "srvr");
    if (answer.find("Mode: ") != std::string::npos) {
      return absl::OkStatus();
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "ZooKeeper server ", i, " does not serve after ", absl::FormatDuration(timeout),
          " (srvr: '", answer, "'); log:\n", Tail(servers_[i].dir + "/zk.log", 30)));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status ZooKeeperEnsemble::Kill(int i) {
  if (!running(i)) {
    return absl::FailedPreconditionError(absl::StrCat("ZooKeeper server ", i, " is not running"));
  }
  kill(servers_[i].pid, SIGKILL);
  Reap(i);
  return absl::OkStatus();
}

absl::Status ZooKeeperEnsemble::Stop(int i) {
  if (!running(i)) {
    return absl::FailedPreconditionError(absl::StrCat("ZooKeeper server ", i, " is not running"));
  }
  kill(servers_[i].pid, SIGTERM);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    int status = 0;
    if (waitpid(servers_[i].pid, &status, WNOHANG) == servers_[i].pid) {
      servers_[i].pid = -1;
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  kill(servers_[i].pid, SIGKILL);
  Reap(i);
  return absl::OkStatus();
}

absl::Status ZooKeeperEnsemble::Restart(int i, absl::Duration timeout) {
  if (running(i)) {
    return absl::FailedPreconditionError(absl::StrCat("ZooKeeper server ", i, " is running"));
  }
  if (absl::Status status = Launch(i); !status.ok()) {
    return status;
  }
  return WaitAnswering(i, timeout);
}

void ZooKeeperEnsemble::Reap(int i) {
  int status = 0;
  while (waitpid(servers_[i].pid, &status, 0) < 0 && errno == EINTR) {
  }
  servers_[i].pid = -1;
}

std::string ZooKeeperEnsemble::FourLetterWord(int i, const std::string& command) const {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    return "";
  }
  timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<uint16_t>(servers_[i].client_port));
  std::string answer;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      send(fd, command.data(), command.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(command.size())) {
    char buffer[4096];
    for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) {
      answer.append(buffer, static_cast<size_t>(n));
    }
  }
  close(fd);
  return answer;
}

}  // namespace rz::testing
