#include "scheduler_api/scheduler_client.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_convert.h"
#include "glog/logging.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/sync_stream.h"

namespace rz::scheduler {
namespace {

std::chrono::system_clock::time_point ToChrono(absl::Time time) { return absl::ToChronoTime(time); }

std::string DurationText(absl::Duration duration) { return absl::FormatDuration(duration); }

}  // namespace

SchedulerClient::SchedulerClient(std::string master, rz::v1::FrameworkInfo framework_info,
                                 SchedulerClientOptions options)
    : master_spec_(std::move(master)),
      framework_info_(std::move(framework_info)),
      options_(std::move(options)) {
  absl::StatusOr<std::unique_ptr<MasterDetector>> detector = CreateMasterDetector(master_spec_);
  if (detector.ok()) {
    detector_ = *std::move(detector);
  } else {
    detector_status_ = detector.status();
  }
}

SchedulerClient::SchedulerClient(std::unique_ptr<MasterDetector> detector,
                                 rz::v1::FrameworkInfo framework_info,
                                 SchedulerClientOptions options)
    : master_spec_("the detected leader"),
      framework_info_(std::move(framework_info)),
      options_(std::move(options)),
      detector_(std::move(detector)) {
  CHECK(detector_ != nullptr);
}

SchedulerClient::~SchedulerClient() {
  Close();
  detector_.reset();  // Joins its thread: OnLeader must not run on a destroyed client.
}

void SchedulerClient::OnLeader(std::optional<rz::v1::MasterInfo> leader) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string address = leader.has_value() ? leader->grpc_address() : "";
  if (address == leader_) {
    return;
  }
  leader_ = address;
  ++leader_changes_;
  leader_seen_ = leader_seen_ || !address.empty();
  // A stream to a master that no longer leads is dropped at once; with no leader known it
  // stays: that master may still lead, and ends the stream itself if not.
  if (!address.empty() && stream_open_ && stream_address_ != address) {
    LOG(INFO) << "the leading master is now " << address << "; leaving " << stream_address_;
    moved_to_ = address;
    stream_context_->TryCancel();
  }
  cv_.notify_all();
}

std::shared_ptr<SchedulerClient::Stub> SchedulerClient::StubFor(const std::string& address) {
  std::shared_ptr<Stub>& stub = stubs_[address];
  if (stub == nullptr) {
    // gRPC's reconnect backoff (1 s and up by default) must not outlast ours: a new leader
    // refuses connections for a moment while it binds its services, and the resubscription
    // should follow at our pace, not a second later.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options_.resubscribe_backoff)));
    // The minimum is how long one connection attempt may take (not a wait between attempts):
    // generous, for links slower than loopback.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options_.resubscribe_backoff_max)));
    stub = rz::v1::Scheduler::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  return stub;
}

std::string SchedulerClient::master_address() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stream_address_.empty() ? master_spec_ : stream_address_;
}

absl::Status SchedulerClient::Subscribe(absl::Duration timeout) {
  if (!detector_status_.ok()) {
    return detector_status_;
  }
  {
    std::lock_guard<std::mutex> close_lock(close_mu_);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (subscribe_started_) {
        return absl::FailedPreconditionError("already subscribed (or subscribing)");
      }
      if (closed_) {
        return absl::FailedPreconditionError("client is closed");
      }
      subscribe_started_ = true;
      stream_context_ = std::make_unique<grpc::ClientContext>();  // Reader not started yet.
      rz::v1::SubscribeRequest request;
      *request.mutable_framework_info() = framework_info_;
      if (!framework_info_.id().empty()) {
        request.set_last_sequence(options_.resume_after_sequence);
        last_sequence_ = options_.resume_after_sequence;
      }
      // Opening the call can block while the channel connects, so the reader thread does it;
      // this thread only waits, and cancels the context if the master does not answer in time.
      reader_thread_ = std::thread(&SchedulerClient::ReadEvents, this, std::move(request));
    }
    // Outside mu_: the detector may name the leader (OnLeader takes mu_) before Start returns.
    detector_->Start(
        [this](std::optional<rz::v1::MasterInfo> leader) { OnLeader(std::move(leader)); });
  }

  absl::Status status;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const bool answered =
        cv_.wait_until(lock, ToChrono(absl::Now() + timeout), [this] { return subscribe_done_; });
    if (answered) {
      status = subscribe_status_;
    } else if (!leader_seen_) {
      status = absl::UnavailableError(absl::StrCat("no leading master found at '", master_spec_,
                                                   "' within ", DurationText(timeout)));
    } else {
      status = absl::DeadlineExceededError(
          absl::StrCat("master at '", stream_address_.empty() ? master_spec_ : stream_address_,
                       "' did not answer the subscription within ", DurationText(timeout)));
    }
  }
  if (!status.ok()) {
    Close();
  }
  return status;
}

