#include "master/registry/zookeeper_registry_store.h"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "zk/zookeeper_url.h"

namespace rz::master {
namespace {

// Marks a znode as one of our records, so a znode written by anything else is DataLoss rather
// than a record with garbage in it.
const std::string& FormatTag() {
  static const std::string* tag = new std::string("rz\x01", 3);
  return *tag;
}

// Writes that expect any version read the current version first; a change in between makes
// the multi fail and is retried this many times.
constexpr int kMaxAttempts = 5;

// What a write's znode op costs in the request, beyond path and data (ZooKeeper's framing).
constexpr size_t kOpOverheadBytes = 64;

bool IsConflict(int code) { return code == ZBADVERSION || code == ZNONODE || code == ZNODEEXISTS; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string ZooKeeperRegistryStore::EscapeKey(const std::string& key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string name;
  name.reserve(key.size());
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    // ZooKeeper refuses control characters and some Unicode ranges in names; '/' separates
    // znodes; '%' is our escape. Everything outside printable ASCII is escaped too.
    if (u <= 0x20 || u >= 0x7f || c == '/' || c == '%') {
      name += '%';
      name += kHex[u >> 4];
      name += kHex[u & 0xf];
    } else {
      name += c;
    }
  }
  if (name == "." || name == "..") {
    std::string dots;
    for (size_t i = 0; i < name.size(); ++i) dots += "%2E";
    return dots;
  }
  return name;
}

std::optional<std::string> ZooKeeperRegistryStore::UnescapeKey(const std::string& name) {
  std::string key;
  key.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '%') {
      key += name[i];
      continue;
    }
    if (i + 2 >= name.size()) {
      return std::nullopt;
    }
    const int high = HexValue(name[i + 1]);
    const int low = HexValue(name[i + 2]);
    if (high < 0 || low < 0) {
      return std::nullopt;
    }
    key += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return key;
}

std::string ZooKeeperRegistryStore::EncodeValue(const std::string& value) {
  return absl::StrCat(FormatTag(), value);
}

absl::StatusOr<std::unique_ptr<ZooKeeperRegistryStore>> ZooKeeperRegistryStore::Open(
    Options options) {
  RZ_RETURN_IF_ERROR(zk::ValidateZnodePath(options.path));
  RZ_ASSIGN_OR_RETURN(std::unique_ptr<zk::ZooKeeperSession> session,
                      zk::ZooKeeperSession::Start({.servers = options.servers,
                                                   .session_timeout = options.session_timeout}));
  if (absl::Status status = session->WaitConnected(options.connect_timeout); !status.ok()) {
    return absl::UnavailableError(
        absl::StrCat("opening the registry in ZooKeeper: ", status.message()));
  }
  std::unique_ptr<ZooKeeperRegistryStore> store(
      new ZooKeeperRegistryStore(std::move(options), std::move(session)));
  {
    absl::MutexLock lock(&store->mu_);
    if (absl::Status status = store->session_->CreatePath(store->dir_); !status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("opening the registry in ZooKeeper: ", status.message()));
    }
  }
  return store;
}

ZooKeeperRegistryStore::ZooKeeperRegistryStore(Options options,
                                               std::unique_ptr<zk::ZooKeeperSession> session)
    : options_(std::move(options)),
      dir_(absl::StrCat(options_.path, "/registry")),
      session_(std::move(session)) {}

ZooKeeperRegistryStore::~ZooKeeperRegistryStore() = default;

void ZooKeeperRegistryStore::SetFence(std::string election_znode) {
  absl::MutexLock lock(&fence_mu_);
  fence_ = std::move(election_znode);
}

void ZooKeeperRegistryStore::ClearFence() {
  absl::MutexLock lock(&fence_mu_);
  fence_.clear();
}

absl::StatusOr<zk::ZooKeeperSession*> ZooKeeperRegistryStore::Session() {
  if (session_ != nullptr && session_->state() != zk::SessionState::kExpired) {
    return session_.get();
  }
  session_.reset();
  RZ_ASSIGN_OR_RETURN(
      session_, zk::ZooKeeperSession::Start(
                    {.servers = options_.servers, .session_timeout = options_.session_timeout}));
  if (absl::Status status = session_->WaitConnected(options_.connect_timeout); !status.ok()) {
    return absl::UnavailableError(absl::StrCat("registry in ZooKeeper: ", status.message()));
  }
  return session_.get();
}

