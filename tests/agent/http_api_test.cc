// The agent's REST handlers on a real HttpServer (port 0), fed a hand-made snapshot and a real
// sandbox tree in a temporary work directory.
#include "agent/http_api.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/sandbox.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"

namespace rz::agent {
namespace {

namespace fs = std::filesystem;

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "http_api_test_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    work_dir_ = pattern;
    sandbox_ = SandboxDir(work_dir_, FrameworkId("fw"), TaskId("t1"));
    fs::create_directories(sandbox_ + "/dir");
    std::ofstream(sandbox_ + "/stdout") << "0123456789";
    std::ofstream(sandbox_ + "/dir/file") << "inside";
    std::ofstream(work_dir_ + "/secret") << "not for you";
    fs::permissions(sandbox_ + "/dir", fs::perms(0755));
    fs::permissions(sandbox_ + "/stdout", fs::perms(0644));
    // Links a task could plant: out of the sandbox, and staying inside it.
    fs::create_symlink(work_dir_ + "/secret", sandbox_ + "/link");
    fs::create_symlink("/etc/passwd", sandbox_ + "/passwd");
    fs::create_symlink(work_dir_, sandbox_ + "/out");
    fs::create_symlink("stdout", sandbox_ + "/alias");
    fs::create_symlink(sandbox_ + "/stdout", sandbox_ + "/absolute_alias");
    fs::create_symlink("dir", sandbox_ + "/dir_alias");
    // Another task's sandbox is outside this one, though inside the sandboxes directory.
    const std::string other = SandboxDir(work_dir_, FrameworkId("fw"), TaskId("t2"));
    fs::create_directories(other);
    std::ofstream(other + "/stdout") << "other task";
    fs::create_symlink("../t2/stdout", sandbox_ + "/neighbour");

    PublishState(/*recovering=*/false);
    RegisterHttpHandlers(server_, snapshot_, work_dir_);
    absl::StatusOr<int> port = server_.Start("127.0.0.1", 0);
    ASSERT_TRUE(port.ok()) << port.status();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", *port);
  }

  void TearDown() override {
    server_.Stop();
    if (!work_dir_.empty()) {
      fs::remove_all(work_dir_);
    }
  }

  void PublishState(bool recovering) {
    auto state = std::make_shared<rz::v1::AgentStateResponse>();
    state->mutable_info()->set_id("a1");
    state->set_recovering(recovering);
    rz::v1::Task* task = state->add_completed_tasks();
    task->set_framework_id("fw");
    task->set_task_id("t1");
    task->set_state(rz::v1::TASK_FINISHED);
    for (const std::string id : {"t3", "t4"}) {
      rz::v1::ContainerState* container = state->add_containers();
      container->set_container_id("c-" + id);
      container->set_framework_id("fw");
      container->set_task_id(id);
      container->set_executor_pid("4242");
      container->add_cgroups("/sys/fs/cgroup/memory/rz/c-" + id);
      container->set_sandbox(SandboxDir(work_dir_, FrameworkId("fw"), TaskId(id)));
      container->set_start_time(1700000000.5);
      rz::v1::ResourceStatistics* stats = container->mutable_statistics();
      stats->set_timestamp(1700000100.0);
      stats->set_cpus_user_time_secs(id == "t3" ? 1.25 : 2.5);
      stats->set_mem_usage_bytes(id == "t3" ? 4096 : 8192);
    }
    snapshot_.Publish(state);
  }

  httplib::Result Get(const std::string& path) { return client_->Get(path.c_str()); }

  // GETs `path` with the query `params` (escaped by the client).
  httplib::Result Get(const std::string& path, const httplib::Params& params) {
    return client_->Get(path.c_str(), params, httplib::Headers());
  }

  std::string work_dir_;
  std::string sandbox_;
  StateSnapshot snapshot_;
  HttpServer server_;
  std::unique_ptr<httplib::Client> client_;
};

std::vector<std::string> Names(const nlohmann::json& listing) {
  std::vector<std::string> names;
  for (const nlohmann::json& entry : listing) {
    names.push_back(entry["name"]);
  }
  return names;
}

nlohmann::json Entry(const nlohmann::json& listing, const std::string& name) {
  for (const nlohmann::json& entry : listing) {
    if (entry["name"] == name) {
      return entry;
    }
  }
  ADD_FAILURE() << "no entry '" << name << "' in " << listing.dump();
  return {};
}

