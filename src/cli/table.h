// A plain-text table with left-aligned columns separated by two spaces, as `rz agents` and
// friends print it.
//
// Thread rule: value type; not synchronized.
#pragma once

#include <string>
#include <vector>

namespace rz::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}

  // REQUIRES: `row` has as many cells as the header.
  void AddRow(std::vector<std::string> row);

  // Every row (header first), each ending in '\n', without trailing spaces.
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace rz::cli
