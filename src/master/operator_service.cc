// The Operator gRPC service: reads come from the master's snapshot; actions are posted to its loop.
#include <functional>
#include <memory>
#include <utility>

#include "common/random_id.h"
#include "common/status_convert.h"
#include "master/grpc_services.h"
#include "master/outbox.h"

namespace rz::master {

grpc::ServerUnaryReactor* OperatorService::GetState(grpc::CallbackServerContext* context,
                                                    const v1::GetStateRequest* /*request*/,
                                                    v1::State* response) {
  *response = *master_.snapshot();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::GetHealth(grpc::CallbackServerContext* context,
                                                     const v1::GetHealthRequest* /*request*/,
                                                     v1::Health* response) {
  response->set_healthy(true);
  response->set_version(master_.snapshot()->master().version());
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
  loop_.Post(
      [this, request, reactor] { reactor->Finish(ToGrpcStatus(master_.UpdateWeights(*request))); });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorService::UpdateQuota(grpc::CallbackServerContext* context,
                                                       const v1::UpdateQuotaRequest* request,
                                                       v1::UpdateResponse* /*response*/) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  loop_.Post(
      [this, request, reactor] { reactor->Finish(ToGrpcStatus(master_.UpdateQuota(*request))); });
  return reactor;
}

}  // namespace rz::master
