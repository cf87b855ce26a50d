// Cgroups v1 and v2 against FakeCgroupFs (detection, limits, statistics, kill, destroy, list),
// and v1 (or v2) against the real kernel.
//
// Built twice: `cgroups_test` (the fake) and `cgroups_privileged_test`
// (RZ_CGROUPS_TEST_PRIVILEGED, labelled privileged: real cgroups and processes; skipped unless
// root and DetectHost() succeeds).
#include "agent/containerizer/cgroups.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/containerizer/cgroup_fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agent/containerizer/fake_cgroup_fs.h"

namespace rz::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

#if !RZ_CGROUPS_TEST_PRIVILEGED

constexpr char kCgroupRoot[] = "/sys/fs/cgroup";

// ---------------------------------------------------------------------------------------------
// Host layouts

// This project's machines: separate v1 hierarchies (cpu and cpuacct apart), the agent in a
// nested memory cgroup, and a unified hierarchy with only hugetlb.
void MountSeparateV1(FakeCgroupFs& fs) {
  for (const char* controller :
       {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}) {
    fs.AddV1Hierarchy(absl::StrCat(kCgroupRoot, "/", controller), {controller});
  }
  fs.AddV2Hierarchy("/sys/fs/cgroup/unified", {"hugetlb"});
  fs.AddCgroup("/sys/fs/cgroup/memory/supervisor/session");
}

constexpr char kSeparateV1Self[] =
    "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
    "4:memory:/supervisor/session\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/\n";

// A systemd host on v1: cpu and cpuacct co-mounted, the agent a delegated service.
void MountCoMountedV1(FakeCgroupFs& fs) {
  fs.AddV1Hierarchy("/sys/fs/cgroup/cpu,cpuacct", {"cpu", "cpuacct"});
  fs.AddV1Hierarchy("/sys/fs/cgroup/memory", {"memory"});
  fs.AddV1Hierarchy("/sys/fs/cgroup/pids", {"pids"});
  fs.AddV1Hierarchy("/sys/fs/cgroup/freezer", {"freezer"});
  for (const char* hierarchy : {"cpu,cpuacct", "memory", "pids", "freezer"}) {
    fs.AddCgroup(absl::StrCat(kCgroupRoot, "/", hierarchy, "/system.slice/rz-agent.service"));
  }
}

constexpr char kServiceV1Self[] =
    "5:freezer:/system.slice/rz-agent.service\n4:pids:/system.slice/rz-agent.service\n"
    "3:memory:/system.slice/rz-agent.service\n2:cpu,cpuacct:/system.slice/rz-agent.service\n"
    "0::/system.slice/rz-agent.service\n";

// A v2 host: the agent a delegated systemd service (pid 100) with the controllers handed down
// to its cgroup.
constexpr char kService[] = "/sys/fs/cgroup/system.slice/rz-agent.service";
constexpr char kServiceV2Self[] = "0::/system.slice/rz-agent.service\n";
constexpr pid_t kAgentPid = 100;

void MountV2(FakeCgroupFs& fs) {
  fs.AddV2Hierarchy(kCgroupRoot, {"cpuset", "cpu", "io", "memory", "hugetlb", "pids"});
  ASSERT_TRUE(fs.Write("/sys/fs/cgroup/cgroup.subtree_control", "+cpu +memory +pids").ok());
  ASSERT_TRUE(fs.MakeDir("/sys/fs/cgroup/system.slice").ok());
  ASSERT_TRUE(
      fs.Write("/sys/fs/cgroup/system.slice/cgroup.subtree_control", "+cpu +memory +pids").ok());
  ASSERT_TRUE(fs.MakeDir(kService).ok());
  ASSERT_TRUE(fs.Write(absl::StrCat(kService, "/cgroup.procs"), absl::StrCat(kAgentPid)).ok());
}

std::unique_ptr<Cgroups> DetectOrDie(FakeCgroupFs& fs, const std::string& self,
                                     const std::string& root_override = "",
                                     CgroupsVersion prefer = CgroupsVersion::kAuto) {
  absl::StatusOr<std::unique_ptr<Cgroups>> cgroups =
      Cgroups::Detect(fs, {.mountinfo = fs.MountInfo(),
                           .self_cgroup = self,
                           .root_override = root_override,
                           .prefer = prefer});
  EXPECT_TRUE(cgroups.ok()) << cgroups.status();
  return cgroups.ok() ? *std::move(cgroups) : nullptr;
}

// ---------------------------------------------------------------------------------------------
// Detection

TEST(CgroupsDetectTest, SeparateV1HierarchiesRootedAtTheAgentsOwnCgroups) {
  FakeCgroupFs fs;
  MountSeparateV1(fs);
  std::unique_ptr<Cgroups> cgroups = DetectOrDie(fs, kSeparateV1Self);
  ASSERT_NE(cgroups, nullptr);

  EXPECT_EQ(cgroups->version(), 1);
  EXPECT_THAT(cgroups->Paths("rz/c1"),
              ElementsAre("/sys/fs/cgroup/cpu/rz/c1", "/sys/fs/cgroup/cpuacct/rz/c1",
                          "/sys/fs/cgroup/memory/supervisor/session/rz/c1",
                          "/sys/fs/cgroup/pids/rz/c1", "/sys/fs/cgroup/freezer/rz/c1"));
  EXPECT_EQ(cgroups->Describe(),
            "cgroups v1 (cpu, cpuacct, memory, pids, freezer) under /sys/fs/cgroup/cpu, "
            "/sys/fs/cgroup/cpuacct, /sys/fs/cgroup/memory/supervisor/session, "
            "/sys/fs/cgroup/pids, /sys/fs/cgroup/freezer");
}

TEST(CgroupsDetectTest, CoMountedCpuAndCpuacctAreOneHierarchy) {
  FakeCgroupFs fs;
  MountCoMountedV1(fs);
  std::unique_ptr<Cgroups> cgroups = DetectOrDie(fs, kServiceV1Self);
  ASSERT_NE(cgroups, nullptr);

  EXPECT_EQ(cgroups->version(), 1);
  EXPECT_THAT(cgroups->Paths("rz/c1"),
              ElementsAre("/sys/fs/cgroup/cpu,cpuacct/system.slice/rz-agent.service/rz/c1",
                          "/sys/fs/cgroup/memory/system.slice/rz-agent.service/rz/c1",
                          "/sys/fs/cgroup/pids/system.slice/rz-agent.service/rz/c1",
                          "/sys/fs/cgroup/freezer/system.slice/rz-agent.service/rz/c1"));
  EXPECT_THAT(cgroups->Describe(), HasSubstr("(cpu, cpuacct, memory, pids, freezer)"));
}

