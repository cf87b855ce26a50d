#include "agent/agent_daemon.h"

#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "agent/http_api.h"
#include "common/file_util.h"
#include "common/host.h"
#include "common/master_detector.h"
#include "common/resources_proto.h"
#include "common/task_states.h"
#include "common/version.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace rz::agent {
namespace {

std::string CurrentUser() {
  if (const struct passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) {
    return pw->pw_name;
  }
  return absl::StrCat(::geteuid());
}

std::string DefaultInitPath() {
  std::error_code error;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (error) {
    return "rz-containerizer-init";
  }
  // Installed side by side; in a build tree the init sits in containerizer/.
  for (const auto& candidate :
       {exe.parent_path() / "rz-containerizer-init",
        exe.parent_path() / "containerizer" / "rz-containerizer-init",
        exe.parent_path() / ".." / "agent" / "containerizer" / "rz-containerizer-init"}) {
    if (std::filesystem::exists(candidate, error)) {
      return std::filesystem::weakly_canonical(candidate, error).string();
    }
  }
  return (exe.parent_path() / "rz-containerizer-init").string();
}

// The agent's attributes as text ("rack:r1;zone:eu"): running tasks may have been placed by
// offer constraints on them, so a checkpoint written with other attributes belongs to another
// agent.
std::string AttributesText(const v1::AgentInfo& info) {
  std::string out;
  for (const v1::Attribute& attribute : info.attributes()) {
    absl::StrAppend(&out, attribute.name(), ":", attribute.text(), ";");
  }
  return out;
}

}  // namespace

AgentDaemon::AgentDaemon(AgentDaemonOptions options) : options_(std::move(options)) {}

AgentDaemon::~AgentDaemon() { Stop(); }

