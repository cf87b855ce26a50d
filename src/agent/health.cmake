# Task health checks (command, HTTP, TCP) run by the agent on its loop, probing on its worker
# pool. Folded into rz_agent when integrated.
rz_library(rz_agent_health
  SRCS health_checker.cc
  DEPS rz_common_core rz_common_runtime rz_proto PkgConfig::HTTPLIB glog::glog
       absl::any_invocable absl::status absl::strings absl::time)
