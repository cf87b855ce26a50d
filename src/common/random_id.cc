#include "common/random_id.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace rz {

std::string NewUuidBytes() {
  thread_local absl::BitGen gen;
  std::string bytes(16, '\0');
  for (char& c : bytes) {
    c = static_cast<char>(absl::Uniform<uint8_t>(gen));
  }
  bytes[6] = static_cast<char>((bytes[6] & 0x0f) | 0x40);  // Version 4.
  bytes[8] = static_cast<char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant.
  return bytes;
}

std::string UuidToString(const std::string& bytes) {
  if (bytes.size() != 16) {
    return bytes;
  }
  const std::string hex = absl::BytesToHexString(bytes);
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20));
}

std::string NewUuid() { return UuidToString(NewUuidBytes()); }

}  // namespace rz
