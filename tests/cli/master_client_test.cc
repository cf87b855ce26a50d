// rz::cli::GetState, which every `rz` command that reads the cluster uses, against fake masters
// on loopback gRPC (port 0): it asks the leader of a --master list, follows a standby's
// `rz-leader` hint once, and says clearly what is wrong with a bad spec or a leaderless cluster.
#include "cli/master_client.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fake_leadership.h"

namespace rz::cli {
namespace {

using ::rz::testing::FakeMasterServer;
using ::rz::testing::Leadership;
using ::testing::HasSubstr;

class CliMasterClientTest : public ::testing::Test {
 protected:
  Leadership leadership_;
  FakeMasterServer m1_{leadership_, "m1"};
  FakeMasterServer m2_{leadership_, "m2"};
};

TEST_F(CliMasterClientTest, OneAddressIsAskedDirectly) {
  leadership_.Lead("m1");
  absl::StatusOr<v1::State> state = GetState(m1_.address());
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->master().id(), "m1");
}

TEST_F(CliMasterClientTest, AStandbysHintIsFollowed) {
  leadership_.Lead("m2");
  absl::StatusOr<v1::State> state = GetState(m1_.address());  // Only the standby is named.
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->master().id(), "m2");
}

TEST_F(CliMasterClientTest, TheLeaderOfAListIsAsked) {
  leadership_.Lead("m2", /*standbys_know=*/false);
  absl::StatusOr<v1::State> state = GetState(absl::StrCat(m1_.address(), ",", m2_.address()));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->master().id(), "m2");
}

TEST_F(CliMasterClientTest, NoLeaderIsUnavailableNamingTheMasters) {
  const std::string list = absl::StrCat(m1_.address(), ",", m2_.address());
  absl::StatusOr<v1::State> state = GetState(list, absl::Milliseconds(500));
  EXPECT_EQ(state.status().code(), absl::StatusCode::kUnavailable) << state.status();
  EXPECT_THAT(std::string(state.status().message()), HasSubstr(list));
}

TEST_F(CliMasterClientTest, AStandbyThatKnowsNoLeaderIsUnavailableNamingIt) {
  absl::StatusOr<v1::State> state = GetState(m1_.address(), absl::Seconds(2));
  EXPECT_EQ(state.status().code(), absl::StatusCode::kUnavailable) << state.status();
  EXPECT_THAT(std::string(state.status().message()), HasSubstr(m1_.address()));
}

TEST_F(CliMasterClientTest, AMalformedSpecIsAnInvalidArgument) {
  absl::StatusOr<v1::State> state = GetState("127.0.0.1");
  EXPECT_EQ(state.status().code(), absl::StatusCode::kInvalidArgument) << state.status();
  EXPECT_THAT(std::string(state.status().message()), HasSubstr("no port"));
}

}  // namespace
}  // namespace rz::cli
