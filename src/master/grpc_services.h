// The master's gRPC transport adapters: the Scheduler, AgentLink and Operator services. They
// translate between gRPC and Master calls and hold no state of their own beyond the streams'
// outboxes.
//
// Thread rule: handlers run on gRPC threads. They validate nothing that needs state, post a
// closure to the master's loop, and the closure finishes the RPC. Operator reads use the
// master's snapshot and never touch the loop.
#pragma once

#include "common/event_loop.h"
#include "master/master.h"
#include "rz/v1/agent.grpc.pb.h"
#include "rz/v1/operator.grpc.pb.h"
#include "rz/v1/scheduler.grpc.pb.h"

namespace rz::master {

// Messages a stream may fall behind before its consumer is disconnected.
inline constexpr size_t kMaxQueuedEvents = 10000;

class SchedulerService final : public v1::Scheduler::CallbackService {
 public:
  SchedulerService(EventLoop& loop, Master& master) : loop_(loop), master_(master) {}

  grpc::ServerWriteReactor<v1::Event>* Subscribe(grpc::CallbackServerContext* context,
                                                 const v1::SubscribeRequest* request) override;
  grpc::ServerUnaryReactor* Accept(grpc::CallbackServerContext* context,
                                   const v1::AcceptRequest* request,
                                   v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Decline(grpc::CallbackServerContext* context,
                                    const v1::DeclineRequest* request,
                                    v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Revive(grpc::CallbackServerContext* context,
                                   const v1::ReviveRequest* request,
                                   v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Suppress(grpc::CallbackServerContext* context,
                                     const v1::SuppressRequest* request,
                                     v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Kill(grpc::CallbackServerContext* context,
                                 const v1::KillRequest* request,
                                 v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Acknowledge(grpc::CallbackServerContext* context,
                                        const v1::AcknowledgeRequest* request,
                                        v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Reconcile(grpc::CallbackServerContext* context,
                                      const v1::ReconcileRequest* request,
                                      v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Teardown(grpc::CallbackServerContext* context,
                                     const v1::TeardownRequest* request,
                                     v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* UpdateFramework(grpc::CallbackServerContext* context,
                                            const v1::UpdateFrameworkRequest* request,
                                            v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* Message(grpc::CallbackServerContext* context,
                                    const v1::MessageRequest* request,
                                    v1::CallResponse* response) override;
  // Maintenance (H4).
  grpc::ServerUnaryReactor* AcceptInverseOffers(grpc::CallbackServerContext* context,
                                                const v1::InverseOffersResponse* request,
                                                v1::CallResponse* response) override;
  grpc::ServerUnaryReactor* DeclineInverseOffers(grpc::CallbackServerContext* context,
                                                 const v1::InverseOffersResponse* request,
                                                 v1::CallResponse* response) override;

 private:
  template <typename Request>
  grpc::ServerUnaryReactor* PostCall(grpc::CallbackServerContext* context, const Request* request,
                                     absl::Status (Master::*method)(const Request&));
  // For calls the master answers only once their change is durable.
  template <typename Request>
  grpc::ServerUnaryReactor* PostDurableCall(grpc::CallbackServerContext* context,
                                            const Request* request,
                                            void (Master::*method)(const Request&,
                                                                   Master::Completion));

  EventLoop& loop_;
  Master& master_;
};

class AgentLinkService final : public v1::AgentLink::CallbackService {
 public:
  AgentLinkService(EventLoop& loop, Master& master) : loop_(loop), master_(master) {}

  grpc::ServerBidiReactor<v1::AgentMessage, v1::MasterMessage>* Connect(
      grpc::CallbackServerContext* context) override;

 private:
  EventLoop& loop_;
  Master& master_;
};

class OperatorService final : public v1::Operator::CallbackService {
 public:
  OperatorService(EventLoop& loop, Master& master) : loop_(loop), master_(master) {}

  // What GetFlags answers (secrets masked). Call before the server starts.
  void SetFlags(const std::map<std::string, std::string>& flags);
  // Reads (H2): answered from the published snapshot on the gRPC thread.
  grpc::ServerUnaryReactor* GetStateSummary(grpc::CallbackServerContext* context,
                                            const v1::GetStateSummaryRequest* request,
                                            v1::StateSummary* response) override;
  grpc::ServerUnaryReactor* GetAgents(grpc::CallbackServerContext* context,
                                      const v1::GetAgentsRequest* request,
                                      v1::Agents* response) override;
  grpc::ServerUnaryReactor* GetFrameworks(grpc::CallbackServerContext* context,
                                          const v1::GetFrameworksRequest* request,
                                          v1::Frameworks* response) override;
  grpc::ServerUnaryReactor* GetTasks(grpc::CallbackServerContext* context,
                                     const v1::GetTasksRequest* request,
                                     v1::Tasks* response) override;
  grpc::ServerUnaryReactor* GetFlags(grpc::CallbackServerContext* context,
                                     const v1::GetFlagsRequest* request,
                                     v1::Flags* response) override;
  grpc::ServerUnaryReactor* GetVersion(grpc::CallbackServerContext* context,
                                       const v1::GetVersionRequest* request,
                                       v1::Version* response) override;

  grpc::ServerUnaryReactor* GetState(grpc::CallbackServerContext* context,
                                     const v1::GetStateRequest* request,
                                     v1::State* response) override;
  grpc::ServerUnaryReactor* GetHealth(grpc::CallbackServerContext* context,
                                      const v1::GetHealthRequest* request,
                                      v1::Health* response) override;
  grpc::ServerUnaryReactor* GetRoles(grpc::CallbackServerContext* context,
                                     const v1::GetRolesRequest* request,
                                     v1::Roles* response) override;
  grpc::ServerUnaryReactor* UpdateWeights(grpc::CallbackServerContext* context,
                                          const v1::UpdateWeightsRequest* request,
                                          v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* UpdateQuota(grpc::CallbackServerContext* context,
                                        const v1::UpdateQuotaRequest* request,
                                        v1::UpdateResponse* response) override;
  // Dynamic reservations (H3): posted to the loop.
  grpc::ServerUnaryReactor* ReserveResources(grpc::CallbackServerContext* context,
                                             const v1::ReserveResourcesRequest* request,
                                             v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* UnreserveResources(grpc::CallbackServerContext* context,
                                               const v1::UnreserveResourcesRequest* request,
                                               v1::UpdateResponse* response) override;
  // Agent, framework and maintenance actions (H4): posted to the loop.
  grpc::ServerUnaryReactor* DrainAgent(grpc::CallbackServerContext* context,
                                       const v1::DrainAgentRequest* request,
                                       v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* DeactivateAgent(grpc::CallbackServerContext* context,
                                            const v1::DeactivateAgentRequest* request,
                                            v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* ReactivateAgent(grpc::CallbackServerContext* context,
                                            const v1::ReactivateAgentRequest* request,
                                            v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* MarkAgentGone(grpc::CallbackServerContext* context,
                                          const v1::MarkAgentGoneRequest* request,
                                          v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* TeardownFramework(grpc::CallbackServerContext* context,
                                              const v1::TeardownFrameworkRequest* request,
                                              v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* GetMaintenanceSchedule(grpc::CallbackServerContext* context,
                                                   const v1::GetMaintenanceScheduleRequest* request,
                                                   v1::MaintenanceSchedule* response) override;
  grpc::ServerUnaryReactor* UpdateMaintenanceSchedule(
      grpc::CallbackServerContext* context, const v1::UpdateMaintenanceScheduleRequest* request,
      v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* GetMaintenanceStatus(grpc::CallbackServerContext* context,
                                                 const v1::GetMaintenanceStatusRequest* request,
                                                 v1::MaintenanceStatus* response) override;
  grpc::ServerUnaryReactor* StartMaintenance(grpc::CallbackServerContext* context,
                                             const v1::StartMaintenanceRequest* request,
                                             v1::UpdateResponse* response) override;
  grpc::ServerUnaryReactor* StopMaintenance(grpc::CallbackServerContext* context,
                                            const v1::StopMaintenanceRequest* request,
                                            v1::UpdateResponse* response) override;
  // Metrics and the operator event stream (H5).
  grpc::ServerUnaryReactor* GetMetrics(grpc::CallbackServerContext* context,
                                       const v1::GetMetricsRequest* request,
                                       v1::Metrics* response) override;
  grpc::ServerWriteReactor<v1::OperatorEvent>* Subscribe(
      grpc::CallbackServerContext* context, const v1::OperatorSubscribeRequest* request) override;

 private:
  EventLoop& loop_;
  Master& master_;
  v1::Flags flags_;  // Set before serving; read-only after.
};

}  // namespace rz::master
