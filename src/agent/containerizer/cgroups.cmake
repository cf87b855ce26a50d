# rz_cgroups: cgroups v1 and v2 behind the CgroupFs seam (cgroup_fs.h, cgroups.h).
rz_library(rz_cgroups
  SRCS cgroup_fs.cc
       cgroups.cc
  DEPS rz_common_core rz_proto glog::glog absl::flat_hash_map absl::status absl::statusor
       absl::strings absl::synchronization absl::time)
