// rz-zk-test-contender SERVERS PATH SESSION_TIMEOUT_MS ID
//
// One LeaderContender in a process of its own, so that leader_contender_test can kill -9 a
// leading "master" and measure how fast the next contender takes over. Prints "elected" or
// "lost: <why>" on stdout; runs until killed.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/time/time.h"
#include "glog/logging.h"
#include "zk/leader_contender.h"

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s SERVERS PATH SESSION_TIMEOUT_MS ID\n", argv[0]);
    return 2;
  }
  rz::v1::MasterInfo info;
  info.set_id(argv[4]);
  info.set_grpc_address(std::string(argv[4]) + ":5050");
  rz::zk::LeaderContender contender({.servers = argv[1],
                                     .path = argv[2],
                                     .session_timeout = absl::Milliseconds(std::atoi(argv[3])),
                                     .info = info},
                                    {.elected =
                                         [](const std::string& znode) {
                                           std::printf("elected %s\n", znode.c_str());
                                           std::fflush(stdout);
                                         },
                                     .lost =
                                         [](const absl::Status& why) {
                                           std::printf("lost: %s\n", why.ToString().c_str());
                                           std::fflush(stdout);
                                         }});
  contender.Contend();
  while (true) {
    pause();
  }
}
