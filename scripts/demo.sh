#!/usr/bin/env bash
# demo.sh - krust's main job, end to end, on a fresh machine:
#   1. start a local broker (tansu, installed on first use) unless KRUST_BROKER names one,
#   2. build the `krust` CLI,
#   3. create a topic, produce sample records with `krust produce`, read them back with
#      `krust consume -e`, and show the output,
#   4. the seed's stream job: `krust pipe --map upper` copies the topic upper-cased, exactly
#      once, as a bounded job that stops by itself; the output is read with read_committed.
# The broker is stopped at the end if this script started it (KRUST_KEEP_BROKER=1 keeps it).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
STARTED_PORT=""
say() { printf '\n\033[1m## %s\033[0m\n' "$*" >&2; }

cleanup() {
  if [ -n "$STARTED_PORT" ] && [ "${KRUST_KEEP_BROKER:-0}" != 1 ]; then
    bash scripts/broker.sh stop "$STARTED_PORT" || true
  fi
}
trap cleanup EXIT

say "broker"
if [ -z "${KRUST_BROKER:-}" ]; then
  port="${KRUST_BROKER_PORT:-19092}"
  eval "$(bash scripts/broker.sh start "$port")"
  [ "${KRUST_BROKER_STARTED:-0}" = 1 ] && STARTED_PORT="$port"
fi
echo "using the broker at $KRUST_BROKER"

say "building the krust CLI (cargo build -p krust-cli)"
cargo build --quiet -p krust-cli
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$REPO/$TARGET_DIR" ;; esac
KRUST="$TARGET_DIR/debug/krust"
"$KRUST" --version

TOPIC="krust-demo-$(date +%s)"
say "krust topics create $TOPIC -p 3"
"$KRUST" topics create -b "$KRUST_BROKER" "$TOPIC" -p 3

say "krust produce -t $TOPIC -K : -H source=demo  (one record per line, key before ':')"
cat <<'EOF' | tee /dev/stderr | "$KRUST" produce -b "$KRUST_BROKER" -t "$TOPIC" -K : -H source=demo
alice:hello from krust
bob:pure Rust, no librdkafka
carol:records keyed by name
alice:same key, same partition
dave:the end
EOF

say "krust consume -t $TOPIC -e -f 'p%p o%o key=%k value=%s headers=%h\n'"
"$KRUST" consume -b "$KRUST_BROKER" -t "$TOPIC" -e -f 'p%p o%o key=%k value=%s headers=%h\n'

say "krust offsets $TOPIC"
"$KRUST" offsets -b "$KRUST_BROKER" "$TOPIC"

UPPER="$TOPIC-upper"
say "krust pipe --from $TOPIC --to $UPPER --map upper --guarantee exactly-once --bounded"
"$KRUST" topics create -b "$KRUST_BROKER" "$UPPER" -p 3
"$KRUST" pipe -b "$KRUST_BROKER" --from "$TOPIC" --to "$UPPER" -G "$TOPIC-pipe" \
  --map upper --guarantee exactly-once --instance-id demo-1 --bounded \
  --consumer-property session.timeout.ms=6000 --consumer-property heartbeat.interval.ms=500

say "krust consume -t $UPPER -e -X isolation.level=read_committed"
"$KRUST" consume -b "$KRUST_BROKER" -t "$UPPER" -e -X isolation.level=read_committed \
  -f 'p%p o%o key=%k value=%s\n'

say "done"
