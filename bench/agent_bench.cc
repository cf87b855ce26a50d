// The agent's container launch path on this machine (`bench/run.sh agent`). One Agent runs in
// this process, wired as AgentDaemon wires it (ThreadEventLoop, WorkerPool(4), a synced
// CheckpointStore, LinuxContainerizer with the host's cgroups and rz-containerizer-init), but
// talking to a fake master connection that timestamps every status update and acknowledges it
// at once, as the master does once the framework acknowledges.
//
//   latency:    one `true` task at a time: RUN_TASK posted to the agent's loop → TASK_RUNNING
//               sent by the agent (TASK_FINISHED is awaited before the next task)
//   throughput: `true` tasks posted back to back; launches/s up to the last TASK_RUNNING
//   breakdown:  the steps of one launch timed one by one outside the agent (checkpoint write,
//               sandbox, cgroup create/apply, LinuxContainerizer::Launch, exit handling)
//   rss:        VmRSS of this process (the agent) with `sleep 600` containers running
//
// Needs root: cgroups, and tasks run as "nobody". Without cgroups it runs with no isolation and
// says that its figures are not the cgroups figures. Prints a table, then RESULT lines (see
// bench/README.md). Everything it makes (containers, cgroups, the temp work dir) is removed.
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/checkpoint_store.h"
#include "agent/containerizer/cgroup_fs.h"
#include "agent/containerizer/cgroups.h"
#include "agent/containerizer/linux_containerizer.h"
#include "agent/master_connection.h"
#include "agent/sandbox.h"
#include "agent/state_snapshot.h"
#include "common/logging.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "common/thread_event_loop.h"
#include "common/version.h"
#include "common/worker_pool.h"

ABSL_FLAG(std::string, containerizer_init, "",
          "The rz-containerizer-init binary; empty = "
          "<dir of this binary>/../src/agent/containerizer/rz-containerizer-init.");
ABSL_FLAG(std::string, work_root, "/tmp", "Where the temporary work dir is made.");
ABSL_FLAG(std::string, isolation, "cgroups",
          "cgroups (falls back to none, loudly, when cgroups cannot be used) or none.");
ABSL_FLAG(int, latency_tasks, 200, "Tasks launched one at a time.");
ABSL_FLAG(int, throughput_tasks, 500, "Tasks posted back to back.");
ABSL_FLAG(int, breakdown_launches, 50, "Launches timed step by step outside the agent; 0 = skip.");
ABSL_FLAG(int, rss_tasks, 200, "`sleep 600` containers running when RSS is read.");

namespace rz::agent {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;

SteadyTime SteadyNow() { return std::chrono::steady_clock::now(); }

double MillisBetween(SteadyTime from, SteadyTime to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

constexpr char kFrameworkId[] = "agent-bench";
constexpr char kTaskResources[] = "cpus:0.1;mem:32";
constexpr char kTaskUser[] = "nobody";
constexpr absl::Duration kPerTaskTimeout = absl::Seconds(10);
constexpr absl::Duration kPhaseTimeout = absl::Seconds(180);
// Pause before each cgroup step of the breakdown so it does not ride on the previous one.
constexpr absl::Duration kIdleGap = absl::Milliseconds(50);

// Nearest rank on the sorted samples; 0 when there are none.
double Percentile(std::vector<double> samples, double p) {
  if (samples.empty()) {
    return 0;
  }
  std::sort(samples.begin(), samples.end());
  return samples[static_cast<size_t>(p * static_cast<double>(samples.size() - 1))];
}

// What the fake master saw of one task.
struct TaskTimes {
  std::optional<SteadyTime> starting;
  std::optional<SteadyTime> running;
  std::optional<SteadyTime> terminal;
};

// Stands in for the master: records every status update and posts the acknowledgement of its
// uuid straight back to the agent's loop.
//
// Thread rule: Send() runs on the agent's loop; the Await/Times readers on the bench thread.
class FakeMaster final : public MasterConnection {
 public:
  explicit FakeMaster(EventLoop& loop) : loop_(loop) {}

  // REQUIRES: called before the agent sends anything.
  void set_agent(Agent* agent) { agent_ = agent; }

  void Send(v1::AgentMessage message) override {
    if (!message.has_status_update()) {
      return;  // Register, pongs, usage: nothing to time.
    }
    const SteadyTime now = SteadyNow();
    const v1::TaskStatus& status = message.status_update().status();
    {
      absl::MutexLock lock(&mu_);
      TaskTimes& times = tasks_[status.task_id()];
      if (status.state() == v1::TASK_STARTING && !times.starting.has_value()) {
        times.starting = now;
      }
      if (status.state() == v1::TASK_RUNNING && !times.running.has_value()) {
        times.running = now;
        ++running_;
      }
      if (IsTerminal(status.state()) && !times.terminal.has_value()) {
        times.terminal = now;
        ++terminal_;
        if (status.state() != v1::TASK_FINISHED && first_failure_.empty()) {
          first_failure_ = absl::StrCat("task '", status.task_id(), "' ended ",
                                        v1::TaskState_Name(status.state()), ": ", status.message());
        }
      }
    }
    if (status.uuid().empty()) {
      return;
    }
    v1::MasterMessage ack;
    ack.mutable_acknowledge()->set_framework_id(status.framework_id());
    ack.mutable_acknowledge()->set_task_id(status.task_id());
    ack.mutable_acknowledge()->set_uuid(status.uuid());
    loop_.Post([agent = agent_, ack = std::move(ack)] { agent->OnMasterMessage(ack); });
  }

  // Blocks until at least `running` tasks were reported RUNNING and `terminal` ended, counted
  // since the start. Returns DeadlineExceeded after `timeout`, and, if `stop_on_failure`,
  // Internal naming the first task that ended other than FINISHED.
  absl::Status Await(int running, int terminal, bool stop_on_failure, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return (running_ >= running && terminal_ >= terminal) ||
             (stop_on_failure && !first_failure_.empty());
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("after ", absl::FormatDuration(timeout), " ", running_, " tasks ran and ",
                       terminal_, " ended; waited for ", running, " and ", terminal));
    }
    if (stop_on_failure && !first_failure_.empty()) {
      return absl::InternalError(first_failure_);
    }
    return absl::OkStatus();
  }

