#include "agent/fetcher.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "glog/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace rz::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// A directory under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "rz-fetcher-test.XXXXXX").string();
    CHECK(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const {
    const std::string sub = absl::StrCat(path_, "/", name);
    std::filesystem::create_directories(sub);
    return sub;
  }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

bool Exists(const std::string& path) {
  std::error_code ignored;
  return std::filesystem::exists(std::filesystem::symlink_status(path, ignored));
}

std::set<std::string> ListDir(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

mode_t Mode(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

struct UriSpec {
  std::string value;
  bool executable = false;
  bool extract = false;
  bool cache = false;
  std::string output_file;
};

Fetcher::Uris Uris(const std::vector<UriSpec>& specs) {
  Fetcher::Uris uris;
  for (const UriSpec& spec : specs) {
    rz::v1::CommandInfo::URI* uri = uris.Add();
    uri->set_value(spec.value);
    uri->set_executable(spec.executable);
    uri->set_extract(spec.extract);
    uri->set_cache(spec.cache);
    uri->set_output_file(spec.output_file);
  }
  return uris;
}

struct ArchiveEntry {
  std::string name;
  std::string contents;
  std::string symlink;  // Non-empty: a symlink to this target.
};

// Writes an archive whose format and compression follow the extension of `path`.
void WriteArchive(const std::string& path, const std::vector<ArchiveEntry>& entries) {
  struct archive* a = archive_write_new();
  if (path.ends_with(".zip")) {
    archive_write_set_format_zip(a);
  } else {
    archive_write_set_format_pax_restricted(a);
    if (path.ends_with(".gz") || path.ends_with(".tgz")) {
      archive_write_add_filter_gzip(a);
    } else if (path.ends_with(".bz2")) {
      archive_write_add_filter_bzip2(a);
    } else if (path.ends_with(".xz")) {
      archive_write_add_filter_xz(a);
    }
  }
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK) << archive_error_string(a);
  for (const ArchiveEntry& e : entries) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.name.c_str());
    if (!e.symlink.empty()) {
      archive_entry_set_filetype(entry, AE_IFLNK);
      archive_entry_set_symlink(entry, e.symlink.c_str());
      archive_entry_set_perm(entry, 0777);
    } else {
      archive_entry_set_filetype(entry, AE_IFREG);
      archive_entry_set_perm(entry, 0644);
      archive_entry_set_size(entry, static_cast<la_int64_t>(e.contents.size()));
    }
    ASSERT_EQ(archive_write_header(a, entry), ARCHIVE_OK) << archive_error_string(a);
    if (!e.contents.empty()) {
      ASSERT_EQ(archive_write_data(a, e.contents.data(), e.contents.size()),
                static_cast<la_ssize_t>(e.contents.size()));
    }
    archive_entry_free(entry);
  }
  ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
}

class FetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sandbox_ = dir_.Sub("sandbox");
    files_ = dir_.Sub("files");
    cache_dir_ = absl::StrCat(dir_.path(), "/cache");
  }

  FetcherOptions Options() const { return FetcherOptions{.cache_dir = cache_dir_}; }

  std::string SourceFile(const std::string& name, const std::string& contents) {
    const std::string path = absl::StrCat(files_, "/", name);
    WriteFile(path, contents);
    return path;
  }

  TempDir dir_;
  std::string sandbox_;
  std::string files_;
  std::string cache_dir_;
};

TEST_F(FetcherTest, FileUriLandsInTheSandboxUnderItsLastPathComponent) {
  const std::string source = SourceFile("data.txt", "hello");
  Fetcher fetcher(Options());

  ASSERT_TRUE(fetcher.FetchAll(Uris({{.value = "file://" + source}}), sandbox_).ok());

  EXPECT_THAT(ListDir(sandbox_), UnorderedElementsAre("data.txt"));
  EXPECT_EQ(ReadFile(sandbox_ + "/data.txt"), "hello");
  EXPECT_EQ(Mode(sandbox_ + "/data.txt"), 0644);
}

