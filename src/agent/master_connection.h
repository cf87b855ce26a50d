// MasterConnection: how the agent's state machine sends messages to the master. MasterLink is
// the production implementation (a gRPC AgentLink.Connect stream); tests capture messages with
// a fake.
//
// Delivery contract: messages sent while no stream is open, or before the current stream's
// Register, are dropped. The agent therefore sends Register when it learns of a new stream and
// resends everything that matters (unacknowledged status updates) once registered.
//
// Thread rule: Send() is thread-safe and never blocks on the network.
#pragma once

#include "rz/v1/agent.pb.h"

namespace rz::agent {

class MasterConnection {
 public:
  virtual ~MasterConnection() = default;

  // Queues `message` for the current stream.
  virtual void Send(rz::v1::AgentMessage message) = 0;
};

}  // namespace rz::agent
