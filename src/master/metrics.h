// MasterMetrics: the master's metrics, rendered as Prometheus text (/metrics), JSON
// (/metrics/snapshot) and the Operator GetMetrics RPC. The metric names are documented in
// docs/operator-guide.md.
//
// Two kinds of values:
//  - Counters and histograms that the loop and the transport adapters update as things happen
//    (offers, scheduler calls, allocation cycles, loop lag, API latency). They live in a
//    prometheus-cpp registry (Debian's prometheus-cpp core; its HTTP exposer is not used).
//  - Gauges derived at render time from the published MasterSnapshot (tasks, agents and
//    frameworks by state, outstanding offers) and from the loop's stats, so they always match
//    what /state shows and cost the loop nothing.
//
// Thread rule: every method is thread-safe. Updates are atomic increments or a short lock
// inside prometheus-cpp; renders read the registry and the given snapshot.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "master/snapshot.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "rz/v1/operator.pb.h"

namespace rz {
class HttpServer;
}

namespace rz::master {

// What the daemon's event loop reports at render time.
struct LoopStats {
  int64_t queue_depth = 0;
  double oldest_queued_seconds = 0;
};

// The method a request message belongs to: "UpdateFrameworkRequest" → "UpdateFramework".
std::string RpcOf(const google::protobuf::Message& request);
// The scheduler call type of a request: "UpdateFrameworkRequest" → "UPDATE_FRAMEWORK".
std::string CallTypeOf(const google::protobuf::Message& request);

class MasterMetrics {
 public:
  MasterMetrics();

  MasterMetrics(const MasterMetrics&) = delete;
  MasterMetrics& operator=(const MasterMetrics&) = delete;

  // --- Offers (the master's loop) ---
  void OffersSent(int64_t n) { offers_sent_.Increment(static_cast<double>(n)); }
  void OffersAccepted(int64_t n) { offers_accepted_.Increment(static_cast<double>(n)); }
  void OfferDeclined() { offers_declined_.Increment(); }
  void OfferRescinded() { offers_rescinded_.Increment(); }
  // Offer ids named by an ACCEPT that was refused as invalid (its tasks got TASK_DROPPED).
  void OffersDropped(int64_t n) { offers_dropped_.Increment(static_cast<double>(n)); }

  // A scheduler call of a known framework (`call`: SUBSCRIBE, ACCEPT, DECLINE, ...).
  void FrameworkCall(const std::string& framework_id, const std::string& call);
  // Drops the framework's call series (it moved to the completed list), so series stay bounded.
  void FrameworkRemoved(const std::string& framework_id);

  void AllocationCycle(absl::Duration duration);
  void LoopLag(absl::Duration lag);

  // API latency. `endpoint` is the registered path ("" for an unknown one); `method` of a gRPC
  // call is "Service.Method".
  void HttpRequest(const std::string& method, const std::string& endpoint, int status,
                   absl::Duration latency);
  void GrpcCall(const std::string& method, const std::string& code, absl::Duration latency);

  // Where queue depth comes from (the daemon's ThreadEventLoop). Set before serving.
  void SetLoopStatsSource(std::function<LoopStats()> source);
  // Open operator event streams (the loop sets it).
  void SetOperatorSubscribers(int64_t n) { operator_subscribers_.Set(static_cast<double>(n)); }
  void SetRecoveryRemovalsRefused(int64_t n) {
    recovery_removals_refused_.Set(static_cast<double>(n));
  }

  // --- Renders ---
  std::vector<prometheus::MetricFamily> Collect(const MasterSnapshot& state) const;
  std::string RenderText(const MasterSnapshot& state) const;  // Prometheus text format 0.0.4.
  v1::Metrics ToProto(const MasterSnapshot& state) const;

  // Converts collected families (exposed for tests and the JSON render).
  static v1::Metrics ToProto(const std::vector<prometheus::MetricFamily>& families);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& offers_sent_;
  prometheus::Counter& offers_accepted_;
  prometheus::Counter& offers_declined_;
  prometheus::Counter& offers_rescinded_;
  prometheus::Counter& offers_dropped_;
  prometheus::Family<prometheus::Counter>& framework_calls_;
  prometheus::Histogram& allocation_cycle_;
  prometheus::Histogram& loop_lag_;
  prometheus::Family<prometheus::Histogram>& http_latency_;
  prometheus::Family<prometheus::Histogram>& grpc_latency_;
  prometheus::Gauge& operator_subscribers_;
  prometheus::Gauge& recovery_removals_refused_;

  std::mutex calls_mu_;
  absl::flat_hash_map<std::string, absl::flat_hash_set<prometheus::Counter*>> calls_by_framework_;

  mutable std::mutex source_mu_;
  std::function<LoopStats()> loop_stats_;
};

class Master;

// /metrics and /metrics/snapshot (master_http_metrics.cc).
void RegisterMetricsHttp(Master& master, rz::HttpServer& http);
std::string MetricsSnapshotJson(const std::vector<prometheus::MetricFamily>& families);

}  // namespace rz::master
