// master_state_bench: the master's read API at scale. A MasterDaemon (its own ThreadEventLoop,
// real REST server on loopback port 0, in-memory registry) is loaded with --agents simulated
// agents that register through Master::HandleAgentMessage reporting --tasks_per_agent running
// tasks each, spread over --frameworks frameworks (as agents reregistering after a master
// failover do). A connected scheduler (a capturing outbox) holds offers, so allocation cycles
// have work. Then it times, over real HTTP:
//
//   GET /state-summary, GET /tasks?limit=100&offset=<middle> (plus filtered pages), GET /state
//     (the first /state renders every view's JSON once: reported as state_full_cold_ms)
//   the loop-side cost of publishing a snapshot after one status update and after 1,000
//   the allocation cycle period and the loop's responsiveness while --readers threads hammer
//   /state-summary and /tasks pages for --hammer_seconds
//
// and prints a table, then RESULT lines (DESIGN.md §10).
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "glog/logging.h"
#include "httplib.h"
#include "master/master_daemon.h"

ABSL_FLAG(int, agents, 10000, "Simulated agents.");
ABSL_FLAG(int, tasks_per_agent, 10, "Running tasks each agent reports.");
ABSL_FLAG(int, frameworks, 10, "Frameworks the tasks belong to (round robin).");
ABSL_FLAG(int, runs, 7, "Timed requests per endpoint (median and max reported).");
ABSL_FLAG(int, readers, 2, "Reader threads while measuring allocation cycles.");
ABSL_FLAG(double, hammer_seconds, 5, "How long the readers hammer the endpoints.");

