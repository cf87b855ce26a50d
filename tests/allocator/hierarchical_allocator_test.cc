#include "allocator/hierarchical_allocator.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rz::allocator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

Resources Res(const char* text) { return *Resources::Parse(text); }

const absl::Time kT0 = absl::UnixEpoch() + absl::Hours(1);
constexpr absl::Duration kInterval = absl::Seconds(1);  // The allocation interval (AI).

#define ASSERT_OK(expr)                         \
  do {                                          \
    const absl::Status rz_status_ = (expr);     \
    ASSERT_TRUE(rz_status_.ok()) << rz_status_; \
  } while (false)

FrameworkOptions In(std::vector<std::string> roles) {
  FrameworkOptions options;
  options.roles = std::move(roles);
  return options;
}

// An offer as "framework@agent/role=resources", so expectations read as one line each.
std::string Show(const Allocation& a) {
  return a.framework.value() + "@" + a.agent.value() + "/" + a.role + "=" + a.resources.ToString();
}

std::vector<std::string> Show(const std::vector<Allocation>& offers) {
  std::vector<std::string> out;
  for (const Allocation& a : offers) {
    out.push_back(Show(a));
  }
  return out;
}

void RecoverAll(HierarchicalAllocator& allocator, const std::vector<Allocation>& offers,
                absl::Time now, absl::Duration refuse = absl::ZeroDuration()) {
  for (const Allocation& a : offers) {
    allocator.Recover(a.framework, a.agent, a.role, a.resources, now, refuse);
  }
}

// --- SCENARIOS.md A1–A11 -----------------------------------------------------------------------

TEST(HierarchicalAllocatorTest, NestedRolesCompareAsSubtrees) {  // A1
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"a/b"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw1@s1/a/b=cpus:2;mem:1024"));

  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"a/c"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw3"), In({"d/e"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  // Subtree d has share 0, subtree a 2/3 (fw2 alone in a/c would have 0).
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)), ElementsAre("fw3@s2/d/e=cpus:1;mem:512"));

  ASSERT_OK(allocator.AddFramework(FrameworkId("fw4"), In({"d/f"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s3"), Res("cpus:2;mem:1024")));
  // d 0.2 < a 0.4; inside d, d/f 0 < d/e 0.2.
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 2 * kInterval)),
              ElementsAre("fw4@s3/d/f=cpus:2;mem:1024"));
}

TEST(HierarchicalAllocatorTest, EqualSharesTakeTurnsByAllocationCount) {  // A2
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"*"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"*"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  std::map<std::string, int> offered;
  for (int i = 0; i < 10; ++i) {
    const absl::Time now = kT0 + i * kInterval;
    std::vector<Allocation> offers = allocator.Allocate(now);
    ASSERT_THAT(offers, SizeIs(1));
    ++offered[offers[0].framework.value()];
    RecoverAll(allocator, offers, now, absl::ZeroDuration());
  }
  EXPECT_EQ(offered["fw1"], 5);
  EXPECT_EQ(offered["fw2"], 5);
}

TEST(HierarchicalAllocatorTest, EachFrameworkGetsAWholeAgent) {  // A3
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:2;mem:1024")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r1"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"r2"})));
  EXPECT_THAT(Show(allocator.Allocate(kT0)),
              ElementsAre("fw1@s1/r1=cpus:2;mem:1024", "fw2@s2/r2=cpus:2;mem:1024"));
}

std::map<std::string, int> AgentsPerRole(const std::vector<Allocation>& offers) {
  std::map<std::string, int> out;
  for (const Allocation& a : offers) {
    EXPECT_EQ(a.resources, Res("cpus:2;mem:1024"));
    ++out[a.role];
  }
  return out;
}

