#include "zk/zookeeper_url.h"

#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace rz::zk {
namespace {

constexpr char kScheme[] = "zk://";

absl::Status BadUrl(const std::string& url, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("bad ZooKeeper url '", url, "': ", problem,
                                                 " (expected zk://host:port[,host:port...]/path)"));
}

// Checks one "host:port" or "[v6]:port" entry; returns the problem, or "" if it is fine.
std::string ServerProblem(const std::string& server) {
  if (server.empty()) {
    return "empty host in the host list";
  }
  std::string host;
  std::string port;
  if (server.front() == '[') {
    const size_t close = server.find(']');
    if (close == std::string::npos) {
      return absl::StrCat("unclosed '[' in host '", server, "'");
    }
    host = server.substr(1, close - 1);
    if (close + 1 >= server.size() || server[close + 1] != ':') {
      return absl::StrCat("host '", server, "' has no port");
    }
    port = server.substr(close + 2);
  } else {
    const size_t colon = server.rfind(':');
    if (colon == std::string::npos) {
      return absl::StrCat("host '", server, "' has no port");
    }
    host = server.substr(0, colon);
    port = server.substr(colon + 1);
    if (absl::StrContains(host, ':')) {
      return absl::StrCat("host '", server, "': write IPv6 addresses in brackets, [::1]:2181");
    }
  }
  if (host.empty()) {
    return absl::StrCat("host missing before the port in '", server, "'");
  }
  uint32_t number = 0;
  if (port.empty() || !absl::SimpleAtoi(port, &number) || number == 0 || number > 65535 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return absl::StrCat("bad port '", port, "' in '", server, "' (must be 1-65535)");
  }
  return "";
}

}  // namespace

absl::Status ValidateZnodePath(const std::string& path) {
  auto bad = [&path](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat("bad znode path '", path, "': ", problem));
  };
  if (path.empty() || path.front() != '/') {
    return bad("it must be absolute (start with '/')");
  }
  if (path == "/") {
    return bad("the root znode cannot be used; name a path such as /rz");
  }
  if (path.back() == '/') {
    return bad("it must not end with '/'");
  }
  for (const char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      return bad("it contains a control character");
    }
  }
  for (absl::string_view part : absl::StrSplit(absl::string_view(path).substr(1), '/')) {
    if (part.empty()) {
      return bad("it contains an empty component ('//')");
    }
    if (part == "." || part == "..") {
      return bad("'.' and '..' are not allowed as components");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ZooKeeperUrl> ZooKeeperUrl::Parse(const std::string& url) {
  if (!absl::StartsWith(url, kScheme)) {
    return BadUrl(url, "it must start with 'zk://'");
  }
  const std::string rest = url.substr(sizeof(kScheme) - 1);
  const size_t slash = rest.find('/');
  const std::string hosts = rest.substr(0, slash);
  if (hosts.empty()) {
    return BadUrl(url, "no hosts");
  }
  if (absl::StrContains(hosts, '@')) {
    return BadUrl(url, "credentials in the url are not supported");
  }
  ZooKeeperUrl parsed;
  for (absl::string_view server : absl::StrSplit(hosts, ',')) {
    std::string problem = ServerProblem(std::string(server));
    if (!problem.empty()) {
      return BadUrl(url, problem);
    }
    parsed.servers.emplace_back(server);
  }
  if (slash == std::string::npos || slash + 1 == rest.size()) {
    return BadUrl(url, "the path is missing");
  }
  parsed.path = rest.substr(slash);
  if (absl::Status status = ValidateZnodePath(parsed.path); !status.ok()) {
    return BadUrl(url, status.message());
  }
  return parsed;
}

std::string ZooKeeperUrl::connect_string() const { return absl::StrJoin(servers, ","); }

std::string ZooKeeperUrl::ToString() const { return absl::StrCat(kScheme, connect_string(), path); }

}  // namespace rz::zk
