#include "common/resources_proto.h"

#include <limits>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/resources.h"
#include "gmock/gmock.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "gtest/gtest.h"
#include "rz/v1/common.pb.h"

namespace rz {
namespace {

using ResourceList = google::protobuf::RepeatedPtrField<rz::v1::Resource>;

Resources Res(std::string_view text) {
  absl::StatusOr<Resources> resources = Resources::Parse(text);
  EXPECT_TRUE(resources.ok()) << "'" << text << "': " << resources.status();
  return resources.ok() ? *resources : Resources();
}

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

rz::v1::Resource ScalarProto(const std::string& name, double value) {
  rz::v1::Resource resource;
  resource.set_name(name);
  resource.set_scalar(value);
  return resource;
}

rz::v1::Resource RangesProto(const std::string& name, uint64_t begin, uint64_t end) {
  rz::v1::Resource resource;
  resource.set_name(name);
  rz::v1::Range* range = resource.mutable_ranges()->add_range();
  range->set_begin(begin);
  range->set_end(end);
  return resource;
}

ResourceList ListOf(std::initializer_list<rz::v1::Resource> resources) {
  ResourceList list;
  for (const rz::v1::Resource& resource : resources) {
    *list.Add() = resource;
  }
  return list;
}

// ---------------------------------------------------------------------------------------------
// FromProto / ToProto

TEST(ResourcesProtoTest, FromProtoReadsScalarsRangesAndSets) {
  rz::v1::Resource zones;
  zones.set_name("zones");
  zones.mutable_set()->add_item("b");
  zones.mutable_set()->add_item("a");
  rz::v1::Resource ports = RangesProto("ports", 31000, 32000);
  rz::v1::Range* more = ports.mutable_ranges()->add_range();
  more->set_begin(33000);
  more->set_end(33010);

  absl::StatusOr<Resources> resources =
      FromProto(ListOf({ScalarProto("cpus", 2), ScalarProto("mem", 1024), ports, zones}));

  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("cpus:2;mem:1024;ports:[31000-32000,33000-33010];zones:{a,b}"));
}

TEST(ResourcesProtoTest, FromProtoTakesTheRoleOfTheLastReservation) {
  rz::v1::Resource disk = ScalarProto("disk", 512);
  disk.add_reservations()->set_role("eng");
  rz::v1::ReservationInfo* outer = disk.add_reservations();
  outer->set_role("eng/web");
  outer->set_type(rz::v1::ReservationInfo::DYNAMIC);

  absl::StatusOr<Resources> resources = FromProto(ListOf({disk}));

  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("disk(eng/web):512"));
}

TEST(ResourcesProtoTest, FromProtoIgnoresAllocationRole) {
  rz::v1::Resource cpus = ScalarProto("cpus", 1);
  cpus.set_allocation_role("eng");

  absl::StatusOr<Resources> resources = FromProto(ListOf({cpus}));

  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("cpus:1"));
}

TEST(ResourcesProtoTest, FromProtoRoundsScalarsToThousandths) {
  absl::StatusOr<Resources> resources =
      FromProto(ListOf({ScalarProto("cpus", 0.1), ScalarProto("cpus", 0.2),
                        ScalarProto("mem", 1.0004), ScalarProto("gpus", 0.0004)}));

  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("cpus:0.3;mem:1"));
}

TEST(ResourcesProtoTest, FromProtoOfNothingIsEmpty) {
  absl::StatusOr<Resources> resources = FromProto(ResourceList());
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_TRUE(resources->empty());
}

TEST(ResourcesProtoTest, ToProtoWritesOneStaticReservationForAReservedRole) {
  ResourceList list;
  ToProto(Res("cpus:1.5;disk(eng/web):512"), &list);

  ASSERT_EQ(list.size(), 2);
  EXPECT_EQ(list[0].name(), "cpus");
  EXPECT_EQ(list[0].value_case(), rz::v1::Resource::kScalar);
  EXPECT_DOUBLE_EQ(list[0].scalar(), 1.5);
  EXPECT_EQ(list[0].reservations_size(), 0);
  EXPECT_EQ(list[1].name(), "disk");
  EXPECT_DOUBLE_EQ(list[1].scalar(), 512);
  ASSERT_EQ(list[1].reservations_size(), 1);
  EXPECT_EQ(list[1].reservations(0).type(), rz::v1::ReservationInfo::STATIC);
  EXPECT_EQ(list[1].reservations(0).role(), "eng/web");
  EXPECT_TRUE(list[1].allocation_role().empty());
}

