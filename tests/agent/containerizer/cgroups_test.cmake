# Cgroups v1 and v2 against FakeCgroupFs; the privileged build of the same file drives the real
# kernel (its tests skip unless run as root on a host with usable cgroups).
rz_test(cgroups_test
  SRCS cgroups_test.cc
  DEPS rz_cgroups absl::strings absl::time)

rz_test(cgroups_privileged_test
  SRCS cgroups_test.cc
  DEPS rz_cgroups absl::strings absl::time
  LABELS privileged)
target_compile_definitions(cgroups_privileged_test PRIVATE RZ_CGROUPS_TEST_PRIVILEGED=1)
