#include "common/http_server.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace rz {
namespace {

using ::testing::HasSubstr;

TEST(HttpServerTest, ServesHandlersAndAnswersUnknownPathsWithJson404) {
  HttpServer server;
  server.Get("/hello", [](const HttpRequest& request) {
    return HttpResponse{.body = "{\"name\":\"" + request.params.at("name") + "\"}"};
  });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();

  httplib::Client client("127.0.0.1", *port);
  auto ok = client.Get("/hello?name=rz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "{\"name\":\"rz\"}");

  auto missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_THAT(missing->body, HasSubstr("\"error\""));
  EXPECT_THAT(missing->body, HasSubstr("'/nope'"));

  auto wrong_method = client.Post("/hello", "", "application/json");
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  server.Stop();
}

TEST(HttpServerTest, StartFailsClearlyWhenThePortIsTaken) {
  HttpServer first;
  absl::StatusOr<int> port = first.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok());
  HttpServer second;
  absl::StatusOr<int> again = second.Start("127.0.0.1", *port);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(again.status().message()), HasSubstr(std::to_string(*port)));
}

}  // namespace
}  // namespace rz