  TaskTimes Times(const std::string& task_id) {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(task_id);
    return it == tasks_.end() ? TaskTimes{} : it->second;
  }

  int running() {
    absl::MutexLock lock(&mu_);
    return running_;
  }
  int terminal() {
    absl::MutexLock lock(&mu_);
    return terminal_;
  }

 private:
  EventLoop& loop_;
  Agent* agent_ = nullptr;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, TaskTimes> tasks_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int terminal_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_failure_ ABSL_GUARDED_BY(mu_);
};

// The temp work dir and the containers' parent cgroup. Destroyed last: removes both, killing
// whatever an aborted run left in the cgroup.
class Scratch {
 public:
  Scratch(std::string dir, std::string cgroup_parent)
      : dir_(std::move(dir)), cgroup_parent_(std::move(cgroup_parent)) {}
  ~Scratch() {
    if (uses_cgroups_) {
      RealCgroupFs fs;
      absl::StatusOr<std::unique_ptr<Cgroups>> cgroups = Cgroups::DetectHost(fs, "");
      absl::Status status = cgroups.ok() ? (*cgroups)->Destroy(cgroup_parent_) : cgroups.status();
      if (!status.ok()) {
        std::fprintf(stderr, "cannot remove cgroup %s: %s\n", cgroup_parent_.c_str(),
                     std::string(status.message()).c_str());
      }
    }
    std::error_code error;
    std::filesystem::remove_all(dir_, error);
    if (error) {
      std::fprintf(stderr, "cannot remove %s: %s\n", dir_.c_str(), error.message().c_str());
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  void set_uses_cgroups() { uses_cgroups_ = true; }
  const std::string& dir() const { return dir_; }
  const std::string& cgroup_parent() const { return cgroup_parent_; }

 private:
  const std::string dir_;
  const std::string cgroup_parent_;
  bool uses_cgroups_ = false;
};

// The agent and everything it runs on. The destructor stops the loop, drains the workers and
// destroys every container.
class AgentUnderTest {
 public:
  AgentUnderTest() = default;
  ~AgentUnderTest() {
    loop.Stop();
    pool.reset();  // Runs launches still queued; their containers die just below.
    if (containerizer != nullptr) {
      containerizer->DestroyAll(absl::Seconds(30));
    }
  }
  AgentUnderTest(const AgentUnderTest&) = delete;
  AgentUnderTest& operator=(const AgentUnderTest&) = delete;

  ThreadEventLoop loop;
  StateSnapshot snapshot;
  std::unique_ptr<CheckpointStore> store;
  std::unique_ptr<LinuxContainerizer> containerizer;
  // A second view of the same cgroups, for the breakdown phase; null without cgroups.
  std::unique_ptr<Cgroups> probe_cgroups;
  std::unique_ptr<FakeMaster> master;
  std::unique_ptr<Agent> agent;
  std::unique_ptr<WorkerPool> pool = std::make_unique<WorkerPool>(4);
};

absl::StatusOr<std::string> InitPath() {
  std::string path = absl::GetFlag(FLAGS_containerizer_init);
  if (path.empty()) {
    std::error_code error;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
    if (error) {
      return absl::InternalError(absl::StrCat("reading /proc/self/exe: ", error.message()));
    }
    path = (exe.parent_path() / ".." / "src" / "agent" / "containerizer" / "rz-containerizer-init")
               .lexically_normal()
               .string();
  }
  if (::access(path.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "--containerizer_init: '", path, "' is not an executable (build rz-containerizer-init)"));
  }
  return path;
}

// The "VmRSS:" line of /proc/self/status, in MiB.
absl::StatusOr<double> ResidentMegabytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    long kb = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %ld kB", &kb) == 1) {
      return static_cast<double>(kb) / 1024.0;
    }
  }
  return absl::InternalError("no VmRSS line in /proc/self/status");
}

