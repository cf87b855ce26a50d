// Master: the state machine of the leading master. It tracks agents, frameworks, offers and
// tasks, drives the allocator, and turns scheduler calls and agent messages into messages on
// the right streams.
//
// Standalone only in this version: no registry, no leader election (the HA issue adds a
// RegistryStore and a LeaderDetector in front of this class). Allocation is the hierarchical
// DRF allocator (src/allocator); allocator_adapter.cc converts to and from its types.
//
// Thread rule: loop-only. Every public method except snapshot() must run on `loop`; transport
// adapters (scheduler_service, agent_link_service, master_http) post to the loop and read
// snapshot(), which is thread-safe.
//
// Invariants: every outstanding offer's resources are allocated to its framework in the
// allocator; a task's resources stay allocated until its terminal update arrives; a framework
// has at most one connected event stream.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "allocator/hierarchical_allocator.h"
#include "common/event_loop.h"
#include "common/ids.h"
#include "common/resources.h"
#include "master/outbox.h"
#include "rz/v1/agent.pb.h"
#include "rz/v1/common.pb.h"
#include "rz/v1/operator.pb.h"
#include "rz/v1/scheduler.pb.h"

namespace rz::master {

struct MasterOptions {
  // How often the allocator runs; events (new agents, frameworks, recovered resources) also
  // trigger a pass at once, coalesced.
  absl::Duration allocation_interval = absl::Seconds(1);
  // Unanswered offers are rescinded after this long; zero disables the timeout.
  absl::Duration offer_timeout = absl::Seconds(60);
  // Filter applied to declined or unused resources when the scheduler gives none.
  absl::Duration default_refuse = absl::Seconds(5);
  // Agents are pinged this often; one that answers no ping for `agent_ping_timeout` is
  // disconnected.
  absl::Duration agent_ping_interval = absl::Seconds(15);
  absl::Duration agent_ping_timeout = absl::Seconds(75);
  // A disconnected agent whose link is not back within this long has its tasks reported
  // TASK_UNREACHABLE.
  absl::Duration agent_reregister_timeout = absl::Seconds(75);
  // Connected schedulers get a HEARTBEAT event this often, so they can tell a quiet master
  // from a lost connection.
  absl::Duration heartbeat_interval = absl::Seconds(15);
  size_t max_completed_tasks = 1000;
  size_t max_completed_frameworks = 50;
  allocator::AllocatorOptions allocator;
};

// Counters, published as State.counters.
struct MasterCounters {
  int64_t invalid_accepts = 0;
  int64_t offers_sent = 0;
  int64_t offers_rescinded = 0;
  int64_t tasks_launched = 0;
  int64_t status_updates = 0;
};

class Master {
 public:
  using EventOutbox = std::shared_ptr<Outbox<v1::Event>>;
  using AgentOutbox = std::shared_ptr<Outbox<v1::MasterMessage>>;

  Master(EventLoop& loop, MasterOptions options, v1::MasterInfo info);
  ~Master();

  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Records how the master is reached (`info`) and starts the allocation and ping timers.
  // Calls handled before Start() work, but SUBSCRIBED and REGISTERED then carry no info.
  void Start(v1::MasterInfo info);

  // --- Schedulers ------------------------------------------------------------------------------

  // A scheduler opened event stream `stream`. Sends SUBSCRIBED on it, or ERROR and closes it
  // with InvalidArgument (bad FrameworkInfo), PermissionDenied (changed principal) or
  // NotFound (the framework was torn down). A framework that is already connected fails over:
  // its old stream gets ERROR "framework failed over" and is closed.
  void Subscribe(const v1::SubscribeRequest& request, const StreamId& stream, EventOutbox outbox);
  // The event stream `stream` ended (the scheduler disconnected or was failed over).
  void SchedulerStreamClosed(const StreamId& stream);