void SchedulerClient::ReadEvents(rz::v1::SubscribeRequest request) {
  // A refusing master's hint is followed at once this many times in a row (two standbys that
  // name each other must not make the client spin); then the backoff applies.
  constexpr int kMaxRedirects = 5;
  absl::Duration backoff = options_.resubscribe_backoff;
  absl::Time broke_at = absl::InfiniteFuture();  // When the last good stream ended.
  std::optional<rz::v1::Event> end_error;        // The synthetic ERROR to deliver last.
  std::string hinted;  // Dial this master next (if set): one named it leader.
  int redirects = 0;   // Hints and leader changes followed since the last subscription.
  while (true) {
    grpc::ClientContext* context;
    std::string address;
    uint64_t leader_changes;
    std::shared_ptr<Stub> stub;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Dial only a master that leads (or was named leader). The first subscription waits
      // until Subscribe() gives up; a resubscription for at most the failover timeout.
      const auto ready = [&] { return closed_ || !hinted.empty() || !leader_.empty(); };
      if (subscriptions_ == 0) {
        cv_.wait(lock, ready);
      } else {
        const absl::Time give_up =
            broke_at + absl::Seconds(framework_info_.failover_timeout_seconds());
        cv_.wait_until(lock, ToChrono(give_up), ready);
      }
      if (closed_) {
        break;
      }
      if (!ready()) {
        rz::v1::Event error;
        error.mutable_error()->set_message(
            absl::StrCat("no leading master found at '", master_spec_,
                         "' within the framework's failover timeout"));
        end_error = std::move(error);
        break;
      }
      address = hinted.empty() ? leader_ : hinted;
      hinted.clear();
      leader_changes = leader_changes_;
      stream_address_ = address;
      stream_open_ = true;
      moved_to_.clear();
      context = stream_context_.get();
      stub = StubFor(address);
    }
    const bool first = subscriptions_ == 0;
    std::unique_ptr<grpc::ClientReader<rz::v1::Event>> reader = stub->Subscribe(context, request);
    rz::v1::Event event;
    bool subscribed = false;
    bool master_error = false;  // The master ended the stream on purpose (ERROR event).
    bool left_open = false;     // Stopped reading a stream the master has not ended.
    while (reader->Read(&event)) {
      if (!subscribed) {
        std::lock_guard<std::mutex> lock(mu_);
        if (event.has_subscribed()) {
          subscribed = true;
          ++subscriptions_;
          framework_id_ = FrameworkId(event.subscribed().framework_id());
          stream_id_ = StreamId(event.subscribed().stream_id());
          if (first) {
            subscribe_status_ = absl::OkStatus();
          }
        } else if (event.has_error()) {
          if (first) {
            subscribe_status_ = absl::FailedPreconditionError(absl::StrCat(
                "master at '", address, "' refused the subscription: ", event.error().message()));
          }
        } else if (first) {
          subscribe_status_ = absl::InternalError(
              absl::StrCat("master at '", address, "' sent an event before SUBSCRIBED (sequence ",
                           event.sequence(), ")"));
        }
        if (first) {
          subscribe_done_ = true;
          cv_.notify_all();
        }
        if (!subscribed) {
          master_error = true;
          if (!first) {
            // A refused resubscription (e.g. after the failover timeout): the scheduler must
            // know, and trying again will not help.
            end_error = event;
          }
          left_open = true;
          break;
        }
        backoff = options_.resubscribe_backoff;
        redirects = 0;
      }
      master_error = master_error || event.has_error();
      Deliver(std::move(event));
      event.Clear();
    }
    // A refused subscription leaves the stream open on our side; cancel before Finish() so it
    // does not wait for the master to close it. (Not otherwise: the cancellation would replace
    // the master's status and its leader hint.)
    if (left_open) {
      context->TryCancel();
    }
    const grpc::Status finish = reader->Finish();
    // A master naming itself leads but is not ready yet (taking over): retry it after a pause.
    std::string hint = LeaderHint(*context, finish).value_or("");
    const bool taking_over = hint == address;
    if (taking_over) {
      hint.clear();
    }
    if (!hint.empty()) {
      detector_->ReportLeaderHint(hint);
    }

    bool closed;
    int subscriptions;
    bool redirect = false;
    std::string moved_to;
    absl::Duration failover;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream_open_ = false;
      moved_to = moved_to_;
      closed = closed_;
      subscriptions = subscriptions_;
      failover = absl::Seconds(framework_info_.failover_timeout_seconds());
      // The first subscription reached a master that does not lead: try the one named
      // instead, within Subscribe()'s timeout.
      if (!subscribe_done_ && !closed_ && redirects < kMaxRedirects &&
          (!hint.empty() ||
           (leader_changes_ != leader_changes && !leader_.empty() && leader_ != address))) {
        redirect = true;
        ++redirects;
        hinted = hint;
        stream_context_ = std::make_unique<grpc::ClientContext>();
      } else if (!subscribe_done_ && !closed_ && taking_over) {
        // The leader is still taking over: ask again shortly, until Subscribe() gives up.
        redirect = true;
        stream_context_ = std::make_unique<grpc::ClientContext>();
      }
      if (!subscribe_done_ && !redirect) {
        absl::Status status = FromGrpcStatus(finish);
        if (closed_) {
          subscribe_status_ = absl::CancelledError("subscription cancelled by Close()");
        } else if (status.code() == absl::StatusCode::kUnavailable) {
          subscribe_status_ = absl::UnavailableError(
              absl::StrCat("cannot reach master at '", address, "': ", status.message()));
        } else {
          subscribe_status_ = absl::Status(
              status.ok() ? absl::StatusCode::kUnavailable : status.code(),
              absl::StrCat("master at '", address, "' closed the subscription: ",
                           status.ok() ? "stream ended without an event" : status.message()));
        }
        subscribe_done_ = true;
      }
    }
    if (redirect) {
      if (taking_over) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_until(lock, ToChrono(absl::Now() + options_.resubscribe_backoff),
                       [&] { return closed_ || leader_changes_ != leader_changes; });
      }
      continue;
    }
    if (closed || subscriptions == 0) {
      break;  // Close(), or the first subscription failed (Subscribe() reports it).
    }
    if (!end_error.has_value()) {
      rz::v1::Event error;
      if (!moved_to.empty()) {
        error.mutable_error()->set_message(absl::StrCat("event stream from master at '", address,
                                                        "' ended: the leading master is now '",
                                                        moved_to, "'"));
      } else if (!hint.empty()) {
        error.mutable_error()->set_message(
            absl::StrCat("event stream from master at '", address,
                         "' ended: it no longer leads; the leader is '", hint, "'"));
      } else {
        error.mutable_error()->set_message(
            finish.ok() ? absl::StrCat("event stream from master at '", address,
                                       "' was closed by the master")
                        : absl::StrCat("event stream from master at '", address,
                                       "' ended: ", finish.error_message()));
      }
      end_error = std::move(error);
    }
    if (subscribed) {
      broke_at = absl::Now();
    }
    if (!options_.resubscribe || master_error || absl::Now() - broke_at > failover) {
      break;
    }
    // Resubscribe, resuming after the last event delivered: at once to a master named leader
    // (a hint or a new leader), else after a pause.
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool follow = (!hint.empty() || !moved_to.empty()) && redirects < kMaxRedirects;
      if (follow) {
        ++redirects;
        hinted = hint;
        LOG(WARNING) << "event stream from master at '" << address << "' ended ("
                     << finish.error_message() << "); resubscribing to "
                     << (hint.empty() ? moved_to : hint) << " after sequence " << last_sequence_;
      } else {
        LOG(WARNING) << "event stream from master at '" << address << "' broke ("
                     << finish.error_message() << "); resubscribing in " << backoff
                     << " after sequence " << last_sequence_;
        cv_.wait_until(lock, ToChrono(absl::Now() + backoff),
                       [&] { return closed_ || leader_changes_ != leader_changes; });
        if (closed_) {
          break;
        }
        if (leader_changes_ != leader_changes || taking_over) {
          backoff = options_.resubscribe_backoff;
        } else {
          backoff = std::min(backoff * 2, options_.resubscribe_backoff_max);
        }
      }
      *request.mutable_framework_info() = framework_info_;
      request.mutable_framework_info()->set_id(framework_id_.value());
      request.set_last_sequence(last_sequence_);
      stream_context_ = std::make_unique<grpc::ClientContext>();
    }
    end_error.reset();
  }
  bool report_end;
  {
    std::lock_guard<std::mutex> lock(mu_);
    report_end = subscriptions_ > 0 && !closed_ && end_error.has_value();
  }
  if (report_end) {
    Deliver(*std::move(end_error));
  }
  std::lock_guard<std::mutex> lock(mu_);
  stream_ended_ = true;
  cv_.notify_all();
}

