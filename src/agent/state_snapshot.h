// StateSnapshot: the agent's latest published state. The agent's loop publishes a new immutable
// AgentStateResponse after changes; REST handlers read it without ever touching loop state.
//
// Thread rule: thread-safe. A snapshot, once published, is never modified.
#pragma once

#include <memory>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "rz/v1/agent_api.pb.h"

namespace rz::agent {

class StateSnapshot {
 public:
  StateSnapshot() : state_(std::make_shared<const rz::v1::AgentStateResponse>()) {}

  void Publish(std::shared_ptr<const rz::v1::AgentStateResponse> state) {
    absl::MutexLock lock(&mu_);
    state_ = std::move(state);
  }

  // Never null; an empty response before the first Publish().
  std::shared_ptr<const rz::v1::AgentStateResponse> Get() const {
    absl::MutexLock lock(&mu_);
    return state_;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const rz::v1::AgentStateResponse> state_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::agent