  // Unary calls. Each returns NotFound for an unknown framework and PermissionDenied when the
  // header's stream is not the framework's current stream. Problems with individual offers or
  // tasks are reported as task status updates on the event stream, not as call errors.
  absl::Status Accept(const v1::AcceptRequest& request);
  absl::Status Decline(const v1::DeclineRequest& request);
  absl::Status Revive(const v1::ReviveRequest& request);
  absl::Status Suppress(const v1::SuppressRequest& request);
  absl::Status Kill(const v1::KillRequest& request);
  absl::Status Acknowledge(const v1::AcknowledgeRequest& request);
  absl::Status Reconcile(const v1::ReconcileRequest& request);
  absl::Status Teardown(const v1::TeardownRequest& request);

  // --- Operators -------------------------------------------------------------------------------

  // Each applies all of its entries or none: InvalidArgument names the first bad one.
  // Outstanding offers are rescinded so the next cycle follows the new policy.
  absl::Status UpdateWeights(const v1::UpdateWeightsRequest& request);
  absl::Status UpdateQuota(const v1::UpdateQuotaRequest& request);

  // --- Agents ----------------------------------------------------------------------------------

  // A message arrived on agent link `link`. The first message of a link must be a Register;
  // anything else, or a bad Register, closes the link with a status naming the problem, except
  // a Usage report, which is ignored there. A Usage report from a registered agent replaces its
  // AgentState.usage and the Task.statistics of the tasks it runs (other tasks in the report are
  // ignored); it triggers no allocation and only marks the snapshot for republishing.
  void HandleAgentMessage(const StreamId& link, const v1::AgentMessage& message,
                          const AgentOutbox& outbox);
  // Agent link `link` ended.
  void AgentLinkClosed(const StreamId& link);

  // --- Reads -----------------------------------------------------------------------------------

  // The latest published state and role statistics. Thread-safe; never block on the loop.
  std::shared_ptr<const v1::State> snapshot() const;
  std::shared_ptr<const v1::Roles> roles_snapshot() const;

  const MasterCounters& counters() const { return counters_; }

 private:
  struct Offer {
    OfferId id;
    FrameworkId framework;
    AgentId agent;
    std::string role;
    Resources resources;
    std::optional<TimerId> timeout;
    v1::Offer proto;
  };
  struct Task {
    v1::Task proto;
    Resources resources;
    bool terminal = false;  // A terminal state was reported.
  };
  using TaskKey = std::pair<FrameworkId, TaskId>;
  struct Framework {
    FrameworkId id;
    v1::FrameworkInfo info;
    StreamId stream;
    EventOutbox outbox;  // Null while disconnected.
    uint64_t next_sequence = 1;
    absl::Time registered_time;
    std::optional<TimerId> failover_timer;
    absl::Time failover_deadline;
    absl::btree_set<OfferId> offers;
    absl::btree_set<TaskId> tasks;
  };
  struct Agent {
    AgentId id;
    v1::AgentInfo info;
    Resources total;
    StreamId link;
    AgentOutbox outbox;  // Null while disconnected.
    absl::Time registered_time;
    absl::Time last_pong;
    std::optional<TimerId> reregister_timer;
    bool unreachable = false;
    // The total of the agent's latest usage report (empty before the first one).
    v1::ResourceStatistics usage;
    absl::btree_set<OfferId> offers;
    absl::btree_set<TaskKey> tasks;
  };

