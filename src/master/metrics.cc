#include "master/metrics.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/ascii.h"
#include "prometheus/text_serializer.h"
#include "rz/v1/common.pb.h"

namespace rz::master {
namespace {

// Seconds; from sub-millisecond REST reads to multi-second stalls.
const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
  return *buckets;
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = prometheus::MetricType::Gauge;
  return family;
}

void AddGauge(prometheus::MetricFamily& family, double value,
              std::vector<prometheus::ClientMetric::Label> labels = {}) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family.metric.push_back(std::move(metric));
}

// "TASK_RUNNING" → "TASK_RUNNING"; enum names are kept as they appear in /state.
template <typename Counts>
void AddByLabel(prometheus::MetricFamily& family, const std::string& label, const Counts& counts) {
  for (const auto& [value, count] : counts) {
    AddGauge(family, static_cast<double>(count), {{label, value}});
  }
}

}  // namespace

std::string RpcOf(const google::protobuf::Message& request) {
  std::string name = request.GetDescriptor()->name();
  constexpr std::string_view kSuffix = "Request";
  if (name.size() > kSuffix.size() && name.ends_with(kSuffix)) {
    name.resize(name.size() - kSuffix.size());
  }
  return name;
}

std::string CallTypeOf(const google::protobuf::Message& request) {
  std::string out;
  for (char c : RpcOf(request)) {
    if (absl::ascii_isupper(static_cast<unsigned char>(c)) && !out.empty()) {
      out.push_back('_');
    }
    out.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

MasterMetrics::MasterMetrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      offers_sent_(prometheus::BuildCounter()
                       .Name("rz_master_offers_sent_total")
                       .Help("Offers sent to schedulers.")
                       .Register(*registry_)
                       .Add({})),
      offers_accepted_(prometheus::BuildCounter()
                           .Name("rz_master_offers_accepted_total")
                           .Help("Offers used by a valid ACCEPT.")
                           .Register(*registry_)
                           .Add({})),
      offers_declined_(prometheus::BuildCounter()
                           .Name("rz_master_offers_declined_total")
                           .Help("Offers declined by their scheduler.")
                           .Register(*registry_)
                           .Add({})),
      offers_rescinded_(prometheus::BuildCounter()
                            .Name("rz_master_offers_rescinded_total")
                            .Help("Offers rescinded by the master (timeout, agent loss, policy).")
                            .Register(*registry_)
                            .Add({})),
      offers_dropped_(prometheus::BuildCounter()
                          .Name("rz_master_offers_dropped_total")
                          .Help("Offer ids named by ACCEPT calls refused as invalid.")
                          .Register(*registry_)
                          .Add({})),
      framework_calls_(prometheus::BuildCounter()
                           .Name("rz_master_framework_calls_total")
                           .Help("Scheduler calls by framework and call type.")
                           .Register(*registry_)),
      allocation_cycle_(prometheus::BuildHistogram()
                            .Name("rz_master_allocation_cycle_seconds")
                            .Help("Duration of allocation cycles.")
                            .Register(*registry_)
                            .Add({}, LatencyBuckets())),
      loop_lag_(prometheus::BuildHistogram()
                    .Name("rz_master_event_loop_lag_seconds")
                    .Help("How long work waited in the master loop's queue before it ran.")
                    .Register(*registry_)
                    .Add({}, LatencyBuckets())),
      http_latency_(prometheus::BuildHistogram()
                        .Name("rz_master_http_request_duration_seconds")
                        .Help("REST request latency by endpoint, method and status.")
                        .Register(*registry_)),
      grpc_latency_(
          prometheus::BuildHistogram()
              .Name("rz_master_grpc_call_duration_seconds")
              .Help("gRPC unary call latency (handler entry to Finish) by method and code.")
              .Register(*registry_)),
      operator_subscribers_(prometheus::BuildGauge()
                                .Name("rz_master_operator_event_subscribers")
                                .Help("Open operator event streams.")
                                .Register(*registry_)
                                .Add({})),
      recovery_removals_refused_(
          prometheus::BuildGauge()
              .Name("rz_master_recovery_agent_removals_refused")
              .Help("Agents that did not reregister after a failover and were NOT marked "
                    "unreachable because they exceeded --recovery_agent_removal_limit.")
              .Register(*registry_)
              .Add({})) {}

void MasterMetrics::FrameworkCall(const std::string& framework_id, const std::string& call) {
  prometheus::Counter& counter =
      framework_calls_.Add({{"framework_id", framework_id}, {"call", call}});
  counter.Increment();
  std::lock_guard<std::mutex> lock(calls_mu_);
  calls_by_framework_[framework_id].insert(&counter);
}

void MasterMetrics::FrameworkRemoved(const std::string& framework_id) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  auto it = calls_by_framework_.find(framework_id);
  if (it == calls_by_framework_.end()) {
    return;
  }
  for (prometheus::Counter* counter : it->second) {
    framework_calls_.Remove(counter);
  }
  calls_by_framework_.erase(it);
}

void MasterMetrics::AllocationCycle(absl::Duration duration) {
  allocation_cycle_.Observe(absl::ToDoubleSeconds(duration));
}

void MasterMetrics::LoopLag(absl::Duration lag) { loop_lag_.Observe(absl::ToDoubleSeconds(lag)); }

void MasterMetrics::HttpRequest(const std::string& method, const std::string& endpoint, int status,
                                absl::Duration latency) {
  http_latency_
      .Add({{"endpoint", endpoint.empty() ? "unknown" : endpoint},
            {"method", method},
            {"code", std::to_string(status)}},
           LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(latency));
}

void MasterMetrics::GrpcCall(const std::string& method, const std::string& code,
                             absl::Duration latency) {
  grpc_latency_.Add({{"method", method}, {"code", code}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(latency));
}

void MasterMetrics::SetLoopStatsSource(std::function<LoopStats()> source) {
  std::lock_guard<std::mutex> lock(source_mu_);
  loop_stats_ = std::move(source);
}

std::vector<prometheus::MetricFamily> MasterMetrics::Collect(const MasterSnapshot& state) const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();

  // Tasks by state: every task /state lists (active and retained completed ones).
  std::map<std::string, int64_t> tasks;
  for (int s = v1::TaskState_MIN; s <= v1::TaskState_MAX; ++s) {
    if (v1::TaskState_IsValid(s) && s != v1::TASK_STATE_UNSPECIFIED) {
      tasks[v1::TaskState_Name(static_cast<v1::TaskState>(s))] = 0;
    }
  }
  for (const auto& [name, count] : state.tasks_by_state) {
    tasks[name] += count;
  }
  for (const TaskViewPtr& task : *state.completed_tasks) {
    ++tasks[v1::TaskState_Name(task->proto().state())];
  }
  prometheus::MetricFamily task_family =
      GaugeFamily("rz_master_tasks", "Tasks the master lists in /state, by state.");
  AddByLabel(task_family, "state", tasks);
  families.push_back(std::move(task_family));

  std::map<std::string, int64_t> agents;
  for (int s = v1::AgentState::Status_MIN; s <= v1::AgentState::Status_MAX; ++s) {
    if (v1::AgentState::Status_IsValid(s) && s != v1::AgentState::STATUS_UNSPECIFIED) {
      agents[v1::AgentState::Status_Name(static_cast<v1::AgentState::Status>(s))] = 0;
    }
  }
  state.agents.ForEach([&](const auto& entry) {
    ++agents[v1::AgentState::Status_Name(entry.second->proto().status())];
  });
  agents[v1::AgentState::Status_Name(v1::AgentState::GONE)] += state.extras->gone_agents_size();
  prometheus::MetricFamily agent_family =
      GaugeFamily("rz_master_agents", "Agents the master knows, by status.");
  AddByLabel(agent_family, "state", agents);
  families.push_back(std::move(agent_family));

  std::map<std::string, int64_t> frameworks = {
      {"connected", 0},
      {"disconnected", 0},
      {"completed", static_cast<int64_t>(state.completed_frameworks->size())}};
  state.frameworks.ForEach([&](const auto& entry) {
    ++frameworks[entry.second->proto().connected() ? "connected" : "disconnected"];
  });
  prometheus::MetricFamily framework_family = GaugeFamily(
      "rz_master_frameworks", "Frameworks: connected, disconnected (in failover), completed.");
  AddByLabel(framework_family, "state", frameworks);
  families.push_back(std::move(framework_family));

  prometheus::MetricFamily offers =
      GaugeFamily("rz_master_offers_outstanding", "Offers sent and not yet answered or rescinded.");
  AddGauge(offers, static_cast<double>(state.offers.size()));
  families.push_back(std::move(offers));

  std::function<LoopStats()> source;
  {
    std::lock_guard<std::mutex> lock(source_mu_);
    source = loop_stats_;
  }
  if (source) {
    const LoopStats stats = source();
    prometheus::MetricFamily depth = GaugeFamily(
        "rz_master_event_loop_queue_depth", "Closures queued on the master loop, not yet run.");
    AddGauge(depth, static_cast<double>(stats.queue_depth));
    families.push_back(std::move(depth));
    prometheus::MetricFamily age =
        GaugeFamily("rz_master_event_loop_oldest_queued_seconds",
                    "How long the oldest closure queued on the master loop has waited.");
    AddGauge(age, stats.oldest_queued_seconds);
    families.push_back(std::move(age));
  }
  return families;
}

std::string MasterMetrics::RenderText(const MasterSnapshot& state) const {
  return prometheus::TextSerializer().Serialize(Collect(state));
}

v1::Metrics MasterMetrics::ToProto(const MasterSnapshot& state) const {
  return ToProto(Collect(state));
}

v1::Metrics MasterMetrics::ToProto(const std::vector<prometheus::MetricFamily>& families) {
  v1::Metrics out;
  for (const prometheus::MetricFamily& family : families) {
    v1::MetricFamily* f = out.add_families();
    f->set_name(family.name);
    f->set_help(family.help);
    switch (family.type) {
      case prometheus::MetricType::Counter:
        f->set_type(v1::MetricFamily::COUNTER);
        break;
      case prometheus::MetricType::Gauge:
        f->set_type(v1::MetricFamily::GAUGE);
        break;
      case prometheus::MetricType::Histogram:
        f->set_type(v1::MetricFamily::HISTOGRAM);
        break;
      default:
        f->set_type(v1::MetricFamily::TYPE_UNSPECIFIED);
        break;
    }
    for (const prometheus::ClientMetric& metric : family.metric) {
      v1::Metric* m = f->add_metrics();
      for (const prometheus::ClientMetric::Label& label : metric.label) {
        (*m->mutable_labels())[label.name] = label.value;
      }
      switch (family.type) {
        case prometheus::MetricType::Counter:
          m->set_value(metric.counter.value);
          break;
        case prometheus::MetricType::Gauge:
          m->set_value(metric.gauge.value);
          break;
        case prometheus::MetricType::Histogram:
          m->set_count(metric.histogram.sample_count);
          m->set_sum(metric.histogram.sample_sum);
          for (const prometheus::ClientMetric::Bucket& bucket : metric.histogram.bucket) {
            v1::Metric::Bucket* b = m->add_buckets();
            b->set_upper_bound(bucket.upper_bound);
            b->set_cumulative_count(bucket.cumulative_count);
          }
          break;
        default:
          m->set_value(metric.untyped.value);
          break;
      }
    }
  }
  return out;
}

}  // namespace rz::master
