#include "allocator/drf_allocator.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rz::allocator {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

Resources Res(const char* text) { return *Resources::Parse(text); }

const absl::Time kNow = absl::UnixEpoch() + absl::Hours(1);

TEST(DrfAllocatorTest, OffersGoToTheFrameworkWithTheLowestDominantShare) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:4;mem:4096")).ok());
  ASSERT_TRUE(allocator.AddAgent(AgentId("a2"), Res("cpus:4;mem:4096")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("web"), "web").ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("batch"), "batch").ok());
  ASSERT_TRUE(allocator.AddUsed(FrameworkId("batch"), AgentId("a1"), Res("cpus:2")).ok());

  std::vector<Allocation> offers = allocator.Allocate(kNow);

  // a1 goes to web (share 0 < 0.25); then web holds 2/8 cpus = 0.25 and 4096/8192 mem = 0.5,
  // so a2 goes to batch (0.25).
  ASSERT_THAT(offers, SizeIs(2));
  EXPECT_EQ(offers[0].framework, FrameworkId("web"));
  EXPECT_EQ(offers[0].resources, Res("cpus:2;mem:4096"));
  EXPECT_EQ(offers[1].framework, FrameworkId("batch"));
  EXPECT_EQ(offers[1].resources, Res("cpus:4;mem:4096"));
}

TEST(DrfAllocatorTest, TwoIdenticalAgentsGoOneToEachFramework) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:2;mem:1024")).ok());
  ASSERT_TRUE(allocator.AddAgent(AgentId("a2"), Res("cpus:2;mem:1024")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "r1").ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f2"), "r2").ok());
  std::vector<Allocation> offers = allocator.Allocate(kNow);
  ASSERT_THAT(offers, SizeIs(2));
  EXPECT_NE(offers[0].framework, offers[1].framework);
  EXPECT_EQ(offers[0].resources, Res("cpus:2;mem:1024"));
}

TEST(DrfAllocatorTest, EqualSharesTakeTurnsByAllocationCount) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:2;mem:1024")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f2"), "*").ok());
  int f1 = 0;
  for (int i = 0; i < 10; ++i) {
    std::vector<Allocation> offers = allocator.Allocate(kNow);
    ASSERT_THAT(offers, SizeIs(1));
    f1 += offers[0].framework == FrameworkId("f1");
    allocator.Recover(offers[0].framework, offers[0].agent, offers[0].resources, kNow);
  }
  EXPECT_EQ(f1, 5);
}

TEST(DrfAllocatorTest, ADeclineFilterHoldsUntilItExpires) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:1;mem:512")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  std::vector<Allocation> offers = allocator.Allocate(kNow);
  ASSERT_THAT(offers, SizeIs(1));
  allocator.Recover(FrameworkId("f1"), AgentId("a1"), offers[0].resources, kNow,
                    absl::Seconds(2));
  EXPECT_THAT(allocator.Allocate(kNow + absl::Seconds(1)), IsEmpty());
  EXPECT_THAT(allocator.Allocate(kNow + absl::Seconds(2)), SizeIs(1));
}

TEST(DrfAllocatorTest, AFilterBlocksOnlySubsetsOfWhatWasRefused) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:2;mem:1024")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f2"), "*").ok());
  ASSERT_TRUE(allocator.AddUsed(FrameworkId("f2"), AgentId("a1"), Res("cpus:1;mem:512")).ok());
  std::vector<Allocation> offers = allocator.Allocate(kNow);
  ASSERT_THAT(offers, SizeIs(1));
  ASSERT_EQ(offers[0].framework, FrameworkId("f1"));
  allocator.Recover(FrameworkId("f1"), AgentId("a1"), offers[0].resources, kNow,
                    absl::Seconds(60));
  ASSERT_TRUE(allocator.Suppress(FrameworkId("f2")).ok());
  EXPECT_THAT(allocator.Allocate(kNow), IsEmpty());
  // f2's task ends: the agent now has more free than f1 refused, so f1 is offered at once.
  allocator.Recover(FrameworkId("f2"), AgentId("a1"), Res("cpus:1;mem:512"), kNow);
  offers = allocator.Allocate(kNow);
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(offers[0].framework, FrameworkId("f1"));
  EXPECT_EQ(offers[0].resources, Res("cpus:2;mem:1024"));
}

TEST(DrfAllocatorTest, SuppressStopsOffersAndReviveResumesThem) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:1;mem:512")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  ASSERT_TRUE(allocator.Suppress(FrameworkId("f1")).ok());
  EXPECT_THAT(allocator.Allocate(kNow), IsEmpty());
  EXPECT_THAT(allocator.Allocate(kNow + absl::Seconds(5)), IsEmpty());
  ASSERT_TRUE(allocator.Revive(FrameworkId("f1")).ok());
  std::vector<Allocation> offers = allocator.Allocate(kNow);
  ASSERT_THAT(offers, SizeIs(1));
  EXPECT_EQ(offers[0].resources, Res("cpus:1;mem:512"));
}

TEST(DrfAllocatorTest, TooSmallLeftoversAreNotOffered) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("tiny"), Res("cpus:0.005;mem:16")).ok());
  ASSERT_TRUE(allocator.AddAgent(AgentId("cpu"), Res("cpus:0.01;mem:16")).ok());
  ASSERT_TRUE(allocator.AddAgent(AgentId("mem"), Res("cpus:0.005;mem:32")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  std::vector<Allocation> offers = allocator.Allocate(kNow);
  ASSERT_THAT(offers, SizeIs(2));
  EXPECT_EQ(offers[0].agent, AgentId("cpu"));
  EXPECT_EQ(offers[1].agent, AgentId("mem"));
}

TEST(DrfAllocatorTest, RemovingAnAgentReleasesWhatFrameworksHeldThere) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:2;mem:1024")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  ASSERT_THAT(allocator.Allocate(kNow), SizeIs(1));
  EXPECT_EQ(allocator.Allocated(FrameworkId("f1")), Res("cpus:2;mem:1024"));
  ASSERT_TRUE(allocator.RemoveAgent(AgentId("a1")).ok());
  EXPECT_TRUE(allocator.Allocated(FrameworkId("f1")).empty());
  EXPECT_EQ(allocator.RemoveAgent(AgentId("a1")).code(), absl::StatusCode::kNotFound);
}

TEST(DrfAllocatorTest, InactiveFrameworksGetNoOffers) {
  DrfAllocator allocator;
  ASSERT_TRUE(allocator.AddAgent(AgentId("a1"), Res("cpus:2;mem:1024")).ok());
  ASSERT_TRUE(allocator.AddFramework(FrameworkId("f1"), "*").ok());
  ASSERT_TRUE(allocator.SetFrameworkActive(FrameworkId("f1"), false).ok());
  EXPECT_THAT(allocator.Allocate(kNow), IsEmpty());
}

}  // namespace
}  // namespace rz::allocator
