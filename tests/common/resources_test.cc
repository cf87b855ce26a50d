#include "common/resources.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace rz {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Type = ResourceEntry::Type;

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

// Parses `text`, failing the test (and returning empty resources) if it does not parse.
Resources Res(std::string_view text) {
  absl::StatusOr<Resources> resources = Resources::Parse(text);
  EXPECT_TRUE(resources.ok()) << "'" << text << "': " << resources.status();
  return resources.ok() ? *resources : Resources();
}

// Succeeds if `status` is InvalidArgument and its message contains `needle`.
::testing::AssertionResult IsInvalidNaming(const absl::Status& status, std::string_view needle) {
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected InvalidArgument, got " << status;
  }
  if (status.message().find(absl::string_view(needle.data(), needle.size())) ==
      absl::string_view::npos) {
    return ::testing::AssertionFailure()
           << "message '" << status.message() << "' does not contain \"" << needle << "\"";
  }
  return ::testing::AssertionSuccess();
}

// Succeeds if parsing `text` fails with InvalidArgument whose message contains `needle`.
::testing::AssertionResult ParseFailsNaming(std::string_view text, std::string_view needle) {
  absl::StatusOr<Resources> resources = Resources::Parse(text);
  if (resources.ok()) {
    return ::testing::AssertionFailure()
           << "'" << text << "' parsed as '" << resources->ToString() << "'";
  }
  return IsInvalidNaming(resources.status(), needle) << " (input '" << text << "')";
}

std::string MessageOf(std::string_view text) {
  absl::StatusOr<Resources> resources = Resources::Parse(text);
  return resources.ok() ? "<ok>" : std::string(resources.status().message());
}

ResourceEntry Scalar(std::string name, int64_t fixed, std::string role = kDefaultRole) {
  ResourceEntry entry;
  entry.name = std::move(name);
  entry.role = std::move(role);
  entry.type = Type::kScalar;
  entry.scalar = fixed;
  return entry;
}

ResourceEntry Ranges(std::string name, std::vector<ValueRange> ranges,
                     std::string role = kDefaultRole) {
  ResourceEntry entry;
  entry.name = std::move(name);
  entry.role = std::move(role);
  entry.type = Type::kRanges;
  entry.ranges = std::move(ranges);
  return entry;
}

ResourceEntry Set(std::string name, std::vector<std::string> items,
                  std::string role = kDefaultRole) {
  ResourceEntry entry;
  entry.name = std::move(name);
  entry.role = std::move(role);
  entry.type = Type::kSet;
  entry.items = std::move(items);
  return entry;
}

// ---------------------------------------------------------------------------------------------
// Parsing good input

TEST(ResourcesTest, ParseReadsScalarsRolesRangesAndSets) {
  Resources resources =
      Res("cpus:2;mem:1024;disk(eng/web):512;ports:[31000-32000,33000-33010];zones:{a,b}");

  EXPECT_THAT(
      resources.entries(),
      ElementsAre(Scalar("cpus", 2000), Scalar("disk", 512000, "eng/web"), Scalar("mem", 1024000),
                  Ranges("ports", {{31000, 32000}, {33000, 33010}}), Set("zones", {"a", "b"})));
}

TEST(ResourcesTest, ParseOfEmptyOrBlankTextIsEmpty) {
  EXPECT_TRUE(Res("").empty());
  EXPECT_TRUE(Res("   \t ").empty());
  EXPECT_EQ(Res("").ToString(), "");
}

TEST(ResourcesTest, ParseToleratesWhitespaceAroundTokens) {
  EXPECT_EQ(Res(" cpus : 2 ; disk ( eng/web ) : 512 ;ports : [ 1 - 2 , 5-6 ] ; zones : { b , a } "),
            Res("cpus:2;disk(eng/web):512;ports:[1-2,5-6];zones:{a,b}"));
}

TEST(ResourcesTest, ParseToleratesEmptyEntries) {
  EXPECT_EQ(Res("cpus:1;"), Res("cpus:1"));
  EXPECT_EQ(Res("cpus:1;;mem:2"), Res("cpus:1;mem:2"));
}

TEST(ResourcesTest, ParseReadsDecimalScalarsExactly) {
  EXPECT_EQ(Res("cpus:0.5").ScalarFixed("cpus"), 500);
  EXPECT_EQ(Res("cpus:1.125").ScalarFixed("cpus"), 1125);
  EXPECT_EQ(Res("cpus:0.001").ScalarFixed("cpus"), 1);
  EXPECT_EQ(Res("cpus:2.0").ScalarFixed("cpus"), 2000);
  EXPECT_EQ(Res("cpus:0.1").ScalarFixed("cpus"), 100);
  EXPECT_EQ(Res("cpus:007").ScalarFixed("cpus"), 7000);
}

