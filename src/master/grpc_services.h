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

 private:
  template <typename Request>
  grpc::ServerUnaryReactor* PostCall(grpc::CallbackServerContext* context, const Request* request,
                                     absl::Status (Master::*method)(const Request&));

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

 private:
  EventLoop& loop_;
  Master& master_;
};

}  // namespace rz::master
