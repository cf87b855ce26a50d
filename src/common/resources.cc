#include "common/resources.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/internal/raw_logging.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace rz {
namespace {

using Type = ResourceEntry::Type;

// Debian's Abseil has its own `string_view`, so every absl::StrCat argument that is ours goes
// through this explicit conversion.
absl::string_view Av(std::string_view sv) { return {sv.data(), sv.size()}; }

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

bool IsAlnum(char c) { return IsDigit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string_view Trim(std::string_view text) {
  while (!text.empty() && IsSpace(text.front())) {
    text.remove_prefix(1);
  }
  while (!text.empty() && IsSpace(text.back())) {
    text.remove_suffix(1);
  }
  return text;
}

// Splits on every `separator`, keeping empty pieces.
std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  while (true) {
    const size_t pos = text.find(separator, start);
    if (pos == std::string_view::npos) {
      pieces.push_back(text.substr(start));
      return pieces;
    }
    pieces.push_back(text.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string_view TypeName(Type type) {
  switch (type) {
    case Type::kScalar:
      return "scalar";
    case Type::kRanges:
      return "ranges";
    case Type::kSet:
      return "set";
  }
  return "unknown";
}

// Names are restricted to characters that cannot be confused with the text form's punctuation,
// so that ToString() always reads back through Parse(). '/' is allowed for names like
// `vendor.com/gpu`.
bool IsValidName(std::string_view name) {
  if (name.empty()) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return IsAlnum(c) || c == '_' || c == '-' || c == '.' || c == '/';
  });
}

// A role is "*" or a path of [A-Za-z0-9_.-] segments. Empty, "." and ".." segments are refused
// because roles are also used as paths (quota trees, cgroup and work directory names).
bool IsValidRole(std::string_view role) {
  if (role == kDefaultRole) {
    return true;
  }
  if (role.empty()) {
    return false;
  }
  for (std::string_view segment : Split(role, '/')) {
    if (segment.empty() || segment == "." || segment == "..") {
      return false;
    }
    for (char c : segment) {
      if (!IsAlnum(c) && c != '_' && c != '-' && c != '.') {
        return false;
      }
    }
  }
  return true;
}

// Set items may hold anything printable except the set and entry punctuation and whitespace.
bool IsValidItem(std::string_view item) {
  if (item.empty()) {
    return false;
  }
  return std::all_of(item.begin(), item.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != ',' && c != ';' && c != '{' && c != '}' && c != '[' &&
           c != ']';
  });
}

// Formats fixed point as the shortest decimal that reads back exactly: 2, 0.5, 1.125, -0.25.
std::string FormatFixed(int64_t fixed) {
  // Work in uint64 so that the magnitude of INT64_MIN is representable.
  const bool negative = fixed < 0;
  const uint64_t magnitude =
      negative ? uint64_t{0} - static_cast<uint64_t>(fixed) : static_cast<uint64_t>(fixed);
  const uint64_t whole = magnitude / kScalarScale;
  uint64_t frac = magnitude % kScalarScale;
  std::string out = absl::StrCat(negative ? "-" : "", whole);
  if (frac != 0) {
    std::string digits = absl::StrCat(frac + kScalarScale).substr(1);  // Zero-padded to 3.
    while (digits.back() == '0') {
      digits.pop_back();
    }
    absl::StrAppend(&out, ".", digits);
  }
  return out;
}

std::string FormatRange(const ValueRange& range) {
  return absl::StrCat("[", range.begin, "-", range.end, "]");
}

std::string FormatValue(const ResourceEntry& entry) {
  switch (entry.type) {
    case Type::kScalar:
      return FormatFixed(entry.scalar);
    case Type::kRanges: {
      std::string out = "[";
      for (size_t i = 0; i < entry.ranges.size(); ++i) {
        absl::StrAppend(&out, i == 0 ? "" : ",", entry.ranges[i].begin, "-", entry.ranges[i].end);
      }
      out += "]";
      return out;
    }
    case Type::kSet:
      return absl::StrCat("{", absl::StrJoin(entry.items, ","), "}");
  }
  return "";
}

// Sorts and coalesces overlapping and adjacent ranges: [1-2],[3-4] -> [1-4].
// REQUIRES: begin <= end for every range.
std::vector<ValueRange> NormalizeRanges(std::vector<ValueRange> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const ValueRange& a, const ValueRange& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  std::vector<ValueRange> merged;
  for (const ValueRange& range : ranges) {
    // `end + 1` would wrap at UINT64_MAX; a range ending there already absorbs everything after.
    if (!merged.empty() && (merged.back().end == std::numeric_limits<uint64_t>::max() ||
                            range.begin <= merged.back().end + 1)) {
      merged.back().end = std::max(merged.back().end, range.end);
    } else {
      merged.push_back(range);
    }
  }
  return merged;
}

// True if every range of `needles` lies inside one range of `haystack`. Both are normalized,
// so a covered range cannot straddle two haystack ranges (they are never adjacent).
bool RangesContain(const std::vector<ValueRange>& haystack,
                   const std::vector<ValueRange>& needles) {
  size_t h = 0;
  for (const ValueRange& needle : needles) {
    while (h < haystack.size() && haystack[h].end < needle.begin) {
      ++h;
    }
    if (h == haystack.size() || haystack[h].begin > needle.begin || haystack[h].end < needle.end) {
      return false;
    }
  }
  return true;
}

// Removes `holes` from `ranges`, splitting ranges where a hole falls inside. Both normalized.
std::vector<ValueRange> SubtractRanges(const std::vector<ValueRange>& ranges,
                                       const std::vector<ValueRange>& holes) {
  std::vector<ValueRange> out;
  size_t h = 0;
  for (ValueRange range : ranges) {
    while (h < holes.size() && holes[h].end < range.begin) {
      ++h;
    }
    bool remaining = true;
    // Holes are sorted and disjoint, so each one can only cut the front of what is left.
    for (size_t k = h; remaining && k < holes.size() && holes[k].begin <= range.end; ++k) {
      const ValueRange& hole = holes[k];
      if (hole.begin > range.begin) {
        out.push_back({range.begin, hole.begin - 1});
      }
      if (hole.end >= range.end) {
        remaining = false;
      } else {
        range.begin = std::max(range.begin, hole.end + 1);
      }
    }
    if (remaining) {
      out.push_back(range);
    }
  }
  return out;
}

bool IsEmptyValue(const ResourceEntry& entry) {
  switch (entry.type) {
    case Type::kScalar:
      return entry.scalar == 0;
    case Type::kRanges:
      return entry.ranges.empty();
    case Type::kSet:
      return entry.items.empty();
  }
  return true;
}

bool KeyLess(const ResourceEntry& entry, const std::pair<std::string_view, std::string_view>& key) {
  const std::string_view name = entry.name;
  const std::string_view role = entry.role;
  const int by_name = name.compare(key.first);
  return by_name < 0 || (by_name == 0 && role < key.second);
}

// The first entry at or after (name, role) in canonical order.
template <typename Entries>
auto FindSlot(Entries& entries, std::string_view name, std::string_view role) {
  return std::lower_bound(entries.begin(), entries.end(), std::make_pair(name, role), KeyLess);
}

std::vector<ResourceEntry>::const_iterator Find(const std::vector<ResourceEntry>& entries,
                                                std::string_view name, std::string_view role) {
  auto it = FindSlot(entries, name, role);
  if (it != entries.end() && it->name == name && it->role == role) {
    return it;
  }
  return entries.end();
}

absl::Status TypeClash(std::string_view name, Type existing, Type added) {
  return absl::InvalidArgumentError(absl::StrCat("resource '", Av(name), "' used as both ",
                                                 Av(TypeName(existing)), " and ",
                                                 Av(TypeName(added))));
}

// Adds a validated, normalized `entry` to canonical `entries`. On error `entries` is unchanged.
absl::Status AddCanonical(std::vector<ResourceEntry>& entries, ResourceEntry entry) {
  // Entries are sorted by name first, so the first entry at or after (name, "") is the only one
  // that needs checking: all entries of one name share a type.
  auto same_name = FindSlot(entries, entry.name, "");
  if (same_name != entries.end() && same_name->name == entry.name &&
      same_name->type != entry.type) {
    return TypeClash(entry.name, same_name->type, entry.type);
  }
  if (IsEmptyValue(entry)) {
    return absl::OkStatus();
  }
  auto it = FindSlot(entries, entry.name, entry.role);
  if (it == entries.end() || it->name != entry.name || it->role != entry.role) {
    entries.insert(it, std::move(entry));
    return absl::OkStatus();
  }
  switch (entry.type) {
    case Type::kScalar: {
      int64_t sum = 0;
      if (__builtin_add_overflow(it->scalar, entry.scalar, &sum)) {
        return absl::InvalidArgumentError(
            absl::StrCat("total of resource '", entry.name, "' overflows"));
      }
      it->scalar = sum;
      break;
    }
    case Type::kRanges: {
      std::vector<ValueRange> all = std::move(it->ranges);
      all.insert(all.end(), entry.ranges.begin(), entry.ranges.end());
      it->ranges = NormalizeRanges(std::move(all));
      break;
    }
    case Type::kSet: {
      std::vector<std::string> all;
      all.reserve(it->items.size() + entry.items.size());
      std::set_union(it->items.begin(), it->items.end(), entry.items.begin(), entry.items.end(),
                     std::back_inserter(all));
      it->items = std::move(all);
      break;
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(std::string_view name, std::string_view role) {
  if (name.empty()) {
    return absl::InvalidArgumentError("empty resource name");
  }
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid resource name '", Av(name), "'"));
  }
  if (!IsValidRole(role)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid role '", Av(role), "' for resource '", Av(name), "'"));
  }
  return absl::OkStatus();
}

// Validates and normalizes any entry handed to the public adders.
absl::StatusOr<ResourceEntry> Normalize(const ResourceEntry& in) {
  if (absl::Status status = ValidateKey(in.name, in.role); !status.ok()) {
    return status;
  }
  ResourceEntry out;
  out.name = in.name;
  out.role = in.role;
  out.type = in.type;
  switch (in.type) {
    case Type::kScalar:
      if (in.scalar < 0) {
        return absl::InvalidArgumentError(absl::StrCat("negative scalar '", FormatFixed(in.scalar),
                                                       "' for resource '", in.name, "'"));
      }
      out.scalar = in.scalar;
      break;
    case Type::kRanges:
      for (const ValueRange& range : in.ranges) {
        if (range.begin > range.end) {
          return absl::InvalidArgumentError(absl::StrCat("inverted range '", FormatRange(range),
                                                         "' for resource '", in.name, "'"));
        }
      }
      out.ranges = NormalizeRanges(in.ranges);
      break;
    case Type::kSet:
      for (const std::string& item : in.items) {
        if (!IsValidItem(item)) {
          return absl::InvalidArgumentError(
              absl::StrCat("invalid item '", item, "' for resource '", in.name, "'"));
        }
      }
      out.items = in.items;
      std::sort(out.items.begin(), out.items.end());
      out.items.erase(std::unique(out.items.begin(), out.items.end()), out.items.end());
      break;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text form

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = (a[i] >= 'A' && a[i] <= 'Z') ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    if (x != b[i]) {
      return false;
    }
  }
  return true;
}

// Reads a decimal scalar exactly (no detour through double, so "0.1" is exactly 100 units).
absl::StatusOr<int64_t> ParseScalar(std::string_view token, std::string_view name) {
  std::string_view unsigned_part = token;
  if (!unsigned_part.empty() && (unsigned_part.front() == '-' || unsigned_part.front() == '+')) {
    unsigned_part.remove_prefix(1);
  }
  if (EqualsIgnoreCase(unsigned_part, "nan") || EqualsIgnoreCase(unsigned_part, "inf") ||
      EqualsIgnoreCase(unsigned_part, "infinity")) {
    return absl::InvalidArgumentError(
        absl::StrCat("non-finite scalar '", Av(token), "' for resource '", Av(name), "'"));
  }
  const auto is_decimal = [](std::string_view s) {
    const size_t dot = s.find('.');
    const std::string_view whole = s.substr(0, dot);
    const std::string_view frac =
        dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
    return !whole.empty() && std::all_of(whole.begin(), whole.end(), IsDigit) &&
           (dot == std::string_view::npos ||
            (!frac.empty() && std::all_of(frac.begin(), frac.end(), IsDigit)));
  };
  if (!token.empty() && token.front() == '-' && is_decimal(token.substr(1))) {
    return absl::InvalidArgumentError(
        absl::StrCat("negative scalar '", Av(token), "' for resource '", Av(name), "'"));
  }
  if (!is_decimal(token)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid scalar '", Av(token), "' for resource '", Av(name), "'"));
  }
  const size_t dot = token.find('.');
  const std::string_view whole = token.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view() : token.substr(dot + 1);
  if (frac.size() > 3) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resource '", Av(name), "' has more than three fractional digits: '", Av(token), "'"));
  }
  int64_t fixed = 0;
  for (char c : whole) {
    if (__builtin_mul_overflow(fixed, int64_t{10}, &fixed) ||
        __builtin_add_overflow(fixed, int64_t{c - '0'}, &fixed)) {
      return absl::InvalidArgumentError(
          absl::StrCat("scalar '", Av(token), "' is too large for resource '", Av(name), "'"));
    }
  }
  int64_t frac_units = 0;
  for (size_t i = 0; i < 3; ++i) {
    frac_units = frac_units * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  }
  if (__builtin_mul_overflow(fixed, kScalarScale, &fixed) ||
      __builtin_add_overflow(fixed, frac_units, &fixed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scalar '", Av(token), "' is too large for resource '", Av(name), "'"));
  }
  return fixed;
}

// Reads a non-empty run of digits into `*out`. False on anything else or on uint64 overflow.
bool ParseBound(std::string_view text, uint64_t* out) {
  if (text.empty()) {
    return false;
  }
  uint64_t value = 0;
  for (char c : text) {
    if (!IsDigit(c) || __builtin_mul_overflow(value, uint64_t{10}, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(c - '0'), &value)) {
      return false;
    }
  }
  *out = value;
  return true;
}

// `body` is the text between '[' and ']'.
absl::StatusOr<std::vector<ValueRange>> ParseRanges(std::string_view body, std::string_view name) {
  std::vector<ValueRange> ranges;
  if (Trim(body).empty()) {
    return ranges;
  }
  for (std::string_view piece : Split(body, ',')) {
    const std::string_view token = Trim(piece);
    const size_t dash = token.find('-');
    ValueRange range;
    if (dash == std::string_view::npos || !ParseBound(Trim(token.substr(0, dash)), &range.begin) ||
        !ParseBound(Trim(token.substr(dash + 1)), &range.end)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid range '", Av(token), "' for resource '", Av(name), "'"));
    }
    if (range.begin > range.end) {
      return absl::InvalidArgumentError(
          absl::StrCat("inverted range '[", Av(token), "]' for resource '", Av(name), "'"));
    }
    ranges.push_back(range);
  }
  return ranges;
}

// `body` is the text between '{' and '}'.
absl::StatusOr<std::vector<std::string>> ParseSet(std::string_view value, std::string_view body,
                                                  std::string_view name) {
  std::vector<std::string> items;
  if (Trim(body).empty()) {
    return items;
  }
  for (std::string_view piece : Split(body, ',')) {
    const std::string_view item = Trim(piece);
    if (item.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("empty item in '", Av(value), "' for resource '", Av(name), "'"));
    }
    if (!IsValidItem(item)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid item '", Av(item), "' for resource '", Av(name), "'"));
    }
    items.emplace_back(item);
  }
  return items;
}

// Parses one `name[(role)]:value` entry (already trimmed, non-empty). `text` is the whole
// input, quoted when the offending token is itself empty.
absl::StatusOr<ResourceEntry> ParseEntry(std::string_view entry_text, std::string_view text) {
  const size_t colon = entry_text.find(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("missing ':' in '", Av(entry_text), "'"));
  }
  const std::string_view head = Trim(entry_text.substr(0, colon));
  const std::string_view value = Trim(entry_text.substr(colon + 1));

  ResourceEntry entry;
  std::string_view name = head;
  const size_t open = head.find('(');
  const size_t close = head.find(')');
  if (open != std::string_view::npos || close != std::string_view::npos) {
    if (open == std::string_view::npos || close == std::string_view::npos || close < open ||
        head.find('(', open + 1) != std::string_view::npos ||
        head.find(')', close + 1) != std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("unbalanced parentheses in '", Av(entry_text), "'"));
    }
    if (close != head.size() - 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected text after the role in '", Av(entry_text), "'"));
    }
    name = Trim(head.substr(0, open));
    const std::string_view role = Trim(head.substr(open + 1, close - open - 1));
    if (role.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("empty role in '", Av(entry_text), "'"));
    }
    entry.role = std::string(role);
  }
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty resource name in '", Av(text), "'"));
  }
  entry.name = std::string(name);
  if (absl::Status status = ValidateKey(entry.name, entry.role); !status.ok()) {
    return status;
  }
  if (value.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("empty value in '", Av(entry_text), "'"));
  }

  const auto unbalanced = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("unbalanced brackets in '", Av(value), "' for resource '", Av(name), "'"));
  };
  const std::string_view body = value.substr(1, value.size() >= 2 ? value.size() - 2 : 0);
  if (value.front() == '[') {
    if (value.size() < 2 || value.back() != ']' ||
        body.find_first_of("[]{}") != std::string_view::npos) {
      return unbalanced();
    }
    entry.type = Type::kRanges;
    absl::StatusOr<std::vector<ValueRange>> ranges = ParseRanges(body, name);
    if (!ranges.ok()) {
      return ranges.status();
    }
    entry.ranges = NormalizeRanges(*std::move(ranges));
  } else if (value.front() == '{') {
    if (value.size() < 2 || value.back() != '}' ||
        body.find_first_of("[]{}") != std::string_view::npos) {
      return unbalanced();
    }
    entry.type = Type::kSet;
    absl::StatusOr<std::vector<std::string>> items = ParseSet(value, body, name);
    if (!items.ok()) {
      return items.status();
    }
    entry.items = *std::move(items);
    std::sort(entry.items.begin(), entry.items.end());
    entry.items.erase(std::unique(entry.items.begin(), entry.items.end()), entry.items.end());
  } else if (value.find_first_of("[]{}") != std::string_view::npos) {
    return unbalanced();
  } else {
    entry.type = Type::kScalar;
    absl::StatusOr<int64_t> scalar = ParseScalar(value, name);
    if (!scalar.ok()) {
      return scalar.status();
    }
    entry.scalar = *scalar;
  }
  return entry;
}

}  // namespace

