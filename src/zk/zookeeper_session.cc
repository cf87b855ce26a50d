#include "zk/zookeeper_session.h"

#include <zookeeper/zookeeper.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace rz::zk {
namespace {

// The C client's own messages (it logs every failed connection attempt while a server is
// down) go to VLOG(1): the session logs what matters (state changes) itself.
void LogFromClient(const char* message) {
  VLOG(1) << "zookeeper client: " << absl::StripTrailingAsciiWhitespace(message);
}

// The C client hands a watch's context pointer back to its watcher; ours carries the watch id.
void* WatchContext(uintptr_t watch_id) {
  return reinterpret_cast<void*>(watch_id);  // NOLINT(performance-no-int-to-ptr)
}

void InitClientLogging() {
  static std::once_flag once;
  std::call_once(once, [] { zoo_set_debug_level(ZOO_LOG_LEVEL_WARN); });
}

int CreateFlags(CreateMode mode) {
  switch (mode) {
    case CreateMode::kPersistent:
      return ZOO_PERSISTENT;
    case CreateMode::kEphemeral:
      return ZOO_EPHEMERAL;
    case CreateMode::kPersistentSequential:
      return ZOO_PERSISTENT_SEQUENTIAL;
    case CreateMode::kEphemeralSequential:
      return ZOO_EPHEMERAL_SEQUENTIAL;
  }
  return ZOO_PERSISTENT;
}

ZnodeStat FromStat(const Stat& stat) {
  ZnodeStat out;
  out.version = stat.version;
  out.children_version = stat.cversion;
  out.ephemeral_owner = stat.ephemeralOwner;
  out.data_length = stat.dataLength;
  out.num_children = stat.numChildren;
  return out;
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// One asynchronous get, waited for by the caller.
struct GetCall {
  absl::Notification done;
  int rc = ZSYSTEMERROR;
  Znode znode;
};

void OnGetDone(int rc, const char* value, int value_len, const Stat* stat, const void* data) {
  auto* call = static_cast<GetCall*>(const_cast<void*>(data));
  call->rc = rc;
  if (rc == ZOK) {
    if (value != nullptr && value_len > 0) {
      call->znode.data.assign(value, static_cast<size_t>(value_len));
    }
    if (stat != nullptr) {
      call->znode.stat = FromStat(*stat);
    }
  }
  call->done.Notify();
}

}  // namespace

const char* SessionStateName(SessionState state) {
  switch (state) {
    case SessionState::kConnecting:
      return "connecting";
    case SessionState::kConnected:
      return "connected";
    case SessionState::kExpired:
      return "expired";
  }
  return "?";
}

absl::Status ZooKeeperSession::ToStatus(int code, absl::string_view what) {
  const std::string text = absl::StrCat(what, ": ", zerror(code));
  switch (code) {
    case ZOK:
      return absl::OkStatus();
    case ZNONODE:
      return absl::NotFoundError(text);
    case ZNODEEXISTS:
      return absl::AlreadyExistsError(text);
    case ZBADVERSION:
      return absl::AbortedError(text);
    case ZNOTEMPTY:
    case ZNOCHILDRENFOREPHEMERALS:
      return absl::FailedPreconditionError(text);
    case ZNOAUTH:
    case ZAUTHFAILED:
      return absl::PermissionDeniedError(text);
    case ZBADARGUMENTS:
      return absl::InvalidArgumentError(text);
    case ZCONNECTIONLOSS:
    case ZOPERATIONTIMEOUT:
    case ZCLOSING:
    case ZSESSIONMOVED:
    case ZTHROTTLEDOP:
    case ZNOTREADONLY:
      return absl::UnavailableError(absl::StrCat(text, " (ZooKeeper unreachable)"));
    case ZSESSIONEXPIRED:
    case ZINVALIDSTATE:
      return absl::UnavailableError(absl::StrCat(what, ": the ZooKeeper session expired"));
    default:
      return absl::InternalError(absl::StrCat(text, " (ZooKeeper error ", code, ")"));
  }
}

absl::StatusOr<std::unique_ptr<ZooKeeperSession>> ZooKeeperSession::Start(Options options) {
  if (options.servers.empty()) {
    return absl::InvalidArgumentError("no ZooKeeper servers given");
  }
  if (options.session_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the ZooKeeper session timeout must be positive");
  }
  InitClientLogging();
  std::unique_ptr<ZooKeeperSession> session(new ZooKeeperSession(std::move(options)));
  session->events_.Start();
  clientid_t client_id{};
  const clientid_t* resume = nullptr;
  if (session->options_.resume.has_value()) {
    client_id.client_id = session->options_.resume->id;
    std::memcpy(client_id.passwd, session->options_.resume->password.data(),
                std::min(sizeof(client_id.passwd), session->options_.resume->password.size()));
    resume = &client_id;
  }
  zhandle_t* zh = zookeeper_init2(
      session->options_.servers.c_str(), &ZooKeeperSession::OnEvent,
      static_cast<int>(absl::ToInt64Milliseconds(session->options_.session_timeout)), resume,
      session.get(), 0, &LogFromClient);
  if (zh == nullptr) {
    const int error = errno;
    char text[256];
    return absl::InvalidArgumentError(absl::StrCat("cannot start a ZooKeeper session with '",
                                                   session->options_.servers,
                                                   "': ", strerror_r(error, text, sizeof(text))));
  }
  absl::WriterMutexLock lock(&session->handle_mu_);
  session->zh_ = zh;
  return session;
}

ZooKeeperSession::ZooKeeperSession(Options options)
    : options_(std::move(options)), negotiated_timeout_(options_.session_timeout) {}

ZooKeeperSession::~ZooKeeperSession() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
  }
  {
    absl::WriterMutexLock lock(&handle_mu_);
    if (zh_ != nullptr) {
      zookeeper_close(zh_);  // Joins the C client's threads.
      zh_ = nullptr;
    }
  }
  events_.Stop();
}