TEST(ResourcesTest, ParseAcceptsTheLargestScalar) {
  EXPECT_EQ(Res("mem:9223372036854775.807").ScalarFixed("mem"),
            std::numeric_limits<int64_t>::max());
}

TEST(ResourcesTest, ParseReadsRoles) {
  EXPECT_EQ(Res("cpus(eng):1").entries()[0].role, "eng");
  EXPECT_EQ(Res("cpus(eng/web-1/x_y.z):1").entries()[0].role, "eng/web-1/x_y.z");
  EXPECT_EQ(Res("cpus(*):1"), Res("cpus:1"));
  EXPECT_EQ(Res("cpus(.hidden):1").entries()[0].role, ".hidden");
}

TEST(ResourcesTest, ParseAcceptsNamesWithDotsDashesAndSlashes) {
  EXPECT_EQ(Res("vendor.com/gpu:1;net-bw_out:10").ScalarFixed("vendor.com/gpu"), 1000);
}

TEST(ResourcesTest, ParseAcceptsTheWholeUint64Range) {
  EXPECT_THAT(Res("ports:[0-18446744073709551615]").entries(),
              ElementsAre(Ranges("ports", {{0, kMaxU64}})));
}

TEST(ResourcesTest, ParseMergesDuplicateEntries) {
  EXPECT_EQ(Res("cpus:1;cpus:2"), Res("cpus:3"));
  EXPECT_EQ(Res("cpus:0.1;cpus:0.2"), Res("cpus:0.3"));
  EXPECT_EQ(Res("ports:[1-3];ports:[2-5]"), Res("ports:[1-5]"));
  EXPECT_EQ(Res("zones:{a};zones:{b,a}"), Res("zones:{a,b}"));
  EXPECT_EQ(Res("cpus(eng):1;cpus(eng):1").entries().size(), 1u);
}

TEST(ResourcesTest, ParseKeepsRolesApart) {
  EXPECT_THAT(Res("cpus:1;cpus(eng):2").entries(),
              ElementsAre(Scalar("cpus", 1000), Scalar("cpus", 2000, "eng")));
}

TEST(ResourcesTest, ParseDropsZeroScalarsAndEmptyRangesAndSets) {
  EXPECT_TRUE(Res("cpus:0;ports:[];zones:{};mem:0.000").empty());
  EXPECT_EQ(Res("cpus:0;mem:1"), Res("mem:1"));
}

// ---------------------------------------------------------------------------------------------
// Parsing bad input

TEST(ResourcesTest, ParseRejectsNonNumericScalar) {
  EXPECT_EQ(MessageOf("cpus:abc"), "invalid scalar 'abc' for resource 'cpus'");
  EXPECT_TRUE(ParseFailsNaming("mem:1;cpus:abc", "'abc'"));
}

TEST(ResourcesTest, ParseRejectsFourFractionalDigits) {
  EXPECT_EQ(MessageOf("cpus:0.0001"),
            "resource 'cpus' has more than three fractional digits: '0.0001'");
  EXPECT_TRUE(ParseFailsNaming("cpus:1.5000", "'1.5000'"));
}

TEST(ResourcesTest, ParseRejectsEmptyName) {
  EXPECT_EQ(MessageOf("cpus:1;:2"), "empty resource name in 'cpus:1;:2'");
  EXPECT_TRUE(ParseFailsNaming("(eng):2", "empty resource name"));
  EXPECT_TRUE(ParseFailsNaming("  :2", "empty resource name"));
}

TEST(ResourcesTest, ParseRejectsInvertedRange) {
  EXPECT_EQ(MessageOf("ports:[5-3]"), "inverted range '[5-3]' for resource 'ports'");
  EXPECT_TRUE(ParseFailsNaming("ports:[1-2,9-8]", "'[9-8]'"));
}

TEST(ResourcesTest, ParseRejectsMissingColon) {
  EXPECT_EQ(MessageOf("cpus2"), "missing ':' in 'cpus2'");
  EXPECT_TRUE(ParseFailsNaming("cpus:1;mem1024", "missing ':' in 'mem1024'"));
}

TEST(ResourcesTest, ParseRejectsNegativeScalars) {
  EXPECT_EQ(MessageOf("cpus:-1"), "negative scalar '-1' for resource 'cpus'");
  EXPECT_TRUE(ParseFailsNaming("cpus:-0", "negative scalar '-0'"));
  EXPECT_TRUE(ParseFailsNaming("cpus:-0.5", "negative scalar '-0.5'"));
  // A minus sign in front of something that is not a number is just an invalid scalar.
  EXPECT_TRUE(ParseFailsNaming("cpus:-abc", "invalid scalar '-abc'"));
  EXPECT_TRUE(ParseFailsNaming("cpus:-", "invalid scalar '-'"));
}