TEST(HierarchicalAllocatorTest, WeightsScaleShares) {  // A4
  HierarchicalAllocator allocator;
  for (int i = 1; i <= 6; ++i) {
    ASSERT_OK(allocator.AddAgent(AgentId(absl::StrCat("s", i)), Res("cpus:2;mem:1024")));
  }
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r1"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"r2"})));

  std::vector<Allocation> offers = allocator.Allocate(kT0);
  EXPECT_EQ(AgentsPerRole(offers), (std::map<std::string, int>{{"r1", 3}, {"r2", 3}}));
  RecoverAll(allocator, offers, kT0);

  ASSERT_OK(allocator.SetWeight("r2", 2));
  offers = allocator.Allocate(kT0 + kInterval);
  EXPECT_EQ(AgentsPerRole(offers), (std::map<std::string, int>{{"r1", 2}, {"r2", 4}}));
  RecoverAll(allocator, offers, kT0 + kInterval);

  ASSERT_OK(allocator.AddFramework(FrameworkId("fw3"), In({"r3"})));
  ASSERT_OK(allocator.SetWeight("r3", 3));
  offers = allocator.Allocate(kT0 + 2 * kInterval);
  EXPECT_EQ(AgentsPerRole(offers), (std::map<std::string, int>{{"r1", 1}, {"r2", 2}, {"r3", 3}}));
}

TEST(HierarchicalAllocatorTest, DeclineFilterHoldsForItsDuration) {  // A5
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r"})));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  ASSERT_THAT(Show(offers), ElementsAre("fw1@s1/r=cpus:1;mem:512"));
  RecoverAll(allocator, offers, kT0, 2 * kInterval);
  EXPECT_EQ(allocator.last_cycle().active_filters, 0);  // Counted at the next cycle.

  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  EXPECT_EQ(allocator.last_cycle().active_filters, 1);
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 2 * kInterval)),
              ElementsAre("fw1@s1/r=cpus:1;mem:512"));
  EXPECT_EQ(allocator.last_cycle().active_filters, 0);
}

TEST(HierarchicalAllocatorTest, FilterLivesAtLeastUntilTheNextCycle) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r"})));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  // A 1 ms filter would have expired by the next cycle; it still blocks that one.
  RecoverAll(allocator, offers, kT0, absl::Milliseconds(1));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  EXPECT_THAT(allocator.Allocate(kT0 + 2 * kInterval), SizeIs(1));
}

TEST(HierarchicalAllocatorTest, FilterBlocksOnlySubsetsOfWhatWasRefused) {  // A6
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512;cpus(other):1;mem(other):512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"a"})));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  ASSERT_THAT(Show(offers), ElementsAre("fw1@s1/a=cpus:1;mem:512"));
  RecoverAll(allocator, offers, kT0, absl::Hours(1));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  EXPECT_THAT(allocator.Allocate(kT0 + 2 * kInterval), IsEmpty());

  // The agent gains resources: the larger offer is not a subset of the refusal.
  ASSERT_OK(allocator.UnreserveFree(AgentId("s1"), Res("cpus(other):1;mem(other):512")));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 3 * kInterval)),
              ElementsAre("fw1@s1/a=cpus:2;mem:1024"));
}

TEST(HierarchicalAllocatorTest, SuppressStopsOffersAndReviveResumesThem) {  // A7
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r"})));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  ASSERT_THAT(offers, SizeIs(1));

  // A revive with nothing new offers nothing (the framework holds the whole agent).
  ASSERT_OK(allocator.Revive(FrameworkId("fw1")));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());

  RecoverAll(allocator, offers, kT0 + kInterval, absl::Hours(1));
  ASSERT_OK(allocator.Suppress(FrameworkId("fw1")));
  for (int i = 2; i < 5; ++i) {
    EXPECT_THAT(allocator.Allocate(kT0 + i * kInterval), IsEmpty());
  }
  // Revive clears the decline filter too: the whole agent at once.
  ASSERT_OK(allocator.Revive(FrameworkId("fw1"), {"r"}));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 5 * kInterval)),
              ElementsAre("fw1@s1/r=cpus:2;mem:1024"));
}

TEST(HierarchicalAllocatorTest, SmallLeftoversAreNotOffered) {  // A8
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:0.005;mem:16")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:0.01;mem:16")));
  ASSERT_OK(allocator.AddAgent(AgentId("s3"), Res("cpus:0.005;mem:32")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r1"})));
  EXPECT_THAT(Show(allocator.Allocate(kT0)),
              ElementsAre("fw1@s2/r1=cpus:0.01;mem:16", "fw1@s3/r1=cpus:0.005;mem:32"));

  // A framework-level minimum below the default unlocks the small leftover.
  FrameworkOptions options = In({"r2"});
  options.min_allocatable["r2"] = {Res("cpus:0.001")};
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), std::move(options)));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)),
              ElementsAre("fw2@s1/r2=cpus:0.005;mem:16"));
}

