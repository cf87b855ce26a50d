#include "common/proto_json.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "rz/v1/agent_api.pb.h"
#include "rz/v1/common.pb.h"
#include "rz/v1/operator.pb.h"
#include "rz/v1/scheduler.pb.h"

namespace rz {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// What ProtoJsonResponse rendered before AppendProtoJson: the reference.
std::string ProtobufJson(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(message, &json, options).ok());
  return json;
}

// Both renderings parse to the same JSON value.
void ExpectSameJson(const Message& message) {
  const std::string ours = ProtoJson(message);
  const std::string reference = ProtobufJson(message);
  const auto parsed_ours = nlohmann::json::parse(ours, nullptr, /*allow_exceptions=*/false);
  const auto parsed_reference = nlohmann::json::parse(reference, nullptr, false);
  ASSERT_FALSE(parsed_ours.is_discarded()) << ours;
  ASSERT_FALSE(parsed_reference.is_discarded()) << reference;
  EXPECT_EQ(parsed_ours, parsed_reference)
      << message.GetTypeName() << "\nours:     " << ours << "\nprotobuf: " << reference;
}

// Fills every field of a message with values chosen to hit the writer's cases: large and
// negative integers, special doubles, unknown enum numbers, strings with control, escaped and
// non-ASCII characters, empty and non-empty repeated fields and maps, one member per oneof.
class Filler {
 public:
  explicit Filler(uint32_t seed) : random_(seed) {}

  void Fill(Message* message, int depth) {
    const Descriptor* descriptor = message->GetDescriptor();
    const Reflection& reflection = *message->GetReflection();
    for (int i = 0; i < descriptor->field_count(); ++i) {
      const FieldDescriptor* field = descriptor->field(i);
      if (Pick(4) == 0) {
        continue;  // Left unset: defaults are printed (or omitted for presence fields).
      }
      if (field->is_repeated()) {
        const int n = depth > 3 ? 0 : Pick(4);
        for (int j = 0; j < n; ++j) {
          if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
            Fill(reflection.AddMessage(message, field), depth + 1);
          } else {
            AddScalar(message, reflection, field);
          }
        }
        continue;
      }
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        if (depth <= 4) {
          Fill(reflection.MutableMessage(message, field), depth + 1);
        }
        continue;
      }
      SetScalar(message, reflection, field);
    }
  }

 private:
  int Pick(int n) { return static_cast<int>(random_() % static_cast<uint32_t>(n)); }

  int64_t Int64() {
    static const int64_t kValues[] = {0,
                                      1,
                                      -1,
                                      42,
                                      std::numeric_limits<int64_t>::max(),
                                      std::numeric_limits<int64_t>::min(),
                                      9007199254740993};
    return kValues[Pick(7)];
  }
  uint64_t UInt64() {
    static const uint64_t kValues[] = {0, 1, 42, std::numeric_limits<uint64_t>::max(),
                                       18446744073709551615ull / 3};
    return kValues[Pick(5)];
  }
  double Double() {
    static const double kValues[] = {0.0,
                                     -0.0,
                                     0.1,
                                     1.5,
                                     -2.25,
                                     1e20,
                                     1e-7,
                                     123456789.123456789,
                                     std::numeric_limits<double>::max(),
                                     std::numeric_limits<double>::denorm_min(),
                                     std::numeric_limits<double>::quiet_NaN(),
                                     std::numeric_limits<double>::infinity(),
                                     -std::numeric_limits<double>::infinity(),
                                     1.0 / 3.0};
    return kValues[Pick(14)];
  }
  std::string String() {
    static const char* const kValues[] = {"",
                                          "plain",
                                          "quote \" backslash \\ slash /",
                                          "\x01\x02\b\f\n\r\t\x1f\x7f",
                                          "<script>&'=</script>",
                                          "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
                                          "\xe2\x80\xa8 \xe2\x80\xa9 \xc2\xad \xef\xbb\xbf",
                                          "\xf3\xa0\x80\x81 tag"};
    return kValues[Pick(8)];
  }
  int Enum(const FieldDescriptor* field) {
    if (Pick(5) == 0) {
      return 1000 + Pick(10);  // Not a value of the enum: printed as a number.
    }
    return field->enum_type()->value(Pick(field->enum_type()->value_count()))->number();
  }

  void SetScalar(Message* message, const Reflection& reflection, const FieldDescriptor* field) {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        return reflection.SetInt32(message, field, static_cast<int32_t>(Int64()));
      case FieldDescriptor::CPPTYPE_UINT32:
        return reflection.SetUInt32(message, field, static_cast<uint32_t>(UInt64()));
      case FieldDescriptor::CPPTYPE_INT64:
        return reflection.SetInt64(message, field, Int64());
      case FieldDescriptor::CPPTYPE_UINT64:
        return reflection.SetUInt64(message, field, UInt64());
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return reflection.SetDouble(message, field, Double());
      case FieldDescriptor::CPPTYPE_FLOAT:
        return reflection.SetFloat(message, field, static_cast<float>(Double()));
      case FieldDescriptor::CPPTYPE_BOOL:
        return reflection.SetBool(message, field, Pick(2) == 0);
      case FieldDescriptor::CPPTYPE_ENUM:
        return reflection.SetEnumValue(message, field, Enum(field));
      case FieldDescriptor::CPPTYPE_STRING:
        return reflection.SetString(message, field, String());
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return;
    }
  }

  void AddScalar(Message* message, const Reflection& reflection, const FieldDescriptor* field) {
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        return reflection.AddInt32(message, field, static_cast<int32_t>(Int64()));
      case FieldDescriptor::CPPTYPE_UINT32:
        return reflection.AddUInt32(message, field, static_cast<uint32_t>(UInt64()));
      case FieldDescriptor::CPPTYPE_INT64:
        return reflection.AddInt64(message, field, Int64());
      case FieldDescriptor::CPPTYPE_UINT64:
        return reflection.AddUInt64(message, field, UInt64());
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return reflection.AddDouble(message, field, Double());
      case FieldDescriptor::CPPTYPE_FLOAT:
        return reflection.AddFloat(message, field, static_cast<float>(Double()));
      case FieldDescriptor::CPPTYPE_BOOL:
        return reflection.AddBool(message, field, Pick(2) == 0);
      case FieldDescriptor::CPPTYPE_ENUM:
        return reflection.AddEnumValue(message, field, Enum(field));
      case FieldDescriptor::CPPTYPE_STRING:
        return reflection.AddString(message, field, String());
      case FieldDescriptor::CPPTYPE_MESSAGE:
        return;
    }
  }

  std::mt19937 random_;
};

