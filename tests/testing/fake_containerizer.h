// ClusterContainerizer: a thread-safe fake Containerizer for the in-process test cluster. It
// runs no process: a container "runs" until the test ends it (Exit/ExitTask) or a kill
// arrives, which ends it at once as if the signal killed it. It outlives the agent that uses
// it, so an agent restarted on the same work dir recovers its running containers the way the
// real containerizer would.
//
// Commands with a meaning here: "exit <n>" ends the container with status n right after launch.
//
// Thread rule: every method is thread-safe. Exit callbacks run without the lock held (the
// agent's callback only posts to its loop).
#pragma once

#include <sys/wait.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/containerizer/containerizer.h"

namespace rz::testing {

class ClusterContainerizer final : public agent::Containerizer {
 public:
  absl::StatusOr<pid_t> Launch(const agent::ContainerSpec& spec, ExitCallback on_exit) override {
    std::optional<int> exit_now;
    int code = 0;
    if (absl::StartsWith(spec.command.value(), "exit ") &&
        absl::SimpleAtoi(absl::string_view(spec.command.value()).substr(5), &code)) {
      exit_now = code;
    }
    pid_t pid;
    {
      absl::MutexLock lock(&mu_);
      pid = next_pid_++;
      Container& container = containers_[spec.container_id];
      container.task_id = spec.task_id.value();
      container.pid = pid;
      container.on_exit = std::move(on_exit);
      ++launches_;
    }
    if (exit_now.has_value()) {
      Exit(spec.container_id, *exit_now);
    }
    return pid;
  }

  absl::Status Kill(const std::string& container_id, int signal) override {
    {
      absl::MutexLock lock(&mu_);
      if (!containers_.contains(container_id)) {
        return absl::NotFoundError(absl::StrCat("container '", container_id, "' is gone"));
      }
      kills_.emplace_back(container_id, signal);
    }
    End(container_id, agent::Termination{.wait_status = signal & 0x7f});
    return absl::OkStatus();
  }

  absl::StatusOr<v1::ResourceStatistics> Usage(const std::string& container_id) override {
    absl::MutexLock lock(&mu_);
    if (!containers_.contains(container_id)) {
      return absl::NotFoundError(absl::StrCat("container '", container_id, "' is gone"));
    }
    return v1::ResourceStatistics();
  }

  absl::StatusOr<std::map<std::string, agent::RecoveredContainer>> Recover(
      const std::set<std::string>& known,
      const std::function<ExitCallback(const std::string&)>& make_callback) override {
    std::map<std::string, agent::RecoveredContainer> recovered;
    absl::MutexLock lock(&mu_);
    for (auto& [id, container] : containers_) {
      if (known.contains(id)) {
        container.on_exit = make_callback(id);
        recovered[id] = {.state = agent::RecoveredContainer::State::kRunning, .pid = container.pid};
      }
    }
    for (auto& [id, termination] : ended_while_detached_) {
      if (known.contains(id)) {
        recovered[id] = {.state = agent::RecoveredContainer::State::kExited,
                         .termination = termination};
      }
    }
    ended_while_detached_.clear();
    return recovered;
  }

  std::optional<Description> Describe(const std::string& container_id) override {
    absl::MutexLock lock(&mu_);
    auto it = containers_.find(container_id);
    if (it == containers_.end()) {
      return std::nullopt;
    }
    return Description{.pid = it->second.pid, .cgroups = {}};
  }

  // The agent using this containerizer is stopping: forget its exit callbacks. Containers that
  // end before the next Recover() are reported there as exited, as the real one does.
  void Detach() {
    absl::MutexLock lock(&mu_);
    for (auto& [id, container] : containers_) {
      container.on_exit = nullptr;
    }
  }

  // Ends `container_id` with exit status `code`. Returns false if it is not running.
  bool Exit(const std::string& container_id, int code) {
    return End(container_id, agent::Termination{.wait_status = (code & 0xff) << 8});
  }

  // Ends the container of task `task_id` with exit status `code`; false if none runs.
  bool ExitTask(const std::string& task_id, int code) {
    std::string container_id;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, container] : containers_) {
        if (container.task_id == task_id) {
          container_id = id;
        }
      }
    }
    return !container_id.empty() && Exit(container_id, code);
  }

  // Whether the container of `task_id` runs.
  bool Running(const std::string& task_id) const {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, container] : containers_) {
      if (container.task_id == task_id) {
        return true;
      }
    }
    return false;
  }

  int launches() const {
    absl::MutexLock lock(&mu_);
    return launches_;
  }
  size_t running() const {
    absl::MutexLock lock(&mu_);
    return containers_.size();
  }
  std::vector<std::pair<std::string, int>> kills() const {
    absl::MutexLock lock(&mu_);
    return kills_;
  }

 private:
  struct Container {
    std::string task_id;
    pid_t pid = 0;
    ExitCallback on_exit;
  };

  bool End(const std::string& container_id, agent::Termination termination) {
    ExitCallback on_exit;
    {
      absl::MutexLock lock(&mu_);
      auto it = containers_.find(container_id);
      if (it == containers_.end()) {
        return false;
      }
      on_exit = std::move(it->second.on_exit);
      if (!on_exit) {
        ended_while_detached_[container_id] = termination;
      }
      containers_.erase(it);
    }
    if (on_exit) {
      std::move(on_exit)(std::move(termination));
    }
    return true;
  }

  mutable absl::Mutex mu_;
  pid_t next_pid_ ABSL_GUARDED_BY(mu_) = 10000;
  std::map<std::string, Container> containers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, int>> kills_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, agent::Termination> ended_while_detached_ ABSL_GUARDED_BY(mu_);
  int launches_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace rz::testing