std::string ZooKeeperRegistryStore::ZnodeOf(const std::string& key) const {
  return absl::StrCat(dir_, "/", EscapeKey(key));
}

namespace {

absl::StatusOr<RegistryRecord> Decode(std::string key, const zk::Znode& znode) {
  if (!absl::StartsWith(znode.data, FormatTag())) {
    return absl::DataLossError(absl::StrCat("registry record '", key,
                                            "' in ZooKeeper is not an rz registry record (",
                                            znode.data.size(), " bytes without the format tag)"));
  }
  return RegistryRecord{std::move(key), znode.data.substr(FormatTag().size()),
                        static_cast<uint64_t>(znode.stat.version) + 1};
}

}  // namespace

absl::StatusOr<std::optional<RegistryRecord>> ZooKeeperRegistryStore::Get(const std::string& key) {
  absl::MutexLock lock(&mu_);
  RZ_ASSIGN_OR_RETURN(zk::ZooKeeperSession * session, Session());
  RZ_ASSIGN_OR_RETURN(std::optional<zk::Znode> znode, session->Get(ZnodeOf(key)));
  if (!znode.has_value()) {
    return std::nullopt;
  }
  RZ_ASSIGN_OR_RETURN(RegistryRecord record, Decode(key, *znode));
  return std::optional<RegistryRecord>(std::move(record));
}

absl::StatusOr<std::vector<RegistryRecord>> ZooKeeperRegistryStore::List(
    const std::string& prefix) {
  absl::MutexLock lock(&mu_);
  RZ_ASSIGN_OR_RETURN(zk::ZooKeeperSession * session, Session());
  RZ_ASSIGN_OR_RETURN(std::vector<std::string> names, session->Children(dir_));
  std::vector<std::pair<std::string, std::string>> wanted;  // key, znode path.
  for (const std::string& name : names) {
    std::optional<std::string> key = UnescapeKey(name);
    if (!key.has_value()) {
      return absl::DataLossError(
          absl::StrCat("znode '", dir_, "/", name, "' is not a registry record name"));
    }
    if (absl::StartsWith(*key, prefix)) {
      wanted.emplace_back(*std::move(key), absl::StrCat(dir_, "/", name));
    }
  }
  std::sort(wanted.begin(), wanted.end());
  std::vector<std::string> paths;
  paths.reserve(wanted.size());
  for (const auto& [key, path] : wanted) {
    paths.push_back(path);
  }
  // One pipelined round of reads: a new leader reads thousands of records at failover.
  RZ_ASSIGN_OR_RETURN(std::vector<std::optional<zk::Znode>> znodes, session->GetMany(paths));
  std::vector<RegistryRecord> records;
  records.reserve(wanted.size());
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (!znodes[i].has_value()) {
      continue;  // Deleted since the listing.
    }
    RZ_ASSIGN_OR_RETURN(RegistryRecord record, Decode(wanted[i].first, *znodes[i]));
    records.push_back(std::move(record));
  }
  return records;
}

absl::StatusOr<std::vector<uint64_t>> ZooKeeperRegistryStore::Apply(
    const std::vector<RegistryWrite>& writes) {
  RZ_RETURN_IF_ERROR(ValidateWrites(writes));
  size_t batch_bytes = 0;
  for (const RegistryWrite& write : writes) {
    if (write.value.size() > kMaxRecordBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("registry record '", write.key, "' is too large for ZooKeeper (",
                       write.value.size(), " bytes, at most ", kMaxRecordBytes, ")"));
    }
    batch_bytes += write.key.size() * 3 + dir_.size() + write.value.size() + kOpOverheadBytes;
  }
  if (batch_bytes > kMaxBatchBytes) {
    return absl::ResourceExhaustedError(absl::StrCat("registry batch of ", writes.size(),
                                                     " records is too large for one ZooKeeper "
                                                     "write (about ",
                                                     batch_bytes, " bytes, at most ",
                                                     kMaxBatchBytes, ")"));
  }
  std::string fence;
  {
    absl::MutexLock lock(&fence_mu_);
    fence = fence_;
  }
  if (fence.empty()) {
    return absl::FailedPreconditionError(
        "not the leading master: no election znode fences this registry's writes");
  }
  if (writes.empty()) {
    return std::vector<uint64_t>();
  }
  absl::MutexLock lock(&mu_);
  RZ_ASSIGN_OR_RETURN(zk::ZooKeeperSession * session, Session());
  for (int attempt = 1;; ++attempt) {
    bool retry = false;
    absl::StatusOr<std::vector<uint64_t>> versions = ApplyOnce(*session, writes, fence, &retry);
    if (!retry || attempt == kMaxAttempts) {
      return versions;
    }
  }
}

