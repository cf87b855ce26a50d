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
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "allocator/hierarchical_allocator.h"
#include "common/event_loop.h"
#include "common/ids.h"
#include "common/resources.h"
#include "master/metrics.h"
#include "master/operator_events.h"
#include "master/outbox.h"
#include "master/registry/registry.h"
#include "master/snapshot.h"
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
  // After a recovery (a restart or failover), agents of the registry that have not reregistered
  // within agent_reregister_timeout are marked unreachable, at most `agent_removals_per_period`
  // per `agent_removal_period` (0: all at once), and none if they are more than this fraction
  // of the recovered agents: that many missing agents means a partition, not dead machines.
  double recovery_agent_removal_limit = 1.0;
  size_t agent_removals_per_period = 0;
  absl::Duration agent_removal_period = absl::Seconds(1);
  // Connected schedulers get a HEARTBEAT event this often, so they can tell a quiet master
  // from a lost connection.
  absl::Duration heartbeat_interval = absl::Seconds(15);
  size_t max_completed_tasks = 1000;
  size_t max_completed_frameworks = 50;
  // --- Agent lifecycle (H4) ---
  // Beyond these, the oldest unreachable agents are forgotten (their tasks with them; they may
  // still register again) and the oldest gone agents drop out of /state and may register again.
  size_t max_unreachable_agents = 1000;
  size_t max_gone_agents = 1000;
  // --- Metrics and operator events (H5) ---
  // Open Operator.Subscribe streams allowed; more are refused with RESOURCE_EXHAUSTED.
  size_t max_operator_event_subscribers = 100;
  // Events an operator stream may fall behind before its consumer is disconnected.
  size_t max_queued_operator_events = 1000;
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

  // `registry` (not owned, outlives the Master) stores what must survive a restart; the master
  // applies a change only once it is stored there (master_registry.cc).
  Master(EventLoop& loop, MasterOptions options, v1::MasterInfo info, Registry& registry);
  ~Master();

  Master(const Master&) = delete;
  Master& operator=(const Master&) = delete;

  // Records how the master is reached (`info`) and starts the allocation and ping timers.
  // Calls handled before Start() work, but SUBSCRIBED and REGISTERED then carry no info.
  void Start(v1::MasterInfo info);
  // This master no longer leads (high availability): no more allocation, pings or heartbeats,
  // and every scheduler, agent and operator stream is closed with `why`. What it still does
  // (streams closing, timers) cannot reach the registry: its writes are fenced. The daemon
  // then restarts the process; a stepped-down Master is never started again.
  void StepDown(const absl::Status& why);

  // --- Registry (H1): master_registry.cc ---
  // Loads what Registry::Recover() read: frameworks (disconnected, each torn down at its
  // recorded deadline, or failover timeout from now if it was connected; at once if the
  // deadline passed), admitted agents (`recovering`: no offers until they reregister, marked
  // unreachable after agent_reregister_timeout), unreachable and gone agents, weights, quota,
  // maintenance. InvalidArgument names a record the master cannot use (nothing is loaded then).
  // REQUIRES: on the loop, before Start() and before any other call.
  absl::Status Recover(const RegistryState& state);

  // --- Schedulers ------------------------------------------------------------------------------

  // How a call that waits for the registry answers: run on the loop, exactly once.
  using Completion = absl::AnyInvocable<void(absl::Status) &&>;

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
  // ACCEPT completes `done` on the loop: at once, unless it RESERVEs or UNRESERVEs, in which
  // case the agent's new reservations are stored before anything of it is applied.
  void Accept(const v1::AcceptRequest& request, Completion done);
  absl::Status Decline(const v1::DeclineRequest& request);
  absl::Status Revive(const v1::ReviveRequest& request);
  absl::Status Suppress(const v1::SuppressRequest& request);
  absl::Status Kill(const v1::KillRequest& request);
  absl::Status Acknowledge(const v1::AcknowledgeRequest& request);
  absl::Status Reconcile(const v1::ReconcileRequest& request);
  absl::Status Teardown(const v1::TeardownRequest& request);

  // --- Operators -------------------------------------------------------------------------------

  // Each applies all of its entries or none: InvalidArgument names the first bad one.
  // Outstanding offers are rescinded so the next cycle follows the new policy. Asynchronous:
  // the change is stored in the registry first and applied only then; `done` runs on the loop
  // exactly once (possibly before the call returns, for a bad request) with OK once applied, or
  // the error (nothing applied).
  void UpdateWeights(const v1::UpdateWeightsRequest& request, Completion done);
  void UpdateQuota(const v1::UpdateQuotaRequest& request, Completion done);

  // --- Agent lifecycle, operator actions, maintenance: master_operator.cc ---
  // Each completes with NotFound for an unknown agent or framework, FailedPrecondition when the
  // target's state does not allow the action, InvalidArgument for a malformed request. Like
  // UpdateWeights, each is stored in the registry before it is applied, and `done` (on the loop,
  // exactly once) gets OK once it is applied and stored, or the error with nothing applied.
  // DRAIN: no more offers from the agent, its offers rescinded, its tasks killed with their kill
  // policy's grace period (capped by max_grace_period_seconds); DRAINING until no task is left,
  // then DRAINED (and GONE with mark_gone).
  void DrainAgent(const v1::DrainAgentRequest& request, Completion done);
  // No offers while deactivated; tasks keep running. REACTIVATE also ends a drain.
  void DeactivateAgent(const v1::DeactivateAgentRequest& request, Completion done);
  void ReactivateAgent(const v1::ReactivateAgentRequest& request, Completion done);
  // Tasks TASK_GONE_BY_OPERATOR, resources freed, the agent told to shut down and refused if it
  // registers again.
  void MarkAgentGone(const v1::MarkAgentGoneRequest& request, Completion done);
  // The operator's TEARDOWN: like the scheduler's.
  absl::Status TeardownFramework(const v1::TeardownFrameworkRequest& request);
  void UpdateMaintenanceSchedule(const v1::UpdateMaintenanceScheduleRequest& request,
                                 Completion done);
  // Machine DOWN / UP (Mesos start_maintenance / stop_maintenance).
  void StartMaintenance(const v1::StartMaintenanceRequest& request, Completion done);
  void StopMaintenance(const v1::StopMaintenanceRequest& request, Completion done);
  // Scheduler answers to inverse offers.
  absl::Status AcceptInverseOffers(const v1::InverseOffersResponse& request);
  absl::Status DeclineInverseOffers(const v1::InverseOffersResponse& request);
  // The loop the master runs on: REST action handlers post to it.
  EventLoop& loop() { return loop_; }
  // Gone agents, maintenance schedule and status (State fields 9-11) of the latest snapshot
  // (its `extras`). Thread-safe.
  std::shared_ptr<const v1::State> maintenance_snapshot() const;

  // --- Scheduler API and reservations (H3): master_scheduler.cc ---
  // UPDATE_FRAMEWORK: replaces the framework's info. PermissionDenied naming `principal` or
  // `user` if either differs; InvalidArgument for an invalid info or a foreign id. Offers in
  // roles it leaves are rescinded; allocations there stay until their resources come back.
  // The new info is stored in the registry first; it is applied and `done` called with OK once
  // durable, or `done` gets the write's error and nothing changes. `done` runs on the loop.
  void UpdateFramework(const v1::UpdateFrameworkRequest& request, Completion done);
  // MESSAGE: forwards the data to the agent of a live task (best effort). NotFound for an
  // unknown or finished task, InvalidArgument above kMaxMessageBytes, Unavailable while the
  // task's agent is disconnected.
  absl::Status Message(const v1::MessageRequest& request);
  static constexpr size_t kMaxMessageBytes = 1 << 20;
  // Operator dynamic reservations of an agent's free resources (see operator.proto); stored
  // before applied, like the actions above.
  void ReserveResources(const v1::ReserveResourcesRequest& request, Completion done);
  void UnreserveResources(const v1::UnreserveResourcesRequest& request, Completion done);
  // Offer ids remembered after their offer ended, to tell a late ACCEPT why it failed.
  static constexpr size_t kMaxRemovedOffers = 10000;
  // Offers remembered per framework for replay on resubscription.
  static constexpr size_t kMaxSentOffers = 1000;

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
  // The latest published snapshot: per-entity views shared between snapshots, tasks ordered
  // and indexed (snapshot.h). Thread-safe and cheap; new readers should use this. snapshot()
  // materializes a whole v1::State from it once per snapshot.
  std::shared_ptr<const MasterSnapshot> state() const;
  // `observer` runs on the loop after each publication with what changed (snapshot.h).
  void AddSnapshotObserver(std::function<void(const SnapshotDelta&)> observer);
  // Publishes at once instead of after the current batch. Loop only; for tests and benches.
  void PublishNow() { Publish(); }

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
    // H3: the sequence of the event that carried `proto.latest_status` to the scheduler; 0 if
    // it was due but not delivered; kNoStatusEvent when none is due (the launch's STAGING).
    uint64_t status_sequence = kNoStatusEvent;
  };
  static constexpr uint64_t kNoStatusEvent = ~uint64_t{0};
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
    // H3: offers sent to it, oldest first (bounded by kMaxSentOffers), with the sequence of
    // their OFFERS event: what a resuming scheduler may know of.
    std::deque<std::pair<OfferId, uint64_t>> sent_offers;
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
    // H3: dynamic reservations (entries carry their role); also part of `total`.
    Resources reserved;
    // Lifecycle (H4).
    absl::Time unreachable_time;
    std::optional<v1::DrainInfo> drain;  // Set from DRAIN until REACTIVATE.
    bool deactivated = false;
    // Admitted before a master restart and loaded from the registry (H1 sets it), not back yet:
    // explicit reconciliation of its tasks waits (SCENARIOS M7). Cleared when it reregisters or
    // is marked unreachable.
    bool recovering = false;
  };

  // Scheduler side.
  absl::StatusOr<Framework*> FindCaller(const v1::CallHeader& header);
  // Returns the event's sequence number, or 0 if the framework is disconnected (dropped).
  uint64_t SendEvent(Framework& framework, v1::Event event);
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
  // After a recovery: the agents of the registry that have not reregistered are marked
  // unreachable (rate-limited), unless they are too many (recovery_agent_removal_limit).
  void EndRecovery();
  void RemoveQueuedAgents();
  size_t recovered_agents_ = 0;
  std::deque<AgentId> removal_queue_;
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
  bool stepped_down_ = false;
  bool publish_pending_ = false;
  std::optional<TimerId> allocation_timer_;
  std::optional<TimerId> ping_timer_;
  std::optional<TimerId> heartbeat_timer_;

  // --- Agent lifecycle, operator actions, maintenance (H4) ---
  absl::StatusOr<Agent*> FindAgentForAction(const std::string& agent_id);
  // What each operator action requires of the state as it is now (checked before the action is
  // stored and again before it is applied).
  absl::StatusOr<Agent*> CheckDrain(const v1::DrainAgentRequest& request);
  absl::StatusOr<Agent*> CheckDeactivate(const v1::DeactivateAgentRequest& request);
  absl::StatusOr<Agent*> CheckReactivate(const v1::ReactivateAgentRequest& request);
  // The normalized schedule (hostnames lower case).
  absl::StatusOr<v1::MaintenanceSchedule> CheckMaintenanceSchedule(
      const v1::UpdateMaintenanceScheduleRequest& request) const;
  // The machines that go DOWN, normalized.
  absl::StatusOr<std::vector<v1::MachineId>> CheckStartMaintenance(
      const v1::StartMaintenanceRequest& request) const;
  // The schedule without the machines that come UP, and their keys.
  absl::StatusOr<
      std::pair<v1::MaintenanceSchedule, absl::btree_set<std::pair<std::string, std::string>>>>
  CheckStopMaintenance(const v1::StopMaintenanceRequest& request) const;
  // Offers from `agent` follow its state: none while draining, deactivated or on a DOWN machine.
  void UpdateAgentActive(Agent& agent);
  void KillForDrain(Agent& agent);
  // DRAINING → DRAINED once no task is left (then GONE with mark_gone).
  void CheckDrained(Agent& agent);
  // Removes the agent for good (`gone` true: refused if it returns) or until its machine comes UP.
  void RemoveAgentByOperator(const AgentId& id, const std::string& why, bool gone);
  void PruneUnreachableAgents();
  bool AgentRefused(const v1::AgentInfo& info, std::string* why) const;
  std::optional<v1::Unavailability> UnavailabilityOf(const v1::AgentInfo& info) const;
  // Sends inverse offers to frameworks with tasks on agents with a maintenance window and
  // rescinds those that no longer apply.
  void UpdateInverseOffers();
  absl::Status AnswerInverseOffers(const v1::InverseOffersResponse& request, bool accept);
  // Status (UNREACHABLE), drain, deactivated, unreachable_time, unavailability of `agent`; and
  // the State-level gone agents and maintenance schedule and status.
  void FillAgentLifecycle(const Agent& agent, v1::AgentState* out) const;
  void FillLifecycleState(v1::State* state) const;
  // Reconciliation of a task the master does not know.
  void ReconcileUnknownTask(Framework& framework, const std::string& task_id,
                            const std::string& agent_id);
  // Answers reconciliation held for an agent recovered from the registry (SCENARIOS M7) once it
  // returns or is marked unreachable.
  void AnswerPendingReconciliation(const AgentId& agent);

  absl::btree_map<AgentId, v1::AgentState> gone_agents_;
  std::deque<AgentId> gone_order_;  // Oldest first, bounded by max_gone_agents.
  v1::MaintenanceSchedule maintenance_;
  absl::btree_set<std::pair<std::string, std::string>> down_machines_;  // (hostname, ip)
  struct InverseOffer {
    v1::InverseOffer proto;
    FrameworkId framework;
    AgentId agent;
  };
  absl::btree_map<std::string, InverseOffer> inverse_offers_;
  // Latest inverse offer status per (agent, framework) on scheduled machines.
  absl::btree_map<std::pair<AgentId, FrameworkId>, v1::InverseOfferStatus> inverse_statuses_;
  // Explicit reconciliation held for recovering agents: (framework, task id) by agent.
  absl::btree_map<AgentId, std::vector<std::pair<FrameworkId, std::string>>> pending_reconcile_;

  // --- Scheduler API and reservations (H3) ---
  // Why an offer that no longer exists ended, for ACCEPTs that name it late.
  struct RemovedOffer {
    FrameworkId framework;
    std::string why;                // "was rescinded", "was declined", ...
    bool by_scheduler = false;      // Accepted or declined: the scheduler knows it ended.
    uint64_t rescind_sequence = 0;  // The RESCIND event that told the scheduler; 0 if none.
  };
  // Records why `id` ended (the first reason recorded wins).
  void NoteRemovedOffer(const OfferId& id, std::string why, bool by_scheduler = false);
  // The agent an operator reservation names: NotFound, or FailedPrecondition if disconnected.
  absl::StatusOr<Agent*> FindConnectedAgent(const std::string& agent_id);
  // Whether `needed` is free on `agent`, after rescinding its offers if it was not.
  bool FreeUpOnAgent(Agent& agent, const Resources& needed);
  // Whether `needed` is free on `agent` or would be once its offers were taken back.
  bool CanFreeUpOnAgent(const Agent& agent, const Resources& needed) const;
  // Operator RESERVE / UNRESERVE: checked; the reservations of the agent they lead to.
  absl::StatusOr<std::pair<Agent*, Resources>> CheckReserve(
      const v1::ReserveResourcesRequest& request);
  absl::StatusOr<std::pair<Agent*, Resources>> CheckUnreserve(
      const v1::UnreserveResourcesRequest& request);
  // The agent's record with the reservations CheckReserve/CheckUnreserve lead to.
  absl::StatusOr<RegistryBatch> FutureReservations(
      const absl::StatusOr<std::pair<Agent*, Resources>>& checked) const;
  // Validates the offers of an ACCEPT as a set; returns the problem, or "" when `mine` holds a
  // valid combination (one agent, one role, all of the caller's, all current).
  std::string CheckAcceptOffers(const Framework& framework, const v1::AcceptRequest& request,
                                std::vector<OfferId>& mine);
  // An ACCEPT whose offers are valid and taken, waiting to be applied.
  struct AcceptedOffers {
    FrameworkId framework;
    AgentId agent;
    std::string role;
    Resources available;        // What the offers held.
    Resources reserved;         // The agent's reservations once the ACCEPT is applied.
    bool reservations = false;  // It RESERVEs or UNRESERVEs.
  };
  // Checks an ACCEPT and takes its offers; nullopt when it was invalid as a whole (its tasks
  // dropped, its offers returned), an error when the call itself is refused.
  absl::StatusOr<std::optional<AcceptedOffers>> TakeAcceptedOffers(
      const v1::AcceptRequest& request);
  // Runs the operations of a taken ACCEPT in order and returns what is left to the allocator.
  void ApplyAccept(const v1::AcceptRequest& request, AcceptedOffers accepted);
  // TASK_DROPPED with `reason` for every task of the ACCEPT.
  void DropAcceptedTasks(Framework& framework, const v1::AcceptRequest& request,
                         v1::TaskStatus::Reason reason, const std::string& why);
  // RESERVE or UNRESERVE of an ACCEPT on `available`; `apply` false only checks.
  absl::Status ApplyReservation(Framework& framework, Agent& agent, const std::string& role,
                                const v1::Operation& op, Resources& available, Resources& reserved,
                                bool apply);
  // Replays what a scheduler resuming after `last_sequence` missed (see SubscribeRequest).
  void ReplayMissed(Framework& framework, uint64_t last_sequence);
  // Agent total as the allocator sees it: `total` with `reserved` carved out of it; drops the
  // reservations (and logs) if the agent no longer has the resources.
  Resources WithReservations(Agent& agent, const Resources& total);
  absl::flat_hash_map<OfferId, RemovedOffer> removed_offers_;
  std::deque<OfferId> removed_order_;

  // --- Snapshot (H2) ---------------------------------------------------------------------------
  // Dirty tracking for publication (see snapshot.h and src/master/README.md "Snapshots"): call
  // after changing what the entity shows in the operator API, including its creation and
  // removal. Each is a set insertion plus PublishSoon(). A task's change also refreshes the
  // used sums and task counts of its agent and framework; an offer's, their offered sums.
  void TaskChanged(const TaskKey& key);
  void AgentChanged(const AgentId& id);
  void FrameworkChanged(const FrameworkId& id);
  void OfferChanged(const OfferId& id);
  // completed_tasks_ or completed_frameworks_ changed.
  void HistoryChanged();
  // Rebuilds every view at the next publication (for changes too broad to list).
  void MarkAllDirty();
  // What the operator API shows of one agent or framework. used, offered and task_count are
  // set by the caller; add new fields here.
  void FillAgentState(const Agent& agent, v1::AgentState* out) const;
  void FillFrameworkState(const Framework& framework, v1::FrameworkState* out) const;
  // The bounded parts of v1::State without views of their own (gone agents, maintenance, ...).
  void FillStateExtras(v1::State* out) const;
  SnapshotBuilder builder_;
  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const MasterSnapshot> state_ ABSL_GUARDED_BY(snapshot_mu_);

  // --- Metrics and operator events (H5): operator_events.cc ---
 public:
  // An operator opened event stream `stream`: SUBSCRIBED with the current state, then every
  // change (operator_events.h). RESOURCE_EXHAUSTED closes it when the subscriber limit is hit.
  void SubscribeOperatorEvents(const StreamId& stream, OperatorEventOutbox outbox);
  // Ends every operator event stream with `status` (the master is stopping).
  void CloseOperatorEventStreams(const absl::Status& status);
  void OperatorEventStreamClosed(const StreamId& stream);
  // Thread-safe: the loop and transport adapters update it, readers render it.
  MasterMetrics& metrics() { return metrics_; }
  const MasterMetrics& metrics() const { return metrics_; }
  size_t max_queued_operator_events() const { return options_.max_queued_operator_events; }

 private:
  void OnSnapshotDelta(const SnapshotDelta& delta);
  MasterMetrics metrics_;
  std::unique_ptr<OperatorEvents> operator_events_;  // Created by the first subscriber.

  // --- Registry (H1): master_registry.cc (see /tmp/rz5/registry_api.md) ---
  // The records of an agent and a framework as they are now.
  v1::RegistryAgent AgentRecord(const Agent& agent) const;
  v1::RegistryFramework FrameworkRecord(const Framework& framework) const;
  // Fire-and-forget unless `done` is given: a failure is logged (the change it records was
  // already applied: a disconnect, a timer).
  void WriteRegistry(RegistryBatch batch, Registry::Done done = nullptr);
  void PersistAgent(const Agent& agent, Registry::Done done = nullptr);
  void PersistFramework(const Framework& framework, Registry::Done done = nullptr);
  void PersistGoneAgent(const AgentId& id, const v1::AgentInfo& info, absl::Time gone_time,
                        Registry::Done done = nullptr);
  // Deletes the agent's record (a forgotten unreachable or gone agent).
  void UnpersistAgent(const AgentId& id);
  void PersistMaintenance(Registry::Done done = nullptr);
  v1::RegistryAgent GoneAgentRecord(const AgentId& id, const v1::AgentInfo& info,
                                    absl::Time gone_time) const;
  static v1::RegistryMaintenance MaintenanceRecord(
      const v1::MaintenanceSchedule& schedule,
      const absl::btree_set<std::pair<std::string, std::string>>& down);
  RegistryBatch MaintenanceBatch() const;
  // An operator action (DESIGN.md §6): stores `future` (the records the action leads to, or the
  // reason it is refused), then runs `apply` (which checks the action again and applies it),
  // stores `current()` (the records as they are then) and completes `done` with what `apply`
  // returned. A failed first write completes `done` with its error and applies nothing.
  void StoreThenApply(absl::StatusOr<RegistryBatch> future,
                      absl::AnyInvocable<absl::Status() &&> apply,
                      absl::AnyInvocable<RegistryBatch() &&> current, Completion done);
  // The same for an action on one agent: `current` is the agent's record.
  void StoreThenApplyToAgent(const std::string& agent_id, absl::StatusOr<RegistryBatch> future,
                             absl::AnyInvocable<absl::Status() &&> apply, Completion done);
  // The agent's record after `change`, or the reason `agent` is an error.
  absl::StatusOr<RegistryBatch> FutureAgentRecord(
      absl::StatusOr<Agent*> agent, absl::FunctionRef<void(v1::RegistryAgent&)> change) const;
  // Subscribe() calls this once the subscription is valid, before changing anything: true if
  // this subscription's record is stored and Subscribe may go on; false if it started storing
  // it (Subscribe runs again, for the same stream, once it is durable) or queued it behind
  // another write of the same framework.
  bool FrameworkStored(const v1::SubscribeRequest& request, const StreamId& stream,
                       const EventOutbox& outbox);
  // The same for RegisterAgent() (REGISTERED is sent only once the agent's record is stored).
  bool AgentStored(const StreamId& link, const v1::AgentMessage::Register& reg,
                   const AgentOutbox& outbox);
  // Validation of UpdateWeights/UpdateQuota, before anything is stored.
  absl::Status CheckWeights(const v1::UpdateWeightsRequest& request) const;
  absl::StatusOr<std::vector<std::pair<std::string, allocator::Quota>>> CheckQuota(
      const v1::UpdateQuotaRequest& request) const;

  Registry& registry_;
  // Frameworks with a subscription being stored, and the calls waiting for it.
  absl::flat_hash_map<FrameworkId, std::deque<EventLoop::Task>> framework_writes_;
  // Streams (schedulers) and links (agents) whose record is being stored → closed meanwhile.
  absl::flat_hash_map<StreamId, bool> subscribing_streams_;
  absl::flat_hash_map<StreamId, bool> admitting_links_;
  // Set while Subscribe/RegisterAgent run again after their record was stored.
  std::optional<StreamId> stored_subscription_;
  std::optional<StreamId> stored_registration_;
  bool registering_new_agent_ = false;
};

}  // namespace rz::master