TEST(CgroupsDetectTest, PrefersV2WhenTheUnifiedHierarchyHasTheControllers) {
  FakeCgroupFs fs;
  MountV2(fs);
  std::unique_ptr<Cgroups> cgroups = DetectOrDie(fs, kServiceV2Self);
  ASSERT_NE(cgroups, nullptr);

  EXPECT_EQ(cgroups->version(), 2);
  EXPECT_THAT(cgroups->Paths("rz/c1"), ElementsAre(absl::StrCat(kService, "/rz/c1")));
  EXPECT_EQ(cgroups->Describe(), absl::StrCat("cgroups v2 (cpu, memory, pids) under ", kService));
}

TEST(CgroupsDetectTest, FallsBackToV1WhenTheUnifiedHierarchyLacksControllers) {
  FakeCgroupFs fs;
  MountSeparateV1(fs);
  std::unique_ptr<Cgroups> cgroups = DetectOrDie(fs, kSeparateV1Self);
  ASSERT_NE(cgroups, nullptr);
  EXPECT_EQ(cgroups->version(), 1);

  absl::StatusOr<std::unique_ptr<Cgroups>> v2 = Cgroups::Detect(
      fs,
      {.mountinfo = fs.MountInfo(), .self_cgroup = kSeparateV1Self, .prefer = CgroupsVersion::kV2});
  EXPECT_EQ(v2.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v2.status().message(),
              HasSubstr("controllers cpu, memory, pids are not available at "
                        "'/sys/fs/cgroup/unified' (cgroup.controllers: 'hugetlb')"));
}

TEST(CgroupsDetectTest, PreferV1IgnoresAUsableV2) {
  FakeCgroupFs fs;
  MountCoMountedV1(fs);
  fs.AddV2Hierarchy("/sys/fs/cgroup/unified", {"cpu", "memory", "pids"});
  std::unique_ptr<Cgroups> automatic = DetectOrDie(fs, kServiceV1Self);
  std::unique_ptr<Cgroups> v1 = DetectOrDie(fs, kServiceV1Self, "", CgroupsVersion::kV1);
  ASSERT_NE(automatic, nullptr);
  ASSERT_NE(v1, nullptr);
  EXPECT_EQ(automatic->version(), 2);
  EXPECT_EQ(v1->version(), 1);
}

TEST(CgroupsDetectTest, MissingV1ControllersAreNamed) {
  FakeCgroupFs fs;
  fs.AddV1Hierarchy("/sys/fs/cgroup/cpu,cpuacct", {"cpu", "cpuacct"});
  fs.AddV1Hierarchy("/sys/fs/cgroup/memory", {"memory"});

  absl::StatusOr<std::unique_ptr<Cgroups>> v1 = Cgroups::Detect(
      fs, {.mountinfo = fs.MountInfo(), .self_cgroup = "2:cpu,cpuacct:/\n3:memory:/\n"});
  EXPECT_EQ(v1.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v1.status().message(), HasSubstr("no hierarchy mounted for pids, freezer"));
  EXPECT_THAT(v1.status().message(), HasSubstr("no cgroup2 filesystem is mounted"));
}

