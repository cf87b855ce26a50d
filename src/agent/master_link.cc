#include "agent/master_link.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/static_master_detector.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "rz/v1/agent.grpc.pb.h"

namespace rz::agent {

MasterLink::MasterLink(Options options, EventLoop& loop, std::unique_ptr<MasterDetector> detector)
    : options_(std::move(options)), loop_(loop), detector_(std::move(detector)) {
  if (detector_ == nullptr) {
    detector_ =
        std::make_unique<StaticMasterDetector>(std::vector<std::string>{options_.master_address});
  }
}

MasterLink::~MasterLink() { Stop(); }

void MasterLink::Start(Handlers handlers) {
  CHECK(!reader_.joinable()) << "master link started twice";
  handlers_ = std::make_shared<const Handlers>(std::move(handlers));
  reader_ = std::thread([this] { ReadLoop(); });
  writer_ = std::thread([this] { WriteLoop(); });
  detector_->Start([this](std::optional<v1::MasterInfo> leader) { OnLeader(std::move(leader)); });
}

void MasterLink::OnLeader(std::optional<v1::MasterInfo> leader) {
  absl::MutexLock lock(&mu_);
  const std::string address = leader.has_value() ? leader->grpc_address() : "";
  if (address == leader_) {
    return;
  }
  leader_ = address;
  ++leader_changes_;
  // A stream to a master that no longer leads is dropped at once; with no leader known the
  // stream stays: that master may still be the leader, and ends it itself if not.
  if (!address.empty() && context_ != nullptr && dialed_ != address) {
    LOG(INFO) << "the leading master is now " << address << "; leaving " << dialed_;
    context_->TryCancel();
  }
  cv_.SignalAll();
}

std::string MasterLink::master_address() const {
  absl::MutexLock lock(&mu_);
  return dialed_;
}

void MasterLink::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (context_ != nullptr) {
      context_->TryCancel();
    }
    cv_.SignalAll();
  }
  if (reader_.joinable()) {
    reader_.join();
  }
  if (writer_.joinable()) {
    writer_.join();
  }
  // Joins the detector's thread, so that OnLeader does not run after Stop().
  detector_.reset();
}

void MasterLink::Send(rz::v1::AgentMessage message) {
  absl::MutexLock lock(&mu_);
  if (stream_ == nullptr) {
    VLOG(1) << "no stream to the master; dropping " << message.message_case();
    return;
  }
  if (outbox_.size() >= options_.max_queued_messages) {
    LOG(WARNING) << "the master does not read (" << outbox_.size()
                 << " messages queued); reconnecting";
    outbox_.clear();
    context_->TryCancel();
    return;
  }
  outbox_.push_back(std::move(message));
  cv_.SignalAll();
}

void MasterLink::ReadLoop() {
  grpc::ChannelArguments args;
  // gRPC's own reconnect backoff must not outlast ours, or a fail-fast call made after a master
  // restart would keep failing while the channel waits.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.initial_backoff)));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.initial_backoff)));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(absl::ToInt64Milliseconds(options_.max_backoff)));
  // Notice a master that vanished without closing the connection (the master's server
  // accepts pings this often).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::string stub_address;  // The master `stub` talks to.
  std::unique_ptr<rz::v1::AgentLink::Stub> stub;
  const std::shared_ptr<const Handlers> handlers = handlers_;

  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    grpc::ClientContext context;
    std::string address;
    uint64_t leader_changes = 0;
    {
      absl::MutexLock lock(&mu_);
      // Dial only a master the detector names.
      mu_.Await(absl::Condition(
          +[](MasterLink* link)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return link->stopping_ || !link->leader_.empty(); },
          this));
      if (stopping_) {
        return;
      }
      address = leader_;
      leader_changes = leader_changes_;
      dialed_ = address;
      context_ = &context;
    }
    if (stub == nullptr || stub_address != address) {
      stub = rz::v1::AgentLink::NewStub(
          grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
      stub_address = address;
    }
    std::unique_ptr<Stream> stream = stub->Connect(&context);
    {
      absl::MutexLock lock(&mu_);
      stream_ = stream.get();
      outbox_.clear();
      register_written_ = false;
    }
    loop_.Post([handlers] { handlers->on_connected(); });

    bool received = false;
    rz::v1::MasterMessage message;
    while (stream->Read(&message)) {
      received = true;
      loop_.Post([handlers, message = std::move(message)]() mutable {
        handlers->on_message(std::move(message));
      });
      message = rz::v1::MasterMessage();
    }
    {
      absl::MutexLock lock(&mu_);
      stream_ = nullptr;
      outbox_.clear();
      // Finish() must not race a Write(); cancelling makes a blocked one return.
      if (writing_) {
        context.TryCancel();
        mu_.Await(absl::Condition(
            +[](bool* writing) { return !*writing; }, &writing_));
      }
      context_ = nullptr;
    }
    const grpc::Status status = stream->Finish();
    const std::optional<std::string> hint = LeaderHint(context, status);
    if (hint.has_value() && *hint != address) {
      detector_->ReportLeaderHint(*hint);
    }
    const std::string why =
        absl::StrCat(status.error_message(), " (code ", status.error_code(), ")",
                     hint.has_value() ? absl::StrCat("; the leader is ", *hint) : "");
    if (received) {
      LOG(WARNING) << "stream to master " << address << " ended: " << why;
      backoff = options_.initial_backoff;
    } else {
      LOG_EVERY_N(INFO, 10) << "cannot reach master " << address << ": " << why;
    }
    loop_.Post([handlers] { handlers->on_disconnected(); });

    absl::MutexLock lock(&mu_);
    // Wait out the backoff, unless the leader changes meanwhile: a new leader is dialed at once.
    const absl::Time deadline = absl::Now() + backoff;
    while (!stopping_ && leader_changes_ == leader_changes && absl::Now() < deadline) {
      cv_.WaitWithDeadline(&mu_, deadline);
    }
    if (stopping_) {
      return;
    }
    // A master that names itself leads but is still taking over: it will serve shortly.
    if (leader_changes_ != leader_changes || hint == address) {
      backoff = options_.initial_backoff;
    } else {
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }
}

void MasterLink::WriteLoop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    while (!stopping_ && (stream_ == nullptr || outbox_.empty())) {
      cv_.Wait(&mu_);
    }
    if (stopping_) {
      return;
    }
    rz::v1::AgentMessage message = std::move(outbox_.front());
    outbox_.pop_front();
    const bool is_register = message.has_register_();
    if (is_register == register_written_) {
      VLOG(1) << (is_register ? "dropping a second Register"
                              : "dropping a message sent before Register")
              << " on this stream";
      continue;
    }
    register_written_ = register_written_ || is_register;
    Stream* stream = stream_;
    grpc::ClientContext* context = context_;
    writing_ = true;
    mu_.Unlock();
    const bool ok = stream->Write(message);
    mu_.Lock();
    writing_ = false;
    if (!ok && stream_ == stream) {
      // The call is broken; make the reader notice and redial.
      context->TryCancel();
    }
  }
}

}  // namespace rz::agent
