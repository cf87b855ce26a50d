// End-to-end task launch through a real master and agents in this process, over gRPC on
// loopback: a scheduler launches `--tasks` tasks running `true` and acknowledges every update.
//
//   latency:    one task at a time; time from ACCEPT to TASK_FINISHED at the scheduler
//   throughput: every offer is filled with as many tasks as fit, until all have finished
//
// Prints RESULT lines (see bench/README.md).
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/agent_daemon.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "glog/logging.h"
#include "master/master_daemon.h"
#include "scheduler_api/scheduler_client.h"

ABSL_FLAG(int, tasks, 200, "Tasks per measurement.");
ABSL_FLAG(int, agents, 2, "Agents in the cluster.");

namespace rz {
namespace {

v1::TaskInfo TrueTask(const std::string& id) {
  v1::TaskInfo task;
  task.set_task_id(id);
  task.set_name(id);
  task.mutable_command()->set_shell(false);
  task.mutable_command()->set_value("true");
  task.mutable_command()->add_arguments("true");
  ToProto(*Resources::Parse("cpus:0.1;mem:16"), task.mutable_resources());
  return task;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

int Run() {
  char dir[] = "/tmp/rz-launch-bench-XXXXXX";
  CHECK(mkdtemp(dir) != nullptr);
  master::MasterDaemonOptions master_options;
  master_options.ip = "127.0.0.1";
  master_options.hostname = "127.0.0.1";
  master_options.port = 0;
  master_options.http_port = 0;
  master_options.registry = master::RegistryBackend::kInMemory;
  master::MasterDaemon master(master_options);
  CHECK(master.Start().ok());
  std::vector<std::unique_ptr<agent::AgentDaemon>> agents;
  for (int i = 0; i < absl::GetFlag(FLAGS_agents); ++i) {
    const std::string work_dir = absl::StrCat(dir, "/agent-", i);
    std::filesystem::create_directories(work_dir);
    agents.push_back(std::make_unique<agent::AgentDaemon>(
        agent::AgentDaemonOptions{.master = master.grpc_address(),
                                  .ip = "127.0.0.1",
                                  .hostname = "127.0.0.1",
                                  .http_port = 0,
                                  .work_dir = work_dir,
                                  .resources = *Resources::Parse("cpus:2;mem:1024")}));
    CHECK(agents.back()->Start().ok());
  }
  while (master.master().snapshot()->agents_size() < absl::GetFlag(FLAGS_agents)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  v1::FrameworkInfo info;
  info.set_name("launch-bench");
  scheduler::SchedulerClient client(master.grpc_address(), info);
  CHECK(client.Subscribe(absl::Seconds(10)).ok());

  std::vector<v1::Offer> offers;
  auto next_event = [&]() {
    std::optional<v1::Event> event = client.NextEvent(absl::Seconds(30));
    CHECK(event.has_value()) << "no event within 30 s";
    for (const v1::Offer& offer : event->offers().offers()) {
      offers.push_back(offer);
    }
    if (event->has_update()) {
      CHECK(client.Acknowledge(event->update().status()).ok());
    }
    return *event;
  };

  const int tasks = absl::GetFlag(FLAGS_tasks);
  // Latency: one task at a time.
  std::vector<double> latencies_ms;
  for (int i = 0; i < tasks; ++i) {
    while (offers.empty()) {
      next_event();
    }
    const v1::Offer offer = offers.front();
    offers.erase(offers.begin());
    const std::string id = absl::StrCat("lat-", i);
    const absl::Time start = absl::Now();
    CHECK(client.Launch({OfferId(offer.id())}, {TrueTask(id)}, 0).ok());
    while (true) {
      v1::Event event = next_event();
      if (event.has_update() && event.update().status().task_id() == id &&
          event.update().status().state() == v1::TASK_FINISHED) {
        break;
      }
      CHECK(!(event.has_update() && event.update().status().task_id() == id &&
              IsTerminal(event.update().status().state())))
          << event.update().status().message();
    }
    latencies_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - start));
  }

  // Throughput: fill every offer.
  int launched = 0;
  int finished = 0;
  const absl::Time start = absl::Now();
  while (finished < tasks) {
    while (!offers.empty() && launched < tasks) {
      const v1::Offer offer = offers.front();
      offers.erase(offers.begin());
      Resources left = *FromProto(offer.resources());
      const Resources each = *Resources::Parse("cpus:0.1;mem:16");
      std::vector<v1::TaskInfo> batch;
      while (launched < tasks && left.Contains(each)) {
        CHECK(left.Subtract(each).ok());
        batch.push_back(TrueTask(absl::StrCat("tp-", launched++)));
      }
      CHECK(client.Launch({OfferId(offer.id())}, batch, 0).ok());
    }
    v1::Event event = next_event();
    if (event.has_update() && IsTerminal(event.update().status().state())) {
      CHECK_EQ(event.update().status().state(), v1::TASK_FINISHED);
      ++finished;
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);

  std::printf("launch latency over %d tasks: p50 %.2f ms, p99 %.2f ms\n", tasks,
              Percentile(latencies_ms, 0.5), Percentile(latencies_ms, 0.99));
  std::printf("RESULT launch_latency_p50 %.3f ms\n", Percentile(latencies_ms, 0.5));
  std::printf("RESULT launch_latency_p99 %.3f ms\n", Percentile(latencies_ms, 0.99));
  std::printf("RESULT launch_throughput %.1f tasks/s\n", tasks / seconds);
  (void)client.Teardown();
  client.Close();
  agents.clear();
  master.Stop();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace rz

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  FLAGS_minloglevel = 1;  // Warnings and errors only: the bench prints its own figures.
  google::InitGoogleLogging(argv[0]);
  return rz::Run();
}