void ZooKeeperSession::OnEvent(zhandle_t* zh, int type, int state, const char* /*path*/,
                               void* context) {
  // C client thread: only hand off.
  if (type != ZOO_SESSION_EVENT) {
    return;
  }
  auto* self = static_cast<ZooKeeperSession*>(context);
  if (state == ZOO_CONNECTED_STATE) {
    const clientid_t* id = zoo_client_id(zh);
    SessionCredentials credentials{id->client_id, std::string(id->passwd, sizeof(id->passwd))};
    const absl::Duration timeout = absl::Milliseconds(zoo_recv_timeout(zh));
    absl::MutexLock lock(&self->mu_);
    self->credentials_ = std::move(credentials);
    self->negotiated_timeout_ = timeout;
  }
  self->events_.Post([self, state] { self->HandleState(state); });
}

void ZooKeeperSession::OnWatch(zhandle_t* zh, int type, int /*state*/, const char* path,
                               void* context) {
  // The C client also hands every registered watcher the session's state changes; those are
  // reported through `on_state` instead, and the watch stays registered.
  if (type == ZOO_SESSION_EVENT) {
    return;
  }
  WatchEventType event;
  if (type == ZOO_CREATED_EVENT) {
    event = WatchEventType::kCreated;
  } else if (type == ZOO_DELETED_EVENT) {
    event = WatchEventType::kDeleted;
  } else if (type == ZOO_CHANGED_EVENT) {
    event = WatchEventType::kChanged;
  } else if (type == ZOO_CHILD_EVENT) {
    event = WatchEventType::kChildren;
  } else {
    return;  // ZOO_NOTWATCHING_EVENT: watches are never removed explicitly here.
  }
  auto* session = static_cast<ZooKeeperSession*>(const_cast<void*>(zoo_get_context(zh)));
  session->DeliverWatch(reinterpret_cast<uintptr_t>(context),
                        WatchEvent{event, path == nullptr ? "" : path});
}