TEST(ResourcesTest, ParseRejectsNanAndInfinity) {
  for (std::string_view token : {"nan", "NaN", "inf", "-inf", "+Inf", "Infinity"}) {
    EXPECT_TRUE(ParseFailsNaming(std::string("cpus:") + std::string(token),
                                 "non-finite scalar '" + std::string(token) + "'"));
  }
}

TEST(ResourcesTest, ParseRejectsScalarOverflow) {
  EXPECT_TRUE(ParseFailsNaming("mem:99999999999999999999", "'99999999999999999999' is too large"));
  // One unit past INT64_MAX in fixed point.
  EXPECT_TRUE(ParseFailsNaming("mem:9223372036854775.808", "'9223372036854775.808' is too large"));
  EXPECT_TRUE(ParseFailsNaming("mem:9223372036854776", "too large"));
}

TEST(ResourcesTest, ParseRejectsOtherMalformedScalars) {
  for (std::string_view token : {"1e3", ".5", "5.", "1.2.3", "0x10", "+1", "1 2", "1,5", "one"}) {
    EXPECT_TRUE(ParseFailsNaming(std::string("cpus:") + std::string(token),
                                 "'" + std::string(token) + "'"));
  }
}

TEST(ResourcesTest, ParseRejectsEmptyValue) {
  EXPECT_TRUE(ParseFailsNaming("cpus:", "empty value in 'cpus:'"));
  EXPECT_TRUE(ParseFailsNaming("cpus(eng):  ", "empty value"));
}

TEST(ResourcesTest, ParseRejectsUnbalancedBrackets) {
  EXPECT_EQ(MessageOf("ports:[1-2"), "unbalanced brackets in '[1-2' for resource 'ports'");
  for (std::string_view value : {"1-2]", "[[1-2]]", "[1-2}", "[", "{a", "a}", "{{a}}", "{a]"}) {
    EXPECT_TRUE(ParseFailsNaming(std::string("ports:") + std::string(value),
                                 "unbalanced brackets in '" + std::string(value) + "'"));
  }
  EXPECT_TRUE(ParseFailsNaming("ports:[1-2;cpus:1", "unbalanced brackets in '[1-2'"));
}

TEST(ResourcesTest, ParseRejectsUnbalancedParentheses) {
  EXPECT_EQ(MessageOf("cpus(eng:1"), "unbalanced parentheses in 'cpus(eng:1'");
  for (std::string_view entry : {"cpuseng):1", "cpus((eng)):1", "cpus)eng(:1", "cpus(a)(b):1"}) {
    EXPECT_TRUE(ParseFailsNaming(entry, "unbalanced parentheses in '" + std::string(entry) + "'"));
  }
  EXPECT_TRUE(ParseFailsNaming("cpus(eng)x:1", "unexpected text after the role in 'cpus(eng)x:1'"));
}

TEST(ResourcesTest, ParseRejectsEmptyRole) {
  EXPECT_EQ(MessageOf("cpus():1"), "empty role in 'cpus():1'");
  EXPECT_TRUE(ParseFailsNaming("cpus(  ):1", "empty role in 'cpus(  ):1'"));
}

