#include "common/static_master_detector.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "glog/logging.h"
#include "grpcpp/grpcpp.h"

namespace rz {
namespace {

// At most this many hinted masters wait to be asked; a client reporting the same stale hint in
// a loop must not grow memory.
constexpr size_t kMaxQueuedHints = 8;

// Empty if `address` is host:port with a port in 1..65535, else what is wrong with it.
std::string HostPortProblem(absl::string_view address) {
  if (address.empty()) {
    return "an empty address";
  }
  absl::string_view host;
  absl::string_view port;
  if (address.front() == '[') {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos || close + 1 >= address.size() ||
        address[close + 1] != ':') {
      return "an IPv6 address must be written [address]:port";
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) {
      return "no port (expected host:port)";
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return "an IPv6 address must be written [address]:port";
    }
  }
  if (host.empty()) {
    return "no host (expected host:port)";
  }
  for (const char c : host) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || c == '/' || c == '@') {
      return "a host name with a space, '/' or '@'";
    }
  }
  int number = 0;
  if (port.empty() ||
      !std::all_of(port.begin(), port.end(), [](char c) { return absl::ascii_isdigit(c); }) ||
      !absl::SimpleAtoi(port, &number) || number < 1 || number > 65535) {
    return absl::StrCat("port '", port, "' (expected a number in 1..65535)");
  }
  return "";
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ParseMasterList(const std::string& spec) {
  std::vector<std::string> masters;
  for (absl::string_view entry : absl::StrSplit(spec, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    if (const std::string problem = HostPortProblem(entry); !problem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("master list '", spec, "': entry '", entry, "' has ", problem));
    }
    if (std::find(masters.begin(), masters.end(), entry) != masters.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("master list '", spec, "': '", entry, "' is listed twice"));
    }
    masters.emplace_back(entry);
  }
  return masters;
}

StaticMasterDetector::StaticMasterDetector(std::vector<std::string> masters)
    : StaticMasterDetector(std::move(masters), Options()) {}

StaticMasterDetector::StaticMasterDetector(std::vector<std::string> masters, Options options)
    : masters_(std::move(masters)), options_(options) {
  CHECK(!masters_.empty()) << "a static master detector needs at least one master";
  absl::MutexLock lock(&mu_);
  asking_ = masters_.size() > 1;
}

StaticMasterDetector::~StaticMasterDetector() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (question_ != nullptr) {
      question_->TryCancel();
    }
  }
  if (thread_.joinable()) {
    thread_.join();
  }
}

void StaticMasterDetector::Start(std::function<void(std::optional<v1::MasterInfo>)> on_change) {
  CHECK(!thread_.joinable()) << "master detector started twice";
  on_change_ = std::move(on_change);
  thread_ = std::thread([this] { Run(); });
}

std::optional<v1::MasterInfo> StaticMasterDetector::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

void StaticMasterDetector::ReportLeaderHint(absl::string_view grpc_address) {
  if (!HostPortProblem(grpc_address).empty()) {
    LOG_EVERY_N(WARNING, 100) << "ignoring the leader hint '" << grpc_address << "': not host:port";
    return;
  }
  absl::MutexLock lock(&mu_);
  if (leader_.has_value() && leader_->grpc_address() == grpc_address) {
    return;  // Already following it.
  }
  if (!asking_ && grpc_address == masters_.front()) {
    return;
  }
  asking_ = true;
  if (hints_.size() < kMaxQueuedHints &&
      std::find(hints_.begin(), hints_.end(), grpc_address) == hints_.end()) {
    hints_.emplace_back(grpc_address);
  }
}

void StaticMasterDetector::Run() {
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    std::vector<std::string> first;
    bool asking = false;
    std::optional<std::string> last;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
      first.swap(hints_);
      asking = asking_;
      if (leader_.has_value()) {
        last = leader_->grpc_address();
      }
    }
    std::optional<std::string> found;
    if (!asking) {
      found = masters_.front();
    } else {
      if (last.has_value()) {
        first.push_back(*last);
      }
      found = FindLeader(std::move(first));
      if (!found.has_value() && masters_.size() == 1) {
        // Hints led nowhere: the one configured master is still the best guess, as it was
        // before it named another.
        found = masters_.front();
      }
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return;
      }
    }
    Report(found);

    absl::Duration wait = found.has_value() ? options_.probe_interval : backoff;
    backoff =
        found.has_value() ? options_.initial_backoff : std::min(backoff * 2, options_.max_backoff);
    absl::MutexLock lock(&mu_);
    const auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !hints_.empty();
    };
    if (!asking_) {
      mu_.Await(absl::Condition(&wake));
    } else {
      mu_.AwaitWithTimeout(absl::Condition(&wake), wait);
    }
  }
}