TEST_F(HttpApiTest, HealthIsHealthyAndTellsWhetherTheAgentRecovers) {
  httplib::Result result = Get("/health");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  nlohmann::json health = nlohmann::json::parse(result->body);
  EXPECT_EQ(health["healthy"], true);
  EXPECT_EQ(health["recovering"], false);

  PublishState(/*recovering=*/true);
  result = Get("/health");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(nlohmann::json::parse(result->body)["recovering"], true);
}

TEST_F(HttpApiTest, StateServesTheSnapshotAsJson) {
  httplib::Result result = Get("/state");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  nlohmann::json state = nlohmann::json::parse(result->body);
  EXPECT_EQ(state["info"]["id"], "a1");
  EXPECT_EQ(state["registered"], false);  // Defaults are printed.
  EXPECT_EQ(state["recovering"], false);
  EXPECT_EQ(state["completed_tasks"][0]["task_id"], "t1");
  EXPECT_EQ(state["completed_tasks"][0]["state"], "TASK_FINISHED");
  EXPECT_EQ(state["containers"].size(), 2u);
}

TEST_F(HttpApiTest, StateIsUnavailableWhileTheAgentRecovers) {
  PublishState(/*recovering=*/true);
  httplib::Result result = Get("/state");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 503);
  nlohmann::json error = nlohmann::json::parse(result->body);
  EXPECT_EQ(error["code"], "UNAVAILABLE");
  EXPECT_EQ(error["message"], "agent is recovering");

  PublishState(/*recovering=*/false);
  result = Get("/state");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
}

TEST_F(HttpApiTest, ContainersListsEachContainerWithItsStatistics) {
  httplib::Result result = Get("/containers");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  nlohmann::json containers = nlohmann::json::parse(result->body);
  ASSERT_TRUE(containers.is_array());
  ASSERT_EQ(containers.size(), 2u);
  const nlohmann::json& first = containers[0];
  EXPECT_EQ(first["container_id"], "c-t3");
  EXPECT_EQ(first["framework_id"], "fw");
  EXPECT_EQ(first["task_id"], "t3");
  EXPECT_EQ(first["executor_pid"], "4242");
  EXPECT_EQ(first["cgroups"], nlohmann::json({"/sys/fs/cgroup/memory/rz/c-t3"}));
  EXPECT_EQ(first["sandbox"], SandboxDir(work_dir_, FrameworkId("fw"), TaskId("t3")));
  EXPECT_EQ(first["start_time"], 1700000000.5);
  EXPECT_EQ(first["statistics"]["cpus_user_time_secs"], 1.25);
  // The protobuf JSON mapping prints 64-bit integers as strings.
  EXPECT_EQ(first["statistics"]["mem_usage_bytes"], "4096");
  EXPECT_EQ(first["statistics"]["mem_limit_bytes"], "0");  // Defaults are printed.
  EXPECT_EQ(containers[1]["container_id"], "c-t4");
}

TEST_F(HttpApiTest, ContainersIsAnEmptyArrayWithoutContainers) {
  snapshot_.Publish(std::make_shared<rz::v1::AgentStateResponse>());
  httplib::Result result = Get("/containers");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(nlohmann::json::parse(result->body), nlohmann::json::array());
}

TEST_F(HttpApiTest, MonitorStatisticsListsEachContainersUsage) {
  httplib::Result result = Get("/monitor/statistics");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  nlohmann::json entries = nlohmann::json::parse(result->body);
  ASSERT_TRUE(entries.is_array());
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[1]["framework_id"], "fw");
  EXPECT_EQ(entries[1]["task_id"], "t4");
  EXPECT_EQ(entries[1]["container_id"], "c-t4");
  EXPECT_EQ(entries[1]["statistics"]["cpus_user_time_secs"], 2.5);
  EXPECT_EQ(entries[1]["statistics"]["mem_usage_bytes"], "8192");
  EXPECT_EQ(entries[1]["statistics"]["timestamp"], 1700000100.0);
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