TEST(CgroupsDetectTest, MissingProcSelfCgroupLineIsNamed) {
  FakeCgroupFs fs;
  MountSeparateV1(fs);
  absl::StatusOr<std::unique_ptr<Cgroups>> v1 =
      Cgroups::Detect(fs, {.mountinfo = fs.MountInfo(),
                           .self_cgroup = "8:pids:/\n6:freezer:/\n2:cpuacct:/\n1:cpu:/\n",
                           .prefer = CgroupsVersion::kV1});
  EXPECT_EQ(v1.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(v1.status().message(), HasSubstr("no line for the memory hierarchy"));
}

TEST(CgroupsDetectTest, RootOverrideReplacesTheAgentsOwnCgroup) {
  FakeCgroupFs fs;
  MountSeparateV1(fs);
  std::unique_ptr<Cgroups> cgroups = DetectOrDie(fs, kSeparateV1Self, "/rz-root/");
  ASSERT_NE(cgroups, nullptr);
  EXPECT_THAT(cgroups->Paths("c1"),
              ElementsAre("/sys/fs/cgroup/cpu/rz-root/c1", "/sys/fs/cgroup/cpuacct/rz-root/c1",
                          "/sys/fs/cgroup/memory/rz-root/c1", "/sys/fs/cgroup/pids/rz-root/c1",
                          "/sys/fs/cgroup/freezer/rz-root/c1"));

  // The override needs no /proc/self/cgroup at all.
  absl::StatusOr<std::unique_ptr<Cgroups>> without_self =
      Cgroups::Detect(fs, {.mountinfo = fs.MountInfo(), .root_override = "/rz-root"});
  ASSERT_TRUE(without_self.ok()) << without_self.status();

  for (const char* bad : {"relative", "/a/../b", "/a//b"}) {
    absl::StatusOr<std::unique_ptr<Cgroups>> refused = Cgroups::Detect(
        fs, {.mountinfo = fs.MountInfo(), .self_cgroup = kSeparateV1Self, .root_override = bad});
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(CgroupsDetectTest, MountOfASubtreeMapsCgroupPathsBelowIt) {
  // A container runtime bind-mounts only its own part of each hierarchy.
  FakeCgroupFs fs;
  MountSeparateV1(fs);
  const std::string mountinfo =
      "32 31 0:29 /pod/x /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
      "33 31 0:30 /pod/x /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n"
      "35 31 0:32 /pod/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
      "37 31 0:33 /pod/x /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
      "39 31 0:36 /pod/x /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
  absl::StatusOr<std::unique_ptr<Cgroups>> cgroups =
      Cgroups::Detect(fs, {.mountinfo = mountinfo,
                           .self_cgroup = "1:cpu:/pod/x\n2:cpuacct:/pod/x\n4:memory:/pod/x/agent\n"
                                          "6:freezer:/pod/x\n8:pids:/pod/x\n"});
  ASSERT_TRUE(cgroups.ok()) << cgroups.status();
  EXPECT_THAT((*cgroups)->Paths("c1"),
              ElementsAre("/sys/fs/cgroup/cpu/c1", "/sys/fs/cgroup/cpuacct/c1",
                          "/sys/fs/cgroup/memory/agent/c1", "/sys/fs/cgroup/pids/c1",
                          "/sys/fs/cgroup/freezer/c1"));
}

TEST(CgroupsDetectTest, DetectHostReadsProcThroughTheSeam) {
  FakeCgroupFs fs;
  MountCoMountedV1(fs);
  fs.SetFile("/proc/self/mountinfo", fs.MountInfo());
  fs.SetFile("/proc/self/cgroup", kServiceV1Self);

  absl::StatusOr<std::unique_ptr<Cgroups>> cgroups = Cgroups::DetectHost(fs, "/rz");
  ASSERT_TRUE(cgroups.ok()) << cgroups.status();
  EXPECT_EQ((*cgroups)->version(), 1);
  EXPECT_EQ((*cgroups)->Paths("c1").front(), "/sys/fs/cgroup/cpu,cpuacct/rz/c1");
}

// ---------------------------------------------------------------------------------------------
// v1

class CgroupsV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    MountSeparateV1(fs_);
    cgroups_ = DetectOrDie(fs_, kSeparateV1Self);
    ASSERT_NE(cgroups_, nullptr);
    ASSERT_EQ(cgroups_->version(), 1);
  }

  static std::string Cpu(const std::string& file) {
    return absl::StrCat("/sys/fs/cgroup/cpu/rz/c1/", file);
  }
  static std::string Cpuacct(const std::string& file) {
    return absl::StrCat("/sys/fs/cgroup/cpuacct/rz/c1/", file);
  }
  static std::string Memory(const std::string& file) {
    return absl::StrCat("/sys/fs/cgroup/memory/supervisor/session/rz/c1/", file);
  }
  static std::string Pids(const std::string& file) {
    return absl::StrCat("/sys/fs/cgroup/pids/rz/c1/", file);
  }
  static std::string Freezer(const std::string& file) {
    return absl::StrCat("/sys/fs/cgroup/freezer/rz/c1/", file);
  }

  std::vector<std::string> WritesTo(const std::string& path) const {
    std::vector<std::string> values;
    for (const auto& [written, value] : fs_.writes()) {
      if (written == path) {
        values.push_back(value);
      }
    }
    return values;
  }

  FakeCgroupFs fs_;
  std::unique_ptr<Cgroups> cgroups_;
};

TEST_F(CgroupsV1Test, InvalidNamesAreRefused) {
  for (const char* bad : {"", "/rz/c1", "rz/", "rz//c1", "rz/./c1", "rz/../c1", ".."}) {
    EXPECT_EQ(cgroups_->Create(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(cgroups_->Destroy(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(cgroups_->Paths(bad), IsEmpty()) << bad;
  }
  EXPECT_EQ(cgroups_->List("../x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CgroupsV1Test, CreateMakesTheNestedCgroupInEveryHierarchy) {
  ASSERT_TRUE(cgroups_->Create("rz/g1/c1").ok());
  for (const std::string& dir : cgroups_->Paths("rz/g1/c1")) {
    EXPECT_TRUE(fs_.HasDir(dir)) << dir;
  }
  EXPECT_FALSE(fs_.HasDir("/sys/fs/cgroup/cpuset/rz"));  // Only the hierarchies it uses.
  EXPECT_TRUE(cgroups_->Create("rz/g1/c1").ok());        // Again: nothing to do.
}

TEST_F(CgroupsV1Test, ApplyWritesTheLimitsExactly) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_
                  ->Apply("rz/c1", {.cpu_shares_cpus = 0.5,
                                    .cpu_limit_cpus = 0.5,
                                    .memory_limit_bytes = 64 << 20,
                                    .pids_max = 5})
                  .ok());

  EXPECT_EQ(fs_.File(Cpu("cpu.shares")), "512");
  EXPECT_EQ(fs_.File(Cpu("cpu.cfs_period_us")), "100000");
  EXPECT_EQ(fs_.File(Cpu("cpu.cfs_quota_us")), "50000");
  EXPECT_EQ(fs_.File(Memory("memory.limit_in_bytes")), "67108864");
  EXPECT_EQ(fs_.File(Memory("memory.memsw.limit_in_bytes")), "67108864");
  EXPECT_EQ(fs_.File(Pids("pids.max")), "5");
}

TEST_F(CgroupsV1Test, TinyCpuAmountsStayAboveTheKernelMinimums) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Apply("rz/c1", {.cpu_shares_cpus = 0.001, .cpu_limit_cpus = 0.001}).ok());
  EXPECT_EQ(fs_.File(Cpu("cpu.shares")), "2");
  EXPECT_EQ(fs_.File(Cpu("cpu.cfs_quota_us")), "1000");
}

TEST_F(CgroupsV1Test, UnsetLimitsAreLeftAlone) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Apply("rz/c1", {.pids_max = 7}).ok());
  EXPECT_EQ(fs_.File(Pids("pids.max")), "7");
  EXPECT_EQ(fs_.File(Cpu("cpu.shares")), "1024\n");
  EXPECT_EQ(fs_.File(Cpu("cpu.cfs_quota_us")), "-1\n");
  EXPECT_EQ(fs_.File(Memory("memory.limit_in_bytes")), "9223372036854771712\n");
}

TEST_F(CgroupsV1Test, InvalidLimitsAreRefusedBeforeAnythingIsWritten) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  const std::vector<CgroupLimits> bad = {{.cpu_shares_cpus = 0.5, .memory_limit_bytes = 0},
                                         {.cpu_shares_cpus = -1},
                                         {.cpu_limit_cpus = 0},
                                         {.cpu_limit_cpus = 1e300},
                                         {.pids_max = 0}};
  for (const CgroupLimits& limits : bad) {
    EXPECT_EQ(cgroups_->Apply("rz/c1", limits).code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(fs_.writes(), IsEmpty());
}

TEST_F(CgroupsV1Test, WithoutSwapAccountingOnlyTheMemoryLimitIsWritten) {
  fs_.OmitFile("memory.memsw.limit_in_bytes");
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Apply("rz/c1", {.memory_limit_bytes = 64 << 20}).ok());
  EXPECT_EQ(fs_.File(Memory("memory.limit_in_bytes")), "67108864");
  EXPECT_FALSE(fs_.Exists(Memory("memory.memsw.limit_in_bytes")));
}

TEST_F(CgroupsV1Test, KernelErrorsCarryTheCgroupAndTheFile) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  fs_.FailWrites(Cpu("cpu.cfs_quota_us"), absl::ErrnoToStatus(EINVAL, "writing 'x'"));
  absl::Status status = cgroups_->Apply("rz/c1", {.cpu_limit_cpus = 2});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("applying limits to cgroup 'rz/c1': writing 'x'"));

  absl::Status missing = cgroups_->Apply("rz/other", {.pids_max = 3});
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.message(), HasSubstr("/sys/fs/cgroup/pids/rz/other/pids.max"));
}