TEST_F(FetcherTest, BareAbsolutePathAndOutputFileNameTheResult) {
  const std::string source = SourceFile("data.txt", "renamed");
  Fetcher fetcher(Options());

  ASSERT_TRUE(
      fetcher.FetchAll(Uris({{.value = source, .output_file = "config.json"}}), sandbox_).ok());

  EXPECT_THAT(ListDir(sandbox_), UnorderedElementsAre("config.json"));
  EXPECT_EQ(ReadFile(sandbox_ + "/config.json"), "renamed");
}

TEST_F(FetcherTest, ExecutableMakesTheFileMode0755) {
  const std::string source = SourceFile("run.sh", "#!/bin/sh\n");
  Fetcher fetcher(Options());

  ASSERT_TRUE(fetcher.FetchAll(Uris({{.value = source, .executable = true}}), sandbox_).ok());

  EXPECT_EQ(Mode(sandbox_ + "/run.sh"), 0755);
}

TEST_F(FetcherTest, MissingFileFailsWithAnErrorNamingTheUri) {
  Fetcher fetcher(Options());
  const std::string uri = absl::StrCat("file://", files_, "/absent.bin");

  const absl::Status status = fetcher.FetchAll(Uris({{.value = uri}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(uri));
  EXPECT_THAT(status.message(), HasSubstr("no such file"));
  EXPECT_TRUE(ListDir(sandbox_).empty()) << "no temporary file may be left behind";
}

TEST_F(FetcherTest, MalformedUrisAreInvalidArgument) {
  Fetcher fetcher(Options());
  for (const std::string uri : {"", "relative/path.txt", "file://host/etc/passwd", "http:///nohost",
                                "http:host/x", "https://"}) {
    const absl::Status status = fetcher.FetchAll(Uris({{.value = uri}}), sandbox_);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << "'" << uri << "': " << status;
    if (!uri.empty()) {
      EXPECT_THAT(status.message(), HasSubstr(uri));
    }
  }
  EXPECT_TRUE(ListDir(sandbox_).empty());
}

TEST_F(FetcherTest, UnsupportedSchemeIsInvalidArgument) {
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = "ftp://example.com/a.tgz"}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "unsupported URI scheme in 'ftp://example.com/a.tgz'");
}

TEST_F(FetcherTest, UnsafeOutputNamesAreInvalidArgument) {
  const std::string source = SourceFile("data.txt", "x");
  Fetcher fetcher(Options());
  for (const std::string name : {"../escape", "a/b", "..", "."}) {
    const absl::Status status =
        fetcher.FetchAll(Uris({{.value = source, .output_file = name}}), sandbox_);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("'", name, "'")));
  }
  // A URI without a last path component needs an explicit name.
  const absl::Status status = fetcher.FetchAll(Uris({{.value = "http://127.0.0.1:1/"}}), sandbox_);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ListDir(sandbox_).empty());
  EXPECT_FALSE(Exists(dir_.path() + "/escape"));
}

TEST_F(FetcherTest, FetchAllStopsAtTheFirstFailure) {
  const std::string first = SourceFile("first.txt", "1");
  const std::string third = SourceFile("third.txt", "3");
  Fetcher fetcher(Options());

  const absl::Status status = fetcher.FetchAll(
      Uris({{.value = first}, {.value = files_ + "/missing.txt"}, {.value = third}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ListDir(sandbox_), UnorderedElementsAre("first.txt"));
}

TEST_F(FetcherTest, MissingSandboxIsAnError) {
  const std::string source = SourceFile("data.txt", "x");
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = source}}), dir_.path() + "/no-such-sandbox");

  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("no-such-sandbox"));
}

