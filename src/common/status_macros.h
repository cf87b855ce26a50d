// Early-return helpers for absl::Status and absl::StatusOr.
//
//   RZ_RETURN_IF_ERROR(DoThing());
//   RZ_ASSIGN_OR_RETURN(Foo* foo, FindFoo(id));
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RZ_STATUS_CONCAT_INNER(a, b) a##b
#define RZ_STATUS_CONCAT(a, b) RZ_STATUS_CONCAT_INNER(a, b)

#define RZ_RETURN_IF_ERROR(expr)                    \
  do {                                              \
    ::absl::Status rz_status_ = (expr);             \
    if (!rz_status_.ok()) return rz_status_;        \
  } while (false)

#define RZ_ASSIGN_OR_RETURN(lhs, expr) \
  RZ_ASSIGN_OR_RETURN_IMPL(RZ_STATUS_CONCAT(rz_statusor_, __LINE__), lhs, expr)

#define RZ_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                             \
  if (!statusor.ok()) return statusor.status();       \
  lhs = std::move(statusor).value()
