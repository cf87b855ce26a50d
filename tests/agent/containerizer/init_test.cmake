# rz-containerizer-init: the shared runtime-file library, and the init as a real process (the
# test plays the agent). The privileged build of the same file covers user switching and pid
# namespaces; its tests skip unless run as root.
rz_test(init_test
  SRCS init_test.cc
  DEPS rz_container_runtime absl::strings)
add_dependencies(init_test rz-containerizer-init)

rz_test(init_privileged_test
  SRCS init_test.cc
  DEPS rz_container_runtime absl::strings
  LABELS privileged)
target_compile_definitions(init_privileged_test PRIVATE RZ_INIT_TEST_PRIVILEGED=1)
add_dependencies(init_privileged_test rz-containerizer-init)
