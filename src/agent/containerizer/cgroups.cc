#include "agent/containerizer/cgroups.h"

#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace rz::agent {
namespace {

const std::vector<std::string>& V1Controllers() {
  static const auto* controllers =
      new std::vector<std::string>{"cpu", "cpuacct", "memory", "pids", "freezer"};
  return *controllers;
}

const std::vector<std::string>& V2Controllers() {
  static const auto* controllers = new std::vector<std::string>{"cpu", "memory", "pids"};
  return *controllers;
}

constexpr uint64_t kCfsPeriodUs = 100000;
constexpr uint64_t kMinCfsQuotaUs = 1000;  // The kernel refuses quotas below 1 ms.
constexpr double kSharesPerCpu = 1024;     // v1's default cpu.shares is one cpu's worth.
constexpr uint64_t kMinShares = 2;
constexpr double kWeightPerCpu = 100;  // v2's default cpu.weight is one cpu's worth.
constexpr int64_t kMinWeight = 1;
constexpr int64_t kMaxWeight = 10000;
constexpr double kMaxCpus = 1 << 20;  // Keeps the integer conversions below in range.
// cpuacct.stat counts in USER_HZ, which is 100 on every Linux ABI (whatever CONFIG_HZ is).
constexpr double kUserHz = 100;
// v1 reports "no limit" as the largest page-aligned counter (9223372036854771712 with 4 KiB
// pages); anything from 4 EiB up is that.
constexpr uint64_t kV1Unlimited = uint64_t{1} << 62;
// On v2 the root's own processes move into this leaf (see cgroups.h).
constexpr char kV2AgentLeaf[] = "agent";

// KillAll and Destroy poll the kernel: each kill round waits up to 1 s for a freezer to settle
// and up to 1 s for the killed processes to leave; rmdir is retried for up to 1 s while the
// kernel still releases a cgroup whose last processes just died.
constexpr absl::Duration kPollInterval = absl::Milliseconds(10);
constexpr int kFreezePolls = 100;
constexpr int kExitPolls = 100;
constexpr int kKillRounds = 5;
constexpr int kRemovePolls = 100;
constexpr int kEvacuateRounds = 10;

absl::Status Annotate(const absl::Status& status, const std::string& context) {
  if (status.ok()) {
    return status;
  }
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return name.empty() ? dir : absl::StrCat(dir, "/", name);
}

// A name is a relative path of non-empty components other than "." and "..".
absl::Status ValidateName(const std::string& name, bool allow_empty = false) {
  if (name.empty()) {
    return allow_empty ? absl::OkStatus() : absl::InvalidArgumentError("empty cgroup name");
  }
  const bool has_control =
      name.find('\0') != std::string::npos || name.find('\n') != std::string::npos;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (has_control || part.empty() || part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat("invalid cgroup name '", name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateCpus(const char* field, double cpus) {
  if (!std::isfinite(cpus) || cpus <= 0 || cpus > kMaxCpus) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be positive and at most ", kMaxCpus, ", not ", cpus));
  }
  return absl::OkStatus();
}

absl::Status ValidateLimits(const CgroupLimits& limits) {
  if (limits.cpu_shares_cpus) {
    RZ_RETURN_IF_ERROR(ValidateCpus("cpu_shares_cpus", *limits.cpu_shares_cpus));
  }
  if (limits.cpu_limit_cpus) {
    RZ_RETURN_IF_ERROR(ValidateCpus("cpu_limit_cpus", *limits.cpu_limit_cpus));
  }
  if (limits.memory_limit_bytes && *limits.memory_limit_bytes == 0) {
    return absl::InvalidArgumentError("memory_limit_bytes must be positive");
  }
  if (limits.pids_max && *limits.pids_max == 0) {
    return absl::InvalidArgumentError("pids_max must be positive");
  }
  return absl::OkStatus();
}

uint64_t SharesFor(double cpus) {
  return std::max<uint64_t>(kMinShares, static_cast<uint64_t>(std::llround(cpus * kSharesPerCpu)));
}

uint64_t WeightFor(double cpus) {
  return static_cast<uint64_t>(
      std::clamp<int64_t>(std::llround(cpus * kWeightPerCpu), kMinWeight, kMaxWeight));
}

uint64_t QuotaFor(double cpus) {
  return std::max<uint64_t>(kMinCfsQuotaUs,
                            static_cast<uint64_t>(std::llround(cpus * kCfsPeriodUs)));
}

// "key value" lines, as in cpu.stat, memory.stat, memory.events, pids.events, cpuacct.stat and
// memory.oom_control. Lines of another shape are skipped.
absl::flat_hash_map<std::string, uint64_t> ParseKeyed(const std::string& text) {
  absl::flat_hash_map<std::string, uint64_t> values;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t value;
    if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &value)) {
      values[std::string(parts[0])] = value;
    }
  }
  return values;
}

uint64_t Get(const absl::flat_hash_map<std::string, uint64_t>& values, const std::string& key) {
  auto it = values.find(key);
  return it == values.end() ? 0 : it->second;
}

// A number, or 0 for the literal "max" (no limit).
absl::StatusOr<uint64_t> ParseNumber(const std::string& path, const std::string& text) {
  const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  uint64_t value = 0;
  if (trimmed != "max" && !absl::SimpleAtoi(trimmed, &value)) {
    return absl::InternalError(absl::StrCat("unexpected contents '", text, "' in '", path, "'"));
  }
  return value;
}

