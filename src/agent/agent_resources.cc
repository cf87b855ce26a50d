#include "agent/agent_resources.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string_view>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/resources_proto.h"
#include "glog/logging.h"

namespace rz::agent {
namespace {

// Adding one resource of each name to an empty value cannot fail.
void CheckOk(const absl::Status& status) { CHECK(status.ok()) << status; }

}  // namespace

absl::StatusOr<MachineInfo> DetectMachine(const std::string& work_dir) {
  MachineInfo machine;
  machine.cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    machine.memory_mb =
        static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) / (1024 * 1024);
  }
  struct statvfs fs;
  if (::statvfs(work_dir.c_str(), &fs) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot stat the filesystem of '", work_dir, "': ", std::strerror(errno)));
  }
  machine.disk_free_mb = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize / (1024 * 1024);
  return machine;
}

Resources DefaultResources(const MachineInfo& machine) {
  const uint64_t reserved_mb = std::min<uint64_t>(1024, machine.memory_mb / 2);
  const uint64_t mem_mb = machine.memory_mb - reserved_mb;
  const uint64_t disk_mb = machine.disk_free_mb - machine.disk_free_mb / 10;
  Resources resources;
  CheckOk(resources.AddScalar("cpus", int64_t{machine.cpus} * kScalarScale));
  CheckOk(resources.AddScalar("mem", static_cast<int64_t>(mem_mb) * kScalarScale));
  CheckOk(resources.AddScalar("disk", static_cast<int64_t>(disk_mb) * kScalarScale));
  CheckOk(resources.AddRanges("ports", {ValueRange{31000, 32000}}));
  return resources;
}

absl::StatusOr<Resources> ResolveResources(const std::string& flag, const Resources& detected) {
  if (flag.empty()) {
    return detected;
  }
  absl::StatusOr<Resources> given = ParseResourcesFlag(flag);
  if (!given.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--resources: ", given.status().message()));
  }
  std::set<std::string> named;
  for (const ResourceEntry& entry : given->entries()) {
    named.insert(entry.name);
  }
  Resources resolved = *std::move(given);
  for (const ResourceEntry& entry : detected.entries()) {
    if (!named.contains(entry.name)) {
      if (absl::Status status = resolved.Add(entry); !status.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--resources: ", status.message()));
      }
    }
  }
  return resolved;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseAttributes(
    const std::string& text) {
  std::vector<std::pair<std::string, std::string>> attributes;
  for (absl::string_view entry : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t colon = entry.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--attributes: missing ':' in '", entry, "'"));
    }
    const absl::string_view name = absl::StripAsciiWhitespace(entry.substr(0, colon));
    const absl::string_view value = absl::StripAsciiWhitespace(entry.substr(colon + 1));
    const bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-';
    });
    if (!name_ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("--attributes: invalid attribute name '", name, "'"));
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--attributes: attribute '", name, "' has no value"));
    }
    for (const auto& [existing, unused] : attributes) {
      if (existing == name) {
        return absl::InvalidArgumentError(
            absl::StrCat("--attributes: attribute '", name, "' is given twice"));
      }
    }
    attributes.emplace_back(std::string(name), std::string(value));
  }
  return attributes;
}

}  // namespace rz::agent
