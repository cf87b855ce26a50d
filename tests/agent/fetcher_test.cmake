# The fetcher against real files, a local HTTP server (port 0) and archives built with
# libarchive; the sandbox collector on a ManualEventLoop with real directories.
find_package(LibArchive REQUIRED)
find_package(CURL REQUIRED)

rz_test(fetcher_test
  SRCS fetcher_test.cc
  DEPS rz_agent_fetcher PkgConfig::HTTPLIB LibArchive::LibArchive absl::synchronization)

rz_test(gc_test
  SRCS gc_test.cc
  DEPS rz_agent_fetcher rz_testing)
