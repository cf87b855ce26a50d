#include "common/flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, test_port, 5050, "test flag");
ABSL_FLAG(std::string, test_name, "", "test flag");

namespace rz {
namespace {

using ::testing::HasSubstr;

TEST(FlagsTest, EnvironmentVariablesSetFlags) {
  std::string port = "RZ_TEST_PORT=6060";
  std::string name = "RZ_TEST_NAME=web";
  std::string other = "PATH=/bin";
  char* env[] = {other.data(), port.data(), name.data(), nullptr};
  ASSERT_TRUE(ApplyFlagEnvironment(env).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_port), 6060);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "web");
}

TEST(FlagsTest, ABadValueNamesTheVariable) {
  std::string port = "RZ_TEST_PORT=sixty";
  char* env[] = {port.data(), nullptr};
  absl::Status status = ApplyFlagEnvironment(env);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("RZ_TEST_PORT"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("sixty"));
}

TEST(FlagsTest, UnknownVariablesAreIgnoredUnlessStrict) {
  std::string unknown = "RZ_NO_SUCH_FLAG=1";
  char* env[] = {unknown.data(), nullptr};
  EXPECT_TRUE(ApplyFlagEnvironment(env).ok());
  absl::Status strict = ApplyFlagEnvironment(env, /*strict=*/true);
  EXPECT_EQ(strict.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(strict.message()), HasSubstr("RZ_NO_SUCH_FLAG"));
}

}  // namespace
}  // namespace rz
