#!/usr/bin/env bash
# test.sh - run every krust test on this machine, setting up what the tests need.
#
#   bash scripts/test.sh
#
# 1. A broker: uses $KRUST_BROKER if set; otherwise starts tansu with scripts/broker.sh on
#    127.0.0.1:${KRUST_BROKER_PORT:-19092} (reusing one that is already up) and stops it at the end
#    if this script started it. Integration tests find the broker through KRUST_BROKER.
# 2. Python with librdkafka (scripts/python-env.sh), exported as KRUST_PYTHON.
# 3. Suites: `cargo test --workspace --all-targets`, the doc tests, then every interop and
#    conformance script that exists (see below).
#
# Without CI, a missing broker or Python only skips what needs them (with a warning). With
# CI=true, either one failing to come up fails the run: real-broker tests are never silently skipped.
#
# Interop/conformance scripts: scripts/interop/run.sh and files named test_*.py / test_*.sh in
# scripts/interop/ and crates/krust-testkit/conformance/ (other files there are tools or shared
# modules). Each runs from the repository root as `$KRUST_PYTHON SCRIPT BROKER_ADDR` (or
# `bash SCRIPT BROKER_ADDR`), with these also in its environment:
#   KRUST_BROKER   host:port of the broker      KRUST_PYTHON  the venv's python
#   KRUST_BIN      path of the built `krust` CLI  KRUST_REPO    the repository root
# Exit 0 = passed, 77 = skipped (say why on stderr), anything else = failed.
#
# The summary ends with "tests: N passed, N failed" (every cargo test and script check); the
# exit status is 0 only when nothing failed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export KRUST_REPO="$REPO"
CI_MODE=0
case "${CI:-}" in true | 1 | yes) CI_MODE=1 ;; esac
SUITE_TIMEOUT="${KRUST_SUITE_TIMEOUT:-1500}"   # seconds per cargo suite
SCRIPT_TIMEOUT="${KRUST_SCRIPT_TIMEOUT:-600}"  # seconds per python script

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
SETUP_FAILED=0
TESTS_PASSED=0
TESTS_FAILED=0
TESTS_IGNORED=0
STARTED_PORT=""
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/krust-test.XXXXXX")"

say() { echo "test.sh: $*" >&2; }
banner() { printf '\n==== %s ====\n' "$*"; }

cleanup() {
  if [ -n "$STARTED_PORT" ]; then
    bash "$REPO/scripts/broker.sh" stop "$STARTED_PORT" || true
    STARTED_PORT=""
  fi
  rm -rf "$LOG_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ----------------------------------------------------------------------------- broker
if [ -n "${KRUST_BROKER:-}" ]; then
  say "using the broker at KRUST_BROKER=$KRUST_BROKER"
else
  port="${KRUST_BROKER_PORT:-19092}"
  if line="$(bash "$REPO/scripts/broker.sh" start "$port")"; then
    eval "$line"
    export KRUST_BROKER
    [ "${KRUST_BROKER_STARTED:-0}" = 1 ] && STARTED_PORT="$port"
    say "broker at $KRUST_BROKER"
  elif [ "$CI_MODE" = 1 ]; then
    say "FAIL: the broker did not start, and CI=true forbids skipping the real-broker tests"
    SETUP_FAILED=1
  else
    say "WARNING: no broker; real-broker tests will be skipped (they read KRUST_BROKER)"
    unset KRUST_BROKER
  fi
fi

# ----------------------------------------------------------------------------- python
if [ -n "${KRUST_PYTHON:-}" ]; then
  say "using KRUST_PYTHON=$KRUST_PYTHON"
elif KRUST_PYTHON="$(bash "$REPO/scripts/python-env.sh")"; then
  export KRUST_PYTHON
else
  if [ "$CI_MODE" = 1 ]; then
    say "FAIL: could not set up Python with confluent-kafka, and CI=true forbids skipping interop"
    SETUP_FAILED=1
  else
    say "WARNING: no Python with confluent-kafka; interop and conformance scripts will be skipped"
  fi
  unset KRUST_PYTHON
fi

# ----------------------------------------------------------------------------- suites
record() { # record NAME STATUS(0 pass, 77 skip, other fail)
  case "$2" in
    0) PASSED=$((PASSED + 1)); echo "---- PASS $1" ;;
    77) SKIPPED=$((SKIPPED + 1)); echo "---- SKIP $1" ;;
    *) FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); echo "---- FAIL $1 (status $2)" ;;
  esac
}