TEST_F(FetcherTest, FileBeyondTheDownloadLimitIsResourceExhausted) {
  const std::string source = SourceFile("big.bin", std::string(100, 'x'));
  FetcherOptions options = Options();
  options.max_download_bytes = 99;
  Fetcher fetcher(options);

  const absl::Status status = fetcher.FetchAll(Uris({{.value = source}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(ListDir(sandbox_).empty());
}

TEST_F(FetcherTest, OwnerIsGivenEverythingFetchedAndExtracted) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "changing file owners needs root";
  }
  const std::string archive = files_ + "/bundle.tar.gz";
  WriteArchive(archive, {{.name = "dir/inner.txt", .contents = "inner"}});
  const std::string plain = SourceFile("plain.txt", "plain");
  Fetcher fetcher(Options());
  constexpr uid_t kUid = 4242;
  constexpr gid_t kGid = 4343;

  ASSERT_TRUE(fetcher
                  .FetchAll(Uris({{.value = plain}, {.value = archive, .extract = true}}), sandbox_,
                            std::make_pair(kUid, kGid))
                  .ok());

  for (const std::string name : {"plain.txt", "bundle.tar.gz", "dir", "dir/inner.txt"}) {
    struct stat st {};
    ASSERT_EQ(lstat((sandbox_ + "/" + name).c_str(), &st), 0) << name;
    EXPECT_EQ(st.st_uid, kUid) << name;
    EXPECT_EQ(st.st_gid, kGid) << name;
  }
}

// Extraction: every supported archive type, built with libarchive.
class FetcherExtractTest : public FetcherTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(FetcherExtractTest, ArchiveIsUnpackedIntoTheSandboxAndKept) {
  const std::string name = "bundle" + GetParam();
  WriteArchive(files_ + "/" + name, {{.name = "top.txt", .contents = "top"},
                                     {.name = "bin/tool", .contents = "tool"},
                                     {.name = "bin/link", .symlink = "tool"}});
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = files_ + "/" + name, .extract = true}}), sandbox_);

  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(ListDir(sandbox_), UnorderedElementsAre(name, "top.txt", "bin"));
  EXPECT_EQ(ReadFile(sandbox_ + "/top.txt"), "top");
  EXPECT_EQ(ReadFile(sandbox_ + "/bin/tool"), "tool");
  EXPECT_EQ(ReadFile(sandbox_ + "/bin/link"), "tool");
}

INSTANTIATE_TEST_SUITE_P(Formats, FetcherExtractTest,
                         ::testing::Values(".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz",
                                           ".zip"));

TEST_F(FetcherTest, TarGzMadeByTheTarBinaryIsUnpacked) {
  const std::string tree = dir_.Sub("tree");
  WriteFile(tree + "/a.txt", "a");
  std::filesystem::create_directories(tree + "/sub");
  WriteFile(tree + "/sub/b.txt", "b");
  const std::string archive = files_ + "/tree.tgz";
  ASSERT_EQ(std::system(absl::StrCat("tar -czf '", archive, "' -C '", tree, "' .").c_str()), 0);
  Fetcher fetcher(Options());

  ASSERT_TRUE(fetcher.FetchAll(Uris({{.value = archive, .extract = true}}), sandbox_).ok());

  EXPECT_EQ(ReadFile(sandbox_ + "/a.txt"), "a");
  EXPECT_EQ(ReadFile(sandbox_ + "/sub/b.txt"), "b");
}

TEST_F(FetcherTest, ExtractWithoutAnArchiveExtensionJustFetches) {
  const std::string source = SourceFile("notes.txt", "plain");
  Fetcher fetcher(Options());

  ASSERT_TRUE(fetcher.FetchAll(Uris({{.value = source, .extract = true}}), sandbox_).ok());

  EXPECT_THAT(ListDir(sandbox_), UnorderedElementsAre("notes.txt"));
}

