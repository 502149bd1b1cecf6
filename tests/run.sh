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
echo "== ${#files[@]} test files"
# One file at a time: the media tests each want both cores.
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
