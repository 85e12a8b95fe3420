#!/usr/bin/env bash
# Runs every test suite, even after one fails, and prints one closing line summing them all:
# "N passed, N failed, N skipped". Exit status is non-zero if any suite failed.
set -u
cd "$(dirname "$0")/../.."
BUN=node_modules/.bin/bun
passed=0 failed=0 skipped=0

# Adds the "N pass / N fail / N skip" counts of a bun test log. "N error" (a test file that threw
# outside any test, e.g. at import) counts as failed too: those tests never ran.
add_bun_counts() {
  local log=$1 p f s e
  p=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -1 | tr -dc 0-9)
  f=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -1 | tr -dc 0-9)
  s=$(grep -Eo '^ *[0-9]+ skip$' "$log" | tail -1 | tr -dc 0-9)
  e=$(grep -Eo '^ *[0-9]+ errors?$' "$log" | tail -1 | tr -dc 0-9)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0})); skipped=$((skipped + ${s:-0}))
  bun_failed=$((${f:-0} + ${e:-0}))
}

suite() { echo; echo "=== $1 ==="; }

suite "lint (biome + tsc)"
if make --no-print-directory lint; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

suite "build"
if make --no-print-directory build; then passed=$((passed + 1)); else failed=$((failed + 1)); fi

suite "unit and integration tests (bun test)"
log=$(mktemp)
$BUN test agent/test 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
add_bun_counts "$log"
# A non-zero exit that no count explains (a crash, a timeout) is one more failure.
[ "$status" -eq 0 ] || [ "$bun_failed" -gt 0 ] || failed=$((failed + 1))

if [ -x vm-test/run ]; then
  suite "VM scenarios (QEMU)"
  vm-test/run ci 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | grep -Eo '[0-9]+ skipped' | tr -dc 0-9)
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + ${s:-0}))
  elif [ "$status" -ne 0 ]; then
    failed=$((failed + 1))
  fi
fi
rm -f "$log"

echo
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
