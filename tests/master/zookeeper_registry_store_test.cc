// ZooKeeperRegistryStore against a real ZooKeeper server: the RegistryStore behaviours the
// LevelDB store's tests check (registry_store_test.cc), then what only this store does: fencing
// on the writer's election znode, escaped keys, size limits.
#include "master/registry/zookeeper_registry_store.h"

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/zookeeper_ensemble.h"
#include "testing/zookeeper_suite.h"
#include "zk/leader_contender.h"
#include "zk/zookeeper_session.h"

namespace rz::master {
namespace {

using ::rz::testing::ZooKeeperEnsemble;
using ::rz::testing::ZooKeeperSuiteTest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

class ZooKeeperRegistryStoreTest : public ZooKeeperSuiteTest {
 protected:
  void SetUp() override {
    ZooKeeperSuiteTest::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    path_ = NextPath("registry-test");
    raw_ = Connect();
    // The fence: an ephemeral znode like a leader's election znode.
    absl::StatusOr<std::string> fence = raw_->Create(
        path_ + "/master_", "{}", zk::CreateMode::kEphemeralSequential, /*create_parents=*/true);
    ASSERT_TRUE(fence.ok()) << fence.status();
    fence_ = *fence;
    Reopen();
  }

  std::unique_ptr<zk::ZooKeeperSession> Connect() {
    absl::StatusOr<std::unique_ptr<zk::ZooKeeperSession>> session =
        zk::ZooKeeperSession::Start({.servers = ensemble_->connect_string()});
    EXPECT_TRUE(session.ok()) << session.status();
    EXPECT_TRUE((*session)->WaitConnected(absl::Seconds(10)).ok());
    return *std::move(session);
  }
  std::unique_ptr<ZooKeeperRegistryStore> OpenStore() {
    absl::StatusOr<std::unique_ptr<ZooKeeperRegistryStore>> store =
        ZooKeeperRegistryStore::Open({.servers = ensemble_->connect_string(), .path = path_});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  void Reopen() {
    store_.reset();
    store_ = OpenStore();
    ASSERT_NE(store_, nullptr);
    store_->SetFence(fence_);
  }
  RegistryStore& store() { return *store_; }

  uint64_t PutOk(const std::string& key, const std::string& value,
                 ExpectedVersion expected = ExpectedVersion::Any()) {
    absl::StatusOr<std::vector<uint64_t>> versions =
        store().Apply({RegistryWrite::Put(key, value, expected)});
    EXPECT_TRUE(versions.ok()) << versions.status();
    return versions.ok() ? (*versions)[0] : 0;
  }
  std::string ValueOf(const std::string& key) { return ValueIn(*store_, key); }
  static std::string ValueIn(RegistryStore& store, const std::string& key) {
    absl::StatusOr<std::optional<RegistryRecord>> record = store.Get(key);
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() && record->has_value() ? (*record)->value : "<none>";
  }

  std::string path_;
  std::string fence_;
  std::unique_ptr<zk::ZooKeeperSession> raw_;
  std::unique_ptr<ZooKeeperRegistryStore> store_;
};

// --- The RegistryStore contract (as in registry_store_test.cc) ---

TEST_F(ZooKeeperRegistryStoreTest, VersionsStartAtOneAndGrowWithEachPut) {
  EXPECT_EQ(PutOk("agent/a1", "v1"), 1u);
  EXPECT_EQ(PutOk("agent/a1", "v2"), 2u);
  EXPECT_EQ(PutOk("agent/a1", "v3"), 3u);
  absl::StatusOr<std::optional<RegistryRecord>> record = store().Get("agent/a1");
  ASSERT_TRUE(record.ok());
  ASSERT_TRUE(record->has_value());
  EXPECT_EQ((*record)->version, 3u);
  EXPECT_EQ((*record)->value, "v3");
  ASSERT_TRUE(store().Apply({RegistryWrite::Delete("agent/a1")}).ok());
  EXPECT_EQ(ValueOf("agent/a1"), "<none>");
  EXPECT_EQ(PutOk("agent/a1", "again"), 1u);
  // Deleting a missing record is fine when the expectation allows it.
  ASSERT_TRUE(store().Apply({RegistryWrite::Delete("agent/none")}).ok());
  ASSERT_TRUE(store().Apply({RegistryWrite::Delete("agent/none", ExpectedVersion::Absent())}).ok());
}

TEST_F(ZooKeeperRegistryStoreTest, CompareAndSetConflictsAreAbortedNamingTheKey) {
  PutOk("framework/f1", "one", ExpectedVersion::Absent());
  absl::StatusOr<std::vector<uint64_t>> again =
      store().Apply({RegistryWrite::Put("framework/f1", "two", ExpectedVersion::Absent())});
  ASSERT_EQ(again.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(again.status().message(), HasSubstr("framework/f1"));
  EXPECT_THAT(again.status().message(), HasSubstr("is at version 1"));

  absl::StatusOr<std::vector<uint64_t>> stale =
      store().Apply({RegistryWrite::Put("framework/f1", "two", ExpectedVersion::Exactly(7))});
  ASSERT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale.status().message(), HasSubstr("framework/f1"));
  EXPECT_EQ(ValueOf("framework/f1"), "one");

  EXPECT_EQ(PutOk("framework/f1", "two", ExpectedVersion::Exactly(1)), 2u);
  absl::StatusOr<std::vector<uint64_t>> delete_stale =
      store().Apply({RegistryWrite::Delete("framework/f1", ExpectedVersion::Exactly(1))});
  ASSERT_EQ(delete_stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ValueOf("framework/f1"), "two");
  absl::StatusOr<std::vector<uint64_t>> delete_absent =
      store().Apply({RegistryWrite::Delete("framework/f1", ExpectedVersion::Absent())});
  ASSERT_EQ(delete_absent.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ValueOf("framework/f1"), "two");
  absl::StatusOr<std::vector<uint64_t>> missing =
      store().Apply({RegistryWrite::Put("framework/f9", "x", ExpectedVersion::Exactly(1))});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(missing.status().message(), HasSubstr("'framework/f9' is at no record"));
  EXPECT_EQ(store()
                .Apply({RegistryWrite::Put("framework/f9", "x", ExpectedVersion::Exactly(0))})
                .status()
                .code(),
            absl::StatusCode::kAborted);
}

TEST_F(ZooKeeperRegistryStoreTest, OneBadExpectationAppliesNothingOfTheBatch) {
  PutOk("weight/a", "1");
  PutOk("weight/b", "1");
  absl::StatusOr<std::vector<uint64_t>> result = store().Apply({
      RegistryWrite::Put("weight/a", "2", ExpectedVersion::Exactly(1)),
      RegistryWrite::Delete("weight/b", ExpectedVersion::Any()),
      RegistryWrite::Put("weight/c", "new", ExpectedVersion::Absent()),
      RegistryWrite::Put("weight/b2", "x", ExpectedVersion::Exactly(5)),  // Wrong.
  });
  ASSERT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(result.status().message(), HasSubstr("weight/b2"));
  EXPECT_EQ(ValueOf("weight/a"), "1");
  EXPECT_EQ(ValueOf("weight/b"), "1");
  EXPECT_EQ(ValueOf("weight/c"), "<none>");

  absl::StatusOr<std::vector<uint64_t>> good = store().Apply({
      RegistryWrite::Put("weight/a", "2", ExpectedVersion::Exactly(1)),
      RegistryWrite::Delete("weight/b", ExpectedVersion::Exactly(1)),
      RegistryWrite::Put("weight/c", "new", ExpectedVersion::Absent()),
  });
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_THAT(*good, ElementsAre(2u, 0u, 1u));
  EXPECT_EQ(ValueOf("weight/a"), "2");
  EXPECT_EQ(ValueOf("weight/b"), "<none>");
}

TEST_F(ZooKeeperRegistryStoreTest, RepeatedOrEmptyKeysAreInvalid) {
  absl::StatusOr<std::vector<uint64_t>> twice =
      store().Apply({RegistryWrite::Put("k", "1"), RegistryWrite::Put("k", "2")});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.status().message(), HasSubstr("'k'"));
  EXPECT_EQ(ValueOf("k"), "<none>");
  EXPECT_EQ(store().Apply({RegistryWrite::Put("", "1")}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ZooKeeperRegistryStoreTest, ListReturnsTheRecordsOfAPrefixInKeyOrder) {
  PutOk("agent/b", "2");
  PutOk("agent/a", "1");
  PutOk("agent/a", "1'");
  PutOk("agents", "not an agent record");
  PutOk("framework/f", "f");
  absl::StatusOr<std::vector<RegistryRecord>> agents = store().List("agent/");
  ASSERT_TRUE(agents.ok()) << agents.status();
  ASSERT_EQ(agents->size(), 2u);
  EXPECT_EQ((*agents)[0].key, "agent/a");
  EXPECT_EQ((*agents)[0].value, "1'");
  EXPECT_EQ((*agents)[0].version, 2u);
  EXPECT_EQ((*agents)[1].key, "agent/b");
  absl::StatusOr<std::vector<RegistryRecord>> all = store().List("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  absl::StatusOr<std::vector<RegistryRecord>> none = store().List("quota/");
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
}

TEST_F(ZooKeeperRegistryStoreTest, ReopeningKeepsRecordsAndVersions) {
  PutOk("framework/f1", "info");
  PutOk("framework/f1", "info2");
  PutOk("quota/r", "q");
  Reopen();
  EXPECT_EQ(ValueOf("framework/f1"), "info2");
  EXPECT_EQ(ValueOf("quota/r"), "q");
  EXPECT_EQ(PutOk("framework/f1", "info3", ExpectedVersion::Exactly(2)), 3u);
}

TEST_F(ZooKeeperRegistryStoreTest, AForeignZnodeIsDataLossNamingItsKey) {
  PutOk("agent/ok", "fine");
  PutOk("agent/bad", "fine");
  // Something other than the store writes the znode.
  ASSERT_TRUE(raw_->Set(path_ + "/registry/agent%2Fbad", "abc").ok());
  absl::StatusOr<std::optional<RegistryRecord>> get = store().Get("agent/bad");
  ASSERT_EQ(get.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(get.status().message(), HasSubstr("agent/bad"));
  absl::StatusOr<std::vector<RegistryRecord>> list = store().List("agent/");
  ASSERT_EQ(list.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(list.status().message(), HasSubstr("agent/bad"));
  EXPECT_EQ(ValueOf("agent/ok"), "fine");
  // Overwriting it without an expectation repairs it.
  PutOk("agent/bad", "repaired");
  EXPECT_EQ(ValueOf("agent/bad"), "repaired");
  // A znode whose name is no escaped key.
  ASSERT_TRUE(raw_->Create(path_ + "/registry/bad%zz", "").ok());
  absl::StatusOr<std::vector<RegistryRecord>> listed = store().List("");
  ASSERT_EQ(listed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(listed.status().message(), HasSubstr("bad%zz"));
}

// --- ZooKeeper specifics ---

TEST_F(ZooKeeperRegistryStoreTest, KeysAreEscapedIntoOneZnodeEach) {
  const std::vector<std::string> keys = {
      "agent/a/b", "100%", ".", "..", "space key", std::string("nul\0byte", 8), "ümlaut", "%2F"};
  for (const std::string& key : keys) {
    EXPECT_EQ(PutOk(key, "value of " + key), 1u) << key;
    EXPECT_EQ(ZooKeeperRegistryStore::UnescapeKey(ZooKeeperRegistryStore::EscapeKey(key)), key);
  }
  for (const std::string& key : keys) {
    EXPECT_EQ(ValueOf(key), "value of " + key) << key;
  }
  absl::StatusOr<std::vector<std::string>> children = raw_->Children(path_ + "/registry");
  ASSERT_TRUE(children.ok()) << children.status();
  EXPECT_EQ(children->size(), keys.size());
  EXPECT_THAT(*children, ::testing::Contains("agent%2Fa%2Fb"));
  absl::StatusOr<std::vector<RegistryRecord>> listed = store().List("agent/");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].key, "agent/a/b");
}

TEST_F(ZooKeeperRegistryStoreTest, RecordsAndBatchesOverTheZooKeeperLimitAreRefusedNamingThem) {
  const std::string big(ZooKeeperRegistryStore::kMaxRecordBytes + 1, 'x');
  absl::StatusOr<std::vector<uint64_t>> too_big =
      store().Apply({RegistryWrite::Put("agent/huge", big)});
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(too_big.status().message(), HasSubstr("'agent/huge'"));
  const std::string half(ZooKeeperRegistryStore::kMaxRecordBytes / 2 + 1, 'y');
  absl::StatusOr<std::vector<uint64_t>> batch =
      store().Apply({RegistryWrite::Put("agent/h1", half), RegistryWrite::Put("agent/h2", half)});
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(batch.status().message(), HasSubstr("2 records"));
  EXPECT_EQ(ValueOf("agent/h1"), "<none>");
  // The largest record that fits does go through.
  const std::string largest(ZooKeeperRegistryStore::kMaxRecordBytes - 200, 'z');
  EXPECT_EQ(PutOk("agent/largest", largest), 1u);
  EXPECT_EQ(ValueOf("agent/largest"), largest);
}

TEST_F(ZooKeeperRegistryStoreTest, WritesWithoutAFenceAreRefused) {
  std::unique_ptr<ZooKeeperRegistryStore> unfenced = OpenStore();
  ASSERT_NE(unfenced, nullptr);
  absl::StatusOr<std::vector<uint64_t>> write =
      unfenced->Apply({RegistryWrite::Put("agent/a", "x")});
  EXPECT_EQ(write.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(write.status().message(), HasSubstr("not the leading master"));
  EXPECT_EQ(ValueIn(*unfenced, "agent/a"), "<none>");  // Reads need no fence.
  store_->ClearFence();
  EXPECT_EQ(store().Apply({RegistryWrite::Put("agent/a", "x")}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ZooKeeperRegistryStoreTest, AWriteAfterTheFencesSessionExpiredFailsAndChangesNothing) {
  PutOk("framework/f", "before");
  const std::optional<zk::SessionCredentials> credentials = raw_->credentials();
  ASSERT_TRUE(credentials.has_value());
  ASSERT_TRUE(zk::ExpireSession(ensemble_->connect_string(), *credentials).ok());

  absl::StatusOr<std::vector<uint64_t>> write = store().Apply({
      RegistryWrite::Put("framework/f", "after"),
      RegistryWrite::Put("framework/g", "new", ExpectedVersion::Absent()),
  });
  ASSERT_EQ(write.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(write.status().message(), HasSubstr("not the leading master"));
  EXPECT_THAT(write.status().message(), HasSubstr(fence_));
  EXPECT_EQ(ValueOf("framework/f"), "before");
  EXPECT_EQ(ValueOf("framework/g"), "<none>");
}

TEST_F(ZooKeeperRegistryStoreTest, ADeposedLeaderCannotWriteWhileTheNewLeaderCan) {
  // Two masters: each contends and writes through its own store, fenced on its own znode.
  struct Master {
    absl::Mutex mu;
    std::string elected;
    std::unique_ptr<ZooKeeperRegistryStore> store;
    std::unique_ptr<zk::LeaderContender> contender;  // Destroyed first: its callback uses `mu`.
  };
  auto start = [&](Master& master, const std::string& id) {
    master.store = OpenStore();
    ASSERT_NE(master.store, nullptr);
    v1::MasterInfo info;
    info.set_id(id);
    master.contender = std::make_unique<zk::LeaderContender>(
        zk::LeaderContender::Options{.servers = ensemble_->connect_string(),
                                     .path = path_ + "/election",
                                     .session_timeout = absl::Seconds(2),
                                     .info = info},
        zk::LeaderContender::Callbacks{.elected = [&master](const std::string& znode) {
          absl::MutexLock lock(&master.mu);
          master.elected = znode;
        }});
    master.contender->Contend();
    ASSERT_TRUE(WaitFor([&] { return master.contender->znode().has_value(); }, absl::Seconds(10)));
  };
  auto elected = [](Master& master) {
    absl::MutexLock lock(&master.mu);
    return master.elected;
  };
  Master old_leader;
  Master new_leader;
  start(old_leader, "old");
  start(new_leader, "new");
  ASSERT_TRUE(WaitFor([&] { return !elected(old_leader).empty(); }, absl::Seconds(10)));
  old_leader.store->SetFence(elected(old_leader));
  ASSERT_TRUE(old_leader.store->Apply({RegistryWrite::Put("framework/f", "old leader")}).ok());

  // The old leader's session expires (a long GC pause, a partition); its process lives on.
  const std::optional<zk::SessionCredentials> credentials =
      old_leader.contender->session_credentials();
  ASSERT_TRUE(credentials.has_value());
  ASSERT_TRUE(zk::ExpireSession(ensemble_->connect_string(), *credentials).ok());
  ASSERT_TRUE(WaitFor([&] { return !elected(new_leader).empty(); }, absl::Seconds(5)));
  new_leader.store->SetFence(elected(new_leader));

  absl::StatusOr<std::vector<uint64_t>> stale =
      old_leader.store->Apply({RegistryWrite::Put("framework/f", "stale write")});
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.status().message(), HasSubstr("not the leading master"));
  absl::StatusOr<std::vector<uint64_t>> fresh = new_leader.store->Apply(
      {RegistryWrite::Put("framework/f", "new leader", ExpectedVersion::Exactly(1))});
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_THAT(*fresh, ElementsAre(2u));
  EXPECT_EQ(ValueIn(*old_leader.store, "framework/f"), "new leader");
  old_leader.contender.reset();
  new_leader.contender.reset();
}

TEST(ZooKeeperRegistryStoreOpenTest, AnUnreachableEnsembleIsUnavailableAndABadPathInvalid) {
  absl::StatusOr<std::unique_ptr<ZooKeeperRegistryStore>> unreachable =
      ZooKeeperRegistryStore::Open(
          {.servers = "127.0.0.1:1", .path = "/rz", .connect_timeout = absl::Milliseconds(300)});
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(unreachable.status().message(), HasSubstr("127.0.0.1:1"));
  absl::StatusOr<std::unique_ptr<ZooKeeperRegistryStore>> bad_path =
      ZooKeeperRegistryStore::Open({.servers = "127.0.0.1:1", .path = "rz"});
  EXPECT_EQ(bad_path.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_path.status().message(), HasSubstr("'rz'"));
}

}  // namespace
}  // namespace rz::master