void ZooKeeperSession::DeliverWatch(uintptr_t id, WatchEvent event) {
  events_.Post([this, id, event = std::move(event)] {
    Watch watch;
    {
      absl::MutexLock lock(&mu_);
      auto it = watches_.find(id);
      if (closing_ || it == watches_.end()) {
        return;
      }
      watch = std::move(it->second);
      watches_.erase(it);
    }
    watch(event);
  });
}

void ZooKeeperSession::HandleState(int zk_state) {
  if (zk_state == ZOO_EXPIRED_SESSION_STATE) {
    Expire("ZooKeeper expired the session");
    return;
  }
  if (zk_state == ZOO_AUTH_FAILED_STATE) {
    Expire("ZooKeeper refused the session's authentication");
    return;
  }
  SessionState next;
  std::optional<std::pair<uint64_t, absl::Duration>> expiry_timer;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == SessionState::kExpired) {
      return;
    }
    if (zk_state == ZOO_CONNECTED_STATE) {
      next = SessionState::kConnected;
      ever_connected_ = true;
      ++disconnect_generation_;  // Cancels a pending local expiry.
    } else {
      next = SessionState::kConnecting;
      if (state_ == SessionState::kConnected) {
        expiry_timer.emplace(++disconnect_generation_, negotiated_timeout_);
      }
    }
    if (next == state_) {
      return;
    }
    state_ = next;
  }
  LOG(INFO) << "ZooKeeper session with '" << options_.servers << "' is " << SessionStateName(next);
  if (expiry_timer.has_value()) {
    const uint64_t generation = expiry_timer->first;
    events_.PostAfter(expiry_timer->second,
                      [this, generation] { ExpireIfStillDisconnected(generation); });
  }
  Report(next);
}

void ZooKeeperSession::ExpireIfStillDisconnected(uint64_t disconnect_generation) {
  {
    absl::MutexLock lock(&mu_);
    if (disconnect_generation != disconnect_generation_ || state_ != SessionState::kConnecting) {
      return;
    }
  }
  Expire("disconnected from ZooKeeper for a whole session timeout");
}

void ZooKeeperSession::Expire(const char* why) {
  absl::flat_hash_map<uintptr_t, Watch> dropped;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == SessionState::kExpired) {
      return;
    }
    state_ = SessionState::kExpired;
    dropped.swap(watches_);
  }
  LOG(WARNING) << "ZooKeeper session with '" << options_.servers << "' expired: " << why;
  {
    // Operations in flight fail (connection loss or expiry) and release their reader locks.
    absl::WriterMutexLock lock(&handle_mu_);
    if (zh_ != nullptr) {
      zookeeper_close(zh_);
      zh_ = nullptr;
    }
  }
  Report(SessionState::kExpired);
}

void ZooKeeperSession::Report(SessionState state) {
  {
    absl::MutexLock lock(&mu_);
    if (closing_) {
      return;
    }
  }
  if (options_.on_state) {
    options_.on_state(state);
  }
}

uintptr_t ZooKeeperSession::AddWatch(Watch watch) {
  if (!watch) {
    return 0;
  }
  absl::MutexLock lock(&mu_);
  const uintptr_t id = next_watch_id_++;
  watches_[id] = std::move(watch);
  return id;
}

void ZooKeeperSession::DropWatch(uintptr_t id) {
  if (id == 0) {
    return;
  }
  Watch dropped;  // Destroyed outside the lock.
  absl::MutexLock lock(&mu_);
  auto it = watches_.find(id);
  if (it != watches_.end()) {
    dropped = std::move(it->second);
    watches_.erase(it);
  }
}

SessionState ZooKeeperSession::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