int64_t ToFixed(double value) {
  // llround is unspecified outside the int64 range; saturate so a wild double from the wire
  // cannot become an arbitrary amount. Callers that must reject such input check first.
  if (std::isnan(value)) {
    return 0;
  }
  const double scaled = value * kScalarScale;
  if (scaled >= 9.2e18) {
    return std::numeric_limits<int64_t>::max();
  }
  if (scaled <= -9.2e18) {
    return std::numeric_limits<int64_t>::min();
  }
  return std::llround(scaled);
}

double FromFixed(int64_t fixed) { return static_cast<double>(fixed) / kScalarScale; }

absl::StatusOr<Resources> Resources::Parse(std::string_view text) {
  Resources resources;
  // Remembers the type of every name seen, including names whose value was zero or empty and
  // so never reached `entries_`: "cpus:0;cpus:[1-2]" is still a type clash.
  std::vector<std::pair<std::string, Type>> types;
  for (std::string_view piece : Split(text, ';')) {
    const std::string_view entry_text = Trim(piece);
    // Empty entries (a trailing ';', or an empty flag) are tolerated.
    if (entry_text.empty()) {
      continue;
    }
    absl::StatusOr<ResourceEntry> entry = ParseEntry(entry_text, text);
    if (!entry.ok()) {
      return entry.status();
    }
    auto seen = std::find_if(types.begin(), types.end(),
                             [&](const auto& named) { return named.first == entry->name; });
    if (seen == types.end()) {
      types.emplace_back(entry->name, entry->type);
    } else if (seen->second != entry->type) {
      return TypeClash(entry->name, seen->second, entry->type);
    }
    if (absl::Status status = AddCanonical(resources.MutableEntries(), *std::move(entry));
        !status.ok()) {
      return status;
    }
  }
  return resources;
}

