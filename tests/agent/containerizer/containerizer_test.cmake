# LinuxContainerizer with real cgroups, the real init and real processes (root only).
rz_test(containerizer_test
  SRCS containerizer_test.cc
  DEPS rz_containerizer rz_cgroups rz_testing absl::synchronization absl::strings absl::time
  LABELS privileged
  TIMEOUT 180)
add_dependencies(containerizer_test rz-containerizer-init)