TEST_F(CgroupsV1Test, PlaceWritesThePidInEveryHierarchy) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 42).ok());
  for (const std::string& dir : cgroups_->Paths("rz/c1")) {
    EXPECT_EQ(fs_.File(dir + "/cgroup.procs"), "42\n") << dir;
  }
  EXPECT_THAT(*cgroups_->Processes("rz/c1"), ElementsAre(42));
  EXPECT_EQ(cgroups_->Place("rz/c2", 42).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cgroups_->Processes("rz/c2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupsV1Test, ProcessesIncludeNestedCgroups) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Create("rz/c1/inner").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 11).ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1/inner", 12).ok());
  EXPECT_THAT(*cgroups_->Processes("rz/c1"), ElementsAre(11, 12));
  EXPECT_THAT(*cgroups_->Processes("rz/c1/inner"), ElementsAre(12));
}

TEST_F(CgroupsV1Test, StatisticsParseTheKernelFiles) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Create("rz/c1/inner").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 11).ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1/inner", 12).ok());
  fs_.SetFile(Cpuacct("cpuacct.stat"), "user 250\nsystem 50\n");
  fs_.SetFile(Cpu("cpu.stat"),
              "nr_periods 30\nnr_throttled 12\nthrottled_time 2500000000\nnr_bursts 0\n");
  fs_.SetFile(Cpu("cpu.cfs_quota_us"), "50000\n");
  fs_.SetFile(Cpu("cpu.cfs_period_us"), "100000\n");
  fs_.SetFile(Memory("memory.stat"),
              "cache 1\nrss 2\ntotal_cache 4096000\ntotal_rss 8192000\ntotal_swap 0\n");
  fs_.SetFile(Memory("memory.usage_in_bytes"), "12288000\n");
  fs_.SetFile(Memory("memory.max_usage_in_bytes"), "67108864\n");
  fs_.SetFile(Memory("memory.limit_in_bytes"), "67108864\n");
  fs_.SetFile(Pids("pids.max"), "5\n");

  absl::StatusOr<v1::ResourceStatistics> stats = cgroups_->Statistics("rz/c1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_DOUBLE_EQ(stats->cpus_user_time_secs(), 2.5);
  EXPECT_DOUBLE_EQ(stats->cpus_system_time_secs(), 0.5);
  EXPECT_DOUBLE_EQ(stats->cpus_limit(), 0.5);
  EXPECT_EQ(stats->cpus_nr_periods(), 30);
  EXPECT_EQ(stats->cpus_nr_throttled(), 12);
  EXPECT_DOUBLE_EQ(stats->cpus_throttled_time_secs(), 2.5);
  EXPECT_EQ(stats->mem_rss_bytes(), 8192000);
  EXPECT_EQ(stats->mem_cache_bytes(), 4096000);
  EXPECT_EQ(stats->mem_usage_bytes(), 12288000);
  EXPECT_EQ(stats->mem_peak_bytes(), 67108864);
  EXPECT_EQ(stats->mem_limit_bytes(), 67108864);
  EXPECT_EQ(stats->processes(), 2);
  EXPECT_EQ(stats->pids_limit(), 5);
  EXPECT_EQ(stats->timestamp(), 0);  // The caller's clock stamps it.
}

TEST_F(CgroupsV1Test, UnsetLimitsReadAsZero) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  absl::StatusOr<v1::ResourceStatistics> stats = cgroups_->Statistics("rz/c1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->cpus_limit(), 0);
  EXPECT_EQ(stats->mem_limit_bytes(), 0);
  EXPECT_EQ(stats->pids_limit(), 0);
  EXPECT_EQ(stats->processes(), 0);
  EXPECT_EQ(cgroups_->Statistics("rz/c2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupsV1Test, OomKilledReadsTheOomControl) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  EXPECT_FALSE(*cgroups_->OomKilled("rz/c1"));
  fs_.SetFile(Memory("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
  EXPECT_TRUE(*cgroups_->OomKilled("rz/c1"));
  // Kernels before 4.13 have no oom_kill line.
  fs_.SetFile(Memory("memory.oom_control"), "oom_kill_disable 0\nunder_oom 1\n");
  EXPECT_TRUE(*cgroups_->OomKilled("rz/c1"));
  fs_.SetFile(Memory("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\n");
  EXPECT_FALSE(*cgroups_->OomKilled("rz/c1"));
  EXPECT_EQ(cgroups_->OomKilled("rz/c2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupsV1Test, PidsLimitHitReadsThePidsEvents) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  EXPECT_FALSE(*cgroups_->PidsLimitHit("rz/c1"));
  fs_.SetFile(Pids("pids.events"), "max 2\n");
  EXPECT_TRUE(*cgroups_->PidsLimitHit("rz/c1"));
}

TEST_F(CgroupsV1Test, KillAllFreezesKillsEveryPidAndThaws) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Create("rz/c1/inner").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 101).ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 102).ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1/inner", 103).ok());

  ASSERT_TRUE(cgroups_->KillAll("rz/c1").ok());

  EXPECT_THAT(fs_.signals(),
              UnorderedElementsAre(Pair(101, SIGKILL), Pair(102, SIGKILL), Pair(103, SIGKILL)));
  EXPECT_THAT(WritesTo(Freezer("freezer.state")), ElementsAre("FROZEN", "THAWED"));
  EXPECT_THAT(*cgroups_->Processes("rz/c1"), IsEmpty());
  EXPECT_EQ(fs_.slept(), absl::ZeroDuration());
}

TEST_F(CgroupsV1Test, KillAllOfAnEmptyCgroupSignalsNothing) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->KillAll("rz/c1").ok());
  EXPECT_THAT(fs_.signals(), IsEmpty());
  EXPECT_THAT(WritesTo(Freezer("freezer.state")), IsEmpty());
  EXPECT_EQ(cgroups_->KillAll("rz/c2").code(), absl::StatusCode::kNotFound);
}

TEST_F(CgroupsV1Test, KillAllGivesUpOnProcessesThatWillNotDie) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 101).ok());
  fs_.set_kill_removes_processes(false);

  absl::Status status = cgroups_->KillAll("rz/c1");

  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("processes 101 survived 5 rounds of SIGKILL"));
  EXPECT_EQ(fs_.signals().size(), 5);
  // Every round waited for the processes to leave, and the whole wait stays bounded.
  EXPECT_GT(fs_.slept(), absl::Seconds(1));
  EXPECT_LE(fs_.slept(), absl::Seconds(10));
  EXPECT_EQ(WritesTo(Freezer("freezer.state")).back(), "THAWED");
}

TEST_F(CgroupsV1Test, KillAllKillsEvenIfTheFreezerDoesNotSettle) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 101).ok());
  // A task stuck in the kernel leaves the freezer FREEZING (writes to it are swallowed).
  fs_.FailWrites(Freezer("freezer.state"), absl::OkStatus());
  fs_.SetFile(Freezer("freezer.state"), "FREEZING\n");

  ASSERT_TRUE(cgroups_->KillAll("rz/c1").ok());
  EXPECT_THAT(fs_.signals(), ElementsAre(Pair(101, SIGKILL)));
  EXPECT_EQ(fs_.slept(), absl::Seconds(1));  // The bounded wait for FROZEN.
}