TEST_F(FetcherTest, ArchiveEntryWithDotDotIsRefusedAndNothingLandsOutside) {
  const std::string archive = files_ + "/evil.tar.gz";
  WriteArchive(archive, {{.name = "ok.txt", .contents = "ok"},
                         {.name = "../evil.txt", .contents = "evil"},
                         {.name = "after.txt", .contents = "after"}});
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = archive, .extract = true}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'../evil.txt'"));
  EXPECT_THAT(status.message(), HasSubstr(archive));
  EXPECT_FALSE(Exists(dir_.path() + "/evil.txt"));
  EXPECT_FALSE(Exists(sandbox_ + "/after.txt"));
}

TEST_F(FetcherTest, ArchiveEntryWithAnAbsolutePathIsRefused) {
  const std::string target = dir_.path() + "/absolute.txt";
  const std::string archive = files_ + "/abs.tar";
  WriteArchive(archive, {{.name = target, .contents = "evil"}});
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = archive, .extract = true}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(Exists(target));
}

TEST_F(FetcherTest, SymlinkPointingOutsideIsRefusedAndNotFollowed) {
  const std::string outside = dir_.Sub("outside");
  const std::string archive = files_ + "/links.tar";
  WriteArchive(archive, {{.name = "escape", .symlink = "../outside"},
                         {.name = "escape/planted.txt", .contents = "evil"}});
  const std::string absolute = files_ + "/abs-link.tar";
  WriteArchive(absolute, {{.name = "etc", .symlink = outside}});
  Fetcher fetcher(Options());

  EXPECT_EQ(fetcher.FetchAll(Uris({{.value = archive, .extract = true}}), sandbox_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(fetcher.FetchAll(Uris({{.value = absolute, .extract = true}}), sandbox_).code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_FALSE(Exists(sandbox_ + "/escape"));
  EXPECT_FALSE(Exists(sandbox_ + "/etc"));
  EXPECT_TRUE(ListDir(outside).empty());
}

TEST_F(FetcherTest, EntryThroughAnInsideSymlinkIsRefused) {
  // "dir" is a symlink that stays inside, but writing through it is refused all the same: the
  // link's target could be swapped between entries.
  const std::string archive = files_ + "/through.tar";
  WriteArchive(archive, {{.name = "real/keep.txt", .contents = "keep"},
                         {.name = "dir", .symlink = "real"},
                         {.name = "dir/planted.txt", .contents = "x"}});
  Fetcher fetcher(Options());

  EXPECT_EQ(fetcher.FetchAll(Uris({{.value = archive, .extract = true}}), sandbox_).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(Exists(sandbox_ + "/real/planted.txt"));
}

// HTTP: a cpp-httplib server on 127.0.0.1, port 0, counting requests per path.
class FetcherHttpTest : public FetcherTest {
 protected:
  void SetUp() override {
    FetcherTest::SetUp();
    server_.Get(R"(/files/([^?]*))", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string name = req.matches[1];
      std::function<void()> before;
      std::optional<std::string> body;
      {
        absl::MutexLock lock(&mu_);
        ++requests_[name];
        before = before_reply_;
        if (auto it = bodies_.find(name); it != bodies_.end()) {
          body = it->second;
        }
      }
      if (before) {
        before();
      }
      if (!body.has_value()) {
        res.status = 404;
        return;
      }
      res.set_content(*body, "application/octet-stream");
    });
    server_.Get(R"(/redirect/(.*))", [](const httplib::Request& req, httplib::Response& res) {
      res.set_redirect(absl::StrCat("/files/", req.matches[1].str()));
    });
    server_.Get("/loop",
                [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/loop"); });
    server_.Get("/flaky/data.bin", [this](const httplib::Request&, httplib::Response& res) {
      absl::MutexLock lock(&mu_);
      if (++requests_["flaky"] == 1) {
        res.status = 500;
        return;
      }
      res.set_content("recovered", "application/octet-stream");
    });
    server_.Get("/slow/data.bin", [this](const httplib::Request&, httplib::Response& res) {
      release_slow_.WaitForNotificationWithTimeout(absl::Seconds(30));
      res.set_content("late", "application/octet-stream");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }

  void TearDown() override {
    if (!release_slow_.HasBeenNotified()) {
      release_slow_.Notify();
    }
    server_.stop();
    thread_.join();
  }

  std::string Url(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", port_, path);
  }

  void Serve(const std::string& name, const std::string& body) {
    absl::MutexLock lock(&mu_);
    bodies_[name] = body;
  }

  int Requests(const std::string& name) {
    absl::MutexLock lock(&mu_);
    return requests_[name];
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  absl::Notification release_slow_;
  absl::Mutex mu_;
  std::map<std::string, std::string> bodies_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> requests_ ABSL_GUARDED_BY(mu_);
  std::function<void()> before_reply_ ABSL_GUARDED_BY(mu_);
};

TEST_F(FetcherHttpTest, DownloadWritesTheBodyUnderTheNameWithoutTheQuery) {
  Serve("pkg/app.bin", "payload");
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = Url("/files/pkg/app.bin?version=3#frag")}}), sandbox_);

  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(ListDir(sandbox_), UnorderedElementsAre("app.bin"));
  EXPECT_EQ(ReadFile(sandbox_ + "/app.bin"), "payload");
  EXPECT_EQ(Requests("pkg/app.bin"), 1);
}

TEST_F(FetcherHttpTest, NotFoundNamesTheUriAndTheStatus) {
  Fetcher fetcher(Options());
  const std::string uri = Url("/files/absent.bin");

  const absl::Status status = fetcher.FetchAll(Uris({{.value = uri}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr(uri));
  EXPECT_THAT(status.message(), HasSubstr("404"));
  EXPECT_TRUE(ListDir(sandbox_).empty());
}

TEST_F(FetcherHttpTest, CredentialsInTheUriStayOutOfErrors) {
  Fetcher fetcher(Options());
  const std::string uri = absl::StrCat("http://deploy:s3cret@127.0.0.1:", port_, "/files/x.bin");

  const absl::Status status = fetcher.FetchAll(Uris({{.value = uri}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), ::testing::Not(HasSubstr("s3cret")));
  EXPECT_THAT(status.message(), HasSubstr(absl::StrCat("http://***@127.0.0.1:", port_)));
}

TEST_F(FetcherHttpTest, RedirectIsFollowedAndTheNameComesFromTheUri) {
  Serve("real.bin", "moved");
  Fetcher fetcher(Options());

  ASSERT_TRUE(fetcher.FetchAll(Uris({{.value = Url("/redirect/real.bin")}}), sandbox_).ok());

  EXPECT_EQ(ReadFile(sandbox_ + "/real.bin"), "moved");
  EXPECT_EQ(Requests("real.bin"), 1);
}

TEST_F(FetcherHttpTest, EndlessRedirectsFail) {
  Fetcher fetcher(Options());

  const absl::Status status =
      fetcher.FetchAll(Uris({{.value = Url("/loop"), .output_file = "x"}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr(Url("/loop")));
}

TEST_F(FetcherHttpTest, DownloadBeyondTheLimitLeavesNoPartialFile) {
  Serve("big.bin", std::string(4096, 'b'));
  FetcherOptions options = Options();
  options.max_download_bytes = 1000;
  Fetcher fetcher(options);

  const absl::Status status = fetcher.FetchAll(Uris({{.value = Url("/files/big.bin")}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_TRUE(ListDir(sandbox_).empty());
}

TEST_F(FetcherHttpTest, SlowServerTimesOut) {
  FetcherOptions options = Options();
  options.timeout = absl::Milliseconds(300);
  Fetcher fetcher(options);

  const absl::Status status = fetcher.FetchAll(Uris({{.value = Url("/slow/data.bin")}}), sandbox_);

  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  EXPECT_TRUE(ListDir(sandbox_).empty());
}

TEST_F(FetcherHttpTest, ConcurrentFetchesOfACachedUriDownloadOnce) {
  constexpr int kFetchers = 8;
  Serve("shared.tgz", "shared bytes");
  Fetcher fetcher(Options());
  // Hold the one response until the other seven fetches have joined the download in flight,
  // so that they really wait on it (bounded: the outcome is asserted either way).
  {
    absl::MutexLock lock(&mu_);
    before_reply_ = [&fetcher] {
      const absl::Time deadline = absl::Now() + absl::Seconds(10);
      while (fetcher.cache_stats().hits < kFetchers - 1 && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(1));
      }
    };
  }
  std::vector<std::string> sandboxes;
  for (int i = 0; i < kFetchers; ++i) {
    sandboxes.push_back(dir_.Sub(absl::StrCat("task", i)));
  }
  std::vector<absl::Status> results(kFetchers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFetchers; ++i) {
    threads.emplace_back([&, i] {
      results[i] = fetcher.FetchAll(Uris({{.value = Url("/files/shared.tgz"), .cache = true}}),
                                    sandboxes[i]);
    });
  }
  for (std::thread& thread : threads) {
    thread.join();
  }

  EXPECT_EQ(Requests("shared.tgz"), 1);
  for (int i = 0; i < kFetchers; ++i) {
    EXPECT_TRUE(results[i].ok()) << results[i];
    EXPECT_EQ(ReadFile(sandboxes[i] + "/shared.tgz"), "shared bytes") << i;
  }
  const CacheStats stats = fetcher.cache_stats();
  EXPECT_EQ(stats.misses, 1);
  EXPECT_EQ(stats.hits, kFetchers - 1);
  EXPECT_EQ(stats.downloads, 1);
  EXPECT_EQ(stats.entries, 1);
  EXPECT_EQ(stats.bytes, std::string("shared bytes").size());
}

TEST_F(FetcherHttpTest, LruEvictionKeepsTheTotalUnderTheBound) {
  for (const std::string name : {"a", "b", "c"}) {
    Serve(name, std::string(100, name[0]));
  }
  FetcherOptions options = Options();
  options.cache_max_bytes = 250;
  Fetcher fetcher(options);
  auto fetch = [&](const std::string& name) {
    const std::string sandbox = dir_.Sub(absl::StrCat("s-", name, "-", Requests(name)));
    return fetcher.FetchAll(Uris({{.value = Url("/files/" + name), .cache = true}}), sandbox);
  };

  ASSERT_TRUE(fetch("a").ok());
  ASSERT_TRUE(fetch("b").ok());
  ASSERT_TRUE(fetch("a").ok());  // A hit: "b" is now the least recently used.
  ASSERT_TRUE(fetch("c").ok());  // 300 bytes > 250: "b" goes.

  CacheStats stats = fetcher.cache_stats();
  EXPECT_EQ(stats.evictions, 1);
  EXPECT_EQ(stats.bytes, 200);
  EXPECT_LE(stats.bytes, options.cache_max_bytes);
  EXPECT_EQ(Requests("a"), 1);

  ASSERT_TRUE(fetch("a").ok());  // Still cached.
  ASSERT_TRUE(fetch("b").ok());  // Evicted: downloaded again (and evicts "c").
  EXPECT_EQ(Requests("a"), 1);
  EXPECT_EQ(Requests("b"), 2);
  ASSERT_TRUE(fetch("a").ok());
  EXPECT_EQ(Requests("a"), 1);
  ASSERT_TRUE(fetch("c").ok());
  EXPECT_EQ(Requests("c"), 2);

  stats = fetcher.cache_stats();
  EXPECT_LE(stats.bytes, options.cache_max_bytes);
  // Two data files and their `.uri` companions.
  EXPECT_EQ(ListDir(cache_dir_).size(), 4);
}

TEST_F(FetcherHttpTest, FailedDownloadIsNotCached) {
  Fetcher fetcher(Options());
  const Fetcher::Uris uris = Uris({{.value = Url("/flaky/data.bin"), .cache = true}});

  const absl::Status first = fetcher.FetchAll(uris, sandbox_);
  EXPECT_EQ(first.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(first.message(), HasSubstr("500"));
  EXPECT_EQ(fetcher.cache_stats().entries, 0);
  EXPECT_TRUE(ListDir(cache_dir_).empty());

  const absl::Status second = fetcher.FetchAll(uris, sandbox_);
  ASSERT_TRUE(second.ok()) << second;
  EXPECT_EQ(ReadFile(sandbox_ + "/data.bin"), "recovered");
  EXPECT_EQ(Requests("flaky"), 2);
  EXPECT_EQ(fetcher.cache_stats().entries, 1);
}

TEST_F(FetcherHttpTest, FileBiggerThanTheWholeCacheIsFetchedWithoutCaching) {
  Serve("huge.bin", std::string(500, 'h'));
  FetcherOptions options = Options();
  options.cache_max_bytes = 100;
  Fetcher fetcher(options);
  const Fetcher::Uris uris = Uris({{.value = Url("/files/huge.bin"), .cache = true}});

  ASSERT_TRUE(fetcher.FetchAll(uris, sandbox_).ok());
  EXPECT_EQ(ReadFile(sandbox_ + "/huge.bin"), std::string(500, 'h'));
  EXPECT_EQ(fetcher.cache_stats().bytes, 0);
  EXPECT_TRUE(ListDir(cache_dir_).empty());

  ASSERT_TRUE(fetcher.FetchAll(uris, dir_.Sub("again")).ok());
  EXPECT_EQ(Requests("huge.bin"), 2);
}

TEST_F(FetcherHttpTest, CacheIndexIsRebuiltFromTheDirectory) {
  Serve("kept.bin", "kept");
  const Fetcher::Uris uris = Uris({{.value = Url("/files/kept.bin"), .cache = true}});
  {
    Fetcher first(Options());
    ASSERT_TRUE(first.FetchAll(uris, dir_.Sub("one")).ok());
  }
  WriteFile(cache_dir_ + "/0123456789abcdef.tmp.XYZ123", "leftover");
  WriteFile(cache_dir_ + "/fedcba9876543210.uri", "orphaned metadata");

  Fetcher second(Options());
  EXPECT_EQ(second.cache_stats().entries, 1);
  EXPECT_EQ(second.cache_stats().bytes, 4);
  EXPECT_EQ(ListDir(cache_dir_).size(), 2) << "stray files are removed";
  const std::string sandbox = dir_.Sub("two");
  ASSERT_TRUE(second.FetchAll(uris, sandbox).ok());

  EXPECT_EQ(ReadFile(sandbox + "/kept.bin"), "kept");
  EXPECT_EQ(Requests("kept.bin"), 1);
  EXPECT_EQ(second.cache_stats().hits, 1);
}

TEST_F(FetcherHttpTest, CachedArchiveIsExtractedInEverySandbox) {
  const std::string archive = files_ + "/tools.zip";
  WriteArchive(archive, {{.name = "tool.sh", .contents = "echo hi"}});
  Serve("tools.zip", ReadFile(archive));
  Fetcher fetcher(Options());
  const Fetcher::Uris uris =
      Uris({{.value = Url("/files/tools.zip"), .extract = true, .cache = true}});

  for (const std::string name : {"x", "y"}) {
    const std::string sandbox = dir_.Sub(name);
    ASSERT_TRUE(fetcher.FetchAll(uris, sandbox).ok());
    EXPECT_EQ(ReadFile(sandbox + "/tool.sh"), "echo hi");
  }
  EXPECT_EQ(Requests("tools.zip"), 1);
}

}  // namespace
}  // namespace rz::agent
