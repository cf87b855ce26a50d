// The master's REST endpoints. Every handler reads the published snapshot; none touches the
// loop, so reads never queue behind writes.
#include <string>

#include "common/proto_json.h"
#include "common/version.h"
#include "master/master_daemon.h"
#include "nlohmann/json.hpp"

namespace rz::master {
namespace {

constexpr char kIndex[] = R"(<!doctype html>
<html><head><meta charset="utf-8"><title>rechenzentrum master</title></head>
<body><h1>rechenzentrum master</h1>
<p>The web UI arrives in a later release. REST endpoints:</p>
<ul>
<li><a href="/health">/health</a></li>
<li><a href="/version">/version</a></li>
<li><a href="/state">/state</a></li>
<li><a href="/roles">/roles</a></li>
</ul></body></html>
)";

}  // namespace

void RegisterMasterHttp(Master& master, HttpServer& http) {
  http.Get("/", [](const HttpRequest&) {
    return HttpResponse{.content_type = "text/html; charset=utf-8", .body = kIndex};
  });
  http.Get("/health", [](const HttpRequest&) {
    return HttpResponse{.body = nlohmann::json({{"healthy", true}}).dump()};
  });
  http.Get("/version", [](const HttpRequest&) {
    return HttpResponse{.body = nlohmann::json({{"version", kVersion}}).dump()};
  });
  http.Get("/state",
           [&master](const HttpRequest&) { return ProtoJsonResponse(*master.snapshot()); });
  http.Get("/roles",
           [&master](const HttpRequest&) { return ProtoJsonResponse(*master.roles_snapshot()); });
}

}  // namespace rz::master