absl::Status Resources::AddScalar(std::string_view name, int64_t fixed, std::string_view role) {
  ResourceEntry entry;
  entry.name = std::string(name);
  entry.role = std::string(role);
  entry.type = Type::kScalar;
  entry.scalar = fixed;
  return Add(entry);
}

absl::Status Resources::AddRanges(std::string_view name, std::vector<ValueRange> ranges,
                                  std::string_view role) {
  ResourceEntry entry;
  entry.name = std::string(name);
  entry.role = std::string(role);
  entry.type = Type::kRanges;
  entry.ranges = std::move(ranges);
  return Add(entry);
}

absl::Status Resources::AddSet(std::string_view name, std::vector<std::string> items,
                               std::string_view role) {
  ResourceEntry entry;
  entry.name = std::string(name);
  entry.role = std::string(role);
  entry.type = Type::kSet;
  entry.items = std::move(items);
  return Add(entry);
}

absl::Status Resources::Add(const ResourceEntry& entry) {
  absl::StatusOr<ResourceEntry> normalized = Normalize(entry);
  if (!normalized.ok()) {
    return normalized.status();
  }
  return AddCanonical(MutableEntries(), *std::move(normalized));
}

const std::vector<ResourceEntry>& Resources::NoEntries() {
  static const auto* const kNone = new std::vector<ResourceEntry>();
  return *kNone;
}