absl::StatusOr<std::vector<pid_t>> ParsePids(const std::string& path, const std::string& text) {
  std::vector<pid_t> pids;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    pid_t pid;
    if (!absl::SimpleAtoi(line, &pid)) {
      return absl::InternalError(absl::StrCat("unexpected line '", line, "' in '", path, "'"));
    }
    pids.push_back(pid);
  }
  return pids;
}

// ---------------------------------------------------------------------------------------------
// Detection

struct Mount {
  std::string root;  // The cgroup path mounted there ("/" unless in a cgroup namespace).
  std::string mount_point;
  std::string fstype;
  std::vector<std::string> super_options;  // For cgroup v1: its controllers, among others.
};

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      const absl::string_view digits = field.substr(i + 1, 3);
      if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '7'; })) {
        out.push_back(
            static_cast<char>((digits[0] - '0') * 64 + (digits[1] - '0') * 8 + (digits[2] - '0')));
        i += 3;
        continue;
      }
    }
    out.push_back(field[i]);
  }
  return out;
}

// Lines look like "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory":
// id, parent, device, root, mount point, options, optional fields, "-", fstype, source, super
// options.
std::vector<Mount> ParseMountInfo(const std::string& text) {
  std::vector<Mount> mounts;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    size_t separator = 6;
    while (separator < fields.size() && fields[separator] != "-") {
      ++separator;
    }
    if (separator + 3 >= fields.size()) {
      continue;
    }
    Mount mount;
    mount.root = UnescapeMountField(fields[3]);
    mount.mount_point = UnescapeMountField(fields[4]);
    mount.fstype = std::string(fields[separator + 1]);
    mount.super_options = absl::StrSplit(fields[separator + 3], ',');
    mounts.push_back(std::move(mount));
  }
  return mounts;
}

// /proc/self/cgroup: "4:memory:/a/b" per v1 hierarchy (controllers comma-separated) and
// "0::/a/b" for the unified hierarchy.
struct SelfCgroups {
  absl::flat_hash_map<std::string, std::string> v1;  // Controller → cgroup path.
  std::optional<std::string> v2;
};

SelfCgroups ParseSelfCgroup(const std::string& text) {
  SelfCgroups self;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const size_t first = line.find(':');
    const size_t second = first == absl::string_view::npos ? first : line.find(':', first + 1);
    if (second == absl::string_view::npos) {
      continue;
    }
    const absl::string_view id = line.substr(0, first);
    const absl::string_view controllers = line.substr(first + 1, second - first - 1);
    const std::string path(line.substr(second + 1));
    if (controllers.empty()) {
      if (id == "0") {
        self.v2 = path;
      }
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(controllers, ',')) {
      self.v1[std::string(controller)] = path;
    }
  }
  return self;
}

// The directory of cgroup `path` under `mount`, or nullopt if the mount does not show it (a
// mount of another part of the hierarchy).
std::optional<std::string> DirUnder(const Mount& mount, const std::string& path) {
  std::string relative;
  if (mount.root == "/") {
    relative = path;
  } else if (path == mount.root) {
    relative = "";
  } else if (absl::StartsWith(path, absl::StrCat(mount.root, "/"))) {
    relative = path.substr(mount.root.size());
  } else {
    return std::nullopt;
  }
  if (relative == "/") {
    relative = "";
  }
  return mount.mount_point + relative;
}

// One mounted hierarchy and where the agent's cgroups go in it.
struct Hierarchy {
  std::vector<std::string> controllers;  // Those of ours it carries.
  std::string mount_point;
  std::string root_dir;  // Absolute; equal to or below mount_point.
};

absl::StatusOr<std::vector<Hierarchy>> DetectV1(const std::vector<Mount>& mounts,
                                                const SelfCgroups& self,
                                                const std::string& root_override) {
  auto carries = [](const Mount& mount, const std::string& controller) {
    return mount.fstype == "cgroup" &&
           std::find(mount.super_options.begin(), mount.super_options.end(), controller) !=
               mount.super_options.end();
  };
  std::vector<std::string> unmounted;
  for (const std::string& controller : V1Controllers()) {
    if (std::none_of(mounts.begin(), mounts.end(),
                     [&](const Mount& mount) { return carries(mount, controller); })) {
      unmounted.push_back(controller);
    }
  }
  if (!unmounted.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("cgroups v1: no hierarchy mounted for ",
                                                      absl::StrJoin(unmounted, ", "), " (needs ",
                                                      absl::StrJoin(V1Controllers(), ", "), ")"));
  }

  std::vector<Hierarchy> hierarchies;
  for (const std::string& controller : V1Controllers()) {
    std::string path = root_override;
    if (path.empty()) {
      auto it = self.v1.find(controller);
      if (it == self.v1.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "cgroups v1: /proc/self/cgroup has no line for the ", controller, " hierarchy"));
      }
      path = it->second;
    }
    // A hierarchy may be mounted more than once; take a mount that shows `path`.
    const Mount* found = nullptr;
    std::optional<std::string> root_dir;
    for (const Mount& mount : mounts) {
      if (carries(mount, controller) && (root_dir = DirUnder(mount, path))) {
        found = &mount;
        break;
      }
    }
    if (found == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("cgroups v1: no mount of the ", controller,
                                                        " hierarchy shows cgroup '", path, "'"));
    }
    auto same = std::find_if(hierarchies.begin(), hierarchies.end(), [&](const Hierarchy& h) {
      return h.mount_point == found->mount_point;
    });
    if (same != hierarchies.end()) {
      same->controllers.push_back(controller);
    } else {
      hierarchies.push_back(
          {.controllers = {controller}, .mount_point = found->mount_point, .root_dir = *root_dir});
    }
  }
  return hierarchies;
}

