// Outbox: how the master's loop sends to one long-lived stream (a scheduler's event stream or an
// agent's link) without touching the transport. The loop keeps a shared_ptr to an Outbox and
// refers to the stream by id; the gRPC reactor behind it owns the bounded queue.
//
// QueuedWriter: the write side shared by both reactor kinds. One write in flight; a consumer
// that falls `max_queued` messages behind is disconnected (ResourceExhausted) instead of
// growing memory without bound. Close() sends what is queued, then finishes the RPC.
//
// Thread rule: Send/Close are thread-safe and never block; the reactor calls HandleWriteDone /
// HandleCancel from gRPC threads. gRPC calls (StartWrite, Finish) are made outside the lock
// because gRPC may run reactions inline.
#pragma once

#include <cstddef>
#include <deque>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_convert.h"
#include "grpcpp/support/status.h"

namespace rz::master {

template <typename T>
class Outbox {
 public:
  virtual ~Outbox() = default;
  // Queues `message`; dropped silently once the stream is closing.
  virtual void Send(T message) = 0;
  // Flushes what is queued, then ends the stream with `status`. Idempotent.
  virtual void Close(absl::Status status) = 0;
};

template <typename T>
class QueuedWriter : public Outbox<T> {
 public:
  explicit QueuedWriter(size_t max_queued) : max_queued_(max_queued) {}

  void Send(T message) override {
    const T* to_write = nullptr;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (closing_) {
        return;
      }
      if (queue_.size() >= max_queued_) {
        closing_ = true;
        DropQueuedLocked();
        status_ = ToGrpcStatus(absl::ResourceExhaustedError(absl::StrCat(
            "stream fell ", max_queued_, " messages behind; disconnecting a slow consumer")));
        if (!writing_) {
          finish = TakeFinishLocked(&status);
        }
      } else {
        queue_.push_back(std::move(message));
        if (!writing_) {
          writing_ = true;
          to_write = &queue_.front();
        }
      }
    }
    if (to_write != nullptr) {
      StartWriteOf(to_write);
    }
    if (finish) {
      FinishWith(std::move(status));
    }
  }

  void Close(absl::Status status) override {
    bool finish = false;
    grpc::Status grpc_status;
    {
      absl::MutexLock lock(&mu_);
      if (closing_) {
        return;
      }
      closing_ = true;
      status_ = ToGrpcStatus(status);
      if (!writing_) {
        finish = TakeFinishLocked(&grpc_status);
      }
    }
    if (finish) {
      FinishWith(std::move(grpc_status));
    }
  }

 protected:
  virtual void StartWriteOf(const T* message) = 0;
  virtual void FinishWith(grpc::Status status) = 0;

  void HandleWriteDone(bool ok) {
    const T* to_write = nullptr;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!queue_.empty()) {
        queue_.pop_front();  // The element just written.
      }
      if (!ok) {
        // The peer is gone; nothing more can be written.
        if (!closing_) {
          closing_ = true;
          status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream broken");
        }
        queue_.clear();
      }
      if (!queue_.empty()) {
        writing_ = true;
        to_write = &queue_.front();
      } else if (closing_) {
        finish = TakeFinishLocked(&status);
      }
    }
    if (to_write != nullptr) {
      StartWriteOf(to_write);
    }
    if (finish) {
      FinishWith(std::move(status));
    }
  }

  void HandleCancel() {
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (!closing_) {
        closing_ = true;
        status_ = grpc::Status::CANCELLED;
      }
      DropQueuedLocked();
      if (!writing_) {
        finish = TakeFinishLocked(&status);
      }
    }
    if (finish) {
      FinishWith(std::move(status));
    }
  }

 private:
  // Drops queued messages but keeps the one being written alive until HandleWriteDone.
  void DropQueuedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    while (queue_.size() > (writing_ ? 1u : 0u)) {
      queue_.pop_back();
    }
  }

  bool TakeFinishLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) {
      return false;
    }
    finished_ = true;
    *status = status_;
    return true;
  }

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<T> queue_ ABSL_GUARDED_BY(mu_);  // front() is in flight while writing_.
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace rz::master