TEST(ResourcesTest, ParseRejectsBadRoleNames) {
  EXPECT_EQ(MessageOf("cpus(a//b):1"), "invalid role 'a//b' for resource 'cpus'");
  for (std::string_view role : {"/eng", "eng/", ".", "..", "eng/./web", "eng/../web", "e ng",
                                "eng*", "**", "eng:web", "eng;web", "ä"}) {
    const std::string text = "cpus(" + std::string(role) + "):1";
    absl::StatusOr<Resources> resources = Resources::Parse(text);
    EXPECT_FALSE(resources.ok()) << text;
    EXPECT_EQ(resources.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  // Roles whose text survives entry splitting are quoted exactly.
  for (std::string_view role : {"/eng", "eng/", ".", "..", "eng/../web", "e ng", "eng*", "**"}) {
    EXPECT_TRUE(ParseFailsNaming("cpus(" + std::string(role) + "):1",
                                 "invalid role '" + std::string(role) + "'"));
  }
}

TEST(ResourcesTest, ParseRejectsInvalidNames) {
  EXPECT_TRUE(ParseFailsNaming("cp us:1", "invalid resource name 'cp us'"));
  EXPECT_TRUE(ParseFailsNaming("cpu$:1", "invalid resource name 'cpu$'"));
  EXPECT_TRUE(ParseFailsNaming("a,b:1", "invalid resource name 'a,b'"));
}

TEST(ResourcesTest, ParseRejectsANameUsedWithTwoTypes) {
  EXPECT_EQ(MessageOf("cpus:1;cpus:[1-2]"), "resource 'cpus' used as both scalar and ranges");
  EXPECT_TRUE(ParseFailsNaming("zones:{a};zones(eng):1", "resource 'zones' used as both set"));
  // A zero or empty value still fixes the type of its name.
  EXPECT_TRUE(ParseFailsNaming("cpus:0;cpus:[1-2]", "resource 'cpus' used as both"));
  EXPECT_TRUE(ParseFailsNaming("ports:[];ports:{a}", "resource 'ports' used as both"));
}

TEST(ResourcesTest, ParseRejectsMalformedRanges) {
  for (std::string_view token : {"1", "a-b", "1-", "-2", "1--2", "1-2-3", "+1-2", ""}) {
    EXPECT_TRUE(
        ParseFailsNaming("ports:[1-2," + std::string(token) + "]",
                         "invalid range '" + std::string(token) + "' for resource 'ports'"));
  }
  EXPECT_TRUE(ParseFailsNaming("ports:[1-2, ]", "invalid range ''"));
  EXPECT_TRUE(
      ParseFailsNaming("ports:[0-18446744073709551616]", "invalid range '0-18446744073709551616'"));
}

TEST(ResourcesTest, ParseRejectsMalformedSetItems) {
  EXPECT_EQ(MessageOf("zones:{a,,b}"), "empty item in '{a,,b}' for resource 'zones'");
  EXPECT_TRUE(ParseFailsNaming("zones:{a,}", "empty item in '{a,}'"));
  EXPECT_TRUE(ParseFailsNaming("zones:{a b}", "invalid item 'a b' for resource 'zones'"));
}

// ---------------------------------------------------------------------------------------------
// Canonical form and the adders

TEST(ResourcesTest, CanonicalFormSortsByNameThenRole) {
  EXPECT_THAT(Res("mem:1;cpus(b):1;cpus(a):1;cpus:1").entries(),
              ElementsAre(Scalar("cpus", 1000), Scalar("cpus", 1000, "a"),
                          Scalar("cpus", 1000, "b"), Scalar("mem", 1000)));
}

TEST(ResourcesTest, RangesAreSortedAndOverlappingOrAdjacentOnesMerged) {
  EXPECT_THAT(Res("ports:[5-6,1-2,3-4]").entries()[0].ranges, ElementsAre(ValueRange{1, 6}));
  EXPECT_THAT(Res("ports:[4-5,1-2]").entries()[0].ranges,
              ElementsAre(ValueRange{1, 2}, ValueRange{4, 5}));
  EXPECT_THAT(Res("ports:[1-10,2-3,10-12]").entries()[0].ranges, ElementsAre(ValueRange{1, 12}));
  EXPECT_THAT(Res("ports:[18446744073709551615-18446744073709551615,0-18446744073709551614]")
                  .entries()[0]
                  .ranges,
              ElementsAre(ValueRange{0, kMaxU64}));
}

TEST(ResourcesTest, SetsAreSortedAndDeduplicated) {
  EXPECT_THAT(Res("zones:{c,a,b,a}").entries()[0].items, ElementsAre("a", "b", "c"));
}

TEST(ResourcesTest, EqualResourcesWrittenDifferentlyCompareEqual) {
  EXPECT_EQ(Res("mem:1024;cpus:1.5;cpus:0.5;ports:[3-4,1-2]"), Res("cpus:2;ports:[1-4];mem:1024"));
  EXPECT_NE(Res("cpus:2"), Res("cpus(eng):2"));
}

TEST(ResourcesTest, AddersMergeIntoTheCanonicalForm) {
  Resources resources;
  ASSERT_TRUE(resources.AddScalar("mem", 1000).ok());
  ASSERT_TRUE(resources.AddRanges("ports", {{10, 12}, {1, 3}, {4, 5}}).ok());
  ASSERT_TRUE(resources.AddSet("zones", {"b", "a", "b"}, "eng").ok());
  ASSERT_TRUE(resources.Add(Scalar("cpus", 250)).ok());
  ASSERT_TRUE(resources.AddScalar("cpus", 750).ok());

  EXPECT_EQ(resources, Res("cpus:1;mem:1;ports:[1-5,10-12];zones(eng):{a,b}"));
}

TEST(ResourcesTest, AddDropsZeroAndEmptyValues) {
  Resources resources;
  ASSERT_TRUE(resources.AddScalar("cpus", 0).ok());
  ASSERT_TRUE(resources.AddRanges("ports", {}).ok());
  ASSERT_TRUE(resources.AddSet("zones", {}).ok());
  EXPECT_TRUE(resources.empty());
}

TEST(ResourcesTest, AddRejectsBadInputAndLeavesResourcesUnchanged) {
  Resources resources = Res("cpus:1;ports:[1-2]");
  const Resources before = resources;

  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("cpus", -5), "negative scalar '-0.005'"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddRanges("ports", {{9, 3}}), "inverted range '[9-3]'"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddSet("zones", {"a", ""}), "invalid item ''"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddSet("zones", {"a;b"}), "invalid item 'a;b'"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("", 1), "empty resource name"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("cp:us", 1), "invalid resource name 'cp:us'"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("mem", 1, ""), "invalid role ''"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("mem", 1, "a/../b"), "invalid role 'a/../b'"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddSet("cpus", {"a"}),
                              "resource 'cpus' used as both scalar and set"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("ports", 0, "eng"),
                              "resource 'ports' used as both ranges and scalar"));
  EXPECT_TRUE(IsInvalidNaming(resources.AddScalar("cpus", std::numeric_limits<int64_t>::max()),
                              "total of resource 'cpus' overflows"));

  EXPECT_EQ(resources, before);
}

