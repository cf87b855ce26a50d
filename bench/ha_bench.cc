// HA failover benchmark: how long a highly available cluster takes to recover from `kill -9` of
// its leading master.
//
// The bench starts a real ZooKeeper ensemble (tests/testing/zookeeper_ensemble.h) and three real
// `rz-master` processes contending through it (--zk, --zk_session_timeout=2s). Inside this
// process it simulates N agents, each with its own AgentLink stream over real gRPC (callback
// API: a few shared connections, no thread per agent), that follow the leader through one
// ZooKeeper master detector the way src/agent/master_link.cc does (redial with backoff from
// 100 ms doubling to 10 s, at once when the detector names another leader), plus one real
// SchedulerClient (zk:// spec, resubscribe on) that holds every offer it gets.
//
// Each run kills the leader with SIGKILL and times, from the kill:
//   - the first OFFERS event the scheduler receives after resubscribing to the new leader;
//   - the new leader's REGISTERED answer to the first, half and all of the N agents;
//   - from the masters' logs: "elected leading master" (session expiry + election) and
//     "leading master: serving" (registry read from ZooKeeper, server swap).
// The killed master is started again after each run, so three always contend.
//
// Prints a table per agent count, then RESULT lines (DESIGN.md §10): the median over the runs of
// ha.failover_to_offers_ms (at 1,000 agents; other counts as ha.failover_to_offers.<N>_ms) and
// ha.reregistered.<N>_ms. A run that does not complete within --timeout is reported as such and
// left out of the medians; if none completes, no RESULT line is printed for that figure.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/civil_time.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/process.h"
#include "common/master_detector.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "rz/v1/agent.grpc.pb.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/zookeeper_ensemble.h"

ABSL_FLAG(std::string, agents, "1000,10000",
          "Comma-separated simulated agent counts; each gets a fresh cluster.");
ABSL_FLAG(int, runs, 5, "Leader kills per agent count (the figures are medians over them).");
ABSL_FLAG(int, zk_servers, 3, "ZooKeeper servers in the ensemble (1 or 3).");
ABSL_FLAG(absl::Duration, zk_session_timeout, absl::Seconds(2),
          "The masters' --zk_session_timeout.");
ABSL_FLAG(int, channels, 8,
          "gRPC connections the simulated agents share per master (agent i uses i % channels).");
ABSL_FLAG(std::string, agent_resources, "cpus:4;mem:8192", "Resources of each simulated agent.");
ABSL_FLAG(std::string, master_binary, "",
          "rz-master to start; default: src/master/rz-master in this binary's build tree.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(180),
          "Longest wait for one phase (initial registration, one failover).");
ABSL_FLAG(bool, keep_dir, false, "Keep the work dir (the masters' logs) instead of removing it.");

namespace rz {
namespace {

constexpr absl::Duration kInitialBackoff = absl::Milliseconds(100);  // As MasterLink's.
constexpr absl::Duration kMaxBackoff = absl::Seconds(10);

double Ms(absl::Duration d) { return absl::ToDoubleMilliseconds(d); }

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// ---------------------------------------------------------------------------------------------
// Simulated agents

class AgentPool;

// One AgentLink stream of one simulated agent. Deletes itself when gRPC is done with it.
class AgentCall final : public grpc::ClientBidiReactor<v1::AgentMessage, v1::MasterMessage> {
 public:
  AgentCall(AgentPool* pool, int agent, std::string address,
            std::shared_ptr<grpc::ClientContext> context)
      : pool_(pool), agent_(agent), address_(std::move(address)), context_(std::move(context)) {}

  void Begin(v1::AgentLink::Stub* stub, v1::AgentMessage register_message) {
    stub->async()->Connect(context_.get(), this);
    writing_ = true;
    current_ = std::move(register_message);
    StartWrite(&current_);
    StartRead(&in_);
    StartCall();
  }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!ok || queue_.empty()) {
        writing_ = false;
        return;
      }
      current_ = std::move(queue_.front());
      queue_.pop_front();
    }
    StartWrite(&current_);
  }
  void OnDone(const grpc::Status& status) override;

 private:
  // One write in flight; the rest wait here.
  void Send(v1::AgentMessage message) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (writing_) {
        queue_.push_back(std::move(message));
        return;
      }
      writing_ = true;
      current_ = std::move(message);
    }
    StartWrite(&current_);
  }

  AgentPool* const pool_;
  const int agent_;
  const std::string address_;
  const std::shared_ptr<grpc::ClientContext> context_;
  v1::MasterMessage in_;
  bool received_ = false;  // Reader side only.
  std::mutex mu_;
  bool writing_ = false;
  v1::AgentMessage current_;
  std::deque<v1::AgentMessage> queue_;
};

