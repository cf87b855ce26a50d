#include "agent/fetcher.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "glog/logging.h"

namespace rz::agent {

struct Fetcher::CacheEntry {
  enum class State { kDownloading, kReady, kFailed };

  std::string key;  // File name in the cache directory: the URI's hash in hex.
  std::string uri;
  std::string path;  // The data file (for an uncached entry: its temporary file).
  State state = State::kDownloading;
  absl::Status error;  // Set when `state` is kFailed.
  uint64_t size = 0;
  uint64_t last_use = 0;
  // Fetches that use the entry right now (the downloader and every waiter or copier). Entries
  // in use are never evicted.
  int users = 0;
  // False for a file bigger than the whole cache: it is not in `entries_`, and the last user
  // removes its temporary file.
  bool cached = true;
};

namespace {

constexpr char kTempMarker[] = ".tmp.";
constexpr char kUriSuffix[] = ".uri";
constexpr char kSandboxTempPrefix[] = ".rz-fetch.";
constexpr long kMaxRedirects = 10;
constexpr absl::Duration kMaxConnectTimeout = absl::Seconds(30);
constexpr size_t kCopyBufferSize = 64 * 1024;

enum class Scheme { kFile, kHttp };

struct ParsedUri {
  Scheme scheme;
  // For kFile the local path; for kHttp the URL's path (without query or fragment).
  std::string path;
};

// `uri` for messages and logs: credentials in the authority (user:password@) become "***".
std::string Redacted(const std::string& uri) {
  const size_t scheme_end = uri.find("://");
  if (scheme_end == std::string::npos) {
    return uri;
  }
  const size_t authority = scheme_end + 3;
  const size_t authority_end = std::min(uri.find_first_of("/?#", authority), uri.size());
  if (authority_end == authority) {
    return uri;
  }
  const size_t at = uri.rfind('@', authority_end - 1);
  if (at == std::string::npos || at < authority) {
    return uri;
  }
  return absl::StrCat(uri.substr(0, authority), "***", uri.substr(at));
}

bool IsSchemeToken(const std::string& text) {
  if (text.empty() || !absl::ascii_isalpha(static_cast<unsigned char>(text[0]))) {
    return false;
  }
  return std::all_of(text.begin(), text.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
  });
}

absl::StatusOr<ParsedUri> ParseUri(const std::string& uri) {
  if (uri.empty()) {
    return absl::InvalidArgumentError("empty URI");
  }
  for (const char c : uri) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed URI '", absl::CHexEscape(Redacted(uri)), "': control character"));
    }
  }
  if (uri.front() == '/') {
    return ParsedUri{Scheme::kFile, uri};
  }
  const size_t colon = uri.find(':');
  const std::string scheme =
      colon == std::string::npos ? "" : absl::AsciiStrToLower(uri.substr(0, colon));
  if (!IsSchemeToken(scheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed URI '", Redacted(uri),
                     "': expected an absolute path, file://, http:// or https://"));
  }
  if (scheme != "file" && scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported URI scheme in '", Redacted(uri), "'"));
  }
  if (uri.compare(colon + 1, 2, "//") != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed URI '", Redacted(uri), "': expected '", scheme, "://' after the scheme"));
  }
  const std::string rest = uri.substr(colon + 3);
  if (scheme == "file") {
    // Only the empty host (file:///path) names this machine unambiguously.
    if (rest.empty() || rest.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed URI '", Redacted(uri), "': a file URI must be file:///absolute/path"));
    }
    return ParsedUri{Scheme::kFile, rest};
  }
  const size_t authority_end = rest.find_first_of("/?#");
  if (authority_end == 0 || rest.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("malformed URI '", Redacted(uri), "': no host"));
  }
  std::string path;
  if (authority_end != std::string::npos && rest[authority_end] == '/') {
    path = rest.substr(authority_end);
    path = path.substr(0, path.find_first_of("?#"));
  }
  return ParsedUri{Scheme::kHttp, path};
}

// A name that stays a single entry of the sandbox directory.
absl::Status ValidateOutputName(const std::string& name, const std::string& uri) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || name.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat(
        "output file name '", name, "' for URI '", Redacted(uri),
        "' is not a plain file name (it must be non-empty, not '.' or '..', without '/')"));
  }
  return absl::OkStatus();
}

