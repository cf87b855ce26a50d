#include "master/grpc_services.h"

#include <functional>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/random_id.h"
#include "common/status_convert.h"
#include "master/outbox.h"

namespace rz::master {
namespace {

// A scheduler's event stream. Owned by itself (through `self_`) until gRPC calls OnDone, and
// shared with the master's loop, which may still hold it, harmlessly closed, afterwards.
class EventStream final : public grpc::ServerWriteReactor<v1::Event>,
                          public QueuedWriter<v1::Event> {
 public:
  static std::shared_ptr<EventStream> Create(std::function<void()> on_done) {
    std::shared_ptr<EventStream> stream(new EventStream(std::move(on_done)));
    stream->self_ = stream;
    return stream;
  }

  void OnWriteDone(bool ok) override { HandleWriteDone(ok); }
  void OnCancel() override { HandleCancel(); }
  void OnDone() override {
    on_done_();
    self_.reset();  // May delete this.
  }

 protected:
  void StartWriteOf(const v1::Event* event) override { StartWrite(event); }
  void FinishWith(grpc::Status status) override { Finish(std::move(status)); }

 private:
  explicit EventStream(std::function<void()> on_done)
      : QueuedWriter<v1::Event>(kMaxQueuedEvents), on_done_(std::move(on_done)) {}

  std::function<void()> on_done_;
  std::shared_ptr<EventStream> self_;
};

// An agent's link: reads flow to the loop one by one, writes through the bounded outbox.
class AgentStream final : public grpc::ServerBidiReactor<v1::AgentMessage, v1::MasterMessage>,
                          public QueuedWriter<v1::MasterMessage> {
 public:
  static std::shared_ptr<AgentStream> Create(EventLoop& loop, Master& master) {
    std::shared_ptr<AgentStream> stream(new AgentStream(loop, master));
    stream->self_ = stream;
    stream->StartRead(&stream->incoming_);
    return stream;
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent closed its side or the connection broke.
      Close(absl::OkStatus());
      return;
    }
    std::shared_ptr<AgentStream> self = self_;
    loop_.Post([this, self, message = std::move(incoming_)] {
      master_.HandleAgentMessage(id_, message, self);
    });
    incoming_.Clear();
    StartRead(&incoming_);
  }
  void OnWriteDone(bool ok) override { HandleWriteDone(ok); }
  void OnCancel() override { HandleCancel(); }
  void OnDone() override {
    loop_.Post([&master = master_, id = id_] { master.AgentLinkClosed(id); });
    self_.reset();  // May delete this.
  }

 protected:
  void StartWriteOf(const v1::MasterMessage* message) override { StartWrite(message); }
  void FinishWith(grpc::Status status) override { Finish(std::move(status)); }

 private:
  AgentStream(EventLoop& loop, Master& master)
      : QueuedWriter<v1::MasterMessage>(kMaxQueuedEvents),
        loop_(loop),
        master_(master),
        id_(NewUuid()) {}

  EventLoop& loop_;
  Master& master_;
  const StreamId id_;
  v1::AgentMessage incoming_;
  std::shared_ptr<AgentStream> self_;
};

}  // namespace

grpc::ServerWriteReactor<v1::Event>* SchedulerService::Subscribe(
    grpc::CallbackServerContext* /*context*/, const v1::SubscribeRequest* request) {
  const StreamId id(NewUuid());
  std::shared_ptr<EventStream> stream = EventStream::Create(
      [this, id] { loop_.Post([this, id] { master_.SchedulerStreamClosed(id); }); });
  loop_.Post([this, id, stream, request = *request] { master_.Subscribe(request, id, stream); });
  return stream.get();
}

namespace {

// Counts a finished scheduler call and answers it.
template <typename Request>
void FinishCall(Master& master, const Request& request, grpc::ServerUnaryReactor* reactor,
                absl::Time start, const absl::Status& status) {
  // Calls of unknown frameworks are not counted: their ids would grow the series unbounded.
  if (!absl::IsNotFound(status)) {
    master.metrics().FrameworkCall(request.header().framework_id(), CallTypeOf(request));
  }
  master.metrics().GrpcCall(absl::StrCat("Scheduler.", RpcOf(request)),
                            absl::StatusCodeToString(status.code()), absl::Now() - start);
  reactor->Finish(ToGrpcStatus(status));
}

}  // namespace