absl::Status ZooKeeperSession::WaitConnected(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return state_ != SessionState::kConnecting;
  };
  mu_.AwaitWithTimeout(absl::Condition(&settled), timeout);
  switch (state_) {
    case SessionState::kConnected:
      return absl::OkStatus();
    case SessionState::kExpired:
      return absl::FailedPreconditionError(
          absl::StrCat("the ZooKeeper session with '", options_.servers, "' expired"));
    case SessionState::kConnecting:
      break;
  }
  return absl::UnavailableError(absl::StrCat("cannot connect to ZooKeeper at '", options_.servers,
                                             "' within ", absl::FormatDuration(timeout)));
}

std::optional<SessionCredentials> ZooKeeperSession::credentials() const {
  absl::MutexLock lock(&mu_);
  return credentials_;
}

absl::Duration ZooKeeperSession::negotiated_timeout() const {
  absl::MutexLock lock(&mu_);
  return negotiated_timeout_;
}

#define RZ_ZK_HANDLE_OR_RETURN(what)                                                      \
  absl::ReaderMutexLock handle_lock(&handle_mu_);                                         \
  if (zh_ == nullptr) {                                                                   \
    return absl::UnavailableError(absl::StrCat(what, ": the ZooKeeper session expired")); \
  }

absl::StatusOr<std::string> ZooKeeperSession::Create(const std::string& path,
                                                     const std::string& data, CreateMode mode,
                                                     bool create_parents) {
  const std::string what = absl::StrCat("creating znode '", path, "'");
  for (int attempt = 0;; ++attempt) {
    int rc;
    std::string created(path.size() + 32, '\0');
    {
      RZ_ZK_HANDLE_OR_RETURN(what);
      rc = zoo_create(zh_, path.c_str(), data.data(), static_cast<int>(data.size()),
                      &ZOO_OPEN_ACL_UNSAFE, CreateFlags(mode), created.data(),
                      static_cast<int>(created.size()));
    }
    if (rc == ZNONODE && create_parents && attempt == 0) {
      RZ_RETURN_IF_ERROR(CreatePath(ParentOf(path)));
      continue;
    }
    if (rc != ZOK) {
      return ToStatus(rc, what);
    }
    created.resize(std::strlen(created.c_str()));
    return created;
  }
}

absl::Status ZooKeeperSession::CreatePath(const std::string& path) {
  if (path == "/") {
    return absl::OkStatus();
  }
  RZ_ASSIGN_OR_RETURN(std::optional<ZnodeStat> stat, Exists(path));
  if (stat.has_value()) {
    return absl::OkStatus();
  }
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    int rc;
    {
      RZ_ZK_HANDLE_OR_RETURN(absl::StrCat("creating znode '", prefix, "'"));
      rc = zoo_create(zh_, prefix.c_str(), "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, nullptr, 0);
    }
    if (rc != ZOK && rc != ZNODEEXISTS) {
      return ToStatus(rc, absl::StrCat("creating znode '", prefix, "'"));
    }
    if (slash == std::string::npos) {
      return absl::OkStatus();
    }
  }
}

absl::StatusOr<std::optional<Znode>> ZooKeeperSession::Get(const std::string& path, Watch watch) {
  const std::string what = absl::StrCat("reading znode '", path, "'");
  const uintptr_t watch_id = AddWatch(std::move(watch));
  GetCall call;
  {
    RZ_ZK_HANDLE_OR_RETURN(what);
    const int rc = watch_id == 0 ? zoo_aget(zh_, path.c_str(), 0, &OnGetDone, &call)
                                 : zoo_awget(zh_, path.c_str(), &ZooKeeperSession::OnWatch,
                                             WatchContext(watch_id), &OnGetDone, &call);
    if (rc != ZOK) {
      DropWatch(watch_id);
      return ToStatus(rc, what);
    }
    call.done.WaitForNotification();
  }
  if (call.rc == ZNONODE) {
    DropWatch(watch_id);  // The C client sets no data watch on a missing znode.
    return std::nullopt;
  }
  if (call.rc != ZOK) {
    DropWatch(watch_id);
    return ToStatus(call.rc, what);
  }
  return std::optional<Znode>(std::move(call.znode));
}