TEST(ResourcesProtoTest, ToProtoWritesRangesAndSets) {
  ResourceList list;
  ToProto(Res("ports:[1-2,5-9];zones:{b,a}"), &list);

  ASSERT_EQ(list.size(), 2);
  ASSERT_EQ(list[0].value_case(), rz::v1::Resource::kRanges);
  ASSERT_EQ(list[0].ranges().range_size(), 2);
  EXPECT_EQ(list[0].ranges().range(0).begin(), 1u);
  EXPECT_EQ(list[0].ranges().range(0).end(), 2u);
  EXPECT_EQ(list[0].ranges().range(1).begin(), 5u);
  EXPECT_EQ(list[0].ranges().range(1).end(), 9u);
  ASSERT_EQ(list[1].value_case(), rz::v1::Resource::kSet);
  ASSERT_EQ(list[1].set().item_size(), 2);
  EXPECT_EQ(list[1].set().item(0), "a");
  EXPECT_EQ(list[1].set().item(1), "b");
}

TEST(ResourcesProtoTest, ToProtoReplacesWhatWasThere) {
  ResourceList list = ListOf({ScalarProto("old", 1)});
  ToProto(Res("cpus:1"), &list);
  ASSERT_EQ(list.size(), 1);
  EXPECT_EQ(list[0].name(), "cpus");

  ToProto(Resources(), &list);
  EXPECT_TRUE(list.empty());
}

TEST(ResourcesProtoTest, ProtoRoundTripPreservesResources) {
  const Resources original =
      Res("cpus:0.125;cpus(eng):2;mem:1024;disk(eng/web):512;"
          "ports:[0-0,31000-32000,33000-18446744073709551615];zones(ops):{a,us-east-1a}");
  ResourceList list;
  ToProto(original, &list);

  absl::StatusOr<Resources> back = FromProto(list);

  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, original);
}

TEST(ResourcesProtoTest, FromProtoRejectsAnEmptyName) {
  EXPECT_TRUE(
      IsInvalidNaming(FromProto(ListOf({ScalarProto("cpus", 1), ScalarProto("", 1)})).status(),
                      "resource at index 1 has no name"));
}

TEST(ResourcesProtoTest, FromProtoRejectsAResourceWithoutValue) {
  rz::v1::Resource cpus;
  cpus.set_name("cpus");
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({cpus})).status(),
                              "resource 'cpus' at index 0 has no value"));
}

TEST(ResourcesProtoTest, FromProtoRejectsNegativeScalars) {
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({ScalarProto("cpus", -1)})).status(),
                              "resource 'cpus' at index 0 has a negative scalar '-1'"));
  // Negative even if it would round to zero.
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({ScalarProto("cpus", -0.0001)})).status(),
                              "negative scalar"));
}

TEST(ResourcesProtoTest, FromProtoRejectsNonFiniteScalars) {
  EXPECT_TRUE(IsInvalidNaming(
      FromProto(ListOf({ScalarProto("cpus", std::numeric_limits<double>::quiet_NaN())})).status(),
      "resource 'cpus' at index 0 has a non-finite scalar 'nan'"));
  EXPECT_TRUE(IsInvalidNaming(
      FromProto(ListOf({ScalarProto("mem", std::numeric_limits<double>::infinity())})).status(),
      "resource 'mem' at index 0 has a non-finite scalar 'inf'"));
}

TEST(ResourcesProtoTest, FromProtoRejectsScalarsTooLargeForFixedPoint) {
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({ScalarProto("mem", 1e300)})).status(),
                              "resource 'mem' at index 0 has an out-of-range scalar"));
}

TEST(ResourcesProtoTest, FromProtoRejectsAnInvertedRange) {
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({RangesProto("ports", 5, 3)})).status(),
                              "resource 'ports' at index 0 has an inverted range '[5-3]'"));
}

TEST(ResourcesProtoTest, FromProtoRejectsInvalidRolesNamesAndItems) {
  rz::v1::Resource empty_role = ScalarProto("cpus", 1);
  empty_role.add_reservations()->set_role("eng");
  empty_role.add_reservations();  // The outermost reservation has no role.
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({empty_role})).status(),
                              "resource at index 0: invalid role '' for resource 'cpus'"));

  rz::v1::Resource bad_role = ScalarProto("cpus", 1);
  bad_role.add_reservations()->set_role("../etc");
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({bad_role})).status(), "invalid role '../etc'"));

  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({ScalarProto("cpus;mem", 1)})).status(),
                              "invalid resource name 'cpus;mem'"));

  rz::v1::Resource bad_item;
  bad_item.set_name("zones");
  bad_item.mutable_set()->add_item("a,b");
  EXPECT_TRUE(IsInvalidNaming(FromProto(ListOf({bad_item})).status(), "invalid item 'a,b'"));
}

TEST(ResourcesProtoTest, FromProtoRejectsANameUsedWithTwoTypes) {
  EXPECT_TRUE(IsInvalidNaming(
      FromProto(ListOf({ScalarProto("ports", 1), RangesProto("ports", 1, 2)})).status(),
      "resource at index 1: resource 'ports' used as both scalar and ranges"));
}

// ---------------------------------------------------------------------------------------------
// ParseResourcesFlag

TEST(ResourcesProtoTest, FlagReadsTheTextForm) {
  absl::StatusOr<Resources> resources = ParseResourcesFlag("  cpus:2;mem:1024;ports:[1-2]  ");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("cpus:2;mem:1024;ports:[1-2]"));
}

