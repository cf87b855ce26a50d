// Fetcher puts a task's URIs (CommandInfo.uris) into its sandbox before the task starts:
// file:///absolute/path (or a bare absolute path), http:// and https://. Each URI lands under
// its output name (CommandInfo.URI.output_file, by default the last path component of the URI
// without query or fragment) through a temporary file and a rename, so a failed fetch never
// leaves a partial file. Archives can be unpacked in place, files made executable.
//
// URIs with `cache` set go through a local cache in `cache_dir`: one data file per URI, named
// after a stable 64-bit hash of the URI string, with a `<hash>.uri` file next to it holding the
// URI. A URI is downloaded once however many tasks ask for it at the same time: the first one
// downloads, the others wait for it, then each copies the cached file into its sandbox. A
// failed download fails every waiter with the same error and leaves nothing in the cache. The
// cache is bounded by `cache_max_bytes`: after each insert the least recently used entries that
// nobody is copying are evicted until the total fits; a file bigger than the whole cache is
// handed to its sandboxes without being cached. On construction the index is rebuilt from
// `cache_dir` (recency from the files' mtimes) and leftover temporary files are removed.
//
// Thread rule: thread-safe. FetchAll() blocks on the network and the disk; the agent calls it
// from its worker pool, never from the event loop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "rz/v1/common.pb.h"

namespace rz::agent {

struct FetcherOptions {
  // Where cached downloads live. Created if missing. Only used by URIs with `cache` set.
  std::string cache_dir;
  uint64_t cache_max_bytes = uint64_t{2} << 30;
  // Bound on one URI's whole transfer (connecting included).
  absl::Duration timeout = absl::Minutes(5);
  // Largest file one URI may produce; 0 means unlimited.
  uint64_t max_download_bytes = 0;
};

struct CacheStats {
  uint64_t hits = 0;       // Fetches served by an entry that was cached or being downloaded.
  uint64_t misses = 0;     // Fetches that had to start a download.
  uint64_t downloads = 0;  // Downloads for the cache that succeeded.
  uint64_t evictions = 0;  // Entries evicted to respect `cache_max_bytes`.
  uint64_t bytes = 0;      // Bytes of the entries now cached.
  uint64_t entries = 0;    // Entries now cached.
};

class Fetcher {
 public:
  using Uris = google::protobuf::RepeatedPtrField<rz::v1::CommandInfo::URI>;

  // Rebuilds the cache index from `options.cache_dir` (if set), removing leftover temporary and
  // orphaned files, and evicts down to `cache_max_bytes`. Without a usable cache directory
  // (empty `cache_dir`, or one that cannot be created; logged) URIs with `cache` set are
  // fetched directly.
  explicit Fetcher(FetcherOptions options);

  Fetcher(const Fetcher&) = delete;
  Fetcher& operator=(const Fetcher&) = delete;

  // Fetches every URI of `uris` into `sandbox`, in order, stopping at the first failure; then,
  // if `owner` is given, changes the owner of everything it created (recursively for extracted
  // trees) to `owner`.
  //
  // Errors name the URI and the cause: InvalidArgument for a malformed URI, an unsupported
  // scheme or an unsafe output name (or archive entry); NotFound for a missing file or HTTP
  // 404; Unavailable for other HTTP errors (>= 400) and network failures; DeadlineExceeded when
  // `timeout` passes; ResourceExhausted beyond `max_download_bytes`; Internal for local I/O.
  // Files fetched before a failure stay in the sandbox.
  // REQUIRES: `sandbox` is an existing directory.
  absl::Status FetchAll(const Uris& uris, const std::string& sandbox,
                        std::optional<std::pair<uid_t, gid_t>> owner = std::nullopt);

  CacheStats cache_stats() const;

 private:
  struct CacheEntry;

  // Fetches one URI; appends the sandbox-relative names it created to `created`.
  absl::Status FetchOne(const rz::v1::CommandInfo::URI& uri, const std::string& sandbox,
                        std::vector<std::string>& created);
  // Writes the file `uri` names into the open, empty file `fd`, through the cache.
  absl::Status FetchThroughCache(const std::string& uri, int fd);
  // Downloads (or copies) `uri` into the already open, empty file `fd`.
  absl::Status Download(const std::string& uri, int fd);

  // Drops cache entries, least recently used first, until the total fits.
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveEntryFilesLocked(const CacheEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebuildCacheIndex();

  const FetcherOptions options_;

  mutable absl::Mutex mu_;
  // Entries by URI: ready ones and those being downloaded (failed ones are erased at once).
  absl::flat_hash_map<std::string, std::shared_ptr<CacheEntry>> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t use_clock_ ABSL_GUARDED_BY(mu_) = 0;
  CacheStats stats_ ABSL_GUARDED_BY(mu_);
  // Not OK when `cache_dir` is empty or unusable; cached fetches then bypass the cache.
  absl::Status cache_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::agent
