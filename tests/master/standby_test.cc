// What a master that does not lead answers (master/standby.h): REST redirects to the leader,
// and a real gRPC server whose every call is refused UNAVAILABLE with the `rz-leader` hint.
#include "master/standby.h"

#include <memory>

#include "common/master_detector.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rz/v1/operator.grpc.pb.h"

namespace rz::master {
namespace {

v1::MasterInfo Leader() {
  v1::MasterInfo info;
  info.set_grpc_address("10.0.0.7:5050");
  info.set_http_address("http://10.0.0.7:5080");
  return info;
}

TEST(StandbyHttpTest, RedirectsToTheLeaderWithPathAndEscapedQuery) {
  KnownLeader leader;
  leader.Set(Leader());
  std::optional<HttpResponse> answer = StandbyHttpAnswer(
      leader, HttpRequest{.method = "GET",
                          .path = "/tasks",
                          .params = {{"framework_id", "a b&c"}, {"limit", "10"}}});
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 307);
  EXPECT_EQ(answer->headers["Location"],
            "http://10.0.0.7:5080/tasks?framework_id=a%20b%26c&limit=10");
  answer = StandbyHttpAnswer(leader, HttpRequest{.method = "GET", .path = "/redirect"});
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->headers["Location"], "http://10.0.0.7:5080");
}

TEST(StandbyHttpTest, AMasterTakingOverDoesNotRedirectToItself) {
  KnownLeader leader;
  leader.Set(Leader());
  leader.SetSelf(Leader().http_address());
  std::optional<HttpResponse> answer =
      StandbyHttpAnswer(leader, HttpRequest{.method = "GET", .path = "/state"});
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 503);
  EXPECT_NE(answer->body.find("taking over"), std::string::npos);
}

TEST(StandbyHttpTest, AnswersAboutItselfAndRefusesWhileNoLeaderIsKnown) {
  KnownLeader leader;
  for (const char* path : {"/health", "/version", "/flags", "/metrics"}) {
    EXPECT_FALSE(StandbyHttpAnswer(leader, HttpRequest{.method = "GET", .path = path})) << path;
  }
  std::optional<HttpResponse> answer =
      StandbyHttpAnswer(leader, HttpRequest{.method = "POST", .path = "/agents/drain"});
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 503);
  EXPECT_NE(answer->body.find("no leading master is known"), std::string::npos);
}

TEST(StandbyGrpcTest, EveryCallIsRefusedWithTheLeadersAddress) {
  KnownLeader leader;
  StandbyGrpcService service(leader);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  std::unique_ptr<v1::Operator::Stub> stub = v1::Operator::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));

  {  // No leader known yet: refused, without a hint.
    grpc::ClientContext context;
    v1::Version version;
    grpc::Status status = stub->GetVersion(&context, v1::GetVersionRequest(), &version);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_FALSE(LeaderHint(context, status).has_value());
  }
  leader.Set(Leader());
  grpc::ClientContext context;
  v1::Version version;
  grpc::Status status = stub->GetVersion(&context, v1::GetVersionRequest(), &version);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(LeaderHint(context, status), "10.0.0.7:5050");
  EXPECT_NE(status.error_message().find("10.0.0.7:5050"), std::string::npos);
  server->Shutdown();
}

}  // namespace
}  // namespace rz::master
