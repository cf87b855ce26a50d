#include "common/logging.h"

#include "glog/logging.h"

namespace rz {

void InitLogging(const char* argv0) {
  FLAGS_logtostderr = true;
  FLAGS_colorlogtostderr = false;
  google::InitGoogleLogging(argv0);
  google::InstallFailureSignalHandler();
}

}  // namespace rz