template <typename Request>
grpc::ServerUnaryReactor* SchedulerService::PostCall(
    grpc::CallbackServerContext* context, const Request* request,
    absl::Status (Master::*method)(const Request&)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // `request` and `reactor` stay valid until Finish(), which the loop calls. The master is
  // captured by reference rather than through `this`: GCC 12 miscompiles `this` captured by a
  // lambda in a member template under -fsanitize=undefined.
  const absl::Time start = absl::Now();
  loop_.Post([&master = master_, request, reactor, method, start] {
    FinishCall(master, *request, reactor, start, (master.*method)(*request));
  });
  return reactor;
}

template <typename Request>
grpc::ServerUnaryReactor* SchedulerService::PostDurableCall(
    grpc::CallbackServerContext* context, const Request* request,
    void (Master::*method)(const Request&, Master::Completion)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Finished by the completion, once the change is stored and applied (or refused).
  const absl::Time start = absl::Now();
  loop_.Post([&master = master_, request, reactor, method, start] {
    (master.*method)(*request, [&master, request, reactor, start](absl::Status status) {
      FinishCall(master, *request, reactor, start, status);
    });
  });
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::Accept(grpc::CallbackServerContext* context,
                                                   const v1::AcceptRequest* request,
                                                   v1::CallResponse* /*response*/) {
  return PostDurableCall(context, request, &Master::Accept);
}

grpc::ServerUnaryReactor* SchedulerService::Decline(grpc::CallbackServerContext* context,
                                                    const v1::DeclineRequest* request,
                                                    v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Decline);
}

grpc::ServerUnaryReactor* SchedulerService::Revive(grpc::CallbackServerContext* context,
                                                   const v1::ReviveRequest* request,
                                                   v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Revive);
}

grpc::ServerUnaryReactor* SchedulerService::Suppress(grpc::CallbackServerContext* context,
                                                     const v1::SuppressRequest* request,
                                                     v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Suppress);
}

grpc::ServerUnaryReactor* SchedulerService::Kill(grpc::CallbackServerContext* context,
                                                 const v1::KillRequest* request,
                                                 v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Kill);
}

grpc::ServerUnaryReactor* SchedulerService::Acknowledge(grpc::CallbackServerContext* context,
                                                        const v1::AcknowledgeRequest* request,
                                                        v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Acknowledge);
}

grpc::ServerUnaryReactor* SchedulerService::Reconcile(grpc::CallbackServerContext* context,
                                                      const v1::ReconcileRequest* request,
                                                      v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Reconcile);
}

grpc::ServerUnaryReactor* SchedulerService::UpdateFramework(
    grpc::CallbackServerContext* context, const v1::UpdateFrameworkRequest* request,
    v1::CallResponse* /*response*/) {
  return PostDurableCall(context, request, &Master::UpdateFramework);
}

grpc::ServerUnaryReactor* SchedulerService::Message(grpc::CallbackServerContext* context,
                                                    const v1::MessageRequest* request,
                                                    v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Message);
}

grpc::ServerUnaryReactor* SchedulerService::AcceptInverseOffers(
    grpc::CallbackServerContext* context, const v1::InverseOffersResponse* request,
    v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::AcceptInverseOffers);
}

grpc::ServerUnaryReactor* SchedulerService::DeclineInverseOffers(
    grpc::CallbackServerContext* context, const v1::InverseOffersResponse* request,
    v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::DeclineInverseOffers);
}

grpc::ServerUnaryReactor* SchedulerService::Teardown(grpc::CallbackServerContext* context,
                                                     const v1::TeardownRequest* request,
                                                     v1::CallResponse* /*response*/) {
  return PostCall(context, request, &Master::Teardown);
}

grpc::ServerBidiReactor<v1::AgentMessage, v1::MasterMessage>* AgentLinkService::Connect(
    grpc::CallbackServerContext* /*context*/) {
  return AgentStream::Create(loop_, master_).get();
}

}  // namespace rz::master