absl::StatusOr<Hierarchy> DetectV2(CgroupFs& fs, const std::vector<Mount>& mounts,
                                   const SelfCgroups& self, const std::string& root_override) {
  auto mount = std::find_if(mounts.begin(), mounts.end(),
                            [](const Mount& m) { return m.fstype == "cgroup2"; });
  if (mount == mounts.end()) {
    return absl::FailedPreconditionError("cgroups v2: no cgroup2 filesystem is mounted");
  }
  const std::string controllers_file = mount->mount_point + "/cgroup.controllers";
  absl::StatusOr<std::string> text = fs.Read(controllers_file);
  if (!text.ok()) {
    return Annotate(text.status(), "cgroups v2");
  }
  std::vector<std::string> available =
      absl::StrSplit(*text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  std::vector<std::string> missing;
  for (const std::string& controller : V2Controllers()) {
    if (std::find(available.begin(), available.end(), controller) == available.end()) {
      missing.push_back(controller);
    }
  }
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cgroups v2: controllers ", absl::StrJoin(missing, ", "), " are not available at '",
        mount->mount_point, "' (cgroup.controllers: '", absl::StrJoin(available, " "), "')"));
  }
  std::string path = root_override;
  if (path.empty()) {
    if (!self.v2) {
      return absl::FailedPreconditionError(
          "cgroups v2: /proc/self/cgroup has no line for the unified hierarchy");
    }
    path = *self.v2;
  }
  std::optional<std::string> root_dir = DirUnder(*mount, path);
  if (!root_dir) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cgroups v2: the mount at '", mount->mount_point, "' does not show cgroup '", path, "'"));
  }
  return Hierarchy{
      .controllers = V2Controllers(), .mount_point = mount->mount_point, .root_dir = *root_dir};
}

// An absolute cgroup path without trailing '/', "." or ".." ("/" itself is allowed).
absl::StatusOr<std::string> NormalizeRootOverride(const std::string& root) {
  if (root.empty() || root == "/") {
    return root;
  }
  std::string trimmed = root;
  while (trimmed.size() > 1 && trimmed.back() == '/') {
    trimmed.pop_back();
  }
  if (trimmed.front() != '/' || !ValidateName(trimmed.substr(1)).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cgroups root '", root, "' must be an absolute path like '/rz'"));
  }
  return trimmed;
}

// ---------------------------------------------------------------------------------------------
// What v1 and v2 share: hierarchies with a root directory each, nested cgroups as directories,
// processes in cgroup.procs, and the kill loop.

class CgroupsBase : public Cgroups {
 public:
  CgroupsBase(CgroupFs& fs, std::vector<Hierarchy> hierarchies)
      : fs_(fs), hierarchies_(std::move(hierarchies)) {}

  std::vector<std::string> Paths(const std::string& name) const override {
    if (!ValidateName(name).ok()) {
      return {};
    }
    std::vector<std::string> paths;
    for (const Hierarchy& hierarchy : hierarchies_) {
      paths.push_back(JoinPath(hierarchy.root_dir, name));
    }
    return paths;
  }

  absl::StatusOr<std::vector<pid_t>> Processes(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    std::set<pid_t> pids;
    bool exists = false;
    for (const std::string& dir : Paths(name)) {
      if (!fs_.Exists(dir)) {
        continue;
      }
      exists = true;
      RZ_RETURN_IF_ERROR(Annotate(CollectPids(dir, pids),
                                  absl::StrCat("listing processes of cgroup '", name, "'")));
    }
    if (!exists) {
      return NotFound(name);
    }
    return std::vector<pid_t>(pids.begin(), pids.end());
  }

  absl::Status KillAll(const std::string& name) final {
    RZ_ASSIGN_OR_RETURN(std::vector<pid_t> pids, Processes(name));
    const std::string context = absl::StrCat("killing the processes of cgroup '", name, "'");
    for (int round = 0; round < kKillRounds && !pids.empty(); ++round) {
      RZ_RETURN_IF_ERROR(Annotate(KillRound(name), context));
      for (int poll = 0; poll < kExitPolls; ++poll) {
        RZ_ASSIGN_OR_RETURN(pids, Processes(name));
        if (pids.empty()) {
          break;
        }
        fs_.Sleep(kPollInterval);
      }
    }
    if (!pids.empty()) {
      return absl::DeadlineExceededError(absl::StrCat(context, ": processes ",
                                                      absl::StrJoin(pids, ", "), " survived ",
                                                      kKillRounds, " rounds of SIGKILL"));
    }
    return absl::OkStatus();
  }

