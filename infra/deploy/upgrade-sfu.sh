#!/bin/bash
# Upgrades one SFU node without cutting a meeting: drain (no new rooms; open ones continue) -> wait until
# no room is open (meetings ended or sites moved) or the timeout -> stop -> run the upgrade command ->
# start -> wait until /readyz answers 200 (workers up, parent link up). Run on the node's host:
#   sudo infra/deploy/upgrade-sfu.sh --timeout 7200 -- sh -c 'cd /opt/grassroots-av && git pull && npm ci'
# Order across a county: leaf nodes (villages) first, then towns, counties; the api/city host last,
# in a quiet hour (its restart makes pages rejoin). Recorder and scheduler hosts restart at any time:
# recorders finish their open segments, the scheduler's reminders are exactly-once across restarts.
set -euo pipefail
TIMEOUT=7200
CONF=/etc/grassroots-av/sfu.env
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) TIMEOUT="$2"; shift 2 ;;
    --config) CONF="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--timeout S] [--config FILE] -- upgrade command..." >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "give the upgrade command after --" >&2; exit 2; }
get() { sed -n "s/^$1=//p" "$CONF" | tail -1; }
HOST=$(get HTTP_HOST); PORT=$(get SFU_HTTP_PORT)
BASE="http://${HOST:-127.0.0.1}:${PORT:-4443}"
TOKEN_FILE=$(get METRICS_TOKEN_FILE); AUTH=()
if [ -n "$TOKEN_FILE" ]; then AUTH=(-H "Authorization: Bearer $(cat "$(dirname "$CONF")/$TOKEN_FILE")"); fi

curl -fsS -X POST "${AUTH[@]}" "$BASE/drain" >/dev/null
echo "draining $BASE"
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  rooms=$(curl -fsS "${AUTH[@]}" "$BASE/drain" | sed -n 's/.*"rooms":\([0-9]*\).*/\1/p')
  [ "${rooms:-1}" = 0 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then echo "timeout: $rooms rooms still open; stopping anyway (their sites rejoin)"; break; fi
  sleep 10
done
systemctl stop grassroots-av-sfu.service
"$@"
systemctl start grassroots-av-sfu.service
for _ in $(seq 1 120); do
  if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then echo "ready"; exit 0; fi
  sleep 1
done
echo "not ready after 120 s: journalctl -u grassroots-av-sfu" >&2
exit 1
