#!/usr/bin/env bash
# run.sh - krust <-> librdkafka record batch interop, both directions.
#
#   scripts/interop/run.sh BROKER_ADDR
#
# 1. librdkafka -> krust: the golden fixtures in crates/krust-wire/tests/fixtures (captured
#    from librdkafka with capture_fixtures.py) are decoded by `cargo test --test records`.
# 2. krust -> librdkafka: krust encodes one batch per codec (test write_interop_batches), this
#    script sends each in a raw Produce v7 to BROKER_ADDR and confluent-kafka reads them back;
#    any difference fails the run (exit 1).
# Needs python3 (scripts/python-env.sh makes the confluent-kafka venv).
set -euo pipefail
BROKER="${1:?usage: run.sh BROKER_ADDR}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY="$(bash "$ROOT/scripts/python-env.sh")"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
cd "$ROOT"
KRUST_INTEROP_DIR="$OUT" cargo test -q -p krust-wire --test records -- librdkafka_fixtures write_interop_batches
"$PY" "$ROOT/scripts/interop/check_krust_batches.py" "$BROKER" "$OUT"