std::vector<ResourceEntry>& Resources::MutableEntries() {
  // use_count() == 1 is exact here: only a value sharing these entries could add an owner, and
  // there is none.
  if (entries_ == nullptr) {
    entries_ = std::make_shared<std::vector<ResourceEntry>>();
  } else if (entries_.use_count() > 1) {
    entries_ = std::make_shared<std::vector<ResourceEntry>>(*entries_);
  }
  return *entries_;
}

bool Resources::Contains(const Resources& other) const {
  if (entries_ == other.entries_) {
    return true;
  }
  const std::vector<ResourceEntry>& entries = this->entries();
  for (const ResourceEntry& wanted : other.entries()) {
    auto have = Find(entries, wanted.name, wanted.role);
    if (have == entries.end() || have->type != wanted.type) {
      return false;
    }
    switch (wanted.type) {
      case Type::kScalar:
        if (have->scalar < wanted.scalar) {
          return false;
        }
        break;
      case Type::kRanges:
        if (!RangesContain(have->ranges, wanted.ranges)) {
          return false;
        }
        break;
      case Type::kSet:
        if (!std::includes(have->items.begin(), have->items.end(), wanted.items.begin(),
                           wanted.items.end())) {
          return false;
        }
        break;
    }
  }
  return true;
}

absl::Status Resources::Subtract(const Resources& other) {
  if (!Contains(other)) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", ToString(), "' does not contain '", other.ToString(), "'"));
  }
  if (other.empty()) {
    return absl::OkStatus();
  }
  if (entries_ == other.entries_) {
    entries_.reset();  // Everything is removed.
    return absl::OkStatus();
  }
  std::vector<ResourceEntry>& entries = MutableEntries();
  for (const ResourceEntry& removed : other.entries()) {
    auto it = FindSlot(entries, removed.name, removed.role);
    switch (removed.type) {
      case Type::kScalar:
        it->scalar -= removed.scalar;
        break;
      case Type::kRanges:
        it->ranges = SubtractRanges(it->ranges, removed.ranges);
        break;
      case Type::kSet: {
        std::vector<std::string> left;
        std::set_difference(it->items.begin(), it->items.end(), removed.items.begin(),
                            removed.items.end(), std::back_inserter(left));
        it->items = std::move(left);
        break;
      }
    }
    if (IsEmptyValue(*it)) {
      entries.erase(it);
    }
  }
  if (entries.empty()) {
    entries_.reset();
  }
  return absl::OkStatus();
}

