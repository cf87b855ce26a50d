// What a master that does not lead answers (high availability, rz-master --zk): every gRPC call
// and stream is refused UNAVAILABLE with the leader's gRPC address in the `rz-leader` trailing
// metadata (common/master_detector.h), and REST requests are redirected (307) to the leader,
// except the few that describe this process (/health, /version, /flags, /metrics).
//
// Thread rule: KnownLeader is thread-safe; the gRPC reactor and the HTTP gate run on the
// servers' threads and only read it.
#pragma once

#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/http_server.h"
#include "grpcpp/generic/async_generic_service.h"
#include "rz/v1/common.pb.h"

namespace rz::master {

// The leading master as this one last heard of it (from the ZooKeeper detector).
class KnownLeader {
 public:
  void Set(std::optional<v1::MasterInfo> leader) ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<v1::MasterInfo> Get() const ABSL_LOCKS_EXCLUDED(mu_);
  // This master's own http address, once its HTTP server listens.
  void SetSelf(std::string http_address) ABSL_LOCKS_EXCLUDED(mu_);
  std::string self() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::optional<v1::MasterInfo> leader_ ABSL_GUARDED_BY(mu_);
  std::string self_ ABSL_GUARDED_BY(mu_);
};

// Answers every gRPC method (it is registered as the server's generic service while no real
// service is): UNAVAILABLE, naming the leader in the message and in `rz-leader` if known.
class StandbyGrpcService : public grpc::CallbackGenericService {
 public:
  explicit StandbyGrpcService(const KnownLeader& leader) : leader_(leader) {}
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override;

 private:
  const KnownLeader& leader_;
};

// The REST answer of a master that does not lead, or nullopt for the requests it serves itself.
// While the election names this master (KnownLeader::SetSelf) but it is still taking over, it
// answers 503 rather than redirect to itself.
std::optional<HttpResponse> StandbyHttpAnswer(const KnownLeader& leader,
                                              const HttpRequest& request);

}  // namespace rz::master