namespace rz::master {
namespace {

// Agents' outboxes: what the master sends them is not looked at.
class NullOutbox final : public Outbox<v1::MasterMessage> {
 public:
  void Send(v1::MasterMessage) override {}
  void Close(absl::Status) override {}
};

// The scheduler's outbox: counts offers.
class CountingOutbox final : public Outbox<v1::Event> {
 public:
  void Send(v1::Event event) override { offers += event.offers().offers_size(); }
  void Close(absl::Status) override {}
  std::atomic<int64_t> offers{0};
};

struct Stats {
  double median = 0;
  double max = 0;
};

Stats Summarize(std::vector<double> values) {
  if (values.empty()) {
    return {};
  }
  std::sort(values.begin(), values.end());
  return {values[values.size() / 2], values.back()};
}

// Runs `f` on the master's loop and waits for it.
template <typename F>
void OnLoop(MasterDaemon& daemon, F f) {
  absl::Notification done;
  daemon.loop().Post([&] {
    f();
    done.Notify();
  });
  done.WaitForNotification();
}

// Waits until the work queued on the loop so far (and the publication it causes) is done.
void Drain(MasterDaemon& daemon) {
  OnLoop(daemon, [] {});
  OnLoop(daemon, [] {});
}

std::string AgentName(int i) { return absl::StrCat("agent-", i); }
std::string FrameworkName(int j) { return absl::StrCat("framework-", j); }

v1::AgentMessage Registration(int agent, int tasks, int frameworks) {
  v1::AgentMessage message;
  v1::AgentMessage::Register* reg = message.mutable_register_();
  reg->mutable_info()->set_id(AgentName(agent));
  reg->mutable_info()->set_hostname(absl::StrCat("host-", agent, ".example"));
  reg->mutable_info()->set_http_address(absl::StrCat("http://host-", agent, ".example:5081"));
  ToProto(*Resources::Parse("cpus:16;mem:65536;disk:100000"),
          reg->mutable_info()->mutable_resources());
  for (int j = 0; j < std::min(frameworks, tasks); ++j) {
    const int f = (agent * tasks + j) % frameworks;
    v1::FrameworkInfo* framework = reg->add_frameworks();
    framework->set_id(FrameworkName(f));
    framework->set_name(FrameworkName(f));
    framework->add_roles(absl::StrCat("role-", f % 3));
    framework->set_failover_timeout_seconds(86400);
  }
  const Resources task_resources = *Resources::Parse("cpus:0.5;mem:512");
  for (int t = 0; t < tasks; ++t) {
    const int f = (agent * tasks + t) % frameworks;
    v1::Task* task = reg->add_tasks();
    task->set_task_id(absl::StrCat("task-", agent, "-", t));
    task->set_name(absl::StrCat("web server ", t));
    task->set_framework_id(FrameworkName(f));
    task->set_role(absl::StrCat("role-", f % 3));
    task->set_state(v1::TASK_RUNNING);
    task->set_acknowledged_state(v1::TASK_RUNNING);
    task->mutable_command()->set_value("exec ./server --port=$PORT0");
    task->mutable_command()->set_shell(true);
    ToProto(task_resources, task->mutable_resources());
    v1::TaskStatus* status = task->mutable_latest_status();
    status->set_task_id(task->task_id());
    status->set_framework_id(task->framework_id());
    status->set_agent_id(AgentName(agent));
    status->set_state(v1::TASK_RUNNING);
    status->set_source(v1::TaskStatus::SOURCE_EXECUTOR);
    status->set_timestamp(1.7e9);
  }
  return message;
}

struct Timed {
  double ms = 0;
  size_t bytes = 0;
  int status = 0;
};

Timed TimedGet(httplib::Client& client, const std::string& path) {
  const absl::Time start = absl::Now();
  httplib::Result result = client.Get(path);
  Timed timed;
  timed.ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  if (result) {
    timed.status = result->status;
    timed.bytes = result->body.size();
  } else {
    LOG(ERROR) << "GET " << path << ": " << httplib::to_string(result.error());
  }
  return timed;
}

struct Row {
  std::string name;
  Stats stats;
  size_t bytes = 0;
};

Row Measure(httplib::Client& client, const std::string& name, const std::string& path, int runs) {
  std::vector<double> times;
  Row row{name, {}, 0};
  for (int i = 0; i < runs; ++i) {
    Timed timed = TimedGet(client, path);
    CHECK_EQ(timed.status, 200) << path;
    times.push_back(timed.ms);
    row.bytes = timed.bytes;
  }
  row.stats = Summarize(times);
  return row;
}

int Main() {
  const int agents = absl::GetFlag(FLAGS_agents);
  const int tasks_per_agent = absl::GetFlag(FLAGS_tasks_per_agent);
  const int frameworks = absl::GetFlag(FLAGS_frameworks);
  const int runs = absl::GetFlag(FLAGS_runs);
  const int64_t total_tasks = static_cast<int64_t>(agents) * tasks_per_agent;

  MasterDaemonOptions options;
  options.ip = "127.0.0.1";
  options.hostname = "127.0.0.1";
  options.port = 0;
  options.http_port = 0;
  options.registry = RegistryBackend::kInMemory;
  options.master.allocation_interval = absl::Seconds(1);
  options.master.offer_timeout = absl::ZeroDuration();
  // No pings during the run: simulated agents do not answer them.
  options.master.agent_ping_interval = absl::Hours(1);
  options.master.agent_ping_timeout = absl::Hours(2);
  MasterDaemon daemon(options);
  RZ_CHECK_OK(daemon.Start());
  Master& master = daemon.master();

  // Load.
  const absl::Time load_start = absl::Now();
  auto null_outbox = std::make_shared<NullOutbox>();
  constexpr int kBatch = 50;  // Agents per loop task, so the loop interleaves its own work.
  for (int first = 0; first < agents; first += kBatch) {
    std::vector<v1::AgentMessage> batch;
    for (int i = first; i < std::min(agents, first + kBatch); ++i) {
      batch.push_back(Registration(i, tasks_per_agent, frameworks));
    }
    daemon.loop().Post([&master, null_outbox, first, batch = std::move(batch)] {
      for (size_t k = 0; k < batch.size(); ++k) {
        master.HandleAgentMessage(StreamId(absl::StrCat("link-", first + k)), batch[k],
                                  null_outbox);
      }
    });
  }
  Drain(daemon);
  while (master.state()->tasks.size() < static_cast<size_t>(total_tasks)) {
    absl::SleepFor(absl::Milliseconds(50));
    Drain(daemon);
  }
  const double load_s = absl::ToDoubleSeconds(absl::Now() - load_start);

  // A connected scheduler of role-0 so cycles allocate (and then hold) offers.
  auto scheduler = std::make_shared<CountingOutbox>();
  OnLoop(daemon, [&] {
    v1::SubscribeRequest request;
    request.mutable_framework_info()->set_name("bench-scheduler");
    request.mutable_framework_info()->add_roles("role-0");
    request.mutable_framework_info()->set_failover_timeout_seconds(3600);
    master.Subscribe(request, StreamId("bench-stream"), scheduler);
  });
  absl::SleepFor(absl::Seconds(2));
  Drain(daemon);

  httplib::Client client(daemon.http_address());
  client.set_read_timeout(600, 0);

  // Publication cost after one status update, and after a batch of 1,000.
  auto update = [&](int agent, int task, v1::TaskState state) {
    v1::AgentMessage message;
    v1::TaskStatus* status = message.mutable_status_update()->mutable_status();
    status->set_framework_id(FrameworkName((agent * tasks_per_agent + task) % frameworks));
    status->set_task_id(absl::StrCat("task-", agent, "-", task));
    status->set_state(state);
    status->set_source(v1::TaskStatus::SOURCE_EXECUTOR);
    status->set_uuid(absl::StrCat("u-", agent, "-", task, "-", static_cast<int>(state)));
    master.HandleAgentMessage(StreamId(absl::StrCat("link-", agent)), message, null_outbox);
  };
  std::vector<double> publish_one;
  for (int i = 0; i < 21; ++i) {
    const int agent = (i * 7919) % agents;
    daemon.loop().Post([&, agent] { update(agent, 0, v1::TASK_RUNNING); });
    Drain(daemon);
    publish_one.push_back(absl::ToDoubleMilliseconds(master.state()->publish_duration));
  }
  std::vector<double> publish_batch;
  for (int round = 0; round < 5; ++round) {
    daemon.loop().Post([&, round] {
      for (int i = 0; i < 1000; ++i) {
        update((i * 13 + round * 1000) % agents, 1 + round % (tasks_per_agent - 1),
               v1::TASK_RUNNING);
      }
    });
    Drain(daemon);
    publish_batch.push_back(absl::ToDoubleMilliseconds(master.state()->publish_duration));
  }

  // Reads.
  std::vector<Row> rows;
  Timed cold = TimedGet(client, "/state");
  CHECK_EQ(cold.status, 200);
  rows.push_back(Measure(client, "GET /state-summary", "/state-summary", runs));
  const std::string page = absl::StrCat("/tasks?limit=100&offset=", total_tasks / 2);
  rows.push_back(Measure(client, absl::StrCat("GET ", page), page, runs * 3));
  const std::string framework_page =
      absl::StrCat("/tasks?limit=100&offset=", total_tasks / frameworks / 2,
                   "&framework_id=", FrameworkName(frameworks / 2));
  rows.push_back(Measure(client, absl::StrCat("GET ", framework_page), framework_page, runs * 3));
  const std::string agent_page =
      absl::StrCat("/tasks?limit=100&agent_id=", AgentName(agents / 2), "&state=TASK_RUNNING");
  rows.push_back(Measure(client, absl::StrCat("GET ", agent_page), agent_page, runs * 3));
  const std::string state_page =
      absl::StrCat("/tasks?limit=100&offset=", total_tasks / 4, "&state=TASK_RUNNING");
  rows.push_back(Measure(client, absl::StrCat("GET ", state_page), state_page, runs * 3));
  rows.push_back(Measure(client, "GET /state?framework_id=...",
                         absl::StrCat("/state?framework_id=", FrameworkName(0)), runs));
  rows.push_back(Measure(client, "GET /state", "/state", runs));

  // Allocation cycles and loop responsiveness while readers hammer the endpoints.
  const int64_t cycles_before = master.state()->roles->allocation_cycles();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> reads{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < absl::GetFlag(FLAGS_readers); ++r) {
    readers.emplace_back([&, r] {
      httplib::Client reader(daemon.http_address());
      reader.set_read_timeout(60, 0);
      int i = 0;
      while (!stop.load()) {
        const std::string path =
            (r + i) % 4 == 0 ? "/state-summary"
                             : absl::StrCat("/tasks?limit=100&offset=", (i * 7717) % total_tasks);
        if (reader.Get(path)) {
          ++reads;
        }
        ++i;
      }
    });
  }
  std::vector<double> loop_delays;
  const absl::Time hammer_start = absl::Now();
  const absl::Duration hammer = absl::Seconds(absl::GetFlag(FLAGS_hammer_seconds));
  int probe = 0;
  while (absl::Now() - hammer_start < hammer) {
    // A status update every probe keeps publication going, as in a live cluster.
    const absl::Time posted = absl::Now();
    absl::Notification ran;
    const int agent = (probe++ * 104729) % agents;
    daemon.loop().Post([&, agent] {
      update(agent, 0, v1::TASK_RUNNING);
      ran.Notify();
    });
    ran.WaitForNotification();
    loop_delays.push_back(absl::ToDoubleMilliseconds(absl::Now() - posted));
    absl::SleepFor(absl::Milliseconds(20));
  }
  const double hammer_s = absl::ToDoubleSeconds(absl::Now() - hammer_start);
  stop = true;
  for (std::thread& reader : readers) {
    reader.join();
  }
  std::shared_ptr<const MasterSnapshot> final_state = master.state();
  const int64_t cycles = final_state->roles->allocation_cycles() - cycles_before;
  const double cycle_period_ms = cycles > 0 ? hammer_s * 1000 / cycles : 0;
  const Stats delay = Summarize(loop_delays);
  const Stats one = Summarize(publish_one);
  const Stats batch = Summarize(publish_batch);

  std::printf("\nmaster state bench: %d agents, %lld tasks, %d frameworks (loaded in %.1f s)\n",
              agents, static_cast<long long>(final_state->tasks.size()), frameworks, load_s);
  std::printf("%-70s %10s %10s %12s\n", "measure", "median ms", "max ms", "bytes");
  std::printf("%-70s %10.1f %10s %12zu\n", "GET /state (first, renders every view's JSON)", cold.ms,
              "", cold.bytes);
  for (const Row& row : rows) {
    std::printf("%-70s %10.2f %10.2f %12zu\n", row.name.c_str(), row.stats.median, row.stats.max,
                row.bytes);
  }
  std::printf("%-70s %10.3f %10.3f\n", "publish after 1 status update (loop)", one.median, one.max);
  std::printf("%-70s %10.3f %10.3f\n", "publish after 1,000 status updates (loop)", batch.median,
              batch.max);
  std::printf("%-70s %10.2f %10.2f\n", "loop round trip while readers hammer", delay.median,
              delay.max);
  std::printf(
      "allocation: %lld cycles in %.1f s while %d readers made %lld reads "
      "(interval 1000 ms, observed period %.0f ms, last cycle %.1f ms); %lld offers\n",
      static_cast<long long>(cycles), hammer_s, absl::GetFlag(FLAGS_readers),
      static_cast<long long>(reads.load()), cycle_period_ms, final_state->roles->last_cycle_ms(),
      static_cast<long long>(scheduler->offers.load()));
  std::printf("RESULT master.state_load_s %.2f s\n", load_s);
  std::printf("RESULT master.publish_one_update_ms %.3f ms\n", one.median);
  std::printf("RESULT master.publish_1000_updates_ms %.3f ms\n", batch.median);
  std::printf("RESULT master.state_full_cold_ms %.1f ms\n", cold.ms);
  std::printf("RESULT master.allocation_period_under_reads_ms %.0f ms\n", cycle_period_ms);
  std::printf("RESULT master.loop_round_trip_under_reads_ms %.2f ms\n", delay.median);
  std::printf("RESULT master.state_summary_ms %.2f ms\n", rows[0].stats.median);
  std::printf("RESULT master.tasks_page_ms %.2f ms\n", rows[1].stats.median);
  std::printf("RESULT master.state_full_ms %.1f ms\n", rows.back().stats.median);
  std::fflush(stdout);
  daemon.Stop();
  return 0;
}

}  // namespace
}  // namespace rz::master

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  google::InitGoogleLogging(argv[0]);
  FLAGS_minloglevel = 1;  // The master logs every registration at INFO.
  return rz::master::Main();
}
