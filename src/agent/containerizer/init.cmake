# rz-containerizer-init and the small library it shares with the agent (runtime-dir file names,
# the status file, the init's command line). Abseil only: the init must start in well under
# 2 ms, so it links no glog, protobuf or gRPC.
rz_library(rz_container_runtime
  SRCS init/runtime_files.cc
  DEPS absl::status absl::statusor absl::strings)

# Debian's absl:: targets are shared libraries; loading a dozen of them (plus libstdc++) would
# dominate the init's start-up. Link the init against the static archives Debian also ships
# (libabsl_*.a next to each .so) and the static C++ runtime; only libc stays dynamic (getpwnam
# and initgroups need NSS).
function(_rz_static_absl_archives target out_var)
  _rz_link_closure(${target} closure)
  set(archives "")
  foreach(item ${closure})
    if(NOT item MATCHES "^absl::" OR NOT TARGET ${item})
      continue()
    endif()
    get_target_property(type ${item} TYPE)
    if(type STREQUAL "INTERFACE_LIBRARY")
      continue()
    endif()
    get_target_property(location ${item} LOCATION)
    string(REGEX REPLACE "\\.so[.0-9]*$" ".a" archive "${location}")
    if(NOT EXISTS "${archive}")
      set(${out_var} "" PARENT_SCOPE)
      return()
    endif()
    list(APPEND archives "${archive}")
  endforeach()
  set(${out_var} ${archives} PARENT_SCOPE)
endfunction()

_rz_static_absl_archives(rz_container_runtime _rz_init_absl_archives)
add_executable(rz-containerizer-init init/main.cc)
if(_rz_init_absl_archives)
  # The runtime library is compiled into the init directly: linking the rz_container_runtime
  # target would drag in its shared absl:: dependencies.
  target_sources(rz-containerizer-init PRIVATE init/runtime_files.cc)
  target_include_directories(rz-containerizer-init PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(rz-containerizer-init PRIVATE
    -Wl,--start-group ${_rz_init_absl_archives} -Wl,--end-group)
  target_link_options(rz-containerizer-init PRIVATE -static-libstdc++ -static-libgcc)
else()
  message(WARNING "static Abseil archives not found; rz-containerizer-init links absl shared")
  target_link_libraries(rz-containerizer-init PRIVATE rz_container_runtime)
endif()
