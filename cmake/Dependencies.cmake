# Every dependency is a Debian 12 package; deploy/install-deps.sh installs them all.
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)  # CMake's FindProtobuf: Debian ships no protobuf-config.cmake
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(glog CONFIG REQUIRED)
find_package(gflags CONFIG REQUIRED)
find_package(leveldb CONFIG REQUIRED)
find_package(GTest CONFIG REQUIRED)
find_package(benchmark CONFIG REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
# The master's metrics registry and Prometheus text format (core only; its HTTP exposer, which
# the package also ships, is not used).
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
# The .pc file carries the defines libcpp-httplib.so was built with; every TU that includes
# httplib.h must see them, so always link PkgConfig::HTTPLIB.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)

find_path(ZK_INCLUDE_DIR zookeeper/zookeeper.h REQUIRED)
find_library(ZK_LIBRARY zookeeper_mt REQUIRED)
add_library(zookeeper_mt UNKNOWN IMPORTED)
set_target_properties(zookeeper_mt PROPERTIES
  IMPORTED_LOCATION "${ZK_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${ZK_INCLUDE_DIR}"
  INTERFACE_COMPILE_DEFINITIONS THREADED)  # the sync API is declared only under THREADED