TEST(ProtoJsonTest, EmptyMessagesMatchProtobuf) {
  ExpectSameJson(v1::State());
  ExpectSameJson(v1::Task());
  ExpectSameJson(v1::AgentState());
  ExpectSameJson(v1::Roles());
  ExpectSameJson(v1::AgentStateResponse());
  EXPECT_EQ(ProtoJson(v1::GetStateSummaryRequest()), "{}");
}

// Every message of our API protos, filled many times over with every kind of value.
TEST(ProtoJsonTest, EveryApiMessageMatchesProtobuf) {
  const google::protobuf::FileDescriptor* files[] = {
      v1::State::descriptor()->file(), v1::Task::descriptor()->file(),
      v1::AgentStateResponse::descriptor()->file(), v1::Event::descriptor()->file()};
  int messages = 0;
  for (const auto* file : files) {
    for (int i = 0; i < file->message_type_count(); ++i) {
      const Descriptor* descriptor = file->message_type(i);
      const Message* prototype =
          google::protobuf::MessageFactory::generated_factory()->GetPrototype(descriptor);
      for (uint32_t seed = 0; seed < 20; ++seed) {
        std::unique_ptr<Message> message(prototype->New());
        Filler(seed * 7919 + static_cast<uint32_t>(i)).Fill(message.get(), 0);
        ExpectSameJson(*message);
        ++messages;
      }
    }
  }
  EXPECT_GT(messages, 500);
}

TEST(ProtoJsonTest, ScalarsAndSpecialValues) {
  v1::Resource resource;
  resource.set_name("cpus");
  resource.set_scalar(std::numeric_limits<double>::quiet_NaN());
  EXPECT_NE(ProtoJson(resource).find("\"scalar\":\"NaN\""), std::string::npos)
      << ProtoJson(resource);
  resource.set_scalar(-std::numeric_limits<double>::infinity());
  EXPECT_NE(ProtoJson(resource).find("\"scalar\":\"-Infinity\""), std::string::npos);
  resource.set_scalar(0.1);
  EXPECT_NE(ProtoJson(resource).find("\"scalar\":0.1"), std::string::npos);
  ExpectSameJson(resource);

  v1::StateSummary summary;
  (*summary.mutable_counters())["big"] = std::numeric_limits<int64_t>::max();
  (*summary.mutable_counters())["neg"] = -5;
  EXPECT_NE(ProtoJson(summary).find("\"big\":\"9223372036854775807\""), std::string::npos)
      << ProtoJson(summary);
  EXPECT_NE(ProtoJson(summary).find("\"neg\":\"-5\""), std::string::npos);
  ExpectSameJson(summary);
}