TEST(HierarchicalAllocatorTest, QuotaGuaranteeIsMetFirstAndHeld) {  // A9
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("q", Quota{.guarantee = Res("cpus:2;mem:1024")}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"q"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"n"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  ASSERT_THAT(Show(offers), ElementsAre("fw1@s1/q=cpus:1;mem:512", "fw1@s2/q=cpus:1;mem:512"));
  EXPECT_EQ(allocator.Consumed("q"), Res("cpus:2;mem:1024"));

  allocator.Recover(FrameworkId("fw1"), AgentId("s2"), "q", Res("cpus:1;mem:512"), kT0,
                    2 * kInterval);
  EXPECT_EQ(allocator.Consumed("q"), Res("cpus:1;mem:512"));
  // Not offered to fw2: held as headroom for q's unmet guarantee.
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 2 * kInterval)),
              ElementsAre("fw1@s2/q=cpus:1;mem:512"));
}

TEST(HierarchicalAllocatorTest, QuotaGuaranteeOffersOnlyTheUnmetPartInStageOne) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("q", Quota{.guarantee = Res("cpus:1;mem:256")}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"q"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"n"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:4;mem:1024")));
  ASSERT_OK(allocator.AddUsed(FrameworkId("fw2"), AgentId("s1"), "n", Res("cpus:1")));
  // Stage 1 gives q exactly its guarantee. In stage 2 q and n both hold a share of 0.25; n has
  // fewer allocations, so it gets the rest.
  EXPECT_THAT(Show(allocator.Allocate(kT0)),
              ElementsAre("fw1@s1/q=cpus:1;mem:256", "fw2@s1/n=cpus:2;mem:768"));
}

TEST(HierarchicalAllocatorTest, QuotaLimitIsNeverExceeded) {  // A10
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("q", Quota{.zero_limit = {"cpus", "mem"}}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"q"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"n"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw2@s1/n=cpus:2;mem:1024"));

  ASSERT_OK(allocator.SetQuota("q", Quota{.limit = Res("cpus:1;mem:512")}));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:2;mem:1024")));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)),
              ElementsAre("fw1@s2/q=cpus:1;mem:512", "fw2@s2/n=cpus:1;mem:512"));
  EXPECT_EQ(allocator.Consumed("q"), Res("cpus:1;mem:512"));
}

TEST(HierarchicalAllocatorTest, QuotaLimitCutsOnlyLimitedNames) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("q", Quota{.limit = Res("cpus:1")}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"q/sub"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:3;mem:1024;ports:[31000-31009]")));
  // The ancestor's limit applies to q/sub; mem and ports have no limit.
  EXPECT_THAT(Show(allocator.Allocate(kT0)),
              ElementsAre("fw1@s1/q/sub=cpus:1;mem:1024;ports:[31000-31009]"));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
}

TEST(HierarchicalAllocatorTest, ReservationsGoOnlyToTheRoleAndItsDescendants) {  // A11
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus(r1):2;mem(r1):1024")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"r2"})));
  EXPECT_THAT(allocator.Allocate(kT0), IsEmpty());
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw3"), In({"r1/child"})));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)),
              ElementsAre("fw3@s1/r1/child=cpus(r1):2;mem(r1):1024"));
}

TEST(HierarchicalAllocatorTest, ReservationsNeverSatisfyAnotherRolesQuota) {  // A11
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("q", Quota{.guarantee = Res("cpus:2;mem:1024")}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fwq"), In({"q"})));
  ASSERT_OK(allocator.Suppress(FrameworkId("fwq")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fwn"), In({"n"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fwr"), In({"r"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus(r):2;mem(r):1024")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:2;mem:1024")));
  // s2's unreserved resources are q's headroom (r's reservation on s1 cannot serve q); s1 goes
  // to r only.
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fwr@s1/r=cpus(r):2;mem(r):1024"));
  EXPECT_EQ(allocator.Consumed("q"), Resources());
  EXPECT_EQ(allocator.Consumed("r"), Res("cpus:2;mem:1024"));

  ASSERT_OK(allocator.Revive(FrameworkId("fwq")));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)), ElementsAre("fwq@s2/q=cpus:2;mem:1024"));
}