absl::Status Resources::Merge(const Resources& other) {
  if (other.empty()) {
    return absl::OkStatus();
  }
  if (empty()) {
    entries_ = other.entries_;  // Canonical already: share it.
    return absl::OkStatus();
  }
  // Both sides are canonical, so only AddCanonical can fail (type clash, overflow); working on
  // a copy keeps *this unchanged on failure.
  auto merged = std::make_shared<std::vector<ResourceEntry>>(entries());
  for (const ResourceEntry& entry : other.entries()) {
    if (absl::Status status = AddCanonical(*merged, entry); !status.ok()) {
      return status;
    }
  }
  entries_ = std::move(merged);
  return absl::OkStatus();
}

Resources& Resources::operator+=(const Resources& other) {
  const absl::Status status = Merge(other);
  ABSL_RAW_CHECK(status.ok(), status.ToString().c_str());
  return *this;
}

int64_t Resources::ScalarFixed(std::string_view name) const {
  int64_t total = 0;
  const std::vector<ResourceEntry>& entries = this->entries();
  for (auto it = FindSlot(entries, name, ""); it != entries.end() && it->name == name; ++it) {
    if (it->type == Type::kScalar && __builtin_add_overflow(total, it->scalar, &total)) {
      return std::numeric_limits<int64_t>::max();
    }
  }
  return total;
}