std::string CurrentUser() {
  if (const struct passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) {
    return pw->pw_name;
  }
  return absl::StrCat(::geteuid());
}

v1::FrameworkInfo Framework() {
  v1::FrameworkInfo framework;
  framework.set_id(kFrameworkId);
  framework.set_name("agent-bench");
  return framework;  // No user: tasks run as the agent's default task user.
}

v1::MasterMessage RunTask(const std::string& task_id, const std::vector<std::string>& argv) {
  v1::MasterMessage message;
  *message.mutable_run_task()->mutable_framework() = Framework();
  v1::TaskInfo* task = message.mutable_run_task()->mutable_task();
  task->set_task_id(task_id);
  task->set_name(task_id);
  task->mutable_command()->set_shell(false);
  task->mutable_command()->set_value(argv.front());
  for (const std::string& arg : argv) {
    task->mutable_command()->add_arguments(arg);
  }
  ToProto(*Resources::Parse(kTaskResources), task->mutable_resources());
  return message;
}

// Hands `message` to the agent's loop, as the master link does; returns the time just before.
SteadyTime Deliver(AgentUnderTest& bench, v1::MasterMessage message) {
  const SteadyTime posted = SteadyNow();
  bench.loop.Post([agent = bench.agent.get(), message = std::move(message)] {
    agent->OnMasterMessage(message);
  });
  return posted;
}

