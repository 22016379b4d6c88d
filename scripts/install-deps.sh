#!/usr/bin/env bash
# Installs what Fathom needs from Debian 12's packages. Idempotent and non-interactive.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libopenblas-dev zlib1g-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libhnswlib-dev libfaiss-dev libnanoflann-dev libflann-dev liblz4-dev python3-sklearn
  dataset-fashion-mnist python3-matplotlib
  nats-server libnats-dev
  librocksdb-dev nlohmann-json3-dev libsimdjson-dev libcli11-dev libspdlog-dev libroaring-dev libabsl-dev
  libcpp-httplib-dev libarchive-dev python3 curl
  clang libclang-rt-14-dev
  python3-dev pybind11-dev python3-numpy python3-setuptools python3-venv python3-pip
  python3-pytest python3-torch python3-faiss mypy
  chromium
)
# Node.js and npm (Qdrant's JavaScript client in the tests): Debian's, unless a node and npm are
# already on PATH (e.g. from NodeSource, whose nodejs conflicts with Debian's npm package).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then PACKAGES+=(nodejs npm); fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "fathom: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