TEST_F(CgroupsV1Test, DestroyRemovesNestedCgroupsInEveryHierarchy) {
  ASSERT_TRUE(cgroups_->Create("rz/g1/c1").ok());
  ASSERT_TRUE(cgroups_->Create("rz/g1/c2").ok());
  ASSERT_TRUE(cgroups_->Place("rz/g1/c1", 101).ok());

  ASSERT_TRUE(cgroups_->Destroy("rz/g1").ok());

  EXPECT_THAT(fs_.signals(), ElementsAre(Pair(101, SIGKILL)));
  for (const std::string& dir : cgroups_->Paths("rz/g1")) {
    EXPECT_FALSE(fs_.Exists(dir)) << dir;
  }
  for (const std::string& dir : cgroups_->Paths("rz")) {
    EXPECT_TRUE(fs_.HasDir(dir)) << dir;
  }
  EXPECT_TRUE(cgroups_->Destroy("rz/g1").ok());     // Idempotent.
  EXPECT_TRUE(cgroups_->Destroy("rz/never").ok());  // Never existed.
}

TEST_F(CgroupsV1Test, DestroyKeepsTheCgroupWhileAProcessSurvives) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 101).ok());
  fs_.set_kill_removes_processes(false);

  absl::Status status = cgroups_->Destroy("rz/c1");
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(status.message(), HasSubstr("destroying cgroup 'rz/c1'"));
  for (const std::string& dir : cgroups_->Paths("rz/c1")) {
    EXPECT_TRUE(fs_.HasDir(dir)) << dir;
  }
}

TEST_F(CgroupsV1Test, DestroyRemovesACgroupLeftInSomeHierarchiesOnly) {
  // A Create() cut short: only the cpu and memory directories were made.
  ASSERT_TRUE(cgroups_->Create("rz").ok());
  ASSERT_TRUE(fs_.MakeDir("/sys/fs/cgroup/cpu/rz/c1").ok());
  ASSERT_TRUE(fs_.MakeDir("/sys/fs/cgroup/memory/supervisor/session/rz/c1").ok());
  ASSERT_TRUE(fs_.Write("/sys/fs/cgroup/cpu/rz/c1/cgroup.procs", "77").ok());

  EXPECT_THAT(*cgroups_->Processes("rz/c1"), ElementsAre(77));
  ASSERT_TRUE(cgroups_->Destroy("rz/c1").ok());
  EXPECT_THAT(fs_.signals(), ElementsAre(Pair(77, SIGKILL)));
  EXPECT_FALSE(fs_.Exists("/sys/fs/cgroup/cpu/rz/c1"));
  EXPECT_FALSE(fs_.Exists("/sys/fs/cgroup/memory/supervisor/session/rz/c1"));
}

TEST_F(CgroupsV1Test, ListFindsTheChildrenInAnyHierarchy) {
  ASSERT_TRUE(cgroups_->Create("rz/b").ok());
  ASSERT_TRUE(cgroups_->Create("rz/a/inner").ok());
  // An orphan left in one hierarchy only.
  ASSERT_TRUE(fs_.MakeDir("/sys/fs/cgroup/memory/supervisor/session/rz/c").ok());

  EXPECT_THAT(*cgroups_->List("rz"), ElementsAre("a", "b", "c"));
  EXPECT_THAT(*cgroups_->List("rz/a"), ElementsAre("inner"));
  EXPECT_THAT(*cgroups_->List("rz/missing"), IsEmpty());
  EXPECT_THAT(*cgroups_->List(""), ElementsAre("rz"));

  ASSERT_TRUE(cgroups_->Destroy("rz/c").ok());
  EXPECT_THAT(*cgroups_->List("rz"), ElementsAre("a", "b"));
}

// ---------------------------------------------------------------------------------------------
// v2

class CgroupsV2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    MountV2(fs_);
    cgroups_ = DetectOrDie(fs_, kServiceV2Self);
    ASSERT_NE(cgroups_, nullptr);
    ASSERT_EQ(cgroups_->version(), 2);
  }

  static std::string File(const std::string& name, const std::string& file) {
    return absl::StrCat(kService, "/", name, "/", file);
  }

  std::vector<std::string> WritesTo(const std::string& path) const {
    std::vector<std::string> values;
    for (const auto& [written, value] : fs_.writes()) {
      if (written == path) {
        values.push_back(value);
      }
    }
    return values;
  }

  FakeCgroupFs fs_;
  std::unique_ptr<Cgroups> cgroups_;
};

TEST_F(CgroupsV2Test, CreateMovesTheAgentToALeafAndEnablesControllersDownToTheContainer) {
  ASSERT_TRUE(cgroups_->Create("rz/g1/c1").ok());

  // The agent's cgroup may not hold processes once it hands controllers down.
  EXPECT_EQ(fs_.File(absl::StrCat(kService, "/cgroup.procs")), "");
  EXPECT_EQ(fs_.File(absl::StrCat(kService, "/agent/cgroup.procs")), "100\n");
  EXPECT_EQ(fs_.File(absl::StrCat(kService, "/cgroup.subtree_control")), "cpu memory pids\n");
  EXPECT_EQ(fs_.File(File("rz", "cgroup.subtree_control")), "cpu memory pids\n");
  EXPECT_EQ(fs_.File(File("rz/g1", "cgroup.subtree_control")), "cpu memory pids\n");
  // The container's own cgroup has the controllers' files and hands nothing down.
  EXPECT_EQ(fs_.File(File("rz/g1/c1", "cgroup.controllers")), "cpu memory pids\n");
  EXPECT_TRUE(fs_.Exists(File("rz/g1/c1", "memory.max")));
  EXPECT_EQ(fs_.File(File("rz/g1/c1", "cgroup.subtree_control")), "");

  ASSERT_TRUE(cgroups_->Place("rz/g1/c1", 4242).ok());
  EXPECT_THAT(*cgroups_->Processes("rz/g1/c1"), ElementsAre(4242));
  ASSERT_TRUE(cgroups_->Create("rz/g1/c2").ok());
  EXPECT_EQ(fs_.File(absl::StrCat(kService, "/agent/cgroup.procs")), "100\n");
}

