// FakeSchedulerMaster: one fake master's Scheduler service for tests of SchedulerClient following
// the leading master (see tests/testing/fake_leadership.h).
//
// Thread rule: thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "rz/v1/scheduler.grpc.pb.h"
#include "testing/fake_leadership.h"

namespace rz::scheduler {

// One master's Scheduler service. While it leads it answers Subscribe with SUBSCRIBED
// (framework id "fw-1", stream id "<name>-stream") and streams what the test pushes; when it no
// longer leads it ends open streams as a stepping-down master does (UNAVAILABLE + hint), unless
// told to keep them (a deposed leader that has not noticed). Refuses everything while not
// leading. Records every subscription and Decline.
class FakeSchedulerMaster final : public rz::v1::Scheduler::Service {
 public:
  FakeSchedulerMaster(const rz::testing::Leadership& leadership, std::string name)
      : leadership_(leadership), name_(std::move(name)) {}

  grpc::Status Subscribe(grpc::ServerContext* context, const rz::v1::SubscribeRequest* request,
                         grpc::ServerWriter<rz::v1::Event>* writer) override {
    if (grpc::Status status = leadership_.Check(context, name_); !status.ok()) {
      return status;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      subscriptions_.push_back(*request);
      cv_.notify_all();
    }
    // Each master numbers a framework's events itself, from 1 (a new leader starts afresh).
    rz::v1::Event subscribed;
    subscribed.set_sequence(1);
    subscribed.mutable_subscribed()->set_framework_id(
        request->framework_info().id().empty() ? "fw-1" : request->framework_info().id());
    subscribed.mutable_subscribed()->set_stream_id(name_ + "-stream");
    writer->Write(subscribed);
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait_for(lock, std::chrono::milliseconds(10));
      while (!outbox_.empty()) {
        rz::v1::Event event = std::move(outbox_.front());
        outbox_.pop_front();
        writer->Write(event);
      }
      if (context->IsCancelled()) {
        return grpc::Status::CANCELLED;
      }
      if (!keep_streams_ && !leadership_.Leads(name_)) {
        return leadership_.Refuse(context, name_);
      }
    }
  }

  grpc::Status Decline(grpc::ServerContext* context, const rz::v1::DeclineRequest* request,
                       rz::v1::CallResponse*) override {
    if (grpc::Status status = leadership_.Check(context, name_); !status.ok()) {
      return status;
    }
    std::lock_guard<std::mutex> lock(mu_);
    declines_.push_back(*request);
    return grpc::Status::OK;
  }

  void Push(rz::v1::Event event) {
    std::lock_guard<std::mutex> lock(mu_);
    outbox_.push_back(std::move(event));
    cv_.notify_all();
  }

  void KeepStreamsWhenDeposed() {
    std::lock_guard<std::mutex> lock(mu_);
    keep_streams_ = true;
  }

  // Waits until `count` subscriptions were accepted; returns them all.
  std::vector<rz::v1::SubscribeRequest> WaitForSubscriptions(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return subscriptions_.size() >= count; });
    return subscriptions_;
  }

  std::vector<rz::v1::DeclineRequest> declines() {
    std::lock_guard<std::mutex> lock(mu_);
    return declines_;
  }

 private:
  const rz::testing::Leadership& leadership_;
  const std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool keep_streams_ = false;
  std::deque<rz::v1::Event> outbox_;
  std::vector<rz::v1::SubscribeRequest> subscriptions_;
  std::vector<rz::v1::DeclineRequest> declines_;
};

}  // namespace rz::scheduler
