# Health checks on a ManualEventLoop against real commands, an HTTP server and sockets on
# 127.0.0.1 port 0. The run-as-user case needs root and skips itself otherwise.
rz_test(health_checker_test
  SRCS health_checker_test.cc
  DEPS rz_agent_health rz_testing PkgConfig::HTTPLIB GTest::gtest_main)