absl::Status Annotate(const absl::Status& status, const std::string& uri) {
  return absl::Status(status.code(),
                      absl::StrCat("fetching '", Redacted(uri), "': ", status.message()));
}

absl::Status ErrnoError(int error, const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(error)));
}

// 64-bit FNV-1a: stable across processes and builds, unlike absl::Hash, so cache file names
// survive restarts. Collisions are detected through the `.uri` file and bypass the cache.
std::string CacheKey(const std::string& uri) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : uri) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", hash);
}

bool IsCacheKey(const std::string& name) {
  return name.size() == 16 && std::all_of(name.begin(), name.end(), [](char c) {
           return absl::ascii_isxdigit(static_cast<unsigned char>(c));
         });
}

bool IsArchiveName(const std::string& name) {
  const std::string lower = absl::AsciiStrToLower(name);
  for (const char* suffix : {".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip"}) {
    if (absl::EndsWith(lower, suffix)) {
      return true;
    }
  }
  return false;
}

absl::Status WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return absl::ErrnoToStatus(errno, "write");
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Copies the file at `path` into `out_fd`. `limit` 0 means unlimited.
absl::Status CopyFileToFd(const std::string& path, int out_fd, uint64_t limit) {
  const int in = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    const int error = errno;
    if (error == ENOENT) {
      return absl::NotFoundError(absl::StrCat("no such file '", path, "'"));
    }
    return absl::ErrnoToStatus(error, absl::StrCat("opening '", path, "'"));
  }
  struct stat st {};
  if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(in);
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' is not a regular file"));
  }
  if (limit != 0 && static_cast<uint64_t>(st.st_size) > limit) {
    close(in);
    return absl::ResourceExhaustedError(
        absl::StrCat("'", path, "' has ", st.st_size, " bytes, more than the limit of ", limit));
  }
  std::vector<char> buffer(kCopyBufferSize);
  absl::Status status;
  while (status.ok()) {
    const ssize_t n = read(in, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      status = absl::ErrnoToStatus(errno, absl::StrCat("reading '", path, "'"));
    } else if (n == 0) {
      break;
    } else {
      status = WriteAll(out_fd, buffer.data(), static_cast<size_t>(n));
    }
  }
  close(in);
  return status;
}

struct CurlSink {
  int fd = -1;
  uint64_t limit = 0;
  uint64_t written = 0;
  bool over_limit = false;
  absl::Status write_error;
};

size_t OnCurlData(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<CurlSink*>(user);
  const size_t length = size * count;
  if (sink->limit != 0 && sink->written + length > sink->limit) {
    sink->over_limit = true;
    return 0;  // Makes curl abort with CURLE_WRITE_ERROR.
  }
  sink->write_error = WriteAll(sink->fd, data, length);
  if (!sink->write_error.ok()) {
    return 0;
  }
  sink->written += length;
  return length;
}

absl::Status HttpGet(const std::string& url, int fd, absl::Duration timeout, uint64_t limit) {
  // Thread-safe since curl 7.84; done once before the first handle.
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (global_init != CURLE_OK) {
    return absl::InternalError(
        absl::StrCat("initializing libcurl: ", curl_easy_strerror(global_init)));
  }
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (curl == nullptr) {
    return absl::InternalError("creating a libcurl handle failed");
  }
  CurlSink sink{.fd = fd, .limit = limit};
  char error_buffer[CURL_ERROR_SIZE] = {};
  const long timeout_ms = static_cast<long>(absl::ToInt64Milliseconds(timeout));
  const long connect_ms =
      static_cast<long>(absl::ToInt64Milliseconds(std::min(timeout, kMaxConnectTimeout)));
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnCurlData);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error_buffer);
  // Worker threads must not receive SIGALRM from name resolution.
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, kMaxRedirects);
  // A redirect must not reach file:// or other protocols on the agent's behalf.
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "rz-agent-fetcher");
  if (limit != 0) {
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(limit));
  }

  const CURLcode code = curl_easy_perform(h);
  if (code == CURLE_OK) {
    return absl::OkStatus();
  }
  if (sink.over_limit || code == CURLE_FILESIZE_EXCEEDED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("download is larger than the limit of ", limit, " bytes"));
  }
  if (!sink.write_error.ok()) {
    return absl::InternalError(absl::StrCat("writing the download: ", sink.write_error.message()));
  }
  const std::string detail = error_buffer[0] != '\0' ? error_buffer : curl_easy_strerror(code);
  switch (code) {
    case CURLE_HTTP_RETURNED_ERROR: {
      long http_code = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http_code);
      const std::string message = absl::StrCat("HTTP status ", http_code);
      return http_code == 404 || http_code == 410 ? absl::NotFoundError(message)
                                                  : absl::UnavailableError(message);
    }
    case CURLE_OPERATION_TIMEDOUT:
      return absl::DeadlineExceededError(
          absl::StrCat("timed out after ", absl::FormatDuration(timeout), " (", detail, ")"));
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::InvalidArgumentError(detail);
    default:
      return absl::UnavailableError(detail);
  }
}