TEST(ProtoJsonTest, StringEscapingMatchesProtobufExactly) {
  // Every code point up to U+FFFF and the supplementary ones protobuf escapes, one at a time:
  // the exact bytes, not only the parsed value, match.
  std::vector<uint32_t> points;
  for (uint32_t cp = 1; cp < 0x10000; ++cp) {
    if (cp < 0xD800 || cp > 0xDFFF) {
      points.push_back(cp);
    }
  }
  for (uint32_t cp : {0x10000u, 0x110BDu, 0x1D173u, 0x1F600u, 0xE0001u, 0xE0050u, 0x10FFFFu}) {
    points.push_back(cp);
  }
  std::string mismatches;
  for (uint32_t cp : points) {
    std::string utf8;
    if (cp < 0x80) {
      utf8 = {static_cast<char>(cp)};
    } else if (cp < 0x800) {
      utf8 = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    } else if (cp < 0x10000) {
      utf8 = {static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
              static_cast<char>(0x80 | (cp & 0x3F))};
    } else {
      utf8 = {static_cast<char>(0xF0 | (cp >> 18)), static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
              static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    v1::Resource resource;
    resource.set_name(utf8);
    if (ProtoJson(resource) != ProtobufJson(resource)) {
      mismatches += absl::StrFormat(" U+%04X", cp);
    }
  }
  EXPECT_EQ(mismatches, "");
}

TEST(ProtoJsonTest, InvalidUtf8BytesAreDropped) {
  v1::Resource resource;
  resource.set_name(
      std::string("a\xff"
                  "b\xc3",
                  4));
  EXPECT_NE(ProtoJson(resource).find("\"name\":\"ab\""), std::string::npos) << ProtoJson(resource);
}

TEST(ProtoJsonTest, WithoutLeavesOutOneTopLevelField) {
  v1::AgentState agent;
  Filler(7).Fill(&agent, 0);
  agent.mutable_usage()->set_mem_usage_bytes(4096);
  agent.mutable_info()->set_hostname("h1");
  std::string without;
  AppendProtoJsonWithout(agent, v1::AgentState::kUsageFieldNumber, &without);
  v1::AgentState cleared = agent;
  cleared.clear_usage();
  EXPECT_EQ(nlohmann::json::parse(without), nlohmann::json::parse(ProtobufJson(cleared)));
  EXPECT_FALSE(nlohmann::json::parse(without).contains("usage"));
  EXPECT_TRUE(nlohmann::json::parse(ProtoJson(agent)).contains("usage"));
}

TEST(ProtoJsonTest, AppendsToExistingOutput) {
  std::string out = "[";
  AppendProtoJson(v1::GetStateSummaryRequest(), &out);
  out += "]";
  EXPECT_EQ(out, "[{}]");
}

TEST(ProtoJsonTest, ResponseCarriesTheJson) {
  v1::Flags flags;
  (*flags.mutable_flags())["port"] = "5050";
  const HttpResponse response = ProtoJsonResponse(flags);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, R"({"flags":{"port":"5050"}})");
}

// Not a pass/fail test: prints the cost per task of both renderings (see bench/README.md).
TEST(ProtoJsonTest, MicroBenchmarkPerTask) {
  std::vector<v1::Task> tasks(2000);
  for (size_t i = 0; i < tasks.size(); ++i) {
    Filler(static_cast<uint32_t>(i)).Fill(&tasks[i], 0);
  }
  auto time_us = [&](auto render) {
    const auto start = std::chrono::steady_clock::now();
    size_t bytes = 0;
    for (const v1::Task& task : tasks) {
      bytes += render(task).size();
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_GT(bytes, 0u);
    return std::chrono::duration<double, std::micro>(elapsed).count() / tasks.size();
  };
  const double ours = time_us([](const v1::Task& task) { return ProtoJson(task); });
  const double reference = time_us([](const v1::Task& task) { return ProtobufJson(task); });
  std::printf("[ proto_json ] AppendProtoJson %.2f us/task, MessageToJsonString %.2f us/task\n",
              ours, reference);
}

}  // namespace
}  // namespace rz
