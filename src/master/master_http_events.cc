// GET /api/v1/events: the operator event stream over REST, one JSON OperatorEvent per line
// (chunked), the same events as the Operator.Subscribe gRPC stream. A REST stream holds one of
// the HTTP server's threads for as long as it lasts, so at most kMaxRestEventStreams run at
// once (gRPC subscribers are limited by --max_operator_event_subscribers only).
#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/http_server.h"
#include "common/proto_json.h"
#include "common/random_id.h"
#include "master/master_daemon.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

constexpr int kMaxRestEventStreams = 4;
// How long one call of the chunk provider waits for an event before it lets the server check
// the connection.
constexpr absl::Duration kPollInterval = absl::Seconds(1);

// The loop sends events here; the HTTP thread serving the stream takes them. Bounded: a client
// that falls `limit` events behind is disconnected, like a slow gRPC subscriber.
class QueueOutbox final : public Outbox<v1::OperatorEvent> {
 public:
  explicit QueueOutbox(size_t limit) : limit_(limit) {}

  void Send(v1::OperatorEvent event) override {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      return;
    }
    if (queue_.size() >= limit_) {
      closed_ = true;
      close_status_ =
          absl::ResourceExhaustedError(absl::StrCat("slow consumer: ", limit_, " events not read"));
      return;
    }
    queue_.push_back(std::move(event));
  }

  void Close(absl::Status status) override {
    absl::MutexLock lock(&mu_);
    if (!closed_) {
      closed_ = true;
      close_status_ = std::move(status);
    }
  }

  // Appends the queued events as JSON lines, waiting up to kPollInterval for one. False once
  // the stream is closed and drained (a final line carries the reason if it is an error).
  bool Next(std::string* chunk) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || !queue_.empty(); };
    mu_.AwaitWithTimeout(absl::Condition(&ready), kPollInterval);
    while (!queue_.empty()) {
      AppendProtoJson(queue_.front(), chunk);
      chunk->push_back('\n');
      queue_.pop_front();
    }
    if (closed_ && chunk->empty()) {
      if (!close_status_.ok() && !reported_) {
        reported_ = true;
        *chunk = nlohmann::json({{"code", absl::StatusCodeToString(close_status_.code())},
                                 {"message", std::string(close_status_.message())}})
                     .dump() +
                 "\n";
        return true;
      }
      return false;
    }
    return true;
  }

 private:
  const size_t limit_;
  absl::Mutex mu_;
  std::deque<v1::OperatorEvent> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool reported_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
};

HttpResponse Error(int status, const absl::Status& error) {
  return HttpResponse{.status = status,
                      .body = nlohmann::json({{"code", absl::StatusCodeToString(error.code())},
                                              {"message", std::string(error.message())}})
                                  .dump()};
}

}  // namespace

void RegisterEventsHttp(Master& master, HttpServer& http) {
  auto streams = std::make_shared<std::atomic<int>>(0);
  http.Get("/api/v1/events", [&master, streams](const HttpRequest&) {
    if (streams->fetch_add(1) >= kMaxRestEventStreams) {
      streams->fetch_sub(1);
      return Error(503, absl::ResourceExhaustedError(absl::StrCat(
                            "at most ", kMaxRestEventStreams,
                            " REST event streams run at once; use the Operator.Subscribe gRPC "
                            "stream for more")));
    }
    const StreamId id(absl::StrCat("rest-", NewUuid()));
    auto outbox = std::make_shared<QueueOutbox>(master.max_queued_operator_events());
    master.loop().Post([&master, id, outbox] { master.SubscribeOperatorEvents(id, outbox); });
    HttpResponse response;
    response.content_type = "application/x-ndjson";
    response.stream = [outbox](std::string* chunk) { return outbox->Next(chunk); };
    response.on_close = [&master, id, outbox, streams] {
      outbox->Close(absl::CancelledError("client went away"));
      master.loop().Post([&master, id] { master.OperatorEventStreamClosed(id); });
      streams->fetch_sub(1);
    };
    return response;
  });
}

}  // namespace rz::master