// N simulated agents following the leader. Counts, per epoch (one epoch per leader kill), the
// agents that the master answered REGISTERED and when.
class AgentPool {
 public:
  AgentPool(int count, Resources resources, int channels)
      : resources_(std::move(resources)), channels_(channels), agents_(count) {}
  ~AgentPool() { Stop(); }

  absl::Status Start(const std::string& spec) {
    absl::StatusOr<std::unique_ptr<MasterDetector>> detector = CreateMasterDetector(spec);
    if (!detector.ok()) {
      return detector.status();
    }
    detector_ = *std::move(detector);
    connector_ = std::thread([this] { ConnectLoop(); });
    {
      absl::MutexLock lock(&mu_);
      for (int i = 0; i < static_cast<int>(agents_.size()); ++i) {
        due_.emplace(absl::Now(), i);
      }
    }
    detector_->Start([this](std::optional<v1::MasterInfo> leader) { OnLeader(std::move(leader)); });
    return absl::OkStatus();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
      stopping_ = true;
    }
    // No call is started after the connector has stopped.
    if (connector_.joinable()) {
      connector_.join();
    }
    std::vector<std::shared_ptr<grpc::ClientContext>> live;
    {
      absl::MutexLock lock(&mu_);
      for (auto& [call, context] : live_) {
        live.push_back(context);
      }
    }
    // Outside mu_: a cancellation may run the call's OnDone on this thread.
    for (auto& context : live) {
      context->TryCancel();
    }
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](AgentPool* pool) ABSL_NO_THREAD_SAFETY_ANALYSIS { return pool->live_.empty(); },
          this));
    }
    detector_.reset();
  }

  // Starts counting registrations anew (before a kill).
  void NewEpoch() {
    absl::MutexLock lock(&mu_);
    ++epoch_;
    registered_ = 0;
    first_ = half_ = all_ = absl::InfinitePast();
    leader_change_ = absl::InfinitePast();
  }

  // Waits until every agent is registered in the current epoch, or `deadline`. Returns the
  // agents registered.
  int WaitAllRegistered(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(
                              +[](AgentPool* pool) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                return pool->registered_ == static_cast<int>(pool->agents_.size());
                              },
                              this),
                          deadline);
    return registered_;
  }

  struct EpochTimes {
    int registered = 0;
    absl::Time first, half, all, leader_change;
  };
  EpochTimes times() const {
    absl::MutexLock lock(&mu_);
    return {registered_, first_, half_, all_, leader_change_};
  }
  std::string leader() const {
    absl::MutexLock lock(&mu_);
    return leader_;
  }
  int size() const { return static_cast<int>(agents_.size()); }

  // From the calls (gRPC threads).
  void OnRegistered(int agent, const std::string& agent_id) {
    absl::MutexLock lock(&mu_);
    Agent& a = agents_[agent];
    a.id = agent_id;
    if (a.epoch == epoch_) {
      return;
    }
    a.epoch = epoch_;
    const absl::Time now = absl::Now();
    ++registered_;
    if (registered_ == 1) {
      first_ = now;
    }
    if (registered_ == (size() + 1) / 2) {
      half_ = now;
    }
    if (registered_ == size()) {
      all_ = now;
    }
  }

  void OnCallDone(AgentCall* call, int agent, const std::string& address, bool received,
                  const std::optional<std::string>& hint) {
    if (hint.has_value() && *hint != address && detector_ != nullptr) {
      detector_->ReportLeaderHint(*hint);
    }
    absl::MutexLock lock(&mu_);
    live_.erase(call);
    call_address_.erase(call);
    if (stopping_) {
      return;
    }
    Agent& a = agents_[agent];
    if (received) {
      a.backoff = kInitialBackoff;
    }
    if (leader_ != address) {
      a.backoff = kInitialBackoff;  // Another leader is known already: dial it at once.
      due_.emplace(absl::Now(), agent);
      kick_ = true;
    } else {
      due_.emplace(absl::Now() + a.backoff, agent);
      // A master that names itself is taking over and serves shortly.
      a.backoff = hint == address ? kInitialBackoff : std::min(a.backoff * 2, kMaxBackoff);
    }
  }

 private:
  struct Agent {
    std::string id;  // Empty until the first REGISTERED.
    int epoch = -1;  // The last epoch it was registered in.
    absl::Duration backoff = kInitialBackoff;
  };

  void OnLeader(std::optional<v1::MasterInfo> leader) {
    std::vector<std::shared_ptr<grpc::ClientContext>> stale;
    {
      absl::MutexLock lock(&mu_);
      const std::string address = leader.has_value() ? leader->grpc_address() : "";
      if (address == leader_) {
        return;
      }
      leader_ = address;
      if (address.empty()) {
        return;
      }
      leader_change_ = absl::Now();
      // As MasterLink: streams to a master that no longer leads are dropped; agents waiting
      // out a backoff dial the new leader at once.
      for (auto& [call, context] : live_) {
        if (call_address_[call] != address) {
          stale.push_back(context);
        }
      }
      std::multimap<absl::Time, int> now;
      for (auto& [when, agent] : due_) {
        agents_[agent].backoff = kInitialBackoff;
        now.emplace(absl::Now(), agent);
      }
      due_.swap(now);
      kick_ = true;
    }
    for (auto& context : stale) {
      context->TryCancel();
    }
  }

  void ConnectLoop() {
    while (true) {
      std::vector<int> dial;
      std::string address;
      {
        absl::MutexLock lock(&mu_);
        while (!stopping_) {
          const absl::Time now = absl::Now();
          if (!leader_.empty() && !due_.empty() && due_.begin()->first <= now) {
            break;
          }
          const absl::Time wake =
              leader_.empty() || due_.empty() ? now + absl::Milliseconds(50) : due_.begin()->first;
          mu_.AwaitWithDeadline(absl::Condition(
                                    +[](AgentPool* pool) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                      return pool->stopping_ || pool->kick_;
                                    },
                                    this),
                                wake);
          kick_ = false;
        }
        if (stopping_) {
          return;
        }
        const absl::Time now = absl::Now();
        while (!due_.empty() && due_.begin()->first <= now) {
          dial.push_back(due_.begin()->second);
          due_.erase(due_.begin());
        }
        address = leader_;
      }
      for (int agent : dial) {
        Dial(agent, address);
      }
    }
  }

  void Dial(int agent, const std::string& address) {
    v1::AgentMessage message;
    v1::AgentInfo* info = message.mutable_register_()->mutable_info();
    info->set_hostname(absl::StrCat("sim-agent-", agent));
    ToProto(resources_, info->mutable_resources());
    auto context = std::make_shared<grpc::ClientContext>();
    AgentCall* call = nullptr;
    v1::AgentLink::Stub* stub = nullptr;
    {
      absl::MutexLock lock(&mu_);
      info->set_id(agents_[agent].id);
      std::vector<std::unique_ptr<v1::AgentLink::Stub>>& stubs = stubs_[address];
      if (stubs.empty()) {
        for (int i = 0; i < channels_; ++i) {
          grpc::ChannelArguments args;
          // Separate connections (no shared subchannel), and gRPC's own reconnect backoff
          // no longer than ours (as MasterLink).
          args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
          args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
          args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
          args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
          stubs.push_back(v1::AgentLink::NewStub(
              grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
        }
      }
      stub = stubs[agent % channels_].get();
      call = new AgentCall(this, agent, address, context);
      live_.emplace(call, context);
      call_address_[call] = address;
    }
    call->Begin(stub, std::move(message));
  }

  const Resources resources_;
  const int channels_;
  std::unique_ptr<MasterDetector> detector_;
  std::thread connector_;

  mutable absl::Mutex mu_;
  std::vector<Agent> agents_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, int> due_ ABSL_GUARDED_BY(mu_);  // Agents to dial, by when.
  absl::flat_hash_map<AgentCall*, std::shared_ptr<grpc::ClientContext>> live_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<AgentCall*, std::string> call_address_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<std::unique_ptr<v1::AgentLink::Stub>>> stubs_
      ABSL_GUARDED_BY(mu_);
  std::string leader_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool kick_ ABSL_GUARDED_BY(mu_) = false;  // due_ gained an earlier entry.
  int epoch_ ABSL_GUARDED_BY(mu_) = 0;
  int registered_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_ ABSL_GUARDED_BY(mu_), half_ ABSL_GUARDED_BY(mu_), all_ ABSL_GUARDED_BY(mu_);
  absl::Time leader_change_ ABSL_GUARDED_BY(mu_);
};

void AgentCall::OnReadDone(bool ok) {
  if (!ok) {
    return;  // OnDone follows.
  }
  received_ = true;
  if (in_.has_registered()) {
    pool_->OnRegistered(agent_, in_.registered().agent_id());
  } else if (in_.has_ping()) {
    v1::AgentMessage pong;
    pong.mutable_pong()->set_nonce(in_.ping().nonce());
    Send(std::move(pong));
  } else if (in_.has_shutdown()) {
    LOG(WARNING) << "sim-agent-" << agent_ << " told to shut down: " << in_.shutdown().message();
  }
  in_.Clear();
  StartRead(&in_);
}

void AgentCall::OnDone(const grpc::Status& status) {
  const std::optional<std::string> hint = LeaderHint(*context_, status);
  pool_->OnCallDone(this, agent_, address_, received_, hint);
  delete this;
}

// ---------------------------------------------------------------------------------------------
// The scheduler's view

class SchedulerProbe {
 public:
  void OnEvent(const v1::Event& event) {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    if (event.has_subscribed()) {
      master_ = event.subscribed().master_info().grpc_address();
      ++subscriptions_;
      if (armed_ && subscribed_ == absl::InfinitePast()) {
        subscribed_ = now;
      }
    } else if (event.has_offers()) {
      offers_ += event.offers().offers_size();
      if (armed_ && subscribed_ != absl::InfinitePast() && first_offer_ == absl::InfinitePast()) {
        first_offer_ = now;
      }
      if (first_offer_ever_ == absl::InfinitePast()) {
        first_offer_ever_ = now;
      }
    } else if (event.has_error()) {
      LOG(WARNING) << "scheduler: ERROR event: " << event.error().message();
    }
  }
  // Times the next SUBSCRIBED and the first OFFERS after it (before a kill).
  void Arm() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
    subscribed_ = first_offer_ = absl::InfinitePast();
  }
  bool WaitFirstOffer(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(
                                     +[](SchedulerProbe* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                       return p->armed_
                                                  ? p->first_offer_ != absl::InfinitePast()
                                                  : p->first_offer_ever_ != absl::InfinitePast();
                                     },
                                     this),
                                 deadline);
  }
  bool WaitSubscribedTo(const std::string& master, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    wanted_master_ = master;
    return mu_.AwaitWithDeadline(absl::Condition(
                                     +[](SchedulerProbe* p) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                       return p->master_ == p->wanted_master_;
                                     },
                                     this),
                                 deadline);
  }
  absl::Time subscribed() const {
    absl::MutexLock lock(&mu_);
    return subscribed_;
  }
  absl::Time first_offer() const {
    absl::MutexLock lock(&mu_);
    return first_offer_;
  }
  int64_t offers() const {
    absl::MutexLock lock(&mu_);
    return offers_;
  }

 private:
  mutable absl::Mutex mu_;
  std::string master_;  // Of the last SUBSCRIBED.
  std::string wanted_master_;
  int subscriptions_ = 0;
  int64_t offers_ = 0;
  bool armed_ = false;
  absl::Time subscribed_ = absl::InfinitePast();
  absl::Time first_offer_ = absl::InfinitePast();
  absl::Time first_offer_ever_ = absl::InfinitePast();
};

