#!/usr/bin/env bash
# `make run`: the emulator (installed if missing), the local streams of config/local.yaml created
# through the Kinesis API, then the service in the foreground on 127.0.0.1:8080.
# Ctrl-C stops the service (graceful drain), then SIGKILLs the emulator this run started; `make stop`
# does the same from another terminal. The exit status is the service's (0 after a clean stop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p .run
pidfile=.run/service.pid
port=${APP_SERVER__PORT:-8080}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {
  if alive "$pidfile"; then
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    # Let in-flight requests finish before Kinesis goes away (drain timeout 30 s by default).
    for _ in $(seq 1 350); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  scripts/emulator.sh stop
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

if alive "$pidfile"; then
  echo "make run is already running (pid $(cat "$pidfile")); stop it with make stop" >&2
  exit 1
fi
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "Port $port is in use; free it or set APP_SERVER__PORT" >&2
  exit 1
fi

# The emulator does not check signatures, but the SDK must sign: dummy credentials unless the
# caller has their own. No instance-metadata look-ups on a laptop.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_EC2_METADATA_DISABLED=true
export APP_ENVIRONMENT=${APP_ENVIRONMENT:-local}

cargo build --locked --bin kinesis-writer
trap stop EXIT
scripts/emulator.sh start
target/debug/kinesis-writer create-streams
target/debug/kinesis-writer &
echo $! > "$pidfile"
# Ctrl-C reaches the service too (same process group); wait returns once it has drained.
set +e
wait "$(cat "$pidfile")"
status=$?
set -e
case $status in
  0 | 130 | 143) exit 0 ;;
  *) echo "kinesis-writer exited with status $status" >&2; exit "$status" ;;
esac
