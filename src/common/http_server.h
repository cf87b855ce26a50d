// HttpServer: a small HTTP/1.1 JSON server (cpp-httplib underneath; its header stays out of
// ours). Handlers run on the server's own threads, so they must only read immutable snapshots
// or post to an event loop.
//
// Unknown paths answer 404 and wrong methods 405, both with a JSON error body.
//
// Thread rule: register handlers before Start(); Start/Stop from the owner.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace httplib {
class Server;
}

namespace rz {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> params;  // Query parameters (the first of each name).
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
  // If set, the body is streamed instead (Transfer-Encoding: chunked) on the server thread that
  // took the request: each call appends the next piece to `*chunk` (it may block a while, and
  // may append nothing) and returns false once the stream is over. `on_close` then runs, also
  // when the client went away. A stream holds one of the server's threads while it lasts.
  std::function<bool(std::string* chunk)> stream;
  std::function<void()> on_close;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  HttpServer();
  ~HttpServer();  // Stops the server.

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Called after each request with the method, the registered path it matched (empty for an
  // unknown path, so labels stay bounded), the status and the time from dispatch to response.
  // Runs on the server's threads. REQUIRES: before Start().
  using Observer = std::function<void(const std::string& method, const std::string& route,
                                      int status, absl::Duration latency)>;
  void SetObserver(Observer observer) { observer_ = std::move(observer); }

  // Called before the handler of every request to a registered path and method (on the
  // server's threads): a response it returns is sent instead of calling the handler. A master
  // that does not lead uses it to redirect to the leader. REQUIRES: before Start().
  using Gate = std::function<std::optional<HttpResponse>(const HttpRequest&)>;
  void SetGate(Gate gate) { gate_ = std::move(gate); }

  void Get(const std::string& path, Handler handler);
  void Post(const std::string& path, Handler handler);
  void Put(const std::string& path, Handler handler);

  // Binds `host:port` (port 0 picks a free one) and serves on a background thread. Returns the
  // bound port, or Unavailable naming the address if it cannot bind.
  absl::StatusOr<int> Start(const std::string& host, int port);

  void Stop();

 private:
  void Register(const std::string& method, const std::string& path, Handler handler);

  std::unique_ptr<httplib::Server> server_;
  std::map<std::string, std::map<std::string, Handler>> routes_;  // path → method → handler
  Observer observer_;
  Gate gate_;
  std::thread thread_;
};

}  // namespace rz