// --- Beyond the scenarios ----------------------------------------------------------------------

TEST(HierarchicalAllocatorTest, FrameworksInAnInternalRoleCompeteWithItsChildren) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw_a"), In({"a"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw_ab"), In({"a/b"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  // Inside a, the pseudo-child "." (a's own frameworks) sorts before "b" on a tie.
  EXPECT_THAT(Show(allocator.Allocate(kT0)),
              ElementsAre("fw_a@s1/a=cpus:1;mem:512", "fw_ab@s2/a/b=cpus:1;mem:512"));
}

TEST(HierarchicalAllocatorTest, MultiRoleFrameworkGetsOneOfferPerAgentAndRole) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("r1", Quota{.limit = Res("cpus:1")}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"r1", "r2"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  // r1 is cut to its limit; the rest of the same agent goes to the same framework in r2.
  EXPECT_THAT(Show(allocator.Allocate(kT0)),
              ElementsAre("fw@s1/r1=cpus:1;mem:1024", "fw@s1/r2=cpus:1"));
  EXPECT_EQ(allocator.Allocated(FrameworkId("fw")), Res("cpus:2;mem:1024"));

  // Suppressing one role leaves the other.
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "r1", Res("cpus:1;mem:1024"), kT0);
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "r2", Res("cpus:1"), kT0);
  ASSERT_OK(allocator.Suppress(FrameworkId("fw"), {"r1"}));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)), ElementsAre("fw@s1/r2=cpus:2;mem:1024"));
}

TEST(HierarchicalAllocatorTest, StageOneAndStageTwoMergeIntoOneOffer) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.SetQuota("q", Quota{.guarantee = Res("cpus:1")}));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"q"})));
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:4;mem:1024")));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw@s1/q=cpus:4;mem:1024"));
  EXPECT_EQ(allocator.last_cycle().offers, 1);
}

std::vector<std::string> OfferedAgents(AttributeConstraint constraint) {
  HierarchicalAllocator allocator;
  EXPECT_TRUE(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512"), {{"zone", "a"}}).ok());
  EXPECT_TRUE(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512"), {{"zone", "b"}}).ok());
  EXPECT_TRUE(allocator.AddAgent(AgentId("s3"), Res("cpus:1;mem:512")).ok());
  FrameworkOptions options = In({"r"});
  options.constraints["r"] = {std::move(constraint)};
  EXPECT_TRUE(allocator.AddFramework(FrameworkId("fw"), std::move(options)).ok());
  std::vector<std::string> agents;
  for (const Allocation& a : allocator.Allocate(kT0)) {
    agents.push_back(a.agent.value());
  }
  return agents;
}

TEST(HierarchicalAllocatorTest, ConstraintsKeepUnusableAgentsAway) {
  using Op = AttributeConstraint::Op;
  EXPECT_THAT(OfferedAgents({.attribute = "zone", .op = Op::kExists}), ElementsAre("s1", "s2"));
  EXPECT_THAT(OfferedAgents({.attribute = "zone", .op = Op::kNotExists}), ElementsAre("s3"));
  EXPECT_THAT(OfferedAgents({.attribute = "zone", .op = Op::kEquals, .value = "a"}),
              ElementsAre("s1"));
  EXPECT_THAT(OfferedAgents({.attribute = "zone", .op = Op::kNotEquals, .value = "a"}),
              ElementsAre("s2", "s3"));
  EXPECT_THAT(OfferedAgents({.attribute = "zone", .op = Op::kMatches, .value = "[bc]"}),
              ElementsAre("s2"));
  // The whole value must match.
  EXPECT_THAT(OfferedAgents({.attribute = "zone", .op = Op::kMatches, .value = "a|b.+"}),
              ElementsAre("s1"));
}

TEST(HierarchicalAllocatorTest, ConstrainedOutFrameworkLeavesTheAgentToOthers) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512"), {{"zone", "b"}}));
  FrameworkOptions options = In({"a"});
  options.constraints["a"] = {
      {.attribute = "zone", .op = AttributeConstraint::Op::kEquals, .value = "a"}};
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), std::move(options)));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"b"})));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw2@s1/b=cpus:1;mem:512"));
}