TEST(ResourcesProtoTest, EmptyFlagIsEmptyResources) {
  absl::StatusOr<Resources> resources = ParseResourcesFlag("  ");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_TRUE(resources->empty());
}

TEST(ResourcesProtoTest, FlagReportsTextFormErrors) {
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag("cpus:abc").status(),
                              "invalid scalar 'abc' for resource 'cpus'"));
}

TEST(ResourcesProtoTest, FlagReadsAJsonListOfResources) {
  absl::StatusOr<Resources> resources = ParseResourcesFlag(R"(
    [{"name":"cpus","scalar":2},
     {"name":"ports","ranges":{"range":[{"begin":31000,"end":32000}]}},
     {"name":"zones","set":{"item":["b","a"]}},
     {"name":"disk","scalar":512.5,"reservations":[{"type":"STATIC","role":"eng/web"}]}]
  )");

  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("cpus:2;disk(eng/web):512.5;ports:[31000-32000];zones:{a,b}"));
}

TEST(ResourcesProtoTest, FlagReadsAnEmptyJsonList) {
  absl::StatusOr<Resources> resources = ParseResourcesFlag("[]");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_TRUE(resources->empty());
}

TEST(ResourcesProtoTest, FlagReadsAJsonObjectOfScalars) {
  absl::StatusOr<Resources> resources = ParseResourcesFlag(R"( {"cpus": 2, "mem": 1024.25} )");
  ASSERT_TRUE(resources.ok()) << resources.status();
  EXPECT_EQ(*resources, Res("cpus:2;mem:1024.25"));
}

TEST(ResourcesProtoTest, FlagRejectsMalformedJsonNamingWhereItBroke) {
  const absl::Status status = ParseResourcesFlag(R"([{"name":"cpus","scalar":2},oops])").status();
  EXPECT_TRUE(IsInvalidNaming(status, "invalid json in resources flag at byte 28 near 'oops]'"));

  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"([{"name":"cpus","scalar":2})").status(),
                              "invalid json in resources flag: unexpected end"));
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"({"cpus":2} trailing)").status(),
                              "invalid json in resources flag at byte 11 near 'trailing'"));
}

TEST(ResourcesProtoTest, FlagRejectsAJsonElementThatIsNotAnObject) {
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"([{"name":"cpus","scalar":2}, 7])").status(),
                              "resources flag element 1 is not an object: '7'"));
}

TEST(ResourcesProtoTest, FlagRejectsAJsonElementThatIsNotAResource) {
  const absl::Status status =
      ParseResourcesFlag(R"([{"name":"cpus","scalar":2}, {"name":"mem","scalr":1}])").status();
  EXPECT_TRUE(IsInvalidNaming(status, "resources flag element 1"));
  EXPECT_TRUE(IsInvalidNaming(status, "scalr"));

  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"([{"name":"cpus","scalar":"lots"}])").status(),
                              "resources flag element 0"));
}

TEST(ResourcesProtoTest, FlagRejectsInvalidJsonResourcesNamingTheIndex) {
  EXPECT_TRUE(IsInvalidNaming(
      ParseResourcesFlag(R"([{"name":"mem","scalar":1},{"name":"cpus","scalar":-1}])").status(),
      "resources flag: resource 'cpus' at index 1 has a negative scalar '-1'"));
  // The protobuf JSON mapping spells NaN as a string; it must not slip through.
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"([{"name":"cpus","scalar":"NaN"}])").status(),
                              "resource 'cpus' at index 0 has a non-finite scalar"));
  EXPECT_TRUE(IsInvalidNaming(
      ParseResourcesFlag(R"([{"name":"ports","ranges":{"range":[{"begin":9,"end":3}]}}])").status(),
      "resource 'ports' at index 0 has an inverted range '[9-3]'"));
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"([{"name":"cpus"}])").status(),
                              "resource 'cpus' at index 0 has no value"));
}

TEST(ResourcesProtoTest, FlagRejectsNonNumericValuesInTheJsonObject) {
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"({"cpus":2,"ports":[1,2]})").status(),
                              "resources flag value of 'ports' is not a number: '[1,2]'"));
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"({"cpus":"2"})").status(),
                              "resources flag value of 'cpus' is not a number"));
  EXPECT_TRUE(IsInvalidNaming(ParseResourcesFlag(R"({"cpus":-2})").status(),
                              "resource 'cpus' at index 0 has a negative scalar '-2'"));
}

TEST(ResourcesProtoTest, JsonAndTextFlagsAgree) {
  absl::StatusOr<Resources> json = ParseResourcesFlag(
      R"([{"name":"cpus","scalar":0.5},{"name":"cpus","scalar":1.5},)"
      R"({"name":"ports","ranges":{"range":[{"begin":1,"end":2},{"begin":3,"end":4}]}}])");
  absl::StatusOr<Resources> text = ParseResourcesFlag("cpus:2;ports:[1-4]");
  ASSERT_TRUE(json.ok()) << json.status();
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*json, *text);
}

}  // namespace
}  // namespace rz
