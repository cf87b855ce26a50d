// ZooKeeperRegistryStore: the highly available master's registry in ZooKeeper.
//
// Layout: one persistent znode per record, `<path>/registry/<escaped key>` ('/', '%' and bytes
// ZooKeeper does not allow in names are written %XX). A znode holds a 3-byte format tag and
// then the record's bytes; a znode without the tag is DataLoss naming its key. Record versions
// are znode data versions + 1, so a record written for the first time has version 1.
//
// Every Apply() is ONE zoo_multi: a check op that the writer's election znode (its fence, see
// SetFence) still exists, then per write a create, set, delete or check op carrying the
// write's expected version. ZooKeeper applies all or nothing. So a deposed leader — whose
// election znode went with its session — cannot write: its Apply() fails with
// FailedPrecondition "not the leading master: ..." and changes nothing, while the new leader's
// writes succeed. Writes made before SetFence() are refused the same way.
//
// Limits: ZooKeeper refuses requests over 1 MB (jute.maxbuffer), so a record whose value is
// larger than kMaxRecordBytes is InvalidArgument naming the key, and a batch whose total size
// is larger than kMaxBatchBytes is ResourceExhausted (the caller must split it).
//
// The store keeps its own ZooKeeper session; when that session expires, the next call starts
// a new one.
//
// Thread rule: thread-safe; every call blocks on the network (RegistryStore's rule: call it
// from the registry's worker, never from an event loop).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "master/registry/registry_store.h"
#include "zk/zookeeper_session.h"

namespace rz::master {

class ZooKeeperRegistryStore final : public RegistryStore {
 public:
  static constexpr size_t kMaxRecordBytes = size_t{1000} * 1024;
  static constexpr size_t kMaxBatchBytes = size_t{1000} * 1024;

  struct Options {
    std::string servers;  // zk::ZooKeeperUrl::connect_string().
    std::string path;     // zk::ZooKeeperUrl::path; records live under `<path>/registry`.
    absl::Duration session_timeout = absl::Seconds(10);
    // How long Open() and a call after a session expiry wait for a connection.
    absl::Duration connect_timeout = absl::Seconds(10);
  };

  // Connects and creates `<path>/registry` if missing. InvalidArgument for a bad path,
  // Unavailable naming the servers if ZooKeeper cannot be reached within connect_timeout.
  static absl::StatusOr<std::unique_ptr<ZooKeeperRegistryStore>> Open(Options options);
  ~ZooKeeperRegistryStore() override;

  // Fences every later write on `election_znode` (LeaderContender's `elected` argument): a
  // write succeeds only while that znode exists. Thread-safe.
  void SetFence(std::string election_znode);
  // Writes are refused again until the next SetFence() (a master that steps down).
  void ClearFence();

  absl::StatusOr<std::optional<RegistryRecord>> Get(const std::string& key) override;
  absl::StatusOr<std::vector<RegistryRecord>> List(const std::string& prefix) override;
  absl::StatusOr<std::vector<uint64_t>> Apply(const std::vector<RegistryWrite>& writes) override;

  // The znode name of `key` and back (exposed for tests and tools).
  static std::string EscapeKey(const std::string& key);
  static std::optional<std::string> UnescapeKey(const std::string& name);
  // The bytes a record's znode holds.
  static std::string EncodeValue(const std::string& value);

 private:
  ZooKeeperRegistryStore(Options options, std::unique_ptr<zk::ZooKeeperSession> session);

  // The connected session, a new one if the last expired.
  absl::StatusOr<zk::ZooKeeperSession*> Session() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string ZnodeOf(const std::string& key) const;
  // One attempt at Apply; `retry` is set when only writes that expect any version conflicted
  // (a concurrent change between reading and writing), so trying again is right.
  absl::StatusOr<std::vector<uint64_t>> ApplyOnce(zk::ZooKeeperSession& session,
                                                  const std::vector<RegistryWrite>& writes,
                                                  const std::string& fence, bool* retry);

  const Options options_;
  const std::string dir_;  // `<path>/registry`.
  absl::Mutex mu_;
  std::unique_ptr<zk::ZooKeeperSession> session_ ABSL_GUARDED_BY(mu_);
  absl::Mutex fence_mu_;
  std::string fence_ ABSL_GUARDED_BY(fence_mu_);
};

}  // namespace rz::master
