#include "common/http_server.h"

#include <sys/socket.h>

#include <atomic>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_convert.h"
#include "glog/logging.h"
#include "httplib.h"

namespace rz {
namespace {

HttpRequest Translate(const httplib::Request& req) {
  HttpRequest out;
  out.method = req.method;
  out.path = req.path;
  out.body = req.body;
  for (const auto& [name, value] : req.params) {
    out.params.emplace(name, value);  // emplace keeps the first of repeated names
  }
  return out;
}

void Write(const HttpResponse& response, httplib::Response& res) {
  res.status = response.status;
  for (const auto& [name, value] : response.headers) {
    res.set_header(name, value);
  }
  if (!response.stream) {
    res.set_content(response.body, response.content_type);
    return;
  }
  res.set_chunked_content_provider(
      response.content_type,
      [stream = response.stream](size_t /*offset*/, httplib::DataSink& sink) {
        std::string chunk;
        if (!stream(&chunk)) {
          sink.done();
          return true;
        }
        // An empty chunk would end the chunked body: write only what there is.
        return chunk.empty() || sink.write(chunk.data(), chunk.size());
      },
      [on_close = response.on_close](bool /*success*/) {
        if (on_close) {
          on_close();
        }
      });
}

}  // namespace

HttpServer::HttpServer() : server_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Get(const std::string& path, Handler handler) {
  Register("GET", path, std::move(handler));
}

void HttpServer::Post(const std::string& path, Handler handler) {
  Register("POST", path, std::move(handler));
}

void HttpServer::Put(const std::string& path, Handler handler) {
  Register("PUT", path, std::move(handler));
}

void HttpServer::Register(const std::string& method, const std::string& path, Handler handler) {
  routes_[path][method] = std::move(handler);
}

absl::StatusOr<int> HttpServer::Start(const std::string& host, int port) {
  // One dispatcher for every method: known path with another method → 405, unknown → 404.
  auto dispatch = [this](const httplib::Request& req, httplib::Response& res) {
    const absl::Time start = absl::Now();
    auto path_it = routes_.find(req.path);
    struct Observe {
      const HttpServer& server;
      const httplib::Request& req;
      const httplib::Response& res;
      const std::string& route;
      absl::Time start;
      ~Observe() {
        if (server.observer_) {
          server.observer_(req.method, route, res.status, absl::Now() - start);
        }
      }
    };
    static const std::string kUnknownRoute;
    Observe observe{*this, req, res, path_it == routes_.end() ? kUnknownRoute : path_it->first,
                    start};
    if (path_it == routes_.end()) {
      Write({.status = 404,
             .body =
                 ErrorJson(absl::NotFoundError(absl::StrCat("no such endpoint '", req.path, "'")))},
            res);
      return;
    }
    auto method_it = path_it->second.find(req.method);
    if (method_it == path_it->second.end()) {
      std::vector<std::string> allowed;
      for (const auto& [method, handler] : path_it->second) {
        allowed.push_back(method);
      }
      HttpResponse response{.status = 405,
                            .body = ErrorJson(absl::InvalidArgumentError(absl::StrCat(
                                "method ", req.method, " not allowed on '", req.path, "'")))};
      response.headers["Allow"] = absl::StrJoin(allowed, ", ");
      Write(response, res);
      return;
    }
    HttpRequest request = Translate(req);
    if (gate_) {
      if (std::optional<HttpResponse> answer = gate_(request); answer.has_value()) {
        Write(*answer, res);
        return;
      }
    }
    Write(method_it->second(request), res);
  };
  server_->Get(".*", dispatch);
  server_->Post(".*", dispatch);
  server_->Put(".*", dispatch);
  server_->Delete(".*", dispatch);
  server_->Patch(".*", dispatch);

  // httplib's default also sets SO_REUSEPORT, which would let a second daemon bind the same
  // port and silently share its traffic. Keep only SO_REUSEADDR.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound < 0) {
    return absl::UnavailableError(absl::StrCat("cannot bind HTTP address '", host, ":", port, "'"));
  }
  auto listen_returned = std::make_shared<std::atomic<bool>>(false);
  thread_ = std::thread([this, listen_returned] {
    server_->listen_after_bind();
    listen_returned->store(true);
  });
  // A stop() that lands before the listen loop starts would be lost and Stop() would hang
  // joining it, so return only once the loop runs.
  while (!server_->is_running() && !listen_returned->load()) {
    std::this_thread::yield();
  }
  return bound;
}

void HttpServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace rz