std::optional<std::string> StaticMasterDetector::FindLeader(std::vector<std::string> first) {
  std::vector<std::string> queue = std::move(first);
  for (size_t i = 0; i < masters_.size(); ++i) {
    queue.push_back(masters_[(next_ + i) % masters_.size()]);
  }
  absl::flat_hash_set<std::string> asked;
  for (size_t i = 0; i < queue.size(); ++i) {
    const std::string address = queue[i];
    if (!asked.insert(address).second) {
      continue;
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        return std::nullopt;
      }
    }
    Probe probe = Ask(address);
    if (probe.answer == Answer::kLeads) {
      if (auto it = std::find(masters_.begin(), masters_.end(), address); it != masters_.end()) {
        next_ = static_cast<size_t>(it - masters_.begin());
      }
      return address;
    }
    // The refusing master named the leader: ask it next, before the rest of the list.
    if (probe.hint.has_value() && !asked.contains(*probe.hint)) {
      queue.insert(queue.begin() + static_cast<std::ptrdiff_t>(i) + 1, *probe.hint);
    }
  }
  // Start the next round elsewhere, so that one master that never answers in time does not
  // delay every round.
  next_ = (next_ + 1) % masters_.size();
  return std::nullopt;
}

StaticMasterDetector::Probe StaticMasterDetector::Ask(const std::string& address) {
  std::unique_ptr<v1::Operator::Stub>& stub = stubs_[address];
  if (stub == nullptr) {
    grpc::ChannelArguments args;
    // A master that comes back must be asked again within a round, not after gRPC's own
    // reconnect backoff (up to two minutes by default).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    stub = v1::Operator::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  }
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.probe_timeout));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return {Answer::kNoAnswer, std::nullopt};
    }
    question_ = &context;
  }
  v1::Version version;
  const grpc::Status status = stub->GetVersion(&context, v1::GetVersionRequest(), &version);
  {
    absl::MutexLock lock(&mu_);
    question_ = nullptr;
  }
  if (status.ok()) {
    return {Answer::kLeads, std::nullopt};
  }
  std::optional<std::string> hint = LeaderHint(context, status);
  if (hint.has_value() && !HostPortProblem(*hint).empty()) {
    LOG_EVERY_N(WARNING, 100) << "master " << address << " named the leader '" << *hint
                              << "', which is not host:port; ignoring it";
    hint.reset();
  }
  if (hint.has_value() && *hint == address) {
    // It names itself: elected, still taking over. Clients connect and retry until it serves.
    return {Answer::kLeads, std::nullopt};
  }
  VLOG(1) << "master " << address << " does not lead: " << status.error_message()
          << (hint.has_value() ? absl::StrCat(" (leader: ", *hint, ")") : "");
  return {status.error_code() == grpc::StatusCode::UNAVAILABLE && hint.has_value()
              ? Answer::kRefuses
              : Answer::kNoAnswer,
          std::move(hint)};
}

void StaticMasterDetector::Report(const std::optional<std::string>& address) {
  std::optional<v1::MasterInfo> leader;
  if (address.has_value()) {
    leader.emplace();
    leader->set_grpc_address(*address);
    leader->set_leader(true);
  }
  {
    absl::MutexLock lock(&mu_);
    const bool same = leader_.has_value() == leader.has_value() &&
                      (!leader.has_value() || leader_->grpc_address() == leader->grpc_address());
    if (same && reported_) {
      return;
    }
    reported_ = true;
    leader_ = leader;
  }
  if (address.has_value()) {
    // One master needs no finding: say so only when it was found (or followed).
    LOG_IF(INFO, masters_.size() > 1 || *address != masters_.front())
        << "leading master: " << *address;
  } else {
    LOG(WARNING) << "no master of " << absl::StrJoin(masters_, ",") << " leads";
  }
  on_change_(std::move(leader));
}

}  // namespace rz
