// StableVector<T>: an indexable sequence whose elements never move (each is its own heap
// object), for the allocator's role, pair, framework and agent tables. Code holds references
// to elements across insertions (a walk iterates a role's sorter while offers are made), which
// std::vector would invalidate; std::deque keeps them stable too, but its operator[] is an
// out-of-line call per access for large elements, and the cycle indexes these tables on every
// step.
//
// Thread rule: not synchronized.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace rz::allocator {

template <typename T>
class StableVector {
 public:
  template <typename Value, typename Base>
  class Iterator {
   public:
    explicit Iterator(Base it) : it_(it) {}
    Value& operator*() const { return **it_; }
    Value* operator->() const { return it_->get(); }
    Iterator& operator++() {
      ++it_;
      return *this;
    }
    friend bool operator==(const Iterator& a, const Iterator& b) { return a.it_ == b.it_; }

   private:
    Base it_;
  };
  using iterator = Iterator<T, typename std::vector<std::unique_ptr<T>>::iterator>;
  using const_iterator =
      Iterator<const T, typename std::vector<std::unique_ptr<T>>::const_iterator>;

  size_t size() const { return items_.size(); }
  T& operator[](size_t i) { return *items_[i]; }
  const T& operator[](size_t i) const { return *items_[i]; }
  T& emplace_back() { return *items_.emplace_back(std::make_unique<T>()); }

  iterator begin() { return iterator(items_.begin()); }
  iterator end() { return iterator(items_.end()); }
  const_iterator begin() const { return const_iterator(items_.begin()); }
  const_iterator end() const { return const_iterator(items_.end()); }

 private:
  std::vector<std::unique_ptr<T>> items_;
};

}  // namespace rz::allocator