// Builds the agent in `scratch`, recovers it fresh and registers it with the fake master.
// Returns the isolation in use ("none" or the cgroups description).
absl::StatusOr<std::string> StartAgent(Scratch& scratch, AgentUnderTest& bench,
                                       RealCgroupFs& cgroup_fs) {
  const bool root = ::geteuid() == 0;
  absl::StatusOr<std::string> init_path = InitPath();
  if (!init_path.ok()) {
    return init_path.status();
  }
  absl::StatusOr<std::unique_ptr<CheckpointStore>> store =
      CheckpointStore::Open(absl::StrCat(scratch.dir(), "/meta"), {.sync = true});
  if (!store.ok()) {
    return store.status();
  }
  bench.store = *std::move(store);

  std::unique_ptr<Cgroups> cgroups;
  const std::string isolation = absl::GetFlag(FLAGS_isolation);
  if (isolation != "cgroups" && isolation != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--isolation: '", isolation, "' is not one of cgroups, none"));
  }
  if (isolation == "cgroups") {
    absl::StatusOr<std::unique_ptr<Cgroups>> detected =
        root ? Cgroups::DetectHost(cgroup_fs, "")
             : absl::FailedPreconditionError("cgroups need root");
    absl::StatusOr<std::unique_ptr<Cgroups>> probe =
        root ? Cgroups::DetectHost(cgroup_fs, "")
             : absl::FailedPreconditionError("cgroups need root");
    if (detected.ok() && probe.ok()) {
      cgroups = *std::move(detected);
      bench.probe_cgroups = *std::move(probe);
      scratch.set_uses_cgroups();
    } else {
      std::printf(
          "\n*** WARNING: cgroups are unavailable (%s).\n"
          "*** Running with isolation none: these are NOT the cgroups figures.\n\n",
          std::string(detected.ok() ? probe.status().message() : detected.status().message())
              .c_str());
    }
  }
  const std::string description = cgroups ? cgroups->Describe() : "none";

  const char* path = std::getenv("PATH");
  bench.containerizer = std::make_unique<LinuxContainerizer>(
      LinuxContainerizer::Options{
          .init_path = *init_path,
          .runtime_root = absl::StrCat(scratch.dir(), "/containers"),
          .cgroup_parent = scratch.cgroup_parent(),
          .path = path != nullptr && *path != '\0'
                      ? path
                      : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          .log_max_bytes = 10 << 20,
          .log_max_files = 5,
          .boot_id = LinuxContainerizer::HostBootId()},
      std::move(cgroups));

  bench.master = std::make_unique<FakeMaster>(bench.loop);
  CheckpointStore* store_ptr = bench.store.get();
  WorkerPool* pool = bench.pool.get();
  bench.agent = std::make_unique<Agent>(
      AgentOptions{.hostname = "agent-bench",
                   .master_address = "fake",
                   .work_dir = scratch.dir(),
                   .resources = *Resources::Parse("cpus:64;mem:262144"),
                   .version = kVersion,
                   .agent_user = CurrentUser(),
                   .can_switch_user = root,
                   .default_task_user = kTaskUser},
      bench.loop, *bench.containerizer,
      [pool](absl::AnyInvocable<void() &&> task) { pool->Submit(std::move(task)); },
      [store_ptr](CheckpointBatch batch, absl::AnyInvocable<void(absl::Status) &&> done) {
        store_ptr->Write(std::move(batch), std::move(done));
      },
      *bench.master, bench.snapshot);
  bench.master->set_agent(bench.agent.get());
  bench.loop.Start();

  v1::MasterMessage registered;
  registered.mutable_registered()->set_agent_id("bench-agent-1");
  absl::Notification ready;
  bool is_registered = false;
  bench.loop.Post([&] {
    bench.agent->Start();
    bench.agent->StartFresh();
    bench.agent->OnMasterConnected();
    bench.agent->OnMasterMessage(registered);
    is_registered = bench.agent->registered();
    ready.Notify();
  });
  ready.WaitForNotification();
  if (!is_registered) {
    return absl::InternalError("the agent did not accept its registration");
  }
  return description;
}

struct LatencyFigures {
  std::vector<double> to_starting_ms;
  std::vector<double> to_running_ms;
  std::vector<double> to_finished_ms;
};

absl::StatusOr<LatencyFigures> MeasureLatency(AgentUnderTest& bench, FakeMaster& master, int n) {
  LatencyFigures figures;
  for (int i = 0; i < n; ++i) {
    const std::string id = absl::StrCat("lat-", i);
    v1::MasterMessage message = RunTask(id, {"true"});
    const int running = master.running();
    const int terminal = master.terminal();
    const SteadyTime posted = Deliver(bench, std::move(message));
    if (absl::Status status = master.Await(running + 1, terminal + 1, true, kPerTaskTimeout);
        !status.ok()) {
      return absl::Status(status.code(), absl::StrCat("latency task ", id, ": ", status.message()));
    }
    const TaskTimes times = master.Times(id);
    figures.to_starting_ms.push_back(MillisBetween(posted, *times.starting));
    figures.to_running_ms.push_back(MillisBetween(posted, *times.running));
    figures.to_finished_ms.push_back(MillisBetween(posted, *times.terminal));
  }
  return figures;
}

struct ThroughputFigures {
  double to_last_running_s = 0;
  double to_last_finished_s = 0;
  // CPU time per task until all ended: this process (agent) and its reaped children (inits and
  // tasks).
  double agent_cpu_ms_per_task = 0;
  double children_cpu_ms_per_task = 0;
};