// ---------------------------------------------------------------------------------------------
// Masters

struct MasterProcess {
  int slot = 0;
  int incarnation = 0;
  std::string log_path;
  std::string endpoints_path;
  std::optional<cli::Subprocess> process;
  std::string grpc_address;
};

// The time of a glog line ("W20261128 03:46:24.123456 ..." or "W1128 03:46:24.123456 ...").
std::optional<absl::Time> GlogTime(const std::string& line) {
  static const std::regex kPrefix(R"(^[IWEF](\d{4})?(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}))");
  std::smatch m;
  if (!std::regex_search(line, m, kPrefix)) {
    return std::nullopt;
  }
  auto num = [&](int i) { return std::stoi(m[i].str()); };
  const int year =
      m[1].matched ? num(1)
                   : static_cast<int>(absl::ToCivilYear(absl::Now(), absl::LocalTimeZone()).year());
  const absl::Time second = absl::FromCivil(
      absl::CivilSecond(year, num(2), num(3), num(4), num(5), num(6)), absl::LocalTimeZone());
  return second + absl::Microseconds(num(7));
}

struct LeaderLog {
  std::optional<absl::Time> elected;
  std::optional<absl::Time> recovered;  // The registry has been read and applied.
  std::optional<absl::Time> serving;
  std::string registry;  // "(F frameworks, A agents in the registry)".
};