absl::StatusOr<std::vector<std::optional<Znode>>> ZooKeeperSession::GetMany(
    const std::vector<std::string>& paths) {
  std::vector<GetCall> calls(paths.size());
  {
    RZ_ZK_HANDLE_OR_RETURN("reading znodes");
    size_t sent = 0;
    int send_rc = ZOK;
    for (; sent < paths.size(); ++sent) {
      send_rc = zoo_aget(zh_, paths[sent].c_str(), 0, &OnGetDone, &calls[sent]);
      if (send_rc != ZOK) {
        break;
      }
    }
    // Every request sent is answered (if only with a connection loss): wait for all of them
    // before `calls` goes away.
    for (size_t i = 0; i < sent; ++i) {
      calls[i].done.WaitForNotification();
    }
    if (send_rc != ZOK) {
      return ToStatus(send_rc, absl::StrCat("reading znode '", paths[sent], "'"));
    }
  }
  std::vector<std::optional<Znode>> znodes;
  znodes.reserve(paths.size());
  for (size_t i = 0; i < paths.size(); ++i) {
    if (calls[i].rc == ZNONODE) {
      znodes.emplace_back(std::nullopt);
    } else if (calls[i].rc != ZOK) {
      return ToStatus(calls[i].rc, absl::StrCat("reading znode '", paths[i], "'"));
    } else {
      znodes.emplace_back(std::move(calls[i].znode));
    }
  }
  return znodes;
}

absl::StatusOr<ZnodeStat> ZooKeeperSession::Set(const std::string& path, const std::string& data,
                                                int32_t expected_version) {
  const std::string what = absl::StrCat("writing znode '", path, "'");
  Stat stat{};
  int rc;
  {
    RZ_ZK_HANDLE_OR_RETURN(what);
    rc = zoo_set2(zh_, path.c_str(), data.data(), static_cast<int>(data.size()), expected_version,
                  &stat);
  }
  if (rc != ZOK) {
    return ToStatus(rc, what);
  }
  return FromStat(stat);
}

absl::Status ZooKeeperSession::Delete(const std::string& path, int32_t expected_version) {
  const std::string what = absl::StrCat("deleting znode '", path, "'");
  int rc;
  {
    RZ_ZK_HANDLE_OR_RETURN(what);
    rc = zoo_delete(zh_, path.c_str(), expected_version);
  }
  return ToStatus(rc, what);
}

absl::StatusOr<std::optional<ZnodeStat>> ZooKeeperSession::Exists(const std::string& path,
                                                                  Watch watch) {
  const std::string what = absl::StrCat("checking znode '", path, "'");
  const uintptr_t watch_id = AddWatch(std::move(watch));
  Stat stat{};
  int rc;
  {
    RZ_ZK_HANDLE_OR_RETURN(what);
    rc = zoo_wexists(zh_, path.c_str(), watch_id == 0 ? nullptr : &ZooKeeperSession::OnWatch,
                     WatchContext(watch_id), &stat);
  }
  // An exists watch is set whether or not the znode exists.
  if (rc == ZNONODE) {
    return std::nullopt;
  }
  if (rc != ZOK) {
    DropWatch(watch_id);
    return ToStatus(rc, what);
  }
  return std::optional<ZnodeStat>(FromStat(stat));
}