// User + system CPU milliseconds of `who` (RUSAGE_SELF or RUSAGE_CHILDREN).
double CpuMillis(int who) {
  struct rusage usage {};
  ::getrusage(who, &usage);
  auto ms = [](const timeval& t) { return t.tv_sec * 1e3 + t.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

// The first three fields of /proc/loadavg.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return absl::StrCat(one, " ", five, " ", fifteen);
}

absl::StatusOr<ThroughputFigures> MeasureThroughput(AgentUnderTest& bench, FakeMaster& master,
                                                    int n) {
  std::vector<v1::MasterMessage> messages;
  for (int i = 0; i < n; ++i) {
    messages.push_back(RunTask(absl::StrCat("tp-", i), {"true"}));
  }
  const int running = master.running();
  const int terminal = master.terminal();
  const double self_cpu = CpuMillis(RUSAGE_SELF);
  const double children_cpu = CpuMillis(RUSAGE_CHILDREN);
  std::optional<SteadyTime> first;
  for (v1::MasterMessage& message : messages) {
    const SteadyTime posted = Deliver(bench, std::move(message));
    if (!first.has_value()) {
      first = posted;
    }
  }
  if (absl::Status status = master.Await(running + n, terminal + n, true, kPhaseTimeout);
      !status.ok()) {
    return absl::Status(status.code(), absl::StrCat("throughput: ", status.message()));
  }
  SteadyTime last_running = *first;
  SteadyTime last_finished = *first;
  for (int i = 0; i < n; ++i) {
    const TaskTimes times = master.Times(absl::StrCat("tp-", i));
    last_running = std::max(last_running, *times.running);
    last_finished = std::max(last_finished, *times.terminal);
  }
  return ThroughputFigures{
      .to_last_running_s = MillisBetween(*first, last_running) / 1000.0,
      .to_last_finished_s = MillisBetween(*first, last_finished) / 1000.0,
      .agent_cpu_ms_per_task = (CpuMillis(RUSAGE_SELF) - self_cpu) / n,
      .children_cpu_ms_per_task = (CpuMillis(RUSAGE_CHILDREN) - children_cpu) / n};
}

// Milliseconds per step of one launch, each step timed on its own outside the agent.
struct Breakdown {
  std::vector<double> checkpoint_write;  // A PutTask + AppendUpdate batch until durable.
  std::vector<double> sandbox;           // getpwnam, CreateSandbox, chown.
  std::vector<double> cgroup_create;     // Cgroups::Create + Apply (cpu shares, memory limit).
  std::vector<double> cgroup_destroy;    // Cgroups::Destroy of an empty cgroup.
  std::vector<double> spawn;             // posix_spawn of /bin/sleep (returns after its exec).
  std::vector<double> cgroup_place;      // Cgroups::Place: a pid into every hierarchy.
  std::vector<double> launch;            // LinuxContainerizer::Launch (includes cgroup create).
  std::vector<double> exit;              // Launch returned → exit callback (`true` ran, cleanup).
};

// Starts `sleep 60` as a stand-in for a container's init, timing posix_spawn.
absl::StatusOr<pid_t> SpawnSleeper(Breakdown& breakdown) {
  char sleep_path[] = "/bin/sleep";
  char seconds[] = "60";
  char* argv[] = {sleep_path, seconds, nullptr};
  char* envp[] = {nullptr};
  pid_t pid = 0;
  const SteadyTime start = SteadyNow();
  const int rc = ::posix_spawn(&pid, sleep_path, nullptr, nullptr, argv, envp);
  breakdown.spawn.push_back(MillisBetween(start, SteadyNow()));
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("posix_spawn /bin/sleep: ", std::strerror(rc)));
  }
  return pid;
}