  absl::Status Destroy(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    const std::vector<std::string> paths = Paths(name);
    if (std::none_of(paths.begin(), paths.end(),
                     [this](const std::string& dir) { return fs_.Exists(dir); })) {
      return absl::OkStatus();
    }
    const std::string context = absl::StrCat("destroying cgroup '", name, "'");
    absl::Status killed = KillAll(name);
    if (!killed.ok() && !absl::IsNotFound(killed)) {  // NotFound: removed meanwhile.
      return Annotate(killed, context);
    }
    for (const std::string& dir : paths) {
      RZ_RETURN_IF_ERROR(Annotate(RemoveTree(dir), context));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<std::string>> List(const std::string& parent) override {
    RZ_RETURN_IF_ERROR(ValidateName(parent, /*allow_empty=*/true));
    std::set<std::string> names;
    for (const Hierarchy& hierarchy : hierarchies_) {
      absl::StatusOr<std::vector<std::string>> children =
          fs_.ListDirs(JoinPath(hierarchy.root_dir, parent));
      if (absl::IsNotFound(children.status())) {
        continue;
      }
      RZ_RETURN_IF_ERROR(
          Annotate(children.status(), absl::StrCat("listing cgroups under '", parent, "'")));
      names.insert(children->begin(), children->end());
    }
    return std::vector<std::string>(names.begin(), names.end());
  }

 protected:
  static absl::Status NotFound(const std::string& name) {
    return absl::NotFoundError(absl::StrCat("cgroup '", name, "' does not exist"));
  }

  // One attempt at killing everything in `name`; KillAll() repeats it until `name` is empty.
  virtual absl::Status KillRound(const std::string& name) = 0;

  // SIGKILLs every process in `name`. Processes that exit meanwhile are no error.
  absl::Status SignalAll(const std::string& name) {
    RZ_ASSIGN_OR_RETURN(const std::vector<pid_t> pids, Processes(name));
    for (pid_t pid : pids) {
      absl::Status status = fs_.Kill(pid, SIGKILL);
      if (!status.ok() && !absl::IsNotFound(status)) {
        return status;
      }
    }
    return absl::OkStatus();
  }

  // Writes `freeze` to `file` and waits (bounded) until `is_frozen` holds, so that no process
  // in the cgroup can fork while SignalAll() lists and kills; then `thaw` lets the killed
  // processes die. A freezer that does not settle (a task stuck in the kernel) is logged and
  // killed anyway: the next round catches what it missed.
  absl::Status FreezeKillThaw(const std::string& name, const std::string& file,
                              const std::string& freeze, const std::string& thaw,
                              const std::string& state_file,
                              bool (*is_frozen)(const std::string& state)) {
    RZ_RETURN_IF_ERROR(fs_.Write(file, freeze));
    bool frozen = false;
    for (int poll = 0; poll < kFreezePolls && !frozen; ++poll) {
      absl::StatusOr<std::string> state = fs_.Read(state_file);
      frozen = state.ok() && is_frozen(*state);
      if (!frozen) {
        fs_.Sleep(kPollInterval);
      }
    }
    if (!frozen) {
      LOG(WARNING) << "cgroup '" << name << "' did not freeze within "
                   << kPollInterval * kFreezePolls << "; killing its processes anyway";
    }
    absl::Status killed = SignalAll(name);
    absl::Status thawed = fs_.Write(file, thaw);
    return killed.ok() ? thawed : killed;
  }

  // `dir` and, recursively, the cgroups below it.
  absl::Status CollectPids(const std::string& dir, std::set<pid_t>& pids) {
    const std::string procs = dir + "/cgroup.procs";
    absl::StatusOr<std::string> text = fs_.Read(procs);
    if (absl::IsNotFound(text.status())) {
      return absl::OkStatus();  // Removed meanwhile.
    }
    RZ_RETURN_IF_ERROR(text.status());
    RZ_ASSIGN_OR_RETURN(const std::vector<pid_t> found, ParsePids(procs, *text));
    pids.insert(found.begin(), found.end());
    absl::StatusOr<std::vector<std::string>> children = fs_.ListDirs(dir);
    if (absl::IsNotFound(children.status())) {
      return absl::OkStatus();
    }
    RZ_RETURN_IF_ERROR(children.status());
    for (const std::string& child : *children) {
      RZ_RETURN_IF_ERROR(CollectPids(JoinPath(dir, child), pids));
    }
    return absl::OkStatus();
  }

  // Creates `dir` and its missing parents. REQUIRES: `dir` is `hierarchy.mount_point` or below.
  absl::Status MakeDirs(const Hierarchy& hierarchy, const std::string& dir) {
    std::string current = hierarchy.mount_point;
    for (absl::string_view part :
         absl::StrSplit(dir.substr(hierarchy.mount_point.size()), '/', absl::SkipEmpty())) {
      absl::StrAppend(&current, "/", part);
      absl::Status made = fs_.MakeDir(current);
      if (!made.ok() && !absl::IsAlreadyExists(made)) {
        return made;
      }
    }
    return absl::OkStatus();
  }

  // Removes `dir` after the cgroups below it. rmdir answers EBUSY (FailedPrecondition) for a short
  // while after the last process of a cgroup died, so that is retried.
  absl::Status RemoveTree(const std::string& dir) {
    absl::StatusOr<std::vector<std::string>> children = fs_.ListDirs(dir);
    if (absl::IsNotFound(children.status())) {
      return absl::OkStatus();
    }
    RZ_RETURN_IF_ERROR(children.status());
    for (const std::string& child : *children) {
      RZ_RETURN_IF_ERROR(RemoveTree(JoinPath(dir, child)));
    }
    absl::Status removed;
    for (int poll = 0; poll < kRemovePolls; ++poll) {
      removed = fs_.RemoveDir(dir);
      if (removed.ok() || absl::IsNotFound(removed)) {
        return absl::OkStatus();
      }
      if (!absl::IsFailedPrecondition(removed)) {
        return removed;
      }
      fs_.Sleep(kPollInterval);
    }
    return removed;
  }

  absl::StatusOr<std::string> Read(const std::string& path, const std::string& context) {
    absl::StatusOr<std::string> text = fs_.Read(path);
    if (!text.ok()) {
      return Annotate(text.status(), context);
    }
    return text;
  }

  // A number, or 0 for "max" (no limit).
  absl::StatusOr<uint64_t> ReadNumber(const std::string& path, const std::string& context) {
    RZ_ASSIGN_OR_RETURN(const std::string text, Read(path, context));
    absl::StatusOr<uint64_t> value = ParseNumber(path, text);
    if (!value.ok()) {
      return Annotate(value.status(), context);
    }
    return value;
  }

  absl::StatusOr<absl::flat_hash_map<std::string, uint64_t>> ReadKeyed(const std::string& path,
                                                                       const std::string& context) {
    RZ_ASSIGN_OR_RETURN(const std::string text, Read(path, context));
    return ParseKeyed(text);
  }

  std::string DescribeAs(int version) const {
    std::vector<std::string> controllers;
    std::vector<std::string> roots;
    for (const Hierarchy& hierarchy : hierarchies_) {
      controllers.insert(controllers.end(), hierarchy.controllers.begin(),
                         hierarchy.controllers.end());
      roots.push_back(hierarchy.root_dir);
    }
    return absl::StrCat("cgroups v", version, " (", absl::StrJoin(controllers, ", "), ") under ",
                        absl::StrJoin(roots, ", "));
  }

  CgroupFs& fs_;
  const std::vector<Hierarchy> hierarchies_;
};

// ---------------------------------------------------------------------------------------------
// v1: one hierarchy per controller, or several controllers co-mounted in one.

class CgroupsV1 final : public CgroupsBase {
 public:
  CgroupsV1(CgroupFs& fs, std::vector<Hierarchy> hierarchies)
      : CgroupsBase(fs, std::move(hierarchies)) {
    for (const Hierarchy& hierarchy : hierarchies_) {
      for (const std::string& controller : hierarchy.controllers) {
        root_of_[controller] = hierarchy.root_dir;
      }
    }
  }

  int version() const override { return 1; }
  std::string Describe() const override { return DescribeAs(1); }

  absl::Status Create(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    for (const Hierarchy& hierarchy : hierarchies_) {
      RZ_RETURN_IF_ERROR(Annotate(MakeDirs(hierarchy, JoinPath(hierarchy.root_dir, name)),
                                  absl::StrCat("creating cgroup '", name, "'")));
    }
    return absl::OkStatus();
  }

  absl::Status Apply(const std::string& name, const CgroupLimits& limits) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    RZ_RETURN_IF_ERROR(ValidateLimits(limits));
    const std::string context = absl::StrCat("applying limits to cgroup '", name, "'");
    const std::string cpu = Dir("cpu", name);
    if (limits.cpu_shares_cpus) {
      RZ_RETURN_IF_ERROR(
          Annotate(fs_.Write(cpu + "/cpu.shares", absl::StrCat(SharesFor(*limits.cpu_shares_cpus))),
                   context));
    }
    if (limits.cpu_limit_cpus) {
      RZ_RETURN_IF_ERROR(
          Annotate(fs_.Write(cpu + "/cpu.cfs_period_us", absl::StrCat(kCfsPeriodUs)), context));
      RZ_RETURN_IF_ERROR(Annotate(
          fs_.Write(cpu + "/cpu.cfs_quota_us", absl::StrCat(QuotaFor(*limits.cpu_limit_cpus))),
          context));
    }
    if (limits.memory_limit_bytes) {
      RZ_RETURN_IF_ERROR(Annotate(SetMemoryLimit(name, *limits.memory_limit_bytes), context));
    }
    if (limits.pids_max) {
      RZ_RETURN_IF_ERROR(Annotate(
          fs_.Write(Dir("pids", name) + "/pids.max", absl::StrCat(*limits.pids_max)), context));
    }
    return absl::OkStatus();
  }

  absl::Status Place(const std::string& name, pid_t pid) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    for (const Hierarchy& hierarchy : hierarchies_) {
      RZ_RETURN_IF_ERROR(Annotate(
          fs_.Write(JoinPath(hierarchy.root_dir, name) + "/cgroup.procs", absl::StrCat(pid)),
          absl::StrCat("placing pid ", pid, " in cgroup '", name, "'")));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ResourceStatistics> Statistics(const std::string& name) override {
    RZ_ASSIGN_OR_RETURN(const std::vector<pid_t> pids, Processes(name));
    const std::string context = absl::StrCat("reading statistics of cgroup '", name, "'");
    v1::ResourceStatistics stats;
    stats.set_processes(pids.size());

    RZ_ASSIGN_OR_RETURN(auto cpuacct, ReadKeyed(Dir("cpuacct", name) + "/cpuacct.stat", context));
    stats.set_cpus_user_time_secs(Get(cpuacct, "user") / kUserHz);
    stats.set_cpus_system_time_secs(Get(cpuacct, "system") / kUserHz);

    const std::string cpu = Dir("cpu", name);
    RZ_ASSIGN_OR_RETURN(auto cpu_stat, ReadKeyed(cpu + "/cpu.stat", context));
    stats.set_cpus_nr_periods(Get(cpu_stat, "nr_periods"));
    stats.set_cpus_nr_throttled(Get(cpu_stat, "nr_throttled"));
    stats.set_cpus_throttled_time_secs(Get(cpu_stat, "throttled_time") / 1e9);
    RZ_ASSIGN_OR_RETURN(const std::string quota, Read(cpu + "/cpu.cfs_quota_us", context));
    int64_t quota_us = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(quota), &quota_us) && quota_us > 0) {
      RZ_ASSIGN_OR_RETURN(const uint64_t period_us,
                          ReadNumber(cpu + "/cpu.cfs_period_us", context));
      if (period_us > 0) {
        stats.set_cpus_limit(static_cast<double>(quota_us) / static_cast<double>(period_us));
      }
    }

    const std::string memory = Dir("memory", name);
    RZ_ASSIGN_OR_RETURN(auto memory_stat, ReadKeyed(memory + "/memory.stat", context));
    // The total_ counters include nested cgroups, like usage_in_bytes does.
    stats.set_mem_rss_bytes(Get(memory_stat, "total_rss"));
    stats.set_mem_cache_bytes(Get(memory_stat, "total_cache"));
    RZ_ASSIGN_OR_RETURN(const uint64_t usage,
                        ReadNumber(memory + "/memory.usage_in_bytes", context));
    stats.set_mem_usage_bytes(usage);
    RZ_ASSIGN_OR_RETURN(const uint64_t peak,
                        ReadNumber(memory + "/memory.max_usage_in_bytes", context));
    stats.set_mem_peak_bytes(peak);
    RZ_ASSIGN_OR_RETURN(const uint64_t limit,
                        ReadNumber(memory + "/memory.limit_in_bytes", context));
    stats.set_mem_limit_bytes(limit >= kV1Unlimited ? 0 : limit);

    RZ_ASSIGN_OR_RETURN(const uint64_t pids_limit,
                        ReadNumber(Dir("pids", name) + "/pids.max", context));
    stats.set_pids_limit(pids_limit);
    return stats;
  }

