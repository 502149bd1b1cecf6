#!/bin/sh
# Runs ffmpeg so that it dies with the recorder: ffmpeg ignores SIGPIPE, so a recorder killed with
# SIGKILL would otherwise leave an orphan ffmpeg writing segments nobody collects.
if command -v setpriv >/dev/null 2>&1; then
  exec setpriv --pdeathsig KILL -- "${GRASSROOTS_FFMPEG:-ffmpeg}" "$@"
fi
exec "${GRASSROOTS_FFMPEG:-ffmpeg}" "$@"
