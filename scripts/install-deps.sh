#!/usr/bin/env bash
# Installs every build and test dependency of Tessera from Debian 12's packages.
# Safe to run repeatedly; skips apt when everything is already present.
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git
  libboost-fiber-dev libboost-context-dev libboost-system-dev libboost-dev
  libfabric-dev libfabric-bin
  liburing-dev libaio-dev
  libisal-dev libsodium-dev
  libraft-dev libuv1-dev
  capnproto libcapnp-dev
  libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev
  libfuse3-dev fuse3 bindfs rsync sqlite3
  fio procps iproute2 python3 python3-prometheus-client curl
  clang libclang-rt-14-dev
  python3-dev pybind11-dev python3-numpy python3-pytest python3-torch
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