TEST(HierarchicalAllocatorTest, MaxOutstandingOffersCapsOffers) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  FrameworkOptions options = In({"r"});
  options.max_outstanding_offers = 1;
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), std::move(options)));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw@s1/r=cpus:1;mem:512"));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  allocator.MarkUsed(FrameworkId("fw"), AgentId("s1"));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 2 * kInterval)), ElementsAre("fw@s2/r=cpus:1;mem:512"));
}

TEST(HierarchicalAllocatorTest, AFinishingTaskDoesNotEndAnOutstandingOffer) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  FrameworkOptions options = In({"r"});
  options.max_outstanding_offers = 1;
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), std::move(options)));
  // A task of fw already runs on s1; s1's rest is offered.
  ASSERT_OK(allocator.AddUsed(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:1;mem:512")));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw@s1/r=cpus:1;mem:512"));
  // The task ends while the offer is still out: the cap still holds.
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:1;mem:512"), kT0,
                    absl::ZeroDuration(), /*ends_offer=*/false);
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  // Declining the offer ends it; s1 now has more free than was declined, so it is offered
  // again, and the cap of one keeps s2 back.
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:1;mem:512"), kT0 + kInterval,
                    absl::Hours(1));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + 2 * kInterval)),
              ElementsAre("fw@s1/r=cpus:2;mem:1024"));
}

// fw1 holds gpus:1 and cpus:0.5; fw2 holds cpus:1. Counting gpus, fw1's share is 1 (the only
// GPU); without them it is 0.5/3.
std::string WinnerOfTheLeftover(AllocatorOptions options) {
  HierarchicalAllocator allocator(std::move(options));
  EXPECT_TRUE(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512;gpus:1")).ok());
  EXPECT_TRUE(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")).ok());
  EXPECT_TRUE(allocator.AddAgent(AgentId("s3"), Res("cpus:1;mem:512")).ok());
  EXPECT_TRUE(allocator.AddFramework(FrameworkId("fw1"), In({"r1"})).ok());
  EXPECT_TRUE(allocator.AddFramework(FrameworkId("fw2"), In({"r2"})).ok());
  EXPECT_TRUE(
      allocator.AddUsed(FrameworkId("fw1"), AgentId("s1"), "r1", Res("cpus:0.5;gpus:1")).ok());
  EXPECT_TRUE(allocator.AddUsed(FrameworkId("fw2"), AgentId("s2"), "r2", Res("cpus:1")).ok());
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  EXPECT_FALSE(offers.empty());
  return offers.empty() ? "" : Show(offers[0]);
}

TEST(HierarchicalAllocatorTest, FairShareExcludedResourcesDoNotWeighInShares) {
  EXPECT_EQ(WinnerOfTheLeftover({}), "fw2@s1/r2=cpus:0.5;mem:512");
  EXPECT_EQ(WinnerOfTheLeftover({.fair_share_excluded = {"gpus"}}), "fw1@s1/r1=cpus:0.5;mem:512");
}

TEST(HierarchicalAllocatorTest, InactiveAgentsAndFrameworksAreSkipped) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r"})));
  ASSERT_OK(allocator.SetAgentActive(AgentId("s1"), false));
  EXPECT_THAT(allocator.Allocate(kT0), IsEmpty());
  ASSERT_OK(allocator.SetAgentActive(AgentId("s1"), true));
  ASSERT_OK(allocator.SetFrameworkActive(FrameworkId("fw1"), false));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  ASSERT_OK(allocator.SetFrameworkActive(FrameworkId("fw1"), true));
  EXPECT_THAT(allocator.Allocate(kT0 + 2 * kInterval), SizeIs(1));
}

TEST(HierarchicalAllocatorTest, RemovingAFrameworkOrAgentReleasesWhatWasHeld) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"r1"})));
  ASSERT_THAT(allocator.Allocate(kT0), SizeIs(2));
  EXPECT_EQ(allocator.Free(AgentId("s1")), Resources());

  ASSERT_OK(allocator.RemoveFramework(FrameworkId("fw1")));
  EXPECT_EQ(allocator.Free(AgentId("s1")), Res("cpus:1;mem:512"));
  EXPECT_EQ(allocator.Allocated(FrameworkId("fw1")), Resources());
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"r2"})));
  ASSERT_THAT(allocator.Allocate(kT0 + kInterval), SizeIs(2));
  EXPECT_EQ(allocator.Consumed("r2"), Res("cpus:2;mem:1024"));

  ASSERT_OK(allocator.RemoveAgent(AgentId("s1")));
  EXPECT_EQ(allocator.Allocated(FrameworkId("fw2")), Res("cpus:1;mem:512"));
  EXPECT_EQ(allocator.Consumed("r2"), Res("cpus:1;mem:512"));
  EXPECT_EQ(allocator.Free(AgentId("s1")), Resources());
  // A recover for the removed agent is ignored.
  allocator.Recover(FrameworkId("fw2"), AgentId("s1"), "r2", Res("cpus:1;mem:512"), kT0);
  EXPECT_EQ(allocator.Allocated(FrameworkId("fw2")), Res("cpus:1;mem:512"));
}

