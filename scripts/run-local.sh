#!/usr/bin/env bash
# `make run`: the emulator (installed if missing), the local streams of config/local.yaml created
# through the Kinesis API, then the service in the foreground on 127.0.0.1:8080.
# Ctrl-C stops the service (graceful drain) and SIGKILLs the emulator; `make stop` does the same
# from another terminal.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mkdir -p .run

stop() {
  if [ -f .run/service.pid ]; then
    kill -TERM "$(cat .run/service.pid)" 2>/dev/null || true
    rm -f .run/service.pid
  fi
  scripts/emulator.sh stop
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi

# The emulator does not check signatures, but the SDK must sign: dummy credentials unless the
# caller has their own. No instance-metadata look-ups on a laptop.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_EC2_METADATA_DISABLED=true
export APP_ENVIRONMENT=${APP_ENVIRONMENT:-local}

cargo build --bin kinesis-writer
trap stop EXIT
scripts/emulator.sh start
target/debug/kinesis-writer create-streams
target/debug/kinesis-writer &
echo $! > .run/service.pid
# Ctrl-C reaches the service too (same process group); wait returns once it has drained.
wait "$(cat .run/service.pid)" || true
