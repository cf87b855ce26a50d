// Resources: the cluster's currency. A Resources value is a multiset of named resources, each
// a scalar (fixed point, 0.001 resolution), a set of integer ranges, or a set of strings, and
// each possibly reserved for a role.
//
// Text form (agent flags, CLI, tests): entries separated by ';', each `name[(role)]:value`:
//   cpus:2;mem:1024;disk(eng/web):512;ports:[31000-32000,33000-33010];zones:{a,b}
// A scalar is a decimal number with at most three fractional digits; ranges are `[b-e,...]`;
// sets are `{item,...}`. Role "*" (the default) means unreserved.
//
// Canonical form: entries are kept merged (one entry per (name, role)), sorted by name then
// role, with zero scalars and empty ranges/sets dropped, so equal resources compare equal.
//
// Copies are O(1): copies share their entries until one of them is modified (copy on write),
// because the same value is often held in several places at once (an agent's free pool, the
// offer made of it, the framework's holding).
//
// Thread rule: value type; not synchronized. Distinct values that share entries may be used
// from different threads (the sharing is reference counted atomically, and a value is copied
// before it is modified while shared).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace rz {

inline constexpr char kDefaultRole[] = "*";

// Fixed-point scalar: 1 unit = 0.001 of the resource (milli-cpus, KB-ish of mem MB, ...).
inline constexpr int64_t kScalarScale = 1000;

// Converts a double to fixed point, rounding to the nearest 0.001.
int64_t ToFixed(double value);
double FromFixed(int64_t fixed);

struct ValueRange {
  uint64_t begin = 0;
  uint64_t end = 0;  // Inclusive.
  friend bool operator==(const ValueRange&, const ValueRange&) = default;
};

struct ResourceEntry {
  enum class Type { kScalar, kRanges, kSet };

  std::string name;
  std::string role = kDefaultRole;  // Reservation role; "*" when unreserved.
  Type type = Type::kScalar;
  int64_t scalar = 0;              // kScalar: fixed point.
  std::vector<ValueRange> ranges;  // kRanges: sorted, disjoint, non-adjacent.
  std::vector<std::string> items;  // kSet: sorted, unique.

  friend bool operator==(const ResourceEntry&, const ResourceEntry&) = default;
};

class Resources {
 public:
  Resources() = default;

  // Parses the text form above. Returns InvalidArgument naming the offending token for any
  // malformed input: empty names, unknown syntax, negative or non-numeric scalars, more than
  // three fractional digits, inverted ranges, a name used with two different types.
  static absl::StatusOr<Resources> Parse(std::string_view text);

  // Adders. A name already present with another type is an InvalidArgument.
  absl::Status AddScalar(std::string_view name, int64_t fixed,
                         std::string_view role = kDefaultRole);
  absl::Status AddRanges(std::string_view name, std::vector<ValueRange> ranges,
                         std::string_view role = kDefaultRole);
  absl::Status AddSet(std::string_view name, std::vector<std::string> items,
                      std::string_view role = kDefaultRole);
  absl::Status Add(const ResourceEntry& entry);

  // True if every entry of `other` is covered by an entry of the same name, role and type
  // here (scalar amount, range coverage, set inclusion).
  bool Contains(const Resources& other) const;

  // Removes `other`. Returns FailedPrecondition (and leaves *this unchanged) unless
  // Contains(other).
  absl::Status Subtract(const Resources& other);

  // Adds `other`. Returns InvalidArgument (and leaves *this unchanged) on a type clash.
  absl::Status Merge(const Resources& other);

  Resources& operator+=(const Resources& other);  // CHECK-fails on a type clash.
  friend Resources operator+(Resources a, const Resources& b) { return a += b; }

  // The total scalar amount of `name` over all roles, in fixed point (0 if absent).
  int64_t ScalarFixed(std::string_view name) const;
  double Scalar(std::string_view name) const { return FromFixed(ScalarFixed(name)); }

  // Only the entries reserved for `role` (or unreserved, for "*").
  Resources ReservedFor(std::string_view role) const;
  // The same entries with their role set to `role` (entries that meet are merged).
  // REQUIRES: `role` is "*" or a valid role path (see Parse).
  Resources WithRole(std::string_view role) const;

  bool empty() const { return entries_ == nullptr || entries_->empty(); }
  const std::vector<ResourceEntry>& entries() const {
    return entries_ != nullptr ? *entries_ : NoEntries();
  }

  // The canonical text form, which Parse() reads back to an equal value. "" when empty.
  std::string ToString() const;

  friend bool operator==(const Resources& a, const Resources& b) {
    return a.entries_ == b.entries_ || a.entries() == b.entries();
  }

 private:
  static const std::vector<ResourceEntry>& NoEntries();
  // The entries, unshared (copied first if another value shares them), for modification.
  std::vector<ResourceEntry>& MutableEntries();

  // Canonical: see the header comment. Null when empty; shared between copies and never
  // modified while shared.
  std::shared_ptr<std::vector<ResourceEntry>> entries_;
};

}  // namespace rz