absl::StatusOr<std::vector<uint64_t>> ZooKeeperRegistryStore::ApplyOnce(
    zk::ZooKeeperSession& session, const std::vector<RegistryWrite>& writes,
    const std::string& fence, bool* retry) {
  std::vector<zk::ZkOp> ops;
  std::vector<size_t> owner;  // Index of the write each op belongs to; writes.size(): the fence.
  std::vector<bool> expects_any(writes.size(), false);
  std::vector<uint64_t> versions;
  versions.reserve(writes.size());
  // The fence goes first so that a deposed leader's batch fails on it, whatever else is wrong.
  ops.push_back(zk::ZkOp::Check(fence, -1));
  owner.push_back(writes.size());
  for (size_t i = 0; i < writes.size(); ++i) {
    const RegistryWrite& write = writes[i];
    const std::string path = ZnodeOf(write.key);
    // The znode version the write expects; nullopt: no znode.
    std::optional<int32_t> expected;
    if (std::optional<uint64_t> exact = write.expected.exact_version(); exact.has_value()) {
      if (*exact == 0 || *exact - 1 > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())) {
        // No znode can be at that version.
        RZ_ASSIGN_OR_RETURN(std::optional<zk::ZnodeStat> stat, session.Exists(path));
        return VersionConflict(
            write.key, stat.has_value() ? std::optional<uint64_t>(stat->version + 1) : std::nullopt,
            write.expected);
      }
      expected = static_cast<int32_t>(*exact - 1);
    } else if (write.expected.Matches(1)) {
      // Any: write against what is there now; a change in between fails the multi, and the
      // whole batch is tried again.
      expects_any[i] = true;
      RZ_ASSIGN_OR_RETURN(std::optional<zk::ZnodeStat> stat, session.Exists(path));
      if (stat.has_value()) {
        expected = stat->version;
      }
    }
    if (write.type == RegistryWrite::Type::kPut) {
      if (expected.has_value()) {
        ops.push_back(zk::ZkOp::Set(path, EncodeValue(write.value), *expected));
        versions.push_back(static_cast<uint64_t>(*expected) + 2);
      } else {
        ops.push_back(zk::ZkOp::Create(path, EncodeValue(write.value)));
        versions.push_back(1);
      }
    } else {
      if (expected.has_value()) {
        ops.push_back(zk::ZkOp::Delete(path, *expected));
      } else {
        // ZooKeeper cannot check that a znode is absent; creating and deleting it in the same
        // multi does (the create fails if it exists) and leaves nothing behind.
        ops.push_back(zk::ZkOp::Create(path, ""));
        ops.push_back(zk::ZkOp::Delete(path, 0));
      }
      versions.push_back(0);
    }
    owner.resize(ops.size(), i);
  }
  zk::MultiFailure failure;
  absl::StatusOr<std::vector<std::string>> result = session.Multi(ops, &failure);
  if (result.ok()) {
    return versions;
  }
  if (failure.index >= ops.size()) {
    return result.status();  // The whole request failed (connection loss, session expiry).
  }
  if (owner[failure.index] == writes.size()) {
    if (failure.code == ZNONODE) {
      return absl::FailedPreconditionError(
          absl::StrCat("not the leading master: election znode '", fence,
                       "' is gone (its session expired or it was deleted); ", writes.size(),
                       " registry writes refused"));
    }
    return result.status();
  }
  const RegistryWrite& write = writes[owner[failure.index]];
  if (!IsConflict(failure.code)) {
    return absl::Status(result.status().code(), absl::StrCat("writing registry record '", write.key,
                                                             "': ", result.status().message()));
  }
  if (expects_any[owner[failure.index]]) {
    *retry = true;
  }
  // Name the version the record is at now, for the operator reading the error.
  std::optional<uint64_t> current;
  if (absl::StatusOr<std::optional<zk::ZnodeStat>> stat = session.Exists(ZnodeOf(write.key));
      stat.ok() && stat->has_value()) {
    current = static_cast<uint64_t>((*stat)->version) + 1;
  }
  return VersionConflict(write.key, current, write.expected);
}

}  // namespace rz::master