TEST(HierarchicalAllocatorTest, DynamicReservationsMoveBetweenPools) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:4;mem:1024")));
  ASSERT_OK(allocator.ReserveFree(AgentId("s1"), Res("cpus:1;mem:256"), "eng"));
  EXPECT_EQ(allocator.Free(AgentId("s1")), Res("cpus:3;mem:768;cpus(eng):1;mem(eng):256"));
  EXPECT_EQ(allocator.Consumed("eng"), Res("cpus:1;mem:256"));
  ASSERT_OK(allocator.UnreserveFree(AgentId("s1"), Res("cpus(eng):1")));
  EXPECT_EQ(allocator.Free(AgentId("s1")), Res("cpus:4;mem:768;mem(eng):256"));
  EXPECT_EQ(allocator.Consumed("eng"), Res("mem:256"));

  // RESERVE on offered resources.
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"eng"})));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  ASSERT_THAT(Show(offers), ElementsAre("fw@s1/eng=cpus:4;mem:768;mem(eng):256"));
  ASSERT_OK(allocator.UpdateAllocation(FrameworkId("fw"), AgentId("s1"), "eng", Res("cpus:2"),
                                       Res("cpus(eng):2")));
  EXPECT_EQ(allocator.Allocated(FrameworkId("fw")), Res("cpus:2;mem:768;cpus(eng):2;mem(eng):256"));
  // Consumption: 2 cpus + 768 mem unreserved allocated, plus the reservations.
  EXPECT_EQ(allocator.Consumed("eng"), Res("cpus:4;mem:1024"));
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "eng",
                    Res("cpus:2;mem:768;cpus(eng):2;mem(eng):256"), kT0);
  EXPECT_EQ(allocator.Free(AgentId("s1")), Res("cpus:2;mem:768;cpus(eng):2;mem(eng):256"));
  EXPECT_EQ(allocator.Consumed("eng"), Res("cpus:2;mem:256"));
}

// RESERVE, then a task on part of the reservation, then the rest comes back: it is offered
// again, reserved and unreserved parts together.
TEST(HierarchicalAllocatorTest, WhatAReserveAndLaunchLeaveIsOfferedAgain) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"eng"})));
  ASSERT_THAT(allocator.Allocate(kT0), SizeIs(1));
  ASSERT_OK(allocator.UpdateAllocation(FrameworkId("fw"), AgentId("s1"), "eng",
                                       Res("cpus:1;mem:256"), Res("cpus(eng):1;mem(eng):256")));
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "eng", Res("mem(eng):128;cpus:1;mem:768"),
                    kT0, absl::ZeroDuration());
  EXPECT_EQ(allocator.Free(AgentId("s1")), Res("mem(eng):128;cpus:1;mem:768"));
  EXPECT_THAT(Show(allocator.Allocate(kT0 + kInterval)),
              ElementsAre("fw@s1/eng=cpus:1;mem:768;mem(eng):128"));
}