  // Scheduler side.
  absl::StatusOr<Framework*> FindCaller(const v1::CallHeader& header);
  void SendEvent(Framework& framework, v1::Event event);
  void SendUpdate(Framework& framework, const v1::TaskStatus& status);
  void RemoveFramework(Framework& framework, const std::string& why);
  void FrameworkFailoverExpired(const FrameworkId& id);
  v1::TaskStatus MasterStatus(const FrameworkId& framework, const std::string& task_id,
                              const std::string& agent_id, v1::TaskState state,
                              v1::TaskStatus::Reason reason, const std::string& message) const;
  // Why a task of an ACCEPT cannot launch: the update its framework gets instead.
  struct TaskRejection {
    v1::TaskState state;
    v1::TaskStatus::Reason reason;
    std::string message;
  };
  // Checks `task` against the framework's tasks, the agent and `available`; returns the
  // resources it uses.
  absl::StatusOr<Resources> CheckTask(const Framework& framework, const Agent& agent,
                                      const v1::TaskInfo& task, const Resources& available,
                                      TaskRejection& rejection) const;
  // Records a checked task as STAGING on the agent and returns it as the agent must get it.
  v1::TaskInfo RecordTask(Framework& framework, Agent& agent, const std::string& role,
                          v1::TaskInfo task, const Resources& requested,
                          const std::string& group_id);
  void LaunchTask(Framework& framework, Agent& agent, const std::string& role, v1::TaskInfo task,
                  Resources& available);
  // LAUNCH_GROUP: every task or none (each gets the group's problem), on one agent, in one
  // RunTaskGroup.
  void LaunchGroup(Framework& framework, Agent& agent, const std::string& role,
                   const google::protobuf::RepeatedPtrField<v1::TaskInfo>& tasks,
                   Resources& available);

  // Agent side.
  absl::Status RegisterAgent(const StreamId& link, const v1::AgentMessage::Register& reg,
                             const AgentOutbox& outbox);
  void HandleStatusUpdate(Agent& agent, const v1::TaskStatus& status);
  // Records the agent's total and each known task's statistics; changes no allocation.
  void HandleUsage(Agent& agent, const v1::AgentMessage::Usage& usage);
  void AgentDisconnected(Agent& agent);
  void AgentReregisterExpired(const AgentId& id);
  void SendToAgent(Agent& agent, v1::MasterMessage message);
  void PingAgents();
  void SendHeartbeats();
  Framework& EnsureFramework(const v1::FrameworkInfo& info);
  // Adds `role` to a framework recovered from an agent's report if it lacks it.
  void EnsureRole(Framework& framework, const std::string& role);
  // Withdraws every outstanding offer (the allocation policy changed).
  void RescindAllOffers();

  // Offers.
  void TriggerAllocation();
  void RunAllocation();
  void RemoveOffer(const OfferId& id, bool rescind, absl::Duration refuse);

  // Tasks.
  void UpdateTaskState(Task& task, const v1::TaskStatus& status);
  void CompleteTask(const TaskKey& key);

  // Publishes a fresh snapshot after the current batch of loop work.
  void PublishSoon();
  void Publish();

  double Seconds(absl::Time t) const { return absl::ToDoubleSeconds(t - absl::UnixEpoch()); }

  EventLoop& loop_;
  const MasterOptions options_;
  v1::MasterInfo info_;
  allocator::HierarchicalAllocator allocator_;
  absl::Duration last_cycle_duration_;
  MasterCounters counters_;

  absl::btree_map<FrameworkId, Framework> frameworks_;
  std::deque<v1::FrameworkState> completed_frameworks_;
  absl::flat_hash_map<StreamId, FrameworkId> framework_by_stream_;
  absl::btree_map<AgentId, Agent> agents_;
  absl::flat_hash_map<StreamId, AgentId> agent_by_link_;
  absl::btree_map<OfferId, Offer> offers_;
  absl::btree_map<TaskKey, Task> tasks_;
  std::deque<v1::Task> completed_tasks_;

  bool allocation_pending_ = false;
  bool publish_pending_ = false;
  std::optional<TimerId> allocation_timer_;
  std::optional<TimerId> ping_timer_;
  std::optional<TimerId> heartbeat_timer_;

  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const v1::State> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);
  std::shared_ptr<const v1::Roles> roles_snapshot_ ABSL_GUARDED_BY(snapshot_mu_);
};

}  // namespace rz::master
