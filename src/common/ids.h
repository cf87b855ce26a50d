// Strongly typed identifiers. An AgentId cannot be passed where a FrameworkId is expected, and
// neither converts implicitly from std::string.
//
// Thread rule: immutable value types; safe to share.
#pragma once

#include <ostream>
#include <string>
#include <utility>

namespace rz {

template <typename Tag>
class Id {
 public:
  Id() = default;
  explicit Id(std::string value) : value_(std::move(value)) {}

  const std::string& value() const { return value_; }
  bool empty() const { return value_.empty(); }

  friend bool operator==(const Id&, const Id&) = default;
  // clang-tidy 14 mistakes the defaulted <=> for a literal-zero comparison.
  friend auto operator<=>(const Id&, const Id&) = default;  // NOLINT(modernize-use-nullptr)
  template <typename H>
  friend H AbslHashValue(H state, const Id& id) {
    return H::combine(std::move(state), id.value_);
  }
  friend std::ostream& operator<<(std::ostream& os, const Id& id) {
    return os << "'" << id.value_ << "'";
  }

 private:
  std::string value_;
};

using AgentId = Id<struct AgentIdTag>;
using FrameworkId = Id<struct FrameworkIdTag>;
using TaskId = Id<struct TaskIdTag>;
using OfferId = Id<struct OfferIdTag>;
using StreamId = Id<struct StreamIdTag>;

}  // namespace rz