// ---------------------------------------------------------------------------------------------
// Contains

TEST(ResourcesTest, ContainsComparesScalarAmounts) {
  const Resources resources = Res("cpus:2;mem:1024");
  EXPECT_TRUE(resources.Contains(Res("cpus:2")));
  EXPECT_TRUE(resources.Contains(Res("cpus:1.999;mem:1024")));
  EXPECT_FALSE(resources.Contains(Res("cpus:2.001")));
  EXPECT_FALSE(resources.Contains(Res("gpus:1")));
}

TEST(ResourcesTest, EverythingContainsEmptyResources) {
  EXPECT_TRUE(Resources().Contains(Resources()));
  EXPECT_TRUE(Res("cpus:1").Contains(Resources()));
  EXPECT_FALSE(Resources().Contains(Res("cpus:0.001")));
}

TEST(ResourcesTest, ContainsRequiresEveryRangeToBeCovered) {
  const Resources resources = Res("ports:[1-5,7-10]");
  EXPECT_TRUE(resources.Contains(Res("ports:[1-1,3-5,8-9]")));
  EXPECT_TRUE(resources.Contains(Res("ports:[7-10]")));
  EXPECT_FALSE(resources.Contains(Res("ports:[5-7]")));  // Straddles the gap at 6.
  EXPECT_FALSE(resources.Contains(Res("ports:[6-6]")));
  EXPECT_FALSE(resources.Contains(Res("ports:[9-11]")));
  EXPECT_FALSE(resources.Contains(Res("ports:[0-1]")));
}

TEST(ResourcesTest, ContainsRequiresSetInclusion) {
  const Resources resources = Res("zones:{a,b,c}");
  EXPECT_TRUE(resources.Contains(Res("zones:{a,c}")));
  EXPECT_FALSE(resources.Contains(Res("zones:{a,d}")));
}

TEST(ResourcesTest, ContainsIsFalseForTheSameNameWithAnotherType) {
  EXPECT_FALSE(Res("ports:5").Contains(Res("ports:[1-1]")));
  EXPECT_FALSE(Res("ports:[1-1]").Contains(Res("ports:{1}")));
}

TEST(ResourcesTest, ReservedResourcesAreNotContainedByUnreservedAndViceVersa) {
  EXPECT_FALSE(Res("cpus:8").Contains(Res("cpus(eng):1")));
  EXPECT_FALSE(Res("cpus(eng):8").Contains(Res("cpus:1")));
  EXPECT_FALSE(Res("cpus(eng):8").Contains(Res("cpus(ops):1")));
  EXPECT_FALSE(Res("cpus(eng):8").Contains(Res("cpus(eng/web):1")));
  EXPECT_TRUE(Res("cpus:1;cpus(eng):8").Contains(Res("cpus(eng):8;cpus:1")));
}

// ---------------------------------------------------------------------------------------------
// Subtract

TEST(ResourcesTest, SubtractRemovesScalarsAndDropsZeros) {
  Resources resources = Res("cpus:4;mem:1024");
  ASSERT_TRUE(resources.Subtract(Res("cpus:1.5")).ok());
  EXPECT_EQ(resources, Res("cpus:2.5;mem:1024"));
  ASSERT_TRUE(resources.Subtract(Res("cpus:2.5")).ok());
  EXPECT_EQ(resources, Res("mem:1024"));
  EXPECT_THAT(resources.entries(), ElementsAre(Scalar("mem", 1024000)));
}

TEST(ResourcesTest, SubtractSplitsRanges) {
  Resources resources = Res("ports:[1-10]");
  ASSERT_TRUE(resources.Subtract(Res("ports:[3-4,7-7]")).ok());
  EXPECT_THAT(resources.entries()[0].ranges,
              ElementsAre(ValueRange{1, 2}, ValueRange{5, 6}, ValueRange{8, 10}));
}

