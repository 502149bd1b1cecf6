#!/bin/bash
# Installs grassroots-av roles on this Debian host: the system user, directories, one configuration file
# per role (from infra/deploy/hosts/<role>.env.example, never overwriting an existing one) and the
# systemd units. Run from the checkout that is to become /opt/grassroots-av (after `npm ci`).
#   sudo infra/deploy/install.sh api            # the API + pages + city node host
#   sudo infra/deploy/install.sh sfu recorder   # a county host with its SFU node and a recorder
# Options: --root DIR installs into DIR instead of / (packaging, tests); --no-start only enables.
set -euo pipefail
ROOT=/
START=1
ROLES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --no-start) START=0; shift ;;
    api|sfu|recorder|scheduler) ROLES+=("$1"); shift ;;
    *) echo "usage: $0 [--root DIR] [--no-start] api|sfu|recorder|scheduler..." >&2; exit 2 ;;
  esac
done
[ ${#ROLES[@]} -gt 0 ] || { echo "name at least one role: api sfu recorder scheduler" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/../.." && pwd)
# The units protect /home and /root (ProtectHome=yes): the code must live elsewhere, e.g. /opt/grassroots-av.
case "$SRC" in /home/*|/root/*) echo "move the checkout out of $SRC (the services cannot read /home or /root): e.g. /opt/grassroots-av" >&2; exit 2 ;; esac
R=${ROOT%/}
USER_NAME=grassroots-av

# The service user: no login, no home; the scheduler's serial terminal needs group dialout.
if [ "$R" = "" ]; then
  id -u "$USER_NAME" >/dev/null 2>&1 || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
  OWNER="root:$USER_NAME"
else
  OWNER=""
fi
install -d -m 0755 "$R/opt" "$R/etc/systemd/system"
install -d -m 0750 "$R/etc/grassroots-av" "$R/etc/grassroots-av/secrets" "$R/var/lib/grassroots-av"
[ -n "$OWNER" ] && chown "$OWNER" "$R/etc/grassroots-av" "$R/etc/grassroots-av/secrets" "$R/var/lib/grassroots-av"
# The code: a link to this checkout (an upgrade replaces the checkout and restarts, see upgrade-sfu.sh).
if [ "$SRC" != "$R/opt/grassroots-av" ] && [ ! -e "$R/opt/grassroots-av" ]; then ln -s "$SRC" "$R/opt/grassroots-av"; fi

for role in "${ROLES[@]}"; do
  unit="grassroots-av-$role.service"
  install -m 0644 "$SRC/infra/deploy/systemd/$unit" "$R/etc/systemd/system/$unit"
  conf="$R/etc/grassroots-av/$role.env"
  if [ ! -e "$conf" ]; then
    install -m 0640 "$SRC/infra/deploy/hosts/$role.env.example" "$conf"
    [ -n "$OWNER" ] && chown "$OWNER" "$conf"
    echo "wrote $conf: edit it (addresses, secrets files) before starting"
  else
    echo "kept $conf"
  fi
done

if [ "$R" = "" ]; then
  for role in "${ROLES[@]}"; do
    command -v systemd-analyze >/dev/null && systemd-analyze verify "/etc/systemd/system/grassroots-av-$role.service"
  done
  systemctl daemon-reload
  for role in "${ROLES[@]}"; do
    if [ "$START" = 1 ]; then systemctl enable --now "grassroots-av-$role.service"; else systemctl enable "grassroots-av-$role.service"; fi
  done
fi
