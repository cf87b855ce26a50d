// The Operator gRPC service: reads come from the master's snapshot; actions are posted to its loop.
#include <functional>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/random_id.h"
#include "common/status_convert.h"
#include "common/version.h"
#include "master/grpc_services.h"
#include "master/outbox.h"
#include "master/state_reads.h"

namespace rz::master {

namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context,
                               const grpc::Status& status = grpc::Status::OK) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* OperatorService::GetState(grpc::CallbackServerContext* context,
                                                    const v1::GetStateRequest* request,
                                                    v1::State* response) {
  *response = StateProto(*master_.state(), *request);
  return Done(context);
}

void OperatorService::SetFlags(const std::map<std::string, std::string>& flags) {
  flags_ = FlagsProto(flags);
}

grpc::ServerUnaryReactor* OperatorService::GetStateSummary(
    grpc::CallbackServerContext* context, const v1::GetStateSummaryRequest* /*request*/,
    v1::StateSummary* response) {
  *response = StateSummaryProto(*master_.state());
  return Done(context);
}

grpc::ServerUnaryReactor* OperatorService::GetAgents(grpc::CallbackServerContext* context,
                                                     const v1::GetAgentsRequest* /*request*/,
                                                     v1::Agents* response) {
  *response = AgentsProto(*master_.state());
  return Done(context);
}

grpc::ServerUnaryReactor* OperatorService::GetFrameworks(
    grpc::CallbackServerContext* context, const v1::GetFrameworksRequest* /*request*/,
    v1::Frameworks* response) {
  *response = FrameworksProto(*master_.state());
  return Done(context);
}

grpc::ServerUnaryReactor* OperatorService::GetTasks(grpc::CallbackServerContext* context,
                                                    const v1::GetTasksRequest* request,
                                                    v1::Tasks* response) {
  absl::StatusOr<TasksPage> page = QueryTasks(*master_.state(), *request);
  if (!page.ok()) {
    return Done(context, ToGrpcStatus(page.status()));
  }
  *response = TasksProto(*page);
  return Done(context);
}

grpc::ServerUnaryReactor* OperatorService::GetFlags(grpc::CallbackServerContext* context,
                                                    const v1::GetFlagsRequest* /*request*/,
                                                    v1::Flags* response) {
  *response = flags_;
  return Done(context);
}

grpc::ServerUnaryReactor* OperatorService::GetVersion(grpc::CallbackServerContext* context,
                                                      const v1::GetVersionRequest* /*request*/,
                                                      v1::Version* response) {
  response->set_version(kVersion);
  return Done(context);
}

grpc::ServerUnaryReactor* OperatorService::GetHealth(grpc::CallbackServerContext* context,
                                                     const v1::GetHealthRequest* /*request*/,
                                                     v1::Health* response) {
  response->set_healthy(true);
  response->set_version(master_.state()->master.version());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::GetRoles(grpc::CallbackServerContext* context,
                                                    const v1::GetRolesRequest* /*request*/,
                                                    v1::Roles* response) {
  *response = *master_.roles_snapshot();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::UpdateWeights(grpc::CallbackServerContext* context,
                                                         const v1::UpdateWeightsRequest* request,
                                                         v1::UpdateResponse* /*response*/) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  // Finished once the change is stored and applied (or refused): the registry answers later.
  loop_.Post([this, request, reactor] {
    master_.UpdateWeights(
        *request, [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::UpdateQuota(grpc::CallbackServerContext* context,
                                                       const v1::UpdateQuotaRequest* request,
                                                       v1::UpdateResponse* /*response*/) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  loop_.Post([this, request, reactor] {
    master_.UpdateQuota(*request,
                        [reactor](absl::Status status) { reactor->Finish(ToGrpcStatus(status)); });
  });
  return reactor;
}

}  // namespace rz::master

// --- Agent, framework and maintenance actions (H4) ---------------------------------------------

namespace rz::master {
namespace {

// Posts `method` to the master's loop; the loop finishes the RPC with its status.
template <typename Request>
grpc::ServerUnaryReactor* PostAction(EventLoop& loop, Master& master,
                                     grpc::CallbackServerContext* context, const Request* request,
                                     absl::Status (Master::*method)(const Request&)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  loop.Post([&master, request, reactor, method, start] {
    const absl::Status status = (master.*method)(*request);
    master.metrics().GrpcCall(absl::StrCat("Operator.", RpcOf(*request)),
                              absl::StatusCodeToString(status.code()), absl::Now() - start);
    reactor->Finish(ToGrpcStatus(status));
  });
  return reactor;
}

// The same for an action stored before it is applied: its completion finishes the RPC.
template <typename Request>
grpc::ServerUnaryReactor* PostAction(EventLoop& loop, Master& master,
                                     grpc::CallbackServerContext* context, const Request* request,
                                     void (Master::*method)(const Request&, Master::Completion)) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time start = absl::Now();
  loop.Post([&master, request, reactor, method, start] {
    (master.*method)(*request, [&master, request, reactor, start](absl::Status status) {
      master.metrics().GrpcCall(absl::StrCat("Operator.", RpcOf(*request)),
                                absl::StatusCodeToString(status.code()), absl::Now() - start);
      reactor->Finish(ToGrpcStatus(status));
    });
  });
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* OperatorService::DrainAgent(grpc::CallbackServerContext* context,
                                                      const v1::DrainAgentRequest* request,
                                                      v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::DrainAgent);
}

grpc::ServerUnaryReactor* OperatorService::DeactivateAgent(
    grpc::CallbackServerContext* context, const v1::DeactivateAgentRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::DeactivateAgent);
}

grpc::ServerUnaryReactor* OperatorService::ReactivateAgent(
    grpc::CallbackServerContext* context, const v1::ReactivateAgentRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::ReactivateAgent);
}

grpc::ServerUnaryReactor* OperatorService::MarkAgentGone(grpc::CallbackServerContext* context,
                                                         const v1::MarkAgentGoneRequest* request,
                                                         v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::MarkAgentGone);
}

grpc::ServerUnaryReactor* OperatorService::TeardownFramework(
    grpc::CallbackServerContext* context, const v1::TeardownFrameworkRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::TeardownFramework);
}

grpc::ServerUnaryReactor* OperatorService::GetMaintenanceSchedule(
    grpc::CallbackServerContext* context, const v1::GetMaintenanceScheduleRequest* /*request*/,
    v1::MaintenanceSchedule* response) {
  *response = master_.maintenance_snapshot()->maintenance_schedule();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::UpdateMaintenanceSchedule(
    grpc::CallbackServerContext* context, const v1::UpdateMaintenanceScheduleRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::UpdateMaintenanceSchedule);
}

grpc::ServerUnaryReactor* OperatorService::GetMaintenanceStatus(
    grpc::CallbackServerContext* context, const v1::GetMaintenanceStatusRequest* /*request*/,
    v1::MaintenanceStatus* response) {
  *response = master_.maintenance_snapshot()->maintenance_status();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::StartMaintenance(
    grpc::CallbackServerContext* context, const v1::StartMaintenanceRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::StartMaintenance);
}

grpc::ServerUnaryReactor* OperatorService::StopMaintenance(
    grpc::CallbackServerContext* context, const v1::StopMaintenanceRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::StopMaintenance);
}

