#include "master/master_http_util.h"

#include <chrono>
#include <future>
#include <memory>
#include <utility>

#include "common/status_convert.h"

namespace rz::master {
namespace {

constexpr auto kActionTimeout = std::chrono::seconds(30);

}  // namespace

HttpResponse ErrorResponse(const absl::Status& status) {
  return HttpResponse{.status = ToHttpCode(status), .body = ErrorJson(status)};
}

HttpResponse RunOnLoop(Master& master, std::function<void(Master&, Master::Completion)> call) {
  auto done = std::make_shared<std::promise<absl::Status>>();
  std::future<absl::Status> result = done->get_future();
  master.loop().Post([&master, call = std::move(call), done] {
    call(master, [done](absl::Status status) { done->set_value(std::move(status)); });
  });
  if (result.wait_for(kActionTimeout) != std::future_status::ready) {
    return ErrorResponse(absl::UnavailableError("the master did not answer in time"));
  }
  absl::Status status;
  try {
    status = result.get();
  } catch (const std::future_error&) {  // The loop stopped and dropped the call.
    status = absl::UnavailableError("the master is shutting down");
  }
  if (!status.ok()) {
    return ErrorResponse(status);
  }
  return HttpResponse{.body = "{}"};
}

}  // namespace rz::master
