// What the master counts and how it renders it: offer counters as scenarios run, tasks, agents
// and frameworks by state against /state, the Prometheus text format, the JSON snapshot and
// the GetMetrics proto carrying the same values.
#include "master/metrics.h"

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "master/master_test_fixture.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

// Every metric name docs/operator-guide.md documents.
const char* const kDocumentedNames[] = {
    "rz_master_tasks",
    "rz_master_agents",
    "rz_master_frameworks",
    "rz_master_offers_outstanding",
    "rz_master_offers_sent_total",
    "rz_master_offers_accepted_total",
    "rz_master_offers_declined_total",
    "rz_master_offers_rescinded_total",
    "rz_master_offers_dropped_total",
    "rz_master_framework_calls_total",
    "rz_master_allocation_cycle_seconds",
    "rz_master_event_loop_lag_seconds",
    "rz_master_http_request_duration_seconds",
    "rz_master_grpc_call_duration_seconds",
    "rz_master_operator_event_subscribers",
};

struct ParsedText {
  std::map<std::string, double> series;  // `name{labels}` → value
  std::map<std::string, std::string> types;
  std::set<std::string> helps;
};

// A strict reader of the Prometheus text format 0.0.4 as far as the master uses it: HELP and
// TYPE lines, then `name{label="value",...} value` samples. Fails the test on any other line.
ParsedText ParsePrometheus(const std::string& text) {
  static const std::regex kSample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*)?\})? ([-+0-9.eE]+|\+Inf|NaN)$)");
  static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
  ParsedText parsed;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      continue;
    }
    std::smatch match;
    if (std::regex_match(line, match, kHelp)) {
      parsed.helps.insert(match[1]);
    } else if (std::regex_match(line, match, kType)) {
      parsed.types[match[1]] = match[2];
    } else if (std::regex_match(line, match, kSample)) {
      const std::string series = line.substr(0, line.rfind(' '));
      EXPECT_FALSE(parsed.series.contains(series)) << "duplicate series " << series;
      parsed.series[series] = std::stod(match[5]);
    } else {
      ADD_FAILURE() << "not a Prometheus text line: '" << line << "'";
    }
  }
  return parsed;
}

class MetricsTest : public MasterTest {
 protected:
  ParsedText Scrape() {
    loop_.RunUntilIdle();
    return ParsePrometheus(master_.metrics().RenderText(*master_.state()));
  }
  double Value(const std::string& series) {
    ParsedText parsed = Scrape();
    auto it = parsed.series.find(series);
    EXPECT_NE(it, parsed.series.end()) << "no series " << series;
    return it == parsed.series.end() ? -1 : it->second;
  }
};

TEST_F(MetricsTest, OfferCountersMoveAsSchedulersAnswer) {
  EXPECT_EQ(Value("rz_master_offers_sent_total"), 0);
  Agent agent = AddAgent("cpus:4;mem:1024");
  Scheduler s = Subscribe();
  loop_.RunUntilIdle();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(Value("rz_master_offers_sent_total"), 1);
  EXPECT_EQ(Value("rz_master_offers_outstanding"), 1);

  // DECLINE with a 1 s filter; the next cycle after it offers again.
  v1::DeclineRequest decline;
  *decline.mutable_header() = s.header();
  decline.add_offer_ids(offers[0].id());
  decline.mutable_filters()->set_refuse_seconds(1);
  ASSERT_TRUE(master_.Decline(decline).ok());
  EXPECT_EQ(Value("rz_master_offers_declined_total"), 1);
  EXPECT_EQ(Value("rz_master_offers_outstanding"), master_.snapshot()->offers_size());
  loop_.AdvanceTime(absl::Seconds(2));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(Value("rz_master_offers_sent_total"), 2);

  // An ACCEPT naming an unknown offer is invalid: the offer ids it names count as dropped.
  ASSERT_TRUE(Launch(s, {"no-such-offer"}, {Task("t0", "cpus:1;mem:64")}).ok());
  EXPECT_EQ(Value("rz_master_offers_dropped_total"), 1);
  EXPECT_EQ(Value("rz_master_offers_accepted_total"), 0);

  ASSERT_TRUE(Launch(s, {offers[0].id()}, {Task("t1", "cpus:1;mem:64")}).ok());
  EXPECT_EQ(Value("rz_master_offers_accepted_total"), 1);

  // The next offer times out (30 s in the fixture) and is rescinded.
  loop_.AdvanceTime(absl::Seconds(6));
  offers = Offers(s.stream->Take());
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(Value("rz_master_offers_rescinded_total"), 0);
  loop_.AdvanceTime(absl::Seconds(31));
  EXPECT_GE(Value("rz_master_offers_rescinded_total"), 1);
  (void)agent;
}