Resources Resources::ReservedFor(std::string_view role) const {
  Resources out;
  for (const ResourceEntry& entry : entries()) {
    if (entry.role == role) {
      out.MutableEntries().push_back(entry);  // Already in canonical order.
    }
  }
  return out;
}

Resources Resources::WithRole(std::string_view role) const {
  ABSL_RAW_CHECK(IsValidRole(role), "Resources::WithRole: invalid role");
  Resources out;
  for (ResourceEntry entry : entries()) {
    entry.role = std::string(role);
    // Entries of one name share a type, so the only possible failure is a scalar total past
    // int64 (about 9e15 units of one resource): a bug upstream, as for operator+=.
    const absl::Status status = AddCanonical(out.MutableEntries(), std::move(entry));
    ABSL_RAW_CHECK(status.ok(), status.ToString().c_str());
  }
  return out;
}

std::string Resources::ToString() const {
  std::string out;
  for (const ResourceEntry& entry : entries()) {
    if (!out.empty()) {
      out += ';';
    }
    absl::StrAppend(&out, entry.name);
    if (entry.role != kDefaultRole) {
      absl::StrAppend(&out, "(", entry.role, ")");
    }
    absl::StrAppend(&out, ":", FormatValue(entry));
  }
  return out;
}

}  // namespace rz
