#!/usr/bin/env bash
# Installs every Debian 12 package rechenzentrum needs to build, test and run.
# Idempotent: packages already present are skipped quickly. Run as root.
set -euo pipefail

packages=(
  # build
  cmake ninja-build ccache pkg-config g++
  # libraries (DESIGN.md §3)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  libzookeeper-mt-dev libleveldb-dev libsnappy-dev libgoogle-glog-dev libgflags-dev
  libgtest-dev libgmock-dev libbenchmark-dev libcpp-httplib-dev nlohmann-json3-dev libssl-dev
  libcurl4-openssl-dev libarchive-dev prometheus-cpp-dev
  # tests and tools (zookeeper: the real ZooKeeper servers the HA tests start; Java comes with it)
  curl procps util-linux zookeeper zookeeper-bin
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  as_root=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
