// ZooKeeperUrl::Parse and ValidateZnodePath: the `--zk` flag's syntax and its errors.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "zk/zookeeper_url.h"

namespace rz::zk {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ZooKeeperUrlTest, ParsesHostsAndPath) {
  absl::StatusOr<ZooKeeperUrl> url =
      ZooKeeperUrl::Parse("zk://10.0.0.1:2181,zk2.example:2182,[::1]:2183/rz/prod");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(url->servers, ElementsAre("10.0.0.1:2181", "zk2.example:2182", "[::1]:2183"));
  EXPECT_EQ(url->path, "/rz/prod");
  EXPECT_EQ(url->connect_string(), "10.0.0.1:2181,zk2.example:2182,[::1]:2183");
  EXPECT_EQ(url->ToString(), "zk://10.0.0.1:2181,zk2.example:2182,[::1]:2183/rz/prod");
}

TEST(ZooKeeperUrlTest, ASingleHostIsEnough) {
  absl::StatusOr<ZooKeeperUrl> url = ZooKeeperUrl::Parse("zk://localhost:2181/rz");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_THAT(url->servers, ElementsAre("localhost:2181"));
  EXPECT_EQ(url->path, "/rz");
}

struct BadUrl {
  std::string url;
  std::string problem;  // What the message must say.
};

class ZooKeeperUrlErrorTest : public ::testing::TestWithParam<BadUrl> {};

TEST_P(ZooKeeperUrlErrorTest, IsInvalidArgumentSayingWhatIsWrong) {
  absl::StatusOr<ZooKeeperUrl> url = ZooKeeperUrl::Parse(GetParam().url);
  ASSERT_FALSE(url.ok()) << GetParam().url;
  EXPECT_EQ(url.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(url.status().message(), HasSubstr(GetParam().problem));
  EXPECT_THAT(url.status().message(), HasSubstr("'" + GetParam().url + "'"));
}

INSTANTIATE_TEST_SUITE_P(
    Urls, ZooKeeperUrlErrorTest,
    ::testing::Values(
        BadUrl{"", "must start with 'zk://'"},
        BadUrl{"localhost:2181/rz", "must start with 'zk://'"},
        BadUrl{"http://localhost:2181/rz", "must start with 'zk://'"},
        BadUrl{"zk:///rz", "no hosts"}, BadUrl{"zk://", "no hosts"},
        BadUrl{"zk://localhost/rz", "host 'localhost' has no port"},
        BadUrl{"zk://localhost:/rz", "bad port ''"}, BadUrl{"zk://localhost:0/rz", "bad port '0'"},
        BadUrl{"zk://localhost:65536/rz", "bad port '65536'"},
        BadUrl{"zk://localhost:21x1/rz", "bad port '21x1'"},
        BadUrl{"zk://localhost:-1/rz", "bad port '-1'"}, BadUrl{"zk://:2181/rz", "host missing"},
        BadUrl{"zk://a:1,,b:2/rz", "empty host"}, BadUrl{"zk://a:1,/rz", "empty host"},
        BadUrl{"zk://::1:2181/rz", "IPv6 addresses in brackets"},
        BadUrl{"zk://[::1/rz", "unclosed '['"}, BadUrl{"zk://user:pw@a:1/rz", "credentials"},
        BadUrl{"zk://a:2181", "the path is missing"}, BadUrl{"zk://a:2181/", "the path is missing"},
        BadUrl{"zk://a:2181/rz/", "must not end with '/'"},
        BadUrl{"zk://a:2181/rz//x", "empty component"},
        BadUrl{"zk://a:2181/rz/../x", "'.' and '..'"}, BadUrl{"zk://a:2181/./x", "'.' and '..'"}));

TEST(ValidateZnodePathTest, AcceptsAbsolutePathsOnly) {
  EXPECT_TRUE(ValidateZnodePath("/rz").ok());
  EXPECT_TRUE(ValidateZnodePath("/rz/a.b/c-d_e").ok());
  EXPECT_THAT(ValidateZnodePath("rz").message(), HasSubstr("absolute"));
  EXPECT_THAT(ValidateZnodePath("").message(), HasSubstr("absolute"));
  EXPECT_THAT(ValidateZnodePath("/").message(), HasSubstr("root znode"));
  EXPECT_THAT(ValidateZnodePath("/rz\x01").message(), HasSubstr("control character"));
}

}  // namespace
}  // namespace rz::zk
