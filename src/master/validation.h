// Validation and conversions shared by the master's source files.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "master/outbox.h"
#include "rz/v1/common.pb.h"
#include "rz/v1/scheduler.pb.h"

namespace rz::master {

// Whether `role` is "*" or a path of segments of [A-Za-z0-9_.-] (not "." or "..").
bool IsValidRole(const std::string& role);
// InvalidArgument naming the first problem of a scheduler-supplied FrameworkInfo.
absl::Status ValidateFrameworkInfo(const v1::FrameworkInfo& info);
// How long to filter resources a scheduler declined or left unused.
absl::Duration RefuseFor(const v1::Filters& filters, absl::Duration fallback);
// Refuses a SUBSCRIBE: logs why, sends ERROR with the status message and closes the stream.
void RefuseSubscription(const v1::FrameworkInfo& info, Outbox<v1::Event>& outbox,
                        const absl::Status& status);

}  // namespace rz::master