absl::StatusOr<std::vector<std::string>> ZooKeeperSession::Children(const std::string& path,
                                                                    Watch watch) {
  const std::string what = absl::StrCat("listing the children of znode '", path, "'");
  const uintptr_t watch_id = AddWatch(std::move(watch));
  String_vector children{};
  int rc;
  {
    RZ_ZK_HANDLE_OR_RETURN(what);
    rc = zoo_wget_children(zh_, path.c_str(), watch_id == 0 ? nullptr : &ZooKeeperSession::OnWatch,
                           WatchContext(watch_id), &children);
  }
  if (rc != ZOK) {
    DropWatch(watch_id);
    return ToStatus(rc, what);
  }
  std::vector<std::string> names;
  names.reserve(children.count);
  for (int32_t i = 0; i < children.count; ++i) {
    names.emplace_back(children.data[i]);
  }
  deallocate_String_vector(&children);
  return names;
}

absl::StatusOr<std::vector<std::string>> ZooKeeperSession::Multi(const std::vector<ZkOp>& ops,
                                                                 MultiFailure* failure) {
  if (ops.empty()) {
    return std::vector<std::string>();
  }
  std::vector<zoo_op_t> zoo_ops(ops.size());
  std::vector<zoo_op_result_t> results(ops.size());
  std::vector<std::string> created(ops.size());
  std::vector<Stat> stats(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    const ZkOp& op = ops[i];
    switch (op.type) {
      case ZkOp::Type::kCreate:
        created[i].assign(op.path.size() + 32, '\0');
        zoo_create_op_init(&zoo_ops[i], op.path.c_str(), op.data.data(),
                           static_cast<int>(op.data.size()), &ZOO_OPEN_ACL_UNSAFE,
                           CreateFlags(op.mode), created[i].data(),
                           static_cast<int>(created[i].size()));
        break;
      case ZkOp::Type::kDelete:
        zoo_delete_op_init(&zoo_ops[i], op.path.c_str(), op.version);
        break;
      case ZkOp::Type::kSet:
        zoo_set_op_init(&zoo_ops[i], op.path.c_str(), op.data.data(),
                        static_cast<int>(op.data.size()), op.version, &stats[i]);
        break;
      case ZkOp::Type::kCheck:
        zoo_check_op_init(&zoo_ops[i], op.path.c_str(), op.version);
        break;
    }
  }
  int rc;
  {
    RZ_ZK_HANDLE_OR_RETURN("writing a batch of znodes");
    rc = zoo_multi(zh_, static_cast<int>(ops.size()), zoo_ops.data(), results.data());
  }
  if (rc != ZOK) {
    // The failing op carries the real code; those after it report a runtime inconsistency.
    for (size_t i = 0; i < ops.size(); ++i) {
      if (results[i].err != ZOK && results[i].err != ZRUNTIMEINCONSISTENCY) {
        if (failure != nullptr) {
          *failure = MultiFailure{i, results[i].err};
        }
        return ToStatus(results[i].err,
                        absl::StrCat("batch op ", i, " on znode '", ops[i].path, "'"));
      }
    }
    if (failure != nullptr) {
      *failure = MultiFailure{ops.size(), rc};
    }
    return ToStatus(rc, "writing a batch of znodes");
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    created[i].resize(std::strlen(created[i].c_str()));
  }
  return created;
}

absl::Status ExpireSession(const std::string& servers, const SessionCredentials& credentials,
                           absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  // The session's own handle reconnects too, and each reconnection moves the session back to
  // it; a close sent by a twin that was just displaced never reaches the server. So take the
  // session over and close it until the server answers that it is gone.
  while (true) {
    RZ_ASSIGN_OR_RETURN(
        std::unique_ptr<ZooKeeperSession> twin,
        ZooKeeperSession::Start(
            {.servers = servers, .session_timeout = absl::Seconds(10), .resume = credentials}));
    absl::Status connected = twin->WaitConnected(deadline - absl::Now());
    if (twin->state() == SessionState::kExpired) {
      return absl::OkStatus();
    }
    if (!connected.ok()) {
      return absl::UnavailableError(
          absl::StrCat("expiring ZooKeeper session ", credentials.id, ": ", connected.message()));
    }
    twin.reset();  // zookeeper_close() asks the server to end the session.
  }
}

}  // namespace rz::zk
