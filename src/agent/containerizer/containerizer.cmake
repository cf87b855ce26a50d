rz_library(rz_containerizer
  SRCS linux_containerizer.cc
  DEPS rz_cgroups rz_container_runtime rz_common_runtime rz_common_core rz_proto glog::glog
       absl::any_invocable absl::flat_hash_map absl::synchronization absl::strings
       absl::str_format absl::status absl::statusor Threads::Threads)
