# The checkpoint store on real LevelDB directories under /tmp (removed by the tests).
rz_test(checkpoint_store_test
  SRCS checkpoint_store_test.cc
  DEPS rz_agent_checkpoint absl::synchronization absl::time absl::strings GTest::gtest_main)