// A temporary file that is removed unless Commit() renames it into place.
class TempFile {
 public:
  static absl::StatusOr<TempFile> Create(const std::string& dir, const std::string& prefix) {
    std::string path = absl::StrCat(dir, "/", prefix, "XXXXXX");
    const int fd = mkostemp(path.data(), O_CLOEXEC);
    if (fd < 0) {
      return ErrnoError(errno, absl::StrCat("creating a temporary file in '", dir, "'"));
    }
    return TempFile(std::move(path), fd);
  }

  TempFile(TempFile&& other) noexcept
      : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {
    other.path_.clear();
  }
  TempFile& operator=(TempFile&&) = delete;
  ~TempFile() {
    CloseFd();
    if (!path_.empty()) {
      unlink(path_.c_str());
    }
  }

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  absl::StatusOr<uint64_t> Size() const {
    struct stat st {};
    if (fstat(fd_, &st) != 0) {
      return ErrnoError(errno, absl::StrCat("stat of '", path_, "'"));
    }
    return static_cast<uint64_t>(st.st_size);
  }

  // Closes the file with `mode` and renames it to `target`.
  absl::Status Commit(const std::string& target, mode_t mode) {
    if (fchmod(fd_, mode) != 0) {
      return ErrnoError(errno, absl::StrCat("chmod of '", path_, "'"));
    }
    if (!CloseFd()) {
      return ErrnoError(errno, absl::StrCat("closing '", path_, "'"));
    }
    if (rename(path_.c_str(), target.c_str()) != 0) {
      return ErrnoError(errno, absl::StrCat("renaming '", path_, "' to '", target, "'"));
    }
    path_.clear();
    return absl::OkStatus();
  }

  // Closes the file and hands its path over to the caller, who must remove it.
  absl::StatusOr<std::string> Release() {
    if (!CloseFd()) {
      return ErrnoError(errno, absl::StrCat("closing '", path_, "'"));
    }
    return std::exchange(path_, "");
  }

 private:
  TempFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  bool CloseFd() {
    if (fd_ < 0) {
      return true;
    }
    return close(std::exchange(fd_, -1)) == 0;
  }

  std::string path_;
  int fd_ = -1;
};

// Splits `path` into components, dropping empty and "." ones. Returns false on "..".
bool SplitRelative(const std::string& path, std::vector<std::string>& components) {
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      return false;
    }
    components.emplace_back(part);
  }
  return true;
}

// True if the symlink at `link_components` with target `target` resolves, lexically, inside
// the extraction root. Later entries cannot be written through symlinks
// (ARCHIVE_EXTRACT_SECURE_SYMLINKS), so a lexical check of each link is enough.
bool SymlinkStaysInside(const std::vector<std::string>& link_components,
                        const std::string& target) {
  if (target.empty() || target.front() == '/') {
    return false;
  }
  std::vector<std::string> resolved(link_components.begin(), link_components.end() - 1);
  for (absl::string_view part : absl::StrSplit(target, '/')) {
    if (part.empty() || part == ".") {
      continue;
    }
    if (part == "..") {
      if (resolved.empty()) {
        return false;
      }
      resolved.pop_back();
    } else {
      resolved.emplace_back(part);
    }
  }
  return true;
}

using ArchivePtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;

absl::Status CopyArchiveData(struct archive* in, struct archive* out) {
  const void* block = nullptr;
  size_t size = 0;
  la_int64_t offset = 0;
  while (true) {
    const int r = archive_read_data_block(in, &block, &size, &offset);
    if (r == ARCHIVE_EOF) {
      return absl::OkStatus();
    }
    if (r < ARCHIVE_WARN) {
      return absl::InvalidArgumentError(archive_error_string(in));
    }
    if (archive_write_data_block(out, block, size, offset) < ARCHIVE_WARN) {
      return absl::InternalError(archive_error_string(out));
    }
  }
}

// Unpacks `archive_path` into `root` (a canonical directory path). Refuses (InvalidArgument)
// absolute entries, entries with "..", hard links leaving the tree and symlinks pointing outside
// it; entries before the refused one stay. Appends each top-level name it writes to `created`.
//
// Entry paths are rewritten to `root`/<entry> instead of chdir()ing into `root`, because the
// working directory is process-wide and fetches run on several threads. That is why
// ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS cannot be set: absolute entries are refused here,
// before the rewrite.
absl::Status ExtractArchive(const std::string& archive_path, const std::string& root,
                            std::set<std::string>& created) {
  ArchivePtr in(archive_read_new(), archive_read_free);
  archive_read_support_filter_gzip(in.get());
  archive_read_support_filter_bzip2(in.get());
  archive_read_support_filter_xz(in.get());
  archive_read_support_format_tar(in.get());
  archive_read_support_format_zip(in.get());
  if (archive_read_open_filename(in.get(), archive_path.c_str(), kCopyBufferSize) != ARCHIVE_OK) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open archive '", archive_path, "': ", archive_error_string(in.get())));
  }
  ArchivePtr out(archive_write_disk_new(), archive_write_free);
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS);

  while (true) {
    struct archive_entry* entry = nullptr;
    const int r = archive_read_next_header(in.get(), &entry);
    if (r == ARCHIVE_EOF) {
      break;
    }
    if (r < ARCHIVE_WARN) {
      return absl::InvalidArgumentError(
          absl::StrCat("reading archive '", archive_path, "': ", archive_error_string(in.get())));
    }
    const char* raw_name = archive_entry_pathname(entry);
    const std::string name = raw_name == nullptr ? "" : raw_name;
    auto refuse = [&](const std::string& why) {
      return absl::InvalidArgumentError(
          absl::StrCat("archive '", archive_path, "' entry '", name, "' ", why));
    };
    std::vector<std::string> components;
    if (!name.empty() && name.front() == '/') {
      return refuse("is an absolute path");
    }
    if (!SplitRelative(name, components)) {
      return refuse("contains '..'");
    }
    if (components.empty()) {
      continue;  // "." or "./": the root itself.
    }
    if (const char* hardlink = archive_entry_hardlink(entry); hardlink != nullptr) {
      std::vector<std::string> target;
      if (hardlink[0] == '/' || !SplitRelative(hardlink, target) || target.empty()) {
        return refuse(absl::StrCat("is a hard link to '", hardlink, "' outside the sandbox"));
      }
      archive_entry_set_hardlink(entry,
                                 absl::StrCat(root, "/", absl::StrJoin(target, "/")).c_str());
    }
    if (const char* symlink = archive_entry_symlink(entry); symlink != nullptr) {
      if (!SymlinkStaysInside(components, symlink)) {
        return refuse(absl::StrCat("is a symlink to '", symlink, "' outside the sandbox"));
      }
    }
    archive_entry_set_pathname(entry,
                               absl::StrCat(root, "/", absl::StrJoin(components, "/")).c_str());
    created.insert(components.front());
    const int written = archive_write_header(out.get(), entry);
    if (written < ARCHIVE_WARN) {
      return refuse(absl::StrCat("cannot be extracted: ", archive_error_string(out.get())));
    }
    if (archive_entry_size(entry) > 0) {
      absl::Status copied = CopyArchiveData(in.get(), out.get());
      if (!copied.ok()) {
        return refuse(absl::StrCat("cannot be extracted: ", copied.message()));
      }
    }
    if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN) {
      return refuse(absl::StrCat("cannot be extracted: ", archive_error_string(out.get())));
    }
  }
  if (archive_write_close(out.get()) < ARCHIVE_WARN) {
    return absl::InternalError(absl::StrCat("finishing the extraction of '", archive_path,
                                            "': ", archive_error_string(out.get())));
  }
  return absl::OkStatus();
}

