#!/usr/bin/env bash
# Installs the Debian 12 packages wanrt builds and tests with. Idempotent; needs root (or sudo).
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git python3
  clang libclang-rt-14-dev            # libFuzzer targets
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  libopenblas-dev                     # the CPU reference backend's matmuls
  libsentencepiece-dev                # the umT5 tokenizer
  libjpeg-dev libpng-dev              # input images, Motion-JPEG output
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev ffmpeg   # MP4 output, ffprobe in tests
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "wanrt: Debian dependencies present"
