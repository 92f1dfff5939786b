# Shared helpers of the packaging tests (sourced). Each test script sets SUITE, calls check/pass/fail/skip
# and ends with `finish`, which prints the closing "SUITE: N passed, N failed[, N skipped]" line and
# returns non-zero when anything failed.
passed=0
failed=0
skipped=0

pass() { echo "ok    $*"; passed=$((passed + 1)); }
fail() { echo "FAIL  $*"; failed=$((failed + 1)); }
skip() { echo "SKIP  $*"; skipped=$((skipped + 1)); }

# check DESCRIPTION COMMAND...: passes when COMMAND succeeds.
check() {
    local description=$1
    shift
    if "$@"; then pass "$description"; else fail "$description"; fi
}

finish() {
    local line="$SUITE: $passed passed, $failed failed"
    [[ $skipped -gt 0 ]] && line+=", $skipped skipped"
    echo "$line"
    [[ $failed -eq 0 ]]
}

# The directory holding Package.swift.
repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }
