// Operator-API calls the CLI makes to the master (one unary gRPC call each, with a deadline),
// and the text forms of what they return.
//
// Thread rule: thread-safe (each call opens its own channel).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/resources.h"
#include "rz/v1/operator.pb.h"

namespace rz::cli {

// The leading master's state. `master` is host:port, host:port,host:port,... or zk://...
// (see common/master_detector.h); a master that no longer leads and names the leader is
// followed once. Returns InvalidArgument for a malformed `master`, Unavailable naming the
// master if none leads or the leader cannot be reached within `timeout`, or the master's error
// with its address added.
absl::StatusOr<rz::v1::State> GetState(const std::string& master,
                                       absl::Duration timeout = absl::Seconds(10));

// The number of agents in `state` whose status is REGISTERED.
int RegisteredAgentCount(const rz::v1::State& state);

// An agent's total resources; empty if they do not parse.
Resources AgentTotal(const rz::v1::AgentState& agent);

// Each scalar of `request` is available in `total` in at least that amount, counting every
// role (the CLI asks for whatever the agent has, reserved or not).
bool ScalarsFit(const Resources& total, const Resources& request);

// Agents: ID HOSTNAME STATUS CPUS MEM DISK USED TASKS.
std::string AgentsTable(const rz::v1::State& state);
// Frameworks (connected, disconnected, then completed): ID NAME ROLES CONNECTED TASKS.
std::string FrameworksTable(const rz::v1::State& state);
// Tasks (active, then completed): ID NAME FRAMEWORK AGENT STATE.
std::string TasksTable(const rz::v1::State& state);

// The enum name, e.g. "TASK_RUNNING".
std::string TaskStateName(rz::v1::TaskState state);

}  // namespace rz::cli