  absl::StatusOr<bool> OomKilled(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    RZ_ASSIGN_OR_RETURN(auto control,
                        ReadKeyed(Dir("memory", name) + "/memory.oom_control",
                                  absl::StrCat("reading the OOM state of cgroup '", name, "'")));
    // Kernels before 4.13 have no oom_kill counter; under_oom is the best they tell.
    if (control.contains("oom_kill")) {
      return Get(control, "oom_kill") > 0;
    }
    return Get(control, "under_oom") > 0;
  }

  absl::StatusOr<bool> PidsLimitHit(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    RZ_ASSIGN_OR_RETURN(auto events,
                        ReadKeyed(Dir("pids", name) + "/pids.events",
                                  absl::StrCat("reading the pids events of cgroup '", name, "'")));
    return Get(events, "max") > 0;
  }

 protected:
  // Frozen v1 tasks cannot act on SIGKILL until thawed, so the loop is freeze, kill, thaw.
  // Freezing a v1 cgroup freezes the cgroups below it too.
  absl::Status KillRound(const std::string& name) override {
    const std::string freezer = Dir("freezer", name);
    if (!fs_.Exists(freezer)) {
      return SignalAll(name);  // Only in other hierarchies (a Create() cut short).
    }
    return FreezeKillThaw(
        name, freezer + "/freezer.state", "FROZEN", "THAWED", freezer + "/freezer.state",
        [](const std::string& state) { return absl::StripAsciiWhitespace(state) == "FROZEN"; });
  }