TEST(ResourcesTest, SubtractTrimsRangeEdges) {
  Resources resources = Res("ports:[1-10,20-30]");
  ASSERT_TRUE(resources.Subtract(Res("ports:[1-1,10-10,20-25,30-30]")).ok());
  EXPECT_EQ(resources, Res("ports:[2-9,26-29]"));
}

TEST(ResourcesTest, SubtractOfAWholeRangeDropsIt) {
  Resources resources = Res("ports:[1-10,20-30];cpus:1");
  ASSERT_TRUE(resources.Subtract(Res("ports:[20-30]")).ok());
  EXPECT_EQ(resources, Res("ports:[1-10];cpus:1"));
  ASSERT_TRUE(resources.Subtract(Res("ports:[1-10]")).ok());
  EXPECT_EQ(resources, Res("cpus:1"));
}

TEST(ResourcesTest, SubtractHandlesTheEndsOfTheUint64Range) {
  Resources resources = Res("ports:[0-18446744073709551615]");
  ASSERT_TRUE(
      resources.Subtract(Res("ports:[0-0,18446744073709551615-18446744073709551615]")).ok());
  EXPECT_THAT(resources.entries()[0].ranges, ElementsAre(ValueRange{1, kMaxU64 - 1}));
}

TEST(ResourcesTest, SubtractRemovesSetItems) {
  Resources resources = Res("zones:{a,b,c}");
  ASSERT_TRUE(resources.Subtract(Res("zones:{b}")).ok());
  EXPECT_EQ(resources, Res("zones:{a,c}"));
  ASSERT_TRUE(resources.Subtract(Res("zones:{a,c}")).ok());
  EXPECT_TRUE(resources.empty());
}

TEST(ResourcesTest, SubtractOfReservedResourcesTouchesOnlyThatRole) {
  Resources resources = Res("cpus:4;cpus(eng):4");
  ASSERT_TRUE(resources.Subtract(Res("cpus(eng):3")).ok());
  EXPECT_EQ(resources, Res("cpus:4;cpus(eng):1"));
}

TEST(ResourcesTest, SubtractFailsAndLeavesResourcesUnchangedUnlessContained) {
  Resources resources = Res("cpus:2;ports:[1-5]");
  const Resources before = resources;

  for (std::string_view other : {"cpus:3", "cpus(eng):1", "ports:[5-6]", "mem:1", "cpus:1;mem:1"}) {
    const absl::Status status = resources.Subtract(Res(other));
    EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << other;
    EXPECT_THAT(std::string(status.message()), HasSubstr(std::string(other))) << other;
    EXPECT_EQ(resources, before) << other;
  }
}

// ---------------------------------------------------------------------------------------------
// Merge and +

TEST(ResourcesTest, MergeAddsScalarsRangesAndSets) {
  Resources resources = Res("cpus:1;ports:[1-2];zones:{a}");
  ASSERT_TRUE(resources.Merge(Res("cpus:0.5;mem:10;ports:[3-4,8-9];zones:{b}")).ok());
  EXPECT_EQ(resources, Res("cpus:1.5;mem:10;ports:[1-4,8-9];zones:{a,b}"));
}

TEST(ResourcesTest, MergeJoinsAdjacentRanges) {
  Resources resources = Res("ports:[1-2]");
  ASSERT_TRUE(resources.Merge(Res("ports:[3-4]")).ok());
  EXPECT_THAT(resources.entries()[0].ranges, ElementsAre(ValueRange{1, 4}));
}

TEST(ResourcesTest, MergeKeepsRolesApart) {
  Resources resources = Res("cpus:1");
  ASSERT_TRUE(resources.Merge(Res("cpus(eng):1")).ok());
  EXPECT_THAT(resources.entries(), ElementsAre(Scalar("cpus", 1000), Scalar("cpus", 1000, "eng")));
}

TEST(ResourcesTest, MergeRejectsATypeClashAndLeavesResourcesUnchanged) {
  Resources resources = Res("cpus:1;mem:1");
  const Resources before = resources;
  // `aaa` would merge fine before the clash on `cpus` is found.
  EXPECT_TRUE(IsInvalidNaming(resources.Merge(Res("aaa:1;cpus(eng):[1-2]")),
                              "resource 'cpus' used as both scalar and ranges"));
  EXPECT_EQ(resources, before);
}

TEST(ResourcesTest, MergeRejectsScalarOverflow) {
  Resources resources = Res("mem:9223372036854775");
  const Resources before = resources;
  EXPECT_TRUE(IsInvalidNaming(resources.Merge(Res("mem:1")), "total of resource 'mem' overflows"));
  EXPECT_EQ(resources, before);
}