absl::StatusOr<Breakdown> MeasureBreakdown(const Scratch& scratch, AgentUnderTest& bench, int n) {
  Breakdown breakdown;
  const bool root = ::geteuid() == 0;
  const FrameworkId framework(kFrameworkId);
  for (int i = 0; i < n; ++i) {
    const TaskId task(absl::StrCat("probe-", i));

    // The checkpoint write each status update waits for.
    CheckpointBatch batch;
    v1::TaskCheckpoint checkpoint;
    checkpoint.mutable_task()->set_framework_id(framework.value());
    checkpoint.mutable_task()->set_task_id(task.value());
    checkpoint.mutable_task()->set_state(v1::TASK_STARTING);
    *checkpoint.mutable_info() = RunTask(task.value(), {"true"}).run_task().task();
    v1::TaskStatus status;
    status.set_framework_id(framework.value());
    status.set_task_id(task.value());
    status.set_state(v1::TASK_STARTING);
    status.set_uuid("0123456789abcdef");
    batch.PutTask(checkpoint);
    batch.AppendUpdate(framework, task, 1, status);
    absl::Notification durable;
    absl::Status write_status;
    SteadyTime start = SteadyNow();
    bench.store->Write(std::move(batch), [&](absl::Status s) {
      write_status = std::move(s);
      durable.Notify();
    });
    durable.WaitForNotification();
    breakdown.checkpoint_write.push_back(MillisBetween(start, SteadyNow()));
    if (!write_status.ok()) {
      return write_status;
    }
    CheckpointBatch forget;
    forget.DeleteTask(framework, task);
    absl::Notification forgotten;
    bench.store->Write(std::move(forget), [&](absl::Status) { forgotten.Notify(); });
    forgotten.WaitForNotification();

    // The sandbox, owned by the task's user.
    const std::string sandbox = SandboxDir(scratch.dir(), framework, task);
    start = SteadyNow();
    std::optional<std::pair<uid_t, gid_t>> owner;
    if (root) {
      struct passwd entry;
      struct passwd* found = nullptr;
      std::vector<char> buffer(16384);
      if (::getpwnam_r(kTaskUser, &entry, buffer.data(), buffer.size(), &found) != 0 ||
          found == nullptr) {
        return absl::NotFoundError(absl::StrCat("unknown user '", kTaskUser, "'"));
      }
      owner = std::make_pair(entry.pw_uid, entry.pw_gid);
    }
    if (absl::Status created = CreateSandbox(sandbox); !created.ok()) {
      return created;
    }
    if (owner && ::chown(sandbox.c_str(), owner->first, owner->second) != 0) {
      return absl::InternalError(absl::StrCat("chown ", sandbox, ": ", std::strerror(errno)));
    }
    breakdown.sandbox.push_back(MillisBetween(start, SteadyNow()));

    // A cgroup like a container's, made and removed on its own. Each cgroup step starts after an
    // idle gap: a v1 cgroup.procs write right after another one is much cheaper than the first
    // (the kernel's threadgroup rwsem stays in its slow-reader mode for a grace period), and
    // the agent's sequential launches are that far apart.
    if (bench.probe_cgroups != nullptr) {
      absl::SleepFor(kIdleGap);
      const std::string name = absl::StrCat(scratch.cgroup_parent(), "/probe-cgroup-", i);
      start = SteadyNow();
      if (absl::Status created = bench.probe_cgroups->Create(name); !created.ok()) {
        return created;
      }
      if (absl::Status applied = bench.probe_cgroups->Apply(
              name, CgroupLimits{.cpu_shares_cpus = 0.1, .memory_limit_bytes = 32 << 20});
          !applied.ok()) {
        return applied;
      }
      breakdown.cgroup_create.push_back(MillisBetween(start, SteadyNow()));
      absl::StatusOr<pid_t> sleeper = SpawnSleeper(breakdown);
      if (!sleeper.ok()) {
        return sleeper.status();
      }
      absl::SleepFor(kIdleGap);
      start = SteadyNow();
      absl::Status placed = bench.probe_cgroups->Place(name, *sleeper);
      breakdown.cgroup_place.push_back(MillisBetween(start, SteadyNow()));
      ::kill(*sleeper, SIGKILL);
      int ignored = 0;
      ::waitpid(*sleeper, &ignored, 0);
      if (!placed.ok()) {
        return placed;
      }
      start = SteadyNow();
      if (absl::Status destroyed = bench.probe_cgroups->Destroy(name); !destroyed.ok()) {
        return destroyed;
      }
      breakdown.cgroup_destroy.push_back(MillisBetween(start, SteadyNow()));
    }

    // The containerizer's whole launch, then the exit of `true`.
    v1::CommandInfo command;
    command.set_shell(false);
    command.set_value("true");
    command.add_arguments("true");
    const ContainerSpec spec{.container_id = absl::StrCat("probe-container-", i),
                             .framework_id = framework,
                             .task_id = task,
                             .agent_id = AgentId("bench-agent-1"),
                             .command = command,
                             .sandbox = sandbox,
                             .user = root ? kTaskUser : "",
                             .cpus = 0.1,
                             .mem_mb = 32};
    // Shared: after a timeout the callback may still run, later, during clean-up.
    struct Exit {
      absl::Notification done;
      SteadyTime at;
    };
    auto exited = std::make_shared<Exit>();
    absl::SleepFor(kIdleGap);
    start = SteadyNow();
    absl::StatusOr<pid_t> pid = bench.containerizer->Launch(spec, [exited](Termination) {
      exited->at = SteadyNow();
      exited->done.Notify();
    });
    const SteadyTime launched = SteadyNow();
    if (!pid.ok()) {
      return absl::Status(pid.status().code(),
                          absl::StrCat("LinuxContainerizer::Launch: ", pid.status().message()));
    }
    breakdown.launch.push_back(MillisBetween(start, launched));
    if (!exited->done.WaitForNotificationWithTimeout(kPerTaskTimeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("container ", spec.container_id, " did not exit within 10 s"));
    }
    breakdown.exit.push_back(MillisBetween(launched, exited->at));
  }
  return breakdown;
}