 private:
  std::string Dir(const std::string& controller, const std::string& name) const {
    return JoinPath(root_of_.at(controller), name);
  }

  // memory.memsw.limit_in_bytes (memory + swap) may never be below memory.limit_in_bytes, so
  // raising the limit above the current memsw value fails with EINVAL until memsw is raised
  // first. memsw exists only with swap accounting; it is best effort.
  absl::Status SetMemoryLimit(const std::string& name, uint64_t bytes) {
    const std::string memory = Dir("memory", name);
    const std::string limit = memory + "/memory.limit_in_bytes";
    const std::string memsw = memory + "/memory.memsw.limit_in_bytes";
    const std::string value = absl::StrCat(bytes);
    absl::Status status = fs_.Write(limit, value);
    if (!fs_.Exists(memsw)) {
      return status;
    }
    if (absl::IsInvalidArgument(status) && fs_.Write(memsw, value).ok()) {
      return fs_.Write(limit, value);
    }
    if (status.ok()) {
      absl::Status swap = fs_.Write(memsw, value);
      LOG_IF(WARNING, !swap.ok()) << "cgroup '" << name << "': " << swap;
    }
    return status;
  }

  absl::flat_hash_map<std::string, std::string> root_of_;  // Controller → root directory.
};

// ---------------------------------------------------------------------------------------------
// v2: the unified hierarchy.

class CgroupsV2 final : public CgroupsBase {
 public:
  CgroupsV2(CgroupFs& fs, Hierarchy hierarchy) : CgroupsBase(fs, {std::move(hierarchy)}) {}

  int version() const override { return 2; }
  std::string Describe() const override { return DescribeAs(2); }

