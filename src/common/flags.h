// Command-line flags for the daemons and the CLI: Abseil flags, each also settable through an
// environment variable RZ_<FLAG NAME IN UPPER CASE> (the command line wins).
//
// Thread rule: call once from main() before starting any thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace rz {

// Applies RZ_* variables from `environ`-style `env` (a null-terminated array of "NAME=value")
// to the registered flags. Returns InvalidArgument naming the variable and the bad value, or
// naming an RZ_ variable that matches no flag of this program when `strict` is true.
absl::Status ApplyFlagEnvironment(char** env, bool strict = false);

// Applies the environment, then parses the command line. Prints one line naming the problem
// to stderr and exits with status 1 on any bad flag. Returns the positional arguments
// (argv[0] first); everything after "--" is positional.
std::vector<std::string> ParseFlags(int argc, char** argv, const std::string& usage);

}  // namespace rz
