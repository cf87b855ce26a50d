// Conformance of RegistryStore implementations: LevelDbRegistryStore (temp dir) and
// FakeRegistryStore run the same tests, so the fake the master tests use behaves like the real
// store.
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "leveldb/db.h"
#include "master/registry/leveldb_registry_store.h"
#include "testing/fake_registry_store.h"

namespace rz::master {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Owns one store and can reopen it (durable stores keep their data) or damage a record.
class StoreHarness {
 public:
  virtual ~StoreHarness() = default;
  virtual RegistryStore& store() = 0;
  virtual void Reopen() = 0;
  // Replaces the record at `key` with bytes the store cannot read.
  virtual void Corrupt(const std::string& key) = 0;
};

class LevelDbHarness final : public StoreHarness {
 public:
  LevelDbHarness() {
    std::string pattern = "/tmp/rz-registry-test-XXXXXX";
    CHECK(mkdtemp(pattern.data()) != nullptr);
    dir_ = pattern;
    Reopen();
  }
  ~LevelDbHarness() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  RegistryStore& store() override { return *store_; }
  void Reopen() override {
    store_.reset();
    absl::StatusOr<std::unique_ptr<LevelDbRegistryStore>> opened =
        LevelDbRegistryStore::Open(dir_ + "/registry");
    CHECK(opened.ok()) << opened.status();
    store_ = *std::move(opened);
  }
  void Corrupt(const std::string& key) override {
    store_.reset();
    leveldb::DB* db = nullptr;
    CHECK(leveldb::DB::Open(leveldb::Options(), dir_ + "/registry", &db).ok());
    CHECK(db->Put(leveldb::WriteOptions(), key, "abc").ok());  // Shorter than a version.
    delete db;
    Reopen();
  }

 private:
  std::string dir_;
  std::unique_ptr<LevelDbRegistryStore> store_;
};

class FakeHarness final : public StoreHarness {
 public:
  RegistryStore& store() override { return store_; }
  void Reopen() override {}  // The fake lives as long as the test: like a durable store.
  void Corrupt(const std::string& key) override { store_.Corrupt(key); }

 private:
  FakeRegistryStore store_;
};

template <typename Harness>
class RegistryStoreTest : public ::testing::Test {
 protected:
  RegistryStore& store() { return harness_.store(); }

  uint64_t PutOk(const std::string& key, const std::string& value,
                 ExpectedVersion expected = ExpectedVersion::Any()) {
    absl::StatusOr<std::vector<uint64_t>> versions =
        store().Apply({RegistryWrite::Put(key, value, expected)});
    EXPECT_TRUE(versions.ok()) << versions.status();
    return versions.ok() ? (*versions)[0] : 0;
  }
  std::string ValueOf(const std::string& key) {
    absl::StatusOr<std::optional<RegistryRecord>> record = store().Get(key);
    EXPECT_TRUE(record.ok()) << record.status();
    return record.ok() && record->has_value() ? (*record)->value : "<none>";
  }