  absl::Status Create(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    const std::string context = absl::StrCat("creating cgroup '", name, "'");
    {
      absl::MutexLock lock(&mu_);
      if (!root_ready_) {
        RZ_RETURN_IF_ERROR(Annotate(PrepareRoot(), context));
        root_ready_ = true;
      }
    }
    // Every cgroup on the way down hands the controllers to the next; the last one holds the
    // container's processes.
    const std::vector<std::string> parts = absl::StrSplit(name, '/');
    std::string current = root();
    for (size_t i = 0; i < parts.size(); ++i) {
      current = JoinPath(current, parts[i]);
      absl::Status made = fs_.MakeDir(current);
      if (!made.ok() && !absl::IsAlreadyExists(made)) {
        return Annotate(made, context);
      }
      if (i + 1 < parts.size()) {
        RZ_RETURN_IF_ERROR(Annotate(EnableControllers(current), context));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Apply(const std::string& name, const CgroupLimits& limits) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    RZ_RETURN_IF_ERROR(ValidateLimits(limits));
    const std::string context = absl::StrCat("applying limits to cgroup '", name, "'");
    const std::string dir = Dir(name);
    if (limits.cpu_shares_cpus) {
      RZ_RETURN_IF_ERROR(
          Annotate(fs_.Write(dir + "/cpu.weight", absl::StrCat(WeightFor(*limits.cpu_shares_cpus))),
                   context));
    }
    if (limits.cpu_limit_cpus) {
      RZ_RETURN_IF_ERROR(
          Annotate(fs_.Write(dir + "/cpu.max",
                             absl::StrCat(QuotaFor(*limits.cpu_limit_cpus), " ", kCfsPeriodUs)),
                   context));
    }
    if (limits.memory_limit_bytes) {
      RZ_RETURN_IF_ERROR(Annotate(
          fs_.Write(dir + "/memory.max", absl::StrCat(*limits.memory_limit_bytes)), context));
      // Without swap accounting (or swap) the file is absent and nothing can swap anyway.
      for (const auto& [file, value] : {std::pair<std::string, std::string>{"memory.swap.max", "0"},
                                        {"memory.oom.group", "1"}}) {
        const std::string path = dir + "/" + file;
        if (fs_.Exists(path)) {
          absl::Status written = fs_.Write(path, value);
          LOG_IF(WARNING, !written.ok()) << "cgroup '" << name << "': " << written;
        }
      }
    }
    if (limits.pids_max) {
      RZ_RETURN_IF_ERROR(
          Annotate(fs_.Write(dir + "/pids.max", absl::StrCat(*limits.pids_max)), context));
    }
    return absl::OkStatus();
  }

  absl::Status Place(const std::string& name, pid_t pid) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    return Annotate(fs_.Write(Dir(name) + "/cgroup.procs", absl::StrCat(pid)),
                    absl::StrCat("placing pid ", pid, " in cgroup '", name, "'"));
  }

  absl::StatusOr<v1::ResourceStatistics> Statistics(const std::string& name) override {
    RZ_ASSIGN_OR_RETURN(const std::vector<pid_t> pids, Processes(name));
    const std::string context = absl::StrCat("reading statistics of cgroup '", name, "'");
    const std::string dir = Dir(name);
    v1::ResourceStatistics stats;
    stats.set_processes(pids.size());

    RZ_ASSIGN_OR_RETURN(auto cpu_stat, ReadKeyed(dir + "/cpu.stat", context));
    stats.set_cpus_user_time_secs(Get(cpu_stat, "user_usec") / 1e6);
    stats.set_cpus_system_time_secs(Get(cpu_stat, "system_usec") / 1e6);
    stats.set_cpus_nr_periods(Get(cpu_stat, "nr_periods"));
    stats.set_cpus_nr_throttled(Get(cpu_stat, "nr_throttled"));
    stats.set_cpus_throttled_time_secs(Get(cpu_stat, "throttled_usec") / 1e6);
    // cpu.max: "<quota> <period>", the quota being "max" when unlimited.
    RZ_ASSIGN_OR_RETURN(const std::string cpu_max, Read(dir + "/cpu.max", context));
    std::vector<absl::string_view> fields =
        absl::StrSplit(cpu_max, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    uint64_t quota_us = 0;
    uint64_t period_us = 0;
    if (fields.size() == 2 && absl::SimpleAtoi(fields[0], &quota_us) &&
        absl::SimpleAtoi(fields[1], &period_us) && period_us > 0) {
      stats.set_cpus_limit(static_cast<double>(quota_us) / static_cast<double>(period_us));
    }

    RZ_ASSIGN_OR_RETURN(auto memory_stat, ReadKeyed(dir + "/memory.stat", context));
    stats.set_mem_rss_bytes(Get(memory_stat, "anon"));
    stats.set_mem_cache_bytes(Get(memory_stat, "file"));
    RZ_ASSIGN_OR_RETURN(const uint64_t usage, ReadNumber(dir + "/memory.current", context));
    stats.set_mem_usage_bytes(usage);
    if (fs_.Exists(dir + "/memory.peak")) {  // Since Linux 5.19.
      RZ_ASSIGN_OR_RETURN(const uint64_t peak, ReadNumber(dir + "/memory.peak", context));
      stats.set_mem_peak_bytes(peak);
    }
    RZ_ASSIGN_OR_RETURN(const uint64_t limit, ReadNumber(dir + "/memory.max", context));
    stats.set_mem_limit_bytes(limit);
    RZ_ASSIGN_OR_RETURN(const uint64_t pids_limit, ReadNumber(dir + "/pids.max", context));
    stats.set_pids_limit(pids_limit);
    return stats;
  }

  absl::StatusOr<bool> OomKilled(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    RZ_ASSIGN_OR_RETURN(auto events,
                        ReadKeyed(Dir(name) + "/memory.events",
                                  absl::StrCat("reading the OOM state of cgroup '", name, "'")));
    return Get(events, "oom_kill") > 0;
  }

  absl::StatusOr<bool> PidsLimitHit(const std::string& name) override {
    RZ_RETURN_IF_ERROR(ValidateName(name));
    RZ_ASSIGN_OR_RETURN(auto events,
                        ReadKeyed(Dir(name) + "/pids.events",
                                  absl::StrCat("reading the pids events of cgroup '", name, "'")));
    return Get(events, "max") > 0;
  }

 protected:
  // cgroup.kill (Linux 5.14) kills the whole subtree atomically with respect to forks. Older
  // kernels get the freeze, kill, thaw loop through cgroup.freeze.
  absl::Status KillRound(const std::string& name) override {
    const std::string dir = Dir(name);
    if (fs_.Exists(dir + "/cgroup.kill")) {
      return fs_.Write(dir + "/cgroup.kill", "1");
    }
    return FreezeKillThaw(
        name, dir + "/cgroup.freeze", "1", "0", dir + "/cgroup.events",
        [](const std::string& events) { return Get(ParseKeyed(events), "frozen") == 1; });
  }

 private:
  const std::string& root() const { return hierarchies_.front().root_dir; }
  std::string Dir(const std::string& name) const { return JoinPath(root(), name); }

  // Creates the root and enables the controllers on every cgroup from the mount point down to
  // it, first moving the root's own processes into the agent's leaf.
  absl::Status PrepareRoot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Hierarchy& hierarchy = hierarchies_.front();
    std::string current = hierarchy.mount_point;
    RZ_RETURN_IF_ERROR(EnableControllers(current));
    for (absl::string_view part : absl::StrSplit(
             hierarchy.root_dir.substr(hierarchy.mount_point.size()), '/', absl::SkipEmpty())) {
      absl::StrAppend(&current, "/", part);
      absl::Status made = fs_.MakeDir(current);
      if (!made.ok() && !absl::IsAlreadyExists(made)) {
        return made;
      }
      if (current == root()) {
        RZ_RETURN_IF_ERROR(MoveProcessesToLeaf(current));
      }
      RZ_RETURN_IF_ERROR(EnableControllers(current));
    }
    return absl::OkStatus();
  }

  // A process forked while the others move lands in `dir` again, hence the rounds.
  absl::Status MoveProcessesToLeaf(const std::string& dir) {
    const std::string procs = dir + "/cgroup.procs";
    const std::string leaf = JoinPath(dir, kV2AgentLeaf);
    for (int round = 0; round < kEvacuateRounds; ++round) {
      RZ_ASSIGN_OR_RETURN(const std::string text, fs_.Read(procs));
      RZ_ASSIGN_OR_RETURN(const std::vector<pid_t> pids, ParsePids(procs, text));
      if (pids.empty()) {
        return absl::OkStatus();
      }
      absl::Status made = fs_.MakeDir(leaf);
      if (!made.ok() && !absl::IsAlreadyExists(made)) {
        return made;
      }
      LOG(INFO) << "moving processes " << absl::StrJoin(pids, ", ") << " from '" << dir << "' to '"
                << leaf << "' so that its children can have controllers";
      for (pid_t pid : pids) {
        absl::Status moved = fs_.Write(leaf + "/cgroup.procs", absl::StrCat(pid));
        if (!moved.ok() && !absl::IsNotFound(moved)) {  // NotFound: it exited.
          return moved;
        }
      }
    }
    return absl::UnavailableError(
        absl::StrCat("processes keep appearing in '", dir, "' while moving them out"));
  }

  // Adds the controllers missing from `dir`'s cgroup.subtree_control.
  absl::Status EnableControllers(const std::string& dir) {
    const std::string file = dir + "/cgroup.subtree_control";
    RZ_ASSIGN_OR_RETURN(const std::string text, fs_.Read(file));
    const std::vector<std::string> enabled =
        absl::StrSplit(text, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    std::vector<std::string> missing;
    for (const std::string& controller : V2Controllers()) {
      if (std::find(enabled.begin(), enabled.end(), controller) == enabled.end()) {
        missing.push_back(absl::StrCat("+", controller));
      }
    }
    if (missing.empty()) {
      return absl::OkStatus();
    }
    return fs_.Write(file, absl::StrJoin(missing, " "));
  }

  absl::Mutex mu_;
  bool root_ready_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Cgroups>> Cgroups::Detect(CgroupFs& fs,
                                                         const CgroupsDetectOptions& options) {
  RZ_ASSIGN_OR_RETURN(const std::string root_override,
                      NormalizeRootOverride(options.root_override));
  const std::vector<Mount> mounts = ParseMountInfo(options.mountinfo);
  const SelfCgroups self = ParseSelfCgroup(options.self_cgroup);

  absl::Status v2_error;
  if (options.prefer != CgroupsVersion::kV1) {
    absl::StatusOr<Hierarchy> v2 = DetectV2(fs, mounts, self, root_override);
    if (v2.ok()) {
      return std::make_unique<CgroupsV2>(fs, *std::move(v2));
    }
    if (options.prefer == CgroupsVersion::kV2) {
      return v2.status();
    }
    v2_error = v2.status();
  }
  absl::StatusOr<std::vector<Hierarchy>> v1 = DetectV1(mounts, self, root_override);
  if (v1.ok()) {
    return std::make_unique<CgroupsV1>(fs, *std::move(v1));
  }
  if (options.prefer == CgroupsVersion::kV1) {
    return v1.status();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no usable cgroups: ", v2_error.message(), "; ", v1.status().message()));
}

absl::StatusOr<std::unique_ptr<Cgroups>> Cgroups::DetectHost(CgroupFs& fs,
                                                             const std::string& root_override,
                                                             CgroupsVersion prefer) {
  CgroupsDetectOptions options{.root_override = root_override, .prefer = prefer};
  RZ_ASSIGN_OR_RETURN(options.mountinfo, fs.Read("/proc/self/mountinfo"));
  RZ_ASSIGN_OR_RETURN(options.self_cgroup, fs.Read("/proc/self/cgroup"));
  return Detect(fs, options);
}

}  // namespace rz::agent