# Add up libtest's "test result: ..." lines so the summary can give test counts as well.
count_tests() {
  local counts
  counts="$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' "$1" |
    awk '{p+=$1; f+=$2; i+=$3} END {print p+0, f+0, i+0}')"
  set -- $counts
  TESTS_PASSED=$((TESTS_PASSED + $1))
  TESTS_FAILED=$((TESTS_FAILED + $2))
  TESTS_IGNORED=$((TESTS_IGNORED + $3))
}

cargo_suite() { # cargo_suite NAME ARGS...
  local name="$1" log="$LOG_DIR/suite.log" status
  shift
  banner "$name: cargo $*"
  timeout --foreground -k 10 "$SUITE_TIMEOUT" cargo "$@" 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  [ "$status" = 124 ] && say "$name: timed out after ${SUITE_TIMEOUT}s"
  count_tests "$log"
  # Never report a skip for cargo: a failing build or a failing test is a failure.
  [ "$status" = 77 ] && status=1
  record "$name" "$status"
}

if [ "$SETUP_FAILED" = 1 ]; then
  record "setup (broker/python under CI=true)" 1
fi

# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo_suite "unit+integration tests" test --workspace --all-targets --no-fail-fast
cargo_suite "doc tests" test --workspace --doc --no-fail-fast
# TLS is a non-default feature; its tests use the pure-Rust provider so no C compiler is needed.
cargo_suite "tls tests (feature tls-rustcrypto)" test -p krust-client --features tls-rustcrypto \
  --test security_tls --no-fail-fast

# Interop and conformance scripts, in a block of their own. A script is a test if it is
#   scripts/interop/run.sh, or named test_*.py or test_*.sh in scripts/interop/ or
#   crates/krust-testkit/conformance/
# (other files there are tools and shared modules; librdkafka_conformance.py is run by
# krust-testkit's cargo test). Python scripts run with $KRUST_PYTHON, shell scripts with bash;
# each gets the broker address as its first argument.
shopt -s nullglob
TEST_SCRIPTS=(scripts/interop/run.sh scripts/interop/test_*.py scripts/interop/test_*.sh
  crates/krust-testkit/conformance/test_*.py crates/krust-testkit/conformance/test_*.sh)
shopt -u nullglob
EXISTING=()
for s in "${TEST_SCRIPTS[@]}"; do [ -f "$s" ] && EXISTING+=("$s"); done

if [ "${#EXISTING[@]}" -gt 0 ]; then
  banner "interop and conformance scripts (${#EXISTING[@]})"
  KRUST_BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/krust"
  case "$KRUST_BIN" in /*) ;; *) KRUST_BIN="$REPO/$KRUST_BIN" ;; esac
  export KRUST_BIN
  if ! cargo build --quiet -p krust-cli; then
    say "could not build the krust CLI for the scripts"
  fi
  for s in "${EXISTING[@]}"; do
    banner "$s"
    if [ -z "${KRUST_PYTHON:-}" ] || [ -z "${KRUST_BROKER:-}" ]; then
      say "$s: needs KRUST_PYTHON and KRUST_BROKER"
      if [ "$CI_MODE" = 1 ]; then record "$s" 1; else record "$s" 77; fi
      continue
    fi
    case "$s" in
      *.py) runner=("$KRUST_PYTHON") ;;
      *) runner=(bash) ;;
    esac
    timeout --foreground -k 10 "$SCRIPT_TIMEOUT" "${runner[@]}" "$s" "$KRUST_BROKER"
    st=$?
    [ "$st" = 124 ] && say "$s: timed out after ${SCRIPT_TIMEOUT}s"
    if [ "$st" = 77 ] && [ "$CI_MODE" = 1 ]; then
      say "$s: skipped under CI=true"
    fi
    record "$s" "$st"
  done
fi

# Stop what we started now, so that the summary below is the last thing printed.
cleanup

banner "summary"
if [ "${#FAILED_NAMES[@]}" -gt 0 ]; then
  printf 'failed suite: %s\n' "${FAILED_NAMES[@]}"
fi
if [ "$SKIPPED" -gt 0 ]; then
  echo "suites: $PASSED passed, $FAILED failed, $SKIPPED skipped"
else
  echo "suites: $PASSED passed, $FAILED failed"
fi
echo "ignored: $TESTS_IGNORED (cargo tests marked #[ignore]: long benchmarks run by hand)"
# The last line counts individual tests; a failed suite with no failing test of its own (a build
# error, a failed script) still counts as one failure, so the line can never read all-green
# while a suite failed.
EXTRA_FAILED=0
[ "$FAILED" -gt 0 ] && [ "$TESTS_FAILED" = 0 ] && EXTRA_FAILED=$FAILED
echo "tests: $TESTS_PASSED passed, $((TESTS_FAILED + EXTRA_FAILED)) failed"
[ "$FAILED" = 0 ]