TEST_F(CgroupsV2Test, ARootOverrideIsAFreshCgroupAndNothingMoves) {
  std::unique_ptr<Cgroups> cgroups = DetectOrDie(fs_, kServiceV2Self, "/rz");
  ASSERT_NE(cgroups, nullptr);
  ASSERT_TRUE(cgroups->Create("c1").ok());

  EXPECT_EQ(fs_.File("/sys/fs/cgroup/rz/cgroup.subtree_control"), "cpu memory pids\n");
  EXPECT_TRUE(fs_.Exists("/sys/fs/cgroup/rz/c1/cpu.max"));
  EXPECT_EQ(fs_.File(absl::StrCat(kService, "/cgroup.procs")), "100\n");
  EXPECT_FALSE(fs_.Exists(absl::StrCat(kService, "/agent")));
}

TEST_F(CgroupsV2Test, ControllersMissingAboveTheRootAreEnabled) {
  // The service manager did not delegate pids.
  ASSERT_TRUE(fs_.Write("/sys/fs/cgroup/system.slice/cgroup.subtree_control", "-pids").ok());
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  EXPECT_EQ(fs_.File("/sys/fs/cgroup/system.slice/cgroup.subtree_control"), "cpu memory pids\n");
  EXPECT_TRUE(fs_.Exists(File("rz/c1", "pids.max")));
}

TEST_F(CgroupsV2Test, ApplyWritesTheLimitsExactly) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_
                  ->Apply("rz/c1", {.cpu_shares_cpus = 0.5,
                                    .cpu_limit_cpus = 0.5,
                                    .memory_limit_bytes = 64 << 20,
                                    .pids_max = 5})
                  .ok());

  EXPECT_EQ(fs_.File(File("rz/c1", "cpu.weight")), "50");
  EXPECT_EQ(fs_.File(File("rz/c1", "cpu.max")), "50000 100000");
  EXPECT_EQ(fs_.File(File("rz/c1", "memory.max")), "67108864");
  EXPECT_EQ(fs_.File(File("rz/c1", "memory.swap.max")), "0");
  EXPECT_EQ(fs_.File(File("rz/c1", "memory.oom.group")), "1");
  EXPECT_EQ(fs_.File(File("rz/c1", "pids.max")), "5");
}

TEST_F(CgroupsV2Test, CpuWeightIsClampedToTheKernelRange) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Apply("rz/c1", {.cpu_shares_cpus = 0.001}).ok());
  EXPECT_EQ(fs_.File(File("rz/c1", "cpu.weight")), "1");
  ASSERT_TRUE(cgroups_->Apply("rz/c1", {.cpu_shares_cpus = 512}).ok());
  EXPECT_EQ(fs_.File(File("rz/c1", "cpu.weight")), "10000");
}

TEST_F(CgroupsV2Test, WithoutSwapOnlyTheMemoryMaxIsWritten) {
  fs_.OmitFile("memory.swap.max");
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Apply("rz/c1", {.memory_limit_bytes = 64 << 20}).ok());
  EXPECT_EQ(fs_.File(File("rz/c1", "memory.max")), "67108864");
  EXPECT_FALSE(fs_.Exists(File("rz/c1", "memory.swap.max")));
}

TEST_F(CgroupsV2Test, StatisticsParseTheKernelFiles) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 11).ok());
  fs_.SetFile(File("rz/c1", "cpu.stat"),
              "usage_usec 3000000\nuser_usec 2500000\nsystem_usec 500000\nnr_periods 30\n"
              "nr_throttled 12\nthrottled_usec 2500000\nnr_bursts 0\nburst_usec 0\n");
  fs_.SetFile(File("rz/c1", "cpu.max"), "50000 100000\n");
  fs_.SetFile(File("rz/c1", "memory.stat"), "anon 8192000\nfile 4096000\nkernel 12000\n");
  fs_.SetFile(File("rz/c1", "memory.current"), "12288000\n");
  fs_.SetFile(File("rz/c1", "memory.peak"), "67108864\n");
  fs_.SetFile(File("rz/c1", "memory.max"), "67108864\n");
  fs_.SetFile(File("rz/c1", "pids.max"), "5\n");

  absl::StatusOr<v1::ResourceStatistics> stats = cgroups_->Statistics("rz/c1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_DOUBLE_EQ(stats->cpus_user_time_secs(), 2.5);
  EXPECT_DOUBLE_EQ(stats->cpus_system_time_secs(), 0.5);
  EXPECT_DOUBLE_EQ(stats->cpus_limit(), 0.5);
  EXPECT_EQ(stats->cpus_nr_periods(), 30);
  EXPECT_EQ(stats->cpus_nr_throttled(), 12);
  EXPECT_DOUBLE_EQ(stats->cpus_throttled_time_secs(), 2.5);
  EXPECT_EQ(stats->mem_rss_bytes(), 8192000);
  EXPECT_EQ(stats->mem_cache_bytes(), 4096000);
  EXPECT_EQ(stats->mem_usage_bytes(), 12288000);
  EXPECT_EQ(stats->mem_peak_bytes(), 67108864);
  EXPECT_EQ(stats->mem_limit_bytes(), 67108864);
  EXPECT_EQ(stats->processes(), 1);
  EXPECT_EQ(stats->pids_limit(), 5);
}

TEST_F(CgroupsV2Test, UnlimitedAndMissingPeakReadAsZero) {
  fs_.OmitFile("memory.peak");  // Before Linux 5.19.
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  absl::StatusOr<v1::ResourceStatistics> stats = cgroups_->Statistics("rz/c1");
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->cpus_limit(), 0);
  EXPECT_EQ(stats->mem_limit_bytes(), 0);
  EXPECT_EQ(stats->mem_peak_bytes(), 0);
  EXPECT_EQ(stats->pids_limit(), 0);
}

TEST_F(CgroupsV2Test, OomKilledAndPidsLimitHitReadTheEvents) {
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  EXPECT_FALSE(*cgroups_->OomKilled("rz/c1"));
  EXPECT_FALSE(*cgroups_->PidsLimitHit("rz/c1"));
  fs_.SetFile(File("rz/c1", "memory.events"),
              "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n");
  fs_.SetFile(File("rz/c1", "pids.events"), "max 3\n");
  EXPECT_TRUE(*cgroups_->OomKilled("rz/c1"));
  EXPECT_TRUE(*cgroups_->PidsLimitHit("rz/c1"));
}

