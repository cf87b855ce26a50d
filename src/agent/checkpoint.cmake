# The agent's checkpoint store: typed records in LevelDB under <work_dir>/meta, written in order
# by one writer thread with group commit. Folded into rz_agent when integrated.
rz_library(rz_agent_checkpoint
  SRCS checkpoint_store.cc
  DEPS rz_common_core rz_common_runtime rz_proto leveldb::leveldb glog::glog absl::any_invocable
       absl::status absl::statusor absl::strings absl::str_format absl::synchronization
       Threads::Threads)
