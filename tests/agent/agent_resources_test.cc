#include "agent/agent_resources.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rz::agent {
namespace {

Resources Detected() {
  return DefaultResources({.cpus = 8, .memory_mb = 16384, .disk_free_mb = 1000});
}

TEST(AgentResourcesTest, DefaultsKeepMemoryAndDiskForTheSystem) {
  EXPECT_EQ(Detected().ToString(), "cpus:8;disk:900;mem:15360;ports:[31000-32000]");
  // Small machines keep half their memory, not a whole GiB.
  EXPECT_EQ(DefaultResources({.cpus = 1, .memory_mb = 1000, .disk_free_mb = 0}).Scalar("mem"), 500);
}

TEST(AgentResourcesTest, EmptyFlagMeansDetected) {
  absl::StatusOr<Resources> resolved = ResolveResources("", Detected());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(*resolved, Detected());
}

TEST(AgentResourcesTest, GivenNamesOverrideDetectedOnes) {
  absl::StatusOr<Resources> resolved =
      ResolveResources("cpus:2;ports:[5000-5001];gpus:1", Detected());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->ToString(), "cpus:2;disk:900;gpus:1;mem:15360;ports:[5000-5001]");
}

TEST(AgentResourcesTest, JsonFlagIsAccepted) {
  absl::StatusOr<Resources> resolved = ResolveResources(R"({"cpus": 1.5})", Detected());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->Scalar("cpus"), 1.5);
  EXPECT_EQ(resolved->Scalar("mem"), 15360);
}

TEST(AgentResourcesTest, MalformedFlagNamesTheBadToken) {
  absl::StatusOr<Resources> resolved = ResolveResources("cpus:abc;mem:10", Detected());
  ASSERT_FALSE(resolved.ok());
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(resolved.status().message(), "--resources: invalid scalar 'abc' for resource 'cpus'");
}

TEST(AgentResourcesTest, DetectMachineReadsThisMachine) {
  absl::StatusOr<MachineInfo> machine = DetectMachine(::testing::TempDir());
  ASSERT_TRUE(machine.ok()) << machine.status();
  EXPECT_GE(machine->cpus, 1);
  EXPECT_GT(machine->memory_mb, 0u);
  EXPECT_FALSE(DetectMachine("/no/such/dir/rz").ok());
}

}  // namespace
}  // namespace rz::agent

namespace rz::agent {
namespace {

TEST(AgentAttributesTest, ParsesNameValuePairs) {
  auto attributes = ParseAttributes("rack:r1; zone:eu-1");
  ASSERT_TRUE(attributes.ok()) << attributes.status();
  ASSERT_EQ(attributes->size(), 2u);
  EXPECT_EQ((*attributes)[0], std::make_pair(std::string("rack"), std::string("r1")));
  EXPECT_EQ((*attributes)[1], std::make_pair(std::string("zone"), std::string("eu-1")));
  EXPECT_TRUE(ParseAttributes("")->empty());
}

TEST(AgentAttributesTest, RejectsMalformedEntriesNamingThem) {
  for (const char* bad : {"rack", "ra ck:1", "rack:", "rack:1;rack:2", ":x"}) {
    auto attributes = ParseAttributes(bad);
    EXPECT_EQ(attributes.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(attributes.status().message()), ::testing::HasSubstr("--attributes"))
        << bad;
  }
}

}  // namespace
}  // namespace rz::agent
