// Allocation policy through the real API: one master and one agent in this process, schedulers
// using the client library, operator calls over gRPC. The allocation interval is short so the
// tests run quickly; waits are on events with deadlines.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_daemon.h"
#include "common/resources.h"
#include "common/resources_proto.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "master/master_daemon.h"
#include "rz/v1/operator.grpc.pb.h"
#include "scheduler_api/scheduler_client.h"
#include "testing/build_dir.h"

namespace rz {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kDeadline = absl::Seconds(20);

class AllocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/rz-allocation-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    work_dir_ = dir;
    master::MasterDaemonOptions options;
    options.ip = "127.0.0.1";
    options.hostname = "127.0.0.1";
    options.port = 0;
    options.http_port = 0;
    options.registry = master::RegistryBackend::kInMemory;
    options.master.allocation_interval = absl::Milliseconds(50);
    master_ = std::make_unique<master::MasterDaemon>(options);
    ASSERT_TRUE(master_->Start().ok());
    agent_ = std::make_unique<agent::AgentDaemon>(
        agent::AgentDaemonOptions{.master = master_->grpc_address(),
                                  .ip = "127.0.0.1",
                                  .hostname = "127.0.0.1",
                                  .http_port = 0,
                                  .work_dir = work_dir_,
                                  .resources = *Resources::Parse("cpus:4;mem:1024"),
                                  .containerizer_init = testing::ContainerizerInitPath(),
                                  .destroy_containers_on_stop = true});
    ASSERT_TRUE(agent_->Start().ok());
    operator_ = v1::Operator::NewStub(
        grpc::CreateChannel(master_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    schedulers_.clear();
    agent_.reset();
    master_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(work_dir_, ignored);
  }

  scheduler::SchedulerClient& Subscribe(std::vector<std::string> roles) {
    v1::FrameworkInfo info;
    info.set_name("allocation-test");
    for (const std::string& role : roles) {
      info.add_roles(role);
    }
    schedulers_.push_back(
        std::make_unique<scheduler::SchedulerClient>(master_->grpc_address(), info));
    EXPECT_TRUE(schedulers_.back()->Subscribe(kDeadline).ok());
    return *schedulers_.back();
  }

  // The next offer within `timeout`, skipping other events.
  static std::optional<v1::Offer> NextOffer(scheduler::SchedulerClient& client,
                                            absl::Duration timeout = kDeadline) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      std::optional<v1::Event> event = client.NextEvent(deadline - absl::Now());
      if (event.has_value() && event->offers().offers_size() > 0) {
        return event->offers().offers(0);
      }
    }
    return std::nullopt;
  }

  absl::Status SetQuota(const std::string& role, const std::string& guarantee,
                        const std::string& limit) {
    v1::UpdateQuotaRequest request;
    v1::QuotaConfig* config = request.add_quotas();
    config->set_role(role);
    if (!guarantee.empty()) ToProto(*Resources::Parse(guarantee), config->mutable_guarantees());
    if (!limit.empty()) ToProto(*Resources::Parse(limit), config->mutable_limits());
    grpc::ClientContext context;
    v1::UpdateResponse response;
    grpc::Status status = operator_->UpdateQuota(&context, request, &response);
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }

  std::string work_dir_;
  std::unique_ptr<master::MasterDaemon> master_;
  std::unique_ptr<agent::AgentDaemon> agent_;
  std::unique_ptr<v1::Operator::Stub> operator_;
  std::vector<std::unique_ptr<scheduler::SchedulerClient>> schedulers_;
};

TEST_F(AllocationTest, DeclinedResourcesComeBackOnlyAfterTheFilter) {
  scheduler::SchedulerClient& client = Subscribe({"*"});
  std::optional<v1::Offer> offer = NextOffer(client);
  ASSERT_TRUE(offer.has_value());
  ASSERT_TRUE(client.Decline({OfferId(offer->id())}, /*refuse_seconds=*/2).ok());
  const absl::Time declined = absl::Now();
  // Many 50 ms cycles pass without an offer while the filter holds...
  EXPECT_FALSE(NextOffer(client, absl::Seconds(1)).has_value());
  // ...and the agent is offered again once it expires.
  std::optional<v1::Offer> again = NextOffer(client);
  ASSERT_TRUE(again.has_value());
  EXPECT_GE(absl::Now() - declined, absl::Seconds(2));
  EXPECT_EQ(*FromProto(again->resources()), *FromProto(offer->resources()));
}

TEST_F(AllocationTest, SuppressStopsOffersAndReviveBringsThemBackAtOnce) {
  scheduler::SchedulerClient& client = Subscribe({"*"});
  std::optional<v1::Offer> offer = NextOffer(client);
  ASSERT_TRUE(offer.has_value());
  ASSERT_TRUE(client.Suppress().ok());
  ASSERT_TRUE(client.Decline({OfferId(offer->id())}, /*refuse_seconds=*/0).ok());
  EXPECT_FALSE(NextOffer(client, absl::Seconds(1)).has_value());
  ASSERT_TRUE(client.Revive().ok());
  EXPECT_TRUE(NextOffer(client, absl::Seconds(5)).has_value());
}

TEST_F(AllocationTest, AQuotaLimitCutsOffersToFit) {
  ASSERT_TRUE(SetQuota("q", "", "cpus:1;mem:256").ok());
  scheduler::SchedulerClient& client = Subscribe({"q"});
  std::optional<v1::Offer> offer = NextOffer(client);
  ASSERT_TRUE(offer.has_value());
  EXPECT_EQ(offer->role(), "q");
  const Resources offered = *FromProto(offer->resources());
  EXPECT_EQ(offered.ScalarFixed("cpus"), ToFixed(1));
  EXPECT_EQ(offered.ScalarFixed("mem"), ToFixed(256));

  // The operator API reports the role's consumption against its limit (the role snapshot is
  // published just after the offer goes out, so poll it).
  v1::RoleInfo q;
  const absl::Time deadline = absl::Now() + kDeadline;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    v1::Roles roles;
    ASSERT_TRUE(operator_->GetRoles(&context, v1::GetRolesRequest(), &roles).ok());
    for (const v1::RoleInfo& role : roles.roles()) {
      if (role.role() == "q") q = role;
    }
    if (FromProto(q.consumed())->ScalarFixed("cpus") > 0) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(FromProto(q.consumed())->ScalarFixed("cpus"), ToFixed(1));
  EXPECT_EQ(FromProto(q.quota().limits())->ScalarFixed("mem"), ToFixed(256));
}

TEST_F(AllocationTest, BadQuotaIsRefusedWithAReason) {
  absl::Status status = SetQuota("q", "cpus:2", "cpus:1");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("exceeds its limit"));
  status = SetQuota("*", "", "cpus:1");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AllocationTest, AMultiRoleFrameworkIsOfferedInEachOfItsRoles) {
  ASSERT_TRUE(SetQuota("a", "", "cpus:1;mem:128").ok());
  scheduler::SchedulerClient& client = Subscribe({"a", "b"});
  std::vector<std::string> roles;
  const absl::Time deadline = absl::Now() + kDeadline;
  while (roles.size() < 2 && absl::Now() < deadline) {
    std::optional<v1::Event> event = client.NextEvent(deadline - absl::Now());
    if (!event.has_value()) continue;
    for (const v1::Offer& offer : event->offers().offers()) {
      roles.push_back(offer.role());
    }
  }
  EXPECT_THAT(roles, ::testing::UnorderedElementsAre("a", "b"));
}

}  // namespace
}  // namespace rz