TEST_F(CgroupsV2Test, KillAllWritesCgroupKill) {
  // On v2 only leaves hold processes: "rz/c1" hands the controllers to its two children.
  ASSERT_TRUE(cgroups_->Create("rz/c1/a").ok());
  ASSERT_TRUE(cgroups_->Create("rz/c1/b").ok());
  EXPECT_EQ(cgroups_->Place("rz/c1", 100).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(cgroups_->Place("rz/c1/a", 101).ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1/b", 102).ok());

  ASSERT_TRUE(cgroups_->KillAll("rz/c1").ok());

  EXPECT_THAT(fs_.signals(), UnorderedElementsAre(Pair(101, SIGKILL), Pair(102, SIGKILL)));
  EXPECT_THAT(WritesTo(File("rz/c1", "cgroup.kill")), ElementsAre("1"));
  EXPECT_THAT(WritesTo(File("rz/c1", "cgroup.freeze")), IsEmpty());
  EXPECT_THAT(*cgroups_->Processes("rz/c1"), IsEmpty());
}

TEST_F(CgroupsV2Test, KillAllWithoutCgroupKillFreezesKillsAndThaws) {
  fs_.OmitFile("cgroup.kill");  // Before Linux 5.14.
  ASSERT_TRUE(cgroups_->Create("rz/c1").ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 101).ok());
  ASSERT_TRUE(cgroups_->Place("rz/c1", 102).ok());

  ASSERT_TRUE(cgroups_->KillAll("rz/c1").ok());

  EXPECT_THAT(fs_.signals(), ElementsAre(Pair(101, SIGKILL), Pair(102, SIGKILL)));
  EXPECT_THAT(WritesTo(File("rz/c1", "cgroup.freeze")), ElementsAre("1", "0"));
  EXPECT_EQ(fs_.slept(), absl::ZeroDuration());  // cgroup.events said frozen at once.
}

TEST_F(CgroupsV2Test, DestroyAndListWork) {
  ASSERT_TRUE(cgroups_->Create("rz/a").ok());
  ASSERT_TRUE(cgroups_->Create("rz/b/inner").ok());
  ASSERT_TRUE(cgroups_->Place("rz/b/inner", 7).ok());
  EXPECT_THAT(*cgroups_->List("rz"), ElementsAre("a", "b"));
  EXPECT_THAT(*cgroups_->List(""), ElementsAre("agent", "rz"));

  ASSERT_TRUE(cgroups_->Destroy("rz/b").ok());
  EXPECT_THAT(fs_.signals(), ElementsAre(Pair(7, SIGKILL)));
  EXPECT_FALSE(fs_.Exists(absl::StrCat(kService, "/rz/b")));
  EXPECT_THAT(*cgroups_->List("rz"), ElementsAre("a"));
  EXPECT_TRUE(cgroups_->Destroy("rz/b").ok());
}

#else  // RZ_CGROUPS_TEST_PRIVILEGED

// ---------------------------------------------------------------------------------------------
// The real kernel. On v1 the test's cgroups live under its own cgroup in each hierarchy, as the
// agent's do ("rz-test-<pid>/..."), so that memory stays accounted where the machine put this
// process. On v2 that would move the test runner into a leaf, so there the root is overridden
// to a fresh top-level "/rz-test-<pid>" instead.

constexpr absl::Duration kDeadline = absl::Seconds(20);

bool WaitFor(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kDeadline;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// True unless `pid` is alive: gone, or a zombie waiting for a parent that is not us.
bool Dead(pid_t pid) {
  if (::kill(pid, 0) != 0) {
    return errno == ESRCH;
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(stat, line);
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'Z';
}

class CgroupsPrivilegedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root (real cgroups)";
    }
    absl::StatusOr<std::unique_ptr<Cgroups>> detected = Cgroups::DetectHost(fs_, "");
    if (!detected.ok()) {
      GTEST_SKIP() << "no usable cgroups here: " << detected.status();
    }
    const std::string unique = absl::StrCat("rz-test-", ::getpid());
    if ((*detected)->version() == 1) {
      base_ = unique;
    } else {
      detected = Cgroups::DetectHost(fs_, "/" + unique);
      ASSERT_TRUE(detected.ok()) << detected.status();
      base_ = "rz";
      override_root_ = true;
    }
    cgroups_ = *std::move(detected);
  }

  void TearDown() override {
    for (pid_t pid : children_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    if (cgroups_ == nullptr) {
      return;
    }
    absl::Status destroyed = cgroups_->Destroy(base_);
    EXPECT_TRUE(destroyed.ok()) << destroyed;
    for (const std::string& dir : cgroups_->Paths(base_)) {
      if (override_root_) {
        const std::string root = dir.substr(0, dir.rfind('/'));
        EXPECT_TRUE(fs_.RemoveDir(root).ok()) << root;
      }
      EXPECT_FALSE(fs_.Exists(dir)) << dir << " was left behind";
    }
  }

  std::string Name(const std::string& leaf) const { return absl::StrCat(base_, "/", leaf); }

  // The file `file` of cgroup `name` in whichever hierarchy has it.
  std::string Read(const std::string& name, const std::string& file) {
    for (const std::string& dir : cgroups_->Paths(name)) {
      absl::StatusOr<std::string> text = fs_.Read(dir + "/" + file);
      if (text.ok()) {
        return std::string(absl::StripAsciiWhitespace(*text));
      }
    }
    return "<missing>";
  }

  // Starts `/bin/sh -c script` held at a `read` until Release(), so that it is in its cgroup
  // before it runs. Its output goes to /dev/null.
  pid_t Spawn(const std::string& script) {
    int gate[2];
    EXPECT_EQ(::pipe2(gate, O_CLOEXEC), 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, gate[0], STDIN_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    const std::string command = absl::StrCat("read gate; ", script);
    char* const argv[] = {const_cast<char*>("/bin/sh"), const_cast<char*>("-c"),
                          const_cast<char*>(command.c_str()), nullptr};
    pid_t pid = 0;
    EXPECT_EQ(::posix_spawn(&pid, "/bin/sh", &actions, nullptr, argv, environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(gate[0]);
    children_.push_back(pid);
    gates_[pid] = gate[1];
    return pid;
  }

  void Release(pid_t pid) {
    const int gate = gates_[pid];
    EXPECT_EQ(::write(gate, "\n", 1), 1);
    ::close(gate);
  }

  // Reaps our child `pid`; its wait status.
  int Reap(pid_t pid) {
    int status = -1;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    children_.erase(std::remove(children_.begin(), children_.end(), pid), children_.end());
    return status;
  }

  RealCgroupFs fs_;
  std::unique_ptr<Cgroups> cgroups_;
  std::string base_;
  bool override_root_ = false;
  std::vector<pid_t> children_;
  std::map<pid_t, int> gates_;
};

TEST_F(CgroupsPrivilegedTest, LimitsReadBackFromTheKernel) {
  const std::string name = Name("limits");
  ASSERT_TRUE(cgroups_->Create(name).ok());
  absl::Status applied = cgroups_->Apply(name, {.cpu_shares_cpus = 0.5,
                                                .cpu_limit_cpus = 0.5,
                                                .memory_limit_bytes = 64 << 20,
                                                .pids_max = 5});
  ASSERT_TRUE(applied.ok()) << applied;

  if (cgroups_->version() == 1) {
    EXPECT_EQ(Read(name, "cpu.shares"), "512");
    EXPECT_EQ(Read(name, "cpu.cfs_period_us"), "100000");
    EXPECT_EQ(Read(name, "cpu.cfs_quota_us"), "50000");
    EXPECT_EQ(Read(name, "memory.limit_in_bytes"), "67108864");
  } else {
    EXPECT_EQ(Read(name, "cpu.weight"), "50");
    EXPECT_EQ(Read(name, "cpu.max"), "50000 100000");
    EXPECT_EQ(Read(name, "memory.max"), "67108864");
  }
  EXPECT_EQ(Read(name, "pids.max"), "5");

  // Raising the limit past memsw (v1) must still work.
  applied = cgroups_->Apply(name, {.memory_limit_bytes = 128 << 20});
  ASSERT_TRUE(applied.ok()) << applied;
  EXPECT_EQ(Read(name, cgroups_->version() == 1 ? "memory.limit_in_bytes" : "memory.max"),
            "134217728");

  absl::StatusOr<v1::ResourceStatistics> stats = cgroups_->Statistics(name);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_DOUBLE_EQ(stats->cpus_limit(), 0.5);
  EXPECT_EQ(stats->mem_limit_bytes(), 128 << 20);
  EXPECT_EQ(stats->pids_limit(), 5);
  EXPECT_EQ(stats->processes(), 0);
}

TEST_F(CgroupsPrivilegedTest, APlacedProcessIsListedAndKilled) {
  const std::string name = Name("sleeper");
  ASSERT_TRUE(cgroups_->Create(name).ok());
  const pid_t pid = Spawn("exec sleep 100");
  ASSERT_TRUE(cgroups_->Place(name, pid).ok());
  Release(pid);

  EXPECT_THAT(*cgroups_->Processes(name), ElementsAre(pid));
  std::ifstream proc_cgroup(absl::StrCat("/proc/", pid, "/cgroup"));
  std::stringstream membership;
  membership << proc_cgroup.rdbuf();
  EXPECT_THAT(membership.str(), HasSubstr(name));

  ASSERT_TRUE(cgroups_->KillAll(name).ok());
  const int status = Reap(pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_THAT(*cgroups_->Processes(name), IsEmpty());
}

TEST_F(CgroupsPrivilegedTest, KillAllKillsADoubleForkedDaemon) {
  const std::string name = Name("daemon");
  ASSERT_TRUE(cgroups_->Create(name).ok());
  // The inner shell starts a new session, backgrounds two sleeps and exits: they are orphans
  // in another session, out of reach of any process-group kill.
  const pid_t pid = Spawn("setsid sh -c 'sleep 300 & sleep 300 &'; exec sleep 300");
  ASSERT_TRUE(cgroups_->Place(name, pid).ok());
  Release(pid);

  std::vector<pid_t> pids;
  ASSERT_TRUE(WaitFor([&] {
    pids = *cgroups_->Processes(name);
    return pids.size() == 3;
  })) << "processes: "
      << pids.size();
  int escaped = 0;
  for (pid_t member : pids) {
    escaped += member != pid && ::getsid(member) != ::getsid(0) ? 1 : 0;
  }
  EXPECT_EQ(escaped, 2) << "the daemons should run in a session of their own";

  absl::Status killed = cgroups_->KillAll(name);
  ASSERT_TRUE(killed.ok()) << killed;
  Reap(pid);
  for (pid_t member : pids) {
    EXPECT_TRUE(Dead(member)) << "pid " << member << " survived";
  }
  EXPECT_THAT(*cgroups_->Processes(name), IsEmpty());
}

TEST_F(CgroupsPrivilegedTest, AllocatingPastTheMemoryLimitIsAnOomKill) {
  const std::string name = Name("oom");
  ASSERT_TRUE(cgroups_->Create(name).ok());
  ASSERT_TRUE(cgroups_->Apply(name, {.memory_limit_bytes = 64 << 20}).ok());
  EXPECT_FALSE(*cgroups_->OomKilled(name));
  // dd fills a 200 MiB buffer from /dev/zero: every page is touched.
  const pid_t pid = Spawn("exec dd if=/dev/zero of=/dev/null bs=200M count=1");
  ASSERT_TRUE(cgroups_->Place(name, pid).ok());
  Release(pid);

  const int status = Reap(pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  EXPECT_TRUE(*cgroups_->OomKilled(name));
  absl::StatusOr<v1::ResourceStatistics> stats = cgroups_->Statistics(name);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->mem_limit_bytes(), 64 << 20);
  if (cgroups_->version() == 1 || stats->mem_peak_bytes() > 0) {
    EXPECT_GE(stats->mem_peak_bytes(), 60 << 20);
    EXPECT_LE(stats->mem_peak_bytes(), 64 << 20);
  }
}

TEST_F(CgroupsPrivilegedTest, ForkingPastPidsMaxIsReported) {
  const std::string name = Name("forks");
  ASSERT_TRUE(cgroups_->Create(name).ok());
  ASSERT_TRUE(cgroups_->Apply(name, {.pids_max = 5}).ok());
  EXPECT_FALSE(*cgroups_->PidsLimitHit(name));
  const pid_t pid = Spawn("for i in 1 2 3 4 5 6 7 8; do sleep 300 & done; wait");
  ASSERT_TRUE(cgroups_->Place(name, pid).ok());
  Release(pid);

  EXPECT_TRUE(WaitFor([&] { return *cgroups_->PidsLimitHit(name); }));
  EXPECT_LE(cgroups_->Processes(name)->size(), 5);
  ASSERT_TRUE(cgroups_->KillAll(name).ok());
  Reap(pid);
}

TEST_F(CgroupsPrivilegedTest, DestroyRemovesEverythingAndListSeesOrphans) {
  ASSERT_TRUE(cgroups_->Create(Name("g1/c1")).ok());
  ASSERT_TRUE(cgroups_->Create(Name("c2")).ok());
  const pid_t pid = Spawn("exec sleep 100");
  ASSERT_TRUE(cgroups_->Place(Name("g1/c1"), pid).ok());
  Release(pid);
  EXPECT_THAT(*cgroups_->List(base_), ElementsAre("c2", "g1"));

  ASSERT_TRUE(cgroups_->Destroy(Name("g1")).ok());
  Reap(pid);
  for (const std::string& dir : cgroups_->Paths(Name("g1"))) {
    EXPECT_FALSE(fs_.Exists(dir)) << dir;
  }
  EXPECT_THAT(*cgroups_->List(base_), ElementsAre("c2"));
  EXPECT_TRUE(cgroups_->Destroy(Name("g1")).ok());
}

#endif  // RZ_CGROUPS_TEST_PRIVILEGED

}  // namespace
}  // namespace rz::agent