TEST_F(MetricsTest, TasksAgentsAndFrameworksByStateMatchState) {
  Agent a1 = AddAgent("cpus:4;mem:1024");
  Agent a2 = AddAgent("cpus:4;mem:1024", "h2");
  Scheduler s = Subscribe("*", "", /*failover_timeout=*/60);
  Scheduler gone = Subscribe();
  std::vector<v1::Offer> offers = Offers(s.stream->Take());
  ASSERT_FALSE(offers.empty());
  ASSERT_TRUE(
      Launch(s, {offers[0].id()},
             {Task("a", "cpus:1;mem:64"), Task("b", "cpus:1;mem:64"), Task("c", "cpus:1;mem:64")})
          .ok());
  const Agent& host = a1.id == offers[0].agent_id() ? a1 : a2;
  AgentUpdate(host, s.framework_id, "a", v1::TASK_RUNNING, "u1");
  AgentUpdate(host, s.framework_id, "b", v1::TASK_RUNNING, "u2");
  AgentUpdate(host, s.framework_id, "b", v1::TASK_FINISHED, "u3");

  v1::TeardownRequest teardown;
  *teardown.mutable_header() = gone.header();
  ASSERT_TRUE(master_.Teardown(teardown).ok());
  loop_.RunUntilIdle();

  const v1::State state = *master_.snapshot();
  std::map<std::string, int> expected;
  for (const v1::Task& task : state.tasks()) {
    ++expected[v1::TaskState_Name(task.state())];
  }
  for (const v1::Task& task : state.completed_tasks()) {
    ++expected[v1::TaskState_Name(task.state())];
  }
  EXPECT_EQ(expected["TASK_RUNNING"], 1);
  EXPECT_EQ(expected["TASK_STAGING"], 1);
  EXPECT_EQ(expected["TASK_FINISHED"], 1);
  ParsedText parsed = Scrape();
  for (int s = v1::TaskState_MIN; s <= v1::TaskState_MAX; ++s) {
    if (!v1::TaskState_IsValid(s) || s == v1::TASK_STATE_UNSPECIFIED) {
      continue;
    }
    const std::string name = v1::TaskState_Name(static_cast<v1::TaskState>(s));
    EXPECT_EQ(parsed.series[absl::StrCat("rz_master_tasks{state=\"", name, "\"}")], expected[name])
        << name;
  }
  EXPECT_EQ(parsed.series["rz_master_agents{state=\"REGISTERED\"}"], 2);
  EXPECT_EQ(parsed.series["rz_master_agents{state=\"DISCONNECTED\"}"], 0);
  EXPECT_EQ(parsed.series["rz_master_frameworks{state=\"connected\"}"], 1);
  EXPECT_EQ(parsed.series["rz_master_frameworks{state=\"completed\"}"], 1);
  EXPECT_EQ(parsed.series["rz_master_frameworks{state=\"disconnected\"}"], 0);

  // A scheduler whose stream ends is disconnected (in failover) until its timeout.
  master_.SchedulerStreamClosed(s.stream_id);
  loop_.RunUntilIdle();
  parsed = Scrape();
  EXPECT_EQ(parsed.series["rz_master_frameworks{state=\"connected\"}"], 0);
  EXPECT_EQ(parsed.series["rz_master_frameworks{state=\"disconnected\"}"], 1);
}

TEST_F(MetricsTest, PrometheusTextParsesAndCarriesTheDocumentedNames) {
  AddAgent("cpus:4;mem:1024");
  Scheduler s = Subscribe();
  loop_.AdvanceTime(absl::Seconds(2));  // Some allocation cycles.
  master_.metrics().HttpRequest("GET", "/state", 200, absl::Milliseconds(3));
  master_.metrics().GrpcCall("Scheduler.Accept", "OK", absl::Milliseconds(1));
  master_.metrics().LoopLag(absl::Microseconds(40));
  ParsedText parsed = Scrape();
  for (const char* name : kDocumentedNames) {
    EXPECT_TRUE(parsed.types.contains(name)) << "no TYPE line for " << name;
    EXPECT_TRUE(parsed.helps.contains(name)) << "no HELP line for " << name;
  }
  EXPECT_EQ(parsed.types["rz_master_offers_sent_total"], "counter");
  EXPECT_EQ(parsed.types["rz_master_tasks"], "gauge");
  EXPECT_EQ(parsed.types["rz_master_allocation_cycle_seconds"], "histogram");
  EXPECT_GE(parsed.series["rz_master_allocation_cycle_seconds_count"], 2);
  EXPECT_EQ(parsed.series["rz_master_allocation_cycle_seconds_bucket{le=\"+Inf\"}"],
            parsed.series["rz_master_allocation_cycle_seconds_count"]);
  EXPECT_EQ(parsed.series["rz_master_http_request_duration_seconds_count{code=\"200\",endpoint="
                          "\"/state\",method=\"GET\"}"],
            1);
  EXPECT_EQ(
      parsed.series["rz_master_grpc_call_duration_seconds_count{code=\"OK\",method=\"Scheduler."
                    "Accept\"}"],
      1);
  EXPECT_EQ(parsed.series[absl::StrCat("rz_master_framework_calls_total{call=\"SUBSCRIBE\","
                                       "framework_id=\"",
                                       s.framework_id, "\"}")],
            1);
}