struct RssFigures {
  double megabytes = 0;
  double to_all_running_s = 0;
};

absl::StatusOr<RssFigures> MeasureRss(AgentUnderTest& bench, FakeMaster& master, int n) {
  const int running = master.running();
  const int terminal = master.terminal();
  const SteadyTime start = SteadyNow();
  for (int i = 0; i < n; ++i) {
    Deliver(bench, RunTask(absl::StrCat("rss-", i), {"sleep", "600"}));
  }
  if (absl::Status status = master.Await(running + n, terminal, true, kPhaseTimeout);
      !status.ok()) {
    return absl::Status(status.code(), absl::StrCat("rss: ", status.message()));
  }
  RssFigures figures;
  figures.to_all_running_s = MillisBetween(start, SteadyNow()) / 1000.0;
  absl::StatusOr<double> megabytes = ResidentMegabytes();
  if (!megabytes.ok()) {
    return megabytes.status();
  }
  figures.megabytes = *megabytes;
  // Kill them all and wait until the agent has reported (and had acknowledged) every end.
  bench.containerizer->DestroyAll(absl::Seconds(60));
  if (absl::Status status = master.Await(0, terminal + n, false, kPhaseTimeout); !status.ok()) {
    return absl::Status(status.code(), absl::StrCat("rss teardown: ", status.message()));
  }
  return figures;
}

void PrintRow(const std::string& figure, double value, const std::string& unit,
              const std::string& target, std::optional<bool> met) {
  std::printf("  %-44s %10.2f %-4s %-10s %s\n", figure.c_str(), value, unit.c_str(), target.c_str(),
              met.has_value() ? (*met ? "met" : "MISSED") : "");
}

void PrintSteps(const char* step, const std::vector<double>& ms) {
  if (ms.empty()) {
    return;
  }
  std::printf("  %-44s %8.2f ms %8.2f ms %8.2f ms\n", step, Percentile(ms, 0.5),
              Percentile(ms, 0.99), Percentile(ms, 1.0));
}