TEST_F(HttpApiTest, FilesReadTakesAPathUnderTheSandboxesDirectory) {
  // Absolute, as ContainerState.sandbox names a sandbox.
  httplib::Result result = Get("/files/read", {{"path", sandbox_ + "/stdout"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(result->body, "0123456789");

  // Relative to the sandboxes directory.
  result = Get("/files/read", {{"path", "fw/t1/dir/file"}, {"offset", "1"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(result->body, "nside");
}

TEST_F(HttpApiTest, FilesReadFollowsSymlinksThatStayInsideTheSandbox) {
  for (const std::string path : {"alias", "absolute_alias"}) {
    httplib::Result result =
        Get("/files/read", {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", path}});
    ASSERT_TRUE(result) << path;
    EXPECT_EQ(result->status, 200) << path << ": " << result->body;
    EXPECT_EQ(result->body, "0123456789") << path;
  }
  httplib::Result result =
      Get("/files/read", {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", "dir_alias/file"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200) << result->body;
  EXPECT_EQ(result->body, "inside");
}

TEST_F(HttpApiTest, FilesReadRefusesASymlinkToEtcPasswd) {
  httplib::Result result =
      Get("/files/read", {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", "passwd"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 403);
  nlohmann::json error = nlohmann::json::parse(result->body);
  EXPECT_EQ(error["code"], "PERMISSION_DENIED");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("symbolic link"));
  EXPECT_THAT(result->body, ::testing::Not(HasSubstr("root:")));

  result = Get("/files/read", {{"path", sandbox_ + "/passwd"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 403);
}

TEST_F(HttpApiTest, FilesRefuseSymlinksThatLeadOutOfTheSandbox) {
  // A link to a file outside, a linked directory outside (the link in the middle of the path),
  // and a link into another task's sandbox.
  for (const std::string path : {"link", "out/secret", "out", "neighbour"}) {
    for (const std::string endpoint : {"/files/read", "/files/browse"}) {
      httplib::Result result =
          Get(endpoint, {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", path}});
      ASSERT_TRUE(result) << endpoint << " " << path;
      EXPECT_EQ(result->status, 403) << endpoint << " " << path << ": " << result->body;
      EXPECT_THAT(nlohmann::json::parse(result->body)["error"].get<std::string>(),
                  HasSubstr("leads out of the sandbox of task 't1'"))
          << endpoint << " " << path;
    }
  }
}

TEST_F(HttpApiTest, FilesRefuseDotDot) {
  for (const std::string endpoint : {"/files/read", "/files/browse"}) {
    for (const std::string path : {"..", "../x", "a/../../secret", "dir/../stdout"}) {
      httplib::Result result =
          Get(endpoint, {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", path}});
      ASSERT_TRUE(result) << endpoint << " " << path;
      EXPECT_EQ(result->status, 403) << endpoint << " " << path;
      nlohmann::json error = nlohmann::json::parse(result->body);
      EXPECT_EQ(error["code"], "PERMISSION_DENIED") << endpoint << " " << path;
      EXPECT_THAT(error["error"].get<std::string>(), HasSubstr("'..'"));
    }
    httplib::Result result = Get(endpoint, {{"path", sandbox_ + "/../../../secret"}});
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 403) << endpoint;
  }
}

TEST_F(HttpApiTest, FilesRefuseAbsolutePathsOutsideTheSandboxes) {
  for (const std::string endpoint : {"/files/read", "/files/browse"}) {
    httplib::Result result = Get(endpoint, {{"path", "/etc/passwd"}});
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 403) << endpoint;
    EXPECT_THAT(nlohmann::json::parse(result->body)["error"].get<std::string>(),
                HasSubstr("outside the sandboxes directory"));

    // Absolute while naming the task: the path must be relative to its sandbox.
    result = Get(endpoint, {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", "/etc/passwd"}});
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 403) << endpoint;

    // Above any one sandbox.
    for (const std::string& above : {work_dir_ + "/sandboxes", work_dir_ + "/sandboxes/fw"}) {
      result = Get(endpoint, {{"path", above}});
      ASSERT_TRUE(result);
      EXPECT_EQ(result->status, 403) << endpoint << " " << above;
      EXPECT_THAT(result->body, HasSubstr("not inside a task's sandbox"));
    }
  }
}

TEST_F(HttpApiTest, FilesReadRejectsBadNumbers) {
  for (const std::string query : {"offset=-1", "offset=1x", "length=abc", "length=-5"}) {
    httplib::Result result = Get("/files/read?framework_id=fw&task_id=t1&path=stdout&" + query);
    ASSERT_TRUE(result) << query;
    EXPECT_EQ(result->status, 400) << query;
    EXPECT_THAT(result->body, HasSubstr(query.substr(0, query.find('=')))) << query;
  }
}

TEST_F(HttpApiTest, FilesReadNeedsAPath) {
  httplib::Result result = Get("/files/read?framework_id=fw&task_id=t1");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  EXPECT_THAT(result->body, HasSubstr("missing parameter 'path'"));

  result = Get("/files/read?task_id=t1&path=stdout");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  EXPECT_THAT(result->body, HasSubstr("framework_id"));
}

TEST_F(HttpApiTest, FilesReadOfUnknownTaskOrFileIsNotFound) {
  httplib::Result result = Get("/files/read?framework_id=fw&task_id=t9&path=stdout");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_THAT(nlohmann::json::parse(result->body)["error"].get<std::string>(),
              HasSubstr("unknown task 't9'"));

  for (const std::string path : {"nope", "stdout/x", "dir"}) {
    result = Get("/files/read", {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", path}});
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 404) << path;
    EXPECT_EQ(nlohmann::json::parse(result->body)["code"], "NOT_FOUND") << path;
  }

  // A sandbox that does not exist.
  result = Get("/files/read", {{"path", "fw/t9/stdout"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
}

TEST_F(HttpApiTest, FilesReadIsBoundedPerCall) {
  const std::string big(kMaxReadLength + 10, 'x');
  std::ofstream(sandbox_ + "/big") << big;
  httplib::Result result =
      Get("/files/read", {{"path", sandbox_ + "/big"}, {"length", std::to_string(2 * big.size())}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body.size(), static_cast<size_t>(kMaxReadLength));
  EXPECT_EQ(result->get_header_value("X-Rz-File-Size"), std::to_string(big.size()));

  result =
      Get("/files/read", {{"path", sandbox_ + "/big"}, {"offset", std::to_string(kMaxReadLength)}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, std::string(10, 'x'));
}

TEST_F(HttpApiTest, FilesReadOfAFifoAnswersAtOnce) {
  ASSERT_EQ(::mkfifo((sandbox_ + "/fifo").c_str(), 0644), 0);
  httplib::Result result = Get("/files/read", {{"path", sandbox_ + "/fifo"}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_THAT(result->body, HasSubstr("not a regular file"));
}

TEST_F(HttpApiTest, FilesBrowseListsADirectory) {
  httplib::Result result = Get("/files/browse?framework_id=fw&task_id=t1");
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  nlohmann::json listing = nlohmann::json::parse(result->body);
  EXPECT_THAT(Names(listing), ElementsAre("absolute_alias", "alias", "dir", "dir_alias", "link",
                                          "neighbour", "out", "passwd", "stdout"));
  const nlohmann::json dir = Entry(listing, "dir");
  EXPECT_EQ(dir["path"], "dir");
  EXPECT_EQ(dir["is_dir"], true);
  EXPECT_EQ(dir["mode"], "drwxr-xr-x");
  const nlohmann::json stdout_entry = Entry(listing, "stdout");
  EXPECT_EQ(stdout_entry["is_dir"], false);
  EXPECT_EQ(stdout_entry["size"], 10);
  EXPECT_EQ(stdout_entry["mode"], "-rw-r--r--");
  EXPECT_GT(stdout_entry["mtime"].get<double>(), 1.6e9);
  // Links are listed as links, not followed.
  const nlohmann::json passwd = Entry(listing, "passwd");
  EXPECT_THAT(passwd["mode"].get<std::string>(), StartsWith("l"));
  EXPECT_EQ(passwd["is_dir"], false);
  EXPECT_EQ(Entry(listing, "out")["is_dir"], false);

  result = Get("/files/browse?framework_id=fw&task_id=t1&path=dir");
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  listing = nlohmann::json::parse(result->body);
  ASSERT_EQ(listing.size(), 1u);
  EXPECT_EQ(listing[0]["path"], "dir/file");
  EXPECT_EQ(listing[0]["size"], 6);
}

TEST_F(HttpApiTest, FilesBrowseByAbsolutePathGivesPathsToPassBack) {
  httplib::Result result = Get("/files/browse", {{"path", sandbox_ + "/"}});
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  nlohmann::json listing = nlohmann::json::parse(result->body);
  const std::string path = Entry(listing, "stdout")["path"];
  EXPECT_EQ(path, sandbox_ + "/stdout");

  result = Get("/files/read", {{"path", path}});
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 200);
  EXPECT_EQ(result->body, "0123456789");

  // A symlinked directory that stays inside is browsed.
  result = Get("/files/browse", {{"path", sandbox_ + "/dir_alias"}});
  ASSERT_TRUE(result);
  ASSERT_EQ(result->status, 200) << result->body;
  EXPECT_THAT(Names(nlohmann::json::parse(result->body)), ElementsAre("file"));
}

TEST_F(HttpApiTest, FilesBrowseOfAFileOrAMissingDirectoryIsNotFound) {
  for (const std::string path : {"stdout", "nope"}) {
    httplib::Result result =
        Get("/files/browse", {{"framework_id", "fw"}, {"task_id", "t1"}, {"path", path}});
    ASSERT_TRUE(result);
    EXPECT_EQ(result->status, 404) << path;
    EXPECT_EQ(nlohmann::json::parse(result->body)["code"], "NOT_FOUND") << path;
  }
  httplib::Result result = Get("/files/browse");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 400);
  EXPECT_THAT(result->body, HasSubstr("missing parameter 'path'"));
}

// A task may swap a directory on the path for a symbolic link between the agent's check and its
// open. The race is real: a thread exchanges the two as fast as it can while reads go on; no read
// may ever return the file outside.
TEST_F(HttpApiTest, FilesReadCannotBeRacedOutOfTheSandbox) {
  // A deep path below the swapped directory widens the window between the check and the open.
  std::string deep;
  for (int i = 0; i < 40; ++i) {
    deep += "/d";
  }
  fs::create_directories(sandbox_ + "/swap" + deep);
  std::ofstream(sandbox_ + "/swap" + deep + "/secret") << "inside";
  fs::create_directories(work_dir_ + "/outside" + deep);
  std::ofstream(work_dir_ + "/outside" + deep + "/secret") << "not for you";
  fs::create_symlink(work_dir_ + "/outside", sandbox_ + "/swap_link");
  std::atomic<bool> stop = false;
  std::atomic<int> exchanges = 0;
  std::thread swapper([&] {
    const std::string a = sandbox_ + "/swap";
    const std::string b = sandbox_ + "/swap_link";
    while (!stop) {
      if (::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0) {
        ++exchanges;
      }
    }
  });
  int served = 0;
  int refused = 0;
  std::string unexpected;  // The first answer that is neither the inside file nor a 403.
  for (int i = 0; i < 1000 && unexpected.empty(); ++i) {
    httplib::Result result = Get("/files/read", {{"path", sandbox_ + "/swap" + deep + "/secret"}});
    if (result && result->status == 200 && result->body == "inside") {
      ++served;
    } else if (result && result->status == 403) {
      ++refused;
    } else {
      unexpected = result ? absl::StrCat("read ", i, ": ", result->status, " ", result->body)
                          : absl::StrCat("read ", i, ": no answer");
    }
  }
  stop = true;
  swapper.join();
  EXPECT_EQ(unexpected, "");
  EXPECT_GT(exchanges, 0);
  // Which of the two answers each read gets depends on the scheduler; both are correct.
  RecordProperty("served", served);
  RecordProperty("refused", refused);
}

TEST(FileModeStringTest, MatchesLsLong) {
  EXPECT_EQ(FileModeString(S_IFDIR | 0755), "drwxr-xr-x");
  EXPECT_EQ(FileModeString(S_IFREG | 0640), "-rw-r-----");
  EXPECT_EQ(FileModeString(S_IFLNK | 0777), "lrwxrwxrwx");
  EXPECT_EQ(FileModeString(S_IFREG | S_ISUID | 0755), "-rwsr-xr-x");
  EXPECT_EQ(FileModeString(S_IFREG | S_ISGID | 0644), "-rw-r-Sr--");
  EXPECT_EQ(FileModeString(S_IFDIR | S_ISVTX | 0777), "drwxrwxrwt");
  EXPECT_EQ(FileModeString(S_IFIFO | 0600), "prw-------");
}

TEST_F(HttpApiTest, UnknownEndpointIsNotFoundWithAJsonError) {
  httplib::Result result = Get("/no/such/endpoint");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->status, 404);
  EXPECT_EQ(nlohmann::json::parse(result->body)["code"], "NOT_FOUND");
}

}  // namespace
}  // namespace rz::agent
