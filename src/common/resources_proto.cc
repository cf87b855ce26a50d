#include "common/resources_proto.h"

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace rz {
namespace {

using Json = nlohmann::json;

// Debian's Abseil has its own `string_view`; convert ours explicitly.
absl::string_view Av(std::string_view sv) { return {sv.data(), sv.size()}; }

std::string_view Trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\n\r\f\v";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) {
    return {};
  }
  const size_t last = text.find_last_not_of(kSpace);
  return text.substr(first, last - first + 1);
}

// The largest scalar whose fixed-point value fits in int64 with room to spare; anything beyond
// is refused rather than silently saturated by ToFixed().
constexpr double kMaxScalar = 9e15;

absl::Status AddOne(const rz::v1::Resource& resource, int index, Resources& out) {
  const std::string& name = resource.name();
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("resource at index ", index, " has no name"));
  }
  const auto invalid = [&](std::string_view detail) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource '", name, "' at index ", index, " ", Av(detail)));
  };
  // Reservations stack outermost last; the outermost one decides who may use the resource.
  const std::string role = resource.reservations().empty()
                               ? std::string(kDefaultRole)
                               : resource.reservations(resource.reservations_size() - 1).role();
  absl::Status status;
  switch (resource.value_case()) {
    case rz::v1::Resource::VALUE_NOT_SET:
      return invalid("has no value");
    case rz::v1::Resource::kScalar: {
      const double value = resource.scalar();
      if (!std::isfinite(value)) {
        return invalid(absl::StrCat("has a non-finite scalar '", value, "'"));
      }
      if (value < 0) {
        return invalid(absl::StrCat("has a negative scalar '", value, "'"));
      }
      if (value > kMaxScalar) {
        return invalid(absl::StrCat("has an out-of-range scalar '", value, "'"));
      }
      status = out.AddScalar(name, ToFixed(value), role);
      break;
    }
    case rz::v1::Resource::kRanges: {
      std::vector<ValueRange> ranges;
      ranges.reserve(resource.ranges().range_size());
      for (const rz::v1::Range& range : resource.ranges().range()) {
        if (range.begin() > range.end()) {
          return invalid(
              absl::StrCat("has an inverted range '[", range.begin(), "-", range.end(), "]'"));
        }
        ranges.push_back({range.begin(), range.end()});
      }
      status = out.AddRanges(name, std::move(ranges), role);
      break;
    }
    case rz::v1::Resource::kSet:
      status = out.AddSet(
          name,
          std::vector<std::string>(resource.set().item().begin(), resource.set().item().end()),
          role);
      break;
  }
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("resource at index ", index, ": ", status.message()));
  }
  return absl::OkStatus();
}

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '-' || c == '.' || c == '_';
}

// Validates JSON without exceptions and remembers where the first syntax error is, so that the
// error can quote the text there (nlohmann's non-throwing parse() only says "discarded", and
// its `last_token` can hold more than the offending token).
class JsonErrorFinder : public Json::json_sax_t {
 public:
  explicit JsonErrorFinder(std::string_view text) : text_(text) {}

  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override { return true; }
  bool key(string_t& /*val*/) override { return true; }
  bool end_object() override { return true; }
  bool start_array(std::size_t /*elements*/) override { return true; }
  bool end_array() override { return true; }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const Json::exception& /*ex*/) override {
    // `position` counts the bytes read, up to the one where the lexer gave up; back up to the
    // start of a bare word (`tru` of `trailing`) so the quote shows the whole bad token.
    size_t at = position == 0 ? 0 : position - 1;
    while (at > 0 && at <= text_.size() && IsWordChar(text_[at - 1])) {
      --at;
    }
    if (at >= text_.size()) {
      error_ = absl::InvalidArgumentError("invalid json in resources flag: unexpected end");
    } else {
      constexpr size_t kQuoted = 16;
      error_ =
          absl::InvalidArgumentError(absl::StrCat("invalid json in resources flag at byte ", at,
                                                  " near '", Av(text_.substr(at, kQuoted)), "'"));
    }
    return false;
  }

  [[nodiscard]] const absl::Status& error() const { return error_; }

 private:
  std::string_view text_;
  absl::Status error_;
};

