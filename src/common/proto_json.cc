#include "common/proto_json.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace rz {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// Code points protobuf's (3.21) JSON escaper writes as \uXXXX beyond ASCII: C1 controls,
// invisible format characters and line separators, which break some JavaScript parsers.
// StringEscapingMatchesProtobufExactly checks the list code point by code point.
bool NeedsEscape(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0xAD || (cp >= 0x600 && cp <= 0x603) || cp == 0x6DD ||
         cp == 0x70F || cp == 0x17B4 || cp == 0x17B5 || (cp >= 0x200B && cp <= 0x200F) ||
         (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) ||
         (cp >= 0x206A && cp <= 0x206F) || cp == 0xFEFF || (cp >= 0xFFF9 && cp <= 0xFFFB) ||
         (cp >= 0x1D173 && cp <= 0x1D17A) || cp == 0xE0001 || (cp >= 0xE0020 && cp <= 0xE007F);
}

void AppendU16(uint32_t unit, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[6] = {'\\',
                 'u',
                 kHex[(unit >> 12) & 0xF],
                 kHex[(unit >> 8) & 0xF],
                 kHex[(unit >> 4) & 0xF],
                 kHex[unit & 0xF]};
  out->append(buf, 6);
}

// 0 when `s` does not start with a valid UTF-8 sequence (overlong forms and surrogates
// included), else its length, with the code point in *cp.
size_t DecodeUtf8(absl::string_view s, uint32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[0]);
  size_t len;
  uint32_t min;
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, min = 0x80, *cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, min = 0x800, *cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, *cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() < len) {
    return 0;
  }
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) != 0x80) {
      return 0;
    }
    *cp = (*cp << 6) | (b & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) {
    return 0;
  }
  return len;
}

void AppendString(absl::string_view s, std::string* out) {
  out->push_back('"');
  size_t plain = 0;  // Start of the run of bytes copied as they are.
  size_t i = 0;
  auto flush = [&](size_t end) { out->append(s.data() + plain, end - plain); };
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\' && c != '<' && c != '>') {
      ++i;
      continue;
    }
    if (c < 0x80) {
      flush(i);
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\b':
          out->append("\\b");
          break;
        case '\f':
          out->append("\\f");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          AppendU16(c, out);
          break;
      }
      plain = ++i;
      continue;
    }
    uint32_t cp;
    const size_t len = DecodeUtf8(s.substr(i), &cp);
    if (len == 0) {  // Invalid UTF-8: dropped, as protobuf does.
      flush(i);
      plain = ++i;
      continue;
    }
    if (NeedsEscape(cp)) {
      flush(i);
      if (cp >= 0x10000) {
        AppendU16(0xD800 + ((cp - 0x10000) >> 10), out);
        AppendU16(0xDC00 + ((cp - 0x10000) & 0x3FF), out);
      } else {
        AppendU16(cp, out);
      }
      plain = i + len;
    }
    i += len;
  }
  flush(i);
  out->push_back('"');
}

template <typename T>
void AppendInteger(T value, std::string* out, bool quoted) {
  char buf[24];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  if (quoted) {
    out->push_back('"');
  }
  out->append(buf, result.ptr);
  if (quoted) {
    out->push_back('"');
  }
}

bool AppendNonFinite(double value, std::string* out) {
  if (std::isnan(value)) {
    out->append("\"NaN\"");
  } else if (std::isinf(value)) {
    out->append(value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  } else {
    return false;
  }
  return true;
}

void AppendDouble(double value, std::string* out) {
  if (AppendNonFinite(value, out)) {
    return;
  }
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, result.ptr);
}

// Floats as protobuf prints them (%.6g, else %.9g): a JSON reader parses the digits as a double,
// so only the very same digits give the very same value.
void AppendFloat(float value, std::string* out) {
  if (AppendNonFinite(value, out)) {
    return;
  }
  char buf[32];
  int n = std::snprintf(buf, sizeof(buf), "%.*g", 6, static_cast<double>(value));
  if (std::strtof(buf, nullptr) != value) {
    n = std::snprintf(buf, sizeof(buf), "%.*g", 9, static_cast<double>(value));
  }
  out->append(buf, static_cast<size_t>(n));
}

void AppendEnum(const FieldDescriptor* field, int number, std::string* out) {
  if (const auto* value = field->enum_type()->FindValueByNumber(number); value != nullptr) {
    out->push_back('"');
    out->append(value->name());
    out->push_back('"');
  } else {
    AppendInteger(number, out, /*quoted=*/false);
  }
}

// `omitted_field`: a field number of `message` (not of nested messages) left out; 0 for none.
void AppendMessage(const Message& message, std::string* out, int omitted_field = 0);

