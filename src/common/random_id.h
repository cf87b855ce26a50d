// Random identifiers: UUID strings for ids the daemons assign, raw bytes for status update
// uuids.
//
// Thread rule: thread-safe.
#pragma once

#include <string>

namespace rz {

// A random (version 4) UUID in its 36-character text form.
std::string NewUuid();

// 16 random bytes.
std::string NewUuidBytes();

// The text form of 16 uuid bytes; the input itself if it is not 16 bytes long.
std::string UuidToString(const std::string& bytes);

}  // namespace rz