TEST_F(MetricsTest, SnapshotJsonAndProtoCarryTheSameValuesAsTheText) {
  AddAgent("cpus:4;mem:1024");
  Scheduler s = Subscribe();
  loop_.AdvanceTime(absl::Seconds(2));
  master_.metrics().HttpRequest("GET", "", 404, absl::Milliseconds(1));
  std::shared_ptr<const MasterSnapshot> state = master_.state();
  const std::vector<prometheus::MetricFamily> families = master_.metrics().Collect(*state);
  ParsedText text = ParsePrometheus(master_.metrics().RenderText(*state));

  nlohmann::json json = nlohmann::json::parse(MetricsSnapshotJson(families));
  ASSERT_TRUE(json.is_object());
  std::map<std::string, double> from_json;
  for (const auto& [series, value] : json.items()) {
    ASSERT_TRUE(value.is_number()) << series;
    from_json[series] = value.get<double>();
  }
  // Gauges of the loop are absent without a ThreadEventLoop (the daemon sets their source).
  EXPECT_EQ(from_json, text.series);
  EXPECT_EQ(from_json["rz_master_http_request_duration_seconds_count{code=\"404\",endpoint="
                      "\"unknown\",method=\"GET\"}"],
            1);

  const v1::Metrics proto = MasterMetrics::ToProto(families);
  std::map<std::string, const v1::MetricFamily*> by_name;
  for (const v1::MetricFamily& family : proto.families()) {
    by_name[family.name()] = &family;
  }
  ASSERT_TRUE(by_name.contains("rz_master_offers_sent_total"));
  EXPECT_EQ(by_name["rz_master_offers_sent_total"]->type(), v1::MetricFamily::COUNTER);
  EXPECT_EQ(by_name["rz_master_offers_sent_total"]->metrics(0).value(),
            text.series["rz_master_offers_sent_total"]);
  ASSERT_TRUE(by_name.contains("rz_master_allocation_cycle_seconds"));
  const v1::Metric& cycles = by_name["rz_master_allocation_cycle_seconds"]->metrics(0);
  EXPECT_EQ(static_cast<double>(cycles.count()),
            text.series["rz_master_allocation_cycle_seconds_count"]);
  ASSERT_FALSE(cycles.buckets().empty());
  EXPECT_EQ(cycles.buckets(cycles.buckets_size() - 1).cumulative_count(), cycles.count());
  (void)s;
}

TEST_F(MetricsTest, FrameworkCallSeriesGoWithTheFramework) {
  Scheduler s = Subscribe();
  master_.metrics().FrameworkCall(s.framework_id, "DECLINE");
  const std::string subscribe = absl::StrCat(
      "rz_master_framework_calls_total{call=\"SUBSCRIBE\",framework_id=\"", s.framework_id, "\"}");
  EXPECT_EQ(Value(subscribe), 1);
  v1::TeardownRequest teardown;
  *teardown.mutable_header() = s.header();
  ASSERT_TRUE(master_.Teardown(teardown).ok());
  ParsedText parsed = Scrape();
  for (const auto& [series, value] : parsed.series) {
    EXPECT_THAT(series, ::testing::Not(HasSubstr(s.framework_id)));
  }
}

TEST(CallTypeTest, NamesComeFromTheRequestMessage) {
  EXPECT_EQ(CallTypeOf(v1::AcceptRequest()), "ACCEPT");
  EXPECT_EQ(CallTypeOf(v1::UpdateFrameworkRequest()), "UPDATE_FRAMEWORK");
  EXPECT_EQ(RpcOf(v1::GetStateRequest()), "GetState");
}

}  // namespace
}  // namespace rz::master