TEST(ResourcesTest, PlusAddsResources) {
  EXPECT_EQ(Res("cpus:1;ports:[1-2]") + Res("cpus:2;ports:[3-3]"), Res("cpus:3;ports:[1-3]"));
  Resources resources = Res("cpus:1");
  resources += Res("mem:2");
  EXPECT_EQ(resources, Res("cpus:1;mem:2"));
}

TEST(ResourcesDeathTest, PlusEqualsDiesOnATypeClash) {
  Resources resources = Res("cpus:1");
  EXPECT_DEATH(resources += Res("cpus:{a}"), "resource 'cpus' used as both scalar and set");
}

// ---------------------------------------------------------------------------------------------
// Queries

TEST(ResourcesTest, ScalarSumsOverRoles) {
  const Resources resources = Res("cpus:1;cpus(eng):0.5;cpus(ops):0.25;mem:3;ports:[1-2]");
  EXPECT_EQ(resources.ScalarFixed("cpus"), 1750);
  EXPECT_DOUBLE_EQ(resources.Scalar("cpus"), 1.75);
  EXPECT_EQ(resources.ScalarFixed("gpus"), 0);
  EXPECT_EQ(resources.ScalarFixed("ports"), 0);
}

TEST(ResourcesTest, ReservedForSelectsOneRole) {
  const Resources resources = Res("cpus:1;cpus(eng):2;mem(eng):3;mem(ops):4");
  EXPECT_EQ(resources.ReservedFor("eng"), Res("cpus(eng):2;mem(eng):3"));
  EXPECT_EQ(resources.ReservedFor(kDefaultRole), Res("cpus:1"));
  EXPECT_TRUE(resources.ReservedFor("nobody").empty());
}

TEST(ResourcesTest, WithRoleRelabelsAndMergesEntries) {
  const Resources resources = Res("cpus:1;cpus(eng):2;ports(ops):[1-2];ports:[3-3]");
  EXPECT_EQ(resources.WithRole("web"), Res("cpus(web):3;ports(web):[1-3]"));
  EXPECT_EQ(resources.WithRole(kDefaultRole), Res("cpus:3;ports:[1-3]"));
}

TEST(ResourcesDeathTest, WithRoleDiesOnAnInvalidRole) {
  const Resources resources = Res("cpus:1");
  EXPECT_DEATH(resources.WithRole("a//b"), "invalid role");
}

// ---------------------------------------------------------------------------------------------
// ToString

TEST(ResourcesTest, ToStringPrintsTheCanonicalForm) {
  EXPECT_EQ(Res("zones:{b,a};ports:[33000-33010,31000-32000];disk(eng/web):512;mem:1024;cpus:2")
                .ToString(),
            "cpus:2;disk(eng/web):512;mem:1024;ports:[31000-32000,33000-33010];zones:{a,b}");
}

TEST(ResourcesTest, ToStringPrintsScalarsWithoutTrailingZeros) {
  EXPECT_EQ(Res("cpus:2.000").ToString(), "cpus:2");
  EXPECT_EQ(Res("cpus:0.5").ToString(), "cpus:0.5");
  EXPECT_EQ(Res("cpus:1.125").ToString(), "cpus:1.125");
  EXPECT_EQ(Res("cpus:0.05").ToString(), "cpus:0.05");
  EXPECT_EQ(Res("cpus:0.001").ToString(), "cpus:0.001");
  EXPECT_EQ(Res("cpus:10.010").ToString(), "cpus:10.01");
}

TEST(ResourcesTest, ToStringRoundTripsThroughParse) {
  const Resources resources =
      Res("cpus:0.125;cpus(eng/web):2;mem(a.b-c_d):1;ports:[0-0,2-18446744073709551615];"
          "zones(x):{a:b,us-east-1a,(z)}");
  EXPECT_EQ(Res(resources.ToString()), resources);
}

