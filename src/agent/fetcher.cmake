# The fetcher (task URIs into sandboxes, with a download cache) and the sandbox garbage
# collector. Folded into rz_agent when integrated.
find_package(CURL REQUIRED)
find_package(LibArchive REQUIRED)

rz_library(rz_agent_fetcher
  SRCS fetcher.cc
       gc.cc
  DEPS rz_common_core rz_common_runtime rz_proto CURL::libcurl LibArchive::LibArchive glog::glog
       absl::any_invocable absl::flat_hash_map absl::status absl::statusor absl::strings
       absl::str_format absl::synchronization absl::time)