  Harness harness_;
};

using Harnesses = ::testing::Types<LevelDbHarness, FakeHarness>;
TYPED_TEST_SUITE(RegistryStoreTest, Harnesses);

TYPED_TEST(RegistryStoreTest, VersionsStartAtOneAndGrowWithEachPut) {
  EXPECT_EQ(this->PutOk("agent/a1", "v1"), 1u);
  EXPECT_EQ(this->PutOk("agent/a1", "v2"), 2u);
  EXPECT_EQ(this->PutOk("agent/a1", "v3"), 3u);
  absl::StatusOr<std::optional<RegistryRecord>> record = this->store().Get("agent/a1");
  ASSERT_TRUE(record.ok());
  ASSERT_TRUE(record->has_value());
  EXPECT_EQ((*record)->version, 3u);
  EXPECT_EQ((*record)->value, "v3");
  // Deleted records start over.
  ASSERT_TRUE(this->store().Apply({RegistryWrite::Delete("agent/a1")}).ok());
  EXPECT_EQ(this->ValueOf("agent/a1"), "<none>");
  EXPECT_EQ(this->PutOk("agent/a1", "again"), 1u);
}

TYPED_TEST(RegistryStoreTest, CompareAndSetConflictsAreAbortedNamingTheKey) {
  this->PutOk("framework/f1", "one", ExpectedVersion::Absent());
  absl::StatusOr<std::vector<uint64_t>> again =
      this->store().Apply({RegistryWrite::Put("framework/f1", "two", ExpectedVersion::Absent())});
  ASSERT_EQ(again.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(again.status().message(), HasSubstr("framework/f1"));

  absl::StatusOr<std::vector<uint64_t>> stale =
      this->store().Apply({RegistryWrite::Put("framework/f1", "two", ExpectedVersion::Exactly(7))});
  ASSERT_EQ(stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(stale.status().message(), HasSubstr("framework/f1"));
  EXPECT_EQ(this->ValueOf("framework/f1"), "one");

  EXPECT_EQ(this->PutOk("framework/f1", "two", ExpectedVersion::Exactly(1)), 2u);
  absl::StatusOr<std::vector<uint64_t>> delete_stale =
      this->store().Apply({RegistryWrite::Delete("framework/f1", ExpectedVersion::Exactly(1))});
  ASSERT_EQ(delete_stale.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(this->ValueOf("framework/f1"), "two");
  // Expecting an exact version of a missing record is a conflict too.
  absl::StatusOr<std::vector<uint64_t>> missing =
      this->store().Apply({RegistryWrite::Put("framework/f9", "x", ExpectedVersion::Exactly(1))});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kAborted);
}

TYPED_TEST(RegistryStoreTest, OneBadExpectationAppliesNothingOfTheBatch) {
  this->PutOk("weight/a", "1");
  this->PutOk("weight/b", "1");
  absl::StatusOr<std::vector<uint64_t>> result = this->store().Apply({
      RegistryWrite::Put("weight/a", "2", ExpectedVersion::Exactly(1)),
      RegistryWrite::Delete("weight/b", ExpectedVersion::Any()),
      RegistryWrite::Put("weight/c", "new", ExpectedVersion::Absent()),
      RegistryWrite::Put("weight/b2", "x", ExpectedVersion::Exactly(5)),  // Wrong.
  });
  ASSERT_EQ(result.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(result.status().message(), HasSubstr("weight/b2"));
  EXPECT_EQ(this->ValueOf("weight/a"), "1");
  EXPECT_EQ(this->ValueOf("weight/b"), "1");
  EXPECT_EQ(this->ValueOf("weight/c"), "<none>");

  absl::StatusOr<std::vector<uint64_t>> good = this->store().Apply({
      RegistryWrite::Put("weight/a", "2", ExpectedVersion::Exactly(1)),
      RegistryWrite::Delete("weight/b", ExpectedVersion::Exactly(1)),
      RegistryWrite::Put("weight/c", "new", ExpectedVersion::Absent()),
  });
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_THAT(*good, ElementsAre(2u, 0u, 1u));
  EXPECT_EQ(this->ValueOf("weight/a"), "2");
  EXPECT_EQ(this->ValueOf("weight/b"), "<none>");
}

TYPED_TEST(RegistryStoreTest, RepeatedOrEmptyKeysAreInvalid) {
  absl::StatusOr<std::vector<uint64_t>> twice =
      this->store().Apply({RegistryWrite::Put("k", "1"), RegistryWrite::Put("k", "2")});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(twice.status().message(), HasSubstr("'k'"));
  EXPECT_EQ(this->ValueOf("k"), "<none>");
  EXPECT_EQ(this->store().Apply({RegistryWrite::Put("", "1")}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TYPED_TEST(RegistryStoreTest, ListReturnsTheRecordsOfAPrefixInKeyOrder) {
  this->PutOk("agent/b", "2");
  this->PutOk("agent/a", "1");
  this->PutOk("agent/a", "1'");
  this->PutOk("agents", "not an agent record");
  this->PutOk("framework/f", "f");
  absl::StatusOr<std::vector<RegistryRecord>> agents = this->store().List("agent/");
  ASSERT_TRUE(agents.ok()) << agents.status();
  ASSERT_EQ(agents->size(), 2u);
  EXPECT_EQ((*agents)[0].key, "agent/a");
  EXPECT_EQ((*agents)[0].value, "1'");
  EXPECT_EQ((*agents)[0].version, 2u);
  EXPECT_EQ((*agents)[1].key, "agent/b");
  absl::StatusOr<std::vector<RegistryRecord>> all = this->store().List("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  absl::StatusOr<std::vector<RegistryRecord>> none = this->store().List("quota/");
  ASSERT_TRUE(none.ok());
  EXPECT_THAT(*none, IsEmpty());
}

TYPED_TEST(RegistryStoreTest, ReopeningKeepsRecordsAndVersions) {
  this->PutOk("framework/f1", "info");
  this->PutOk("framework/f1", "info2");
  this->PutOk("quota/r", "q");
  this->harness_.Reopen();
  EXPECT_EQ(this->ValueOf("framework/f1"), "info2");
  EXPECT_EQ(this->ValueOf("quota/r"), "q");
  EXPECT_EQ(this->PutOk("framework/f1", "info3", ExpectedVersion::Exactly(2)), 3u);
}

TYPED_TEST(RegistryStoreTest, AnUnreadableRecordIsDataLossNamingItsKey) {
  this->PutOk("agent/ok", "fine");
  this->PutOk("agent/bad", "fine");
  this->harness_.Corrupt("agent/bad");
  absl::StatusOr<std::optional<RegistryRecord>> get = this->store().Get("agent/bad");
  ASSERT_EQ(get.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(get.status().message(), HasSubstr("agent/bad"));
  absl::StatusOr<std::vector<RegistryRecord>> list = this->store().List("agent/");
  ASSERT_EQ(list.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(list.status().message(), HasSubstr("agent/bad"));
  EXPECT_EQ(this->ValueOf("agent/ok"), "fine");
  // Overwriting it without an expectation repairs it.
  this->PutOk("agent/bad", "repaired");
  EXPECT_EQ(this->ValueOf("agent/bad"), "repaired");
}

TEST(LevelDbRegistryStoreTest, ASecondOpenOfTheSameDirectoryIsUnavailable) {
  std::string pattern = "/tmp/rz-registry-test-XXXXXX";
  ASSERT_NE(mkdtemp(pattern.data()), nullptr);
  {
    absl::StatusOr<std::unique_ptr<LevelDbRegistryStore>> first =
        LevelDbRegistryStore::Open(pattern);
    ASSERT_TRUE(first.ok()) << first.status();
    absl::StatusOr<std::unique_ptr<LevelDbRegistryStore>> second =
        LevelDbRegistryStore::Open(pattern);
    EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(second.status().message(), HasSubstr(pattern));
  }
  std::filesystem::remove_all(pattern);
}

}  // namespace
}  // namespace rz::master
