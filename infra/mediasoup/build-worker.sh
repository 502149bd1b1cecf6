#!/usr/bin/env bash
# Builds the mediasoup worker from the npm package's own source against Debian's libraries, offline.
# Prints the path of the binary on stdout (everything else goes to stderr).
# Cached outside the repo in $MEDIASOUP_WORKER_CACHE (default ~/.cache/grassroots-av/mediasoup-worker),
# keyed by mediasoup version + a hash of this script, the shim subprojects and the patches.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="${MEDIASOUP_VERSION:-3.18.1}"
cache_root="${MEDIASOUP_WORKER_CACHE:-$HOME/.cache/grassroots-av/mediasoup-worker}"

key_hash="$(cd "$here" && find build-worker.sh subprojects patches -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
out_dir="$cache_root/$version-$key_hash"
bin="$out_dir/mediasoup-worker"

log() { printf '[mediasoup-worker] %s\n' "$*" >&2; }

if [[ -x "$bin" && -s "$out_dir/OK" ]]; then
  log "cached: $bin"
  echo "$bin"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/mediasoup-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
log "building mediasoup $version worker in $work (key $key_hash)"

(cd "$work" && npm pack --silent "mediasoup@$version" >/dev/null)
tar -xzf "$work/mediasoup-$version.tgz" -C "$work"
src="$work/package"

# Patches must apply exactly: a failure here means upstream changed and the fix must be revisited.
for p in "$here"/patches/*.patch; do
  if ! patch -d "$src" -p1 --forward --batch --silent < "$p"; then
    log "FATAL: patch $(basename "$p") no longer applies to mediasoup $version"
    exit 1
  fi
done
grep -q '(operationType & BIO_CB_RETURN) != 0' "$src/worker/src/RTC/DtlsTransport.cpp" || {
  log "FATAL: DtlsTransport BIO callback patch not in effect"; exit 1; }

# Subprojects: Debian system libraries instead of downloads.
rm -f "$src"/worker/subprojects/*.wrap
cp -r "$here"/subprojects/. "$src/worker/subprojects/"

jobs="${MEDIASOUP_BUILD_JOBS:-$(nproc)}"
(
  cd "$src/worker"
  meson setup build --wrap-mode=nodownload --buildtype release -Db_ndebug=true \
    -Dms_disable_liburing=true >&2
  # The worker target does not depend on the FlatBuffers generator; upstream builds it first too.
  meson compile -C build flatbuffers-generator >&2
  ninja -C build -j "$jobs" mediasoup-worker >&2
)

mkdir -p "$out_dir"
cp "$src/worker/build/mediasoup-worker" "$bin.tmp"
strip "$bin.tmp" 2>/dev/null || true
mv "$bin.tmp" "$bin"
echo "mediasoup $version, key $key_hash, built $(date -u +%FT%TZ)" > "$out_dir/OK"
log "built: $bin ($(du -h "$bin" | cut -f1))"
echo "$bin"
