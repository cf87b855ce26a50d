// The operator API's reads over a MasterSnapshot, shared by REST (master_http.cc) and gRPC
// (operator_service.cc) so both serve the same data: each read exists as a proto builder and as
// a JSON renderer that splices the views' cached JSON instead of rendering a whole message.
//
// Thread rule: pure functions of an immutable snapshot; call from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "master/snapshot.h"
#include "rz/v1/operator.pb.h"

namespace rz::master {

inline constexpr int kDefaultTasksLimit = 100;
inline constexpr int kMaxTasksLimit = 1000;

struct TasksPage {
  std::vector<TaskViewPtr> tasks;
  int64_t total = 0;  // Tasks matching the filters.
  int32_t offset = 0;
  int32_t limit = 0;  // After defaulting and clamping.
};

// A page of the snapshot's active tasks: filtered by framework, agent and state, ordered by
// (framework_id, task_id), or by (agent_id, framework_id, task_id) with an agent filter.
// InvalidArgument for a negative limit or offset. Cost: a binary search per bound plus the page,
// plus a scan of the framework's or agent's range (or of every task) when filtering by state.
absl::StatusOr<TasksPage> QueryTasks(const MasterSnapshot& snapshot,
                                     const v1::GetTasksRequest& request);

v1::State StateProto(const MasterSnapshot& snapshot, const v1::GetStateRequest& request);
// Agents without `usage`: the summary has no per-agent statistics (see /agents or /state).
v1::StateSummary StateSummaryProto(const MasterSnapshot& snapshot);
v1::Agents AgentsProto(const MasterSnapshot& snapshot);
v1::Frameworks FrameworksProto(const MasterSnapshot& snapshot);
v1::Tasks TasksProto(const TasksPage& page);

// The same, as the protobuf JSON mapping of those messages.
std::string StateJson(const MasterSnapshot& snapshot, const v1::GetStateRequest& request);
std::string StateSummaryJson(const MasterSnapshot& snapshot);
std::string AgentsJson(const MasterSnapshot& snapshot);
std::string FrameworksJson(const MasterSnapshot& snapshot);
std::string TasksJson(const TasksPage& page);

// Flags as shown to operators: values of names that look secret (password, secret, token,
// credential, key) are replaced by "***".
v1::Flags FlagsProto(const std::map<std::string, std::string>& flags);

}  // namespace rz::master
