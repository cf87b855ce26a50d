#include "cli/master_client.h"

#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/table.h"
#include "common/master_detector.h"
#include "common/resources_proto.h"
#include "common/status_convert.h"
#include "common/status_macros.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "rz/v1/operator.grpc.pb.h"

namespace rz::cli {
namespace {

std::string ScalarText(const Resources& resources, const char* name) {
  const int64_t fixed = resources.ScalarFixed(name);
  return fixed == 0 ? "-" : absl::StrCat(FromFixed(fixed));
}

std::string ResourcesText(const google::protobuf::RepeatedPtrField<rz::v1::Resource>& proto) {
  absl::StatusOr<Resources> resources = FromProto(proto);
  if (!resources.ok()) {
    return "?";
  }
  return resources->empty() ? "-" : resources->ToString();
}

void AddFrameworkRows(const google::protobuf::RepeatedPtrField<rz::v1::FrameworkState>& frameworks,
                      bool completed, Table* table) {
  for (const rz::v1::FrameworkState& framework : frameworks) {
    const std::string roles = framework.info().roles().empty()
                                  ? std::string(kDefaultRole)
                                  : absl::StrJoin(framework.info().roles(), ",");
    table->AddRow({framework.info().id(), framework.info().name(), roles,
                   completed ? "completed" : (framework.connected() ? "yes" : "no"),
                   absl::StrCat(framework.task_count())});
  }
}

void AddTaskRows(const google::protobuf::RepeatedPtrField<rz::v1::Task>& tasks, Table* table) {
  for (const rz::v1::Task& task : tasks) {
    table->AddRow({task.task_id(), task.name(), task.framework_id(), task.agent_id(),
                   TaskStateName(task.state())});
  }
}

}  // namespace

absl::StatusOr<rz::v1::State> GetState(const std::string& master, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  RZ_ASSIGN_OR_RETURN(std::unique_ptr<MasterDetector> detector, CreateMasterDetector(master));
  RZ_ASSIGN_OR_RETURN(const rz::v1::MasterInfo leader, WaitForLeader(*detector, timeout, master));
  std::string address = leader.grpc_address();
  // A master that stopped leading since the detector asked names the new leader: ask that one,
  // once (a second redirect means the masters are mid-election; the user can retry).
  for (bool redirected = false;; redirected = true) {
    std::unique_ptr<rz::v1::Operator::Stub> stub =
        rz::v1::Operator::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    rz::v1::State state;
    const grpc::Status grpc_status = stub->GetState(&context, rz::v1::GetStateRequest(), &state);
    const std::optional<std::string> hint = LeaderHint(context, grpc_status);
    if (hint.has_value() && *hint != address && !redirected) {
      address = *hint;
      continue;
    }
    const absl::Status status = FromGrpcStatus(grpc_status);
    if (hint.has_value()) {
      return absl::UnavailableError(absl::StrCat("master at '", address,
                                                 "' does not lead (it names '", *hint,
                                                 "'); the masters may be electing a leader"));
    }
    if (status.code() == absl::StatusCode::kUnavailable ||
        status.code() == absl::StatusCode::kDeadlineExceeded) {
      return absl::UnavailableError(
          absl::StrCat("cannot reach master at '", address, "': ", status.message()));
    }
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("master at '", address,
                                                      "' refused GetState: ", status.message()));
    }
    return state;
  }
}

int RegisteredAgentCount(const rz::v1::State& state) {
  int count = 0;
  for (const rz::v1::AgentState& agent : state.agents()) {
    if (agent.status() == rz::v1::AgentState::REGISTERED) {
      ++count;
    }
  }
  return count;
}

Resources AgentTotal(const rz::v1::AgentState& agent) {
  // Older masters may leave `total` empty and only fill the agent's info.
  const auto& proto = agent.total().empty() ? agent.info().resources() : agent.total();
  absl::StatusOr<Resources> total = FromProto(proto);
  return total.ok() ? *std::move(total) : Resources();
}

bool ScalarsFit(const Resources& total, const Resources& request) {
  for (const ResourceEntry& entry : request.entries()) {
    if (entry.type == ResourceEntry::Type::kScalar &&
        total.ScalarFixed(entry.name) < entry.scalar) {
      return false;
    }
  }
  return true;
}

std::string AgentsTable(const rz::v1::State& state) {
  Table table({"ID", "HOSTNAME", "STATUS", "CPUS", "MEM", "DISK", "USED", "TASKS"});
  for (const rz::v1::AgentState& agent : state.agents()) {
    const Resources total = AgentTotal(agent);
    table.AddRow({agent.info().id(), agent.info().hostname(),
                  rz::v1::AgentState::Status_Name(agent.status()), ScalarText(total, "cpus"),
                  ScalarText(total, "mem"), ScalarText(total, "disk"), ResourcesText(agent.used()),
                  absl::StrCat(agent.task_count())});
  }
  return table.Render();
}

std::string FrameworksTable(const rz::v1::State& state) {
  Table table({"ID", "NAME", "ROLES", "CONNECTED", "TASKS"});
  AddFrameworkRows(state.frameworks(), /*completed=*/false, &table);
  AddFrameworkRows(state.completed_frameworks(), /*completed=*/true, &table);
  return table.Render();
}

std::string TasksTable(const rz::v1::State& state) {
  Table table({"ID", "NAME", "FRAMEWORK", "AGENT", "STATE"});
  AddTaskRows(state.tasks(), &table);
  AddTaskRows(state.completed_tasks(), &table);
  return table.Render();
}

std::string TaskStateName(rz::v1::TaskState state) { return rz::v1::TaskState_Name(state); }

}  // namespace rz::cli
