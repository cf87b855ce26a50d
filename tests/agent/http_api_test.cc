// The agent's REST handlers on a real HttpServer (port 0), fed a hand-made snapshot.
#include "agent/http_api.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "agent/sandbox.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace rz::agent {
namespace {

using ::testing::HasSubstr;

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_dir_ = std::filesystem::path(::testing::TempDir()) /
                ("http_api_test_" + std::to_string(::getpid()));
    sandbox_ = SandboxDir(work_dir_, FrameworkId("fw"), TaskId("t1"));
    std::filesystem::create_directories(sandbox_);
    std::ofstream(sandbox_ + "/stdout") << "0123456789";
    std::ofstream(work_dir_ + "/secret") << "not for you";
    std::filesystem::create_symlink(work_dir_ + "/secret", sandbox_ + "/link");

    auto state = std::make_shared<rz::v1::AgentStateResponse>();
    state->mutable_info()->set_id("a1");
    rz::v1::Task* task = state->add_completed_tasks();
    task->set_framework_id("fw");
    task->set_task_id("t1");
    task->set_state(rz::v1::TASK_FINISHED);
    snapshot_.Publish(state);

    RegisterHttpHandlers(server_, snapshot_, work_dir_);
    absl::StatusOr<int> port = server_.Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", *port);
  }

  void TearDown() override {
    server_.Stop();
    std::filesystem::remove_all(work_dir_);
  }

  httplib::Result Get(const std::string& path) { return client_->Get(path.c_str()); }

  std::string work_dir_;
  std::string sandbox_;
  StateSnapshot snapshot_;
  HttpServer server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpApiTest, HealthIsHealthy) {
  httplib::Result result = Get("/health");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(nlohmann::json::parse(result->body)["healthy"], true);
}

TEST_F(HttpApiTest, StateServesTheSnapshotAsJson) {
  httplib::Result result = Get("/state");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  nlohmann::json state = nlohmann::json::parse(result->body);
  EXPECT_EQ(state["info"]["id"], "a1");
  EXPECT_EQ(state["registered"], false);  // Defaults are printed.
  EXPECT_EQ(state["completed_tasks"][0]["task_id"], "t1");
  EXPECT_EQ(state["completed_tasks"][0]["state"], "TASK_FINISHED");
}

TEST_F(HttpApiTest, FilesReadReturnsTheRequestedBytes) {
  httplib::Result result =
      Get("/files/read?framework_id=fw&task_id=t1&path=stdout&offset=2&length=3");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "234");
  EXPECT_EQ(result->get_header_value("X-Rz-File-Size"), "10");
  EXPECT_EQ(result->get_header_value("Content-Type"), "application/octet-stream");

  result = Get("/files/read?framework_id=fw&task_id=t1&path=stdout&offset=20");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "");
}

TEST_F(HttpApiTest, FilesReadRejectsPathsOutsideTheSandbox) {
  for (const std::string path : {"../x", "a/../../secret", "/etc/passwd", "link"}) {
    httplib::Result result = Get("/files/read?framework_id=fw&task_id=t1&path=" + path);
    ASSERT_TRUE(result) << path;
    EXPECT_EQ(result->status, 400) << path;
    EXPECT_EQ(nlohmann::json::parse(result->body)["code"], "INVALID_ARGUMENT") << path;
  }
}

TEST_F(HttpApiTest, FilesReadRejectsBadNumbers) {
  httplib::Result result = Get("/files/read?framework_id=fw&task_id=t1&path=stdout&offset=-1");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  EXPECT_THAT(result->body, HasSubstr("offset"));
}

TEST_F(HttpApiTest, FilesReadOfUnknownTaskOrFileIsNotFound) {
  httplib::Result result = Get("/files/read?framework_id=fw&task_id=t2&path=stdout");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_THAT(nlohmann::json::parse(result->body)["error"].get<std::string>(),
              HasSubstr("unknown task 't2'"));

  result = Get("/files/read?framework_id=fw&task_id=t1&path=nope");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_EQ(nlohmann::json::parse(result->body)["code"], "NOT_FOUND");
}

TEST_F(HttpApiTest, UnknownEndpointIsNotFoundWithAJsonError) {
  httplib::Result result = Get("/no/such/endpoint");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_EQ(nlohmann::json::parse(result->body)["code"], "NOT_FOUND");
}

}  // namespace
}  // namespace rz::agent