absl::Status AgentDaemon::Start() {
  absl::StatusOr<std::unique_ptr<MasterDetector>> detector = CreateMasterDetector(options_.master);
  if (!detector.ok()) {
    return absl::Status(detector.status().code(),
                        absl::StrCat("--master: ", detector.status().message()));
  }
  const std::string hostname = options_.hostname.empty() ? LocalHostname() : options_.hostname;
  RegisterHttpHandlers(http_, snapshot_, options_.work_dir);
  absl::StatusOr<int> port = http_.Start(options_.ip, options_.http_port);
  if (!port.ok()) {
    return port.status();
  }
  http_address_ = absl::StrCat("http://", hostname, ":", *port);
  auto fail = [this](absl::Status status) {
    http_.Stop();
    return status;
  };

  // Tasks run as other users need to reach their sandboxes: the work dir must be searchable.
  if (::geteuid() == 0) {
    std::error_code error;
    const auto permissions = std::filesystem::status(options_.work_dir, error).permissions();
    if (!error &&
        (permissions & std::filesystem::perms::others_exec) == std::filesystem::perms::none) {
      LOG(INFO) << "making " << options_.work_dir << " searchable (o+x) for task users";
      std::filesystem::permissions(options_.work_dir, std::filesystem::perms::others_exec,
                                   std::filesystem::perm_options::add, error);
    }
    // Its parents are the operator's; say so if one of them locks task users out.
    for (std::filesystem::path dir = std::filesystem::path(options_.work_dir).parent_path();
         !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
      const auto parent = std::filesystem::status(dir, error).permissions();
      if (!error &&
          (parent & std::filesystem::perms::others_exec) == std::filesystem::perms::none) {
        LOG(WARNING) << dir.string() << " is not searchable by other users (o+x): tasks that run "
                     << "as another user cannot reach their sandboxes in " << options_.work_dir;
        break;
      }
    }
  }

  // The checkpoint.
  auto store = CheckpointStore::Open(absl::StrCat(options_.work_dir, "/meta"),
                                     {.sync = options_.checkpoint_sync});
  if (!store.ok()) {
    return fail(store.status());
  }
  store_ = *std::move(store);
  absl::StatusOr<Recovered> checkpoint = store_->Load();
  if (!checkpoint.ok()) {
    return fail(checkpoint.status());
  }

  const std::string user = CurrentUser();
  const bool root = ::geteuid() == 0;
  AgentOptions agent_options{.hostname = hostname,
                             .http_address = http_address_,
                             .master_address = options_.master,
                             .work_dir = options_.work_dir,
                             .resources = options_.resources,
                             .attributes = options_.attributes,
                             .version = kVersion,
                             .default_kill_grace_period = options_.default_kill_grace_period,
                             .agent_user = user,
                             .can_switch_user = root,
                             .default_task_user = options_.default_task_user,
                             .allow_root_tasks = options_.allow_root_tasks,
                             .default_pids_max = options_.default_pids_max,
                             .usage_interval = options_.usage_interval};

  if (checkpoint->agent.has_value()) {
    v1::AgentInfo current;
    for (const auto& [name, value] : options_.attributes) {
      v1::Attribute* attribute = current.add_attributes();
      attribute->set_name(name);
      attribute->set_text(value);
    }
    const v1::AgentInfo& saved = checkpoint->agent->info();
    if (AttributesText(current) != AttributesText(saved)) {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("the checkpoint in ", options_.work_dir, "/meta belongs to agent ",
                       saved.id(), " with attributes '", AttributesText(saved), "', not '",
                       AttributesText(current), "'; start with the same --attributes, or remove ",
                       options_.work_dir, "/meta (and lose its tasks) to start as a new agent")));
    }
    // Resources may change (detected disk space does, between any two starts): the master
    // takes the new totals at reregistration and refuses them if the running tasks no longer
    // fit.
    if (auto saved_resources = FromProto(saved.resources());
        saved_resources.ok() && *saved_resources != options_.resources) {
      LOG(INFO) << "agent " << saved.id() << " restarts with resources "
                << options_.resources.ToString() << " (was " << saved_resources->ToString() << ")";
    }
  }

  // The containerizer.
  std::unique_ptr<Cgroups> cgroups;
  if (options_.isolation != "none" && options_.containerizer == nullptr) {
    if (options_.isolation != "cgroups" && options_.isolation != "auto") {
      return fail(absl::InvalidArgumentError(absl::StrCat("--isolation: '", options_.isolation,
                                                          "' is not one of cgroups, none, auto")));
    }
    absl::StatusOr<std::unique_ptr<Cgroups>> detected =
        root ? Cgroups::DetectHost(cgroup_fs_, options_.cgroups_root)
             : absl::FailedPreconditionError("cgroups need root");
    if (detected.ok()) {
      cgroups = *std::move(detected);
    } else if (options_.isolation == "cgroups") {
      return fail(absl::FailedPreconditionError(
          absl::StrCat("--isolation=cgroups: ", detected.status().message())));
    } else {
      LOG(WARNING) << "running tasks without cgroups: " << detected.status().message();
    }
  }
  isolation_description_ = options_.containerizer != nullptr ? "injected containerizer"
                           : cgroups                         ? cgroups->Describe()
                                                             : "none";
  std::string parent = options_.cgroups_parent;
  if (parent.empty()) {
    parent = absl::StrFormat("rz-%08x",
                             static_cast<uint32_t>(absl::HashOf(options_.work_dir) & 0xffffffff));
  }
  const char* path = std::getenv("PATH");
  linux_containerizer_ = std::make_unique<LinuxContainerizer>(
      LinuxContainerizer::Options{
          .init_path =
              options_.containerizer_init.empty() ? DefaultInitPath() : options_.containerizer_init,
          .runtime_root = absl::StrCat(options_.work_dir, "/containers"),
          .cgroup_parent = parent,
          .path = path != nullptr && *path != '\0'
                      ? path
                      : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          .log_max_bytes = options_.log_max_bytes,
          .log_max_files = options_.log_max_files,
          .boot_id = LinuxContainerizer::HostBootId()},
      std::move(cgroups));
  containerizer_ =
      options_.containerizer != nullptr ? options_.containerizer : linux_containerizer_.get();
  fetcher_ = std::make_unique<Fetcher>(
      FetcherOptions{.cache_dir = absl::StrCat(options_.work_dir, "/fetcher-cache"),
                     .cache_max_bytes = options_.fetcher_cache_max_bytes});
  BlockingRunner run_blocking = [this](absl::AnyInvocable<void() &&> task) {
    pool_.Submit(std::move(task));
  };
  gc_ = std::make_unique<SandboxGc>(
      SandboxGcOptions{.root = absl::StrCat(options_.work_dir, "/sandboxes"),
                       .gc_delay = options_.gc_delay,
                       .disk_watermark = options_.gc_disk_watermark},
      loop_, run_blocking);

  link_ = std::make_unique<MasterLink>(
      MasterLink::Options{.master_address = options_.master,
                          .max_backoff = options_.registration_backoff_max},
      loop_, *std::move(detector));
  CheckpointStore* store_ptr = store_.get();
  agent_ = std::make_unique<Agent>(
      std::move(agent_options), loop_, *containerizer_, run_blocking,
      [store_ptr](CheckpointBatch batch, absl::AnyInvocable<void(absl::Status) &&> done) {
        store_ptr->Write(std::move(batch), std::move(done));
      },
      *link_, snapshot_, fetcher_.get(), gc_.get());
  loop_.Start();
  loop_.Post([this] { agent_->Start(); });  // Publishes "recovering".

  // Containers the checkpoint knows and that may still run.
  std::set<std::string> known;
  for (const auto& [key, task] : checkpoint->tasks) {
    if (!task.checkpoint.container_id().empty() && !IsTerminal(task.checkpoint.task().state())) {
      known.insert(task.checkpoint.container_id());
    }
  }
  Agent* agent = agent_.get();
  auto containers = containerizer_->Recover(
      known, [agent](const std::string& id) { return agent->ExitCallbackFor(id); });
  if (!containers.ok()) {
    Stop();
    return containers.status();
  }
  absl::Notification recovered;
  loop_.Post([this, &recovered,
              input = RecoveryInput{.checkpoint = *std::move(checkpoint),
                                    .containers = *std::move(containers)}]() mutable {
    agent_->Recover(std::move(input));
    gc_->Start();
    recovered.Notify();
  });
  recovered.WaitForNotification();

  link_->Start({.on_connected = [this] { agent_->OnMasterConnected(); },
                .on_message = [this](v1::MasterMessage m) { agent_->OnMasterMessage(m); },
                .on_disconnected = [this] { agent_->OnMasterDisconnected(); }});
  running_ = true;
  LOG(INFO) << "rz-agent " << kVersion << " serving " << http_address_ << " (work dir "
            << options_.work_dir << ", resources " << options_.resources.ToString()
            << ", isolation " << isolation_description_ << "), master " << options_.master;

  if (!options_.endpoints_file.empty()) {
    const nlohmann::json endpoints = {{"http", http_address_}};
    if (absl::Status status = WriteFileAtomically(options_.endpoints_file, endpoints.dump());
        !status.ok()) {
      Stop();
      return status;
    }
  }
  return absl::OkStatus();
}

void AgentDaemon::Stop() {
  http_.Stop();
  if (link_ == nullptr || stopped_) {
    return;  // Never started, or stopped already.
  }
  stopped_ = true;
  running_ = false;
  link_->Stop();
  loop_.Stop();
  if (options_.destroy_containers_on_stop && options_.containerizer == nullptr) {
    linux_containerizer_->DestroyAll(absl::Seconds(10));
  }
  store_->Flush();
}

}  // namespace rz::agent