// One value of `field` (element `index` if repeated, else the singular value).
void AppendValue(const Message& message, const Reflection& reflection, const FieldDescriptor* field,
                 int index, std::string* out) {
  const bool repeated = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      AppendInteger(repeated ? reflection.GetRepeatedInt32(message, field, index)
                             : reflection.GetInt32(message, field),
                    out, false);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      AppendInteger(repeated ? reflection.GetRepeatedUInt32(message, field, index)
                             : reflection.GetUInt32(message, field),
                    out, false);
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      AppendInteger(repeated ? reflection.GetRepeatedInt64(message, field, index)
                             : reflection.GetInt64(message, field),
                    out, true);
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      AppendInteger(repeated ? reflection.GetRepeatedUInt64(message, field, index)
                             : reflection.GetUInt64(message, field),
                    out, true);
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      AppendDouble(repeated ? reflection.GetRepeatedDouble(message, field, index)
                            : reflection.GetDouble(message, field),
                   out);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      AppendFloat(repeated ? reflection.GetRepeatedFloat(message, field, index)
                           : reflection.GetFloat(message, field),
                  out);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append((repeated ? reflection.GetRepeatedBool(message, field, index)
                            : reflection.GetBool(message, field))
                      ? "true"
                      : "false");
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      AppendEnum(field,
                 repeated ? reflection.GetRepeatedEnumValue(message, field, index)
                          : reflection.GetEnumValue(message, field),
                 out);
      break;
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& value =
          repeated ? reflection.GetRepeatedStringReference(message, field, index, &scratch)
                   : reflection.GetStringReference(message, field, &scratch);
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        out->push_back('"');
        out->append(absl::Base64Escape(value));
        out->push_back('"');
      } else {
        AppendString(value, out);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      AppendMessage(repeated ? reflection.GetRepeatedMessage(message, field, index)
                             : reflection.GetMessage(message, field),
                    out);
      break;
  }
}

// A map key as a JSON object key: always a string.
void AppendMapKey(const Message& entry, const FieldDescriptor* key, std::string* out) {
  const Reflection& reflection = *entry.GetReflection();
  switch (key->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      AppendString(reflection.GetStringReference(entry, key, &scratch), out);
      return;
    }
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append(reflection.GetBool(entry, key) ? "\"true\"" : "\"false\"");
      return;
    case FieldDescriptor::CPPTYPE_INT32:
      AppendInteger(reflection.GetInt32(entry, key), out, true);
      return;
    case FieldDescriptor::CPPTYPE_UINT32:
      AppendInteger(reflection.GetUInt32(entry, key), out, true);
      return;
    case FieldDescriptor::CPPTYPE_INT64:
      AppendInteger(reflection.GetInt64(entry, key), out, true);
      return;
    case FieldDescriptor::CPPTYPE_UINT64:
      AppendInteger(reflection.GetUInt64(entry, key), out, true);
      return;
    default:  // Not a valid map key type.
      out->append("\"\"");
      return;
  }
}

void AppendMessage(const Message& message, std::string* out, int omitted_field) {
  const Descriptor* descriptor = message.GetDescriptor();
  if (descriptor->file()->package() == "google.protobuf") {
    // Well-known types have their own JSON forms (Timestamp, Duration, Struct, Any...): rare in
    // our protos, so protobuf renders them.
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    std::string json;
    if (google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
      out->append(json);
    } else {
      out->append("null");
    }
    return;
  }
  const Reflection& reflection = *message.GetReflection();
  out->push_back('{');
  bool first = true;
  const int count = descriptor->field_count();
  for (int i = 0; i < count; ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    if (field->number() == omitted_field) {
      continue;
    }
    const bool repeated = field->is_repeated();
    // Singular fields with presence (messages, oneof members, proto3 `optional`) only when set;
    // every other field always, at its default value if need be.
    if (!repeated && field->has_presence() && !reflection.HasField(message, field)) {
      continue;
    }
    if (!first) {
      out->push_back(',');
    }
    first = false;
    out->push_back('"');
    out->append(field->name());
    out->append("\":");
    if (field->is_map()) {
      const FieldDescriptor* key = field->message_type()->map_key();
      const FieldDescriptor* value = field->message_type()->map_value();
      const int size = reflection.FieldSize(message, field);
      out->push_back('{');
      for (int j = 0; j < size; ++j) {
        if (j > 0) {
          out->push_back(',');
        }
        const Message& entry = reflection.GetRepeatedMessage(message, field, j);
        AppendMapKey(entry, key, out);
        out->push_back(':');
        AppendValue(entry, *entry.GetReflection(), value, 0, out);
      }
      out->push_back('}');
    } else if (repeated) {
      const int size = reflection.FieldSize(message, field);
      out->push_back('[');
      for (int j = 0; j < size; ++j) {
        if (j > 0) {
          out->push_back(',');
        }
        AppendValue(message, reflection, field, j, out);
      }
      out->push_back(']');
    } else {
      AppendValue(message, reflection, field, 0, out);
    }
  }
  out->push_back('}');
}

}  // namespace

void AppendProtoJson(const Message& message, std::string* out) { AppendMessage(message, out); }

void AppendProtoJsonWithout(const Message& message, int omitted_field, std::string* out) {
  AppendMessage(message, out, omitted_field);
}

std::string ProtoJson(const Message& message) {
  std::string out;
  AppendProtoJson(message, &out);
  return out;
}

HttpResponse ProtoJsonResponse(const Message& message) {
  return HttpResponse{.body = ProtoJson(message)};
}

}  // namespace rz
