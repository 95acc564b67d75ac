# shellcheck shell=bash disable=SC2154  # root and work come from the caller
# Shared by scripts/deploy-test.sh, scripts/lb-test.sh and scripts/image-test.sh (sourced).
# Everything listens on 127.0.0.1 only; the emulator's pid is kept in $work/emulator.pid for
# emulator_stop (SIGKILL), which each caller's exit trap runs with its own cleanup.
# The caller sets: root (repository), work (a temporary directory).

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL [SECONDS]: until URL answers 200.
wait_http() {
  local url=$1 limit=${2:-30}
  for _ in $(seq 1 $((limit * 10))); do
    if curl -sf -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.1
  done
  echo "no 200 from $url within ${limit}s" >&2
  return 1
}

# The pinned emulator on 127.0.0.1:$1 (TLS on a free port); its pid in $work/emulator.pid.
emulator_start() {
  local port=$1 dir="$root/tools/kinesis-local"
  "$root/scripts/emulator.sh" install >/dev/null
  KINESIS_MOCK_CERT_PATH="$dir/node_modules/kinesis-local/server.json" \
  KINESIS_MOCK_PLAIN_PORT="$port" KINESIS_MOCK_TLS_PORT="$(free_port)" \
  CREATE_STREAM_DURATION=0ms LOG_LEVEL=WARN \
    node "$dir/node_modules/kinesis-local/main.js" >"$work/emulator.log" 2>&1 &
  echo $! >"$work/emulator.pid"
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null -X POST -H 'Content-Type: application/x-amz-json-1.1' \
      -H 'X-Amz-Target: Kinesis_20131202.ListStreams' -H 'X-Amz-Date: 20260101T000000Z' \
      -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00' \
      -d '{}' "http://127.0.0.1:$port/"; then return 0; fi
    sleep 0.1
  done
  echo "the emulator did not answer on 127.0.0.1:$port" >&2; cat "$work/emulator.log" >&2; return 1
}

emulator_stop() {
  if [ -f "$work/emulator.pid" ]; then
    local pid
    pid=$(cat "$work/emulator.pid")
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$work/emulator.pid"
  fi
}

# The environment every local instance gets: the emulator, dummy credentials, no IMDS.
service_env() {
  local port=$1 kinesis_port=$2
  echo APP_ENVIRONMENT=local APP_SERVER__HOST=127.0.0.1 APP_SERVER__PORT="$port" \
    APP_KINESIS__ENDPOINT_URL="http://127.0.0.1:$kinesis_port" \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true APP_TELEMETRY__FORMAT=json APP_TELEMETRY__FILTER=info
}

# Reads every record of STREAM from the emulator on PORT; prints the data, one a line.
stream_data() {
  python3 "$root/scripts/read-stream.py" "$1" "http://127.0.0.1:$2" | sed 's/^.* data=//'
}

# compare ACKED_FILE STREAM_DATA_FILE: prints acked / in stream / lost / duplicated / extra, and
# fails unless every acknowledged body is in the stream exactly once.
compare_records() {
  python3 - "$1" "$2" <<'PY'
import collections, sys
acked = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
stream = collections.Counter(l.rstrip("\n") for l in open(sys.argv[2]) if l.strip())
lost = [a for a in acked if stream[a] == 0]
dup = [a for a in acked if stream[a] > 1]
known = set(acked)
extra = sum(c for body, c in stream.items() if body not in known)
print(f"records: acknowledged {len(acked)}, in the stream {sum(stream.values())}, lost {len(lost)}, "
      f"duplicated {len(dup)}, in the stream but not acknowledged {extra}")
for a in lost[:5]: print("  lost:", a)
for a in dup[:5]: print("  duplicated:", a, stream[a], "times")
sys.exit(1 if lost or dup or len(acked) != len(set(acked)) else 0)
PY
}
