// MasterLink: the agent's end of the AgentLink.Connect stream. It follows the leading master
// named by a MasterDetector, keeps one stream open to it, redials with exponential backoff
// (initial_backoff doubling to max_backoff; back to initial_backoff once a stream has delivered
// a message, or when the leader changes) when the stream breaks, and hands everything the
// master sends to the agent's event loop.
//
// Following the leader: when the detector names another master, the open stream is cancelled
// and the link dials the new one at once (the agent then reregisters there with its tasks, as
// after any broken stream). While no leader is known it does not dial. A master that refuses
// the stream with UNAVAILABLE and the `rz-leader` hint has the hint passed to the detector
// (ReportLeaderHint), which switches to it (the static detector asks it first).
//
// A reader thread owns dialing and reading; a writer thread drains a bounded outbox, one write in
// flight. Each new stream starts with an empty outbox, and the link enforces the protocol's first
// rule: the first message written on a stream is a Register, exactly once; anything the agent
// sends before it is dropped (see MasterConnection). A full outbox means the master does not
// read: the stream is cancelled and redialed, never allowed to grow memory without bound.
//
// Thread rule: Send() and master_address() are thread-safe. Start()/Stop() are called by the
// owner. Handlers run on the event loop, in the order the link saw the events: on_connected for
// a stream, its messages, then on_disconnected, before the next stream's on_connected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/master_connection.h"
#include "common/event_loop.h"
#include "common/master_detector.h"
#include "rz/v1/agent.pb.h"

namespace grpc {
class ClientContext;
template <class W, class R>
class ClientReaderWriter;
}  // namespace grpc

namespace rz::agent {

class MasterLink final : public MasterConnection {
 public:
  struct Options {
    // host:port of the master's gRPC server, used when no detector is given (a
    // StaticMasterDetector of this one address: it is the leader, or names the leader).
    std::string master_address;
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(10);
    size_t max_queued_messages = 10000;
  };

  // Run on the event loop the link was given.
  struct Handlers {
    std::function<void()> on_connected;  // A new stream is open: send Register now.
    std::function<void(rz::v1::MasterMessage)> on_message;
    std::function<void()> on_disconnected;
  };

  // Follows `detector` (owned; started by Start()), or Options::master_address if it is null.
  MasterLink(Options options, EventLoop& loop, std::unique_ptr<MasterDetector> detector = nullptr);
  ~MasterLink() override;  // Stop()s.

  MasterLink(const MasterLink&) = delete;
  MasterLink& operator=(const MasterLink&) = delete;

  // Starts dialing. REQUIRES: not started.
  void Start(Handlers handlers);

  // Cancels the stream, joins the threads and stops the detector. Events already posted may
  // still run on the loop. Idempotent.
  void Stop();

  void Send(rz::v1::AgentMessage message) override;

  // The master the link dials or last dialed: host:port; empty before any leader was known.
  std::string master_address() const;

 private:
  // Called by the detector on its thread: records the leader and drops a stream to another.
  void OnLeader(std::optional<v1::MasterInfo> leader);
  void ReadLoop();
  void WriteLoop();

  const Options options_;
  EventLoop& loop_;
  std::unique_ptr<MasterDetector> detector_;  // Reset by Stop(), after the threads are joined.
  std::shared_ptr<const Handlers> handlers_;  // Set by Start(); shared with posted closures.

  mutable absl::Mutex mu_;
  absl::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::string leader_ ABSL_GUARDED_BY(mu_);  // The detector's leader; empty: none known.
  uint64_t leader_changes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string dialed_ ABSL_GUARDED_BY(mu_);  // The master of the current or last stream.
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;  // The open call, if any.
  using Stream = grpc::ClientReaderWriter<rz::v1::AgentMessage, rz::v1::MasterMessage>;

  // The open stream; nullptr between streams.
  Stream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool register_written_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;  // A Write() on stream_ is in progress.
  std::deque<rz::v1::AgentMessage> outbox_ ABSL_GUARDED_BY(mu_);

  std::thread reader_;
  std::thread writer_;
};

}  // namespace rz::agent
