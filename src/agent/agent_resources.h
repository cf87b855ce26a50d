// The resources an agent offers: detected from the machine, overridden by --resources.
//
// Thread rule: DetectMachine() reads /proc-style system state and the filesystem (call it from
// main() or a worker); the other functions are pure.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/resources.h"

namespace rz::agent {

struct MachineInfo {
  int cpus = 0;               // Hardware threads.
  uint64_t memory_mb = 0;     // Total physical memory.
  uint64_t disk_free_mb = 0;  // Free space (for unprivileged users) of the work dir's filesystem.
};

// Reads the machine's hardware threads, memory and the free space under `work_dir`.
// REQUIRES: `work_dir` exists. Returns Internal naming `work_dir` if statvfs() fails.
absl::StatusOr<MachineInfo> DetectMachine(const std::string& work_dir);

// The default offer of a machine: all hardware threads; memory minus min(1 GiB, half) for the
// system; free disk minus 10%; ports [31000-32000].
Resources DefaultResources(const MachineInfo& machine);

// Parses the --resources flag value `flag` (text form or JSON, see ParseResourcesFlag()) and
// adds every resource of `detected` whose name the flag does not mention. An empty flag yields
// `detected`. Returns InvalidArgument "--resources: <problem>" naming the bad token.
absl::StatusOr<Resources> ResolveResources(const std::string& flag, const Resources& detected);

// Parses --attributes: `name:value;name:value`. Names are [A-Za-z0-9_.-]+, values are
// non-empty and contain no ';'. InvalidArgument names the bad entry.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseAttributes(
    const std::string& text);

}  // namespace rz::agent
