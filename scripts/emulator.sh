#!/usr/bin/env bash
# The local Kinesis emulator (kinesis-mock's JavaScript build, npm kinesis-local, pinned in
# tools/kinesis-local/package-lock.json) for `make run`.
#   scripts/emulator.sh install   install the pinned version if missing (npm ci)
#   scripts/emulator.sh start     start it in the background on 127.0.0.1:$KINESIS_PORT, wait until it answers
#   scripts/emulator.sh stop      SIGKILL it (kinesis-mock may ignore SIGTERM; it keeps nothing we need)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/tools/kinesis-local"
run="$root/.run"
port=${KINESIS_PORT:-4568}
tls_port=${KINESIS_TLS_PORT:-4567}
pidfile="$run/emulator.pid"

install() {
  if [ ! -f "$dir/node_modules/kinesis-local/main.js" ]; then
    command -v npm >/dev/null || { echo "npm is required to install the emulator (apt-get install nodejs npm)" >&2; exit 1; }
    echo "Installing the pinned emulator (npm ci in tools/kinesis-local)..."
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
}

# The readiness probe: ListStreams with a dummy SigV4 header (the emulator checks only its presence).
answers() {
  curl -sf -o /dev/null -X POST -H 'Content-Type: application/x-amz-json-1.1' \
    -H 'X-Amz-Target: Kinesis_20131202.ListStreams' -H 'X-Amz-Date: 20260101T000000Z' \
    -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00' \
    -d '{}' "http://127.0.0.1:$port/"
}

start() {
  install
  mkdir -p "$run"
  if answers; then
    # Not ours to stop later: leave the pid file alone.
    echo "Something already answers on 127.0.0.1:$port; using it."
    return 0
  fi
  KINESIS_MOCK_CERT_PATH="$dir/node_modules/kinesis-local/server.json" \
  KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$tls_port" \
  CREATE_STREAM_DURATION=0ms LOG_LEVEL=WARN \
    nohup node "$dir/node_modules/kinesis-local/main.js" >"$run/emulator.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 150); do
    if answers; then echo "Emulator answers on http://127.0.0.1:$port (pid $(cat "$pidfile"), log .run/emulator.log)"; return 0; fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "The emulator exited; see .run/emulator.log" >&2; cat "$run/emulator.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "The emulator did not answer within 30 s; see .run/emulator.log" >&2
  stop; exit 1
}

stop() {
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    # Only a pid that is still our emulator: a stale file must not kill an unrelated process.
    if grep -q "kinesis-local/main.js" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