TEST(HierarchicalAllocatorTest, RolesReportAllocationQuotaAndStarvation) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:2;mem:1024")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw1"), In({"eng/web"})));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"ops"})));
  ASSERT_OK(allocator.SetWeight("ops", 0.5));
  ASSERT_OK(allocator.SetQuota("ops", Quota{.limit = Res("cpus:8")}));
  ASSERT_THAT(allocator.Allocate(kT0), SizeIs(1));  // eng/web (tie on share, "eng" < "ops").
  ASSERT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  ASSERT_THAT(allocator.Allocate(kT0 + 2 * kInterval), IsEmpty());

  std::vector<RoleStats> roles = allocator.Roles();
  ASSERT_THAT(roles, SizeIs(3));
  EXPECT_EQ(roles[0].role, "eng");
  EXPECT_EQ(roles[0].allocated, Res("cpus:2;mem:1024"));
  EXPECT_EQ(roles[0].cycles_since_last_offer, 2);
  EXPECT_EQ(roles[1].role, "eng/web");
  EXPECT_EQ(roles[1].consumed, Res("cpus:2;mem:1024"));
  EXPECT_EQ(roles[1].cycles_since_last_offer, 2);
  EXPECT_EQ(roles[2].role, "ops");
  EXPECT_EQ(roles[2].weight, 0.5);
  EXPECT_EQ(roles[2].quota.limit, Res("cpus:8"));
  EXPECT_EQ(roles[2].allocated, Resources());
  EXPECT_EQ(roles[2].cycles_since_last_offer, 3);  // Starving since it appeared.
  EXPECT_EQ(allocator.last_cycle().cycle, 3);
}

TEST(HierarchicalAllocatorTest, CycleStatsCountOffersAndAgents) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"r"})));
  std::vector<Allocation> offers = allocator.Allocate(kT0);
  EXPECT_EQ(allocator.last_cycle().offers, 2);
  EXPECT_EQ(allocator.last_cycle().agents_considered, 2);
  RecoverAll(allocator, offers, kT0, absl::Hours(1));
  EXPECT_THAT(allocator.Allocate(kT0 + kInterval), IsEmpty());
  EXPECT_EQ(allocator.last_cycle().offers, 0);
  EXPECT_EQ(allocator.last_cycle().active_filters, 2);
  // A new framework is a new candidate: the filtered agents are offered to it.
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw2"), In({"r"})));
  EXPECT_THAT(allocator.Allocate(kT0 + 2 * kInterval), SizeIs(2));
}

TEST(HierarchicalAllocatorTest, UpdateFrameworkChangesRolesAndKeepsAllocations) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddAgent(AgentId("s2"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"r1"})));
  ASSERT_OK(allocator.AddUsed(FrameworkId("fw"), AgentId("s1"), "r1", Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.UpdateFramework(FrameworkId("fw"), In({"r2"})));
  EXPECT_THAT(Show(allocator.Allocate(kT0)), ElementsAre("fw@s2/r2=cpus:1;mem:512"));
  EXPECT_EQ(allocator.Consumed("r1"), Res("cpus:1;mem:512"));
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "r1", Res("cpus:1;mem:512"), kT0);
  EXPECT_EQ(allocator.Consumed("r1"), Resources());
}

// --- Errors ------------------------------------------------------------------------------------