// The first election after `after` in a master's log.
LeaderLog ReadLeaderLog(const std::string& path, absl::Time after) {
  LeaderLog log;
  absl::StatusOr<std::string> text = cli::ReadFile(path);
  if (!text.ok()) {
    return log;
  }
  for (absl::string_view line_view : absl::StrSplit(*text, '\n')) {
    const std::string line(line_view);
    std::optional<absl::Time> when = GlogTime(line);
    if (!when.has_value() || *when < after - absl::Milliseconds(5)) {
      continue;
    }
    if (!log.elected.has_value() && line.find("elected leading master") != std::string::npos) {
      log.elected = when;
    } else if (log.elected.has_value() && !log.recovered.has_value() &&
               line.find("recovered from the registry") != std::string::npos) {
      log.recovered = when;
    } else if (log.elected.has_value() && !log.serving.has_value() &&
               line.find("leading master: serving") != std::string::npos) {
      log.serving = when;
      const size_t open = line.rfind('(');
      if (open != std::string::npos) {
        log.registry = line.substr(open);
      }
    }
  }
  return log;
}

class Cluster {
 public:
  Cluster(std::string dir, std::string binary, std::string zk_url)
      : dir_(std::move(dir)), binary_(std::move(binary)), zk_url_(std::move(zk_url)) {
    for (int i = 0; i < 3; ++i) {
      masters_.push_back(MasterProcess{.slot = i});
    }
  }
  ~Cluster() {
    std::vector<cli::Subprocess*> running;
    for (MasterProcess& m : masters_) {
      if (m.process.has_value()) {
        running.push_back(&*m.process);
      }
    }
    cli::StopAll(running, absl::Seconds(5));
  }

