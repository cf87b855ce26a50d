// The master's metrics endpoints: /metrics (Prometheus text) and /metrics/snapshot (JSON).
// Both render the published snapshot and the metrics registry; neither touches the loop.
#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/http_server.h"
#include "master/master.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

// `name{a="x",b="y"}` as the Prometheus text format writes a series (no escaping needed: our
// label values are ids, enum names, paths and numbers).
std::string Series(const std::string& name, std::vector<prometheus::ClientMetric::Label> labels,
                   const std::string& extra_name = "", const std::string& extra_value = "") {
  if (!extra_name.empty()) {
    labels.push_back({extra_name, extra_value});
  }
  if (labels.empty()) {
    return name;
  }
  std::vector<std::string> parts;
  for (const auto& label : labels) {
    parts.push_back(absl::StrCat(label.name, "=\"", label.value, "\""));
  }
  return absl::StrCat(name, "{", absl::StrJoin(parts, ","), "}");
}

// As prometheus-cpp's text serializer writes a bucket bound, so both renders name it alike.
std::string Bound(double bound) {
  if (std::isinf(bound)) {
    return "+Inf";
  }
  std::ostringstream out;
  out.precision(std::numeric_limits<double>::max_digits10 - 1);
  out << bound;
  return out.str();
}

}  // namespace

// One flat object: series (as /metrics names them) → value. Histograms appear as their
// _count, _sum and _bucket{le="..."} series.
std::string MetricsSnapshotJson(const std::vector<prometheus::MetricFamily>& families) {
  nlohmann::json out = nlohmann::json::object();
  for (const prometheus::MetricFamily& family : families) {
    for (const prometheus::ClientMetric& metric : family.metric) {
      switch (family.type) {
        case prometheus::MetricType::Counter:
          out[Series(family.name, metric.label)] = metric.counter.value;
          break;
        case prometheus::MetricType::Gauge:
          out[Series(family.name, metric.label)] = metric.gauge.value;
          break;
        case prometheus::MetricType::Histogram:
          out[Series(family.name + "_count", metric.label)] = metric.histogram.sample_count;
          out[Series(family.name + "_sum", metric.label)] = metric.histogram.sample_sum;
          for (const auto& bucket : metric.histogram.bucket) {
            out[Series(family.name + "_bucket", metric.label, "le", Bound(bucket.upper_bound))] =
                bucket.cumulative_count;
          }
          break;
        default:
          out[Series(family.name, metric.label)] = metric.untyped.value;
          break;
      }
    }
  }
  return out.dump();
}

void RegisterMetricsHttp(Master& master, HttpServer& http) {
  http.Get("/metrics", [&master](const HttpRequest&) {
    return HttpResponse{.content_type = "text/plain; version=0.0.4; charset=utf-8",
                        .body = master.metrics().RenderText(*master.state())};
  });
  http.Get("/metrics/snapshot", [&master](const HttpRequest&) {
    return HttpResponse{.body = MetricsSnapshotJson(master.metrics().Collect(*master.state()))};
  });
}

}  // namespace rz::master