// Changes the owner of `path` and, for a directory, of everything below it, never following
// symlinks.
absl::Status ChownTree(const std::string& path, uid_t uid, gid_t gid) {
  if (lchown(path.c_str(), uid, gid) != 0) {
    return ErrnoError(errno, absl::StrCat("chown of '", path, "'"));
  }
  std::error_code error;
  if (!std::filesystem::is_directory(std::filesystem::symlink_status(path, error))) {
    return absl::OkStatus();
  }
  for (auto it = std::filesystem::recursive_directory_iterator(path, error);
       !error && it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
    if (lchown(it->path().c_str(), uid, gid) != 0) {
      return ErrnoError(errno, absl::StrCat("chown of '", it->path().string(), "'"));
    }
  }
  if (error) {
    return absl::InternalError(absl::StrCat("walking '", path, "': ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace

Fetcher::Fetcher(FetcherOptions options) : options_(std::move(options)) { RebuildCacheIndex(); }

void Fetcher::RebuildCacheIndex() {
  absl::MutexLock lock(&mu_);
  if (options_.cache_dir.empty()) {
    cache_status_ = absl::FailedPreconditionError("the fetcher has no cache directory");
    return;
  }
  std::error_code error;
  std::filesystem::create_directories(options_.cache_dir, error);
  if (error) {
    cache_status_ = absl::InternalError(absl::StrCat("cannot create cache directory '",
                                                     options_.cache_dir, "': ", error.message()));
    LOG(ERROR) << cache_status_;
    return;
  }
  struct Found {
    std::string key;
    std::filesystem::file_time_type mtime;
    uint64_t size;
  };
  std::vector<Found> found;
  std::vector<std::filesystem::path> stray;
  for (auto it = std::filesystem::directory_iterator(options_.cache_dir, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (name.find(kTempMarker) != std::string::npos) {
      stray.push_back(it->path());  // An interrupted download or metadata write.
      continue;
    }
    if (absl::EndsWith(name, kUriSuffix)) {
      continue;  // Looked at with its data file below.
    }
    std::error_code stat_error;
    const uint64_t size = it->file_size(stat_error);
    const auto mtime = it->last_write_time(stat_error);
    if (!IsCacheKey(name) || stat_error || !it->is_regular_file()) {
      stray.push_back(it->path());
      continue;
    }
    found.push_back({name, mtime, size});
  }
  if (error) {
    LOG(ERROR) << "listing cache directory '" << options_.cache_dir << "': " << error.message();
  }
  // Oldest first, so that the recency order survives a restart.
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime < b.mtime; });
  absl::flat_hash_map<std::string, bool> has_data;
  for (const Found& f : found) {
    const std::string data_path = absl::StrCat(options_.cache_dir, "/", f.key);
    std::ifstream meta(absl::StrCat(data_path, kUriSuffix), std::ios::binary);
    std::stringstream uri;
    uri << meta.rdbuf();
    if (!meta || CacheKey(uri.str()) != f.key) {
      stray.push_back(data_path);
      continue;
    }
    auto entry = std::make_shared<CacheEntry>();
    entry->key = f.key;
    entry->uri = uri.str();
    entry->path = data_path;
    entry->state = CacheEntry::State::kReady;
    entry->size = f.size;
    entry->last_use = ++use_clock_;
    entries_[f.key] = entry;
    stats_.bytes += f.size;
    ++stats_.entries;
  }
  // `.uri` files whose data file is gone.
  for (auto it = std::filesystem::directory_iterator(options_.cache_dir, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    const std::string name = it->path().filename().string();
    if (absl::EndsWith(name, kUriSuffix) && name.find(kTempMarker) == std::string::npos &&
        !entries_.contains(name.substr(0, name.size() - strlen(kUriSuffix)))) {
      stray.push_back(it->path());
    }
  }
  for (const std::filesystem::path& path : stray) {
    std::error_code remove_error;
    std::filesystem::remove(path, remove_error);
    if (remove_error) {
      LOG(WARNING) << "removing stray cache file '" << path.string()
                   << "': " << remove_error.message();
    }
  }
  LOG(INFO) << "fetcher cache '" << options_.cache_dir << "': " << stats_.entries << " entries, "
            << stats_.bytes << " bytes";
  EvictLocked();
}

absl::Status Fetcher::FetchAll(const Uris& uris, const std::string& sandbox,
                               std::optional<std::pair<uid_t, gid_t>> owner) {
  // Extraction needs a path free of symlinks (see ExtractArchive).
  std::unique_ptr<char, void (*)(void*)> real(realpath(sandbox.c_str(), nullptr), free);
  if (real == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("sandbox '", sandbox, "'"));
  }
  const std::string root = real.get();
  std::vector<std::string> created;
  for (const rz::v1::CommandInfo::URI& uri : uris) {
    RZ_RETURN_IF_ERROR(FetchOne(uri, root, created));
  }
  if (owner.has_value()) {
    for (const std::string& name : created) {
      RZ_RETURN_IF_ERROR(ChownTree(absl::StrCat(root, "/", name), owner->first, owner->second));
    }
  }
  return absl::OkStatus();
}

absl::Status Fetcher::FetchOne(const rz::v1::CommandInfo::URI& uri, const std::string& sandbox,
                               std::vector<std::string>& created) {
  const std::string& value = uri.value();
  RZ_ASSIGN_OR_RETURN(const ParsedUri parsed, ParseUri(value));
  std::string name = uri.output_file();
  if (name.empty()) {
    name = parsed.path.substr(parsed.path.find_last_of('/') + 1);
  }
  RZ_RETURN_IF_ERROR(ValidateOutputName(name, value));

  absl::StatusOr<TempFile> temp = TempFile::Create(sandbox, kSandboxTempPrefix);
  if (!temp.ok()) {
    return Annotate(temp.status(), value);
  }
  absl::Status status =
      uri.cache() ? FetchThroughCache(value, temp->fd()) : Download(value, temp->fd());
  const std::string target = absl::StrCat(sandbox, "/", name);
  if (status.ok()) {
    status = temp->Commit(target, uri.executable() ? 0755 : 0644);
  }
  if (!status.ok()) {
    return Annotate(status, value);
  }
  created.push_back(name);
  if (uri.extract() && IsArchiveName(name)) {
    std::set<std::string> extracted;
    status = ExtractArchive(target, sandbox, extracted);
    created.insert(created.end(), extracted.begin(), extracted.end());
    if (!status.ok()) {
      return Annotate(status, value);
    }
  }
  return absl::OkStatus();
}

absl::Status Fetcher::Download(const std::string& uri, int fd) {
  RZ_ASSIGN_OR_RETURN(const ParsedUri parsed, ParseUri(uri));
  if (parsed.scheme == Scheme::kFile) {
    return CopyFileToFd(parsed.path, fd, options_.max_download_bytes);
  }
  return HttpGet(uri, fd, options_.timeout, options_.max_download_bytes);
}

absl::Status Fetcher::FetchThroughCache(const std::string& uri, int fd) {
  const std::string key = CacheKey(uri);
  std::shared_ptr<CacheEntry> entry;
  bool download = false;
  bool bypass = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(key);
    if (!cache_status_.ok()) {
      // A broken cache directory must not fail tasks; it was logged at construction.
      bypass = true;
    } else if (it != entries_.end() && it->second->uri != uri) {
      // Another URI owns this hash; this one goes around the cache.
      LOG(WARNING) << "fetcher cache: '" << Redacted(uri) << "' collides with '"
                   << Redacted(it->second->uri) << "'";
      ++stats_.misses;
      bypass = true;
    } else if (it != entries_.end()) {
      entry = it->second;
      ++stats_.hits;
    } else {
      entry = std::make_shared<CacheEntry>();
      entry->key = key;
      entry->uri = uri;
      entry->path = absl::StrCat(options_.cache_dir, "/", key);
      entries_[key] = entry;
      ++stats_.misses;
      download = true;
    }
    if (!bypass) {
      ++entry->users;
    }
  }

  if (bypass) {
    return Download(uri, fd);
  }
  if (download) {
    absl::StatusOr<std::string> downloaded;
    absl::StatusOr<TempFile> temp =
        TempFile::Create(options_.cache_dir, absl::StrCat(key, kTempMarker));
    absl::Status status = temp.status();
    uint64_t size = 0;
    if (status.ok()) {
      status = Download(uri, temp->fd());
    }
    if (status.ok()) {
      absl::StatusOr<uint64_t> temp_size = temp->Size();
      status = temp_size.status();
      size = temp_size.value_or(0);
    }
    if (status.ok()) {
      downloaded = temp->Release();
      status = downloaded.status();
    }

    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      entry->state = CacheEntry::State::kFailed;
      entry->error = status;
      entries_.erase(key);
      --entry->users;
      return status;
    }
    ++stats_.downloads;
    entry->size = size;
    entry->last_use = ++use_clock_;
    absl::Status stored;
    if (size > options_.cache_max_bytes) {
      stored = absl::ResourceExhaustedError("bigger than the whole cache");
    } else {
      // Metadata first: a crash in between leaves an orphan `.uri` file, removed on restart.
      stored = WriteFileAtomically(absl::StrCat(entry->path, kUriSuffix), uri);
      if (stored.ok() && rename(downloaded->c_str(), entry->path.c_str()) != 0) {
        stored = ErrnoError(errno, absl::StrCat("renaming into '", entry->path, "'"));
        unlink(absl::StrCat(entry->path, kUriSuffix).c_str());
      }
    }
    if (stored.ok()) {
      stats_.bytes += size;
      ++stats_.entries;
      EvictLocked();
    } else {
      // Serve this download to everyone waiting for it, then drop it.
      VLOG(1) << "not caching '" << Redacted(uri) << "' (" << size << " bytes): " << stored;
      entry->cached = false;
      entry->path = *downloaded;
      entries_.erase(key);
    }
    entry->state = CacheEntry::State::kReady;
  } else {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](CacheEntry* e) { return e->state != CacheEntry::State::kDownloading; }, entry.get()));
    if (entry->state == CacheEntry::State::kFailed) {
      --entry->users;
      return entry->error;
    }
    entry->last_use = ++use_clock_;
  }

  // The entry is in use, so eviction leaves its file alone while it is copied.
  absl::Status copied = CopyFileToFd(entry->path, fd, /*limit=*/0);
  if (copied.ok() && entry->cached) {
    // Recency survives a restart through the mtime.
    utimensat(AT_FDCWD, entry->path.c_str(), nullptr, 0);
  }
  absl::MutexLock lock(&mu_);
  if (--entry->users == 0) {
    if (entry->cached) {
      EvictLocked();  // It may have been skipped while in use.
    } else {
      unlink(entry->path.c_str());
    }
  }
  if (!copied.ok()) {
    return absl::Status(copied.code(), absl::StrCat("copying from the cache: ", copied.message()));
  }
  return absl::OkStatus();
}

void Fetcher::EvictLocked() {
  while (stats_.bytes > options_.cache_max_bytes) {
    std::shared_ptr<CacheEntry> victim;
    for (const auto& [key, entry] : entries_) {
      if (entry->state == CacheEntry::State::kReady && entry->users == 0 &&
          (victim == nullptr || entry->last_use < victim->last_use)) {
        victim = entry;
      }
    }
    if (victim == nullptr) {
      return;  // Everything left is in use; the next release tries again.
    }
    VLOG(1) << "evicting '" << Redacted(victim->uri) << "' (" << victim->size
            << " bytes) from the cache";
    RemoveEntryFilesLocked(*victim);
    stats_.bytes -= victim->size;
    --stats_.entries;
    ++stats_.evictions;
    entries_.erase(victim->key);
  }
}

// Under `mu_` so that a new download of the same URI cannot be renamed into place first.
void Fetcher::RemoveEntryFilesLocked(const CacheEntry& entry) {
  for (const std::string& path : {entry.path, absl::StrCat(entry.path, kUriSuffix)}) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      PLOG(WARNING) << "removing cache file '" << path << "'";
    }
  }
}

CacheStats Fetcher::cache_stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace rz::agent
