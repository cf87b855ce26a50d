#include "common/flags.h"

#include <cstdio>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace rz {

absl::Status ApplyFlagEnvironment(char** env, bool strict) {
  if (env == nullptr) {
    return absl::OkStatus();
  }
  auto flags = absl::GetAllFlags();
  for (char** e = env; *e != nullptr; ++e) {
    absl::string_view entry(*e);
    if (!absl::StartsWith(entry, "RZ_")) {
      continue;
    }
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos) {
      continue;
    }
    const std::string name = absl::AsciiStrToLower(entry.substr(3, eq - 3));
    const absl::string_view value = entry.substr(eq + 1);
    auto it = flags.find(name);
    if (it == flags.end()) {
      if (strict) {
        return absl::InvalidArgumentError(
            absl::StrCat("environment variable '", entry.substr(0, eq), "' names no flag"));
      }
      continue;
    }
    std::string error;
    if (!it->second->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(absl::StrCat("environment variable '",
                                                     entry.substr(0, eq), "': ", error));
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ParseFlags(int argc, char** argv, const std::string& usage) {
  absl::SetProgramUsageMessage(usage);
  if (absl::Status status = ApplyFlagEnvironment(environ); !status.ok()) {
    std::fprintf(stderr, "%s: %s\n", argv[0], std::string(status.message()).c_str());
    std::exit(1);
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  return std::vector<std::string>(positional.begin(), positional.end());
}

}  // namespace rz