  absl::Status StartMaster(int slot) {
    MasterProcess& m = masters_[slot];
    ++m.incarnation;
    m.log_path = absl::StrCat(dir_, "/master-", slot, ".", m.incarnation, ".log");
    m.endpoints_path = absl::StrCat(dir_, "/master-", slot, ".endpoints");
    m.grpc_address.clear();
    std::filesystem::remove(m.endpoints_path);
    cli::SpawnOptions options;
    options.argv = {binary_, "--ip=127.0.0.1", "--hostname=127.0.0.1", "--port=0", "--http_port=0",
                    absl::StrCat("--zk=", zk_url_),
                    absl::StrCat("--zk_session_timeout=",
                                 absl::FormatDuration(absl::GetFlag(FLAGS_zk_session_timeout))),
                    // Simulated agents answer pings, but a loaded machine must not make the
                    // master drop any: the bench measures failover, not liveness checks.
                    "--agent_ping_timeout=600s", "--agent_reregister_timeout=600s",
                    "--offer_timeout=0s", absl::StrCat("--endpoints_file=", m.endpoints_path)};
    options.stdout_path = m.log_path;
    options.stderr_path = m.log_path;
    absl::StatusOr<cli::Subprocess> process = cli::Subprocess::Spawn(options);
    if (!process.ok()) {
      return process.status();
    }
    m.process = *std::move(process);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      if (std::optional<int> status = m.process->Poll(); status.has_value()) {
        return absl::InternalError(absl::StrCat("rz-master ", slot, " ",
                                                cli::DescribeWaitStatus(*status), ":\n",
                                                cli::TailFile(m.log_path, 20)));
      }
      if (absl::StatusOr<std::string> text = cli::ReadFile(m.endpoints_path); text.ok()) {
        nlohmann::json endpoints =
            nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (endpoints.is_object() && endpoints.contains("grpc")) {
          m.grpc_address = endpoints["grpc"].get<std::string>();
          return absl::OkStatus();
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return absl::DeadlineExceededError(
        absl::StrCat("rz-master ", slot,
                     " wrote no endpoints file within 30 s: ", cli::TailFile(m.log_path, 20)));
  }

  // SIGKILL to the master serving `address`; returns its slot, or -1 if none does.
  int Kill(const std::string& address) {
    for (MasterProcess& m : masters_) {
      if (m.process.has_value() && m.grpc_address == address) {
        m.process->Signal(SIGKILL);
        m.process->WaitFor(absl::Seconds(10));
        m.process.reset();
        return m.slot;
      }
    }
    return -1;
  }

  const MasterProcess* Find(const std::string& address) const {
    for (const MasterProcess& m : masters_) {
      if (m.process.has_value() && m.grpc_address == address) {
        return &m;
      }
    }
    return nullptr;
  }

 private:
  const std::string dir_;
  const std::string binary_;
  const std::string zk_url_;
  std::vector<MasterProcess> masters_;
};

// ---------------------------------------------------------------------------------------------

struct RunResult {
  bool complete = false;
  int registered = 0;
  double elected_ms = -1;    // From the new leader's log.
  double recovered_ms = -1;  // From the new leader's log.
  double serving_ms = -1;    // From the new leader's log.
  double detected_ms = -1;   // The bench's detector named the new leader.
  double subscribed_ms = -1;
  double first_offer_ms = -1;
  double first_rereg_ms = -1;
  double half_rereg_ms = -1;
  double all_rereg_ms = -1;
  std::string registry;
};

std::string Cell(double ms) { return ms < 0 ? "-" : absl::StrFormat("%.0f", ms); }

struct ScenarioResult {
  int agents = 0;
  double initial_registration_ms = -1;
  std::vector<RunResult> runs;
};

absl::StatusOr<ScenarioResult> RunScenario(const testing::ZooKeeperEnsemble& zk,
                                           const std::string& dir, const std::string& binary,
                                           int agents, int runs) {
  ScenarioResult result;
  result.agents = agents;
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  const std::string url = zk.url(absl::StrCat("/rz-ha-bench-", agents));
  Cluster cluster(dir, binary, url);
  for (int slot = 0; slot < 3; ++slot) {
    RZ_RETURN_IF_ERROR(cluster.StartMaster(slot));
  }
  absl::StatusOr<Resources> resources = Resources::Parse(absl::GetFlag(FLAGS_agent_resources));
  if (!resources.ok()) {
    return resources.status();
  }
  AgentPool pool(agents, *resources, absl::GetFlag(FLAGS_channels));
  const absl::Time start = absl::Now();
  RZ_RETURN_IF_ERROR(pool.Start(url));
  if (int n = pool.WaitAllRegistered(absl::Now() + timeout); n < agents) {
    return absl::DeadlineExceededError(absl::StrCat(
        "only ", n, " of ", agents, " agents registered within ", absl::FormatDuration(timeout)));
  }
  result.initial_registration_ms = Ms(absl::Now() - start);
  std::printf("%d agents registered in %.0f ms; leader %s\n", agents,
              result.initial_registration_ms, pool.leader().c_str());
  std::fflush(stdout);

  SchedulerProbe probe;
  v1::FrameworkInfo info;
  info.set_name("ha-bench");
  info.set_failover_timeout_seconds(86400);
  scheduler::SchedulerClientOptions options;
  options.resubscribe = true;
  options.on_event = [&probe](const v1::Event& event) { probe.OnEvent(event); };
  scheduler::SchedulerClient scheduler(url, info, options);
  RZ_RETURN_IF_ERROR(scheduler.Subscribe(absl::Seconds(60)));
  if (!probe.WaitFirstOffer(absl::Now() + timeout)) {
    return absl::DeadlineExceededError("the scheduler got no offer");
  }

  for (int run = 0; run < runs; ++run) {
    // Settled: every agent and the scheduler are with the current leader.
    const std::string leader = pool.leader();
    if (!probe.WaitSubscribedTo(leader, absl::Now() + timeout)) {
      return absl::DeadlineExceededError(
          absl::StrCat("the scheduler did not subscribe to the leader ", leader));
    }
    pool.NewEpoch();
    probe.Arm();
    const absl::Time kill = absl::Now();
    const int slot = cluster.Kill(leader);
    if (slot < 0) {
      return absl::InternalError(absl::StrCat("no master of this bench serves at ", leader));
    }
    const absl::Time deadline = kill + timeout;
    RunResult r;
    r.registered = pool.WaitAllRegistered(deadline);
    const bool offered = probe.WaitFirstOffer(deadline);
    r.complete = r.registered == agents && offered;
    const AgentPool::EpochTimes times = pool.times();
    auto since = [&](absl::Time t) {
      return t == absl::InfinitePast() || t == absl::Time() ? -1.0 : Ms(t - kill);
    };
    r.detected_ms = since(times.leader_change);
    r.subscribed_ms = since(probe.subscribed());
    r.first_offer_ms = since(probe.first_offer());
    r.first_rereg_ms = since(times.first);
    r.half_rereg_ms = since(times.half);
    r.all_rereg_ms = since(times.all);
    if (const MasterProcess* m = cluster.Find(pool.leader()); m != nullptr) {
      const LeaderLog log = ReadLeaderLog(m->log_path, kill);
      r.elected_ms = log.elected.has_value() ? Ms(*log.elected - kill) : -1;
      r.recovered_ms = log.recovered.has_value() ? Ms(*log.recovered - kill) : -1;
      r.serving_ms = log.serving.has_value() ? Ms(*log.serving - kill) : -1;
      r.registry = log.registry;
    }
    std::printf(
        "  run %d: killed %s; elected %s, registry read %s, serving %s, detected %s, subscribed "
        "%s, "
        "first offer %s ms; agents back %d/%d (first %s, half %s, all %s ms) %s %s\n",
        run + 1, leader.c_str(), Cell(r.elected_ms).c_str(), Cell(r.recovered_ms).c_str(),
        Cell(r.serving_ms).c_str(), Cell(r.detected_ms).c_str(), Cell(r.subscribed_ms).c_str(),
        Cell(r.first_offer_ms).c_str(), r.registered, agents, Cell(r.first_rereg_ms).c_str(),
        Cell(r.half_rereg_ms).c_str(), Cell(r.all_rereg_ms).c_str(), r.registry.c_str(),
        r.complete ? "" : "INCOMPLETE");
    std::fflush(stdout);
    result.runs.push_back(r);
    if (!r.complete) {
      break;  // The cluster did not recover in time; later runs would measure the leftovers.
    }
    RZ_RETURN_IF_ERROR(cluster.StartMaster(slot));
  }
  scheduler.Close();
  pool.Stop();
  return result;
}

}  // namespace
}  // namespace rz

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  std::signal(SIGPIPE, SIG_IGN);

  std::vector<int> counts;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_agents), ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n <= 0) {
      std::fprintf(stderr, "ha_bench: --agents: '%s' is not a positive number\n",
                   std::string(part).c_str());
      return 2;
    }
    counts.push_back(n);
  }
  const int runs = absl::GetFlag(FLAGS_runs);
  const int zk_servers = absl::GetFlag(FLAGS_zk_servers);
  if (counts.empty() || runs <= 0 || (zk_servers != 1 && zk_servers != 3)) {
    std::fprintf(stderr, "ha_bench: need --agents, --runs > 0 and --zk_servers of 1 or 3\n");
    return 2;
  }
  std::string binary = absl::GetFlag(FLAGS_master_binary);
  if (binary.empty()) {
    absl::StatusOr<std::string> self = rz::cli::SelfDirectory();
    binary = self.ok() ? *self + "/../src/master/rz-master" : "rz-master";
  }
  if (access(binary.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "ha_bench: no rz-master at '%s' (build it, or pass --master_binary)\n",
                 binary.c_str());
    return 2;
  }
  char dir_template[] = "/tmp/rz-ha-bench-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    std::perror("ha_bench: mkdtemp");
    return 1;
  }
  const std::string dir = dir_template;

  std::printf(
      "ha_bench: %d ZooKeeper server(s), 3 masters (--zk_session_timeout=%s), agents %s, "
      "%d kill(s) each; logs in %s\n",
      zk_servers, absl::FormatDuration(absl::GetFlag(FLAGS_zk_session_timeout)).c_str(),
      absl::GetFlag(FLAGS_agents).c_str(), runs, dir.c_str());
  std::fflush(stdout);
  std::vector<rz::ScenarioResult> results;
  int status = 0;
  {
    absl::StatusOr<std::unique_ptr<rz::testing::ZooKeeperEnsemble>> zk =
        rz::testing::ZooKeeperEnsemble::Start(zk_servers);
    if (!zk.ok()) {
      std::fprintf(stderr, "ha_bench: cannot start ZooKeeper: %s\n",
                   std::string(zk.status().message()).c_str());
      return 1;
    }
    for (int count : counts) {
      absl::StatusOr<rz::ScenarioResult> result = rz::RunScenario(**zk, dir, binary, count, runs);
      if (!result.ok()) {
        std::fprintf(stderr, "ha_bench: %d agents: %s\n", count,
                     std::string(result.status().message()).c_str());
        status = 1;
        continue;
      }
      results.push_back(*std::move(result));
    }
  }

  // The table: medians over complete runs (min-max in brackets).
  std::printf("\n%-8s %-5s %-16s %-16s %-16s %-16s %-16s %-16s %-16s %-16s\n", "agents", "runs",
              "elected", "registry_read", "serving", "subscribed", "first_offer", "first_agent",
              "half_agents", "all_agents");
  auto stat = [](const std::vector<rz::RunResult>& runs, double rz::RunResult::*field) {
    std::vector<double> v;
    for (const rz::RunResult& r : runs) {
      if (r.complete && r.*field >= 0) {
        v.push_back(r.*field);
      }
    }
    if (v.empty()) {
      return std::string("-");
    }
    return absl::StrFormat("%.0f [%.0f-%.0f]", rz::Median(v), *std::min_element(v.begin(), v.end()),
                           *std::max_element(v.begin(), v.end()));
  };
  for (const rz::ScenarioResult& s : results) {
    int complete = 0;
    for (const rz::RunResult& r : s.runs) {
      complete += r.complete ? 1 : 0;
    }
    std::printf("%-8d %d/%-3zu %-16s %-16s %-16s %-16s %-16s %-16s %-16s %-16s\n", s.agents,
                complete, s.runs.size(), stat(s.runs, &rz::RunResult::elected_ms).c_str(),
                stat(s.runs, &rz::RunResult::recovered_ms).c_str(),
                stat(s.runs, &rz::RunResult::serving_ms).c_str(),
                stat(s.runs, &rz::RunResult::subscribed_ms).c_str(),
                stat(s.runs, &rz::RunResult::first_offer_ms).c_str(),
                stat(s.runs, &rz::RunResult::first_rereg_ms).c_str(),
                stat(s.runs, &rz::RunResult::half_rereg_ms).c_str(),
                stat(s.runs, &rz::RunResult::all_rereg_ms).c_str());
  }
  std::printf(
      "(ms after kill -9 of the leader; median [min-max] over complete runs. elected, "
      "registry_read (the registry read from ZooKeeper and applied) and serving (gRPC services "
      "up): the new leader's log; subscribed and first_offer: the scheduler; "
      "*_agent(s): REGISTERED answers to the simulated agents' reregistrations)\n\n");

  for (const rz::ScenarioResult& s : results) {
    std::vector<double> offers, reregistered;
    for (const rz::RunResult& r : s.runs) {
      if (r.complete) {
        offers.push_back(r.first_offer_ms);
        reregistered.push_back(r.all_rereg_ms);
      }
    }
    if (offers.empty()) {
      std::printf("(%d agents: no run completed; no RESULT)\n", s.agents);
      status = 1;
      continue;
    }
    if (s.agents == 1000) {
      std::printf("RESULT ha.failover_to_offers_ms %.0f ms\n", rz::Median(offers));
    } else {
      std::printf("RESULT ha.failover_to_offers.%d_ms %.0f ms\n", s.agents, rz::Median(offers));
    }
    std::printf("RESULT ha.reregistered.%d_ms %.0f ms\n", s.agents, rz::Median(reregistered));
  }
  if (!absl::GetFlag(FLAGS_keep_dir)) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return status;
}
