// ScalarVector: scalar resource quantities in fixed point (rz::kScalarScale), indexed by a small
// resource-kind number that the owning allocator assigns per resource name. It is what the
// allocator's hot loop computes with instead of rz::Resources: no strings, no heap allocation
// for up to six kinds (more spill to the heap) (cpus, mem, disk, gpus, ...).
//
// Kinds missing at the end of the vector are zero, so vectors made before a new kind was
// registered stay valid.
//
// Thread rule: value type; not synchronized.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rz::allocator {

class ScalarVector {
 public:
  ScalarVector() = default;

  size_t size() const { return size_; }
  int64_t Get(size_t kind) const {
    if (kind < kInline) {
      return inline_[kind];
    }
    return kind < size_ ? more_[kind - kInline] : 0;
  }
  void Set(size_t kind, int64_t value) { *Slot(kind) = value; }
  void Add(size_t kind, int64_t delta) { *Slot(kind) += delta; }

  ScalarVector& operator+=(const ScalarVector& other) {
    for (size_t k = 0; k < other.size_; ++k) {
      Add(k, other.Get(k));
    }
    return *this;
  }
  ScalarVector& operator-=(const ScalarVector& other) {
    for (size_t k = 0; k < other.size_; ++k) {
      Add(k, -other.Get(k));
    }
    return *this;
  }

  // True if every kind is zero (or the vector is empty).
  bool IsZero() const {
    for (size_t k = 0; k < size_; ++k) {
      if (Get(k) != 0) {
        return false;
      }
    }
    return true;
  }
  // True if some kind is positive.
  bool AnyPositive() const {
    for (size_t k = 0; k < size_; ++k) {
      if (Get(k) > 0) {
        return true;
      }
    }
    return false;
  }
  // True if every kind here is at most the same kind of `other`.
  bool AllLessEqual(const ScalarVector& other) const {
    for (size_t k = 0; k < size_; ++k) {
      if (Get(k) > other.Get(k)) {
        return false;
      }
    }
    return true;
  }
  void Clear() {
    inline_.fill(0);
    std::fill(more_.begin(), more_.end(), 0);
  }

  friend bool operator==(const ScalarVector& a, const ScalarVector& b) {
    const size_t n = std::max(a.size_, b.size_);
    for (size_t k = 0; k < n; ++k) {
      if (a.Get(k) != b.Get(k)) {
        return false;
      }
    }
    return true;
  }

 private:
  // Six kinds cover cpus, mem, disk, gpus and two custom resources without a heap allocation.
  static constexpr size_t kInline = 6;

  int64_t* Slot(size_t kind) {
    if (kind >= size_) {
      size_ = kind + 1;
      if (size_ > kInline) {
        more_.resize(size_ - kInline, 0);
      }
    }
    return kind < kInline ? &inline_[kind] : &more_[kind - kInline];
  }

  std::array<int64_t, kInline> inline_{};
  size_t size_ = 0;
  std::vector<int64_t> more_;  // Kinds from kInline on.
};

}  // namespace rz::allocator