void SchedulerClient::Deliver(rz::v1::Event event) {
  if (event.sequence() > 0) {
    // The last, not the highest: a new leader numbers the framework's events afresh, and
    // resuming after a number from the old leader's count would skip events of the new one.
    std::lock_guard<std::mutex> lock(mu_);
    last_sequence_ = event.sequence();
  }
  if (options_.on_event) {
    options_.on_event(event);
    return;
  }
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(event));
  cv_.notify_all();
}

uint64_t SchedulerClient::last_sequence() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_sequence_;
}

void SchedulerClient::BreakStreamForTesting() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stream_context_ != nullptr) {
    stream_context_->TryCancel();
  }
}

std::optional<rz::v1::Event> SchedulerClient::NextEvent(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_until(lock, ToChrono(absl::Now() + timeout),
                 [this] { return !events_.empty() || closed_ || stream_ended_; });
  if (events_.empty()) {
    return std::nullopt;
  }
  rz::v1::Event event = std::move(events_.front());
  events_.pop_front();
  return event;
}

void SchedulerClient::Close() {
  std::lock_guard<std::mutex> close_lock(close_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
    if (stream_context_ != nullptr) {
      stream_context_->TryCancel();
    }
  }
  if (reader_thread_.joinable()) {
    CHECK(reader_thread_.get_id() != std::this_thread::get_id())
        << "SchedulerClient::Close() called from the on_event callback";
    reader_thread_.join();
  }
}