// A seeded property test: random resources built through the adders print to text that parses
// back to an equal value, and merge/subtract undo each other.
TEST(ResourcesTest, RandomResourcesRoundTripAndSubtractUndoesMerge) {
  std::mt19937_64 rng(20240611);
  const std::vector<std::string> roles = {"*", "eng", "eng/web", "ops.x", "a_b-c"};
  const std::vector<std::string> words = {"a", "b", "us-east-1a", "x:y", "(p)", "z"};
  const auto pick = [&](uint64_t n) { return rng() % n; };
  const auto random_resources = [&] {
    Resources resources;
    const int count = static_cast<int>(pick(8));
    for (int i = 0; i < count; ++i) {
      const std::string& role = roles[pick(roles.size())];
      absl::Status status;
      switch (pick(4)) {
        case 0:
          status = resources.AddScalar("cpus", static_cast<int64_t>(pick(100000)), role);
          break;
        case 1:
          status = resources.AddScalar("mem", static_cast<int64_t>(pick(1ull << 40)), role);
          break;
        case 2: {
          std::vector<ValueRange> ranges;
          for (uint64_t k = pick(4); k > 0; --k) {
            const uint64_t begin = pick(50);
            ranges.push_back({begin, begin + pick(10)});
          }
          if (pick(10) == 0) {
            ranges.push_back({kMaxU64 - pick(3), kMaxU64});
          }
          status = resources.AddRanges("ports", ranges, role);
          break;
        }
        default: {
          std::vector<std::string> items;
          for (uint64_t k = pick(4); k > 0; --k) {
            items.push_back(words[pick(words.size())]);
          }
          status = resources.AddSet("zones", items, role);
          break;
        }
      }
      EXPECT_TRUE(status.ok()) << status;
    }
    return resources;
  };

  for (int iteration = 0; iteration < 500; ++iteration) {
    const Resources a = random_resources();
    const Resources b = random_resources();
    const std::string text = a.ToString();
    ASSERT_EQ(Res(text), a) << text;
    ASSERT_EQ(Res(text).ToString(), text);

    Resources sum = a;
    ASSERT_TRUE(sum.Merge(b).ok());
    ASSERT_EQ(sum, a + b);
    EXPECT_TRUE(sum.Contains(a)) << sum.ToString() << " vs " << a.ToString();
    EXPECT_TRUE(sum.Contains(b)) << sum.ToString() << " vs " << b.ToString();
    // Ranges and sets merge as unions, so only scalars undo exactly; check those totals.
    Resources rest = sum;
    ASSERT_TRUE(rest.Subtract(b).ok()) << sum.ToString() << " - " << b.ToString();
    EXPECT_TRUE(rest.Contains(Resources()));
    EXPECT_EQ(rest.ScalarFixed("cpus"), a.ScalarFixed("cpus"));
    EXPECT_EQ(rest.ScalarFixed("mem"), a.ScalarFixed("mem"));
    Resources nothing = sum;
    ASSERT_TRUE(nothing.Subtract(sum).ok());
    EXPECT_TRUE(nothing.empty());
  }
}

// ---------------------------------------------------------------------------------------------
// Fixed point

TEST(ResourcesTest, ToFixedRoundsToTheNearestThousandth) {
  EXPECT_EQ(ToFixed(0.0004), 0);
  EXPECT_EQ(ToFixed(0.0006), 1);
  EXPECT_EQ(ToFixed(1.2344), 1234);
  EXPECT_EQ(ToFixed(1.2346), 1235);
  EXPECT_EQ(ToFixed(2.5), 2500);
  EXPECT_EQ(ToFixed(-0.0016), -2);
  EXPECT_EQ(ToFixed(1024), 1024000);
}

TEST(ResourcesTest, ToFixedSaturatesValuesThatDoNotFit) {
  EXPECT_EQ(ToFixed(std::numeric_limits<double>::quiet_NaN()), 0);
  EXPECT_EQ(ToFixed(std::numeric_limits<double>::infinity()), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(ToFixed(-1e300), std::numeric_limits<int64_t>::min());
}

TEST(ResourcesTest, FromFixedInvertsToFixed) {
  EXPECT_DOUBLE_EQ(FromFixed(1125), 1.125);
  EXPECT_DOUBLE_EQ(FromFixed(0), 0.0);
  for (int64_t fixed : {int64_t{0}, int64_t{1}, int64_t{100}, int64_t{999}, int64_t{123456789}}) {
    EXPECT_EQ(ToFixed(FromFixed(fixed)), fixed);
  }
}

TEST(ResourcesTest, PointOnePlusPointTwoIsExactlyPointThreeInFixedPoint) {
  ASSERT_NE(0.1 + 0.2, 0.3);  // The floating-point trap the fixed point exists to avoid.
  EXPECT_EQ(ToFixed(0.1) + ToFixed(0.2), ToFixed(0.3));
  EXPECT_EQ(Res("cpus:0.1") + Res("cpus:0.2"), Res("cpus:0.3"));

  Resources resources;
  ASSERT_TRUE(resources.AddScalar("cpus", ToFixed(0.1)).ok());
  ASSERT_TRUE(resources.AddScalar("cpus", ToFixed(0.2)).ok());
  EXPECT_EQ(resources.ToString(), "cpus:0.3");
  ASSERT_TRUE(resources.Subtract(Res("cpus:0.3")).ok());
  EXPECT_TRUE(resources.empty());
}

}  // namespace
}  // namespace rz
