// ZooKeeperUrl: where an HA cluster keeps its state, as given to `--zk`:
//
//   zk://host:port[,host:port...]/path[/more]
//
// The hosts form the C client's connect string; the path is the cluster's root znode (the
// election znodes live directly under it, the registry under `<path>/registry`).
//
// Thread rule: a value type; Parse() is a pure function.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace rz::zk {

struct ZooKeeperUrl {
  std::vector<std::string> servers;  // "host:port" (IPv6 hosts in brackets), in the given order.
  std::string path;                  // Absolute, never "/" and never ending in '/'.

  // Parses `url`. InvalidArgument quoting the url and saying what is wrong: a missing `zk://`
  // scheme, no hosts, a host without a port or with a port outside 1-65535, credentials (not
  // supported), a missing or relative path, a trailing slash, an empty, "." or ".." component.
  static absl::StatusOr<ZooKeeperUrl> Parse(const std::string& url);

  // "host:port,host:port": what zookeeper_init() takes.
  std::string connect_string() const;
  // The URL in its canonical form.
  std::string ToString() const;
};

// Checks that `path` is an absolute znode path other than "/" with no empty, "." or ".."
// component and no trailing slash. InvalidArgument names the path and the problem.
absl::Status ValidateZnodePath(const std::string& path);

}  // namespace rz::zk