int Run() {
  const std::string work_root = absl::GetFlag(FLAGS_work_root);
  std::string pattern = absl::StrCat(work_root, "/rz-agent-bench-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "cannot make a temp dir in %s: %s\n", work_root.c_str(),
                 std::strerror(errno));
    return 1;
  }
  // Tasks run as "nobody" and must reach their sandboxes.
  ::chmod(pattern.c_str(), 0755);
  Scratch scratch(pattern, absl::StrCat("rz-bench-", ::getpid()));
  RealCgroupFs cgroup_fs;
  AgentUnderTest bench;
  absl::StatusOr<std::string> isolation = StartAgent(scratch, bench, cgroup_fs);
  if (!isolation.ok()) {
    std::fprintf(stderr, "agent bench: %s\n", std::string(isolation.status().message()).c_str());
    return 1;
  }
  const bool cgroups = *isolation != "none";
  FakeMaster& master = *bench.master;
  auto fail = [](const absl::Status& status) {
    std::fprintf(stderr, "agent bench FAILED: %s\n", status.ToString().c_str());
    return 1;
  };

  const int latency_tasks = absl::GetFlag(FLAGS_latency_tasks);
  const int throughput_tasks = absl::GetFlag(FLAGS_throughput_tasks);
  const int breakdown_launches = absl::GetFlag(FLAGS_breakdown_launches);
  const int rss_tasks = absl::GetFlag(FLAGS_rss_tasks);
  if (latency_tasks < 1 || throughput_tasks < 1 || rss_tasks < 1 || breakdown_launches < 0) {
    return fail(absl::InvalidArgumentError(
        "--latency_tasks, --throughput_tasks and --rss_tasks must be positive, "
        "--breakdown_launches not negative"));
  }
  std::printf("agent bench: isolation %s\n", isolation->c_str());
  std::printf("  %u CPUs, load average %s at the start\n", std::thread::hardware_concurrency(),
              LoadAverage().c_str());
  std::printf("  work dir %s (checkpoint sync on), tasks run as %s, parent cgroup %s\n",
              scratch.dir().c_str(), ::geteuid() == 0 ? kTaskUser : "this user",
              scratch.cgroup_parent().c_str());
  std::fflush(stdout);

  absl::StatusOr<LatencyFigures> latency = MeasureLatency(bench, master, latency_tasks);
  if (!latency.ok()) {
    return fail(latency.status());
  }
  absl::StatusOr<ThroughputFigures> throughput = MeasureThroughput(bench, master, throughput_tasks);
  if (!throughput.ok()) {
    return fail(throughput.status());
  }
  absl::StatusOr<Breakdown> breakdown = MeasureBreakdown(scratch, bench, breakdown_launches);
  if (!breakdown.ok()) {
    return fail(breakdown.status());
  }
  absl::StatusOr<RssFigures> rss = MeasureRss(bench, master, rss_tasks);
  if (!rss.ok()) {
    return fail(rss.status());
  }

  const double p50 = Percentile(latency->to_running_ms, 0.5);
  const double p99 = Percentile(latency->to_running_ms, 0.99);
  const double launches_per_s = throughput_tasks / throughput->to_last_running_s;
  std::printf("\n%-46s %15s %-10s\n", "  figure", "value", "target");
  PrintRow(absl::StrCat("RUN_TASK -> RUNNING p50 (", latency_tasks, " x true)"), p50, "ms",
           "<= 10 ms", p50 <= 10);
  PrintRow(absl::StrCat("RUN_TASK -> RUNNING p99 (", latency_tasks, " x true)"), p99, "ms",
           "<= 50 ms", p99 <= 50);
  PrintRow("RUN_TASK -> RUNNING max", Percentile(latency->to_running_ms, 1.0), "ms", "", {});
  PrintRow("  RUN_TASK -> STARTING sent p50", Percentile(latency->to_starting_ms, 0.5), "ms", "",
           {});
  PrintRow("  RUN_TASK -> STARTING sent p99", Percentile(latency->to_starting_ms, 0.99), "ms", "",
           {});
  PrintRow("RUN_TASK -> FINISHED p50", Percentile(latency->to_finished_ms, 0.5), "ms", "", {});
  PrintRow("RUN_TASK -> FINISHED p99", Percentile(latency->to_finished_ms, 0.99), "ms", "", {});
  PrintRow(absl::StrCat("launches/s (", throughput_tasks, " x true back to back)"), launches_per_s,
           "1/s", ">= 100/s", launches_per_s >= 100);
  PrintRow("  first post -> last RUNNING", throughput->to_last_running_s, "s", "", {});
  PrintRow("  first post -> last FINISHED", throughput->to_last_finished_s, "s", "", {});
  PrintRow("  CPU per task: agent process", throughput->agent_cpu_ms_per_task, "ms", "", {});
  PrintRow("  CPU per task: inits and tasks", throughput->children_cpu_ms_per_task, "ms", "", {});
  PrintRow(absl::StrCat("agent RSS, ", rss_tasks, " x sleep 600 running"), rss->megabytes, "MB",
           "<= 50 MB", rss->megabytes <= 50);
  PrintRow(absl::StrCat("  first post -> all ", rss_tasks, " RUNNING"), rss->to_all_running_s, "s",
           "", {});
  if (breakdown_launches > 0) {
    std::printf("\n  launch steps, timed alone (%d launches) %10s %11s %11s\n", breakdown_launches,
                "p50", "p99", "max");
    PrintSteps("checkpoint write (PutTask+AppendUpdate, fsync)", breakdown->checkpoint_write);
    PrintSteps("sandbox (getpwnam, mkdir, chown)", breakdown->sandbox);
    PrintSteps("cgroup create + apply", breakdown->cgroup_create);
    PrintSteps("cgroup destroy (empty)", breakdown->cgroup_destroy);
    PrintSteps("posix_spawn /bin/sleep", breakdown->spawn);
    PrintSteps("cgroup place (pid into every hierarchy)", breakdown->cgroup_place);
    PrintSteps("LinuxContainerizer::Launch", breakdown->launch);
    PrintSteps("Launch returned -> exit reported (true)", breakdown->exit);
  }
  if (!cgroups) {
    std::printf("\n*** isolation none: these are NOT the cgroups figures.\n");
  }
  std::printf("\n");
  std::printf("RESULT agent.launch_to_running.p50_ms %.3f ms\n", p50);
  std::printf("RESULT agent.launch_to_running.p99_ms %.3f ms\n", p99);
  std::printf("RESULT agent.launches_per_s %.1f 1/s\n", launches_per_s);
  std::printf("RESULT agent.rss_%d_containers.mb %.1f MB\n", rss_tasks, rss->megabytes);
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace rz::agent

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  FLAGS_minloglevel = 1;  // Warnings and errors only: the bench prints its own figures.
  rz::InitLogging(argv[0]);
  return rz::agent::Run();
}