FrameworkId SchedulerClient::framework_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return framework_id_;
}

StreamId SchedulerClient::stream_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stream_id_;
}

absl::Status SchedulerClient::FillHeader(rz::v1::CallHeader* header) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (framework_id_.empty()) {
    return absl::FailedPreconditionError("not subscribed: call Subscribe() first");
  }
  header->set_framework_id(framework_id_.value());
  header->set_stream_id(stream_id_.value());
  return absl::OkStatus();
}

template <typename F>
absl::Status SchedulerClient::Call(const char* call, F invoke) {
  std::string address;
  std::shared_ptr<Stub> stub;
  {
    std::lock_guard<std::mutex> lock(mu_);
    address = stream_address_.empty() ? leader_ : stream_address_;
    if (address.empty()) {
      return absl::UnavailableError(
          absl::StrCat(call, ": no leading master known at '", master_spec_, "'"));
    }
    stub = StubFor(address);
  }
  grpc::ClientContext context;
  context.set_deadline(ToChrono(absl::Now() + options_.call_timeout));
  const grpc::Status status = invoke(*stub, &context);
  if (status.ok()) {
    return absl::OkStatus();
  }
  std::string hint = LeaderHint(context, status).value_or("");
  if (hint == address) {
    hint.clear();
  }
  if (!hint.empty()) {
    detector_->ReportLeaderHint(hint);
  }
  const absl::Status converted = FromGrpcStatus(status);
  return absl::Status(converted.code(),
                      absl::StrCat(call, " to master at '", address, "': ", converted.message(),
                                   hint.empty() ? ""
                                                : absl::StrCat(" (the leader is '", hint,
                                                               "'; retry once resubscribed)")));
}

absl::Status SchedulerClient::Accept(const std::vector<OfferId>& offer_ids,
                                     const std::vector<rz::v1::Operation>& operations,
                                     const rz::v1::Filters& filters) {
  rz::v1::AcceptRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const OfferId& id : offer_ids) {
    request.add_offer_ids(id.value());
  }
  for (const rz::v1::Operation& operation : operations) {
    *request.add_operations() = operation;
  }
  *request.mutable_filters() = filters;
  return Call("accept", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Accept(context, request, &response);
  });
}

absl::Status SchedulerClient::Launch(const std::vector<OfferId>& offer_ids,
                                     const std::vector<rz::v1::TaskInfo>& tasks,
                                     double refuse_seconds) {
  rz::v1::Operation operation;
  operation.set_type(rz::v1::Operation::LAUNCH);
  for (const rz::v1::TaskInfo& task : tasks) {
    *operation.mutable_launch()->add_tasks() = task;
  }
  rz::v1::Filters filters;
  filters.set_refuse_seconds(refuse_seconds);
  return Accept(offer_ids, {operation}, filters);
}

