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

SchedulerClient::SchedulerClient(std::string master_address, rz::v1::FrameworkInfo framework_info,
                                 SchedulerClientOptions options)
    : master_address_(std::move(master_address)),
      framework_info_(std::move(framework_info)),
      options_(std::move(options)),
      channel_(grpc::CreateChannel(master_address_, grpc::InsecureChannelCredentials())),
      stub_(rz::v1::Scheduler::NewStub(channel_)) {}

SchedulerClient::~SchedulerClient() { Close(); }

absl::Status SchedulerClient::Subscribe(absl::Duration timeout) {
  {
    std::lock_guard<std::mutex> close_lock(close_mu_);
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

  absl::Status status;
  {
    std::unique_lock<std::mutex> lock(mu_);
    const bool answered =
        cv_.wait_until(lock, ToChrono(absl::Now() + timeout), [this] { return subscribe_done_; });
    if (!answered) {
      status = absl::DeadlineExceededError(absl::StrCat("master at '", master_address_,
                                                        "' did not answer the subscription within ",
                                                        DurationText(timeout)));
    } else {
      status = subscribe_status_;
    }
  }
  if (!status.ok()) {
    Close();
  }
  return status;
}

void SchedulerClient::ReadEvents(rz::v1::SubscribeRequest request) {
  absl::Duration backoff = options_.resubscribe_backoff;
  absl::Time broke_at = absl::InfiniteFuture();  // When the last good stream ended.
  std::optional<rz::v1::Event> end_error;        // The synthetic ERROR to deliver last.
  while (true) {
    grpc::ClientContext* context;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) {
        break;
      }
      context = stream_context_.get();
    }
    const bool first = subscriptions_ == 0;
    std::unique_ptr<grpc::ClientReader<rz::v1::Event>> reader = stub_->Subscribe(context, request);
    rz::v1::Event event;
    bool subscribed = false;
    bool master_error = false;  // The master ended the stream on purpose (ERROR event).
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
            subscribe_status_ = absl::FailedPreconditionError(
                absl::StrCat("master at '", master_address_,
                             "' refused the subscription: ", event.error().message()));
          }
        } else if (first) {
          subscribe_status_ = absl::InternalError(
              absl::StrCat("master at '", master_address_,
                           "' sent an event before SUBSCRIBED (sequence ", event.sequence(), ")"));
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
          break;
        }
        backoff = options_.resubscribe_backoff;
      }
      master_error = master_error || event.has_error();
      Deliver(std::move(event));
      event.Clear();
    }
    // A refused subscription leaves the stream open on our side; cancel before Finish() so it
    // does not wait for the master to close it.
    if (!subscribed) {
      context->TryCancel();
    }
    const grpc::Status finish = reader->Finish();

    bool closed;
    int subscriptions;
    absl::Duration failover;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed = closed_;
      subscriptions = subscriptions_;
      failover = absl::Seconds(framework_info_.failover_timeout_seconds());
      if (!subscribe_done_) {
        absl::Status status = FromGrpcStatus(finish);
        if (closed_) {
          subscribe_status_ = absl::CancelledError("subscription cancelled by Close()");
        } else if (status.code() == absl::StatusCode::kUnavailable) {
          subscribe_status_ = absl::UnavailableError(
              absl::StrCat("cannot reach master at '", master_address_, "': ", status.message()));
        } else {
          subscribe_status_ = absl::Status(
              status.ok() ? absl::StatusCode::kUnavailable : status.code(),
              absl::StrCat("master at '", master_address_, "' closed the subscription: ",
                           status.ok() ? "stream ended without an event" : status.message()));
        }
        subscribe_done_ = true;
      }
    }
    if (closed || subscriptions == 0) {
      break;  // Close(), or the first subscription failed (Subscribe() reports it).
    }
    if (!end_error.has_value()) {
      rz::v1::Event error;
      error.mutable_error()->set_message(
          finish.ok() ? absl::StrCat("event stream from master at '", master_address_,
                                     "' was closed by the master")
                      : absl::StrCat("event stream from master at '", master_address_,
                                     "' ended: ", finish.error_message()));
      end_error = std::move(error);
    }
    if (subscribed) {
      broke_at = absl::Now();
    }
    if (!options_.resubscribe || master_error || absl::Now() - broke_at > failover) {
      break;
    }
    // Resubscribe after a pause, resuming after the last event delivered.
    {
      std::unique_lock<std::mutex> lock(mu_);
      LOG(WARNING) << "event stream from master at '" << master_address_ << "' broke ("
                   << finish.error_message() << "); resubscribing in " << backoff
                   << " after sequence " << last_sequence_;
      cv_.wait_until(lock, ToChrono(absl::Now() + backoff), [this] { return closed_; });
      if (closed_) {
        break;
      }
      backoff = std::min(backoff * 2, options_.resubscribe_backoff_max);
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
    std::lock_guard<std::mutex> lock(mu_);
    last_sequence_ = std::max(last_sequence_, event.sequence());
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

void SchedulerClient::PrepareContext(grpc::ClientContext* context) const {
  context->set_deadline(ToChrono(absl::Now() + options_.call_timeout));
}

absl::Status SchedulerClient::CallResult(const char* call, const grpc::Status& status) const {
  if (status.ok()) {
    return absl::OkStatus();
  }
  const absl::Status converted = FromGrpcStatus(status);
  return absl::Status(converted.code(), absl::StrCat(call, " to master at '", master_address_,
                                                     "': ", converted.message()));
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
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("accept", stub_->Accept(&context, request, &response));
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
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("decline", stub_->Decline(&context, request, &response));
}

absl::Status SchedulerClient::Revive(const std::vector<std::string>& roles) {
  rz::v1::ReviveRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const std::string& role : roles) {
    request.add_roles(role);
  }
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("revive", stub_->Revive(&context, request, &response));
}

absl::Status SchedulerClient::Suppress(const std::vector<std::string>& roles) {
  rz::v1::SuppressRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  for (const std::string& role : roles) {
    request.add_roles(role);
  }
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("suppress", stub_->Suppress(&context, request, &response));
}

absl::Status SchedulerClient::Kill(const TaskId& task_id, const AgentId& agent_id) {
  rz::v1::KillRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  request.set_task_id(task_id.value());
  request.set_agent_id(agent_id.value());
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("kill", stub_->Kill(&context, request, &response));
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
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("acknowledge", stub_->Acknowledge(&context, request, &response));
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
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("reconcile", stub_->Reconcile(&context, request, &response));
}

absl::Status SchedulerClient::Teardown() {
  rz::v1::TeardownRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("teardown", stub_->Teardown(&context, request, &response));
}

absl::Status SchedulerClient::UpdateFramework(const rz::v1::FrameworkInfo& info) {
  rz::v1::UpdateFrameworkRequest request;
  if (absl::Status status = FillHeader(request.mutable_header()); !status.ok()) {
    return status;
  }
  *request.mutable_framework_info() = info;
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  absl::Status status =
      CallResult("update framework", stub_->UpdateFramework(&context, request, &response));
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
  grpc::ClientContext context;
  PrepareContext(&context);
  rz::v1::CallResponse response;
  return CallResult("message", stub_->Message(&context, request, &response));
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
