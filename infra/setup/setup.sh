#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian 12 machine: system packages, the mediasoup worker (built
# offline from the npm package's source, cached outside the repo), and the npm dependencies.
# Safe to run before every start and test: each step is skipped when already done.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }

sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then sudo_cmd=(sudo); fi

packages=(
  # mediasoup worker build (infra/mediasoup/build-worker.sh)
  build-essential pkg-config python3 meson ninja-build patch
  libssl-dev libuv1-dev libsrtp2-dev libusrsctp-dev libabsl-dev libflatbuffers-dev flatbuffers-compiler
  # media tools, browser for tests, CJK fonts so Chinese pages render in screenshots
  ffmpeg chromium fonts-noto-cjk fonts-noto-color-emoji
  # network namespaces for cascade tests, procps for process control
  iproute2 procps
  # systemd-analyze verifies the deployment's units (tests/infra/deploy-config.test.ts)
  systemd
  # pseudo-terminal pairs for the simulated Beidou terminal (scheduler tests)
  socat
  # Janus (VideoRoom rtp_forward) compared beside mediasoup in tests/bench/sfu-forwarding.ts
  janus
  # Debian RTSP servers the camera tests pull from (tests/support/debian-rtsp.ts)
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  # TURN relay for pages behind NAT/firewalls that drop UDP (infra/turn/)
  coturn
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

worker_bin="$(bash infra/mediasoup/build-worker.sh)"
export MEDIASOUP_WORKER_BIN="$worker_bin"

# npm dependencies: reinstall only when the lockfile changed since the last install.
stamp="node_modules/.setup-lock-hash"
lock_hash="$(sha256sum package-lock.json | cut -c1-64)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$lock_hash" ]]; then
  log "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund >&2
  echo "$lock_hash" > "$stamp"
fi

# mediasoup finds its worker here when MEDIASOUP_WORKER_BIN is not set at run time.
dest="node_modules/mediasoup/worker/out/Release/mediasoup-worker"
if [[ "$(readlink -f "$dest" 2>/dev/null)" != "$(readlink -f "$worker_bin")" ]]; then
  mkdir -p "$(dirname "$dest")"
  ln -sf "$worker_bin" "$dest"
fi

# The Svelte front end, rebuilt when its sources are newer than the bundle.
if [[ ! -f web/dist/index.html ]] || [[ -n "$(find web/src web/index.html web/vite.config.ts -newer web/dist/index.html 2>/dev/null | head -1)" ]]; then
  log "building web front end"
  npx vite build --config web/vite.config.ts --logLevel warn >&2
fi
log "ready (worker: $worker_bin)"