absl::StatusOr<Json> ParseJson(std::string_view text) {
  JsonErrorFinder finder(text);
  if (!Json::sax_parse(text.begin(), text.end(), &finder) || !finder.error().ok()) {
    if (!finder.error().ok()) {
      return finder.error();
    }
    return absl::InvalidArgumentError("invalid json in resources flag");
  }
  Json json = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError("invalid json in resources flag");
  }
  return json;
}

absl::StatusOr<Resources> FromFlagProto(
    const google::protobuf::RepeatedPtrField<rz::v1::Resource>& resources) {
  absl::StatusOr<Resources> out = FromProto(resources);
  if (!out.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("resources flag: ", out.status().message()));
  }
  return out;
}

std::string Dump(const Json& json) {
  // `replace` keeps dump() from throwing on strings that are not valid UTF-8.
  return json.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                   Json::error_handler_t::replace);
}

absl::StatusOr<Resources> FromJsonArray(const Json& json) {
  google::protobuf::RepeatedPtrField<rz::v1::Resource> resources;
  for (size_t i = 0; i < json.size(); ++i) {
    const Json& element = json[i];
    if (!element.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("resources flag element ", i, " is not an object: '", Dump(element), "'"));
    }
    const auto status = google::protobuf::util::JsonStringToMessage(Dump(element), resources.Add());
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "resources flag element ", i, " '", Dump(element), "': ", status.message().ToString()));
    }
  }
  return FromFlagProto(resources);
}

// {"cpus":2,"mem":1024}: unreserved scalars only.
absl::StatusOr<Resources> FromJsonObject(const Json& json) {
  google::protobuf::RepeatedPtrField<rz::v1::Resource> resources;
  for (const auto& [name, value] : json.items()) {
    if (!value.is_number()) {
      return absl::InvalidArgumentError(absl::StrCat("resources flag value of '", name,
                                                     "' is not a number: '", Dump(value), "'"));
    }
    rz::v1::Resource* resource = resources.Add();
    resource->set_name(name);
    resource->set_scalar(value.get<double>());
  }
  return FromFlagProto(resources);
}

}  // namespace

absl::StatusOr<Resources> FromProto(
    const google::protobuf::RepeatedPtrField<rz::v1::Resource>& resources) {
  Resources out;
  for (int i = 0; i < resources.size(); ++i) {
    if (absl::Status status = AddOne(resources[i], i, out); !status.ok()) {
      return status;
    }
  }
  return out;
}

void ToProto(const Resources& resources,
             google::protobuf::RepeatedPtrField<rz::v1::Resource>* out) {
  out->Clear();
  for (const ResourceEntry& entry : resources.entries()) {
    rz::v1::Resource* resource = out->Add();
    resource->set_name(entry.name);
    if (entry.role != kDefaultRole) {
      rz::v1::ReservationInfo* reservation = resource->add_reservations();
      reservation->set_type(rz::v1::ReservationInfo::STATIC);
      reservation->set_role(entry.role);
    }
    switch (entry.type) {
      case ResourceEntry::Type::kScalar:
        resource->set_scalar(FromFixed(entry.scalar));
        break;
      case ResourceEntry::Type::kRanges: {
        rz::v1::Ranges* ranges = resource->mutable_ranges();
        for (const ValueRange& range : entry.ranges) {
          rz::v1::Range* out_range = ranges->add_range();
          out_range->set_begin(range.begin);
          out_range->set_end(range.end);
        }
        break;
      }
      case ResourceEntry::Type::kSet: {
        rz::v1::Set* set = resource->mutable_set();
        for (const std::string& item : entry.items) {
          set->add_item(item);
        }
        break;
      }
    }
  }
}

absl::StatusOr<Resources> ParseResourcesFlag(std::string_view text) {
  const std::string_view trimmed = Trim(text);
  if (trimmed.empty() || (trimmed.front() != '[' && trimmed.front() != '{')) {
    return Resources::Parse(trimmed);
  }
  absl::StatusOr<Json> json = ParseJson(trimmed);
  if (!json.ok()) {
    return json.status();
  }
  return json->is_array() ? FromJsonArray(*json) : FromJsonObject(*json);
}

}  // namespace rz
