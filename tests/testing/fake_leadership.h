// Fake masters for tests of clients that follow the leading master. A Leadership board says
// which named fake master leads; each fake service asks it and refuses, as a non-leading
// rz-master does, with status UNAVAILABLE and the leader's address in the `rz-leader` trailing
// metadata (when the board lets standbys know it). FakeMasterServer runs a FakeOperator
// (GetVersion, the question StaticMasterDetector asks, and GetState, which the CLI calls) plus
// any services a test adds on one loopback gRPC server with a kernel-picked port.
//
// Thread rule: thread-safe.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/master_detector.h"
#include "grpcpp/grpcpp.h"
#include "rz/v1/operator.grpc.pb.h"

namespace rz::testing {

class Leadership {
 public:
  // `name` leads from now on ("" : none). `standbys_know`: the others send the hint.
  void Lead(std::string name, bool standbys_know = true) {
    absl::MutexLock lock(&mu_);
    leader_ = std::move(name);
    standbys_know_ = standbys_know;
    taking_over_ = false;
  }

  // While the leader takes over it refuses calls too, naming itself.
  void SetTakingOver(bool taking_over) {
    absl::MutexLock lock(&mu_);
    taking_over_ = taking_over;
  }

  void Register(const std::string& name, const std::string& address) {
    absl::MutexLock lock(&mu_);
    addresses_[name] = address;
  }

  bool Leads(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    return !name.empty() && leader_ == name;
  }

  // What master `name` answers a call: OK if it leads; else UNAVAILABLE, with the leader's
  // address added to `context`'s trailing metadata when standbys know it.
  grpc::Status Check(grpc::ServerContext* context, const std::string& name) const {
    absl::MutexLock lock(&mu_);
    if (!leader_.empty() && leader_ == name && !taking_over_) {
      return grpc::Status::OK;
    }
    return RefusalLocked(context, name);
  }

  // The refusal of a master that does not (or no longer) lead.
  grpc::Status Refuse(grpc::ServerContext* context, const std::string& name) const {
    absl::MutexLock lock(&mu_);
    return RefusalLocked(context, name);
  }

 private:
  grpc::Status RefusalLocked(grpc::ServerContext* context, const std::string& name) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if ((standbys_know_ || leader_ == name) && !leader_.empty()) {
      if (auto it = addresses_.find(leader_); it != addresses_.end()) {
        context->AddTrailingMetadata(kLeaderMetadataKey, it->second);
      }
    }
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        absl::StrCat("master ", name, " is not the leader"));
  }

  mutable absl::Mutex mu_;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  bool standbys_know_ ABSL_GUARDED_BY(mu_) = true;
  bool taking_over_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::string> addresses_ ABSL_GUARDED_BY(mu_);
};

class FakeOperator final : public v1::Operator::Service {
 public:
  FakeOperator(const Leadership& leadership, std::string name)
      : leadership_(leadership), name_(std::move(name)) {}

  grpc::Status GetVersion(grpc::ServerContext* context, const v1::GetVersionRequest* /*request*/,
                          v1::Version* version) override {
    {
      absl::MutexLock lock(&mu_);
      ++questions_;
    }
    version->set_version("fake");
    return leadership_.Check(context, name_);
  }

  // The leader's state names it: master.id is the fake master's name.
  grpc::Status GetState(grpc::ServerContext* context, const v1::GetStateRequest* /*request*/,
                        v1::State* state) override {
    state->mutable_master()->set_id(name_);
    return leadership_.Check(context, name_);
  }

  int questions() const {
    absl::MutexLock lock(&mu_);
    return questions_;
  }

 private:
  const Leadership& leadership_;
  const std::string name_;
  mutable absl::Mutex mu_;
  int questions_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeMasterServer {
 public:
  // Serves a FakeOperator named `name` and `services` (not owned; they must outlive this) on
  // 127.0.0.1, and registers the address with `leadership`.
  FakeMasterServer(Leadership& leadership, std::string name,
                   std::vector<grpc::Service*> services = {})
      : name_(std::move(name)), operator_(leadership, name_) {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&operator_);
    for (grpc::Service* service : services) {
      builder.RegisterService(service);
    }
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
    leadership.Register(name_, address_);
  }

  ~FakeMasterServer() { Shutdown(); }

  const std::string& name() const { return name_; }
  const std::string& address() const { return address_; }
  int questions() const { return operator_.questions(); }
  bool running() const { return server_ != nullptr; }

  // Stops serving (the address then refuses connections). Ends open calls. Idempotent.
  void Shutdown() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      server_.reset();
    }
  }

 private:
  const std::string name_;
  FakeOperator operator_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

}  // namespace rz::testing
