#!/usr/bin/env bash
# python-env.sh - a Python virtual environment with librdkafka (PyPI confluent-kafka), for the
# interop and conformance tests that check krust against a client nobody here wrote.
#
#   KRUST_PYTHON="$(bash scripts/python-env.sh)"
#
# Creates the venv on first use, reuses it afterwards (a check import takes ~0.1 s), and prints
# the path of its python on stdout; progress goes to stderr.
#
# Environment:
#   KRUST_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/krust); venv in $KRUST_CACHE/venv
#   KRUST_VENV    use this venv directory instead
set -euo pipefail

CACHE="${KRUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/krust}"
VENV="${KRUST_VENV:-$CACHE/venv}"
# Pinned so that interop results do not drift with new librdkafka releases.
PACKAGES=(confluent-kafka==2.16.1)

say() { echo "python-env.sh: $*" >&2; }
fail() { say "error: $*"; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 is needed"
PY="$VENV/bin/python"

if [ -x "$PY" ] && "$PY" -c 'import confluent_kafka' >/dev/null 2>&1; then
  echo "$PY"
  exit 0
fi

mkdir -p "$(dirname "$VENV")"
if [ ! -x "$PY" ]; then
  say "creating venv at $VENV"
  python3 -m venv "$VENV" >&2 || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
say "installing ${PACKAGES[*]}"
"$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2 ||
  fail "pip install ${PACKAGES[*]} failed"
"$PY" -c 'import confluent_kafka' >/dev/null 2>&1 || fail "confluent_kafka does not import after install"
echo "$PY"