TEST(HierarchicalAllocatorTest, ErrorsNameTheBadIdOrRole) {
  HierarchicalAllocator allocator;
  ASSERT_OK(allocator.AddAgent(AgentId("s1"), Res("cpus:1;mem:512")));
  ASSERT_OK(allocator.AddFramework(FrameworkId("fw"), In({"r"})));

  absl::Status status = allocator.AddAgent(AgentId("s1"), Res("cpus:1"));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("'s1'"));
  EXPECT_EQ(allocator.AddAgent(AgentId("s2"), Resources()).code(),
            absl::StatusCode::kInvalidArgument);
  status = allocator.RemoveAgent(AgentId("nope"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("'nope'"));
  EXPECT_EQ(allocator.SetAgentActive(AgentId("nope"), false).code(), absl::StatusCode::kNotFound);

  status = allocator.AddFramework(FrameworkId("fw"), In({"r"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr("'fw'"));
  EXPECT_EQ(allocator.AddFramework(FrameworkId("fw2"), In({})).code(),
            absl::StatusCode::kInvalidArgument);
  status = allocator.AddFramework(FrameworkId("fw2"), In({"a//b"}));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'a//b'"));
  EXPECT_EQ(allocator.AddFramework(FrameworkId("fw2"), In({"r", "r"})).code(),
            absl::StatusCode::kInvalidArgument);
  FrameworkOptions options = In({"r"});
  options.min_allocatable["other"] = {Res("cpus:1")};
  status = allocator.AddFramework(FrameworkId("fw2"), options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'other'"));
  options = In({"r"});
  options.constraints["r"] = {
      {.attribute = "zone", .op = AttributeConstraint::Op::kMatches, .value = "("}};
  status = allocator.AddFramework(FrameworkId("fw2"), options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'zone'"));
  options = In({"r"});
  options.max_outstanding_offers = -1;
  EXPECT_EQ(allocator.AddFramework(FrameworkId("fw2"), options).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(allocator.UpdateFramework(FrameworkId("nope"), In({"r"})).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(allocator.RemoveFramework(FrameworkId("nope")).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(allocator.SetFrameworkActive(FrameworkId("nope"), true).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(allocator.Suppress(FrameworkId("nope")).code(), absl::StatusCode::kNotFound);
  status = allocator.Revive(FrameworkId("fw"), {"other"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'other'"));

  status = allocator.AddUsed(FrameworkId("fw"), AgentId("nope"), "r", Res("cpus:1"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("'nope'"));
  EXPECT_EQ(allocator.AddUsed(FrameworkId("nope"), AgentId("s1"), "r", Res("cpus:1")).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(allocator.AddUsed(FrameworkId("fw"), AgentId("s1"), "x", Res("cpus:1")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(allocator.AddUsed(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:2")).code(),
            absl::StatusCode::kFailedPrecondition);

  EXPECT_EQ(allocator.ReserveFree(AgentId("nope"), Res("cpus:1"), "r").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(allocator.ReserveFree(AgentId("s1"), Res("cpus:1"), "*").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(allocator.ReserveFree(AgentId("s1"), Res("cpus:5"), "r").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(allocator.UnreserveFree(AgentId("s1"), Res("cpus:1")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(allocator.UnreserveFree(AgentId("s1"), Res("cpus(r):1")).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      allocator
          .UpdateAllocation(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:1"), Res("cpus(r):1"))
          .code(),
      absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      allocator
          .UpdateAllocation(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:1"), Res("cpus(r):2"))
          .code(),
      absl::StatusCode::kInvalidArgument);

  status = allocator.SetWeight("a//b", 1);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'a//b'"));
  EXPECT_EQ(allocator.SetWeight("r", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(allocator.SetWeight("r", -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(allocator.SetQuota("*", Quota{.limit = Res("cpus:1")}).code(),
            absl::StatusCode::kInvalidArgument);
  status = allocator.SetQuota("q", Quota{.guarantee = Res("cpus:2"), .limit = Res("cpus:1")});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'q'"));
  EXPECT_EQ(allocator.SetQuota("q", Quota{.guarantee = Res("ports:[1-2]")}).code(),
            absl::StatusCode::kInvalidArgument);

  // Unknown ids are ignored where the contract says so.
  allocator.MarkUsed(FrameworkId("nope"), AgentId("s1"));
  allocator.Recover(FrameworkId("nope"), AgentId("s1"), "r", Res("cpus:1"), kT0);
  allocator.Recover(FrameworkId("fw"), AgentId("s1"), "r", Res("cpus:1"), kT0);  // Not held.
  EXPECT_EQ(allocator.Free(AgentId("s1")), Res("cpus:1;mem:512"));
}

}  // namespace
}  // namespace rz::allocator
