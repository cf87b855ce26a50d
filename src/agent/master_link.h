// MasterLink: the agent's end of the AgentLink.Connect stream. It dials the master, keeps one
// stream open, redials with exponential backoff (initial_backoff doubling to max_backoff; back to
// initial_backoff once a stream has delivered a message) when the stream breaks, and hands
// everything the master sends to the agent's event loop.
//
// A reader thread owns dialing and reading; a writer thread drains a bounded outbox, one write in
// flight. Each new stream starts with an empty outbox, and the link enforces the protocol's first
// rule: the first message written on a stream is a Register, exactly once; anything the agent
// sends before it is dropped (see MasterConnection). A full outbox means the master does not
// read: the stream is cancelled and redialed, never allowed to grow memory without bound.
//
// Thread rule: Send() is thread-safe. Start()/Stop() are called by the owner. Handlers run on
// the event loop, in the order the link saw the events: on_connected for a stream, its
// messages, then on_disconnected, before the next stream's on_connected.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/master_connection.h"
#include "common/event_loop.h"
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
    std::string master_address;  // host:port of the master's gRPC server.
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

  MasterLink(Options options, EventLoop& loop);
  ~MasterLink() override;  // Stop()s.

  MasterLink(const MasterLink&) = delete;
  MasterLink& operator=(const MasterLink&) = delete;

  // Starts dialing. REQUIRES: not started.
  void Start(Handlers handlers);

  // Cancels the stream and joins the threads. Events already posted may still run on the loop.
  // Idempotent.
  void Stop();

  void Send(rz::v1::AgentMessage message) override;

 private:
  void ReadLoop();
  void WriteLoop();

  const Options options_;
  EventLoop& loop_;
  std::shared_ptr<const Handlers> handlers_;  // Set by Start(); shared with posted closures.

  absl::Mutex mu_;
  absl::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
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