// --- Dynamic reservations (H3) -----------------------------------------------------------------

grpc::ServerUnaryReactor* OperatorService::ReserveResources(
    grpc::CallbackServerContext* context, const v1::ReserveResourcesRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::ReserveResources);
}

grpc::ServerUnaryReactor* OperatorService::UnreserveResources(
    grpc::CallbackServerContext* context, const v1::UnreserveResourcesRequest* request,
    v1::UpdateResponse* /*response*/) {
  return PostAction(loop_, master_, context, request, &Master::UnreserveResources);
}

}  // namespace rz::master

// --- Metrics and the operator event stream (H5) ------------------------------------------------

namespace rz::master {
namespace {

// An operator's event stream; like the scheduler's EventStream, owned by itself until OnDone.
class OperatorEventStream final : public grpc::ServerWriteReactor<v1::OperatorEvent>,
                                  public QueuedWriter<v1::OperatorEvent> {
 public:
  static std::shared_ptr<OperatorEventStream> Create(size_t max_queued,
                                                     std::function<void()> on_done) {
    std::shared_ptr<OperatorEventStream> stream(
        new OperatorEventStream(max_queued, std::move(on_done)));
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
  void StartWriteOf(const v1::OperatorEvent* event) override { StartWrite(event); }
  void FinishWith(grpc::Status status) override { Finish(std::move(status)); }

 private:
  OperatorEventStream(size_t max_queued, std::function<void()> on_done)
      : QueuedWriter<v1::OperatorEvent>(max_queued), on_done_(std::move(on_done)) {}

  std::function<void()> on_done_;
  std::shared_ptr<OperatorEventStream> self_;
};

}  // namespace

grpc::ServerUnaryReactor* OperatorService::GetMetrics(grpc::CallbackServerContext* context,
                                                      const v1::GetMetricsRequest* /*request*/,
                                                      v1::Metrics* response) {
  const absl::Time start = absl::Now();
  *response = master_.metrics().ToProto(*master_.state());
  master_.metrics().GrpcCall("Operator.GetMetrics", "OK", absl::Now() - start);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<v1::OperatorEvent>* OperatorService::Subscribe(
    grpc::CallbackServerContext* /*context*/, const v1::OperatorSubscribeRequest* /*request*/) {
  const StreamId id(NewUuid());
  std::shared_ptr<OperatorEventStream> stream = OperatorEventStream::Create(
      master_.max_queued_operator_events(),
      [this, id] { loop_.Post([this, id] { master_.OperatorEventStreamClosed(id); }); });
  loop_.Post([this, id, stream] { master_.SubscribeOperatorEvents(id, stream); });
  return stream.get();
}

}  // namespace rz::master