absl::Status SchedulerClient::Decline(const std::vector<OfferId>& offer_ids,
                                      double refuse_seconds) {
  rz::v1::DeclineRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const OfferId& id : offer_ids) {
    request.add_offer_ids(id.value());
  }
  request.mutable_filters()->set_refuse_seconds(refuse_seconds);
  return Call("decline", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Decline(context, request, &response);
  });
}

absl::Status SchedulerClient::Revive(const std::vector<std::string>& roles) {
  rz::v1::ReviveRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const std::string& role : roles) {
    request.add_roles(role);
  }
  return Call("revive", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Revive(context, request, &response);
  });
}

absl::Status SchedulerClient::Suppress(const std::vector<std::string>& roles) {
  rz::v1::SuppressRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const std::string& role : roles) {
    request.add_roles(role);
  }
  return Call("suppress", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Suppress(context, request, &response);
  });
}

absl::Status SchedulerClient::Kill(const TaskId& task_id, const AgentId& agent_id) {
  rz::v1::KillRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  request.set_task_id(task_id.value());
  request.set_agent_id(agent_id.value());
  return Call("kill", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Kill(context, request, &response);
  });
}

absl::Status SchedulerClient::Acknowledge(const rz::v1::TaskStatus& status) {
  if (status.uuid().empty()) {
    return absl::OkStatus();
  }
  rz::v1::AcknowledgeRequest request;
  if (absl::Status header = FillHeader(request.mutable_header()); !header.ok()) {
    return header;
  }
  request.set_agent_id(status.agent_id());
  request.set_task_id(status.task_id());
  request.set_uuid(status.uuid());
  return Call("acknowledge", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Acknowledge(context, request, &response);
  });
}

absl::Status SchedulerClient::Reconcile(const std::vector<TaskRef>& tasks) {
  rz::v1::ReconcileRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const TaskRef& task : tasks) {
    rz::v1::ReconcileRequest::TaskRef* ref = request.add_tasks();
    ref->set_task_id(task.task_id.value());
    ref->set_agent_id(task.agent_id.value());
  }
  return Call("reconcile", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Reconcile(context, request, &response);
  });
}

absl::Status SchedulerClient::Teardown() {
  rz::v1::TeardownRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  return Call("teardown", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Teardown(context, request, &response);
  });
}

absl::Status SchedulerClient::UpdateFramework(const rz::v1::FrameworkInfo& info) {
  rz::v1::UpdateFrameworkRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  *request.mutable_framework_info() = info;
  absl::Status status = Call("update framework", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.UpdateFramework(context, request, &response);
  });
  if (status.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    framework_info_ = info;
    framework_info_.set_id(framework_id_.value());
  }
  return status;
}

absl::Status SchedulerClient::Message(const TaskId& task_id, const std::string& data,
                                      const AgentId& agent_id) {
  rz::v1::MessageRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  request.set_task_id(task_id.value());
  request.set_agent_id(agent_id.value());
  request.set_data(data);
  return Call("message", [&](Stub& stub, grpc::ClientContext* context) {
    rz::v1::CallResponse response;
    return stub.Message(context, request, &response);
  });
}

rz::v1::Operation SchedulerClient::LaunchOperation(const std::vector<rz::v1::TaskInfo>& tasks) {
  rz::v1::Operation operation;
  operation.set_type(rz::v1::Operation::LAUNCH);
  for (const rz::v1::TaskInfo& task : tasks) {
    *operation.mutable_launch()->add_tasks() = task;
  }
  return operation;
}

rz::v1::Operation SchedulerClient::ReserveOperation(
    const std::vector<rz::v1::Resource>& resources) {
  rz::v1::Operation operation;
  operation.set_type(rz::v1::Operation::RESERVE);
  for (const rz::v1::Resource& resource : resources) {
    *operation.mutable_reserve()->add_resources() = resource;
  }
  return operation;
}

rz::v1::Operation SchedulerClient::UnreserveOperation(
    const std::vector<rz::v1::Resource>& resources) {
  rz::v1::Operation operation;
  operation.set_type(rz::v1::Operation::UNRESERVE);
  for (const rz::v1::Resource& resource : resources) {
    *operation.mutable_unreserve()->add_resources() = resource;
  }
  return operation;
}

}  // namespace rz::scheduler
