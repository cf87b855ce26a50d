// The rechenzentrum release every binary reports (/version, MasterInfo, AgentInfo).
#pragma once

namespace rz {

inline constexpr char kVersion[] = "0.4.0";

}  // namespace rz
